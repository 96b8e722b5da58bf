//! sluice-translate: one filter, two roles, chosen by the plugin configuration.
//!
//! - `{"role":"route", ...}` in the listener's HTTP filter chain: validates the body, answers
//!   `GET /v1/models`, refuses unknown models (404) and oversized bodies (413), puts the model in
//!   `x-sluice-model` so that Envoy routes on it, and makes streams ask for usage.
//! - `{"role":"upstream"}` in a cluster's upstream filter chain: once per attempt, reads the
//!   selected host's metadata (`filter_metadata.sluice`), rewrites path, headers and body for
//!   that provider, and translates the answer (JSON or SSE) back to OpenAI's format.

mod route;
mod upstream;

use proxy_wasm::traits::{HttpContext, RootContext};
use serde::Deserialize;
use sluice_core::models::ModelSet;
use sluice_host::Counters;
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Debug, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum RawConfig {
    Route(RawRouteConfig),
    Upstream(RawUpstreamConfig),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouteConfig {
    /// Model names and globs this gateway serves (others get 404 model_not_found).
    models: Vec<String>,
    /// Concrete names the configuration knows (chain targets, priced models): `GET /v1/models`
    /// lists those a pattern serves, beside the exact names, and never a glob.
    #[serde(default)]
    known_models: Vec<String>,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    /// Remove the usage chunk from streams whose client did not ask for it (Sluice always asks
    /// upstream). A filter that reads usage further down the response path turns this off and
    /// strips after reading.
    #[serde(default = "yes")]
    strip_unrequested_usage: bool,
    /// Hold the request headers until the body is read, so that Envoy routes on the model
    /// (needs the Wasm filter's `allow_on_headers_stop_iteration`, which the generator sets).
    /// `false` where the route is fixed by the host (an Istio sidecar's ServiceEntry) and the
    /// headers cannot be held.
    #[serde(default = "yes")]
    hold_headers: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamConfig {}

fn default_max_body() -> usize {
    sluice_core::contract::DEFAULT_MAX_BODY_BYTES
}

fn yes() -> bool {
    true
}

pub struct RouteConfig {
    pub models: ModelSet,
    pub max_body_bytes: usize,
    pub strip_unrequested_usage: bool,
    pub hold_headers: bool,
}

enum Config {
    Route(Rc<RouteConfig>),
    Upstream(Rc<upstream::Backends>),
}

fn parse_config(bytes: &[u8]) -> Result<Config, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        format!("field '{path}': {}", e.into_inner())
    })?;
    Ok(match raw {
        RawConfig::Route(r) => Config::Route(Rc::new(RouteConfig {
            models: ModelSet::with_listed(r.models, r.known_models),
            max_body_bytes: r.max_body_bytes,
            strip_unrequested_usage: r.strip_unrequested_usage,
            hold_headers: r.hold_headers,
        })),
        RawConfig::Upstream(RawUpstreamConfig {}) => Config::Upstream(Rc::default()),
    })
}

/// sluice-translate as a filter: its role's configuration and per-stream context.
struct TranslateFilter;

impl sluice_host::Filter for TranslateFilter {
    type Config = Config;
    const NAME: &'static str = "sluice-translate";

    fn compile(raw: &[u8]) -> Result<Config, String> {
        parse_config(raw)
    }

    fn context(config: &Rc<Config>, _metrics: &Rc<RefCell<Counters>>) -> Box<dyn HttpContext> {
        match &**config {
            Config::Route(c) => sluice_host::http_context(
                "route",
                route::Route::new(&sluice_host::REAL, Rc::clone(c)),
            ),
            Config::Upstream(b) => sluice_host::http_context(
                "upstream",
                upstream::Upstream::new(&sluice_host::REAL, Rc::clone(b)),
            ),
        }
    }
}

/// This filter's root context (the `sluice` module creates it for the plugin's `root_id`).
pub fn root() -> Box<dyn RootContext> {
    sluice_host::root::<TranslateFilter>()
}
