//! The cache on the Anthropic Messages front: entries are Anthropic messages, assembled from a
//! JSON answer or an event stream, replayed as either. Keys live apart from chat completions'.

use super::assemble::BoundedSse;
use crate::sse::SseEvent;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The cache key of a Messages request: [`super::key`] in a namespace of its own, so that no
/// Messages request can ever be answered from a chat completion's entry or the reverse.
pub fn messages_key(tenant: &str, body: &Value) -> [u8; 32] {
    let inner = super::key(tenant, body);
    let mut h = Sha256::new();
    h.update(b"anthropic-messages\0");
    h.update(inner);
    h.finalize().into()
}

/// Whether a complete message may be stored: a clean end (`end_turn`, `max_tokens`,
/// `stop_sequence`, or `tool_use` when tool calls may be stored), and content.
pub fn is_storable_message(v: &Value, store_tool_calls: bool) -> bool {
    let content = v.get("content").and_then(Value::as_array);
    let calls = content
        .into_iter()
        .flatten()
        .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"));
    v.get("type").and_then(Value::as_str) == Some("message")
        && content.is_some_and(|c| !c.is_empty())
        && match v.get("stop_reason").and_then(Value::as_str) {
            Some("end_turn" | "max_tokens" | "stop_sequence") => store_tool_calls || !calls,
            Some("tool_use") => store_tool_calls,
            _ => false,
        }
}

/// Builds the complete message from an Anthropic event stream as it passes (the bytes are not
/// changed or held); `finish()` gives it only for a stream that ended with `message_stop` and
/// no error.
#[derive(Debug, Default)]
pub struct MessageAssembler {
    sse: BoundedSse,
    message: Option<Map<String, Value>>,
    blocks: Vec<Value>,
    /// Tool input JSON text per block, parsed at the end.
    inputs: Vec<String>,
    done: bool,
    broken: bool,
}

impl MessageAssembler {
    pub fn new(max_bytes: u64) -> Self {
        MessageAssembler {
            sse: BoundedSse::new(max_bytes),
            ..Default::default()
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.broken {
            return;
        }
        let events = self.sse.feed(chunk);
        events.into_iter().for_each(|e| self.event(e));
    }

    fn event(&mut self, ev: SseEvent) {
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            self.broken = true;
            return;
        };
        let index = v
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok());
        match ev.event.as_deref() {
            Some("message_start") => {
                self.message = v.get("message").and_then(Value::as_object).cloned();
            }
            Some("content_block_start") => match (index, v.get("content_block")) {
                (Some(i), Some(b)) if i == self.blocks.len() => {
                    self.blocks.push(b.clone());
                    self.inputs.push(String::new());
                }
                _ => self.broken = true,
            },
            Some("content_block_delta") => {
                let (Some(block), Some(d)) =
                    (index.and_then(|i| self.blocks.get_mut(i)), v.get("delta"))
                else {
                    self.broken = true;
                    return;
                };
                let append = |block: &mut Value, field: &str, text: Option<&Value>| {
                    let add = text.and_then(Value::as_str).unwrap_or_default();
                    if let Some(o) = block.as_object_mut() {
                        let cur = o.entry(field).or_insert_with(|| json!(""));
                        if let Value::String(s) = cur {
                            s.push_str(add);
                        }
                    }
                };
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => append(block, "text", d.get("text")),
                    Some("thinking_delta") => append(block, "thinking", d.get("thinking")),
                    Some("signature_delta") => append(block, "signature", d.get("signature")),
                    Some("input_json_delta") => {
                        if let Some(s) = index.and_then(|i| self.inputs.get_mut(i)) {
                            s.push_str(
                                d.get("partial_json")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default(),
                            );
                        }
                    }
                    // A delta this cache does not know (citations...): not stored.
                    _ => self.broken = true,
                }
            }
            Some("message_delta") => {
                let Some(m) = self.message.as_mut() else {
                    self.broken = true;
                    return;
                };
                if let Some(Value::Object(d)) = v.get("delta") {
                    for (k, x) in d {
                        m.insert(k.clone(), x.clone());
                    }
                }
                if let Some(Value::Object(u)) = v.get("usage") {
                    let usage = m.entry("usage").or_insert_with(|| json!({}));
                    if let Some(usage) = usage.as_object_mut() {
                        usage.extend(u.iter().map(|(k, x)| (k.clone(), x.clone())));
                    }
                }
            }
            Some("message_stop") => self.done = true,
            Some("error") => self.broken = true,
            _ => {}
        }
    }

    /// The complete message, if the stream ended cleanly and it may be stored.
    pub fn finish(&mut self, store_tool_calls: bool) -> Option<Value> {
        let events = self.sse.finish();
        events.into_iter().for_each(|e| self.event(e));
        if self.broken || self.sse.broken || !self.done {
            return None;
        }
        let mut m = self.message.take()?;
        for (b, input) in self.blocks.iter_mut().zip(&self.inputs) {
            if b.get("type").and_then(Value::as_str) == Some("tool_use") && !input.is_empty() {
                let parsed: Value = serde_json::from_str(input).ok()?;
                b.as_object_mut()?.insert("input".into(), parsed);
            }
        }
        m.insert(
            "content".into(),
            Value::Array(std::mem::take(&mut self.blocks)),
        );
        let v = Value::Object(m);
        is_storable_message(&v, store_tool_calls).then_some(v)
    }
}

fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
    crate::sse::write_event(out, name, data.to_string().as_bytes());
}

/// A stored message as Anthropic's event stream: `message_start` (usage as known at the
/// start), each block whole in one delta, `message_delta` with the stop reason and the output
/// tokens, `message_stop`.
pub fn replay_messages_sse(message: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = message.as_object().cloned().unwrap_or_default();
    let blocks = start.remove("content").unwrap_or_else(|| json!([]));
    let stop_reason = start.insert("stop_reason".into(), Value::Null);
    let stop_sequence = start.insert("stop_sequence".into(), Value::Null);
    let usage = start.get("usage").cloned().unwrap_or_else(|| json!({}));
    start.insert("content".into(), json!([]));
    if let Some(Value::Object(u)) = start.get_mut("usage") {
        u.insert("output_tokens".into(), json!(0));
    }
    event(
        &mut out,
        "message_start",
        &json!({"type": "message_start", "message": start}),
    );
    for (i, b) in blocks.as_array().into_iter().flatten().enumerate() {
        let kind = b.get("type").and_then(Value::as_str).unwrap_or_default();
        let (opening, delta) = match kind {
            "text" => (
                json!({"type": "text", "text": ""}),
                Some(
                    json!({"type": "text_delta", "text": b.get("text").cloned().unwrap_or_default()}),
                ),
            ),
            "thinking" => (
                json!({"type": "thinking", "thinking": ""}),
                Some(
                    json!({"type": "thinking_delta", "thinking": b.get("thinking").cloned().unwrap_or_default()}),
                ),
            ),
            "tool_use" => {
                let mut open = b.clone();
                if let Some(o) = open.as_object_mut() {
                    o.insert("input".into(), json!({}));
                }
                let input = b.get("input").map(Value::to_string).unwrap_or_default();
                (
                    open,
                    Some(json!({"type": "input_json_delta", "partial_json": input})),
                )
            }
            _ => (b.clone(), None),
        };
        event(
            &mut out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": i, "content_block": opening}),
        );
        if let Some(d) = delta {
            event(
                &mut out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": i, "delta": d}),
            );
        }
        if kind == "thinking" {
            if let Some(sig) = b.get("signature") {
                event(
                    &mut out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": i,
                            "delta": {"type": "signature_delta", "signature": sig}}),
                );
            }
        }
        event(
            &mut out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": i}),
        );
    }
    event(
        &mut out,
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": {"output_tokens": usage.get("output_tokens").cloned().unwrap_or(json!(0))}}),
    );
    event(&mut out, "message_stop", &json!({"type": "message_stop"}));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Value {
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
               "content": [
                   {"type": "thinking", "thinking": "let me see", "signature": "c2ln"},
                   {"type": "text", "text": "Paris \"is\" sunny."},
                   {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris", "n": [1, 2]}}],
               "stop_reason": "tool_use", "stop_sequence": null,
               "usage": {"input_tokens": 12, "output_tokens": 9, "cache_read_input_tokens": 3}})
    }

    #[test]
    fn a_replayed_stream_assembles_to_the_stored_message_split_anywhere() {
        let m = message();
        let sse = replay_messages_sse(&m);
        for cut in 0..sse.len() {
            let mut a = MessageAssembler::new(1 << 20);
            a.feed(&sse[..cut]);
            a.feed(&sse[cut..]);
            assert_eq!(a.finish(true).as_ref(), Some(&m), "cut {cut}");
        }
        let mut a = MessageAssembler::new(1 << 20);
        a.feed(&sse);
        assert_eq!(
            a.finish(false),
            None,
            "tool calls are not stored unless allowed"
        );
    }

    #[test]
    fn only_clean_ends_are_stored_and_keys_are_apart() {
        let sse = replay_messages_sse(&message());
        let text = String::from_utf8(sse).unwrap();
        let cut = text.split("event: message_stop").next().unwrap();
        let mut a = MessageAssembler::new(1 << 20);
        a.feed(cut.as_bytes());
        assert_eq!(a.finish(true), None, "no message_stop: not stored");
        let errored = text.replace("event: message_stop", "event: error");
        let mut a = MessageAssembler::new(1 << 20);
        a.feed(errored.as_bytes());
        assert_eq!(a.finish(true), None);
        let mut refused = message();
        refused["stop_reason"] = json!("refusal");
        assert!(!is_storable_message(&refused, true));
        let body =
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
        assert_ne!(messages_key("t", &body), super::super::key("t", &body));
        assert_ne!(messages_key("t", &body), messages_key("u", &body));
    }
}
