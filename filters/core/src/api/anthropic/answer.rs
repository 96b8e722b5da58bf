//! An OpenAI chat completion (what every backend translator produces) as an Anthropic message.

use crate::error::GatewayError;
use serde_json::{json, Value};

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's usage from OpenAI's: cached prompt tokens are reported apart, as Anthropic does
/// (`input_tokens` excludes what was read from the cache).
pub fn usage(u: Option<&Value>) -> Value {
    let n = |p: &str| {
        u.and_then(|u| u.pointer(p))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let cached = n("/prompt_tokens_details/cached_tokens");
    json!({"input_tokens": n("/prompt_tokens").saturating_sub(cached),
           "output_tokens": n("/completion_tokens"),
           "cache_read_input_tokens": cached,
           "cache_creation_input_tokens": 0})
}

/// The first choice of `completion` as an Anthropic message for `model` (the name the client
/// asked for). A tool call whose arguments are not a JSON object cannot become a `tool_use`
/// block: that is a 502, not a block with made-up input.
pub fn message(completion: &Value, model: &str) -> Result<Value, GatewayError> {
    let choice = completion.pointer("/choices/0").unwrap_or(&Value::Null);
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(r) = msg
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if let Some(t) = msg
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let args = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let input: Value =
            match serde_json::from_str(if args.trim().is_empty() { "{}" } else { args }) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(GatewayError::new(
                        502,
                        "upstream_error",
                        "The backend answered with tool arguments that are not a JSON object.",
                    ))
                }
            };
        content.push(
            json!({"type": "tool_use", "id": call.get("id").cloned().unwrap_or_default(),
                            "name": call.pointer("/function/name").cloned().unwrap_or_default(),
                            "input": input}),
        );
    }
    let id = completion
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("msg");
    Ok(json!({
        "id": if id.starts_with("msg_") { id.to_string() } else { format!("msg_{id}") },
        "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage(completion.get("usage")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_with_reasoning_text_and_tools_becomes_a_message() {
        let c = json!({"id": "chatcmpl-9", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me look.", "reasoning_content": "think",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 4}}});
        let m = message(&c, "claude-x").unwrap();
        assert_eq!(m["id"], "msg_chatcmpl-9");
        assert_eq!(m["model"], "claude-x");
        assert_eq!(m["content"][0]["type"], "thinking");
        assert_eq!(
            m["content"][1],
            json!({"type": "text", "text": "Let me look."})
        );
        assert_eq!(m["content"][2]["input"], json!({"city": "Paris"}));
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 8, "output_tokens": 7, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0})
        );
        for (f, s) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("content_filter", "refusal"),
        ] {
            assert_eq!(stop_reason(Some(f)), s);
        }
        let broken = json!({"choices": [{"message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1"}}]}}]});
        assert_eq!(message(&broken, "m").unwrap_err().status, 502);
    }
}
