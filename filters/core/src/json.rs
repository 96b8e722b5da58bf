//! JSON parsing that refuses duplicate object keys.
//!
//! `serde_json` keeps the last of two equal keys. A gateway that scans the parsed value but
//! forwards the client's bytes would then scan one `messages` and send the other (a provider's
//! parser may keep the first). Refusing duplicates at every depth makes "what was checked" and
//! "what was sent" the same document. The cost is that of an ordinary parse into a `Value`.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Parses `text` into a [`Value`]; a duplicate key anywhere is an error that names it.
pub fn parse_unique(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Unique>(text).map(|u| u.0)
}

struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E>(self, x: f64) -> Result<Value, E> {
        Ok(Number::from_f64(x).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Unique(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key '{}'",
                    crate::contract::escape_for_header(&key)
                )));
            }
            let Unique(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// `text` (a JSON object already parsed without duplicate keys) with the string value of its
/// top-level `key` replaced by `value`, every other byte kept as it was. `None` when the key is
/// absent or its value is not a string.
pub fn replace_top_level_string(text: &str, key: &str, value: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0usize;
    // At depth 1, whether the next string is a key (after `{` or `,`).
    let mut expect_key = false;
    let mut matched = false;
    while i < b.len() {
        match b.get(i).copied()? {
            b'"' => {
                let end = string_end(b, i)?;
                if depth == 1 {
                    if expect_key {
                        let k: String = serde_json::from_str(text.get(i..=end)?).ok()?;
                        matched = k == key;
                        expect_key = false;
                    } else if matched {
                        let mut out = String::with_capacity(text.len() + value.len());
                        out.push_str(text.get(..i)?);
                        out.push_str(&serde_json::to_string(value).ok()?);
                        out.push_str(text.get(end + 1..)?);
                        return Some(out);
                    }
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => {
                if depth == 1 && matched {
                    return None;
                }
                depth += 1;
                expect_key = depth == 1 && b.get(i) == Some(&b'{');
            }
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b',' if depth == 1 => {
                expect_key = true;
                matched = false;
            }
            b':' | b' ' | b'\t' | b'\n' | b'\r' => {}
            _ if depth == 1 && matched => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the `"` that closes the string opening at `start`.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b.get(i).copied()? {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_value_as_serde_json() {
        let text = r#"{"a":[1,-2,3.5,"x\u00e9",null,true,{"b":{}}],"c":18446744073709551615}"#;
        assert_eq!(
            parse_unique(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert_eq!(parse_unique("[]").unwrap(), json!([]));
    }

    #[test]
    fn only_the_top_level_string_changes() {
        let t = r#"{"messages":[{"model":"inner"}],"metadata":{"model":"x"}, "mod\u0065l" : "a\"b","z":1}"#;
        let out = replace_top_level_string(t, "model", "new/m").unwrap();
        assert_eq!(
            out,
            r#"{"messages":[{"model":"inner"}],"metadata":{"model":"x"}, "mod\u0065l" : "new/m","z":1}"#
        );
        assert_eq!(
            replace_top_level_string(r#"{"model":1}"#, "model", "m"),
            None
        );
        assert_eq!(
            replace_top_level_string(r#"{"a":{"model":"x"}}"#, "model", "m"),
            None
        );
        assert_eq!(
            replace_top_level_string(r#"{"a":"model","model":"x"}"#, "model", "m").as_deref(),
            Some(r#"{"a":"model","model":"m"}"#)
        );
    }

    #[test]
    fn duplicates_are_refused_at_every_depth() {
        for text in [
            r#"{"messages":[],"messages":[]}"#,
            r#"{"m":[{"role":"user","content":"a","content":"b"}]}"#,
            r#"{"a":{"b":{"c":1,"c":2}}}"#,
            r#"{"a":1,"\u0061":2}"#,
        ] {
            let e = parse_unique(text).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{text}: {e}");
        }
        assert!(parse_unique(&"[".repeat(10_000)).is_err()); // depth is bounded, no overflow
    }
}
