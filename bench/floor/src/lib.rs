//! The floor `make bench` compares Sluice with: the full chain's Envoy configuration with every
//! Sluice filter replaced by this one, which does only what Envoy needs to host a filter that
//! works on bodies: a context per stream, the request body paused and buffered, read and written
//! back, each response chunk read and written back. The route role also names the model for
//! Envoy's routing (`x-sluice-model`), and the upstream role removes it again. What Sluice adds
//! above this floor is its own work; the floor above bare Envoy is the price of Wasm filters.
//!
//! Configuration: `downstream`, `route` or `upstream`.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use sluice_host::{self as host, Buffer, Host};

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Downstream,
    Route,
    Upstream,
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root(Role::Downstream)) });
}}

struct Root(Role);

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.0 = match host::plugin_configuration().as_slice() {
            b"route" => Role::Route,
            b"upstream" => Role::Upstream,
            _ => Role::Downstream,
        };
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor(self.0)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor(Role);

impl Context for Floor {}

/// The `"model": "..."` value, found in the bytes (the floor parses nothing).
fn model(body: &[u8]) -> Option<&str> {
    let key = b"\"model\"";
    let after = body.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = body.get(after..)?;
    let open = rest.iter().position(|b| *b == b'"')? + 1;
    let value = rest.get(open..)?;
    let end = value.iter().position(|b| *b == b'"')?;
    std::str::from_utf8(value.get(..end)?).ok()
}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let req = host::map_request();
        host::REAL.remove_header(req, "content-length");
        if self.0 == Role::Upstream {
            host::REAL.remove_header(req, sluice_core::contract::request::MODEL);
        }
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = host::REAL.body(Buffer::HttpRequestBody, 0, body_size);
        if self.0 == Role::Route {
            if let Some(m) = model(&body) {
                host::REAL.set_header(
                    host::map_request(),
                    sluice_core::contract::request::MODEL,
                    Some(m),
                );
            }
        }
        host::REAL.set_body(Buffer::HttpRequestBody, 0, body_size, &body);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        host::REAL.remove_header(host::map_response(), "content-length");
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        let chunk = host::REAL.body(Buffer::HttpResponseBody, 0, body_size);
        host::REAL.set_body(Buffer::HttpResponseBody, 0, body_size, &chunk);
        Action::Continue
    }
}
