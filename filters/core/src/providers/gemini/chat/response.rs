//! The JSON answer: the provider's format to OpenAI chat.

use super::*;

/// One part of a candidate, read.
pub(super) enum Part<'a> {
    Text(&'a str),
    Thought(&'a str),
    Call {
        id: Option<&'a str>,
        name: &'a str,
        args: String,
        signature: Option<&'a str>,
    },
    Other,
}

pub(super) fn read_part(p: &Value) -> Part<'_> {
    if let Some(fc) = p.get("functionCall") {
        return Part::Call {
            id: fc.get("id").and_then(Value::as_str),
            name: fc.get("name").and_then(Value::as_str).unwrap_or_default(),
            args: serde_json::to_string(fc.get("args").unwrap_or(&json!({}))).unwrap_or_default(),
            signature: p.get("thoughtSignature").and_then(Value::as_str),
        };
    }
    match (
        p.get("text").and_then(Value::as_str),
        p.get("thought").and_then(Value::as_bool),
    ) {
        (Some(t), Some(true)) => Part::Thought(t),
        (Some(t), _) => Part::Text(t),
        _ => Part::Other,
    }
}

pub(super) fn candidates(v: &Value) -> impl Iterator<Item = (u32, &Value)> {
    v.get("candidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(pos, c)| {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
            (u32::try_from(idx).unwrap_or(0), c)
        })
}

pub(super) fn response_id(v: &Value, created: u64) -> String {
    v.get("responseId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("gemini-{created}"))
}

pub fn response(body: &[u8], plan: &ResponsePlan, created: u64) -> Result<Vec<u8>, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            GatewayError::bad_upstream("The gemini backend answered with a body that is not JSON.")
        })?;
    if v.get("candidates").is_none() && v.get("promptFeedback").is_none() {
        return Err(GatewayError::bad_upstream(
            "The gemini backend answered without candidates.",
        ));
    }
    let rid = response_id(&v, created);
    let mut choices: Vec<Choice> = Vec::new();
    for (idx, c) in candidates(&v) {
        let mut choice = Choice::default();
        let mut text = String::new();
        for p in c
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match read_part(p) {
                Part::Text(t) => text.push_str(t),
                Part::Thought(t) => choice.reasoning.get_or_insert_with(String::new).push_str(t),
                Part::Call {
                    id,
                    name,
                    args,
                    signature,
                } => {
                    let made = format!("call_{rid}_{idx}_{}", choice.tool_calls.len());
                    let id = make_call_id(id.unwrap_or(&made), signature);
                    choice.tool_calls.push((id, name.to_string(), args));
                }
                Part::Other => {}
            }
        }
        let reason = c
            .get("finishReason")
            .and_then(Value::as_str)
            .unwrap_or("STOP");
        choice.finish_reason = Some(finish_reason(reason, !choice.tool_calls.is_empty()));
        choice.content = if text.is_empty() && !choice.tool_calls.is_empty() {
            None
        } else {
            Some(text)
        };
        let slot = usize::try_from(idx).unwrap_or(0).min(choices.len());
        choices.insert(slot, choice);
    }
    if choices.is_empty() {
        // The prompt itself was blocked (promptFeedback.blockReason).
        choices.push(Choice {
            content: Some(String::new()),
            finish_reason: Some("content_filter"),
            ..Default::default()
        });
    }
    let id = format!("chatcmpl-{rid}");
    let model = v
        .get("modelVersion")
        .and_then(Value::as_str)
        .unwrap_or(&plan.client_model);
    let c = Completion {
        id: &id,
        model,
        created,
        choices,
        usage: read_usage(&v),
    };
    c.to_bytes()
}
