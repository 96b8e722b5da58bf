//! A host for the filters' unit tests: header maps, bodies, filter state, shared data (with
//! Envoy's CAS rules), metrics, the clock, logs, and the local reply a filter sent, all in
//! memory and inspectable. No proxy-wasm call is made, so the tests run natively.

use crate::{Host, LogLevel};
use proxy_wasm::types::{BufferType, MapType};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// A local reply the filter sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// A gRPC call a filter sent: (cluster, service, method, message).
pub type GrpcCall = (String, String, String, Vec<u8>);

#[derive(Debug, Default)]
pub struct FakeHost {
    pub request_headers: RefCell<Vec<(String, String)>>,
    pub response_headers: RefCell<Vec<(String, String)>>,
    pub request_body: RefCell<Vec<u8>>,
    pub response_body: RefCell<Vec<u8>>,
    pub properties: RefCell<HashMap<String, Vec<u8>>>,
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    pub metrics: RefCell<HashMap<String, u64>>,
    pub logs: RefCell<Vec<String>>,
    pub sent: RefCell<Option<Reply>>,
    pub now: Cell<u64>,
    /// gRPC calls sent: (cluster, service, method, message); the token is the index + 1.
    pub grpc: RefCell<Vec<GrpcCall>>,
    /// What `Buffer::GrpcReceiveBuffer` holds (the answer a test delivers).
    pub grpc_reply: RefCell<Vec<u8>>,
    /// `grpc_call` fails (nothing sent) while set.
    pub grpc_down: Cell<bool>,
    pub resumed: Cell<u32>,
}

impl FakeHost {
    /// A host that lives for the test (filters hold a `&'static dyn Host`).
    pub fn leak() -> &'static FakeHost {
        Box::leak(Box::default())
    }

    /// A request's headers (`:method`, `:path` and the rest).
    pub fn with_request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> &Self {
        let mut h = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
            (":authority".to_string(), "gateway".to_string()),
        ];
        h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        *self.request_headers.borrow_mut() = h;
        self
    }

    /// An upstream answer's headers.
    pub fn with_response(&self, status: u16, headers: &[(&str, &str)]) -> &Self {
        let mut h = vec![(":status".to_string(), status.to_string())];
        h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        *self.response_headers.borrow_mut() = h;
        self
    }

    pub fn request_header(&self, name: &str) -> Option<String> {
        find(&self.request_headers.borrow(), name)
    }

    pub fn response_header(&self, name: &str) -> Option<String> {
        find(&self.response_headers.borrow(), name)
    }

    pub fn property_str(&self, name: &str) -> Option<String> {
        self.properties
            .borrow()
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn metric(&self, name: &str) -> u64 {
        self.metrics.borrow().get(name).copied().unwrap_or(0)
    }

    pub fn reply(&self) -> Option<Reply> {
        self.sent.borrow().clone()
    }

    fn map(&self, map: MapType) -> &RefCell<Vec<(String, String)>> {
        match map {
            MapType::HttpResponseHeaders | MapType::HttpResponseTrailers => &self.response_headers,
            _ => &self.request_headers,
        }
    }

    fn buffer(&self, buf: BufferType) -> &RefCell<Vec<u8>> {
        match buf {
            BufferType::HttpResponseBody => &self.response_body,
            BufferType::GrpcReceiveBuffer => &self.grpc_reply,
            _ => &self.request_body,
        }
    }
}

fn find(h: &[(String, String)], name: &str) -> Option<String> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

impl Host for FakeHost {
    fn headers(&self, map: MapType) -> Vec<(String, Vec<u8>)> {
        self.map(map)
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect()
    }

    fn header(&self, map: MapType, name: &str) -> Option<Vec<u8>> {
        find(&self.map(map).borrow(), name).map(String::into_bytes)
    }

    fn set_header(&self, map: MapType, name: &str, value: Option<&str>) {
        let mut h = self.map(map).borrow_mut();
        h.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            h.push((name.to_string(), v.to_string()));
        }
    }

    fn remove_header(&self, map: MapType, name: &str) {
        self.set_header(map, name, None);
    }

    fn body(&self, buf: BufferType, start: usize, size: usize) -> Vec<u8> {
        let b = self.buffer(buf).borrow();
        let end = start.saturating_add(size).min(b.len());
        b.get(start.min(end)..end).unwrap_or_default().to_vec()
    }

    fn set_body(&self, buf: BufferType, start: usize, size: usize, value: &[u8]) {
        let mut b = self.buffer(buf).borrow_mut();
        let end = start.saturating_add(size).min(b.len());
        let start = start.min(end);
        b.splice(start..end, value.iter().copied());
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties.borrow().get(&path.join(".")).cloned()
    }

    fn set_property(&self, name: &str, value: &[u8]) {
        self.properties
            .borrow_mut()
            .insert(name.to_string(), value.to_vec());
    }

    fn send_http_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        *self.sent.borrow_mut() = Some(Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
    }

    fn now_secs(&self) -> u64 {
        self.now.get()
    }

    fn log(&self, _level: LogLevel, msg: &str) {
        self.logs.borrow_mut().push(msg.to_string());
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    /// Envoy's rules: a CAS that does not match an existing entry fails; `None` creates only
    /// when absent.
    fn shared_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), sluice_core::quota::Conflict> {
        let mut m = self.shared.borrow_mut();
        let cur = m.get(key).map(|(_, c)| *c);
        if cas != cur {
            return Err(sluice_core::quota::Conflict);
        }
        m.insert(key.to_string(), (value.to_vec(), cur.unwrap_or(0) + 1));
        Ok(())
    }

    fn grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        _timeout_ms: u64,
    ) -> Option<u32> {
        if self.grpc_down.get() {
            return None;
        }
        let mut g = self.grpc.borrow_mut();
        g.push((
            cluster.to_string(),
            service.to_string(),
            method.to_string(),
            message.to_vec(),
        ));
        u32::try_from(g.len()).ok()
    }

    fn resume_request(&self) {
        self.resumed.set(self.resumed.get() + 1);
    }

    fn random_id(&self) -> String {
        format!("{:032x}", self.grpc.borrow().len() as u128 + 0xabc)
    }

    fn count(&self, _id: &mut Option<u32>, name: &str, by: u64) {
        *self
            .metrics
            .borrow_mut()
            .entry(name.to_string())
            .or_insert(0) += by;
    }
}
