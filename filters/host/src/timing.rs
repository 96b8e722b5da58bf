//! Opt-in profiler (cargo feature `timing`): the time each filter callback takes inside the VM,
//! host calls included, added up per callback in counters
//! `sluice_timing.<filter>.<callback>_ns`, and the number of requests in
//! `sluice_timing.<filter>.requests`. `make bench` builds the filters a second time with it
//! and prints where the time goes; the filters that ship are built without it (each timed
//! callback costs two clock reads and a counter).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;

thread_local! {
    // Names are filter x callback: a few dozen.
    static COUNTERS: RefCell<crate::Counters> = RefCell::new(crate::Counters::new(256));
}

fn now_ns() -> u128 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

fn add(filter: &str, what: &str, by: u128) {
    let by = u64::try_from(by).unwrap_or(u64::MAX);
    COUNTERS.with(|c| {
        c.borrow_mut()
            .add(&crate::REAL, &format!("sluice_timing.{filter}.{what}"), by)
    });
}

pub struct Timed<C> {
    pub filter: &'static str,
    pub inner: C,
}

impl<C> Timed<C> {
    fn time<R>(&mut self, what: &str, f: impl FnOnce(&mut C) -> R) -> R {
        let t = now_ns();
        let r = f(&mut self.inner);
        add(self.filter, what, now_ns().saturating_sub(t));
        r
    }
}

impl<C: Context> Context for Timed<C> {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        self.time("grpc_response_ns", |c| {
            c.on_grpc_call_response(token, status, size)
        })
    }
}

impl<C: HttpContext> HttpContext for Timed<C> {
    fn on_http_request_headers(&mut self, n: usize, end: bool) -> Action {
        add(self.filter, "requests", 1);
        self.time("request_headers_ns", |c| c.on_http_request_headers(n, end))
    }
    fn on_http_request_body(&mut self, n: usize, end: bool) -> Action {
        self.time("request_body_ns", |c| c.on_http_request_body(n, end))
    }
    fn on_http_response_headers(&mut self, n: usize, end: bool) -> Action {
        self.time("response_headers_ns", |c| {
            c.on_http_response_headers(n, end)
        })
    }
    fn on_http_response_body(&mut self, n: usize, end: bool) -> Action {
        self.time("response_body_ns", |c| c.on_http_response_body(n, end))
    }
    fn on_log(&mut self) {
        self.time("log_ns", |c| c.on_log());
    }
}
