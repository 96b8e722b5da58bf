//! The protocol-buffers wire format, as much as Sluice's own messages need: varints and
//! length-delimited fields written, and every wire type read (unknown fields are skipped, as
//! protobuf requires). Both the filters (in wasm, where a code generator would cost size) and
//! the quota service encode with this one module, so the two sides cannot drift.

/// Writes fields in tag order as the caller gives them.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Writer {
    fn key(&mut self, tag: u32, wire: u8) {
        varint(&mut self.buf, (u64::from(tag) << 3) | u64::from(wire));
    }

    /// A uint64 field; zero is the default and is not written (proto3).
    pub fn uint(&mut self, tag: u32, v: u64) -> &mut Self {
        if v != 0 {
            self.key(tag, 0);
            varint(&mut self.buf, v);
        }
        self
    }

    /// An `optional uint64`: written when present, zero included.
    pub fn opt(&mut self, tag: u32, v: Option<u64>) -> &mut Self {
        if let Some(v) = v {
            self.key(tag, 0);
            varint(&mut self.buf, v);
        }
        self
    }

    pub fn bool(&mut self, tag: u32, v: bool) -> &mut Self {
        self.uint(tag, u64::from(v))
    }

    pub fn bytes(&mut self, tag: u32, v: &[u8]) -> &mut Self {
        self.key(tag, 2);
        varint(&mut self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    pub fn str(&mut self, tag: u32, v: &str) -> &mut Self {
        if !v.is_empty() {
            self.bytes(tag, v.as_bytes());
        }
        self
    }

    /// An embedded message, written by `f` (always present, even when empty).
    pub fn msg(&mut self, tag: u32, f: impl FnOnce(&mut Writer)) -> &mut Self {
        let mut inner = Writer::default();
        f(&mut inner);
        self.bytes(tag, &inner.buf)
    }
}

/// One field as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// fixed32 and fixed64 (no Sluice field uses them: skipped by callers).
    Fixed(u64),
}

impl<'a> Value<'a> {
    pub fn uint(self) -> u64 {
        match self {
            Value::Varint(v) | Value::Fixed(v) => v,
            Value::Bytes(_) => 0,
        }
    }
    pub fn bytes(self) -> &'a [u8] {
        match self {
            Value::Bytes(b) => b,
            _ => &[],
        }
    }
    /// A string field; invalid UTF-8 reads as an error.
    pub fn str(self) -> Result<&'a str, Malformed> {
        std::str::from_utf8(self.bytes()).map_err(|_| Malformed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

fn read_varint(b: &[u8], at: &mut usize) -> Result<u64, Malformed> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *b.get(*at).ok_or(Malformed)?;
        *at += 1;
        if shift == 63 && byte > 1 {
            return Err(Malformed);
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Malformed)
}

fn take<'a>(b: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], Malformed> {
    let end = at.checked_add(n).ok_or(Malformed)?;
    let s = b.get(*at..end).ok_or(Malformed)?;
    *at = end;
    Ok(s)
}

/// Calls `f(tag, value)` for every field of `msg`, in order; malformed input (a truncated
/// field, a group, an overlong varint) is an error, never a partial read taken as whole.
pub fn fields<'a>(
    msg: &'a [u8],
    mut f: impl FnMut(u32, Value<'a>) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    let mut at = 0;
    while at < msg.len() {
        let key = read_varint(msg, &mut at)?;
        let tag = u32::try_from(key >> 3).map_err(|_| Malformed)?;
        if tag == 0 {
            return Err(Malformed);
        }
        let v = match key & 7 {
            0 => Value::Varint(read_varint(msg, &mut at)?),
            1 => Value::Fixed(u64::from_le_bytes(
                take(msg, &mut at, 8)?.try_into().map_err(|_| Malformed)?,
            )),
            2 => {
                let n = usize::try_from(read_varint(msg, &mut at)?).map_err(|_| Malformed)?;
                Value::Bytes(take(msg, &mut at, n)?)
            }
            5 => Value::Fixed(u64::from(u32::from_le_bytes(
                take(msg, &mut at, 4)?.try_into().map_err(|_| Malformed)?,
            ))),
            _ => return Err(Malformed),
        };
        f(tag, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_unknown_fields() {
        let mut w = Writer::default();
        w.uint(1, 300)
            .str(2, "héllo")
            .opt(3, Some(0))
            .uint(4, 0)
            .msg(5, |m| {
                m.uint(1, u64::MAX);
            });
        // An unknown fixed32 and fixed64 field are skipped.
        w.buf
            .extend([0x35, 1, 2, 3, 4, 0x39, 1, 2, 3, 4, 5, 6, 7, 8]);
        let mut seen = Vec::new();
        fields(&w.buf, |t, v| {
            seen.push((t, v));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen[0], (1, Value::Varint(300)));
        assert_eq!(seen[1].1.str().unwrap(), "héllo");
        assert_eq!(seen[2], (3, Value::Varint(0)));
        assert_eq!(seen[3].0, 5);
        let mut inner = 0;
        fields(seen[3].1.bytes(), |_, v| {
            inner = v.uint();
            Ok(())
        })
        .unwrap();
        assert_eq!(inner, u64::MAX);
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &[0x08][..],   // key without value
            &[0x12, 5, 1], // length past the end
            &[0x0b],       // group
            &[0x00, 1],    // tag 0
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ], // overlong
            &[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ] {
            assert_eq!(fields(bad, |_, _| Ok(())), Err(Malformed), "{bad:?}");
        }
    }
}
