//! OpenAI chat completions <-> Anthropic Messages, JSON and SSE.
//!
//! [`request`] builds the provider request, [`response`] maps a JSON answer, [`stream`]
//! maps the event stream; what they share (finish reasons, usage, errors) is here.

use crate::error::GatewayError;
use crate::openai::{
    image_source, ChatRequest, Choice, Completion, Content, ContentPart, ImageSource, Message,
    ResponseFormat, ToolChoice, Usage,
};
use crate::providers::{Plan, ResponsePlan, Target, Translator, UpstreamRequest};
use crate::sse::SseEvent;
use crate::stream::{broken_event, cut_short, ChunkWriter, EventTranslator, SseStream};
use serde_json::{json, Map, Value};

mod request;
mod response;
mod stream;

pub use request::*;
pub use response::*;
pub use stream::*;

const PROVIDER: &str = "anthropic";

pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`: used when neither the client nor the backend names one.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The OpenAI chat front on an Anthropic backend.
#[derive(Debug)]
pub struct OpenAiToAnthropic;

pub static TRANSLATOR: OpenAiToAnthropic = OpenAiToAnthropic;

impl Translator for OpenAiToAnthropic {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError> {
        let req = crate::openai::chat_request(body)?;
        let model = target.upstream_model(&req.model).to_string();
        let max_default = target.max_tokens_default.unwrap_or(DEFAULT_MAX_TOKENS);
        let (out, json_tool) = request(&req, &model, max_default)?;
        let version = target.api_version.unwrap_or(DEFAULT_ANTHROPIC_VERSION);
        let request = UpstreamRequest {
            path: format!("{}/messages", target.base_path),
            headers: vec![
                ("content-type", "application/json".to_string()),
                ("anthropic-version", version.to_string()),
            ],
            body: Some(serde_json::to_vec(&out).unwrap_or_default()),
        };
        Ok(Plan::chat(self, &req, model, json_tool, request))
    }

    fn response(
        &self,
        plan: &ResponsePlan,
        body: &[u8],
        created: u64,
    ) -> Result<Vec<u8>, GatewayError> {
        response(body, plan, created)
    }

    fn stream(
        &self,
        plan: &ResponsePlan,
        created: u64,
    ) -> Box<dyn crate::stream::StreamTranslator> {
        Box::new(stream(plan, created))
    }
}
fn finish_reason(stop_reason: Option<&str>, json_mode: bool) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") if !json_mode => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Anthropic's usage as it arrives: `message_start` has all of it, `message_delta` repeats only
/// what changed, so each field keeps its last known value.
#[derive(Debug, Clone, Copy, Default)]
struct AnthropicUsage {
    input: u64,
    cache_read: u64,
    cache_write: u64,
    output: u64,
}

impl AnthropicUsage {
    fn merge(&mut self, u: &Value) {
        let get = |k: &str| u.get(k).and_then(Value::as_u64);
        self.input = get("input_tokens").unwrap_or(self.input);
        self.cache_read = get("cache_read_input_tokens").unwrap_or(self.cache_read);
        self.cache_write = get("cache_creation_input_tokens").unwrap_or(self.cache_write);
        self.output = get("output_tokens").unwrap_or(self.output);
    }

    /// OpenAI's usage: prompt tokens are input + cache write + cache read, of which the reads
    /// are `cached_tokens`.
    fn openai(&self) -> Usage {
        Usage {
            prompt_tokens: self
                .input
                .saturating_add(self.cache_read)
                .saturating_add(self.cache_write),
            completion_tokens: self.output,
            cached_tokens: Some(self.cache_read),
            ..Default::default()
        }
    }
}

/// Status for an Anthropic error type met inside a stream.
fn error_status(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{parse_body, validate};
    use crate::stream::{assemble, run_split};

    fn req(body: Value) -> Result<(Value, Option<String>), GatewayError> {
        let v = parse_body(body.to_string().as_bytes()).unwrap();
        request(&validate(&v).unwrap(), "claude-x", 1000)
    }

    fn plan(json_tool: Option<&str>) -> ResponsePlan {
        ResponsePlan {
            translator: &TRANSLATOR,
            stream: true,
            json_tool: json_tool.map(str::to_string),
            client_model: "mock-claude".into(),
            upstream_model: "claude-x".into(),
            embeddings: None,
        }
    }

    #[test]
    fn systems_turns_tools_and_params() {
        let (v, jt) = req(json!({
            "model": "c", "max_completion_tokens": 50, "max_tokens": 9, "temperature": 0.5, "top_p": 0.9,
            "stop": "END", "user": "u1", "parallel_tool_calls": false, "tool_choice": "required",
            "tools": [{"type":"function","function":{"name":"get","description":"d","parameters":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}}}],
            "messages": [
                {"role":"system","content":"one"},
                {"role":"user","content":"hi"},
                {"role":"developer","content":[{"type":"text","text":"two"}]},
                {"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}},{"type":"image_url","image_url":{"url":"https://x/y.jpg"}}]},
                {"role":"assistant","content":"","tool_calls":[{"id":"t1","type":"function","function":{"name":"get","arguments":"{\"q\":\"a\"}"}},{"id":"t2","type":"function","function":{"name":"get","arguments":""}}]},
                {"role":"tool","tool_call_id":"t1","content":"r1"},
                {"role":"tool","tool_call_id":"t2","content":"r2"},
                {"role":"user","content":"thanks"}
            ]
        }))
        .unwrap();
        assert!(jt.is_none());
        assert_eq!(
            v["system"],
            json!([{"type":"text","text":"one"},{"type":"text","text":"two"}])
        );
        assert_eq!(v["max_tokens"], 50);
        assert_eq!(v["model"], "claude-x");
        assert_eq!(v["stop_sequences"], json!(["END"]));
        assert_eq!(v["metadata"]["user_id"], "u1");
        assert_eq!(
            v["tool_choice"],
            json!({"type":"any","disable_parallel_tool_use":true})
        );
        assert_eq!(v["tools"][0]["input_schema"]["required"], json!(["q"]));
        assert_eq!(v["tools"][0]["description"], "d");
        let m = v["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{m:#?}");
        assert_eq!(m[0]["role"], "user");
        assert_eq!(m[0]["content"].as_array().unwrap().len(), 4);
        assert_eq!(
            m[0]["content"][2]["source"],
            json!({"type":"base64","media_type":"image/png","data":"iVBO"})
        );
        assert_eq!(
            m[0]["content"][3]["source"],
            json!({"type":"url","url":"https://x/y.jpg"})
        );
        assert_eq!(
            m[1]["content"],
            json!([
            {"type":"tool_use","id":"t1","name":"get","input":{"q":"a"}},
            {"type":"tool_use","id":"t2","name":"get","input":{}}])
        );
        assert_eq!(m[2]["content"][0]["type"], "tool_result");
        assert_eq!(m[2]["content"][1]["tool_use_id"], "t2");
        assert_eq!(m[2]["content"][2], json!({"type":"text","text":"thanks"}));
    }

    #[test]
    fn default_max_tokens_tool_choice_forms_and_refusals() {
        let base = |extra: Value| {
            let mut b = json!({"model":"c","messages":[{"role":"user","content":"x"}],
                "tools":[{"type":"function","function":{"name":"f"}}]});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            req(b)
        };
        let (v, _) = base(json!({})).unwrap();
        assert_eq!(v["max_tokens"], 1000);
        assert_eq!(v["tool_choice"], json!({"type":"auto"}));
        assert_eq!(
            v["tools"][0]["input_schema"],
            json!({"type":"object","properties":{}})
        );
        assert_eq!(
            base(json!({"tool_choice":"none"})).unwrap().0["tool_choice"],
            json!({"type":"none"})
        );
        assert_eq!(
            base(json!({"tool_choice":{"type":"function","function":{"name":"f"}}}))
                .unwrap()
                .0["tool_choice"],
            json!({"type":"tool","name":"f"})
        );
        assert_eq!(
            base(json!({"n":2})).unwrap_err().param.as_deref(),
            Some("n")
        );
        assert_eq!(base(json!({"logprobs":true})).unwrap_err().status, 400);
        assert!(base(json!({"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}})).is_err());
        let e =
            req(json!({"model":"c","messages":[{"role":"system","content":"only"}]})).unwrap_err();
        assert_eq!(e.status, 400);
        let e = req(json!({"model":"c","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{nope"}}]}]})).unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].tool_calls[0].function.arguments")
        );
        let e = req(json!({"model":"c","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x"}}]}]})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
    }

    #[test]
    fn json_modes_and_thinking() {
        let (v, jt) = req(json!({"model":"c","messages":[{"role":"user","content":"x"}],
            "response_format":{"type":"json_schema","json_schema":{"name":"person","schema":{"type":"object","properties":{"n":{"type":"string"}}}}}})).unwrap();
        assert_eq!(jt.as_deref(), Some("person"));
        assert_eq!(v["tool_choice"], json!({"type":"tool","name":"person"}));
        let (v, _) = req(json!({"model":"c","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}})).unwrap();
        assert_eq!(v["system"][0]["text"], JSON_OBJECT_INSTRUCTION);
        let (v, _) = req(json!({"model":"c","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low","max_tokens":100,"temperature":0.2})).unwrap();
        assert_eq!(
            v["thinking"],
            json!({"type":"enabled","budget_tokens":1024})
        );
        assert_eq!(v["max_tokens"], 1124);
        assert!(v.get("temperature").is_none());
        assert_eq!(req(json!({"model":"c","messages":[{"role":"user","content":"x"}],"reasoning_effort":"max"})).unwrap_err().param.as_deref(), Some("reasoning_effort"));
    }

    #[test]
    fn json_response() {
        let body = json!({"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
            "content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"text","text":"Hi "},{"type":"text","text":"there"},
                {"type":"tool_use","id":"toolu_1","name":"get","input":{"q":"a"}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":4,"cache_creation_input_tokens":2}});
        let out: Value =
            serde_json::from_slice(&response(body.to_string().as_bytes(), &plan(None), 9).unwrap())
                .unwrap();
        assert_eq!(out["id"], "chatcmpl-msg_1");
        assert_eq!(out["object"], "chat.completion");
        let c = &out["choices"][0];
        assert_eq!(c["message"]["content"], "Hi there");
        assert_eq!(c["message"]["reasoning_content"], "hmm");
        assert_eq!(
            c["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"q\":\"a\"}"
        );
        assert_eq!(c["finish_reason"], "tool_calls");
        assert_eq!(out["usage"]["prompt_tokens"], 16);
        assert_eq!(out["usage"]["completion_tokens"], 5);
        assert_eq!(out["usage"]["total_tokens"], 21);
        assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        for (sr, fr) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
        ] {
            let b = json!({"content":[{"type":"text","text":"x"}],"stop_reason":sr});
            let out: Value = serde_json::from_slice(
                &response(b.to_string().as_bytes(), &plan(None), 0).unwrap(),
            )
            .unwrap();
            assert_eq!(out["choices"][0]["finish_reason"], fr);
        }
        let b = json!({"content":[{"type":"tool_use","id":"t","name":"person","input":{"n":"A"}}],"stop_reason":"tool_use"});
        let out: Value = serde_json::from_slice(
            &response(b.to_string().as_bytes(), &plan(Some("person")), 0).unwrap(),
        )
        .unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "{\"n\":\"A\"}");
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert!(out["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(response(b"<html>", &plan(None), 0).unwrap_err().status, 502);
        assert_eq!(response(b"{}", &plan(None), 0).unwrap_err().status, 502);
    }

    pub(crate) fn anthropic_stream() -> String {
        let evs = [
            (
                "message_start",
                json!({"type":"message_start","message":{"id":"msg_9","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":12,"output_tokens":1,"cache_read_input_tokens":3}}}),
            ),
            ("ping", json!({"type":"ping"})),
            (
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"let me see"}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}),
            ),
            (
                "content_block_stop",
                json!({"type":"content_block_stop","index":0}),
            ),
            (
                "content_block_start",
                json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Héllo 😀 "}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"wörld"}}),
            ),
            (
                "content_block_stop",
                json!({"type":"content_block_stop","index":1}),
            ),
            (
                "content_block_start",
                json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_a","name":"get","input":{}}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"q\": \"ü"}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"\"}"}}),
            ),
            (
                "content_block_stop",
                json!({"type":"content_block_stop","index":2}),
            ),
            (
                "content_block_start",
                json!({"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_b","name":"put","input":{}}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{}"}}),
            ),
            (
                "content_block_stop",
                json!({"type":"content_block_stop","index":3}),
            ),
            (
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":42}}),
            ),
            ("message_stop", json!({"type":"message_stop"})),
        ];
        evs.iter()
            .map(|(e, d)| format!("event: {e}\r\ndata: {d}\r\n\r\n"))
            .collect()
    }

    #[test]
    fn stream_at_every_split_point() {
        let s = anthropic_stream();
        let b = s.as_bytes();
        let expect = |ev: &[Value]| {
            let a = assemble(ev);
            assert_eq!(a.role.as_deref(), Some("assistant"));
            assert_eq!(a.content, "Héllo 😀 wörld");
            assert_eq!(a.reasoning, "let me see");
            assert_eq!(
                a.tool_calls,
                vec![
                    ("toolu_a".into(), "get".into(), "{\"q\": \"ü\"}".into()),
                    ("toolu_b".into(), "put".into(), "{}".into()),
                ]
            );
            assert_eq!(a.finish.as_deref(), Some("tool_calls"));
            let u = a.usage.unwrap();
            assert_eq!(
                (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64()),
                (Some(15), Some(42))
            );
            assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 3);
            assert!(a.done && a.error.is_none());
            assert_eq!(a.chunks_after_usage, 0);
        };
        for cut in 0..=b.len() {
            expect(&run_split(&mut stream(&plan(None), 1), b, &[cut]));
        }
        // Pseudo-random multi-way splits, including inside multi-byte characters.
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..300 {
            let mut cuts = Vec::new();
            for _ in 0..12 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                cuts.push((seed % b.len() as u64) as usize);
            }
            cuts.sort();
            expect(&run_split(&mut stream(&plan(None), 1), b, &cuts));
        }
        let ev = run_split(&mut stream(&plan(None), 1), b, &[]);
        assert_eq!(ev[0]["id"], "chatcmpl-msg_9");
        assert_eq!(ev[0]["model"], "claude-x");
    }

    #[test]
    fn empty_tool_input_is_an_empty_object_and_usage_keeps_message_start() {
        let evs = [
            json!({"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":2,"output_tokens":1}}}),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"now","input":{}}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}),
            json!({"type":"content_block_stop","index":0}),
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"input_tokens":11,"output_tokens":7}}),
            json!({"type":"message_stop"}),
        ];
        let s: String = evs.iter().map(|d| format!("data: {d}\n\n")).collect();
        let a = assemble(&run_split(&mut stream(&plan(None), 1), s.as_bytes(), &[]));
        assert_eq!(a.tool_calls, vec![("t".into(), "now".into(), "{}".into())]);
        let u = a.usage.unwrap();
        // 11 input (message_delta) + 5 cache write + 2 cache read (message_start).
        assert_eq!(u["prompt_tokens"], 18);
        assert_eq!(u["completion_tokens"], 7);
        assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 2);
    }

    #[test]
    fn stream_cut_or_error_ends_with_error_event() {
        let s = anthropic_stream();
        let cut = s.find("event: message_delta").unwrap();
        let a = assemble(&run_split(
            &mut stream(&plan(None), 1),
            &s.as_bytes()[..cut],
            &[],
        ));
        assert!(!a.done);
        assert_eq!(a.error.unwrap()["code"], "upstream_stream_cut");

        let mut s2 = s[..cut].to_string();
        s2.push_str("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        let a = assemble(&run_split(&mut stream(&plan(None), 1), s2.as_bytes(), &[]));
        let e = a.error.unwrap();
        assert_eq!(e["code"], "upstream_overloaded");
        assert!(e["message"].as_str().unwrap().contains("overloaded_error"));
        assert!(!a.done);

        let a = assemble(&run_split(
            &mut stream(&plan(None), 1),
            b"data: {not json\n\n",
            &[],
        ));
        assert_eq!(a.error.unwrap()["code"], "bad_upstream_response");
        let a = assemble(&run_split(&mut stream(&plan(None), 1), b"", &[]));
        assert_eq!(a.error.unwrap()["code"], "upstream_stream_cut");
    }

    #[test]
    fn stream_json_schema_mode_streams_content() {
        let s = [
            json!({"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":1}}}),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"person","input":{}}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"n\":"}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\"A\"}"}}),
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":3}}),
            json!({"type":"message_stop"}),
        ]
        .iter()
        .map(|d| format!("data: {d}\n\n"))
        .collect::<String>();
        let a = assemble(&run_split(
            &mut stream(&plan(Some("person")), 1),
            s.as_bytes(),
            &[],
        ));
        assert_eq!(a.content, "{\"n\":\"A\"}");
        assert!(a.tool_calls.is_empty());
        assert_eq!(a.finish.as_deref(), Some("stop"));
    }
}
