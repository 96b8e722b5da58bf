//! Re-hydration of placeholders in answers (JSON, text in pieces, OpenAI SSE), and output
//! scanning of a complete answer.

use super::Scanner;
use crate::sse::{self, SseParser};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Puts tokenized values back. Placeholders are `[TYPE_N]` created for this request only: a
/// mangled or foreign one is left as it is.
#[derive(Debug, Clone, Default)]
pub struct Rehydrator {
    map: HashMap<String, String>,
    max_len: usize,
}

pub(super) fn json_escaped(s: &str) -> String {
    let q = serde_json::to_string(s).unwrap_or_default();
    q.get(1..q.len().saturating_sub(1))
        .unwrap_or_default()
        .to_string()
}

impl Rehydrator {
    pub fn new(tokens: &[(String, String)]) -> Self {
        let map: HashMap<String, String> = tokens.iter().cloned().collect();
        let max_len = map.keys().map(String::len).max().unwrap_or(0);
        Rehydrator { map, max_len }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Replaces every placeholder of a complete text (`escaped`: the text is inside a JSON
    /// string, so values go in JSON-escaped).
    pub fn replace_all(&self, text: &str, escaped: bool) -> String {
        let mut s = TextStream::default();
        let mut out = s.feed(self, text, escaped);
        out.push_str(&s.finish());
        out
    }

    /// A JSON chat.completion with placeholders put back in content and tool-call arguments;
    /// an Anthropic message with them put back in its text blocks and tool inputs (thinking
    /// stays as the model wrote it: its signature covers those bytes).
    pub fn json(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut v: Value = serde_json::from_slice(body).ok()?;
        if v.get("type").and_then(Value::as_str) == Some("message") {
            for block in v.get_mut("content")?.as_array_mut()? {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(Value::String(s)) = block.get_mut("text") {
                            *s = self.replace_all(s, false);
                        }
                    }
                    Some("tool_use") => {
                        if let Some(input) = block.get_mut("input") {
                            self.replace_in_strings(input);
                        }
                    }
                    _ => {}
                }
            }
            return serde_json::to_vec(&v).ok();
        }
        for c in v.get_mut("choices")?.as_array_mut()? {
            let Some(m) = c.get_mut("message") else {
                continue;
            };
            for k in ["content", "reasoning_content", "refusal"] {
                if let Some(Value::String(s)) = m.get_mut(k) {
                    *s = self.replace_all(s, false);
                }
            }
            for call in m
                .get_mut("tool_calls")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(Value::String(s)) = call.pointer_mut("/function/arguments") {
                    *s = self.replace_all(s, true);
                }
            }
        }
        serde_json::to_vec(&v).ok()
    }
}

impl Rehydrator {
    /// Every string inside a JSON value (a tool's input), keys left alone.
    fn replace_in_strings(&self, v: &mut Value) {
        match v {
            Value::String(s) => *s = self.replace_all(s, false),
            Value::Array(items) => items.iter_mut().for_each(|i| self.replace_in_strings(i)),
            Value::Object(o) => o.values_mut().for_each(|i| self.replace_in_strings(i)),
            _ => {}
        }
    }
}

/// Re-hydration of one text that arrives in pieces. Text with no pending `[` goes out at once;
/// from a `[` on, only what can still become one of this request's placeholders is held.
#[derive(Debug, Default)]
pub struct TextStream {
    pending: String,
}

impl TextStream {
    pub fn feed(&mut self, r: &Rehydrator, text: &str, escaped: bool) -> String {
        let mut s = std::mem::take(&mut self.pending);
        s.push_str(text);
        let mut out = String::with_capacity(s.len());
        let mut rest = s.as_str();
        while let Some(i) = rest.find('[') {
            out.push_str(rest.get(..i).unwrap_or_default());
            let tail = rest.get(i..).unwrap_or_default();
            if let Some(end) = tail.find(']').filter(|e| *e < r.max_len) {
                let candidate = tail.get(..=end).unwrap_or_default();
                if let Some(v) = r.map.get(candidate) {
                    out.push_str(&if escaped { json_escaped(v) } else { v.clone() });
                    rest = tail.get(end + 1..).unwrap_or_default();
                    continue;
                }
            } else if tail.len() < r.max_len && r.map.keys().any(|k| k.starts_with(tail)) {
                self.pending = tail.to_string();
                return out;
            }
            out.push('[');
            rest = tail.get(1..).unwrap_or_default();
        }
        out.push_str(rest);
        out
    }

    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Re-hydration of an OpenAI SSE stream: per choice, content and reasoning text and each tool
/// call's arguments are separate texts. Held text is flushed into the chunk that finishes its
/// choice (or before `[DONE]`).
#[derive(Debug, Default)]
pub struct SseRehydrator {
    r: Rehydrator,
    parser: SseParser,
    texts: BTreeMap<(u64, String), TextStream>,
    /// The stream is Anthropic's (named events).
    anthropic: bool,
}

impl crate::stream::StreamTranslator for SseRehydrator {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        SseRehydrator::feed(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        SseRehydrator::finish(self)
    }
}

impl SseRehydrator {
    pub fn new(r: Rehydrator) -> Self {
        SseRehydrator {
            r,
            ..Default::default()
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        match self.parser.feed(chunk) {
            Ok(evs) => self.events(evs),
            Err(_) => chunk.to_vec(),
        }
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let evs = self.parser.finish().unwrap_or_default();
        let mut out = self.events(evs);
        if self.anthropic {
            out.extend(self.flush_anthropic(None));
        } else {
            out.extend(self.flush_all(None));
        }
        out
    }

    /// What the texts of one choice or block (or all) still hold, taken out.
    fn take_held(&mut self, index: Option<u64>) -> Vec<((u64, String), String)> {
        self.texts
            .iter_mut()
            .filter(|((i, _), _)| index.is_none_or(|x| x == *i))
            .map(|(k, t)| (k.clone(), t.finish()))
            .filter(|(_, held)| !held.is_empty())
            .collect()
    }

    fn flush_all(&mut self, index: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        for ((i, field), held) in self.take_held(index) {
            let delta = if let Some(k) = field.strip_prefix("tool:") {
                serde_json::json!({"tool_calls": [{"index": k.parse::<u64>().unwrap_or(0), "function": {"arguments": held}}]})
            } else {
                serde_json::json!({ field: held })
            };
            let chunk = serde_json::json!({"object": "chat.completion.chunk", "choices": [{"index": i, "delta": delta, "finish_reason": null}]});
            sse::write_data(&mut out, &serde_json::to_vec(&chunk).unwrap_or_default());
        }
        out
    }

    /// One Anthropic event: per content block, its text (`text_delta`) or its tool input
    /// (`input_json_delta`, JSON text) is one text; what a block still holds goes out in a
    /// delta of its own before its `content_block_stop`. Thinking passes as it is.
    fn anthropic_event(&mut self, name: &str, data: &str, out: &mut Vec<u8>) {
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            sse::write_event(out, name, data.as_bytes());
            return;
        };
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match name {
            "content_block_delta" => {
                if let Some(d) = v.get_mut("delta") {
                    let (field, escaped) = match d.get("type").and_then(Value::as_str) {
                        Some("text_delta") => ("text", false),
                        Some("input_json_delta") => ("partial_json", true),
                        _ => ("", false),
                    };
                    if let Some(Value::String(s)) = d.get_mut(field) {
                        let ts = self.texts.entry((index, field.to_string())).or_default();
                        *s = ts.feed(&self.r, s, escaped);
                    }
                }
            }
            "content_block_stop" | "message_delta" | "message_stop" | "error" => {
                let which = (name == "content_block_stop").then_some(index);
                out.extend(self.flush_anthropic(which));
            }
            _ => {}
        }
        sse::write_event(out, name, &serde_json::to_vec(&v).unwrap_or_default());
    }

    fn flush_anthropic(&mut self, index: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        for ((i, field), held) in self.take_held(index) {
            let kind = if field == "text" {
                "text_delta"
            } else {
                "input_json_delta"
            };
            let ev = serde_json::json!({"type": "content_block_delta", "index": i,
                                        "delta": {"type": kind, field: held}});
            sse::write_event(
                &mut out,
                "content_block_delta",
                &serde_json::to_vec(&ev).unwrap_or_default(),
            );
        }
        out
    }

    fn events(&mut self, events: Vec<sse::SseEvent>) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in events {
            if let Some(name) = ev.event.as_deref() {
                self.anthropic = true;
                self.anthropic_event(name, &ev.data, &mut out);
                continue;
            }
            if ev.data == "[DONE]" {
                out.extend(self.flush_all(None));
                sse::write_data(&mut out, b"[DONE]");
                continue;
            }
            let Ok(mut v) = serde_json::from_str::<Value>(&ev.data) else {
                sse::write_data(&mut out, ev.data.as_bytes());
                continue;
            };
            let mut finished = Vec::new();
            if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
                for c in choices {
                    let i = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let finishing = c.get("finish_reason").is_some_and(|f| !f.is_null());
                    let Some(d) = c.get_mut("delta").and_then(Value::as_object_mut) else {
                        continue;
                    };
                    for field in ["content", "reasoning_content"] {
                        let held_before = self
                            .texts
                            .get(&(i, field.to_string()))
                            .is_some_and(|t| !t.pending.is_empty());
                        if let Some(Value::String(s)) = d.get_mut(field) {
                            let ts = self.texts.entry((i, field.to_string())).or_default();
                            *s = ts.feed(&self.r, s, false);
                        } else if finishing && held_before {
                            let held = self
                                .texts
                                .get_mut(&(i, field.to_string()))
                                .map(TextStream::finish)
                                .unwrap_or_default();
                            d.insert(field.into(), Value::String(held));
                        }
                    }
                    for call in d
                        .get_mut("tool_calls")
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        let k = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                        if let Some(Value::String(s)) = call.pointer_mut("/function/arguments") {
                            let ts = self.texts.entry((i, format!("tool:{k}"))).or_default();
                            *s = ts.feed(&self.r, s, true);
                        }
                    }
                    if finishing {
                        finished.push(i);
                    }
                }
            }
            // What a finishing choice still holds goes out before its finish chunk.
            for i in finished {
                out.extend(self.flush_all(Some(i)));
            }
            sse::write_data(&mut out, &serde_json::to_vec(&v).unwrap_or_default());
        }
        out
    }
}

/// Output scanning: PII the model wrote on its own, redacted (`[TYPE]`) in a complete answer.
pub fn scan_output_json(scanner: &Scanner, body: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    for c in v.get_mut("choices")?.as_array_mut()? {
        if let Some(Value::String(s)) = c.pointer_mut("/message/content") {
            let findings = scanner.find(s);
            if findings.is_empty() {
                continue;
            }
            let mut out = String::new();
            let mut pos = 0;
            for f in findings {
                out.push_str(s.get(pos..f.start).unwrap_or_default());
                out.push_str(&format!("[{}]", f.kind));
                pos = f.end;
            }
            out.push_str(s.get(pos..).unwrap_or_default());
            *s = out;
            changed = true;
        }
    }
    if changed {
        serde_json::to_vec(&v).ok()
    } else {
        None
    }
}
