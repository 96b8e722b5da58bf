//! Fuzz entry points: everything a client's body or a provider's answer reaches in the core, run
//! on arbitrary bytes. A panic here would trap the VM of a worker, so none may happen.
//!
//! The bounded mutational run below is part of `make test` (seconds, natively and on wasm);
//! the coverage-guided targets in `fuzz/` call the same two functions for minutes
//! (`make fuzz`).

use crate::backend::Backend;
use crate::pii::{Redactor, Rehydrator, Scanner, SseRehydrator};
use crate::providers::{ClientApi, ClientHints, Plan};
use crate::{cache, contract, json, openai, usage};
use serde_json::{json, Value};

/// What the entry points reuse between inputs (compiled once per thread, as a VM does).
struct Ctx {
    backends: Vec<Backend>,
    scanner: Option<Scanner>,
}

thread_local! {
    static CTX: Ctx = Ctx {
        backends: backends(),
        scanner: Scanner::from_json(br#"{"scan_output": true}"#).ok(),
    };
}

fn backends() -> Vec<Backend> {
    [
        json!({"provider": "openai"}),
        json!({"provider": "openai", "models": {"*": "renamed"}}),
        json!({"provider": "azure", "models": {"m": "dep"}}),
        json!({"provider": "anthropic"}),
        json!({"provider": "gemini"}),
    ]
    .iter()
    .filter_map(|v| Backend::from_json(v).ok())
    .collect()
}

/// A client's request body: parsed, validated, planned for every backend, redacted,
/// estimated, keyed; and the same bytes as a path and a model name.
pub fn request(data: &[u8]) {
    CTX.with(|ctx| request_in(ctx, data));
}

fn request_in(ctx: &Ctx, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = contract::route("POST", &text);
    let _ = contract::check_model(&text);
    let _ = contract::escape_for_header(&text);
    let _ = json::parse_unique(&text);
    let hints = ClientHints::default();
    for b in &ctx.backends {
        for api in [
            ClientApi::OpenAiChat,
            ClientApi::AnthropicMessages,
            ClientApi::AnthropicCountTokens,
        ] {
            let _ = b.plan_for(api, data, &hints);
        }
    }
    let _ = json::replace_top_level_string(&text, "model", "renamed");
    let Ok(mut v) = openai::parse_body(data) else {
        return;
    };
    let _ = openai::validate(&v);
    let _ = crate::api::anthropic::request::validate(&v);
    let _ = crate::api::anthropic::request::to_openai(&v, "m");
    let _ = cache::messages_key("team:t", &v);
    let _ = usage::estimate_prompt_tokens(&v);
    let _ = cache::key("team:t", &v);
    let _ = openai::force_stream_usage(data, &v);
    if let Some(s) = &ctx.scanner {
        let _ = Redactor::new(s).redact_request(&mut v);
    }
}

const REQUEST: &[u8] =
    br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}"#;

/// The same as a Messages request (the Anthropic front).
const MESSAGES: &[u8] =
    br#"{"model":"m","stream":true,"max_tokens":9,"messages":[{"role":"user","content":"hi"}],"tools":[{"name":"f","input_schema":{"type":"object"}}]}"#;

/// A provider's answer: read by every translator, JSON and streamed in three pieces, and by
/// the response-side taps (usage, re-hydration, the cache's assembler).
pub fn answer(data: &[u8]) {
    CTX.with(|ctx| answer_in(ctx, data));
}

fn answer_in(ctx: &Ctx, data: &[u8]) {
    let (a, rest) = data.split_at(data.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let hints = ClientHints::default();
    let plans = ctx.backends.iter().flat_map(|b| {
        [
            b.plan(REQUEST),
            b.plan_for(ClientApi::AnthropicMessages, MESSAGES, &hints),
        ]
    });
    for plan in plans {
        let Ok(Plan { response, .. }) = plan else {
            continue;
        };
        let _ = response.translate_json(data, 1);
        let _ = response.map_error(429, data, Some("7"), Some("ThrottlingException:x"));
        let mut t = response.stream_translator(1);
        for piece in [a, b, c] {
            let _ = t.feed(piece);
        }
        let _ = t.finish();
    }
    let mut tap = usage::UsageTap::new(true);
    let mut asm = cache::Assembler::new(1 << 20);
    let mut messages = cache::MessageAssembler::new(1 << 20);
    let mut rehydrate = SseRehydrator::new(Rehydrator::new(&[(
        "[EMAIL_1]".to_string(),
        "a@b.co".to_string(),
    )]));
    for piece in [a, b, c] {
        let _ = tap.feed(piece);
        asm.feed(piece);
        messages.feed(piece);
        let _ = rehydrate.feed(piece);
    }
    if let Some(v) = messages.finish(true) {
        let _ = cache::replay_messages_sse(&v);
    }
    let _ = tap.finish();
    let _ = rehydrate.finish();
    if let Some(v) = asm.finish(true) {
        let _ = cache::replay_sse(&v, true);
    }
    let _ = Rehydrator::new(&[("[EMAIL_1]".into(), "x".into())]).json(data);
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        let _ = usage::completion_usage(&v);
        let _ = cache::is_storable(&v, true);
        let _ = cache::is_storable_message(&v, true);
        let _ = crate::api::anthropic::answer::message(&v, "m");
    }
    if let Some(s) = &ctx.scanner {
        let _ = crate::pii::scan_output_json(s, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: the same inputs on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    const TOKENS: &[&[u8]] = &[
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\\u0000",
        b"\\ud800",
        b"\\",
        b"\n\n",
        b"\r\n",
        b"data: ",
        b"event: error\n",
        b"[DONE]",
        b"null",
        b"-1",
        b"1e999",
        b"18446744073709551616",
        b"\xff\xfe",
        b"\xf0\x9f\x98",
        b"\xe2\x82\xac",
        b"\"model\":\"..\"",
        b"\"messages\":",
        b"\"content\":",
        b"\"tool_calls\":[{}]",
        b"\"usage\":{\"prompt_tokens\":-5}",
        b"[EMAIL_1]",
        b"[EMAIL_",
        b"\"index\":99999999999",
        b"\"choices\":[]",
    ];

    fn mutate(rng: &mut Rng, seeds: &[&[u8]]) -> Vec<u8> {
        let mut v = seeds[rng.below(seeds.len())].to_vec();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(v.len() + 1);
            match rng.below(6) {
                0 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v[i] ^= 1 << rng.below(8);
                }
                1 if !v.is_empty() => {
                    let end = (at + 1 + rng.below(16)).min(v.len());
                    v.drain(at.min(end)..end);
                }
                2 => {
                    let t = TOKENS[rng.below(TOKENS.len())];
                    v.splice(at..at, t.iter().copied());
                }
                3 if !v.is_empty() => {
                    let start = rng.below(v.len());
                    let end = (start + 1 + rng.below(64)).min(v.len());
                    let piece = v[start..end].to_vec();
                    v.splice(at..at, piece);
                }
                4 => {
                    let other = seeds[rng.below(seeds.len())];
                    let from = rng.below(other.len());
                    v.truncate(at);
                    v.extend_from_slice(&other[from..]);
                }
                _ => v.truncate(at),
            }
        }
        v
    }

    const REQUESTS: &[&[u8]] = &[
        br#"{"model":"m","messages":[{"role":"user","content":"mail jane@corp.com"}]}"#,
        br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}"#,
        br#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"tool_calls":[{"id":"c__sig__S","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c__sig__S","content":"r"}],"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"}}}],"tool_choice":"required"}"#,
        br#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object"}}},"max_tokens":5,"n":2,"stop":["a"],"reasoning_effort":"low","temperature":0}"#,
        br#"{"model":"m","max_tokens":2000,"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],"thinking":{"type":"enabled","budget_tokens":1024},"output_config":{"effort":"max","format":{"type":"json_schema","schema":{"type":"object"}}},"messages":[{"role":"user","content":[{"type":"text","text":"q"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]},{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":""},{"type":"tool_use","id":"t1","name":"f","input":{"a":1}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"r"}]}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"}}"#,
    ];

    const ANSWERS: &[&[u8]] = &[
        br#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi [EMAIL_1]"},"finish_reason":"eos"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        b"data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"h[EMAIL_1]\"}}]}\n\ndata: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n",
        br#"{"id":"msg","type":"message","role":"assistant","model":"c","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"hi"},{"type":"tool_use","id":"t","name":"f","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":2,"cache_read_input_tokens":1}}"#,
        b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":5}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        br#"{"candidates":[{"index":0,"content":{"role":"model","parts":[{"text":"hi"},{"functionCall":{"name":"f","args":{"a":1}},"thoughtSignature":"S"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2,"cachedContentTokenCount":1,"thoughtsTokenCount":1}}"#,
        b"data: {\"candidates\":[{\"index\":0,\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"h\"}]}}]}\r\n\r\ndata: {\"candidates\":[{\"index\":0,\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"i\"}]},\"finishReason\":\"MAX_TOKENS\"}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":2}}\r\n\r\n",
        br#"{"error":{"code":429,"message":"quota key=AIzaSyA1b2C3d4E5f6G7h8I9j0","status":"RESOURCE_EXHAUSTED","details":[{"retryDelay":"31s"}]}}"#,
    ];

    /// A few thousand mutated inputs of each kind: no panic (a panic would trap a worker's VM).
    #[test]
    fn mutated_requests_and_answers_never_panic() {
        let rounds = if cfg!(target_arch = "wasm32") {
            1000
        } else {
            5000
        };
        let mut rng = Rng(0x5eed_cafe_f00d_d00d);
        for seed in REQUESTS {
            request(seed);
        }
        for seed in ANSWERS {
            answer(seed);
        }
        for _ in 0..rounds {
            request(&mutate(&mut rng, REQUESTS));
            answer(&mutate(&mut rng, ANSWERS));
        }
    }
}
