//! Route role: runs in the listener's HTTP filter chain, before the router.

use crate::RouteConfig;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use sluice_core::api::anthropic;
use sluice_core::contract::{self, property, Api, Endpoint};
use sluice_core::models;
use sluice_core::openai::{embeddings, force_stream_usage, validate};
use sluice_core::usage::UsageTap;
use sluice_core::GatewayError;
use sluice_host::{self as host, Buffer, Host};
use std::rc::Rc;

pub struct Route {
    host: &'static dyn Host,
    config: Rc<RouteConfig>,
    /// The endpoint whose body is being read.
    body: Option<Endpoint<'static>>,
    /// Set when the client streams without asking for usage and the usage must be removed.
    strip: Option<UsageTap>,
    strip_pending: bool,
}

impl Route {
    pub fn new(host: &'static dyn Host, config: Rc<RouteConfig>) -> Self {
        Route {
            host,
            config,
            body: None,
            strip: None,
            strip_pending: false,
        }
    }

    fn refuse(&self, err: &GatewayError) -> Action {
        self.host.send_error(err);
        Action::Pause
    }
}

impl Context for Route {}

impl HttpContext for Route {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let req = host::map_request();
        let headers = self.host.read_headers(req);
        // Internal signals come from Sluice only.
        headers.strip_internal(self.host, true);
        let endpoint = host::endpoint(self.host, &headers);
        let anthropic = headers.get("anthropic-version").is_some();
        match endpoint {
            Some(
                e @ (Endpoint::ChatCompletions
                | Endpoint::Messages
                | Endpoint::CountTokens
                | Endpoint::Embeddings),
            ) => {
                if end_of_stream {
                    return self.refuse(&GatewayError::invalid_request(
                        "The request body is empty: expected a JSON object with 'model' and 'messages'.",
                    ));
                }
                if e.api() == Api::Anthropic {
                    // Checked here, carried to every attempt in filter state.
                    for (name, property) in [
                        ("anthropic-version", property::ANTHROPIC_VERSION),
                        ("anthropic-beta", property::ANTHROPIC_BETA),
                    ] {
                        if let Some(v) = headers.get(name) {
                            if let Err(err) = contract::check_anthropic_header(name, v) {
                                return self.refuse(&err);
                            }
                            self.host.set_property(property, v);
                        }
                    }
                }
                self.body = Endpoint::from_path(e.path());
                self.host.remove_header(req, "content-length");
                // Holding the headers until the body is read lets Envoy route on the model
                // (x-sluice-model); where headers cannot be held (Istio's WasmPlugin has no
                // allow_on_headers_stop_iteration) the route is the Host's and they go on.
                if self.config.hold_headers {
                    Action::Pause
                } else {
                    Action::Continue
                }
            }
            Some(Endpoint::Models) => {
                let now = self.host.now_secs();
                let body = if anthropic {
                    models::anthropic_list(&self.config.models, now)
                } else {
                    self.config.models.list(now)
                };
                self.host.send(
                    200,
                    &[("content-type", "application/json".into())],
                    body.to_string().as_bytes(),
                );
                Action::Pause
            }
            Some(Endpoint::Model(id)) => {
                let now = self.host.now_secs();
                let found = contract::check_model(id)
                    .ok()
                    .filter(|()| self.config.models.contains(id))
                    .map(|()| {
                        if anthropic {
                            models::anthropic_model(id, now)
                        } else {
                            self.config.models.retrieve(id, now).unwrap_or_default()
                        }
                    });
                match found {
                    Some(m) => {
                        self.host.send(
                            200,
                            &[("content-type", "application/json".into())],
                            m.to_string().as_bytes(),
                        );
                        Action::Pause
                    }
                    None => self.refuse(&GatewayError::model_not_found(
                        &contract::escape_for_header(id),
                    )),
                }
            }
            Some(Endpoint::Usage) | None => {
                let method = headers.get_str(":method").unwrap_or_default();
                let path = headers.get_str(":path").unwrap_or_default();
                self.refuse(&contract::unknown_route(method, path))
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(endpoint) = self.body else {
            return Action::Continue;
        };
        if body_size > self.config.max_body_bytes {
            self.body = None;
            return self.refuse(&GatewayError::too_large(self.config.max_body_bytes));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.body = None;
        let body = self.host.body(Buffer::HttpRequestBody, 0, body_size);
        let value = match host::request_json(&body) {
            Ok(v) => v,
            Err(e) => return self.refuse(&e),
        };
        let checked = match endpoint {
            Endpoint::Messages => anthropic::request::validate(&value),
            Endpoint::CountTokens => anthropic::request::validate_count_tokens(&value),
            Endpoint::Embeddings => embeddings::validate(&value).map(|_| ()),
            _ => validate(&value).map(|req| {
                if req.is_stream() {
                    let (asked, new_body) = force_stream_usage(&body, &value);
                    if let Some(b) = new_body {
                        self.host
                            .set_body(Buffer::HttpRequestBody, 0, body_size, &b);
                    }
                    self.strip_pending = !asked && self.config.strip_unrequested_usage;
                }
            }),
        };
        if let Err(e) = checked {
            return self.refuse(&e);
        }
        let model = value
            .get("model")
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        if let Err(e) = contract::check_model(model) {
            return self.refuse(&e);
        }
        if !self.config.models.contains(model) {
            return self.refuse(&GatewayError::model_not_found(model));
        }
        // check_model passed: the name is safe in a header and a log.
        if self.config.hold_headers {
            self.host
                .set_header(host::map_request(), contract::request::MODEL, Some(model));
        }
        // The upstream filter rewrites the (shared) request headers per attempt; access logs
        // read what the client asked for from here.
        self.host.set_log_field(property::MODEL, model);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        if self.strip_pending {
            let resp = host::map_response();
            let sse = self
                .host
                .header_str(resp, "content-type")
                .is_some_and(|c| c.starts_with("text/event-stream"));
            if sse {
                self.host.remove_header(resp, "content-length");
                self.strip = Some(UsageTap::new(true));
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(s) = self.strip.as_mut() {
            host::stream_chunk(self.host, body_size, end_of_stream, s, true);
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::models::ModelSet;
    use sluice_host::fake::FakeHost;

    fn route(host: &'static FakeHost) -> Route {
        Route::new(
            host,
            Rc::new(RouteConfig {
                models: ModelSet::with_listed(
                    vec!["mock-gpt".into(), "claude-*".into()],
                    vec!["claude-sonnet-4-5".into()],
                ),
                max_body_bytes: 1000,
                strip_unrequested_usage: true,
                hold_headers: true,
            }),
        )
    }

    fn post(path: &str, body: &str) -> (&'static FakeHost, Route, Action) {
        let host = FakeHost::leak();
        host.with_request(
            "POST",
            path,
            &[
                (contract::request::MODEL, "forged"),
                (contract::request::CACHE_TTL, "5"),
            ],
        );
        *host.request_body.borrow_mut() = body.as_bytes().to_vec();
        let mut r = route(host);
        assert!(matches!(r.on_http_request_headers(0, false), Action::Pause));
        let a = r.on_http_request_body(body.len(), true);
        (host, r, a)
    }

    #[test]
    fn a_chat_request_names_its_model_for_routing() {
        let (host, _, a) = post(
            "/v1/chat/completions/",
            r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert!(matches!(a, Action::Continue));
        assert!(host.reply().is_none());
        assert_eq!(
            host.request_header(contract::request::MODEL).as_deref(),
            Some("mock-gpt")
        );
        assert_eq!(
            host.request_header(contract::request::CACHE_TTL),
            None,
            "client controls end here"
        );
        assert_eq!(
            host.property_str(property::MODEL).as_deref(),
            Some("mock-gpt")
        );
        assert_eq!(
            host.property_str(property::PATH).as_deref(),
            Some("/v1/chat/completions")
        );
    }

    #[test]
    fn bad_requests_get_the_envelope_and_go_nowhere() {
        for (body, status, code) in [
            (
                r#"{"model":"mock-gpt\r\nx: 1","messages":[{"role":"user","content":"hi"}]}"#,
                400,
                "invalid_model",
            ),
            (
                r#"{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}"#,
                404,
                "model_not_found",
            ),
            (r#"{"model":"mock-gpt","model":"x","messages":[]}"#, 400, ""),
        ] {
            let (host, _, a) = post("/v1/chat/completions", body);
            assert!(matches!(a, Action::Pause));
            let r = host.reply().unwrap();
            assert_eq!(r.status, status, "{body}");
            if !code.is_empty() {
                assert_eq!(r.json()["error"]["code"], code);
            }
            assert_eq!(host.request_header(contract::request::MODEL), None);
            assert_eq!(
                host.property_str(contract::property::LOCAL_REPLY)
                    .as_deref(),
                Some("1")
            );
        }
        let (host, _, _) = post("/v1/chat/completions", &"x".repeat(2000));
        assert_eq!(host.reply().unwrap().status, 413);
    }

    #[test]
    fn streams_ask_for_usage_and_unknown_paths_are_404() {
        let (host, _, _) = post(
            "/v1/chat/completions",
            r#"{"model":"claude-x","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        let sent: serde_json::Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], true);
        let host = FakeHost::leak();
        host.with_request("GET", "/v1/chat/%2e%2e/models", &[]);
        route(host).on_http_request_headers(0, true);
        let r = host.reply().unwrap();
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (404, Some("unknown_url"))
        );
    }

    #[test]
    fn the_model_list_has_no_globs() {
        let host = FakeHost::leak();
        host.with_request("GET", "/v1/models", &[]);
        route(host).on_http_request_headers(0, true);
        let ids: Vec<String> = host.reply().unwrap().json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["mock-gpt", "claude-sonnet-4-5"]);
    }
}
