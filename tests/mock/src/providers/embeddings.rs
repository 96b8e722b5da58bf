//! Embeddings in each provider's wire format, with deterministic vectors that still mean
//! something: a text's content words (lower-cased, `'s` and plural `s` dropped, stopwords
//! left out) hashed into signed buckets, L2-normalised. Paraphrases that share their content
//! words land close; a text about something else does not. Nothing here is a real model: the
//! semantic cache's precision on real paraphrases is measured in `make bench` with one.

use super::{aws, Provider};
use crate::http::Request;
use serde_json::{json, Map, Value};

/// Size of a vector when the request names none.
pub const DEFAULT_DIMENSIONS: usize = 256;

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "of", "is", "are", "was", "what", "which", "who", "whats", "how", "to", "in",
    "on", "for", "and", "or", "me", "tell", "please", "do", "does", "you", "i", "it", "its",
    "that", "this", "be", "can", "with", "by", "at", "as", "my", "your",
];

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace("'s", " ")
        .replace('\u{2019}', "'")
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
                w[..w.len() - 1].to_string()
            } else {
                w.to_string()
            }
        })
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The mock's embedding of a text.
pub fn embed(text: &str, dims: usize) -> Vec<f64> {
    let dims = dims.clamp(1, 65_536);
    let mut v = vec![0.0f64; dims];
    let ws = words(text);
    for w in &ws {
        let h = fnv(w);
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[(h % dims as u64) as usize] += sign;
    }
    if ws.is_empty() {
        v[(fnv(text) % dims as u64) as usize] = 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

fn tokens(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

fn base64_f32(v: &[f64]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
    aws::base64(&bytes)
}

fn texts(v: Option<&Value>) -> Result<Vec<String>, String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(vec![s.clone()]),
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|x| match x {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                // Token ids: the mock embeds their text form.
                Value::Number(n) => Ok(n.to_string()),
                Value::Array(t) => Ok(t.iter().map(Value::to_string).collect::<Vec<_>>().join(" ")),
                _ => Err("each input must be a non-empty string or token ids".to_string()),
            })
            .collect(),
        _ => Err("'input' must be a non-empty string or array".into()),
    }
}

fn only(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("Unknown name \"{k}\": Cannot find field.")),
        None => Ok(()),
    }
}

/// Whether this request is an embeddings call of `p`.
pub fn is_embeddings(p: Provider, req: &Request, path_model: &str) -> bool {
    match p {
        Provider::OpenAi | Provider::Azure => req.path.ends_with("/embeddings"),
        Provider::Gemini => req.path.ends_with(":batchEmbedContents"),
        Provider::Vertex => req.path.ends_with(":predict"),
        Provider::BedrockInvoke => path_model.contains("embed"),
        _ => false,
    }
}

/// The provider's answer to an embeddings call, or a 400 message.
pub fn answer(
    p: Provider,
    req: &Request,
    body: &Map<String, Value>,
    path_model: &str,
) -> Result<Value, String> {
    let dims = |d: Option<&Value>| {
        d.and_then(Value::as_u64)
            .map_or(DEFAULT_DIMENSIONS, |d| d as usize)
    };
    match p {
        Provider::OpenAi | Provider::Azure => {
            only(
                body,
                &["model", "input", "encoding_format", "dimensions", "user"],
            )?;
            let model = if p == Provider::Azure {
                req.path
                    .trim_start_matches("/openai/deployments/")
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            } else {
                body.get("model")
                    .and_then(Value::as_str)
                    .ok_or("you must provide a model parameter")?
                    .to_string()
            };
            let inputs = texts(body.get("input"))?;
            let d = dims(body.get("dimensions"));
            let b64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let v = embed(t, d);
                    let e = if b64 { json!(base64_f32(&v)) } else { json!(v) };
                    json!({"object": "embedding", "index": i, "embedding": e})
                })
                .collect();
            let n: u64 = inputs.iter().map(|t| tokens(t)).sum();
            Ok(json!({"object": "list", "data": data, "model": model,
                      "usage": {"prompt_tokens": n, "total_tokens": n}}))
        }
        Provider::Gemini => {
            only(body, &["requests"])?;
            let reqs = body
                .get("requests")
                .and_then(Value::as_array)
                .ok_or("requests must be a list")?;
            let want = format!("models/{path_model}");
            let mut out = Vec::new();
            for r in reqs {
                if r.get("model").and_then(Value::as_str) != Some(want.as_str()) {
                    return Err(format!("requests[].model must be {want}"));
                }
                let text = r
                    .pointer("/content/parts/0/text")
                    .and_then(Value::as_str)
                    .ok_or("content.parts[0].text is required")?;
                out.push(json!({"values": embed(text, dims(r.get("outputDimensionality")))}));
            }
            Ok(json!({"embeddings": out}))
        }
        Provider::Vertex => {
            only(body, &["instances", "parameters"])?;
            let inst = body
                .get("instances")
                .and_then(Value::as_array)
                .ok_or("instances must be a list")?;
            let d = dims(
                body.get("parameters")
                    .and_then(|p| p.get("outputDimensionality")),
            );
            let preds: Result<Vec<Value>, String> = inst
                .iter()
                .map(|i| {
                    let t = i.get("content").and_then(Value::as_str).ok_or("instances[].content is required")?;
                    Ok(json!({"embeddings": {"values": embed(t, d),
                              "statistics": {"token_count": tokens(t) as f64, "truncated": false}}}))
                })
                .collect();
            Ok(json!({"predictions": preds?}))
        }
        Provider::BedrockInvoke if path_model.contains("cohere.embed") => {
            only(
                body,
                &["texts", "input_type", "embedding_types", "truncate"],
            )?;
            let ts = texts(body.get("texts"))?;
            let vs: Vec<Value> = ts.iter().map(|t| json!(embed(t, 1024))).collect();
            Ok(
                json!({"id": "mock", "texts": ts, "embeddings": {"float": vs}, "response_type": "embeddings_by_type"}),
            )
        }
        Provider::BedrockInvoke => {
            only(
                body,
                &["inputText", "dimensions", "normalize", "embeddingTypes"],
            )?;
            let t = body
                .get("inputText")
                .and_then(Value::as_str)
                .ok_or("inputText is required")?;
            let d = dims(body.get("dimensions"));
            if ![256, 512, 1024].contains(&d) && body.get("dimensions").is_some() {
                return Err("dimensions must be 256, 512 or 1024".into());
            }
            Ok(json!({"embedding": embed(t, d), "inputTextTokenCount": tokens(t)}))
        }
        _ => Err("no embeddings here".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn paraphrases_land_close_and_other_topics_do_not() {
        let a = embed("What's the capital of France?", 256);
        let b = embed("Which city is France's capital?", 256);
        let c = embed("What's the capital of Spain?", 256);
        assert!(cos(&a, &b) > 0.75, "{}", cos(&a, &b));
        assert!(cos(&a, &c) < 0.6, "{}", cos(&a, &c));
        assert_eq!(embed("x y", 8), embed("x y", 8));
    }
}
