//! Upstream role: runs once per attempt in the cluster's upstream filter chain.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use sluice_core::backend::Backend;
use sluice_core::contract;
use sluice_core::contract::Api;
use sluice_core::metadata;
use sluice_core::providers::{ClientApi, ClientHints, ResponsePlan};
use sluice_core::stream::StreamTranslator;
use sluice_core::GatewayError;
use sluice_host::{self as host, Buffer, Host};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

enum Mode {
    /// Not decided yet (request phase).
    None,
    /// A complete JSON answer, translated at end of stream.
    Json,
    /// An error answer (status, `retry-after`, AWS's `x-amzn-errortype`), mapped to the
    /// client's envelope at end of stream.
    Error(u16, Option<String>, Option<String>),
    Stream(Box<dyn StreamTranslator>),
}

/// Backends decoded from host metadata, by the metadata's bytes. A host's metadata changes only
/// with the cluster's configuration, so each is decoded once per VM instead of once per attempt
/// (decoding was a fifth of the upstream role's time). Bounded: emptied when full.
#[derive(Default)]
pub struct Backends(RefCell<HashMap<Vec<u8>, Rc<Backend>>>);

const MAX_BACKENDS: usize = 256;

impl Backends {
    /// The host's `filter_metadata.sluice`, else the cluster's (in Istio, an `EnvoyFilter`
    /// puts it on the `outbound|...` cluster: its hosts come from a ServiceEntry).
    fn load(&self, host: &dyn Host) -> Result<Rc<Backend>, String> {
        let on_host = host
            .property(&["xds", "upstream_host_metadata"])
            .filter(|md| metadata::filter_metadata(md, "sluice").is_some());
        let md = on_host
            .or_else(|| host.property(&["xds", "cluster_metadata"]))
            .ok_or("the upstream host has no metadata")?;
        if let Some(b) = self.0.borrow().get(&md) {
            return Ok(Rc::clone(b));
        }
        let v = metadata::filter_metadata(&md, "sluice")
            .ok_or("neither the upstream host nor its cluster has filter_metadata.sluice")?;
        let b = Rc::new(Backend::from_json(&v).map_err(|e| format!("filter_metadata.sluice.{e}"))?);
        let mut known = self.0.borrow_mut();
        if known.len() >= MAX_BACKENDS {
            known.clear();
        }
        known.insert(md, Rc::clone(&b));
        Ok(b)
    }
}

pub struct Upstream {
    host: &'static dyn Host,
    backends: Rc<Backends>,
    backend: Option<Rc<Backend>>,
    /// The client's API, from the endpoint the listener's filters recorded.
    api: ClientApi,
    plan: Option<ResponsePlan>,
    mode: Mode,
    reading_body: bool,
}

impl Upstream {
    pub fn new(host: &'static dyn Host, backends: Rc<Backends>) -> Self {
        Upstream {
            host,
            backends,
            backend: None,
            api: ClientApi::OpenAiChat,
            plan: None,
            mode: Mode::None,
            reading_body: false,
        }
    }
}

impl Upstream {
    fn refuse(&self, err: &GatewayError) -> Action {
        self.host.send_error(err);
        Action::Pause
    }

    /// The client's headers a translator may pass on, as the route role checked them.
    fn hints(&self) -> ClientHints {
        if self.api.api() != Api::Anthropic {
            return ClientHints::default();
        }
        let read = |name| {
            self.host
                .property(&[name])
                .and_then(|v| String::from_utf8(v).ok())
        };
        ClientHints {
            anthropic_version: read(contract::property::ANTHROPIC_VERSION),
            anthropic_beta: read(contract::property::ANTHROPIC_BETA),
        }
    }
}

impl Context for Upstream {}

impl HttpContext for Upstream {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let req = host::map_request();
        self.api = host::noted_endpoint(self.host)
            .and_then(ClientApi::of)
            .unwrap_or(ClientApi::OpenAiChat);
        let backend = match self.backends.load(self.host) {
            Ok(b) => b,
            Err(e) => {
                self.host
                    .log(LogLevel::Error, &format!("sluice-translate(upstream): {e}"));
                return self.refuse(
                    &GatewayError::new(
                        500,
                        "server_error",
                        "The gateway's upstream configuration is invalid.",
                    )
                    .with_code("gateway_misconfigured"),
                );
            }
        };
        // What reaches a provider is an allow-list (contract::FORWARDED_HEADERS plus the
        // backend's forward_headers): client credentials, cookies, account and project
        // selectors (openai-organization, x-goog-user-project...), x-sluice-* and whatever an
        // earlier attempt set all go, on every attempt. The credential injector and the
        // signer add the provider's own credential after this filter.
        for (name, _) in self.host.read_headers(req).iter() {
            if !backend.forwards(name) {
                self.host.remove_header(req, name);
            }
        }
        // Set on every attempt: the previous attempt may have set another provider's host.
        let authority = backend.authority.clone().or_else(|| {
            self.host
                .property(&["upstream", "address"])
                .and_then(|a| String::from_utf8(a).ok())
        });
        if let Some(a) = authority {
            self.host.set_header(req, ":authority", Some(&a));
        }
        self.backend = Some(backend);
        if end_of_stream {
            return self.refuse(&GatewayError::invalid_request("The request body is empty."));
        }
        self.reading_body = true;
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.reading_body {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.reading_body = false;
        let Some(backend) = &self.backend else {
            return Action::Continue;
        };
        let body = self.host.body(Buffer::HttpRequestBody, 0, body_size);
        let plan = match backend.plan_for(self.api, &body, &self.hints()) {
            Ok(p) => p,
            Err(e) => return self.refuse(&e),
        };
        if let Some(answer) = &plan.answer {
            // The gateway's own answer (a token estimate): nothing goes upstream.
            self.host
                .send(200, &[("content-type", "application/json".into())], answer);
            return Action::Pause;
        }
        let req = host::map_request();
        self.host.set_header(req, ":path", Some(&plan.request.path));
        for (k, v) in &plan.request.headers {
            self.host.set_header(req, k, Some(v));
        }
        if let Some(c) = &backend.credential {
            // Read by the credential matcher that runs after this filter, then removed.
            self.host
                .set_header(req, contract::request::CREDENTIAL, Some(c));
        }
        if let Some(b) = &plan.request.body {
            self.host.set_body(Buffer::HttpRequestBody, 0, body_size, b);
        }
        self.plan = Some(plan.response);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let (Some(plan), Some(backend)) = (&self.plan, &self.backend) else {
            return Action::Continue;
        };
        let resp = host::map_response();
        let headers = self.host.read_headers(resp);
        // The provider's headers are an allow-list too: nothing that names the gateway's
        // account (openai-organization...), sets a cookie, or claims to be a Sluice signal.
        for (name, _) in headers.iter() {
            if !backend.returns(name) {
                self.host.remove_header(resp, name);
            }
        }
        self.host
            .set_response_header(contract::response::PROVIDER, backend.display_name());
        self.host
            .set_response_header(contract::response::SERVED_MODEL, &plan.upstream_model);
        let status: u16 = headers
            .get_str(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(502);
        if !(200..300).contains(&status) {
            let retry_after = headers.get_str("retry-after").map(str::to_string);
            let error_type = headers.get_str("x-amzn-errortype").map(str::to_string);
            if end_of_stream {
                let err =
                    plan.map_error(status, b"", retry_after.as_deref(), error_type.as_deref());
                set_error_headers(self.host, self.api.api(), &err);
                return Action::Continue;
            }
            self.mode = Mode::Error(status, retry_after, error_type);
            self.host.remove_header(resp, "content-length");
            return Action::Pause;
        }
        if plan.stream {
            self.host.remove_header(resp, "content-length");
            self.host
                .set_header(resp, "content-type", Some("text/event-stream"));
            self.mode = Mode::Stream(plan.stream_translator(self.host.now_secs()));
            return Action::Continue;
        }
        self.mode = Mode::Json;
        self.host.remove_header(resp, "content-length");
        if end_of_stream {
            let err = GatewayError::bad_upstream("The backend answered with an empty body.");
            set_error_headers(self.host, self.api.api(), &err);
            return Action::Continue;
        }
        Action::Pause
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &mut self.mode {
            Mode::None => Action::Continue,
            Mode::Stream(t) => {
                host::stream_chunk(self.host, body_size, end_of_stream, &mut **t, true);
                Action::Continue
            }
            Mode::Json | Mode::Error(..) if !end_of_stream => Action::Pause,
            Mode::Json => {
                let Some(plan) = &self.plan else {
                    return Action::Continue;
                };
                let body = self.host.body(Buffer::HttpResponseBody, 0, body_size);
                match plan.translate_json(&body, self.host.now_secs()) {
                    Ok(out) => {
                        self.host.set_header(
                            host::map_response(),
                            "content-type",
                            Some("application/json"),
                        );
                        if !plan.is_passthrough() || out.len() != body.len() {
                            self.host
                                .set_body(Buffer::HttpResponseBody, 0, body_size, &out);
                        }
                    }
                    Err(err) => {
                        let body = set_error_headers(self.host, self.api.api(), &err);
                        self.host
                            .set_body(Buffer::HttpResponseBody, 0, body_size, &body);
                    }
                }
                Action::Continue
            }
            Mode::Error(status, retry_after, error_type) => {
                let Some(plan) = &self.plan else {
                    return Action::Continue;
                };
                let body = self.host.body(Buffer::HttpResponseBody, 0, body_size);
                let err = plan.map_error(
                    *status,
                    &body,
                    retry_after.as_deref(),
                    error_type.as_deref(),
                );
                let body = set_error_headers(self.host, self.api.api(), &err);
                self.host
                    .set_body(Buffer::HttpResponseBody, 0, body_size, &body);
                Action::Continue
            }
        }
    }
}

/// Turns the response into `err` for a client of `api`: status and headers set, the body to
/// write returned.
fn set_error_headers(host: &dyn Host, api: Api, err: &GatewayError) -> Vec<u8> {
    let resp = host::map_response();
    let (status, body) = sluice_core::api::error_reply(api, err);
    host.set_header(resp, ":status", Some(&status.to_string()));
    host.set_header(resp, "content-type", Some("application/json"));
    host.remove_header(resp, "retry-after");
    for (k, v) in err.headers() {
        host.set_header(resp, k, Some(&v));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_host::fake::FakeHost;

    fn attempt(
        md: serde_json::Value,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (&'static FakeHost, Upstream) {
        let host = FakeHost::leak();
        host.properties.borrow_mut().insert(
            "xds.upstream_host_metadata".into(),
            metadata::encode_filter_metadata("sluice", &md),
        );
        host.with_request("POST", "/v1/chat/completions", headers);
        *host.request_body.borrow_mut() = body.as_bytes().to_vec();
        let mut u = Upstream::new(host, Rc::default());
        assert!(matches!(u.on_http_request_headers(0, false), Action::Pause));
        assert!(matches!(
            u.on_http_request_body(body.len(), true),
            Action::Continue
        ));
        (host, u)
    }

    const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

    #[test]
    fn only_allowed_headers_go_and_each_provider_gets_its_path() {
        let smuggled = [
            ("authorization", "Bearer sk-client"),
            ("cookie", "s=1"),
            ("openai-organization", "org-evil"),
            ("x-goog-user-project", "evil"),
            (contract::request::CREDENTIAL, "other"),
            ("accept-encoding", "gzip"),
            ("content-type", "application/json"),
            ("anthropic-beta", "tools-2024"),
        ];
        let (host, _) = attempt(
            json!({"provider":"anthropic","credential":"a.key","forward_headers":["anthropic-beta"]}),
            &smuggled,
            CHAT,
        );
        for gone in [
            "authorization",
            "cookie",
            "openai-organization",
            "x-goog-user-project",
            "accept-encoding",
        ] {
            assert_eq!(host.request_header(gone), None, "{gone}");
        }
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/v1/messages")
        );
        assert_eq!(
            host.request_header("anthropic-version").as_deref(),
            Some("2023-06-01")
        );
        assert_eq!(
            host.request_header("anthropic-beta").as_deref(),
            Some("tools-2024")
        );
        assert_eq!(
            host.request_header(contract::request::CREDENTIAL)
                .as_deref(),
            Some("a.key")
        );
        let (host, _) = attempt(
            json!({"provider":"gemini","models":{"*":"gemini-2.5-pro"}}),
            &smuggled,
            CHAT,
        );
        assert_eq!(
            host.request_header(":path").as_deref(),
            Some("/v1beta/models/gemini-2.5-pro:generateContent")
        );
        assert_eq!(host.request_header("anthropic-beta"), None);
    }

    #[test]
    fn provider_errors_are_mapped_and_its_headers_filtered() {
        let (host, mut u) = attempt(json!({"provider":"openai","name":"primary"}), &[], CHAT);
        host.with_response(
            401,
            &[
                ("content-type", "application/json"),
                ("set-cookie", "x"),
                ("openai-organization", "org-gw"),
                (contract::response::CACHE, "hit"),
            ],
        );
        assert!(matches!(
            u.on_http_response_headers(0, false),
            Action::Pause
        ));
        *host.response_body.borrow_mut() =
            br#"{"error":{"message":"Incorrect API key provided: gw-key-123","type":"invalid_request_error"}}"#.to_vec();
        let n = host.response_body.borrow().len();
        u.on_http_response_body(n, true);
        let body = String::from_utf8(host.response_body.borrow().clone()).unwrap();
        assert!(!body.contains("gw-key-123"), "{body}");
        assert_eq!(host.response_header(":status").as_deref(), Some("502"));
        assert_eq!(host.response_header("set-cookie"), None);
        assert_eq!(host.response_header("openai-organization"), None);
        assert_eq!(
            host.response_header(contract::response::CACHE),
            None,
            "no signal from a provider"
        );
        assert_eq!(
            host.response_header(contract::response::PROVIDER)
                .as_deref(),
            Some("primary")
        );
    }

    #[test]
    fn anthropic_answers_are_translated() {
        let (host, mut u) = attempt(json!({"provider":"anthropic"}), &[], CHAT);
        host.with_response(200, &[("content-type", "application/json")]);
        u.on_http_response_headers(0, false);
        *host.response_body.borrow_mut() = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}"#.to_vec();
        let n = host.response_body.borrow().len();
        u.on_http_response_body(n, true);
        let v: serde_json::Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens"], 3);
    }

    #[test]
    fn a_host_without_metadata_is_a_500_in_the_envelope() {
        let host = FakeHost::leak();
        host.with_request("POST", "/v1/chat/completions", &[]);
        let mut u = Upstream::new(host, Rc::default());
        u.on_http_request_headers(0, false);
        let r = host.reply().unwrap();
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (500, Some("gateway_misconfigured"))
        );
    }
}
