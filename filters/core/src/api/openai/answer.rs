//! Builders of answers: usage, choices, completions, and the stream-usage option.

use super::*;

/// OpenAI usage with the optional details objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    pub fn to_json(&self) -> Value {
        let mut u = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens.saturating_add(self.completion_tokens),
        });
        if let Some(obj) = u.as_object_mut() {
            if let Some(c) = self.cached_tokens {
                obj.insert(
                    "prompt_tokens_details".into(),
                    json!({ "cached_tokens": c }),
                );
            }
            if let Some(r) = self.reasoning_tokens {
                obj.insert(
                    "completion_tokens_details".into(),
                    json!({ "reasoning_tokens": r }),
                );
            }
        }
        u
    }
}

/// One choice of a complete (non-streaming) answer.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<(String, String, String)>,
    pub finish_reason: Option<&'static str>,
}

pub struct Completion<'a> {
    pub id: &'a str,
    pub model: &'a str,
    pub created: u64,
    pub choices: Vec<Choice>,
    pub usage: Option<Usage>,
}

impl Completion<'_> {
    pub fn to_bytes(&self) -> Result<Vec<u8>, GatewayError> {
        serde_json::to_vec(&self.to_json()).map_err(|e| GatewayError::bad_upstream(e.to_string()))
    }

    pub fn to_json(&self) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut msg = Map::new();
                msg.insert("role".into(), json!("assistant"));
                msg.insert("content".into(), json!(c.content));
                if let Some(r) = &c.reasoning {
                    msg.insert("reasoning_content".into(), json!(r));
                }
                if !c.tool_calls.is_empty() {
                    let calls: Vec<Value> = c
                        .tool_calls
                        .iter()
                        .map(|(id, name, args)| {
                            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
                        })
                        .collect();
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                msg.insert("refusal".into(), Value::Null);
                json!({"index": i, "message": msg, "logprobs": null, "finish_reason": c.finish_reason})
            })
            .collect();
        let mut v = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let (Some(u), Some(obj)) = (self.usage, v.as_object_mut()) {
            obj.insert("usage".into(), u.to_json());
        }
        v
    }
}

/// Makes a streaming request ask for usage, so the gateway always knows what a stream cost.
/// Returns `(asked, new_body)`: whether the client asked for usage itself, and the body to send
/// when it had to change. When `stream_options` is absent (the common case) the field is
/// inserted after the opening brace of the original bytes instead of re-encoding the body.
pub fn force_stream_usage(body: &[u8], value: &Value) -> (bool, Option<Vec<u8>>) {
    let Some(obj) = value.as_object() else {
        return (false, None);
    };
    if obj.get("stream").and_then(Value::as_bool) != Some(true) {
        return (false, None);
    }
    match obj.get("stream_options") {
        Some(opts) if opts.get("include_usage").and_then(Value::as_bool) == Some(true) => {
            (true, None)
        }
        None => {
            let Some(brace) = body.iter().position(|&b| b == b'{') else {
                return (false, None);
            };
            const FIELD: &[u8] = b"\"stream_options\":{\"include_usage\":true},";
            let mut out = Vec::with_capacity(body.len() + FIELD.len());
            out.extend_from_slice(body.get(..=brace).unwrap_or_default());
            out.extend_from_slice(FIELD);
            out.extend_from_slice(body.get(brace + 1..).unwrap_or_default());
            (false, Some(out))
        }
        Some(_) => {
            let mut v = value.clone();
            if let Some(o) = v.as_object_mut() {
                o.insert("stream_options".into(), json!({"include_usage": true}));
            }
            (false, serde_json::to_vec(&v).ok())
        }
    }
}
