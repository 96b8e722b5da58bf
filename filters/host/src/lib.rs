//! The host calls the Sluice filters use, wrapped so that a host error never panics (the
//! proxy-wasm SDK's trait methods `unwrap` every host result; a panic traps the VM for every
//! request on that worker). A failed call is logged and treated as "absent" or "not done".

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};
use serde_json::Value;
use sluice_core::GatewayError;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

#[cfg(feature = "timing")]
mod timing;

/// The HTTP context a filter hands to Envoy; with the `timing` feature, wrapped in the profiler
/// that adds up the time of each callback (see `timing.rs`).
pub fn http_context<C: proxy_wasm::traits::HttpContext + 'static>(
    _filter: &'static str,
    ctx: C,
) -> Box<dyn proxy_wasm::traits::HttpContext> {
    #[cfg(feature = "timing")]
    return Box::new(timing::Timed {
        filter: _filter,
        inner: ctx,
    });
    #[cfg(not(feature = "timing"))]
    Box::new(ctx)
}

pub use proxy_wasm::types::{BufferType as Buffer, MapType as Map};

pub fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

fn warn_failed(what: &str) {
    log(LogLevel::Warn, &format!("sluice: host call failed: {what}"));
}

pub fn header(map: MapType, name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(map, name).ok().flatten()
}

/// A header as text; a value that is not UTF-8 reads as absent.
pub fn header_str(map: MapType, name: &str) -> Option<String> {
    header(map, name).and_then(|b| String::from_utf8(b).ok())
}

pub fn headers(map: MapType) -> Vec<(String, Vec<u8>)> {
    hostcalls::get_map_bytes(map).unwrap_or_default()
}

pub fn set_header(map: MapType, name: &str, value: Option<&str>) {
    if hostcalls::set_map_value(map, name, value).is_err() {
        warn_failed("set header");
    }
}

pub fn remove_header(map: MapType, name: &str) {
    let _ = hostcalls::remove_map_value(map, name);
}

/// Every header of a map, read with one host call. A host call that returns a value costs
/// about as much as one that returns the whole map (Envoy calls back into the VM to allocate
/// what it returns: ~2 µs on V8 here, `make bench` shows it), so a callback that needs two or
/// more headers reads them all at once. A snapshot: later changes to the map are not in it.
pub struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    pub fn read(map: MapType) -> Headers {
        Headers(headers(map))
    }

    /// The first value of `name` (Envoy's names are lower-case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// A header as text; a value that is not UTF-8 reads as absent.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every (name, value) pair.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Removes the internal `x-sluice-*` request headers a client sent (all but the controls
    /// `contract::is_client_control` names; `and_controls` removes those too).
    pub fn strip_internal(&self, and_controls: bool) {
        use sluice_core::contract;
        for (name, _) in &self.0 {
            let n = name.to_ascii_lowercase();
            if n.starts_with(contract::HEADER_PREFIX)
                && (and_controls || !contract::is_client_control(&n))
            {
                remove_header(MapType::HttpRequestHeaders, name);
            }
        }
    }
}

thread_local! {
    static LAST_REQUEST: RefCell<Option<(Vec<u8>, Rc<Value>)>> = const { RefCell::new(None) };
    static LAST_RESPONSE: RefCell<Option<(Vec<u8>, Rc<Value>)>> = const { RefCell::new(None) };
}

type Last = std::thread::LocalKey<RefCell<Option<(Vec<u8>, Rc<Value>)>>>;

fn shared_parse<E>(
    last: &'static Last,
    body: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<Value, E>,
) -> Result<Rc<Value>, E> {
    let known = last.with(|last| {
        last.borrow()
            .as_ref()
            .filter(|(bytes, _)| bytes.as_slice() == body)
            .map(|(_, v)| Rc::clone(v))
    });
    if let Some(v) = known {
        return Ok(v);
    }
    let v = Rc::new(parse(body)?);
    last.with(|last| {
        *last.borrow_mut() =
            (body.len() <= SHARED_BODY_MAX).then(|| (body.to_vec(), Rc::clone(&v)));
    });
    Ok(v)
}

/// Bodies up to this size are remembered for the next filter.
const SHARED_BODY_MAX: usize = 1 << 20;

/// The request body as a JSON object (`sluice_core::openai::parse_body`), parsed once for all
/// the filters of a stream. They run in one VM on one thread (the sluice.wasm module), each
/// reading the body Envoy hands it; when the bytes equal the last ones parsed (compared in
/// full, so a body a filter changed, e.g. by redaction, is parsed afresh) the parse is reused.
/// One body, at most 1 MiB, is remembered per VM.
pub fn request_json(body: &[u8]) -> Result<Rc<Value>, GatewayError> {
    shared_parse(&LAST_REQUEST, body, sluice_core::openai::parse_body)
}

/// A complete JSON answer, parsed once for the filters that read it (sluice-cache stores it,
/// sluice-auth reads its usage), the same way as `request_json`.
pub fn response_json(body: &[u8]) -> Option<Rc<Value>> {
    shared_parse(&LAST_RESPONSE, body, |b| serde_json::from_slice::<Value>(b)).ok()
}

pub fn body(buf: BufferType, start: usize, size: usize) -> Vec<u8> {
    hostcalls::get_buffer(buf, start, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

pub fn set_body(buf: BufferType, start: usize, size: usize, value: &[u8]) {
    if hostcalls::set_buffer(buf, start, size, value).is_err() {
        warn_failed("set body");
    }
}

pub fn property(path: Vec<&str>) -> Option<Vec<u8>> {
    hostcalls::get_property(path).ok().flatten()
}

/// Stores a value in the stream's filter state (readable in access logs as
/// `%FILTER_STATE(wasm.<name>:PLAIN)%`), escaped by `contract::escape_for_header`: nothing a
/// client sent can start a log line or grow it without bound.
pub fn set_log_field(name: &str, value: &str) {
    let value = sluice_core::contract::escape_for_header(value);
    if hostcalls::set_property(vec![name], Some(value.as_bytes())).is_err() {
        warn_failed("set property");
    }
}

/// Sets a response header to a value escaped by `contract::escape_for_header`.
pub fn set_response_header(name: &str, value: &str) {
    let value = sluice_core::contract::escape_for_header(value);
    set_header(MapType::HttpResponseHeaders, name, Some(&value));
}

/// The route table's answer for this request (`contract::route`), from its headers.
pub fn endpoint(headers: &Headers) -> Option<sluice_core::contract::Endpoint<'_>> {
    sluice_core::contract::route(
        headers.get_str(":method").unwrap_or_default(),
        headers.get_str(":path").unwrap_or_default(),
    )
}

/// Shared data (per VM id, across worker threads) as a CAS store for `sluice_core::quota`.
pub struct SharedData;

impl sluice_core::quota::Store for SharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    /// `cas: None` means the key was absent when read. Envoy writes unconditionally when the
    /// CAS is 0 and only compares it when the key exists, so "create only if still absent" is
    /// a write with a CAS no live entry has (`u32::MAX`): it fails if another worker created
    /// the key in between.
    fn set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), sluice_core::quota::Conflict> {
        hostcalls::set_shared_data(key, Some(value), Some(cas.unwrap_or(u32::MAX)))
            .map_err(|_| sluice_core::quota::Conflict)
    }
}

/// The plugin configuration (empty when there is none).
pub fn plugin_configuration() -> Vec<u8> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Counter metrics defined on first use, at most `max` names per VM, so that values a client
/// controls cannot grow the number of series without bound.
#[derive(Debug, Default)]
pub struct Counters {
    ids: std::collections::HashMap<String, Option<u32>>,
    max: usize,
}

impl Counters {
    pub fn new(max: usize) -> Self {
        Counters {
            ids: Default::default(),
            max,
        }
    }

    pub fn add(&mut self, name: &str, by: u64) {
        if by == 0 || (!self.ids.contains_key(name) && self.ids.len() >= self.max) {
            return;
        }
        let id = *self.ids.entry(name.to_string()).or_insert_with(|| {
            hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, name).ok()
        });
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }
}

pub fn now_secs() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Answers the request locally. Marks the request first (`contract::request::LOCAL_REPLY`), so
/// that Envoy's local-reply mappers, which put Envoy's own replies in the envelope, leave this
/// one as it is.
pub fn send(status: u16, headers: &[(&str, String)], body: &[u8]) {
    set_header(
        MapType::HttpRequestHeaders,
        sluice_core::contract::request::LOCAL_REPLY,
        Some("1"),
    );
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if hostcalls::send_http_response(u32::from(status), h, Some(body)).is_err() {
        warn_failed("send response");
    }
}

/// Answers locally with an OpenAI error envelope.
pub fn send_error(err: &GatewayError) {
    send(err.status, &err.headers(), &err.body());
}

pub fn map_request() -> MapType {
    MapType::HttpRequestHeaders
}

pub fn map_response() -> MapType {
    MapType::HttpResponseHeaders
}
