//! The translator interface and one folder per backend wire format.
//!
//! A [`Translator`] serves one pair: a client-facing API ([`ClientApi`]) and a backend's wire
//! format ([`ProviderKind`]). It turns the client's original bytes into this attempt's upstream
//! request ([`Plan`]), and the provider's answer back: a complete JSON answer, a stream
//! (incrementally, bytes in and bytes out), or an error. `backend::translator` is the only
//! place that picks one; nothing else matches on a provider.
//!
//! - [`openai_compat::chat`]: OpenAI chat to OpenAI and every OpenAI-compatible server, Azure.
//! - [`anthropic::chat`]: OpenAI chat to Anthropic Messages (request, answer, stream).
//! - [`gemini::chat`]: OpenAI chat to Gemini `generateContent` (request, answer, stream).
//!
//! - [`anthropic::messages`]: Anthropic Messages (and `count_tokens`) to Anthropic: the
//!   client's bytes pass through but for the model name.
//! - [`via_openai`]: Anthropic Messages to every other backend, through OpenAI chat: the
//!   request becomes OpenAI chat, the backend's OpenAI translator takes it from there, and its
//!   OpenAI answer (JSON or chunks) becomes an Anthropic message (or event stream).
//!
//! - [`embeddings`]: `/v1/embeddings` on every backend that has embeddings.
//!
//! Bedrock's Converse is another [`ProviderKind`] whose stream translator decodes AWS
//! event-stream frames; it serves the Anthropic front through [`via_openai`] like the others.

pub mod anthropic;
pub mod bedrock;
pub mod embeddings;
pub mod gemini;
pub mod openai_compat;
pub mod vertex;
pub mod via_openai;

use crate::error::GatewayError;
use crate::models::Ranked;
use crate::stream::StreamTranslator;
use serde::Deserialize;
use serde_json::Value;

/// A backend's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI and every OpenAI-compatible server (vLLM, llama.cpp, Ollama, DeepSeek, Groq...).
    Openai,
    /// Azure OpenAI: deployment in the path, `api-version` in the query.
    Azure,
    Anthropic,
    Gemini,
    /// AWS Bedrock: Converse, and InvokeModel for Anthropic's models on the Messages front.
    Bedrock,
    /// Google Vertex AI: Gemini and Anthropic's models.
    Vertex,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Azure => "azure",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Vertex => "vertex",
        }
    }
}

/// The API a client speaks to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    /// `POST /v1/chat/completions`
    OpenAiChat,
    /// `POST /v1/messages`
    AnthropicMessages,
    /// `POST /v1/messages/count_tokens`
    AnthropicCountTokens,
    /// `POST /v1/embeddings`
    OpenAiEmbeddings,
}

impl ClientApi {
    /// The client API of an endpoint that is translated (`None`: not forwarded upstream).
    pub fn of(e: crate::contract::Endpoint) -> Option<ClientApi> {
        use crate::contract::Endpoint;
        match e {
            Endpoint::ChatCompletions => Some(ClientApi::OpenAiChat),
            Endpoint::Messages => Some(ClientApi::AnthropicMessages),
            Endpoint::CountTokens => Some(ClientApi::AnthropicCountTokens),
            Endpoint::Embeddings => Some(ClientApi::OpenAiEmbeddings),
            _ => None,
        }
    }

    /// The API whose envelope this client's errors use.
    pub fn api(self) -> crate::contract::Api {
        match self {
            ClientApi::OpenAiChat | ClientApi::OpenAiEmbeddings => crate::contract::Api::OpenAi,
            _ => crate::contract::Api::Anthropic,
        }
    }
}

/// What a translator needs to know of the selected host (its `filter_metadata.sluice`).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The API's path prefix on this host, without a trailing `/`.
    pub base_path: &'a str,
    /// Client model name to provider model name (ranked: exact, then the longest glob).
    pub models: &'a Ranked<String>,
    /// Azure's `api-version`, Anthropic's `anthropic-version`.
    pub api_version: Option<&'a str>,
    /// Anthropic's required `max_tokens` when the client sent none.
    pub max_tokens_default: Option<u64>,
    /// What the client sent that a translator may pass on (validated at the edge).
    pub client: &'a ClientHints,
    /// Removed from a client model name the host does not map (`Backend::strip_model_prefix`).
    pub strip_prefix: Option<&'a str>,
}

/// Request headers of the client that a translator may pass on, validated by the route role
/// (`contract::check_anthropic_header`) and carried to every attempt in filter state (the
/// shared header map holds whatever the previous attempt left there).
#[derive(Debug, Clone, Default)]
pub struct ClientHints {
    pub anthropic_version: Option<String>,
    pub anthropic_beta: Option<String>,
}

impl Target<'_> {
    pub fn upstream_model<'m>(&'m self, client_model: &'m str) -> &'m str {
        self.models
            .get(client_model)
            .map(String::as_str)
            .unwrap_or_else(|| {
                self.strip_prefix
                    .and_then(|p| client_model.strip_prefix(p))
                    .filter(|m| !m.is_empty())
                    .unwrap_or(client_model)
            })
    }
}

/// The model and stream flag of a request body, read without building the document: the
/// client's model name (checked at the edge, `contract::check_model`) and the host's name for it.
#[derive(Debug)]
pub struct Peeked {
    pub client_model: String,
    pub model: String,
    pub stream: bool,
}

impl Peeked {
    pub fn new(target: &Target, body: &[u8]) -> Result<Peeked, GatewayError> {
        #[derive(Deserialize)]
        struct Peek {
            #[serde(default)]
            model: Option<String>,
            #[serde(default)]
            stream: Option<bool>,
        }
        let peek: Peek = serde_json::from_slice(body).map_err(|e| {
            GatewayError::invalid_request(format!(
                "We could not parse the JSON body of your request ({e})."
            ))
        })?;
        let client_model = peek.model.unwrap_or_default();
        crate::contract::check_model(&client_model)?;
        let model = target.upstream_model(&client_model).to_string();
        Ok(Peeked {
            client_model,
            model,
            stream: peek.stream == Some(true),
        })
    }
}

/// What to send upstream.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// `:path`, query included.
    pub path: String,
    /// Headers to set (the adapter removes everything not on the allow-list first).
    pub headers: Vec<(&'static str, String)>,
    /// `None`: the client's body goes as it is.
    pub body: Option<Vec<u8>>,
}

/// How to read the answer of one attempt.
#[derive(Debug, Clone)]
pub struct ResponsePlan {
    /// The translator that made the request, and reads its answer.
    pub translator: &'static dyn Translator,
    pub stream: bool,
    /// Anthropic json_schema mode: the forced tool whose input is the answer.
    pub json_tool: Option<String>,
    /// The model the client asked for (used when a provider does not echo one).
    pub client_model: String,
    /// The model this attempt asked the provider for.
    pub upstream_model: String,
    /// An embeddings request: how to write its answer.
    pub embeddings: Option<EmbeddingsPlan>,
}

/// What an embeddings answer needs from its request.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingsPlan {
    /// `encoding_format: base64`.
    pub base64: bool,
    /// How many vectors the answer must hold.
    pub inputs: usize,
    /// The gateway's estimate, for providers that report no token count.
    pub input_tokens: u64,
}

pub struct Plan {
    pub request: UpstreamRequest,
    pub response: ResponsePlan,
    /// The gateway answers this itself (a token count for a backend that has no such
    /// endpoint): a 200 with this JSON body; nothing goes upstream.
    pub answer: Option<Vec<u8>>,
}

impl Plan {
    /// The plan of a request read through [`Peeked`]: `request` goes upstream, and the answer
    /// (a stream when `stream`) is read back by `translator`.
    pub fn forwarded(
        translator: &'static dyn Translator,
        client_model: String,
        upstream_model: String,
        stream: bool,
        request: UpstreamRequest,
    ) -> Plan {
        Plan {
            request,
            response: ResponsePlan {
                translator,
                stream,
                json_tool: None,
                client_model,
                upstream_model,
                embeddings: None,
            },
            answer: None,
        }
    }

    /// The plan of a translated chat request: `request` goes upstream as `model`, and the
    /// answer is read back by `translator` for the client's `req`.
    pub fn chat(
        translator: &'static dyn Translator,
        req: &crate::openai::ChatRequest,
        model: String,
        json_tool: Option<String>,
        request: UpstreamRequest,
    ) -> Plan {
        Plan {
            request,
            response: ResponsePlan {
                translator,
                stream: req.is_stream(),
                json_tool,
                client_model: req.model.clone(),
                upstream_model: model,
                embeddings: None,
            },
            answer: None,
        }
    }
}

/// A provider's error answer, as the adapter read it.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamError<'a> {
    pub status: u16,
    pub body: &'a [u8],
    pub retry_after: Option<&'a str>,
    /// AWS names the error in a header (`x-amzn-ErrorType`).
    pub error_type: Option<&'a str>,
}

/// One (client API, backend wire format) pair.
pub trait Translator: std::fmt::Debug + Sync {
    /// The provider's name in messages and metrics.
    fn provider(&self) -> &'static str;

    /// This attempt's upstream request, from the client's original bytes.
    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError>;

    /// A complete 2xx answer, in the client's API.
    fn response(
        &self,
        plan: &ResponsePlan,
        body: &[u8],
        created: u64,
    ) -> Result<Vec<u8>, GatewayError>;

    /// The answer stream in the client's API, translated as it arrives.
    fn stream(&self, plan: &ResponsePlan, created: u64) -> Box<dyn StreamTranslator>;

    /// A non-2xx answer, mapped into the gateway's error (`error::from_provider`).
    fn error(&self, e: UpstreamError) -> GatewayError {
        provider_error(self.provider(), e.status, e.body, e.retry_after)
    }

    /// Whether a 2xx answer is already in the client's format (then its bytes pass on).
    fn passthrough(&self) -> bool {
        false
    }
}

impl ResponsePlan {
    pub fn is_passthrough(&self) -> bool {
        self.translator.passthrough()
    }

    /// Translates a complete JSON answer (status 2xx).
    pub fn translate_json(&self, body: &[u8], created: u64) -> Result<Vec<u8>, GatewayError> {
        self.translator.response(self, body, created)
    }

    pub fn stream_translator(&self, created: u64) -> Box<dyn StreamTranslator> {
        self.translator.stream(self, created)
    }

    /// Maps a provider's error answer into the gateway's error.
    pub fn map_error(
        &self,
        status: u16,
        body: &[u8],
        retry_after: Option<&str>,
        error_type: Option<&str>,
    ) -> GatewayError {
        self.translator.error(UpstreamError {
            status,
            body,
            retry_after,
            error_type,
        })
    }
}

/// A provider error body, whatever its shape (`{"error":{"message","type"|"status"|"code"}}`
/// of OpenAI, Anthropic and Gemini, `{"error":"..."}`, `{"message":"..."}` of vLLM,
/// `{"detail":"..."}`), mapped by `error::from_provider`: the provider's text is passed on only
/// where the client can act on it, and scrubbed.
pub fn provider_error(
    provider: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<&str>,
) -> GatewayError {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let msg = v.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .and_then(Value::as_str)
    });
    let kind = v.as_ref().and_then(|v| {
        ["/error/type", "/error/status", "/error/code", "/type"]
            .iter()
            .find_map(|p| v.pointer(p).and_then(Value::as_str))
            .filter(|k| *k != "error")
    });
    let mut err = crate::error::from_provider(provider, status, kind, msg);
    let header = retry_after.and_then(|s| s.trim().parse::<f64>().ok());
    // Gemini says when to retry in the body (google.rpc.RetryInfo).
    let body_delay = v.as_ref().and_then(|v| {
        v.pointer("/error/details")?
            .as_array()?
            .iter()
            .find_map(|d| {
                d.get("retryDelay")?
                    .as_str()?
                    .trim_end_matches('s')
                    .parse::<f64>()
                    .ok()
            })
    });
    if let Some(secs) = header.or(body_delay) {
        if secs.is_finite() && secs >= 0.0 {
            err.retry_after = Some(secs.ceil() as u64);
        }
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_keep_type_and_retry_after() {
        let e = provider_error(
            "anthropic",
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            None,
        );
        assert_eq!(e.status, 503);
        assert!(e.message.contains("overloaded_error"), "{}", e.message);
        let e = provider_error("gemini", 429, br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"31s"}]}}"#, None);
        assert_eq!((e.status, e.retry_after), (429, Some(31)));
        let e = provider_error("openai", 429, b"not json", Some("2.5"));
        assert_eq!(e.retry_after, Some(3));
        assert!(e.message.contains("HTTP 429"));
        let e = provider_error(
            "openai",
            400,
            br#"{"object":"error","message":"bad thing"}"#,
            None,
        );
        assert!(e.message.contains("bad thing"));
    }
}
