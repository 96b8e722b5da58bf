//! Assembly of one complete answer from a JSON body or an SSE stream, for storing.

use super::table::storable;
use crate::openai::{Choice, Completion, Usage};
use crate::sse::{SseEvent, SseParser};
use crate::usage::read_usage;
use serde_json::Value;

#[derive(Debug, Default, Clone)]
struct ChoiceAcc {
    content: String,
    reasoning: String,
    tool_calls: Vec<(String, String, String)>,
    finish: Option<String>,
}

/// Builds the complete answer from an OpenAI SSE stream as it passes (the bytes are not
/// changed or held). `finish()` gives it only for a stream that ended cleanly: `[DONE]`, a
/// finish reason on every choice, no error event.
#[derive(Debug, Default)]
pub struct Assembler {
    sse: BoundedSse,
    id: String,
    model: String,
    created: u64,
    choices: Vec<ChoiceAcc>,
    usage: Option<Usage>,
    done: bool,
    broken: bool,
}

/// An answer's bytes read as SSE events for an assembler, bounded: past four times the largest
/// entry, or after a framing error, it yields nothing more and says `broken` (not stored).
#[derive(Debug, Default)]
pub(super) struct BoundedSse {
    parser: SseParser,
    bytes: u64,
    max_bytes: u64,
    pub(super) broken: bool,
}

impl BoundedSse {
    pub(super) fn new(max_entry_bytes: u64) -> Self {
        BoundedSse {
            max_bytes: max_entry_bytes,
            ..Default::default()
        }
    }

    pub(super) fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        if self.broken {
            return Vec::new();
        }
        self.bytes += chunk.len() as u64;
        if self.bytes > self.max_bytes.saturating_mul(4) {
            // Far bigger than an entry may be: stop assembling.
            self.broken = true;
            return Vec::new();
        }
        self.parser.feed(chunk).unwrap_or_else(|_| {
            self.broken = true;
            Vec::new()
        })
    }

    pub(super) fn finish(&mut self) -> Vec<SseEvent> {
        if self.broken {
            return Vec::new();
        }
        self.parser.finish().unwrap_or_else(|_| {
            self.broken = true;
            Vec::new()
        })
    }
}

impl Assembler {
    pub fn new(max_bytes: u64) -> Self {
        Assembler {
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
        if ev.data == "[DONE]" {
            self.done = true;
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            self.broken = true;
            return;
        };
        if v.get("error").is_some() {
            self.broken = true;
            return;
        }
        if self.id.is_empty() {
            self.id = v
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            self.model = v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            self.created = v.get("created").and_then(Value::as_u64).unwrap_or(0);
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()).and_then(read_usage) {
            self.usage = Some(u);
        }
        for c in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let i = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if i > 127 {
                self.broken = true;
                return;
            }
            if self.choices.len() <= i {
                self.choices.resize(i + 1, ChoiceAcc::default());
            }
            let Some(acc) = self.choices.get_mut(i) else {
                return;
            };
            let d = c.get("delta");
            if let Some(t) = d.and_then(|d| d.get("content")).and_then(Value::as_str) {
                acc.content.push_str(t);
            }
            if let Some(t) = d
                .and_then(|d| d.get("reasoning_content"))
                .and_then(Value::as_str)
            {
                acc.reasoning.push_str(t);
            }
            for tc in d
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let k = tc.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if k > 127 {
                    self.broken = true;
                    return;
                }
                if acc.tool_calls.len() <= k {
                    acc.tool_calls.resize(k + 1, Default::default());
                }
                if let Some(call) = acc.tool_calls.get_mut(k) {
                    if let Some(id) = tc.get("id").and_then(Value::as_str) {
                        call.0 = id.to_string();
                    }
                    if let Some(n) = tc.pointer("/function/name").and_then(Value::as_str) {
                        call.1 = n.to_string();
                    }
                    if let Some(a) = tc.pointer("/function/arguments").and_then(Value::as_str) {
                        call.2.push_str(a);
                    }
                }
            }
            if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
                acc.finish = Some(f.to_string());
            }
        }
    }

    /// The complete answer as a chat.completion, if the stream ended cleanly and may be stored.
    pub fn finish(&mut self, store_tool_calls: bool) -> Option<Value> {
        let events = self.sse.finish();
        events.into_iter().for_each(|e| self.event(e));
        if self.broken || self.sse.broken || !self.done || self.choices.is_empty() {
            return None;
        }
        let choices = self
            .choices
            .iter()
            .map(|c| Choice {
                content: (!c.content.is_empty() || c.tool_calls.is_empty())
                    .then(|| c.content.clone()),
                reasoning: (!c.reasoning.is_empty()).then(|| c.reasoning.clone()),
                tool_calls: c.tool_calls.clone(),
                // A reason outside OpenAI's set leaves the choice unfinished: not storable.
                finish_reason: c.finish.as_deref().and_then(|f| {
                    [
                        "stop",
                        "length",
                        "tool_calls",
                        "content_filter",
                        "function_call",
                    ]
                    .into_iter()
                    .find(|k| *k == f)
                }),
            })
            .collect();
        let v = Completion {
            id: &self.id,
            model: &self.model,
            created: self.created,
            choices,
            usage: self.usage,
        }
        .to_json();
        storable(&v, store_tool_calls).then_some(v)
    }
}
