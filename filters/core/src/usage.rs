//! What a request costs: the prompt estimate made before forwarding, the usage read from the
//! answer (JSON, or an OpenAI SSE stream, whose usage chunk can also be removed for clients that
//! did not ask for it), and prices.

use crate::openai::Usage;
use crate::sse::{self, SseEvent, SseParser};
use serde::Deserialize;
use serde_json::Value;

/// Prompt tokens estimated from a request body, by character class: ASCII letters 4 per
/// token, digits 3 per token, each ASCII punctuation mark a token, non-ASCII bytes 4.5 per
/// token, whitespace free; plus 4 tokens per message (role and framing), 3 to prime the answer,
/// and 765 per image (a high-detail 512 px tile set). Everything else the provider bills for
/// counts by the same rule on its JSON text: names, tool calls (name and arguments), tool
/// definitions, `response_format` schemas, legacy `functions`, a `tool_choice` object, a
/// `prediction`, audio and file parts. Against OpenAI's o200k_base tokenizer on English, code,
/// JSON, schema- and tool-heavy requests and seven other scripts it stays above the real count
/// (`make bench` prints the table). It errs high on purpose: it is a reservation.
pub fn estimate_prompt_tokens(body: &Value) -> u64 {
    let mut weight: u64 = 0; // in 36ths of a token
    let mut images: u64 = 0;
    let mut messages: u64 = 0;
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        messages += 1;
        if let Some(n) = m.get("name").and_then(Value::as_str) {
            weight += text_weight(n.as_bytes());
        }
        match m.get("content") {
            Some(Value::String(s)) => weight += text_weight(s.as_bytes()),
            Some(Value::Array(parts)) => {
                for p in parts {
                    if let Some(t) = p
                        .get("text")
                        .or_else(|| p.get("refusal"))
                        .and_then(Value::as_str)
                    {
                        weight += text_weight(t.as_bytes());
                    } else if p.get("image_url").is_some()
                        || p.get("type").and_then(Value::as_str) == Some("image")
                    {
                        images += 1;
                    } else {
                        // Audio, files, parts added later: their JSON text, an upper bound.
                        weight += json_weight(p);
                    }
                }
            }
            _ => {}
        }
        if let Some(r) = m.get("reasoning_content").and_then(Value::as_str) {
            weight += text_weight(r.as_bytes());
        }
        for c in m
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for field in ["/function/name", "/function/arguments"] {
                if let Some(a) = c.pointer(field).and_then(Value::as_str) {
                    weight += text_weight(a.as_bytes());
                }
            }
            weight += 36 * 4; // id and framing
        }
    }
    // An Anthropic Messages request's system prompt: a string or text blocks.
    match body.get("system") {
        Some(Value::String(s)) => weight += text_weight(s.as_bytes()),
        Some(v @ Value::Array(_)) => weight += json_weight(v),
        _ => {}
    }
    for field in [
        "tools",
        "functions",
        "response_format",
        "tool_choice",
        "prediction",
    ] {
        if let Some(v) = body.get(field).filter(|v| !v.is_string()) {
            weight += json_weight(v);
        }
    }
    weight.div_ceil(36) + messages * 4 + images * 765 + 3
}

/// Input tokens of an embeddings request (`input`: a string, strings, token ids), estimated
/// by the prompt rule: texts by character class plus one per input, token ids one each.
pub fn estimate_embedding_tokens(body: &Value) -> u64 {
    let one = |v: &Value| match v {
        Value::String(s) => text_weight(s.as_bytes()).div_ceil(36) + 1,
        Value::Number(_) => 1,
        Value::Array(a) => a.len() as u64,
        _ => 0,
    };
    match body.get("input") {
        Some(Value::Array(a)) => a.iter().map(one).sum(),
        Some(v) => one(v),
        None => 0,
    }
}

/// Token weight of a JSON value's text.
fn json_weight(v: &Value) -> u64 {
    text_weight(&serde_json::to_vec(v).unwrap_or_default())
}

/// Token weight of text in 36ths: letter 9, digit 12, punctuation 36, non-ASCII byte 8.
fn text_weight(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .map(|&b| match b {
            b'a'..=b'z' | b'A'..=b'Z' => 9,
            b'0'..=b'9' => 12,
            b' ' | b'\n' | b'\t' | b'\r' => 0,
            0..=0x7f => 36,
            _ => 8,
        })
        .sum()
}

/// Prices in nano-USD per token (USD per million tokens x 1000), integers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
}

impl Price {
    /// From USD per million tokens; negative or non-finite prices are refused.
    pub fn from_usd_per_million(
        input: f64,
        output: f64,
        cached_input: Option<f64>,
    ) -> Result<Price, String> {
        let conv = |x: f64, what: &str| {
            if x.is_finite() && (0.0..1e9).contains(&x) {
                Ok((x * 1000.0).round() as u64)
            } else {
                Err(format!(
                    "{what} price must be a non-negative number, got {x}"
                ))
            }
        };
        Ok(Price {
            input: conv(input, "input")?,
            output: conv(output, "output")?,
            cached_input: conv(cached_input.unwrap_or(input), "cached_input")?,
        })
    }

    /// Cost in micro-USD (rounded up), times `multiplier_permille / 1000`.
    pub fn cost(&self, usage: &Usage, multiplier_permille: u64) -> u64 {
        let cached = usage.cached_tokens.unwrap_or(0).min(usage.prompt_tokens);
        let fresh = usage.prompt_tokens - cached;
        let nanos = (fresh as u128 * self.input as u128)
            + (cached as u128 * self.cached_input as u128)
            + (usage.completion_tokens as u128 * self.output as u128);
        let nanos = nanos * multiplier_permille as u128 / 1000;
        u64::try_from(nanos.div_ceil(1000)).unwrap_or(u64::MAX)
    }
}

/// Largest believable token count for one request; larger (or negative) numbers are ignored.
pub const MAX_TOKENS_PER_REQUEST: u64 = 100_000_000;

#[derive(Deserialize)]
struct UsageView {
    prompt_tokens: Option<Value>,
    completion_tokens: Option<Value>,
    total_tokens: Option<Value>,
    prompt_tokens_details: Option<Value>,
}

fn count(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64)
        .filter(|&n| n <= MAX_TOKENS_PER_REQUEST)
}

/// Usage from a `usage` object, OpenAI's or Anthropic's (`input_tokens`, `output_tokens`,
/// cache reads and writes reported apart: the prompt is their sum); `None` when missing,
/// negative or absurd.
pub fn read_usage(u: &Value) -> Option<Usage> {
    if u.get("prompt_tokens").is_none() && u.get("input_tokens").is_some() {
        return read_anthropic_usage(u);
    }
    let view: UsageView = serde_json::from_value(u.clone()).ok()?;
    let prompt = count(view.prompt_tokens.as_ref())?;
    // An embeddings answer has no completion: its total is its prompt.
    let completion = match view.completion_tokens {
        None if count(view.total_tokens.as_ref()) == Some(prompt) => 0,
        c => count(c.as_ref())?,
    };
    let cached = view
        .prompt_tokens_details
        .as_ref()
        .and_then(|d| count(d.get("cached_tokens")));
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: cached,
        reasoning_tokens: None,
    })
}

fn read_anthropic_usage(u: &Value) -> Option<Usage> {
    let input = count(u.get("input_tokens"))?;
    let output = count(u.get("output_tokens"))?;
    let read = count(u.get("cache_read_input_tokens")).unwrap_or(0);
    let written = count(u.get("cache_creation_input_tokens")).unwrap_or(0);
    Some(Usage {
        prompt_tokens: input.saturating_add(read).saturating_add(written),
        completion_tokens: output,
        cached_tokens: (read > 0).then_some(read),
        reasoning_tokens: None,
    })
}

/// Usage and content size of a complete answer (parsed): a chat completion or an Anthropic
/// message.
pub fn completion_usage(v: &Value) -> (Option<Usage>, u64) {
    let usage = v.get("usage").and_then(read_usage);
    if v.get("type").and_then(Value::as_str) == Some("message") {
        let content = v
            .get("content")
            .map_or(0, |c| serde_json::to_vec(c).map_or(0, |b| b.len()));
        return (usage, content as u64);
    }
    let content: u64 = v
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let m = c.get("message");
            let text = m
                .and_then(|m| m.get("content"))
                .and_then(Value::as_str)
                .map_or(0, str::len);
            let calls = m
                .and_then(|m| m.get("tool_calls"))
                .map_or(0, |t| serde_json::to_vec(t).map_or(0, |b| b.len()));
            (text + calls) as u64
        })
        .sum();
    (usage, content)
}

#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChoiceView<'a>>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaView<'a>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Value>,
}

/// An Anthropic event, as much of it as the tap reads.
#[derive(Deserialize)]
struct EventView<'a> {
    #[serde(default)]
    message: Option<MessageView>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default, borrow)]
    delta: Option<BlockDeltaView<'a>>,
}

#[derive(Deserialize)]
struct MessageView {
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct BlockDeltaView<'a> {
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<std::borrow::Cow<'a, str>>,
}

/// Watches an SSE stream, OpenAI's or Anthropic's event stream (whose events are named):
/// reads its usage (OpenAI's usage chunk; Anthropic's `message_start` usage updated by
/// `message_delta`), counts what was generated (for a stream
/// cut short), notes `[DONE]` and error events, and, with `strip`, removes the usage chunk and
/// `usage` fields for a client that did not ask for them. Without `strip` the bytes pass
/// through untouched.
#[derive(Debug, Default)]
pub struct UsageTap {
    parser: SseParser,
    strip: bool,
    pub usage: Option<Usage>,
    /// Bytes of generated content and tool-call deltas seen.
    pub content_bytes: u64,
    pub done: bool,
    pub error: bool,
    /// Anthropic's usage so far (`message_start`'s, fields replaced by `message_delta`'s).
    anthropic: Option<serde_json::Map<String, Value>>,
}

impl crate::stream::StreamTranslator for UsageTap {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        UsageTap::feed(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        UsageTap::finish(self)
    }
}

impl UsageTap {
    pub fn new(strip: bool) -> Self {
        UsageTap {
            strip,
            ..Default::default()
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        match self.parser.feed(chunk) {
            Ok(events) => {
                let out = self.events(events);
                if self.strip {
                    out
                } else {
                    chunk.to_vec()
                }
            }
            // Not ours to judge (the translate filter reports broken streams): pass it on.
            Err(_) => chunk.to_vec(),
        }
    }

    /// Ends the stream; returns what is still to be written (only when stripping).
    pub fn finish(&mut self) -> Vec<u8> {
        let events = self.parser.finish().unwrap_or_default();
        let out = self.events(events);
        if self.strip {
            out
        } else {
            Vec::new()
        }
    }

    /// One Anthropic event (never stripped: Anthropic's usage is always part of the stream).
    fn anthropic_event(&mut self, name: &str, data: &str) {
        match name {
            "message_stop" => self.done = true,
            "error" => self.error = true,
            _ => {}
        }
        let Ok(view) = serde_json::from_str::<EventView>(data) else {
            return;
        };
        if let Some(d) = &view.delta {
            for t in [&d.text, &d.partial_json, &d.thinking]
                .into_iter()
                .flatten()
            {
                self.content_bytes += t.len() as u64;
            }
        }
        let update = match name {
            "message_start" => view.message.and_then(|m| m.usage),
            "message_delta" => view.usage,
            _ => None,
        };
        if let Some(Value::Object(u)) = update {
            let merged = self.anthropic.get_or_insert_with(Default::default);
            merged.extend(u.into_iter().filter(|(_, v)| !v.is_null()));
            if let Some(u) = read_anthropic_usage(&Value::Object(merged.clone())) {
                self.usage = Some(u);
            }
        }
    }

    fn events(&mut self, events: Vec<SseEvent>) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in events {
            if let Some(name) = ev.event.as_deref() {
                self.anthropic_event(name, &ev.data);
                if self.strip {
                    write_raw(&mut out, Some(name), &ev.data);
                }
                continue;
            }
            let data = ev.data;
            if data == "[DONE]" {
                self.done = true;
                sse::write_data(&mut out, data.as_bytes());
                continue;
            }
            let mut drop = false;
            if let Ok(view) = serde_json::from_str::<ChunkView>(&data) {
                if view.error.is_some() {
                    self.error = true;
                }
                for c in &view.choices {
                    if let Some(d) = &c.delta {
                        self.content_bytes += d.content.as_ref().map_or(0, |s| s.len() as u64);
                        self.content_bytes += d
                            .tool_calls
                            .as_ref()
                            .map_or(0, |t| t.to_string().len() as u64);
                    }
                }
                if let Some(u) = view.usage.as_ref().filter(|u| !u.is_null()) {
                    if let Some(u) = read_usage(u) {
                        self.usage = Some(u);
                    }
                    drop = view.choices.is_empty();
                }
            }
            if !self.strip {
                continue;
            }
            if drop {
                continue;
            }
            if data.contains("\"usage\"") {
                match serde_json::from_str::<Value>(&data) {
                    Ok(Value::Object(mut o)) => {
                        o.remove("usage");
                        sse::write_data(&mut out, &serde_json::to_vec(&o).unwrap_or_default());
                    }
                    _ => write_raw(&mut out, ev.event.as_deref(), &data),
                }
            } else {
                write_raw(&mut out, ev.event.as_deref(), &data);
            }
        }
        out
    }

    /// Tokens generated so far, estimated from bytes (4 per token) when usage is unknown.
    pub fn estimated_completion_tokens(&self) -> u64 {
        self.content_bytes.div_ceil(4)
    }
}

fn write_raw(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn anthropic_usage_from_events_and_messages() {
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":30,\"cache_creation_input_tokens\":5,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hello\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
        for cut in 0..stream.len() {
            let mut t = UsageTap::new(false);
            let mut out = t.feed(&stream.as_bytes()[..cut]);
            out.extend(t.feed(&stream.as_bytes()[cut..]));
            out.extend(t.finish());
            assert_eq!(
                out,
                stream.as_bytes(),
                "a tap never changes Anthropic's stream"
            );
            let u = t.usage.unwrap();
            assert_eq!(
                (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
                (45, 7, Some(30))
            );
            assert!(t.done && !t.error && t.content_bytes == 5);
        }
        let m = json!({"type": "message", "content": [{"type": "text", "text": "hi"}],
                       "usage": {"input_tokens": 3, "output_tokens": 2}});
        let (u, content) = completion_usage(&m);
        assert_eq!(
            u.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((3, 2))
        );
        assert!(content > 0);
    }

    #[test]
    fn estimates_prompt_tokens() {
        let body = json!({"messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "abcdefgh"}, {"type": "image_url", "image_url": {"url": "x"}}]}
        ]});
        // "You are terse." 11 letters + 1 dot, "abcdefgh" 8 letters: (19*9 + 36)/36 -> 6 tokens;
        // 2 messages -> 8, one image -> 765, priming 3
        assert_eq!(estimate_prompt_tokens(&body), 6 + 8 + 765 + 3);
        assert_eq!(text_weight("12 ü!".as_bytes()), 12 + 12 + 8 + 8 + 36);
        assert_eq!(estimate_prompt_tokens(&json!({})), 3);
    }

    #[test]
    fn prices_in_integers() {
        let p = Price::from_usd_per_million(2.5, 10.0, Some(1.25)).unwrap();
        let u = Usage {
            prompt_tokens: 1000,
            completion_tokens: 100,
            cached_tokens: Some(400),
            reasoning_tokens: None,
        };
        // 600 * 2.5 + 400 * 1.25 + 100 * 10 = 1500 + 500 + 1000 micro-USD
        assert_eq!(p.cost(&u, 1000), 3000);
        assert_eq!(p.cost(&u, 1500), 4500);
        assert!(Price::from_usd_per_million(-1.0, 1.0, None).is_err());
        assert!(Price::from_usd_per_million(f64::NAN, 1.0, None).is_err());
        let huge = Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: u64::MAX,
            ..Default::default()
        };
        assert_eq!(
            Price::from_usd_per_million(1e8, 1e8, None)
                .unwrap()
                .cost(&huge, 1000),
            u64::MAX
        );
    }

    #[test]
    fn usage_bad_numbers_are_ignored() {
        assert!(read_usage(&json!({"prompt_tokens": -1, "completion_tokens": 2})).is_none());
        assert!(read_usage(&json!({"prompt_tokens": 1e30, "completion_tokens": 2})).is_none());
        assert!(read_usage(&json!({"prompt_tokens": "7", "completion_tokens": 2})).is_none());
        // Embeddings: no completion, the total is the prompt.
        let u = read_usage(&json!({"prompt_tokens": 7, "total_tokens": 7})).unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (7, 0));
        assert!(read_usage(&json!({"prompt_tokens": 7, "total_tokens": 9})).is_none());
        assert!(read_usage(&json!({"prompt_tokens": 7})).is_none());
        assert_eq!(
            estimate_embedding_tokens(&json!({"input": "hello world"})),
            4
        );
        assert_eq!(estimate_embedding_tokens(&json!({"input": [1, 2, 3]})), 3);
        assert_eq!(
            estimate_embedding_tokens(&json!({"input": [[1, 2], [3]]})),
            3
        );
        assert_eq!(
            estimate_embedding_tokens(&json!({"input": ["ab", "cd"]})),
            4
        );
        let u = read_usage(&json!({"prompt_tokens": 7, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 3}})).unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (7, 2, Some(3))
        );
    }

    const STREAM: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"h\u{e9}llo\"}}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\ndata: [DONE]\n\n";

    #[test]
    fn tap_reads_usage_and_strips_at_every_split() {
        let b = STREAM.as_bytes();
        for cut in 0..b.len() {
            for strip in [false, true] {
                let mut t = UsageTap::new(strip);
                let mut out = t.feed(&b[..cut]);
                out.extend(t.feed(&b[cut..]));
                out.extend(t.finish());
                assert_eq!(t.usage.unwrap().prompt_tokens, 9);
                assert!(t.done);
                assert_eq!(t.content_bytes, 6);
                let text = String::from_utf8(out).unwrap();
                if strip {
                    assert!(
                        !text.contains("usage") && text.ends_with("data: [DONE]\n\n"),
                        "{text}"
                    );
                } else {
                    assert_eq!(text, STREAM);
                }
            }
        }
    }

    #[test]
    fn tap_on_a_cut_stream_estimates() {
        let mut t = UsageTap::new(false);
        t.feed(&STREAM.as_bytes()[..STREAM.find("data: {\"choices\":[]").unwrap()]);
        t.finish();
        assert!(t.usage.is_none() && !t.done);
        assert_eq!(t.estimated_completion_tokens(), 2);
    }
}
