//! The AWS side of the mock, written from AWS's documentation independently of the gateway:
//! SigV4 verification of what arrived (canonical request over the path, query, signed headers
//! and the body received), event-stream frames with their CRCs, base64 for InvokeModel chunks.

use crate::http::Request;
use sha2::{Digest, Sha256};

pub const ACCESS_KEY: &str = "AKIDSLUICEMOCK0000001";
pub const SECRET_KEY: &str = "mock/aws+secret/key/0000000000000000000000";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// RFC 3986 encoding of everything but unreserved characters (AWS's UriEncode).
fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Checks the request's SigV4 signature for `service` with the mock's credentials.
pub fn verify(req: &Request, service: &str) -> Result<(), String> {
    let auth = req
        .header("authorization")
        .ok_or("missing authorization header")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("authorization is not AWS4-HMAC-SHA256")?;
    let field = |name: &str| {
        rest.split(',')
            .map(str::trim)
            .find_map(|p| p.strip_prefix(name))
            .ok_or(format!("authorization has no {name}"))
    };
    let credential = field("Credential=")?;
    let signed = field("SignedHeaders=")?;
    let signature = field("Signature=")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [key, date, region, svc, term] = parts[..] else {
        return Err(format!("malformed credential scope {credential}"));
    };
    if key != ACCESS_KEY {
        return Err("unknown access key".into());
    }
    if svc != service || term != "aws4_request" {
        return Err(format!("credential scope is for {svc}, not {service}"));
    }
    let amz_date = req.header("x-amz-date").ok_or("missing x-amz-date")?;
    if !amz_date.starts_with(date) {
        return Err("x-amz-date is not the scope's date".into());
    }
    let payload = hex(&Sha256::digest(&req.body));
    if req.header("x-amz-content-sha256") != Some(payload.as_str()) {
        return Err("x-amz-content-sha256 is not the hash of the body received".into());
    }
    let names: Vec<&str> = signed.split(';').collect();
    for required in ["host", "x-amz-date", "x-amz-content-sha256"] {
        if !names.contains(&required) {
            return Err(format!("{required} is not signed"));
        }
    }
    let mut canonical_headers = String::new();
    for n in &names {
        let v = req
            .header(n)
            .ok_or(format!("signed header {n} is missing"))?;
        let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical_headers.push_str(&format!("{n}:{v}\n"));
    }
    // Services other than S3: each path segment as sent, encoded again.
    let uri: Vec<String> = req.path.split('/').map(uri_encode).collect();
    let mut query: Vec<(String, String)> = req
        .query
        .split('&')
        .filter(|q| !q.is_empty())
        .map(|q| {
            let (k, v) = q.split_once('=').unwrap_or((q, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri.join("/"),
        query,
        canonical_headers,
        signed,
        payload
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        k = hmac(&k, part.as_bytes());
    }
    if hex(&hmac(&k, to_sign.as_bytes())) != signature {
        return Err("signature mismatch".into());
    }
    Ok(())
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// One event-stream frame with string headers.
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (k, v) in headers {
        h.push(k.len() as u8);
        h.extend_from_slice(k.as_bytes());
        h.push(7);
        h.extend_from_slice(&(v.len() as u16).to_be_bytes());
        h.extend_from_slice(v.as_bytes());
    }
    let total = (12 + h.len() + payload.len() + 4) as u32;
    let mut out = total.to_be_bytes().to_vec();
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let c = crc32(&out);
    out.extend_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let c = crc32(&out);
    out.extend_from_slice(&c.to_be_bytes());
    out
}

/// An event frame, with the padding field AWS adds to hide lengths.
pub fn event(kind: &str, mut payload: serde_json::Value) -> Vec<u8> {
    payload["p"] = serde_json::json!("abcdefghijklmnopqrstuvwxyzABCDEF"[..(kind.len() % 16) + 4]);
    frame(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

pub fn exception(kind: &str, message: &str) -> Vec<u8> {
    frame(
        &[
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        serde_json::json!({"message": message})
            .to_string()
            .as_bytes(),
    )
}

pub fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// The path's percent-escapes decoded (model ids arrive escaped).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 1 {
            if let Ok(v) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
