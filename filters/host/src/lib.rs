//! The host calls the Sluice filters use, wrapped so that a host error never panics (the
//! proxy-wasm SDK's trait methods `unwrap` every host result; a panic traps the VM for every
//! request on that worker). A failed call is logged and treated as "absent" or "not done".

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
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

pub use proxy_wasm::types::{BufferType as Buffer, LogLevel, MapType as Map};

/// A Sluice filter as its root context sees it: a configuration compiled once per
/// `on_configure` (a bad one refuses to load, with a log line that names the field), and the
/// per-stream context made from it. [`root`] is the one root context of every filter.
pub trait Filter: 'static {
    type Config: 'static;
    /// The name in log lines (`sluice-auth`).
    const NAME: &'static str;
    /// The most metric names one VM of this filter defines (client-controlled names are bounded).
    const MAX_METRICS: usize = 0;
    fn compile(raw: &[u8]) -> Result<Self::Config, String>;
    /// A line logged once the configuration is loaded.
    fn loaded(_config: &Self::Config) -> Option<String> {
        None
    }
    fn context(
        config: &Rc<Self::Config>,
        metrics: &Rc<RefCell<Counters>>,
    ) -> Box<dyn proxy_wasm::traits::HttpContext>;
    /// Work the root context does on a timer: `Some(ms)` starts one after the configuration
    /// loads (the root context outlives every stream, so what it sends gets its answer).
    fn tick_ms(_config: &Self::Config) -> Option<u64> {
        None
    }
    fn on_tick(_config: &Self::Config, _metrics: &Rc<RefCell<Counters>>) {}
    /// The answer to a gRPC call the root context sent.
    fn on_root_grpc(
        _config: &Self::Config,
        _metrics: &Rc<RefCell<Counters>>,
        _token: u32,
        _status: u32,
    ) {
    }
}

struct FilterRoot<F: Filter> {
    config: Option<Rc<F::Config>>,
    metrics: Rc<RefCell<Counters>>,
}

impl<F: Filter> proxy_wasm::traits::Context for FilterRoot<F> {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, _size: usize) {
        if let Some(c) = &self.config {
            F::on_root_grpc(c, &self.metrics, token, status);
        }
    }
}

impl<F: Filter> proxy_wasm::traits::RootContext for FilterRoot<F> {
    fn on_configure(&mut self, _size: usize) -> bool {
        match F::compile(&plugin_configuration()) {
            Ok(c) => {
                if let Some(line) = F::loaded(&c) {
                    log(LogLevel::Info, &format!("{}: {line}", F::NAME));
                }
                if let Some(ms) = F::tick_ms(&c) {
                    let _ = hostcalls::set_tick_period(std::time::Duration::from_millis(ms));
                }
                self.config = Some(Rc::new(c));
                true
            }
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("{}: configuration refused: {e}", F::NAME),
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(c) = &self.config {
            F::on_tick(c, &self.metrics);
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn proxy_wasm::traits::HttpContext>> {
        Some(F::context(self.config.as_ref()?, &self.metrics))
    }

    fn get_type(&self) -> Option<proxy_wasm::types::ContextType> {
        Some(proxy_wasm::types::ContextType::HttpContext)
    }
}

/// The root context of filter `F`: one per plugin instance (Envoy HTTP filter entry). The
/// `sluice` module (filters/sluice) creates it for the plugin's `root_id`.
pub fn root<F: Filter>() -> Box<dyn proxy_wasm::traits::RootContext> {
    Box::new(FilterRoot::<F> {
        config: None,
        metrics: Rc::new(RefCell::new(Counters::new(F::MAX_METRICS))),
    })
}

pub mod fake;

/// What a filter asks of its host: the proxy-wasm calls Sluice uses, as one interface. The
/// filters hold a `&'static dyn Host`: [`REAL`] in Envoy, a [`fake::FakeHost`] in their unit
/// tests. Every call is infallible from the filter's side: a failed host call is logged and
/// reads as "absent" or "not done" (the SDK's own methods `unwrap`, which would trap the VM).
pub trait Host {
    /// Every header of a map, with one call (a call that returns a value costs ~2 µs on V8).
    fn headers(&self, map: MapType) -> Vec<(String, Vec<u8>)>;
    fn header(&self, map: MapType, name: &str) -> Option<Vec<u8>>;
    fn set_header(&self, map: MapType, name: &str, value: Option<&str>);
    fn remove_header(&self, map: MapType, name: &str);
    fn body(&self, buf: BufferType, start: usize, size: usize) -> Vec<u8>;
    fn set_body(&self, buf: BufferType, start: usize, size: usize, value: &[u8]);
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    fn set_property(&self, name: &str, value: &[u8]);
    /// A local reply (the request is not forwarded).
    fn send_http_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]);
    fn now_secs(&self) -> u64;
    fn log(&self, level: LogLevel, msg: &str);
    /// Shared data (per VM id, across workers): value and CAS.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// `cas: None`: create only if still absent.
    fn shared_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), sluice_core::quota::Conflict>;
    /// Adds to a counter metric (defined on first use).
    fn count(&self, id_cache: &mut Option<u32>, name: &str, by: u64);
    /// A unary gRPC call to a cluster. Its answer arrives in the context's
    /// `on_grpc_call_response` (the message in `Buffer::GrpcReceiveBuffer`). `None`: not sent.
    fn grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout_ms: u64,
    ) -> Option<u32>;
    /// Resumes a request paused in a callback (after an asynchronous answer).
    fn resume_request(&self);
    /// 128 random bits as hex: an id no client can choose or guess.
    fn random_id(&self) -> String;

    // ---- built on the calls above ----

    fn header_str(&self, map: MapType, name: &str) -> Option<String> {
        self.header(map, name)
            .and_then(|b| String::from_utf8(b).ok())
    }

    fn read_headers(&self, map: MapType) -> Headers {
        Headers(self.headers(map))
    }

    /// Stores a value in the stream's filter state (readable in access logs as
    /// `%FILTER_STATE(wasm.<name>:PLAIN)%`), escaped by `contract::escape_for_header`: nothing a
    /// client sent can start a log line or grow it without bound.
    fn set_log_field(&self, name: &str, value: &str) {
        let value = sluice_core::contract::escape_for_header(value);
        self.set_property(name, value.as_bytes());
    }

    /// Sets a response header to a value escaped by `contract::escape_for_header`.
    fn set_response_header(&self, name: &str, value: &str) {
        let value = sluice_core::contract::escape_for_header(value);
        self.set_header(MapType::HttpResponseHeaders, name, Some(&value));
    }

    /// Answers the request locally. Marks the request first (`contract::property::LOCAL_REPLY`),
    /// so that Envoy's local-reply mappers, which put Envoy's own replies in the envelope, leave
    /// this one as it is.
    fn send(&self, status: u16, headers: &[(&str, String)], body: &[u8]) {
        self.set_property(sluice_core::contract::property::LOCAL_REPLY, b"1");
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.send_http_response(status, &h, body);
    }

    /// Answers locally with an error in the envelope of the client's API: the API of the
    /// endpoint a filter recorded ([`note_endpoint`]), else the one the path and an
    /// `anthropic-version` header suggest (`contract::api_of`).
    fn send_error(&self, err: &GatewayError) {
        let (status, body) = sluice_core::api::error_reply(client_api(self), err);
        self.send(status, &err.headers(), &body);
    }
}

/// The proxy-wasm host of Envoy.
pub struct RealHost;

/// The host every filter uses in Envoy.
pub static REAL: RealHost = RealHost;

fn warn_failed(what: &str) {
    let _ = hostcalls::log(LogLevel::Warn, &format!("sluice: host call failed: {what}"));
}

impl Host for RealHost {
    fn headers(&self, map: MapType) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(map).unwrap_or_default()
    }

    fn header(&self, map: MapType, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(map, name).ok().flatten()
    }

    fn set_header(&self, map: MapType, name: &str, value: Option<&str>) {
        if hostcalls::set_map_value(map, name, value).is_err() {
            warn_failed("set header");
        }
    }

    fn remove_header(&self, map: MapType, name: &str) {
        let _ = hostcalls::remove_map_value(map, name);
    }

    fn body(&self, buf: BufferType, start: usize, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(buf, start, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn set_body(&self, buf: BufferType, start: usize, size: usize, value: &[u8]) {
        if hostcalls::set_buffer(buf, start, size, value).is_err() {
            warn_failed("set body");
        }
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn set_property(&self, name: &str, value: &[u8]) {
        if hostcalls::set_property(vec![name], Some(value)).is_err() {
            warn_failed("set property");
        }
    }

    fn send_http_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        if hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body)).is_err() {
            warn_failed("send response");
        }
    }

    fn now_secs(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn log(&self, level: LogLevel, msg: &str) {
        let _ = hostcalls::log(level, msg);
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    /// Envoy writes unconditionally when the CAS is 0 and only compares it when the key
    /// exists, so "create only if still absent" is a write with a CAS no live entry has
    /// (`u32::MAX`): it fails if another worker created the key in between.
    fn shared_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), sluice_core::quota::Conflict> {
        hostcalls::set_shared_data(key, Some(value), Some(cas.unwrap_or(u32::MAX)))
            .map_err(|_| sluice_core::quota::Conflict)
    }

    fn grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout_ms: u64,
    ) -> Option<u32> {
        hostcalls::dispatch_grpc_call(
            cluster,
            service,
            method,
            Vec::new(),
            Some(message),
            std::time::Duration::from_millis(timeout_ms),
        )
        .map_err(|_| warn_failed("grpc call"))
        .ok()
    }

    fn resume_request(&self) {
        if hostcalls::resume_http_request().is_err() {
            warn_failed("resume request");
        }
    }

    fn random_id(&self) -> String {
        let mut b = [0u8; 16];
        if getrandom::getrandom(&mut b).is_err() {
            // Never seen on Envoy (WASI random_get); still unique per VM and instant.
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            let t = hostcalls::get_current_time()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as u64);
            b[..8].copy_from_slice(&t.to_le_bytes());
            b[8..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        }
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn count(&self, id_cache: &mut Option<u32>, name: &str, by: u64) {
        if id_cache.is_none() {
            *id_cache = hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, name).ok();
        }
        if let Some(id) = *id_cache {
            let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }
}

/// Logs through the real host (for root contexts, which run in Envoy only).
pub fn log(level: LogLevel, msg: &str) {
    REAL.log(level, msg);
}

/// A header map read with one host call. A host call that returns a value costs about as much
/// as one that returns the whole map (Envoy calls back into the VM to allocate what it returns:
/// ~2 µs on V8 here, `make bench` shows it), so a callback that needs two or more headers reads
/// them all at once. A snapshot: later changes to the map are not in it.
pub struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
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
    pub fn strip_internal(&self, host: &dyn Host, and_controls: bool) {
        use sluice_core::contract;
        for (name, _) in &self.0 {
            let n = name.to_ascii_lowercase();
            if n.starts_with(contract::HEADER_PREFIX)
                && (and_controls || !contract::is_client_control(&n))
            {
                host.remove_header(MapType::HttpRequestHeaders, name);
            }
        }
    }
}

/// The one response-body driver of a streaming transform: the chunk Envoy holds goes through
/// `t` (and, at end of stream, its flush), and the result replaces the chunk; partial frames
/// stay in `t` until the next chunk. With `write: false` the chunk is only read (a tap).
pub fn stream_chunk(
    host: &dyn Host,
    body_size: usize,
    end_of_stream: bool,
    t: &mut dyn sluice_core::stream::StreamTranslator,
    write: bool,
) {
    let chunk = host.body(BufferType::HttpResponseBody, 0, body_size);
    let mut out = t.feed(&chunk);
    if end_of_stream {
        out.extend(t.finish());
    }
    if write {
        host.set_body(BufferType::HttpResponseBody, 0, body_size, &out);
    }
}

/// The route table's answer for this request (`contract::route`), from its headers, recorded
/// for the filters after this one ([`note_endpoint`]).
pub fn endpoint<'h>(
    host: &dyn Host,
    headers: &'h Headers,
) -> Option<sluice_core::contract::Endpoint<'h>> {
    let e = sluice_core::contract::route(
        headers.get_str(":method").unwrap_or_default(),
        headers.get_str(":path").unwrap_or_default(),
    );
    if let Some(e) = e {
        note_endpoint(host, e);
    }
    e
}

/// Records the request's endpoint in the stream's filter state (`property::PATH`, its
/// canonical path): what access logs show, what decides the envelope of every later error,
/// and how the upstream role learns the client's API once `:path` is the provider's.
pub fn note_endpoint(host: &dyn Host, e: sluice_core::contract::Endpoint) {
    host.set_property(sluice_core::contract::property::PATH, e.path().as_bytes());
}

/// The endpoint a filter recorded for this request ([`note_endpoint`]).
pub fn noted_endpoint(
    host: &(impl Host + ?Sized),
) -> Option<sluice_core::contract::Endpoint<'static>> {
    let p = host.property(&[sluice_core::contract::property::PATH])?;
    sluice_core::contract::Endpoint::from_path(std::str::from_utf8(&p).ok()?)
}

/// The API of this request's client (see [`Host::send_error`]).
pub fn client_api(host: &(impl Host + ?Sized)) -> sluice_core::contract::Api {
    noted_endpoint(host).map(|e| e.api()).unwrap_or_else(|| {
        let req = MapType::HttpRequestHeaders;
        let path = host.header_str(req, ":path").unwrap_or_default();
        sluice_core::contract::api_of(&path, host.header(req, "anthropic-version").is_some())
    })
}

/// A host's shared data as a CAS store for `sluice_core::quota` and `sluice_core::cache`.
pub struct Shared<'a>(pub &'a dyn Host);

impl sluice_core::quota::Store for Shared<'_> {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.0.shared_get(key)
    }

    fn set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), sluice_core::quota::Conflict> {
        self.0.shared_set(key, value, cas)
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

    pub fn add(&mut self, host: &dyn Host, name: &str, by: u64) {
        if by == 0 || (!self.ids.contains_key(name) && self.ids.len() >= self.max) {
            return;
        }
        let id = self.ids.entry(name.to_string()).or_insert(None);
        host.count(id, name, by);
    }
}

pub fn map_request() -> MapType {
    MapType::HttpRequestHeaders
}

pub fn map_response() -> MapType {
    MapType::HttpResponseHeaders
}
