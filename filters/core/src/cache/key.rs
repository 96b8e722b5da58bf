//! Cache keys: the request's meaning, canonicalised and hashed per tenant.

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// Request fields that do not change the answer; every other field is part of the key.
pub const NOT_IN_KEY: &[&str] = &[
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
];

/// A number in one canonical form: integral values as integers (so 1, 1.0 and 1e0 are one key).
fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::Number(u.into()),
            (_, Some(i), _) => Value::Number(i.into()),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                Value::Number(Number::from(f as i64))
            }
            _ => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        // serde_json's map is ordered by key: the serialisation is canonical.
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        _ => v.clone(),
    }
}

/// The cache key of a request for a tenant: SHA-256 over the tenant and the canonical JSON of
/// every field of the body but [`NOT_IN_KEY`].
pub fn key(tenant: &str, body: &Value) -> [u8; 32] {
    let mut m = Map::new();
    if let Some(o) = body.as_object() {
        for (k, v) in o {
            if !NOT_IN_KEY.contains(&k.as_str()) {
                m.insert(k.clone(), canonical(v));
            }
        }
    }
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0u8]);
    h.update(serde_json::to_vec(&Value::Object(m)).unwrap_or_default());
    h.finalize().into()
}

/// The key of an embeddings request (its own namespace: a vector list is no chat answer).
pub fn embeddings_key(tenant: &str, body: &Value) -> [u8; 32] {
    let inner = key(tenant, body);
    let mut h = Sha256::new();
    h.update(b"openai-embeddings\0");
    h.update(inner);
    h.finalize().into()
}

/// Whether an embeddings answer may be stored: a list with at least one vector.
pub fn is_storable_embeddings(v: &Value) -> bool {
    v.get("object").and_then(Value::as_str) == Some("list")
        && v.get("data")
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty())
}
