//! The Anthropic Messages front on a backend that is not Anthropic, through OpenAI chat (the
//! format every backend translator reads and writes): the Messages request becomes OpenAI
//! chat (`api::anthropic::request`, a 400 naming the field for what cannot be carried), the
//! backend's own translator takes it from there, and its OpenAI answer comes back as an
//! Anthropic message (`api::anthropic::answer`) or event stream (`api::anthropic::stream`).
//!
//! `count_tokens` has no counterpart on these backends: the gateway answers it with its own
//! estimate (`usage::estimate_prompt_tokens`, which errs high), in Anthropic's shape.

use crate::api::anthropic::{answer, request, stream::ChunksToEvents};
use crate::error::GatewayError;
use crate::providers::{
    gemini, openai_compat, Plan, ResponsePlan, Target, Translator, UpstreamError, UpstreamRequest,
};
use crate::stream::{Chain, StreamTranslator};
use serde_json::{json, Value};

/// Messages through OpenAI chat to `inner`, the backend's OpenAI chat translator.
#[derive(Debug)]
pub struct ViaOpenAi {
    inner: &'static dyn Translator,
}

impl ViaOpenAi {
    pub const fn new(inner: &'static dyn Translator) -> Self {
        ViaOpenAi { inner }
    }
}

pub static OPENAI: ViaOpenAi = ViaOpenAi {
    inner: &openai_compat::chat::OPENAI,
};
pub static AZURE: ViaOpenAi = ViaOpenAi {
    inner: &openai_compat::chat::AZURE,
};
pub static GEMINI: ViaOpenAi = ViaOpenAi {
    inner: &gemini::chat::TRANSLATOR,
};

/// A Messages (or `count_tokens`) request body, parsed and checked by `check`, with its model
/// name.
fn messages_request(
    body: &[u8],
    check: fn(&Value) -> Result<(), GatewayError>,
) -> Result<(Value, String), GatewayError> {
    let v = crate::openai::parse_body(body)?;
    check(&v)?;
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    crate::contract::check_model(&model)?;
    Ok((v, model))
}

impl Translator for ViaOpenAi {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError> {
        let (v, model) = messages_request(body, request::validate)?;
        let chat = serde_json::to_vec(&request::to_openai(&v, &model)?)
            .map_err(|e| GatewayError::invalid_request(e.to_string()))?;
        let mut plan = self.inner.request(target, &chat)?;
        if plan.request.body.is_none() {
            plan.request.body = Some(chat);
        }
        plan.response.translator = self;
        Ok(plan)
    }

    fn response(
        &self,
        plan: &ResponsePlan,
        body: &[u8],
        created: u64,
    ) -> Result<Vec<u8>, GatewayError> {
        let chat = self.inner.response(plan, body, created)?;
        let completion: Value = serde_json::from_slice(&chat)
            .map_err(|e| GatewayError::bad_upstream(format!("The answer is not JSON ({e}).")))?;
        let message = answer::message(&completion, &plan.client_model)?;
        serde_json::to_vec(&message).map_err(|e| GatewayError::bad_upstream(e.to_string()))
    }

    fn stream(&self, plan: &ResponsePlan, created: u64) -> Box<dyn StreamTranslator> {
        Box::new(Chain(
            self.inner.stream(plan, created),
            Box::new(ChunksToEvents::new(&plan.client_model)),
        ))
    }

    fn error(&self, e: UpstreamError) -> GatewayError {
        self.inner.error(e)
    }
}

/// `count_tokens` answered by the gateway.
#[derive(Debug)]
pub struct Estimate;

pub static COUNT_TOKENS: Estimate = Estimate;

impl Translator for Estimate {
    fn provider(&self) -> &'static str {
        "sluice"
    }

    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError> {
        let (v, model) = messages_request(body, request::validate_count_tokens)?;
        let tokens = crate::usage::estimate_prompt_tokens(&v);
        let answer = json!({"input_tokens": tokens}).to_string().into_bytes();
        Ok(Plan {
            request: UpstreamRequest {
                path: String::new(),
                headers: Vec::new(),
                body: None,
            },
            response: ResponsePlan {
                translator: self,
                stream: false,
                json_tool: None,
                upstream_model: target.upstream_model(&model).to_string(),
                embeddings: None,
                client_model: model,
            },
            answer: Some(answer),
        })
    }

    fn response(
        &self,
        _plan: &ResponsePlan,
        body: &[u8],
        _created: u64,
    ) -> Result<Vec<u8>, GatewayError> {
        Ok(body.to_vec())
    }

    fn stream(&self, _plan: &ResponsePlan, _created: u64) -> Box<dyn StreamTranslator> {
        Box::new(crate::providers::anthropic::messages::PassStream::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::providers::{ClientApi, ClientHints};
    use crate::stream::run_split;

    const MSG: &[u8] = br#"{"model":"claude-x","max_tokens":50,"system":[{"type":"text","text":"Be brief."}],
        "messages":[{"role":"user","content":"What is the weather?"},
                    {"role":"assistant","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"weather","input":{"city":"Paris"}}]},
                    {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"}]}],
        "tools":[{"name":"weather","description":"w","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
        "tool_choice":{"type":"auto"},"stop_sequences":["END"]}"#;

    fn plan(provider: &str, body: &[u8]) -> Plan {
        Backend::from_json(&json!({"provider": provider, "models": {"*": "up-model"}}))
            .unwrap()
            .plan_for(ClientApi::AnthropicMessages, body, &ClientHints::default())
            .unwrap()
    }

    #[test]
    fn a_messages_request_reaches_openai_and_gemini_as_their_own() {
        let p = plan("openai", MSG);
        assert_eq!(p.request.path, "/v1/chat/completions");
        let sent: Value = serde_json::from_slice(p.request.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["model"], "up-model");
        assert_eq!(
            sent["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(sent["messages"][2]["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(sent["messages"][3]["role"], "tool");
        assert_eq!(sent["stop"], json!(["END"]));
        let p = plan("gemini", MSG);
        assert_eq!(p.request.path, "/v1beta/models/up-model:generateContent");
        let sent: Value = serde_json::from_slice(p.request.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");
        assert_eq!(p.response.client_model, "claude-x");
    }

    #[test]
    fn answers_come_back_as_anthropic_messages() {
        let p = plan("openai", MSG);
        let completion = json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "up-model",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Sure.",
              "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}]}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 8}}});
        let out = p
            .response
            .translate_json(completion.to_string().as_bytes(), 1)
            .unwrap();
        let m: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(m["type"], "message");
        assert_eq!(m["model"], "claude-x");
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["content"][1]["input"], json!({"city": "Rome"}));
        assert_eq!(m["usage"]["input_tokens"], 12);
        assert_eq!(m["usage"]["cache_read_input_tokens"], 8);
    }

    #[test]
    fn a_gemini_stream_becomes_anthropic_events_split_anywhere() {
        let stream_body = String::from_utf8_lossy(MSG).replacen(
            "\"max_tokens\"",
            "\"stream\":true,\"max_tokens\"",
            1,
        );
        let p = plan("gemini", stream_body.as_bytes());
        assert!(p.request.path.ends_with(":streamGenerateContent?alt=sse"));
        let upstream = concat!(
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hel\"}]}}]}\n\n",
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"lo\"},{\"functionCall\":{\"name\":\"weather\",\"args\":{\"city\":\"Oslo\"}}}]},\"finishReason\":\"STOP\"}],",
            "\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":3}}\n\n"
        );
        let whole = {
            let mut t = p.response.stream_translator(1);
            let mut out = t.feed(upstream.as_bytes());
            out.extend(t.finish());
            String::from_utf8(out).unwrap()
        };
        for cut in 0..upstream.len() {
            let mut t = p.response.stream_translator(1);
            let events = run_split(&mut *t, upstream.as_bytes(), &[cut]);
            assert!(!events.is_empty());
        }
        let names: Vec<&str> = whole
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(names.first(), Some(&"message_start"));
        assert_eq!(names.last(), Some(&"message_stop"));
        assert!(whole.contains("\"input_json_delta\""), "{whole}");
        assert!(whole.contains("\"stop_reason\":\"tool_use\""), "{whole}");
    }

    #[test]
    fn count_tokens_is_estimated_in_anthropics_shape() {
        let body = br#"{"model":"claude-x","messages":[{"role":"user","content":"Hello there, how are you?"}]}"#;
        let p = Backend::from_json(&json!({"provider": "openai"}))
            .unwrap()
            .plan_for(
                ClientApi::AnthropicCountTokens,
                body,
                &ClientHints::default(),
            )
            .unwrap();
        let v: Value = serde_json::from_slice(p.answer.as_ref().unwrap()).unwrap();
        assert!(v["input_tokens"].as_u64().unwrap() >= 7, "{v}");
        let bad = Backend::from_json(&json!({"provider": "openai"}))
            .unwrap()
            .plan_for(
                ClientApi::AnthropicCountTokens,
                br#"{"model":"claude-x","messages":[]}"#,
                &ClientHints::default(),
            );
        assert_eq!(bad.err().map(|e| e.status), Some(400));
    }
}
