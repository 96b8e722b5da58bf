//! sluice-pii: redacts PII in every text of a chat request before it leaves (see
//! `sluice_core::pii`), and puts tokenized values back into the answer, JSON or streamed.
//! Detected values never reach logs, metrics or errors: metrics count types and actions.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::Action;
use serde_json::Value;
use sluice_core::pii::{self, Redactor, Rehydrator, Scanner, SseRehydrator};
use sluice_host::{self as host, Buffer, Counters, Host};
use std::cell::RefCell;
use std::rc::Rc;

/// sluice-pii as a filter: its scanner (the configuration) and per-stream context.
struct PiiFilter;

impl host::Filter for PiiFilter {
    type Config = Scanner;
    const NAME: &'static str = "sluice-pii";
    const MAX_METRICS: usize = 500;

    fn compile(raw: &[u8]) -> Result<Scanner, String> {
        Scanner::from_json(raw)
    }

    fn context(scanner: &Rc<Scanner>, metrics: &Rc<RefCell<Counters>>) -> Box<dyn HttpContext> {
        sluice_host::http_context(
            "pii",
            Pii::new(&sluice_host::REAL, Rc::clone(scanner), Rc::clone(metrics)),
        )
    }
}

/// This filter's root context (the `sluice` module creates it for the plugin's `root_id`).
pub fn root() -> Box<dyn RootContext> {
    host::root::<PiiFilter>()
}

enum Mode {
    Pass,
    Json,
    Sse(Box<SseRehydrator>),
}

struct Pii {
    host: &'static dyn Host,
    scanner: Rc<Scanner>,
    metrics: Rc<RefCell<Counters>>,
    reading: bool,
    /// `/v1/embeddings`: no placeholder (nothing comes back to re-hydrate).
    embeddings: bool,
    rehydrator: Rehydrator,
    mode: Mode,
}

impl Pii {
    fn new(host: &'static dyn Host, scanner: Rc<Scanner>, metrics: Rc<RefCell<Counters>>) -> Self {
        Pii {
            host,
            scanner,
            metrics,
            reading: false,
            embeddings: false,
            rehydrator: Rehydrator::default(),
            mode: Mode::Pass,
        }
    }
}

impl Context for Pii {}

impl HttpContext for Pii {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let req = host::map_request();
        let headers = self.host.read_headers(req);
        headers.strip_internal(self.host, false);
        let endpoint = host::endpoint(self.host, &headers);
        if !endpoint.is_some_and(|e| e.has_body()) || end_of_stream {
            return Action::Continue;
        }
        self.embeddings = endpoint == Some(sluice_core::contract::Endpoint::Embeddings);
        self.host.remove_header(req, "content-length");
        self.reading = true;
        // The body is held (in on_http_request_body) until it is whole; the headers go on.
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.reading {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.reading = false;
        let body = self.host.body(Buffer::HttpRequestBody, 0, body_size);
        // A body that is not JSON is the translate filter's to refuse; nothing is scanned.
        let Ok(parsed) = host::request_json(&body) else {
            return Action::Continue;
        };
        let mut v = Value::clone(&parsed);
        let redactor = if self.embeddings {
            Redactor::for_embeddings(&self.scanner)
        } else {
            Redactor::new(&self.scanner)
        };
        match redactor.redact_request(&mut v) {
            Ok(red) => {
                let mut m = self.metrics.borrow_mut();
                // Types come from the configuration; values never reach a metric.
                for ((kind, action), n) in &red.counts {
                    m.add(
                        self.host,
                        &format!("sluice_pii.type.{kind}.action.{action}.detections"),
                        *n,
                    );
                }
                if red.changed {
                    self.host.set_body(
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
                self.host.send_error(&e);
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        if self.rehydrator.is_empty() && !self.scanner.scan_output {
            return Action::Continue; // nothing to put back, nothing to scan: no host call
        }
        let resp = host::map_response();
        let headers = self.host.read_headers(resp);
        if headers.get_str(":status") != Some("200") {
            return Action::Continue;
        }
        let sse = headers
            .get_str("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if sse && !self.rehydrator.is_empty() {
            self.host.remove_header(resp, "content-length");
            self.mode = Mode::Sse(Box::new(SseRehydrator::new(self.rehydrator.clone())));
        } else if !sse && (!self.rehydrator.is_empty() || self.scanner.scan_output) {
            self.host.remove_header(resp, "content-length");
            self.mode = Mode::Json;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &mut self.mode {
            Mode::Pass => Action::Continue,
            Mode::Sse(r) => {
                host::stream_chunk(self.host, body_size, end_of_stream, &mut **r, true);
                Action::Continue
            }
            Mode::Json if !end_of_stream => Action::Pause,
            Mode::Json => {
                let body = self.host.body(Buffer::HttpResponseBody, 0, body_size);
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
                    self.host
                        .set_body(Buffer::HttpResponseBody, 0, body_size, &out);
                }
                Action::Continue
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_host::fake::FakeHost;

    fn pii(host: &'static FakeHost, config: &str) -> Pii {
        let scanner = Rc::new(Scanner::from_json(config.as_bytes()).unwrap());
        Pii::new(host, scanner, Rc::new(RefCell::new(Counters::new(50))))
    }

    fn request(path: &str, body: &str, config: &str) -> (&'static FakeHost, Pii) {
        let host = FakeHost::leak();
        host.with_request("POST", path, &[("content-length", "1")]);
        *host.request_body.borrow_mut() = body.as_bytes().to_vec();
        let mut p = pii(host, config);
        p.on_http_request_headers(0, false);
        p.on_http_request_body(body.len(), true);
        (host, p)
    }

    const BODY: &str = r#"{"model":"m","user":"jane@corp.com","messages":[{"role":"user","content":"mail jane@corp.com"}]}"#;

    #[test]
    fn redacts_the_request_and_rehydrates_json_and_streams() {
        let (host, mut p) = request("/v1/chat/completions/", BODY, "{}");
        let sent = String::from_utf8(host.request_body.borrow().clone()).unwrap();
        assert!(
            !sent.contains("jane@corp.com") && sent.contains("[EMAIL_1]"),
            "{sent}"
        );
        assert_eq!(host.request_header("content-length"), None);
        assert_eq!(
            host.metric("sluice_pii.type.EMAIL.action.tokenize.detections"),
            2
        );
        // JSON answer.
        host.with_response(200, &[("content-type", "application/json")]);
        p.on_http_response_headers(0, false);
        *host.response_body.borrow_mut() =
            br#"{"choices":[{"message":{"content":"hi [EMAIL_1]"}}]}"#.to_vec();
        p.on_http_response_body(10, false);
        let n = host.response_body.borrow().len();
        p.on_http_response_body(n, true);
        assert!(String::from_utf8_lossy(&host.response_body.borrow()).contains("hi jane@corp.com"));
        // A stream, the placeholder split across chunks.
        let (host, mut p) = request("/v1/chat/completions", BODY, "{}");
        host.with_response(200, &[("content-type", "text/event-stream")]);
        p.on_http_response_headers(0, false);
        let mut out = Vec::new();
        let chunks: [&[u8]; 3] = [
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"to [EMA\"}}]}\n\n",
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"IL_1] ok\"}}]}\n\n",
            b"data: [DONE]\n\n",
        ];
        for (i, c) in chunks.iter().enumerate() {
            *host.response_body.borrow_mut() = c.to_vec();
            p.on_http_response_body(c.len(), i == 2);
            out.extend(host.response_body.borrow().iter());
        }
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("jane@corp.com") && !text.contains("EMA"),
            "{text}"
        );
    }

    #[test]
    fn blocked_types_are_refused_and_other_paths_untouched() {
        let (host, _) = request(
            "/v1/chat/completions",
            BODY,
            r#"{"actions":{"EMAIL":"block"}}"#,
        );
        let r = host.reply().unwrap();
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (400, Some("pii_blocked"))
        );
        assert!(!String::from_utf8_lossy(&r.body).contains("jane@corp.com"));
        let (host, _) = request("/v1/images/generations", BODY, "{}");
        assert_eq!(
            String::from_utf8(host.request_body.borrow().clone()).unwrap(),
            BODY
        );
        assert!(host.reply().is_none());
        // Embeddings inputs are redacted without placeholders (nothing comes back to put
        // them into).
        let (host, _) = request(
            "/v1/embeddings",
            r#"{"model":"e","input":"mail jane@corp.com"}"#,
            "{}",
        );
        let sent = String::from_utf8(host.request_body.borrow().clone()).unwrap();
        assert!(sent.contains("[EMAIL]") && !sent.contains("jane"), "{sent}");
    }
}
