//! A backend is one provider endpoint, described by Envoy host metadata
//! (`filter_metadata.sluice`), and the factory of translators: [`translator`] is the one place
//! that picks a translator for a (client API, wire format) pair. [`Backend::plan`] turns the
//! client's request bytes into the upstream request for that backend and a `ResponsePlan` that
//! translates the answer back.

use crate::error::GatewayError;
use crate::models::Ranked;
use crate::providers::{self, ClientApi, ClientHints, Plan, ProviderKind, Target, Translator};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The translator for a client API and a backend's wire format: the only `match` on providers.
pub fn translator(api: ClientApi, provider: ProviderKind) -> &'static dyn Translator {
    match (api, provider) {
        (ClientApi::OpenAiChat, ProviderKind::Openai) => &providers::openai_compat::chat::OPENAI,
        (ClientApi::OpenAiChat, ProviderKind::Azure) => &providers::openai_compat::chat::AZURE,
        (ClientApi::OpenAiChat, ProviderKind::Anthropic) => &providers::anthropic::chat::TRANSLATOR,
        (ClientApi::OpenAiChat, ProviderKind::Gemini) => &providers::gemini::chat::TRANSLATOR,
        (ClientApi::AnthropicMessages, ProviderKind::Anthropic) => {
            &providers::anthropic::messages::MESSAGES
        }
        (ClientApi::AnthropicMessages, ProviderKind::Openai) => &providers::via_openai::OPENAI,
        (ClientApi::AnthropicMessages, ProviderKind::Azure) => &providers::via_openai::AZURE,
        (ClientApi::AnthropicMessages, ProviderKind::Gemini) => &providers::via_openai::GEMINI,
        (ClientApi::OpenAiChat, ProviderKind::Bedrock) => &providers::bedrock::converse::TRANSLATOR,
        (ClientApi::AnthropicMessages, ProviderKind::Bedrock) => {
            &providers::bedrock::invoke::MESSAGES_ON_BEDROCK
        }
        (ClientApi::OpenAiChat, ProviderKind::Vertex) => &providers::vertex::CHAT,
        (ClientApi::AnthropicMessages, ProviderKind::Vertex) => &providers::vertex::MESSAGES,
        (ClientApi::AnthropicCountTokens, ProviderKind::Anthropic) => {
            &providers::anthropic::messages::COUNT_TOKENS
        }
        // Bedrock's and Vertex's token counting is per model family: the gateway estimates.
        (ClientApi::AnthropicCountTokens, _) => &providers::via_openai::COUNT_TOKENS,
        (ClientApi::OpenAiEmbeddings, ProviderKind::Openai) => &providers::embeddings::OPENAI,
        (ClientApi::OpenAiEmbeddings, ProviderKind::Azure) => &providers::embeddings::AZURE,
        (ClientApi::OpenAiEmbeddings, ProviderKind::Gemini) => &providers::embeddings::GEMINI,
        (ClientApi::OpenAiEmbeddings, ProviderKind::Vertex) => &providers::embeddings::VERTEX,
        (ClientApi::OpenAiEmbeddings, ProviderKind::Bedrock) => &providers::embeddings::BEDROCK,
        (ClientApi::OpenAiEmbeddings, ProviderKind::Anthropic) => &providers::embeddings::ANTHROPIC,
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
    /// Removed from a client model name that `models` does not map (`vertex/` serves
    /// `vertex/gemini-2.5-pro` as `gemini-2.5-pro`).
    #[serde(default)]
    pub strip_model_prefix: Option<String>,
    /// `models`, ranked (built by `from_json`).
    #[serde(skip)]
    model_map: Ranked<String>,
    /// `base_path` or the provider's default (`contract::BASE_PATHS`), without a trailing `/`.
    #[serde(skip)]
    resolved_base_path: String,
}

impl Backend {
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let mut b: Backend = serde_path_to_error::deserialize(v)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
        b.model_map = Ranked::new(b.models.clone());
        let kind = b.provider.as_str();
        let default = crate::contract::BASE_PATHS
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or("", |(_, p)| p);
        b.resolved_base_path = b
            .base_path
            .as_deref()
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_string();
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

    /// What the translators need of this host (and of the client's headers).
    pub fn target<'a>(&'a self, client: &'a ClientHints) -> Target<'a> {
        Target {
            client,
            strip_prefix: self.strip_model_prefix.as_deref(),
            base_path: &self.resolved_base_path,
            models: &self.model_map,
            api_version: self.api_version.as_deref(),
            max_tokens_default: self.max_tokens_default,
        }
    }

    /// Builds this attempt's upstream request from the client's original body (a chat
    /// completion).
    pub fn plan(&self, body: &[u8]) -> Result<Plan, GatewayError> {
        self.plan_for(ClientApi::OpenAiChat, body, &ClientHints::default())
    }

    /// Builds this attempt's upstream request for a client of `api`.
    pub fn plan_for(
        &self,
        api: ClientApi,
        body: &[u8],
        client: &ClientHints,
    ) -> Result<Plan, GatewayError> {
        translator(api, self.provider).request(&self.target(client), body)
    }
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
    fn every_pair_has_a_translator() {
        for p in [
            ProviderKind::Openai,
            ProviderKind::Azure,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
            ProviderKind::Bedrock,
            ProviderKind::Vertex,
        ] {
            let t = translator(ClientApi::OpenAiChat, p);
            assert_eq!(
                t.passthrough(),
                matches!(p, ProviderKind::Openai | ProviderKind::Azure)
            );
        }
    }
}
