//! Decodes the host metadata Envoy hands to wasm (`xds.upstream_host_metadata`): a serialized
//! `envoy.config.core.v3.Metadata`, whose `filter_metadata` maps a namespace to a
//! `google.protobuf.Struct`. A minimal protobuf reader is enough for these two messages.

use serde_json::{Map, Number, Value};

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first()?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    /// Next field: (number, wire type, payload for length-delimited / fixed, varint value).
    fn field(&mut self) -> Option<(u64, Field<'a>)> {
        let key = self.varint()?;
        let (num, wt) = (key >> 3, key & 7);
        let f = match wt {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => {
                let n = usize::try_from(self.varint()?).ok()?;
                Field::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Field::Other
            }
            _ => return None,
        };
        Some((num, f))
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Other,
}

fn entries(buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut r = Reader { buf };
    let mut out = Vec::new();
    while !r.buf.is_empty() {
        out.push(r.field()?);
    }
    Some(out)
}

/// A map entry message: key (field 1, string) and value (field 2, message bytes).
fn map_entry(buf: &[u8]) -> Option<(String, &[u8])> {
    let mut key = String::new();
    let mut val: &[u8] = &[];
    for (num, f) in entries(buf)? {
        match (num, f) {
            (1, Field::Bytes(b)) => key = String::from_utf8(b.to_vec()).ok()?,
            (2, Field::Bytes(b)) => val = b,
            _ => {}
        }
    }
    Some((key, val))
}

pub fn decode_struct(buf: &[u8]) -> Option<Value> {
    let mut map = Map::new();
    for (num, f) in entries(buf)? {
        if let (1, Field::Bytes(b)) = (num, f) {
            let (k, v) = map_entry(b)?;
            map.insert(k, decode_value(v)?);
        }
    }
    Some(Value::Object(map))
}

fn decode_value(buf: &[u8]) -> Option<Value> {
    let mut out = Value::Null;
    for (num, f) in entries(buf)? {
        out = match (num, f) {
            (1, _) => Value::Null,
            (2, Field::Fixed64(bits)) => {
                let x = f64::from_bits(bits);
                if x.fract() == 0.0 && x.abs() < 9.0e15 {
                    Value::Number(Number::from(x as i64))
                } else {
                    Number::from_f64(x)
                        .map(Value::Number)
                        .unwrap_or(Value::Null)
                }
            }
            (3, Field::Bytes(b)) => Value::String(String::from_utf8(b.to_vec()).ok()?),
            (4, Field::Varint(x)) => Value::Bool(x != 0),
            (5, Field::Bytes(b)) => decode_struct(b)?,
            (6, Field::Bytes(b)) => {
                let mut items = Vec::new();
                for (n, f) in entries(b)? {
                    if let (1, Field::Bytes(item)) = (n, f) {
                        items.push(decode_value(item)?);
                    }
                }
                Value::Array(items)
            }
            _ => out,
        };
    }
    Some(out)
}

/// The `filter_metadata[namespace]` struct of a serialized `Metadata`, as JSON.
pub fn filter_metadata(buf: &[u8], namespace: &str) -> Option<Value> {
    for (num, f) in entries(buf)? {
        if let (1, Field::Bytes(b)) = (num, f) {
            let (k, v) = map_entry(b)?;
            if k == namespace {
                return decode_struct(v);
            }
        }
    }
    None
}

/// Encodes Envoy host metadata (`envoy.config.core.v3.Metadata` with one `filter_metadata`
/// entry) as the host serializes it: for tests of the filters against a fake host.
pub fn encode_filter_metadata(namespace: &str, value: &Value) -> Vec<u8> {
    let mut md = Vec::new();
    enc::bytes(1, &enc::entry(namespace, &enc::enc_struct(value)), &mut md);
    md
}

mod enc {
    use serde_json::Value;

    pub(super) fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    pub(super) fn bytes(num: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
    pub(super) fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        bytes(1, k.as_bytes(), &mut e);
        bytes(2, v, &mut e);
        e
    }
    pub(super) fn enc_value(v: &Value) -> Vec<u8> {
        let mut o = Vec::new();
        match v {
            Value::Null => {
                varint(1 << 3, &mut o);
                varint(0, &mut o);
            }
            Value::Number(n) => {
                varint(2 << 3 | 1, &mut o);
                o.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_bits().to_le_bytes());
            }
            Value::String(s) => bytes(3, s.as_bytes(), &mut o),
            Value::Bool(b) => {
                varint(4 << 3, &mut o);
                varint(u64::from(*b), &mut o);
            }
            Value::Object(_) => bytes(5, &enc_struct(v), &mut o),
            Value::Array(a) => {
                let mut l = Vec::new();
                for i in a {
                    bytes(1, &enc_value(i), &mut l);
                }
                bytes(6, &l, &mut o);
            }
        }
        o
    }
    pub(super) fn enc_struct(v: &Value) -> Vec<u8> {
        let mut o = Vec::new();
        for (k, v) in v.as_object().into_iter().flatten() {
            bytes(1, &entry(k, &enc_value(v)), &mut o);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::enc::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_metadata() {
        let sluice = json!({"provider":"anthropic","models":{"a":"b"},"max_tokens_default":1024,"t":true,"f":1.5,"l":[1,"x",null]});
        let mut md = Vec::new();
        bytes(1, &entry("other", &enc_struct(&json!({"x":1}))), &mut md);
        bytes(1, &entry("sluice", &enc_struct(&sluice)), &mut md);
        assert_eq!(filter_metadata(&md, "sluice").unwrap(), sluice);
        assert_eq!(filter_metadata(&md, "absent"), None);
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert_eq!(filter_metadata(&[0xff, 0xff, 0xff], "sluice"), None);
        assert_eq!(filter_metadata(&[0x0a, 0x50, 0x01], "sluice"), None);
        assert_eq!(filter_metadata(&[], "sluice"), None);
    }
}
