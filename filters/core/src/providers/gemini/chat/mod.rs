//! OpenAI chat completions <-> Gemini `generateContent` / `streamGenerateContent?alt=sse`.
//!
//! Tool-call ids: Gemini's own `functionCall.id` is used when it sends one, else an id is made.
//! Gemini's `thoughtSignature` (which Gemini requires back on the next turn) rides inside the id
//! after [`SIGNATURE_SEP`], so a plain OpenAI client that echoes its tool calls round-trips it.
//!
//! [`request`] builds the provider request, [`response`] maps a JSON answer, [`stream`]
//! maps the event stream; what they share (finish reasons, usage, errors) is here.

use crate::contract::path_segment;
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

const PROVIDER: &str = "gemini";

/// The OpenAI chat front on a Gemini backend.
#[derive(Debug)]
pub struct OpenAiToGemini;

pub static TRANSLATOR: OpenAiToGemini = OpenAiToGemini;

impl Translator for OpenAiToGemini {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError> {
        let req = crate::openai::chat_request(body)?;
        let model = target.upstream_model(&req.model).to_string();
        let out = request(&req)?;
        let method = if req.is_stream() {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        let request = UpstreamRequest {
            path: format!(
                "{}/models/{}:{}",
                target.base_path,
                path_segment(&model),
                method
            ),
            headers: vec![("content-type", "application/json".to_string())],
            body: Some(serde_json::to_vec(&out).unwrap_or_default()),
        };
        Ok(Plan::chat(self, &req, model, None, request))
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
pub const SIGNATURE_SEP: &str = "__sig__";

/// The `thoughtSignature` Gemini accepts for a function call it did not sign itself.
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

fn finish_reason(reason: &str, has_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if has_calls => "tool_calls",
        _ => "stop",
    }
}

fn read_usage(v: &Value) -> Option<Usage> {
    let u = v.get("usageMetadata")?;
    let get = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let thoughts = u.get("thoughtsTokenCount").and_then(Value::as_u64);
    Some(Usage {
        prompt_tokens: get("promptTokenCount"),
        completion_tokens: get("candidatesTokenCount").saturating_add(thoughts.unwrap_or(0)),
        cached_tokens: Some(get("cachedContentTokenCount")),
        reasoning_tokens: thoughts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{parse_body, validate};
    use crate::stream::{assemble, run_split};

    fn req(body: Value) -> Result<Value, GatewayError> {
        let v = parse_body(body.to_string().as_bytes()).unwrap();
        request(&validate(&v).unwrap())
    }

    fn plan() -> ResponsePlan {
        ResponsePlan {
            translator: &TRANSLATOR,
            stream: true,
            json_tool: None,
            client_model: "mock-gemini".into(),
            upstream_model: "gemini-x".into(),
            embeddings: None,
        }
    }

    #[test]
    fn unsigned_function_calls_get_the_documented_skip_signature() {
        let v = req(json!({"model":"g","messages":[
            {"role":"user","content":"hi"},
            {"role":"assistant","content":null,"tool_calls":[
                {"id":"toolu_1","type":"function","function":{"name":"a","arguments":"{}"}},
                {"id":"toolu_2","type":"function","function":{"name":"b","arguments":""}}]},
            {"role":"tool","tool_call_id":"toolu_1","content":"1"},
            {"role":"tool","tool_call_id":"toolu_2","content":"2"},
            {"role":"assistant","content":null,"tool_calls":[
                {"id":"call_9__sig__REAL","type":"function","function":{"name":"a","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"call_9__sig__REAL","content":"3"}
        ]}))
        .unwrap();
        let c = v["contents"].as_array().unwrap();
        // Only the first call of an unsigned turn carries it (parallel calls share it).
        assert_eq!(c[1]["parts"][0]["thoughtSignature"], SKIP_SIGNATURE);
        assert!(c[1]["parts"][1].get("thoughtSignature").is_none());
        // A real signature is never replaced.
        assert_eq!(c[3]["parts"][0]["thoughtSignature"], "REAL");
    }

    #[test]
    fn request_mapping() {
        let v = req(json!({
            "model":"g","n":2,"max_tokens":77,"temperature":0.1,"top_p":0.8,"stop":["x","y"],"seed":5,
            "response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","additionalProperties":false}}},
            "tools":[{"type":"function","function":{"name":"get","description":"d","parameters":{"type":"object"}}}],
            "tool_choice":{"type":"function","function":{"name":"get"}},
            "messages":[
                {"role":"system","content":"sys"},
                {"role":"user","content":[{"type":"text","text":"see"},{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/"}}]},
                {"role":"assistant","content":"ok","tool_calls":[{"id":"call_1__sig__SIG","type":"function","function":{"name":"get","arguments":"{\"q\":1}"}}]},
                {"role":"tool","tool_call_id":"call_1__sig__SIG","content":"{\"temp\":20}"},
                {"role":"tool","tool_call_id":"call_1__sig__SIG","content":"plain"},
                {"role":"user","content":"more"}
            ]
        }))
        .unwrap();
        assert_eq!(v["systemInstruction"], json!({"parts":[{"text":"sys"}]}));
        let c = v["contents"].as_array().unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[0]["parts"][1],
            json!({"inlineData":{"mimeType":"image/jpeg","data":"/9j/"}})
        );
        assert_eq!(c[1]["role"], "model");
        assert_eq!(
            c[1]["parts"][1],
            json!({"functionCall":{"id":"call_1","name":"get","args":{"q":1}},"thoughtSignature":"SIG"})
        );
        assert_eq!(c[2]["role"], "user");
        assert_eq!(
            c[2]["parts"][0]["functionResponse"],
            json!({"id":"call_1","name":"get","response":{"temp":20}})
        );
        assert_eq!(
            c[2]["parts"][1]["functionResponse"]["response"],
            json!({"content":"plain"})
        );
        assert_eq!(c[2]["parts"][2], json!({"text":"more"}));
        let gc = &v["generationConfig"];
        assert_eq!(gc["maxOutputTokens"], 77);
        assert_eq!(gc["candidateCount"], 2);
        assert_eq!(gc["stopSequences"], json!(["x", "y"]));
        assert_eq!(gc["responseMimeType"], "application/json");
        assert_eq!(gc["responseJsonSchema"]["additionalProperties"], false);
        assert_eq!(
            v["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"],
            json!({"type":"object"})
        );
        assert_eq!(
            v["toolConfig"]["functionCallingConfig"],
            json!({"mode":"ANY","allowedFunctionNames":["get"]})
        );
    }

    #[test]
    fn request_refusals() {
        let e = req(
            json!({"model":"g","messages":[{"role":"tool","tool_call_id":"nope","content":"x"}]}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
        let e = req(json!({"model":"g","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png"}}]}]})).unwrap_err();
        assert!(e.message.contains("inline"));
        let v = req(json!({"model":"g","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","reasoning_effort":"low"})).unwrap();
        assert_eq!(v["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
        assert_eq!(
            v["generationConfig"]["thinkingConfig"]["thinkingBudget"],
            1024
        );
        assert!(v["tools"][0]["functionDeclarations"][0]
            .get("parametersJsonSchema")
            .is_none());
    }

    #[test]
    fn json_response_with_candidates_calls_and_usage() {
        let body = json!({"candidates":[
            {"index":0,"content":{"role":"model","parts":[{"text":"why","thought":true},{"text":"Hi"},{"text":" there"}]},"finishReason":"STOP"},
            {"index":1,"content":{"role":"model","parts":[{"functionCall":{"name":"get","args":{"q":"a"}},"thoughtSignature":"S1"}]},"finishReason":"STOP"}
        ],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":3,"thoughtsTokenCount":2,"cachedContentTokenCount":1,"totalTokenCount":12},
        "modelVersion":"gemini-2.5-flash","responseId":"r1"});
        let out: Value =
            serde_json::from_slice(&response(body.to_string().as_bytes(), &plan(), 5).unwrap())
                .unwrap();
        assert_eq!(out["id"], "chatcmpl-r1");
        assert_eq!(out["model"], "gemini-2.5-flash");
        assert_eq!(out["choices"][0]["message"]["content"], "Hi there");
        assert_eq!(out["choices"][0]["message"]["reasoning_content"], "why");
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        let call = &out["choices"][1]["message"]["tool_calls"][0];
        assert_eq!(call["id"], "call_r1_1_0__sig__S1");
        assert_eq!(call["function"]["arguments"], "{\"q\":\"a\"}");
        assert!(out["choices"][1]["message"]["content"].is_null());
        assert_eq!(out["choices"][1]["finish_reason"], "tool_calls");
        assert_eq!(out["usage"]["completion_tokens"], 5);
        assert_eq!(
            out["usage"]["completion_tokens_details"]["reasoning_tokens"],
            2
        );
        assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
        for (r, f) in [
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
        ] {
            let b = json!({"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":r}]});
            let out: Value =
                serde_json::from_slice(&response(b.to_string().as_bytes(), &plan(), 0).unwrap())
                    .unwrap();
            assert_eq!(out["choices"][0]["finish_reason"], f);
        }
        let b = json!({"promptFeedback":{"blockReason":"SAFETY"}});
        let out: Value =
            serde_json::from_slice(&response(b.to_string().as_bytes(), &plan(), 0).unwrap())
                .unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(response(b"{}", &plan(), 0).unwrap_err().status, 502);
        assert_eq!(response(b"nope", &plan(), 0).unwrap_err().status, 502);
    }

    fn gemini_stream() -> String {
        [
            json!({"candidates":[{"content":{"role":"model","parts":[{"text":"thinking…","thought":true}]},"index":0}],"responseId":"r7","modelVersion":"gemini-x"}),
            json!({"candidates":[{"content":{"role":"model","parts":[{"text":"Grüße "}]},"index":0}],"usageMetadata":{"promptTokenCount":4},"responseId":"r7"}),
            json!({"candidates":[{"content":{"role":"model","parts":[{"text":"🌍"}]},"index":0}],"responseId":"r7"}),
            json!({"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"get","args":{"city":"Zürich"}}}]},"index":0}],"responseId":"r7"}),
            json!({"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":6,"totalTokenCount":10},"responseId":"r7"}),
        ]
        .iter()
        .map(|d| format!("data: {d}\r\n\r\n"))
        .collect()
    }

    #[test]
    fn stream_at_every_split_point() {
        let s = gemini_stream();
        let b = s.as_bytes();
        for cut in 0..=b.len() {
            let a = assemble(&run_split(&mut stream(&plan(), 3), b, &[cut, cut + 7]));
            assert_eq!(a.content, "Grüße 🌍");
            assert_eq!(a.reasoning, "thinking…");
            assert_eq!(
                a.tool_calls,
                vec![(
                    "call_r7_0_0".into(),
                    "get".into(),
                    "{\"city\":\"Zürich\"}".into()
                )]
            );
            assert_eq!(a.finish.as_deref(), Some("tool_calls"));
            assert_eq!(a.usage.as_ref().unwrap()["total_tokens"], 10);
            assert!(a.done && a.error.is_none());
        }
    }

    #[test]
    fn stream_cut_and_error() {
        let s = gemini_stream();
        let cut = s.rfind("data:").unwrap();
        let a = assemble(&run_split(
            &mut stream(&plan(), 3),
            &s.as_bytes()[..cut],
            &[],
        ));
        assert_eq!(a.error.unwrap()["code"], "upstream_stream_cut");
        assert!(!a.done);
        let e = format!(
            "{}data: {}\n\n",
            &s[..cut],
            json!({"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}})
        );
        let a = assemble(&run_split(&mut stream(&plan(), 3), e.as_bytes(), &[]));
        assert_eq!(a.error.unwrap()["code"], "upstream_overloaded");
    }

    #[test]
    fn stream_with_two_candidates() {
        let s: String = [
            json!({"candidates":[{"content":{"parts":[{"text":"a"}]},"index":0},{"content":{"parts":[{"text":"b"}]},"index":1}]}),
            json!({"candidates":[{"content":{"parts":[{"text":"!"}]},"finishReason":"STOP","index":0},{"content":{"parts":[{"text":"?"}]},"finishReason":"MAX_TOKENS","index":1}]}),
        ]
        .iter()
        .map(|d| format!("data: {d}\n\n"))
        .collect();
        let ev = run_split(&mut stream(&plan(), 3), s.as_bytes(), &[]);
        let mut text = ["".to_string(), "".to_string()];
        let mut fin = [None, None];
        let mut roles = 0;
        for e in &ev {
            for c in e["choices"].as_array().into_iter().flatten() {
                let i = c["index"].as_u64().unwrap() as usize;
                if c["delta"].get("role").is_some() {
                    roles += 1;
                }
                text[i].push_str(c["delta"]["content"].as_str().unwrap_or(""));
                if let Some(f) = c["finish_reason"].as_str() {
                    fin[i] = Some(f.to_string());
                }
            }
        }
        assert_eq!(roles, 2);
        assert_eq!(text, ["a!", "b?"]);
        assert_eq!(fin, [Some("stop".into()), Some("length".into())]);
        assert_eq!(ev.last().unwrap(), "[DONE]");
    }
}
