//! sluice-pii: redacts PII in every text of a chat request before it leaves (see
//! `sluice_core::pii`), and puts tokenized values back into the answer, JSON or streamed.
//! Detected values never reach logs, metrics or errors: metrics count types and actions.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde_json::Value;
use sluice_core::pii::{self, Redactor, Rehydrator, Scanner, SseRehydrator};
use sluice_host::{self as host, Buffer, Counters};
use std::cell::RefCell;
use std::rc::Rc;

/// This filter's root context: one per plugin instance (Envoy HTTP filter entry). The `sluice`
/// module (filters/sluice) creates it for the plugin's `root_id`.
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root {
        scanner: None,
        metrics: Rc::new(RefCell::new(Counters::new(500))),
    })
}

struct Root {
    scanner: Option<Rc<Scanner>>,
    metrics: Rc<RefCell<Counters>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = host::plugin_configuration();
        match Scanner::from_json(&raw) {
            Ok(s) => {
                self.scanner = Some(Rc::new(s));
                true
            }
            Err(e) => {
                host::log(
                    LogLevel::Error,
                    &format!("sluice-pii: configuration refused: {e}"),
                );
                false
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let scanner = Rc::clone(self.scanner.as_ref()?);
        Some(sluice_host::http_context(
            "pii",
            Pii {
                scanner,
                metrics: Rc::clone(&self.metrics),
                reading: false,
                rehydrator: Rehydrator::default(),
                mode: Mode::Pass,
            },
        ))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

enum Mode {
    Pass,
    Json,
    Sse(Box<SseRehydrator>),
}

struct Pii {
    scanner: Rc<Scanner>,
    metrics: Rc<RefCell<Counters>>,
    reading: bool,
    rehydrator: Rehydrator,
    mode: Mode,
}

impl Context for Pii {}

impl HttpContext for Pii {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let req = host::map_request();
        let headers = host::Headers::read(req);
        headers.strip_internal(false);
        if !host::endpoint(&headers).is_some_and(|e| e.has_body()) || end_of_stream {
            return Action::Continue;
        }
        host::remove_header(req, "content-length");
        self.reading = true;
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.reading {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.reading = false;
        let body = host::body(Buffer::HttpRequestBody, 0, body_size);
        // A body that is not JSON is the translate filter's to refuse; nothing is scanned.
        let Ok(parsed) = host::request_json(&body) else {
            return Action::Continue;
        };
        let mut v = Value::clone(&parsed);
        match Redactor::new(&self.scanner).redact_request(&mut v) {
            Ok(red) => {
                let mut m = self.metrics.borrow_mut();
                // Types come from the configuration; values never reach a metric.
                for ((kind, action), n) in &red.counts {
                    m.add(
                        &format!("sluice_pii.type.{kind}.action.{action}.detections"),
                        *n,
                    );
                }
                if red.changed {
                    host::set_body(
                        Buffer::HttpRequestBody,
                        0,
                        body_size,
                        &serde_json::to_vec(&v).unwrap_or_default(),
                    );
                }
                self.rehydrator = Rehydrator::new(&red.tokens);
                Action::Continue
            }
            Err(e) => {
                // The message names the types found, never the values.
                host::send_error(&e);
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        if self.rehydrator.is_empty() && !self.scanner.scan_output {
            return Action::Continue; // nothing to put back, nothing to scan: no host call
        }
        let resp = host::map_response();
        let headers = host::Headers::read(resp);
        if headers.get_str(":status") != Some("200") {
            return Action::Continue;
        }
        let sse = headers
            .get_str("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if sse && !self.rehydrator.is_empty() {
            host::remove_header(resp, "content-length");
            self.mode = Mode::Sse(Box::new(SseRehydrator::new(self.rehydrator.clone())));
        } else if !sse && (!self.rehydrator.is_empty() || self.scanner.scan_output) {
            host::remove_header(resp, "content-length");
            self.mode = Mode::Json;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &mut self.mode {
            Mode::Pass => Action::Continue,
            Mode::Sse(r) => {
                let chunk = host::body(Buffer::HttpResponseBody, 0, body_size);
                let mut out = r.feed(&chunk);
                if end_of_stream {
                    out.extend(r.finish());
                }
                host::set_body(Buffer::HttpResponseBody, 0, body_size, &out);
                Action::Continue
            }
            Mode::Json if !end_of_stream => Action::Pause,
            Mode::Json => {
                let body = host::body(Buffer::HttpResponseBody, 0, body_size);
                // Scan what the model wrote before re-hydrating: the values put back are the
                // client's own and must not be redacted again.
                let scanned = if self.scanner.scan_output {
                    pii::scan_output_json(&self.scanner, &body)
                } else {
                    None
                };
                let current = scanned.as_deref().unwrap_or(&body);
                let out = if self.rehydrator.is_empty() {
                    scanned.clone()
                } else {
                    self.rehydrator.json(current)
                };
                if let Some(out) = out {
                    host::set_body(Buffer::HttpResponseBody, 0, body_size, &out);
                }
                Action::Continue
            }
        }
    }
}
