//! The JSON answer: the provider's format to OpenAI chat.

use super::*;

pub fn response(body: &[u8], plan: &ResponsePlan, created: u64) -> Result<Vec<u8>, GatewayError> {
    let bad = || {
        GatewayError::bad_upstream(
            "The anthropic backend answered with a body that is not an Anthropic message.",
        )
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let blocks = v.get("content").and_then(Value::as_array).ok_or_else(bad)?;
    let json_mode = plan.json_tool.is_some();
    let mut text = String::new();
    let mut reasoning: Option<String> = None;
    let mut calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                text.push_str(b.get("text").and_then(Value::as_str).unwrap_or_default())
            }
            Some("thinking") => reasoning.get_or_insert_with(String::new).push_str(
                b.get("thinking")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            Some("tool_use") => {
                let name = b.get("name").and_then(Value::as_str).unwrap_or_default();
                let input =
                    serde_json::to_string(b.get("input").unwrap_or(&json!({}))).unwrap_or_default();
                if plan.json_tool.as_deref() == Some(name) {
                    text.push_str(&input);
                } else {
                    let id = b.get("id").and_then(Value::as_str).unwrap_or_default();
                    calls.push((id.to_string(), name.to_string(), input));
                }
            }
            _ => {}
        }
    }
    let mut usage = AnthropicUsage::default();
    if let Some(u) = v.get("usage") {
        usage.merge(u);
    }
    let stop = v.get("stop_reason").and_then(Value::as_str);
    let choice = Choice {
        content: if text.is_empty() && !calls.is_empty() {
            None
        } else {
            Some(text)
        },
        reasoning,
        tool_calls: calls,
        finish_reason: Some(finish_reason(stop, json_mode)),
    };
    let id = format!(
        "chatcmpl-{}",
        v.get("id").and_then(Value::as_str).unwrap_or("anthropic")
    );
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(&plan.client_model);
    let c = Completion {
        id: &id,
        model,
        created,
        choices: vec![choice],
        usage: Some(usage.openai()),
    };
    c.to_bytes()
}
