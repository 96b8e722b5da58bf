//! A backend is one provider endpoint, described by Envoy host metadata
//! (`filter_metadata.sluice`). [`Backend::plan`] turns the client's request bytes into the
//! upstream request for that backend and a [`ResponsePlan`] that translates the answer back.

use crate::contract::path_segment;
use crate::error::GatewayError;
use crate::models::Ranked;
use crate::openai::{self, ChatRequest};
use crate::stream::StreamTranslator;
use crate::{openai_anthropic, openai_compat, openai_gemini};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI and every OpenAI-compatible server (vLLM, llama.cpp, Ollama, DeepSeek, Groq...).
    Openai,
    /// Azure OpenAI: deployment in the path, `api-version` in the query.
    Azure,
    Anthropic,
    Gemini,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Azure => "azure",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
        }
    }
}

/// `filter_metadata.sluice` of an upstream host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub provider: ProviderKind,
    /// Shown to clients in `x-sluice-provider`; defaults to the provider kind.
    #[serde(default)]
    pub name: Option<String>,
    /// Path prefix of the API on this host (`/v1`, `/v1beta`, `/openai/deployments`...).
    #[serde(default)]
    pub base_path: Option<String>,
    /// Host header to send (the provider's host name); Envoy's is kept when absent.
    #[serde(default)]
    pub authority: Option<String>,
    /// Client model name to provider model name (Azure: deployment). `*` matches any model.
    #[serde(default)]
    pub models: BTreeMap<String, String>,
    /// Azure `api-version` query value, or Anthropic's `anthropic-version` header.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Anthropic requires `max_tokens`: used when the client sent none.
    #[serde(default)]
    pub max_tokens_default: Option<u64>,
    /// Names the credential for this host: the upstream filter puts it in
    /// `x-sluice-credential`, on which a matcher picks the `credential_injector` to run. Lets one
    /// cluster (a fallback chain, a key pool) use a different key per host and per attempt.
    #[serde(default)]
    pub credential: Option<String>,
    /// Client request headers this backend receives besides `contract::FORWARDED_HEADERS`
    /// (names or globs, e.g. `anthropic-beta`, `x-mock-*`). Everything else a client sends
    /// stays in the gateway.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Provider response headers the client receives besides `contract::RETURNED_HEADERS`
    /// (names or globs).
    #[serde(default)]
    pub return_headers: Vec<String>,
    /// `models`, ranked (built by `from_json`).
    #[serde(skip)]
    model_map: Ranked<String>,
}

pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// What to send upstream.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// `:path`, query included.
    pub path: String,
    /// Headers to set (the adapter also removes client credentials and `x-sluice-*`).
    pub headers: Vec<(&'static str, String)>,
    /// `None`: the client's body goes as it is.
    pub body: Option<Vec<u8>>,
}

/// How to read the answer of one attempt.
#[derive(Debug, Clone)]
pub struct ResponsePlan {
    pub provider: ProviderKind,
    pub stream: bool,
    /// Anthropic json_schema mode: the forced tool whose input is the answer.
    pub json_tool: Option<String>,
    /// The model the client asked for (used when a provider does not echo one).
    pub client_model: String,
    /// The model this attempt asked the provider for.
    pub upstream_model: String,
}

pub struct Plan {
    pub request: UpstreamRequest,
    pub response: ResponsePlan,
}

impl Backend {
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let mut b: Backend = serde_path_to_error::deserialize(v)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
        b.model_map = Ranked::new(b.models.clone());
        for h in b
            .forward_headers
            .iter_mut()
            .chain(b.return_headers.iter_mut())
        {
            h.make_ascii_lowercase();
            if h.starts_with(':') || h.starts_with(crate::contract::HEADER_PREFIX) || h == "*" {
                return Err(format!(
                    "forward_headers/return_headers: '{h}' cannot be passed on"
                ));
            }
        }
        Ok(b)
    }

    /// Whether a provider's response header may reach the client.
    pub fn returns(&self, name: &str) -> bool {
        crate::contract::passes_back(name)
            || self
                .return_headers
                .iter()
                .any(|h| crate::models::glob(h, &name.to_ascii_lowercase()))
    }

    /// Whether a client request header may reach this backend: the contract's allow-list plus
    /// what the operator configured for this backend. Pseudo-headers are Envoy's.
    pub fn forwards(&self, name: &str) -> bool {
        name.starts_with(':')
            || crate::contract::FORWARDED_HEADERS
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            || self
                .forward_headers
                .iter()
                .any(|h| crate::models::glob(h, &name.to_ascii_lowercase()))
    }

    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.provider.as_str())
    }

    /// The provider's name for a client model: the host's `models` map, ranked like every
    /// other name map (exact, then the longest glob; `*` matches any model).
    pub fn upstream_model<'a>(&'a self, client_model: &'a str) -> &'a str {
        self.model_map
            .get(client_model)
            .map(String::as_str)
            .unwrap_or(client_model)
    }

    /// The backend's API base path, or its provider's default (`contract::BASE_PATHS`).
    fn base_path(&self) -> String {
        let kind = self.provider.as_str();
        let default = crate::contract::BASE_PATHS
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or("", |(_, p)| p);
        let p = self.base_path.as_deref().unwrap_or(default);
        p.trim_end_matches('/').to_string()
    }

    /// Builds this attempt's upstream request from the client's original body.
    pub fn plan(&self, body: &[u8]) -> Result<Plan, GatewayError> {
        let json = ("content-type", "application/json".to_string());
        if matches!(self.provider, ProviderKind::Openai | ProviderKind::Azure) {
            // A pass-through reads two fields (the route role validated the rest) and keeps
            // the client's bytes unless the host renames the model.
            let peek: openai_compat::Peek = serde_json::from_slice(body).map_err(|e| {
                GatewayError::invalid_request(format!(
                    "We could not parse the JSON body of your request ({e})."
                ))
            })?;
            let client_model = peek.model.unwrap_or_default();
            let model = self.upstream_model(&client_model).to_string();
            let path = if self.provider == ProviderKind::Azure {
                let version = self
                    .api_version
                    .as_deref()
                    .unwrap_or(DEFAULT_AZURE_API_VERSION);
                format!(
                    "{}/{}/chat/completions?api-version={}",
                    self.base_path(),
                    path_segment(&model),
                    path_segment(version)
                )
            } else {
                format!("{}/chat/completions", self.base_path())
            };
            let body = openai_compat::request(body, &model, &client_model)?;
            return Ok(Plan {
                request: UpstreamRequest {
                    path,
                    headers: vec![json],
                    body,
                },
                response: ResponsePlan {
                    provider: self.provider,
                    stream: peek.stream == Some(true),
                    json_tool: None,
                    client_model,
                    upstream_model: model,
                },
            });
        }
        let value = openai::parse_body(body)?;
        let req = openai::validate(&value)?;
        let model = self.upstream_model(&req.model).to_string();
        if self.provider == ProviderKind::Anthropic {
            let max_default = self.max_tokens_default.unwrap_or(DEFAULT_MAX_TOKENS);
            let (out, json_tool) = openai_anthropic::request(&req, &model, max_default)?;
            let version = self
                .api_version
                .as_deref()
                .unwrap_or(DEFAULT_ANTHROPIC_VERSION);
            return Ok(Plan {
                request: UpstreamRequest {
                    path: format!("{}/messages", self.base_path()),
                    headers: vec![json, ("anthropic-version", version.to_string())],
                    body: Some(serde_json::to_vec(&out).unwrap_or_default()),
                },
                response: plan_for(self.provider, &req, json_tool, &model),
            });
        }
        let out = openai_gemini::request(&req)?;
        let method = if req.is_stream() {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        Ok(Plan {
            request: UpstreamRequest {
                path: format!(
                    "{}/models/{}:{}",
                    self.base_path(),
                    path_segment(&model),
                    method
                ),
                headers: vec![json],
                body: Some(serde_json::to_vec(&out).unwrap_or_default()),
            },
            response: plan_for(self.provider, &req, None, &model),
        })
    }
}

fn plan_for(
    provider: ProviderKind,
    req: &ChatRequest,
    json_tool: Option<String>,
    model: &str,
) -> ResponsePlan {
    ResponsePlan {
        provider,
        stream: req.is_stream(),
        json_tool,
        client_model: req.model.clone(),
        upstream_model: model.to_string(),
    }
}

impl ResponsePlan {
    /// True when the answer is OpenAI's own format and passes through.
    pub fn is_passthrough(&self) -> bool {
        matches!(self.provider, ProviderKind::Openai | ProviderKind::Azure)
    }

    /// Translates a complete JSON answer (status 2xx).
    pub fn translate_json(&self, body: &[u8], created: u64) -> Result<Vec<u8>, GatewayError> {
        match self.provider {
            ProviderKind::Openai | ProviderKind::Azure => openai_compat::response(body),
            ProviderKind::Anthropic => openai_anthropic::response(body, self, created),
            ProviderKind::Gemini => openai_gemini::response(body, self, created),
        }
    }

    pub fn stream_translator(&self, created: u64) -> Box<dyn StreamTranslator> {
        match self.provider {
            ProviderKind::Openai | ProviderKind::Azure => Box::new(openai_compat::Stream::new()),
            ProviderKind::Anthropic => Box::new(openai_anthropic::stream(self, created)),
            ProviderKind::Gemini => Box::new(openai_gemini::stream(self, created)),
        }
    }

    /// Maps a provider's error answer into the OpenAI envelope.
    pub fn map_error(&self, status: u16, body: &[u8], retry_after: Option<&str>) -> GatewayError {
        provider_error(self.provider.as_str(), status, body, retry_after)
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
    use serde_json::json;

    fn backend(v: Value) -> Backend {
        Backend::from_json(&v).unwrap()
    }

    #[test]
    fn unknown_metadata_fields_are_refused_with_their_name() {
        let e = Backend::from_json(&json!({"provider":"openai","bogus":1})).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = Backend::from_json(&json!({"provider":"nope"})).unwrap_err();
        assert!(e.contains("provider"), "{e}");
    }

    #[test]
    fn paths_per_provider() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let sbody = br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let p = backend(json!({"provider":"openai","base_path":"/api/v1/"}))
            .plan(body)
            .unwrap();
        assert_eq!(p.request.path, "/api/v1/chat/completions");
        let p =
            backend(json!({"provider":"azure","models":{"m":"dep1"},"api_version":"2024-06-01"}))
                .plan(body)
                .unwrap();
        assert_eq!(
            p.request.path,
            "/openai/deployments/dep1/chat/completions?api-version=2024-06-01"
        );
        let p = backend(json!({"provider":"anthropic"})).plan(body).unwrap();
        assert_eq!(p.request.path, "/v1/messages");
        assert!(p
            .request
            .headers
            .contains(&("anthropic-version", "2023-06-01".into())));
        let p = backend(json!({"provider":"gemini","models":{"*":"gemini-2.5-flash"}}))
            .plan(body)
            .unwrap();
        assert_eq!(
            p.request.path,
            "/v1beta/models/gemini-2.5-flash:generateContent"
        );
        let p = backend(json!({"provider":"gemini"})).plan(sbody).unwrap();
        assert_eq!(
            p.request.path,
            "/v1beta/models/m:streamGenerateContent?alt=sse"
        );
        assert!(p.response.stream);
    }

    #[test]
    fn provider_errors_keep_message_and_retry_after() {
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
