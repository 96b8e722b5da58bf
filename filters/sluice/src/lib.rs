//! The Sluice Wasm module (`sluice.wasm`): every Sluice filter in one module. Each Envoy HTTP
//! filter entry (a proxy-wasm plugin) picks its filter with its `root_id`:
//!
//! | root_id                       | filter                                         |
//! |-------------------------------|------------------------------------------------|
//! | `sluice-auth`                 | keys, quotas, usage accounting (filters/auth)  |
//! | `sluice-pii`                  | redaction and re-hydration (filters/pii)       |
//! | `sluice-cache`                | exact-match response cache (filters/cache)     |
//! | `sluice-translate-route`, `sluice-translate-upstream` (any `sluice-translate*`) | model routing and provider translation (filters/translate; the role is in its configuration) |
//!
//! One module so that every filter of a chain runs in one VM per worker thread (all entries
//! share the `vm_id`): `make bench` measured five VMs per worker costing more latency,
//! throughput and memory than one VM hosting five plugins. The filters stay separate crates and
//! separate Envoy filter entries, each configured and deployable on its own.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use sluice_host::{self as host, Host};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Plugin(None)) });
}}

/// The filters a `root_id` can name.
pub fn filter_for(root_id: &str) -> Option<fn() -> Box<dyn RootContext>> {
    Some(match root_id {
        "sluice-auth" => sluice_auth::root,
        "sluice-pii" => sluice_pii::root,
        "sluice-cache" => sluice_cache::root,
        r if r.starts_with("sluice-translate") => sluice_translate::root,
        _ => return None,
    })
}

/// A plugin's root context: the named filter's, once the configuration arrives.
struct Plugin(Option<Box<dyn RootContext>>);

impl Context for Plugin {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(r) = self.0.as_mut() {
            r.on_grpc_call_response(token, status, size);
        }
    }
}

impl RootContext for Plugin {
    fn on_configure(&mut self, size: usize) -> bool {
        let root_id = host::REAL
            .property(&["plugin_root_id"])
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let Some(make) = filter_for(&root_id) else {
            host::log(
                LogLevel::Error,
                &format!(
                    "sluice: root_id '{root_id}' names no Sluice filter (sluice-auth, sluice-pii, \
                     sluice-cache, sluice-translate-route, sluice-translate-upstream)"
                ),
            );
            return false;
        };
        let mut root = make();
        let ok = root.on_configure(size);
        self.0 = Some(root);
        ok
    }

    fn on_tick(&mut self) {
        if let Some(r) = self.0.as_mut() {
            r.on_tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.0.as_ref()?.create_http_context(context_id)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
