//! An OpenAI chunk stream (what every backend's stream translator writes) as Anthropic's event
//! stream: `message_start`, `ping`, `content_block_start` / `_delta` / `_stop` with
//! `text_delta`, `thinking_delta` and `input_json_delta`, `message_delta` with the stop reason
//! and usage, `message_stop`. Tool arguments pass on as they come, split anywhere. An error
//! chunk, or a stream that ends without finishing, becomes Anthropic's `error` event and the
//! stream ends there (no `message_stop`), as Anthropic's own streams end on an error.

use super::answer::stop_reason;
use super::envelope;
use crate::error::GatewayError;
use crate::sse::SseParser;
use crate::stream::StreamTranslator;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A tool call, by its OpenAI index.
    Tool(u64),
}

/// Translates OpenAI chunks to Anthropic events for one stream.
pub struct ChunksToEvents {
    parser: SseParser,
    model: String,
    started: bool,
    /// The open block and its Anthropic index.
    open: Option<(Block, u64)>,
    next_index: u64,
    finish: Option<String>,
    usage: Option<Value>,
    ended: bool,
}

impl ChunksToEvents {
    /// `model`: the name the client asked for (what its `message_start` shows).
    pub fn new(model: &str) -> Self {
        ChunksToEvents {
            parser: SseParser::default(),
            model: model.to_string(),
            started: false,
            open: None,
            next_index: 0,
            finish: None,
            usage: None,
            ended: false,
        }
    }

    fn emit(out: &mut Vec<u8>, kind: &str, data: &Value) {
        crate::sse::write_event(out, kind, data.to_string().as_bytes());
    }

    fn start(&mut self, id: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = if id.starts_with("msg_") {
            id.to_string()
        } else {
            format!("msg_{id}")
        };
        Self::emit(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        );
        Self::emit(out, "ping", &json!({"type": "ping"}));
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            Self::emit(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    /// Makes `block` the open one (closing another), starting it with `start`.
    fn open(&mut self, block: Block, start: Value, out: &mut Vec<u8>) -> u64 {
        if let Some((b, index)) = self.open {
            if b == block {
                return index;
            }
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        Self::emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        self.open = Some((block, index));
        index
    }

    fn delta(out: &mut Vec<u8>, index: u64, delta: Value) {
        Self::emit(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    fn error(&mut self, e: &GatewayError, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.ended = true;
        Self::emit(out, "error", &envelope::value(e));
    }

    fn chunk(&mut self, v: &Value, out: &mut Vec<u8>) {
        if let Some(err) = v.get("error") {
            let status = err
                .get("code")
                .and_then(Value::as_u64)
                .map_or(502, |c| c as u16);
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("The upstream stream failed.");
            self.error(
                &GatewayError::new(status.clamp(400, 599), "server_error", message),
                out,
            );
            return;
        }
        self.start(v.get("id").and_then(Value::as_str).unwrap_or("stream"), out);
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = v.pointer("/choices/0") else {
            return;
        };
        let d = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(r) = d
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            let i = self.open(
                Block::Thinking,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                out,
            );
            Self::delta(out, i, json!({"type": "thinking_delta", "thinking": r}));
        }
        if let Some(t) = d
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            let i = self.open(Block::Text, json!({"type": "text", "text": ""}), out);
            Self::delta(out, i, json!({"type": "text_delta", "text": t}));
        }
        for call in d
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let n = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let start = json!({"type": "tool_use", "id": call.get("id").cloned().unwrap_or_default(),
                               "name": call.pointer("/function/name").cloned().unwrap_or_default(),
                               "input": {}});
            let i = self.open(Block::Tool(n), start, out);
            if let Some(a) = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                Self::delta(
                    out,
                    i,
                    json!({"type": "input_json_delta", "partial_json": a}),
                );
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        let Some(finish) = self.finish.clone() else {
            self.error(&crate::stream::cut_short("upstream"), out);
            return;
        };
        self.ended = true;
        self.start("stream", out);
        self.close(out);
        let mut usage = super::answer::usage(self.usage.as_ref());
        if let Some(u) = usage.as_object_mut() {
            u.remove("cache_creation_input_tokens");
        }
        Self::emit(
            out,
            "message_delta",
            &json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(Some(&finish)), "stop_sequence": null}, "usage": usage}),
        );
        Self::emit(out, "message_stop", &json!({"type": "message_stop"}));
    }

    fn events(&mut self, events: Vec<crate::sse::SseEvent>, out: &mut Vec<u8>) {
        for ev in events {
            if self.ended {
                break;
            }
            if ev.data == "[DONE]" {
                self.end(out);
                continue;
            }
            match serde_json::from_str::<Value>(&ev.data) {
                Ok(v) => self.chunk(&v, out),
                Err(e) => self.error(&crate::stream::broken_event("upstream", e), out),
            }
        }
    }
}

impl StreamTranslator for ChunksToEvents {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match self.parser.feed(chunk) {
            Ok(events) => self.events(events, &mut out),
            Err(e) => self.error(&crate::stream::broken_event("upstream", e), &mut out),
        }
        out
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.parser.finish() {
            Ok(events) => self.events(events, &mut out),
            Err(e) => self.error(&crate::stream::broken_event("upstream", e), &mut out),
        }
        self.end(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(chunks: &[Value]) -> Vec<u8> {
        let mut b = Vec::new();
        for c in chunks {
            b.extend_from_slice(format!("data: {c}\n\n").as_bytes());
        }
        b.extend_from_slice(b"data: [DONE]\n\n");
        b
    }

    /// (event name, data) of every event, from the bytes fed in pieces cut at `cuts`.
    fn run(input: &[u8], cuts: &[usize]) -> Vec<(String, Value)> {
        let mut t = ChunksToEvents::new("claude-x");
        let (mut out, mut start) = (Vec::new(), 0);
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            let c = c.clamp(start, input.len());
            out.extend(t.feed(&input[start..c]));
            start = c;
        }
        out.extend(t.finish());
        let mut p = SseParser::default();
        let events = p.feed(&out).unwrap();
        events
            .into_iter()
            .map(|e| {
                (
                    e.event.unwrap_or_default(),
                    serde_json::from_str(&e.data).unwrap(),
                )
            })
            .collect()
    }

    fn chunk(delta: Value, finish: Option<&str>) -> Value {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    #[test]
    fn text_thinking_and_a_split_tool_call_become_anthropic_events_wherever_cut() {
        let input = sse(&[
            chunk(
                json!({"role": "assistant", "reasoning_content": "hmm"}),
                None,
            ),
            chunk(json!({"content": "Hi "}), None),
            chunk(json!({"content": "there"}), None),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"ci"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\":\"Paris\"}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 5}}),
        ]);
        for cuts in [
            vec![],
            vec![1, 7, 50, 51, 200],
            (0..input.len()).step_by(13).collect(),
        ] {
            let ev = run(&input, &cuts);
            let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "message_start",
                    "ping",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_stop",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_delta",
                    "content_block_stop",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_delta",
                    "content_block_stop",
                    "message_delta",
                    "message_stop"
                ],
                "{cuts:?}"
            );
            assert_eq!(ev[0].1["message"]["model"], "claude-x");
            assert_eq!(ev[2].1["content_block"]["type"], "thinking");
            assert_eq!(
                ev[9].1["content_block"],
                json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {}})
            );
            let args: String = ev
                .iter()
                .filter_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Value::as_str))
                .collect();
            assert_eq!(
                serde_json::from_str::<Value>(&args).unwrap(),
                json!({"city": "Paris"})
            );
            let text: String = ev
                .iter()
                .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
                .collect();
            assert_eq!(text, "Hi there");
            assert_eq!(ev[13].1["delta"]["stop_reason"], "tool_use");
            assert_eq!(ev[13].1["usage"]["output_tokens"], 5);
            assert_eq!(ev[13].1["usage"]["input_tokens"], 9);
            // Indexes count up from 0, one per block.
            let idx: Vec<u64> = ev
                .iter()
                .filter(|(n, _)| n == "content_block_start")
                .map(|(_, d)| d["index"].as_u64().unwrap())
                .collect();
            assert_eq!(idx, [0, 1, 2]);
        }
    }

    #[test]
    fn an_error_chunk_or_a_cut_stream_ends_with_an_error_event() {
        let mut input = sse(&[chunk(json!({"content": "partial"}), None)]);
        input.truncate(input.len() - b"data: [DONE]\n\n".len());
        let ev = run(&input, &[]);
        assert_eq!(ev.last().unwrap().0, "error");
        assert_eq!(ev.last().unwrap().1["type"], "error");
        assert!(!ev.iter().any(|(n, _)| n == "message_stop"));
        let err = format!(
            "data: {}\n\n",
            json!({"error": {"message": "overloaded", "type": "server_error", "code": 503}})
        );
        let ev = run(err.as_bytes(), &[]);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].1["error"]["type"], "overloaded_error");
    }
}
