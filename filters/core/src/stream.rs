//! The OpenAI side of every streaming translator: writes `chat.completion.chunk` events, the
//! role on each choice's first chunk, the usage chunk, `[DONE]`, and error events.
//!
//! A streaming translator implements [`StreamTranslator`]: bytes from the provider in, OpenAI
//! SSE bytes out, with partial events kept inside between calls.

use crate::error::GatewayError;
use crate::openai::Usage;
use crate::sse::{self, SseError, SseEvent, SseParser};
use serde_json::{json, Map, Value};

pub trait StreamTranslator {
    /// Translates the next bytes of the upstream body.
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8>;
    /// The upstream body ended: flush, and end the client's stream (with an error event when
    /// the upstream did not finish properly).
    fn finish(&mut self) -> Vec<u8>;
}

/// Two stream translators in a row: what `first` writes, `second` reads (a backend's stream
/// to OpenAI chunks, then OpenAI chunks to the client's API).
pub struct Chain(pub Box<dyn StreamTranslator>, pub Box<dyn StreamTranslator>);

impl StreamTranslator for Chain {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mid = self.0.feed(chunk);
        if mid.is_empty() {
            return mid;
        }
        self.1.feed(&mid)
    }

    fn finish(&mut self) -> Vec<u8> {
        let mid = self.0.finish();
        let mut out = self.1.feed(&mid);
        out.extend(self.1.finish());
        out
    }
}

/// One provider's SSE events to OpenAI chunks; [`SseStream`] does the framing around it and
/// turns any error into the client's error event.
pub trait EventTranslator {
    const PROVIDER: &'static str;
    fn writer(&mut self) -> &mut ChunkWriter;
    /// Translates one complete upstream event.
    fn event(&mut self, ev: SseEvent, out: &mut Vec<u8>) -> Result<(), GatewayError>;
    /// The upstream body ended while the client's stream is open: close it, cleanly when the
    /// provider finished its answer, with an error event when it did not.
    fn end(&mut self, out: &mut Vec<u8>);
}

/// How a provider's stream is cut into events: SSE (the default), or AWS event-stream frames
/// (`eventstream::FrameEvents`), each frame an event named by its type.
pub trait Framing: Default {
    /// Appends the events that `chunk` completes to `events`; an error comes after the events
    /// completed before it.
    fn feed(&mut self, chunk: &[u8], events: &mut Vec<SseEvent>) -> Result<(), String>;
    fn finish(&mut self, events: &mut Vec<SseEvent>) -> Result<(), String>;
}

impl Framing for SseParser {
    fn feed(&mut self, chunk: &[u8], events: &mut Vec<SseEvent>) -> Result<(), String> {
        events.extend(SseParser::feed(self, chunk).map_err(|e: SseError| e.to_string())?);
        Ok(())
    }
    fn finish(&mut self, events: &mut Vec<SseEvent>) -> Result<(), String> {
        events.extend(SseParser::finish(self).map_err(|e: SseError| e.to_string())?);
        Ok(())
    }
}

pub struct SseStream<T, F = SseParser> {
    parser: F,
    inner: T,
}

impl<T: EventTranslator, F: Framing> SseStream<T, F> {
    pub fn new(inner: T) -> Self {
        SseStream {
            parser: F::default(),
            inner,
        }
    }

    fn events(&mut self, events: Vec<SseEvent>, framing: Result<(), String>, out: &mut Vec<u8>) {
        let inner = &mut self.inner;
        let result = events
            .into_iter()
            .try_for_each(|ev| {
                if inner.writer().is_closed() {
                    Ok(())
                } else {
                    inner.event(ev, out)
                }
            })
            .and(framing.map_err(|e| broken_event(T::PROVIDER, e)));
        if let Err(e) = result {
            self.inner.writer().error(out, &e);
        }
    }
}

impl<T: EventTranslator, F: Framing> StreamTranslator for SseStream<T, F> {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.inner.writer().is_closed() {
            let mut evs = Vec::new();
            let framing = self.parser.feed(chunk, &mut evs);
            self.events(evs, framing, &mut out);
        }
        out
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.inner.writer().is_closed() {
            let mut evs = Vec::new();
            let framing = self.parser.finish(&mut evs);
            self.events(evs, framing, &mut out);
        }
        if !self.inner.writer().is_closed() {
            self.inner.end(&mut out);
        }
        out
    }
}

/// Writes OpenAI chunks for one response.
#[derive(Debug)]
pub struct ChunkWriter {
    pub id: String,
    pub model: String,
    pub created: u64,
    roles_sent: Vec<u32>,
    /// `[DONE]` or an error event was written: nothing more may follow.
    closed: bool,
}

impl ChunkWriter {
    pub fn new(id: String, model: String, created: u64) -> Self {
        ChunkWriter {
            id,
            model,
            created,
            roles_sent: Vec::new(),
            closed: false,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> Vec<u8> {
        let mut v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let (Some(u), Some(o)) = (usage, v.as_object_mut()) {
            o.insert("usage".into(), u);
        }
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// Writes a delta for choice `index`; the first delta of each choice carries the role.
    pub fn delta(&mut self, out: &mut Vec<u8>, index: u32, mut delta: Map<String, Value>) {
        if self.closed {
            return;
        }
        if !self.roles_sent.contains(&index) {
            self.roles_sent.push(index);
            delta.insert("role".into(), json!("assistant"));
            if !delta.contains_key("content") && !delta.contains_key("tool_calls") {
                delta.insert("content".into(), json!(""));
            }
        }
        let c = json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": null}]);
        sse::write_data(out, &self.chunk(c, None));
    }

    pub fn content(&mut self, out: &mut Vec<u8>, index: u32, text: &str) {
        let mut d = Map::new();
        d.insert("content".into(), json!(text));
        self.delta(out, index, d);
    }

    pub fn reasoning(&mut self, out: &mut Vec<u8>, index: u32, text: &str) {
        let mut d = Map::new();
        d.insert("reasoning_content".into(), json!(text));
        self.delta(out, index, d);
    }

    /// A tool-call delta: `id` and `name` on the first delta of a call, arguments after.
    pub fn tool_call(
        &mut self,
        out: &mut Vec<u8>,
        index: u32,
        call_index: u32,
        id_name: Option<(&str, &str)>,
        arguments: &str,
    ) {
        let mut call = Map::new();
        call.insert("index".into(), json!(call_index));
        let mut function = Map::new();
        if let Some((id, name)) = id_name {
            call.insert("id".into(), json!(id));
            call.insert("type".into(), json!("function"));
            function.insert("name".into(), json!(name));
        }
        function.insert("arguments".into(), json!(arguments));
        call.insert("function".into(), Value::Object(function));
        let mut d = Map::new();
        d.insert("tool_calls".into(), json!([call]));
        self.delta(out, index, d);
    }

    pub fn finish_reason(&mut self, out: &mut Vec<u8>, index: u32, reason: &str) {
        if self.closed {
            return;
        }
        if !self.roles_sent.contains(&index) {
            self.delta(out, index, Map::new());
        }
        let c = json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": reason}]);
        sse::write_data(out, &self.chunk(c, None));
    }

    /// The usage chunk: no choices, only usage (as OpenAI sends it with `include_usage`).
    pub fn usage(&mut self, out: &mut Vec<u8>, usage: &Usage) {
        if self.closed {
            return;
        }
        sse::write_data(out, &self.chunk(json!([]), Some(usage.to_json())));
    }

    pub fn done(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        self.closed = true;
        sse::write_data(out, b"[DONE]");
    }

    /// An OpenAI-style error event; the stream ends after it (no `[DONE]`: the answer is not
    /// complete, and a client must not mistake it for a normal end).
    pub fn error(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        if self.closed {
            return;
        }
        self.closed = true;
        sse::write_data(out, &err.body());
    }
}

/// Error for an upstream stream that ended before its final event.
pub fn cut_short(provider: &str) -> GatewayError {
    GatewayError::new(
        502,
        "server_error",
        format!("The {provider} stream ended before the answer was complete."),
    )
    .with_code("upstream_stream_cut")
}

/// Error for an upstream event that is not what the provider's wire format allows.
pub fn broken_event(provider: &str, detail: impl std::fmt::Display) -> GatewayError {
    GatewayError::bad_upstream(format!(
        "The {provider} stream sent an invalid event: {detail}"
    ))
}

/// Test helper shared by the translator tests: feeds `input` split at `cuts` and returns the
/// parsed OpenAI events (`[DONE]` as the string "[DONE]").
#[cfg(test)]
pub fn run_split(t: &mut dyn StreamTranslator, input: &[u8], cuts: &[usize]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&input.len())) {
        let c = c.clamp(start, input.len());
        out.extend(t.feed(&input[start..c]));
        start = c;
    }
    out.extend(t.finish());
    let mut p = SseParser::default();
    let mut events = p.feed(&out).unwrap();
    events.extend(p.finish().unwrap());
    assert!(!p.has_pending());
    events
        .into_iter()
        .map(|e| {
            if e.data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(&e.data).unwrap()
            }
        })
        .collect()
}

/// Test helper: what an OpenAI client would assemble from the chunks.
#[cfg(test)]
#[derive(Debug, Default, PartialEq)]
pub struct Assembled {
    pub role: Option<String>,
    pub content: String,
    pub reasoning: String,
    pub tool_calls: Vec<(String, String, String)>,
    pub finish: Option<String>,
    pub usage: Option<Value>,
    pub done: bool,
    pub error: Option<Value>,
    pub chunks_after_usage: usize,
}

#[cfg(test)]
pub fn assemble(events: &[Value]) -> Assembled {
    let mut a = Assembled::default();
    for e in events {
        if e == "[DONE]" {
            a.done = true;
            continue;
        }
        assert!(!a.done, "event after [DONE]");
        if e.get("error").is_some() {
            a.error = Some(e["error"].clone());
            continue;
        }
        assert_eq!(e["object"], "chat.completion.chunk");
        if a.usage.is_some() {
            a.chunks_after_usage += 1;
        }
        if let Some(u) = e.get("usage") {
            a.usage = Some(u.clone());
        }
        for c in e["choices"].as_array().unwrap() {
            assert_eq!(c["index"], 0);
            let d = &c["delta"];
            if let Some(r) = d.get("role") {
                assert!(a.role.is_none(), "role twice");
                a.role = Some(r.as_str().unwrap().to_string());
            } else {
                assert!(a.role.is_some(), "first chunk without role: {e}");
            }
            if let Some(t) = d.get("content").and_then(Value::as_str) {
                a.content.push_str(t);
            }
            if let Some(t) = d.get("reasoning_content").and_then(Value::as_str) {
                a.reasoning.push_str(t);
            }
            for tc in d
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let i = tc["index"].as_u64().unwrap() as usize;
                if i == a.tool_calls.len() {
                    a.tool_calls.push((
                        tc["id"].as_str().unwrap().to_string(),
                        tc["function"]["name"].as_str().unwrap().to_string(),
                        String::new(),
                    ));
                }
                a.tool_calls[i]
                    .2
                    .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
            }
            if let Some(f) = c["finish_reason"].as_str() {
                a.finish = Some(f.to_string());
            }
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_once_then_content_then_done() {
        let mut w = ChunkWriter::new("chatcmpl-1".into(), "m".into(), 7);
        let mut out = Vec::new();
        w.content(&mut out, 0, "he");
        w.content(&mut out, 0, "llo");
        w.finish_reason(&mut out, 0, "stop");
        w.usage(
            &mut out,
            &Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                ..Default::default()
            },
        );
        w.done(&mut out);
        w.content(&mut out, 0, "late");
        let mut p = SseParser::default();
        let ev: Vec<Value> = p
            .feed(&out)
            .unwrap()
            .into_iter()
            .map(|e| {
                if e.data == "[DONE]" {
                    json!("[DONE]")
                } else {
                    serde_json::from_str(&e.data).unwrap()
                }
            })
            .collect();
        let a = assemble(&ev);
        assert_eq!(a.content, "hello");
        assert_eq!(a.finish.as_deref(), Some("stop"));
        assert_eq!(a.usage.unwrap()["total_tokens"], 3);
        assert!(a.done);
    }
}
