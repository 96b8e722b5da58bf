//! Google Vertex AI: the publishers' models under one project and location. The host's base
//! path is `/v1/projects/{project}/locations/{location}/publishers` (the generator writes it);
//! the model decides the publisher:
//!
//! - Gemini (`google`): `{base}/google/models/{m}:generateContent` and
//!   `:streamGenerateContent?alt=sse`, the Gemini API's body and answers (the Gemini
//!   translator, on that base path).
//! - Claude (`anthropic`, models named `claude-*`): `{base}/anthropic/models/{m}:rawPredict`
//!   and `:streamRawPredict`, Anthropic's body without `model` and with
//!   `anthropic_version: vertex-2023-10-16`, Anthropic's answers and events.
//!
//! Auth is an OAuth2 access token that Envoy's credential injector adds from an SDS secret
//! (an operator's refresher rewrites it; Envoy reloads the file): nothing here sees it.

use crate::contract::path_segment;
use crate::error::GatewayError;
use crate::providers::anthropic::{chat as anthropic_chat, messages as anthropic_messages};
use crate::providers::{
    gemini, via_openai::ViaOpenAi, Peeked, Plan, ResponsePlan, Target, Translator, UpstreamRequest,
};
use crate::stream::StreamTranslator;

pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";
const PROVIDER: &str = "vertex";

/// Whether a Vertex model is one of Anthropic's.
pub fn is_anthropic(model: &str) -> bool {
    model.starts_with("claude")
}

fn claude_path(target: &Target, model: &str, stream: bool) -> String {
    let action = if stream {
        "streamRawPredict"
    } else {
        "rawPredict"
    };
    format!(
        "{}/anthropic/models/{}:{action}",
        target.base_path,
        path_segment(model)
    )
}

/// The OpenAI chat front on Vertex.
#[derive(Debug)]
pub struct VertexChat;

pub static CHAT: VertexChat = VertexChat;

impl Translator for VertexChat {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError> {
        let req = crate::openai::chat_request(body)?;
        let model = target.upstream_model(&req.model).to_string();
        if !is_anthropic(&model) {
            let base = format!("{}/google", target.base_path);
            let google = Target {
                base_path: &base,
                ..*target
            };
            return gemini::chat::TRANSLATOR.request(&google, body);
        }
        let max_default = target
            .max_tokens_default
            .unwrap_or(anthropic_chat::DEFAULT_MAX_TOKENS);
        let (mut out, json_tool) = anthropic_chat::request(&req, &model, max_default)?;
        if let Some(o) = out.as_object_mut() {
            o.remove("model");
            o.insert(
                "anthropic_version".into(),
                serde_json::Value::String(VERTEX_ANTHROPIC_VERSION.into()),
            );
        }
        let request = UpstreamRequest {
            path: claude_path(target, &model, req.is_stream()),
            headers: vec![("content-type", "application/json".to_string())],
            body: Some(serde_json::to_vec(&out).unwrap_or_default()),
        };
        // Anthropic's answers: Anthropic's translator reads them.
        Ok(Plan::chat(
            &anthropic_chat::TRANSLATOR,
            &req,
            model,
            json_tool,
            request,
        ))
    }

    // Never called: each plan names the translator that reads its answer.
    fn response(&self, p: &ResponsePlan, b: &[u8], c: u64) -> Result<Vec<u8>, GatewayError> {
        gemini::chat::TRANSLATOR.response(p, b, c)
    }

    fn stream(&self, p: &ResponsePlan, c: u64) -> Box<dyn StreamTranslator> {
        gemini::chat::TRANSLATOR.stream(p, c)
    }
}

/// The Anthropic Messages front on Vertex: Claude passes through (but for the body's
/// `model` and `anthropic_version`); Gemini goes through OpenAI chat.
#[derive(Debug)]
pub struct VertexMessages;

pub static MESSAGES: VertexMessages = VertexMessages;

static VIA_CHAT: ViaOpenAi = ViaOpenAi::new(&CHAT);

impl Translator for VertexMessages {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError> {
        let Peeked {
            client_model,
            model,
            stream,
        } = Peeked::new(target, body)?;
        if !is_anthropic(&model) {
            return VIA_CHAT.request(target, body);
        }
        let sent = anthropic_messages::for_cloud(
            crate::openai::parse_body(body)?,
            VERTEX_ANTHROPIC_VERSION,
            true,
            None,
        )?;
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(beta) = &target.client.anthropic_beta {
            headers.push(("anthropic-beta", beta.clone()));
        }
        let request = UpstreamRequest {
            path: claude_path(target, &model, stream),
            headers,
            body: Some(sent),
        };
        Ok(Plan::forwarded(
            &anthropic_messages::MESSAGES,
            client_model,
            model,
            stream,
            request,
        ))
    }

    fn response(&self, p: &ResponsePlan, b: &[u8], c: u64) -> Result<Vec<u8>, GatewayError> {
        anthropic_messages::MESSAGES.response(p, b, c)
    }

    fn stream(&self, p: &ResponsePlan, c: u64) -> Box<dyn StreamTranslator> {
        anthropic_messages::MESSAGES.stream(p, c)
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::Backend;
    use crate::providers::{ClientApi, ClientHints};
    use serde_json::{json, Value};

    fn backend() -> Backend {
        Backend::from_json(&json!({"provider": "vertex",
            "base_path": "/v1/projects/p1/locations/us-east5/publishers",
            "models": {"vertex/gemini-2.5-pro": "gemini-2.5-pro", "vertex/claude-sonnet-4-5": "claude-sonnet-4-5@20250929"}}))
        .unwrap()
    }

    #[test]
    fn the_model_picks_the_publisher() {
        let chat = |model: &str, stream: bool| {
            let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
            backend().plan(body.to_string().as_bytes()).unwrap()
        };
        let p = chat("vertex/gemini-2.5-pro", false);
        assert_eq!(p.request.path, "/v1/projects/p1/locations/us-east5/publishers/google/models/gemini-2.5-pro:generateContent");
        let p = chat("vertex/claude-sonnet-4-5", true);
        assert_eq!(p.request.path, "/v1/projects/p1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5%4020250929:streamRawPredict");
        let sent: Value = serde_json::from_slice(p.request.body.as_ref().unwrap()).unwrap();
        assert!(sent.get("model").is_none());
        assert_eq!(sent["anthropic_version"], super::VERTEX_ANTHROPIC_VERSION);
        assert_eq!(sent["stream"], true);
        let msgs = json!({"model": "vertex/claude-sonnet-4-5", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]});
        let p = backend()
            .plan_for(
                ClientApi::AnthropicMessages,
                msgs.to_string().as_bytes(),
                &ClientHints::default(),
            )
            .unwrap();
        assert!(p.request.path.ends_with(":rawPredict") && p.response.is_passthrough());
        let msgs = json!({"model": "vertex/gemini-2.5-pro", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]});
        let p = backend()
            .plan_for(
                ClientApi::AnthropicMessages,
                msgs.to_string().as_bytes(),
                &ClientHints::default(),
            )
            .unwrap();
        assert!(p
            .request
            .path
            .ends_with("/google/models/gemini-2.5-pro:generateContent"));
    }
}
