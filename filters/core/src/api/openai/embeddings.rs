//! `POST /v1/embeddings`: the request as the route role checks it, and the OpenAI answer every
//! backend's vectors are written into (`float` or `base64`: little-endian `f32`s, as OpenAI
//! sends them).

use crate::error::GatewayError;
use serde_json::{json, Value};

/// Most inputs in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;
/// Largest `dimensions` accepted.
pub const MAX_DIMENSIONS: u64 = 65_536;

/// What the client wants embedded.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    Texts(Vec<String>),
    /// Token ids (one array per input): only OpenAI-compatible backends take these.
    Tokens(Vec<Vec<u64>>),
}

#[derive(Debug, Clone)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub inputs: Inputs,
    pub base64: bool,
    pub dimensions: Option<u64>,
}

impl Inputs {
    pub fn len(&self) -> usize {
        match self {
            Inputs::Texts(t) => t.len(),
            Inputs::Tokens(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The texts, or a 400 naming the provider that cannot take token ids.
    pub fn texts(&self, provider: &str) -> Result<&[String], GatewayError> {
        match self {
            Inputs::Texts(t) => Ok(t),
            Inputs::Tokens(_) => Err(GatewayError::invalid_param(
                "input",
                format!("This model's backend ({provider}) takes text inputs, not token ids."),
            )),
        }
    }
}

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_param("input", message)
}

fn tokens(v: &Value) -> Option<Vec<u64>> {
    let a = v.as_array()?;
    a.iter().map(Value::as_u64).collect()
}

/// Checks an embeddings body: `model`; `input` a non-empty string, an array of non-empty
/// strings, an array of token ids or an array of such arrays (at most [`MAX_INPUTS`]);
/// `encoding_format` `float` or `base64`; `dimensions` a positive integer.
pub fn validate(v: &Value) -> Result<EmbeddingsRequest, GatewayError> {
    let Some(o) = v.as_object() else {
        return Err(GatewayError::invalid_request(
            "The request body must be a JSON object.",
        ));
    };
    let model = match o.get("model") {
        Some(Value::String(s)) if !s.is_empty() => {
            crate::contract::check_model(s)?;
            s.clone()
        }
        _ => {
            return Err(GatewayError::invalid_param(
                "model",
                "you must provide a model parameter (a non-empty string)",
            ))
        }
    };
    let inputs = match o.get("input") {
        None | Some(Value::Null) => return Err(bad("Missing required parameter: 'input'.")),
        Some(Value::String(s)) if s.is_empty() => return Err(bad("'input' must not be empty.")),
        Some(Value::String(s)) => Inputs::Texts(vec![s.clone()]),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(bad("'input' must not be an empty array."))
        }
        Some(Value::Array(a)) if a.len() > MAX_INPUTS => {
            return Err(bad(format!(
                "'input' has {} items; at most {MAX_INPUTS} are allowed.",
                a.len()
            )))
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            let texts: Vec<String> = a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            if texts.iter().any(String::is_empty) {
                return Err(bad("Every string in 'input' must be non-empty."));
            }
            Inputs::Texts(texts)
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_u64) => {
            Inputs::Tokens(vec![tokens(&Value::Array(a.clone())).unwrap_or_default()])
        }
        Some(Value::Array(a)) => {
            let all: Option<Vec<Vec<u64>>> = a.iter().map(tokens).collect();
            match all {
                Some(t) if t.iter().all(|x| !x.is_empty()) => Inputs::Tokens(t),
                _ => {
                    return Err(bad(
                        "'input' must be a string, an array of strings, an array of token ids or an array of token-id arrays.",
                    ))
                }
            }
        }
        Some(_) => {
            return Err(bad(
                "'input' must be a string, an array of strings, an array of token ids or an array of token-id arrays.",
            ))
        }
    };
    let base64 = match o.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "float" => false,
        Some(Value::String(s)) if s == "base64" => true,
        Some(_) => {
            return Err(GatewayError::invalid_param(
                "encoding_format",
                "'encoding_format' must be 'float' or 'base64'.",
            ))
        }
    };
    let dimensions = match o.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(d) => match d.as_u64() {
            Some(n) if (1..=MAX_DIMENSIONS).contains(&n) => Some(n),
            _ => {
                return Err(GatewayError::invalid_param(
                    "dimensions",
                    format!("'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}."),
                ))
            }
        },
    };
    if let Some(u) = o.get("user") {
        if !u.is_string() {
            return Err(GatewayError::invalid_param(
                "user",
                "'user' must be a string.",
            ));
        }
    }
    Ok(EmbeddingsRequest {
        model,
        inputs,
        base64,
        dimensions,
    })
}

/// A vector as the client asked for it: JSON numbers, or base64 of little-endian `f32`s.
pub fn vector_value(values: &[f64], base64: bool) -> Value {
    if base64 {
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&(*v as f32).to_le_bytes());
        }
        Value::String(crate::base64::encode(&bytes))
    } else {
        Value::Array(values.iter().map(|v| json!(v)).collect())
    }
}

/// Reads a vector of JSON numbers (`None` if anything else is in it).
pub fn read_vector(v: &Value) -> Option<Vec<f64>> {
    v.as_array()?.iter().map(Value::as_f64).collect()
}

/// The OpenAI answer for `vectors`, in input order.
pub fn answer(model: &str, vectors: &[Vec<f64>], prompt_tokens: u64, base64: bool) -> Vec<u8> {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": vector_value(v, base64)}))
        .collect();
    serde_json::to_vec(&json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Value) -> Result<EmbeddingsRequest, GatewayError> {
        validate(&v)
    }

    #[test]
    fn inputs_of_every_shape_and_their_limits() {
        let r = check(json!({"model": "m", "input": "hello"})).unwrap();
        assert_eq!(r.inputs, Inputs::Texts(vec!["hello".into()]));
        assert!(!r.base64 && r.dimensions.is_none());
        let r = check(json!({"model": "m", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 8})).unwrap();
        assert_eq!((r.inputs.len(), r.base64, r.dimensions), (2, true, Some(8)));
        assert_eq!(
            check(json!({"model": "m", "input": [1, 2, 3]}))
                .unwrap()
                .inputs,
            Inputs::Tokens(vec![vec![1, 2, 3]])
        );
        assert_eq!(
            check(json!({"model": "m", "input": [[1], [2, 3]]}))
                .unwrap()
                .inputs,
            Inputs::Tokens(vec![vec![1], vec![2, 3]])
        );
        for bad in [
            json!({"model": "m"}),
            json!({"model": "m", "input": ""}),
            json!({"model": "m", "input": []}),
            json!({"model": "m", "input": ["a", ""]}),
            json!({"model": "m", "input": ["a", 1]}),
            json!({"model": "m", "input": [[1], []]}),
            json!({"model": "m", "input": [-1]}),
            json!({"model": "m", "input": {"text": "a"}}),
            json!({"model": "m", "input": vec!["a"; MAX_INPUTS + 1]}),
        ] {
            assert_eq!(
                check(bad.clone()).unwrap_err().param.as_deref(),
                Some("input"),
                "{bad}"
            );
        }
        assert_eq!(
            check(json!({"input": "a"})).unwrap_err().param.as_deref(),
            Some("model")
        );
        assert_eq!(
            check(json!({"model": "m", "input": "a", "encoding_format": "int8"}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("encoding_format")
        );
        for d in [
            json!(0),
            json!(-3),
            json!(1.5),
            json!("8"),
            json!(MAX_DIMENSIONS + 1),
        ] {
            assert_eq!(
                check(json!({"model": "m", "input": "a", "dimensions": d}))
                    .unwrap_err()
                    .param
                    .as_deref(),
                Some("dimensions")
            );
        }
        assert!(check(json!({"model": "bad\nname", "input": "a"})).is_err());
    }

    #[test]
    fn answers_in_float_and_base64() {
        let v: Value =
            serde_json::from_slice(&answer("m", &[vec![0.5, -1.0], vec![0.25]], 7, false)).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["embedding"], json!([0.5, -1.0]));
        assert_eq!(v["usage"], json!({"prompt_tokens": 7, "total_tokens": 7}));
        let v: Value = serde_json::from_slice(&answer("m", &[vec![0.5, -1.0]], 1, true)).unwrap();
        let bytes = crate::base64::decode(v["data"][0]["embedding"].as_str().unwrap()).unwrap();
        let back: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, vec![0.5, -1.0]);
    }
}
