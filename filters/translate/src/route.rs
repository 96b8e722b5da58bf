//! Route role: runs in the listener's HTTP filter chain, before the router.

use crate::RouteConfig;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use sluice_core::contract::{self, property, Endpoint};
use sluice_core::openai::{force_stream_usage, validate};
use sluice_core::usage::UsageTap;
use sluice_core::GatewayError;
use sluice_host::{self as host, Buffer};
use std::rc::Rc;

pub struct Route {
    config: Rc<RouteConfig>,
    /// The request is a chat completion whose body is being read.
    chat: bool,
    /// Set when the client streams without asking for usage and the usage must be removed.
    strip: Option<UsageTap>,
    strip_pending: bool,
}

impl Route {
    pub fn new(config: Rc<RouteConfig>) -> Self {
        Route {
            config,
            chat: false,
            strip: None,
            strip_pending: false,
        }
    }

    fn refuse(&self, err: &GatewayError) -> Action {
        host::send_error(err);
        Action::Pause
    }
}

impl Context for Route {}

impl HttpContext for Route {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let req = host::map_request();
        let headers = host::Headers::read(req);
        // Internal signals come from Sluice only.
        headers.strip_internal(true);
        let endpoint = host::endpoint(&headers);
        match endpoint {
            Some(Endpoint::ChatCompletions) => {
                host::set_log_field(property::PATH, "/v1/chat/completions");
                if end_of_stream {
                    return self.refuse(&GatewayError::invalid_request(
                        "The request body is empty: expected a JSON object with 'model' and 'messages'.",
                    ));
                }
                self.chat = true;
                host::remove_header(req, "content-length");
                Action::Pause
            }
            Some(Endpoint::Models) => {
                let body = self.config.models.list(host::now_secs());
                host::send(
                    200,
                    &[("content-type", "application/json".into())],
                    body.to_string().as_bytes(),
                );
                Action::Pause
            }
            Some(Endpoint::Model(id)) => {
                let found = contract::check_model(id)
                    .ok()
                    .and_then(|()| self.config.models.retrieve(id, host::now_secs()));
                match found {
                    Some(m) => {
                        host::send(
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
        if !self.chat {
            return Action::Continue;
        }
        if body_size > self.config.max_body_bytes {
            self.chat = false;
            return self.refuse(&GatewayError::too_large(self.config.max_body_bytes));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.chat = false;
        let body = host::body(Buffer::HttpRequestBody, 0, body_size);
        let value = match host::request_json(&body) {
            Ok(v) => v,
            Err(e) => return self.refuse(&e),
        };
        let req = match validate(&value) {
            Ok(r) => r,
            Err(e) => return self.refuse(&e),
        };
        if !self.config.models.contains(&req.model) {
            return self.refuse(&GatewayError::model_not_found(&req.model));
        }
        if req.is_stream() {
            let (asked, new_body) = force_stream_usage(&body, &value);
            if let Some(b) = new_body {
                host::set_body(Buffer::HttpRequestBody, 0, body_size, &b);
            }
            self.strip_pending = !asked && self.config.strip_unrequested_usage;
        }
        // `validate` checked the name (contract::check_model): safe in a header and a log.
        host::set_header(
            host::map_request(),
            contract::request::MODEL,
            Some(&req.model),
        );
        // The upstream filter rewrites the (shared) request headers per attempt; access logs
        // read what the client asked for from here.
        host::set_log_field(property::MODEL, &req.model);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        if self.strip_pending {
            let resp = host::map_response();
            let sse = host::header_str(resp, "content-type")
                .is_some_and(|c| c.starts_with("text/event-stream"));
            if sse {
                host::remove_header(resp, "content-length");
                self.strip = Some(UsageTap::new(true));
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(s) = self.strip.as_mut() {
            let chunk = host::body(Buffer::HttpResponseBody, 0, body_size);
            let mut out = s.feed(&chunk);
            if end_of_stream {
                out.extend(s.finish());
            }
            host::set_body(Buffer::HttpResponseBody, 0, body_size, &out);
        }
        Action::Continue
    }
}
