//! sluice-cache: answers identical requests from shared data, in the shape the client asked
//! for (JSON or SSE, whichever filled the entry), and stores complete successes of misses as
//! they pass. Keys include the tenant (team by default, from sluice-auth), so a team never
//! receives another team's entry. See `sluice_core::cache`.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::Action;
use serde::Deserialize;
use serde_json::Value;
use sluice_core::cache::{self, Assembling, Bounds, Cache};
use sluice_core::contract::{self, property, Endpoint};
use sluice_core::models::Ranked;
use sluice_host::{self as host, Buffer, Counters, Host, Shared};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Scope {
    Team,
    Project,
    Key,
    Global,
}

fn default_scope() -> Scope {
    Scope::Team
}
fn default_ttl() -> u64 {
    3600
}
fn default_max_ttl() -> u64 {
    86_400
}
fn default_entries() -> u32 {
    10_000
}
fn default_bytes() -> u64 {
    64 << 20
}
fn default_entry_bytes() -> u64 {
    1 << 20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Who may share entries: a team (default), a project, a key, or everyone.
    #[serde(default = "default_scope")]
    scope: Scope,
    #[serde(default = "default_ttl")]
    ttl_seconds: u64,
    /// Upper bound of a per-request `x-sluice-cache-ttl`.
    #[serde(default = "default_max_ttl")]
    max_ttl_seconds: u64,
    /// TTL per model name or glob (an exact name wins, then the longest glob).
    #[serde(default)]
    model_ttl: BTreeMap<String, u64>,
    /// `model_ttl`, ranked (built in `on_configure`).
    #[serde(skip)]
    ranked_ttl: Ranked<u64>,
    #[serde(default = "default_entries")]
    max_entries: u32,
    #[serde(default = "default_bytes")]
    max_bytes: u64,
    #[serde(default = "default_entry_bytes")]
    max_entry_bytes: u64,
    /// Cache only requests with temperature 0 (unless `x-sluice-cache-force: true`).
    #[serde(default)]
    deterministic_only: bool,
    /// Store answers that call tools (off: a replayed tool call may repeat an action).
    #[serde(default)]
    store_tool_calls: bool,
    /// Replay the usage chunk to every streaming client (set when sluice-auth, which reads it
    /// and removes it for clients that did not ask, sits in front).
    #[serde(default)]
    usage_in_replay: bool,
}

impl Config {
    /// The plugin configuration, checked and compiled once.
    fn compile(raw: &[u8]) -> Result<Config, String> {
        let mut de = serde_json::Deserializer::from_slice(raw);
        let mut c: Config = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| format!("field '{}': {}", e.path(), e.inner()))?;
        if c.max_entries == 0 || c.max_bytes == 0 {
            return Err("max_entries and max_bytes must be positive".into());
        }
        c.ranked_ttl = Ranked::new(c.model_ttl.clone());
        Ok(c)
    }
}

/// sluice-cache as a filter: its configuration and per-stream context.
struct CacheFilter;

impl host::Filter for CacheFilter {
    type Config = Config;
    const NAME: &'static str = "sluice-cache";
    const MAX_METRICS: usize = 32;

    fn compile(raw: &[u8]) -> Result<Config, String> {
        Config::compile(raw)
    }

    fn context(config: &Rc<Config>, metrics: &Rc<RefCell<Counters>>) -> Box<dyn HttpContext> {
        sluice_host::http_context(
            "cache",
            CacheCtx {
                host: &sluice_host::REAL,
                config: Rc::clone(config),
                metrics: Rc::clone(metrics),
                state: State::Idle,
                endpoint: Endpoint::ChatCompletions,
            },
        )
    }
}

/// This filter's root context (the `sluice` module creates it for the plugin's `root_id`).
pub fn root() -> Box<dyn RootContext> {
    host::root::<CacheFilter>()
}

enum State {
    Idle,
    /// Reading the request body.
    Reading {
        no_cache: bool,
        no_store: bool,
        ttl: Option<u64>,
        force: bool,
    },
    /// Passed through without the cache (and why it says so).
    Bypass,
    /// A miss to store when it ends cleanly.
    Miss {
        hash: [u8; 32],
        ttl: u64,
        json: Option<Vec<u8>>,
        sse: Option<Assembling>,
        ok: bool,
    },
}

struct CacheCtx {
    host: &'static dyn Host,
    config: Rc<Config>,
    metrics: Rc<RefCell<Counters>>,
    state: State,
    /// What the request is: chat (completions), Anthropic Messages (entries are Anthropic
    /// messages) or embeddings (vector lists: deterministic, never streamed).
    endpoint: Endpoint<'static>,
}

impl CacheCtx {
    fn bounds(&self) -> Bounds {
        Bounds::new(
            self.config.max_entries,
            self.config.max_bytes,
            self.config.max_entry_bytes,
        )
    }

    fn tenant(&self) -> String {
        let prop = |name: &str| {
            self.host
                .property(&[name])
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_else(|| "-".into())
        };
        match self.config.scope {
            Scope::Team => format!("team:{}", prop(property::TEAM)),
            Scope::Project => format!(
                "project:{}:{}",
                prop(property::TEAM),
                prop(property::PROJECT)
            ),
            Scope::Key => format!("key:{}", prop(property::KEY_ID)),
            Scope::Global => "global".into(),
        }
    }

    fn ttl(&self, model: &str, requested: Option<u64>) -> u64 {
        requested
            .map(|t| t.min(self.config.max_ttl_seconds))
            .unwrap_or_else(|| {
                self.config
                    .ranked_ttl
                    .get(model)
                    .copied()
                    .unwrap_or(self.config.ttl_seconds)
            })
    }
}

impl Context for CacheCtx {}

impl HttpContext for CacheCtx {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let headers = self.host.read_headers(host::map_request());
        headers.strip_internal(self.host, false);
        match host::endpoint(self.host, &headers) {
            Some(e @ (Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Embeddings))
                if !end_of_stream =>
            {
                // The endpoint's own ('static) name: `e` borrows the headers.
                self.endpoint = Endpoint::from_path(e.path()).unwrap_or(Endpoint::ChatCompletions)
            }
            _ => return Action::Continue,
        }
        let cc = headers
            .get_str("cache-control")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let has = |d: &str| cc.split(',').any(|x| x.trim() == d);
        self.state = State::Reading {
            no_cache: has("no-cache"),
            no_store: has("no-store"),
            ttl: headers
                .get_str(contract::request::CACHE_TTL)
                .and_then(|t| t.trim().parse().ok()),
            force: headers
                .get_str(contract::request::CACHE_FORCE)
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        };
        // The body is held (in on_http_request_body) until it is whole; the headers go on.
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let State::Reading {
            no_cache,
            no_store,
            ttl,
            force,
        } = self.state
        else {
            return Action::Continue;
        };
        if !end_of_stream {
            return Action::Pause;
        }
        self.state = State::Bypass;
        let body = self.host.body(Buffer::HttpRequestBody, 0, body_size);
        let Ok(v) = host::request_json(&body) else {
            return Action::Continue;
        };
        // An embedding is a function of its input: always deterministic.
        let deterministic = self.endpoint == Endpoint::Embeddings
            || v.get("temperature").and_then(Value::as_f64) == Some(0.0);
        if (self.config.deterministic_only && !deterministic && !force) || (no_cache && no_store) {
            self.metrics
                .borrow_mut()
                .add(self.host, "sluice_cache.bypasses", 1);
            return Action::Continue;
        }
        let hash = match self.endpoint {
            Endpoint::Embeddings => cache::embeddings_key(&self.tenant(), &v),
            Endpoint::Messages => cache::messages_key(&self.tenant(), &v),
            _ => cache::key(&self.tenant(), &v),
        };
        let now = self.host.now_secs();
        if !no_cache {
            let c = Cache {
                store: &Shared(self.host),
                bounds: self.bounds(),
            };
            if let Some(entry) = c.lookup(&hash, now) {
                self.metrics
                    .borrow_mut()
                    .add(self.host, "sluice_cache.hits", 1);
                let stream = v.get("stream").and_then(Value::as_bool) == Some(true);
                let asked = v
                    .pointer("/stream_options/include_usage")
                    .and_then(Value::as_bool)
                    == Some(true);
                let messages = self.endpoint == Endpoint::Messages;
                let (ctype, out) = if stream && messages {
                    (
                        "text/event-stream",
                        cache::replay_messages_sse(&entry.completion),
                    )
                } else if stream {
                    (
                        "text/event-stream",
                        cache::replay_sse(&entry.completion, asked || self.config.usage_in_replay),
                    )
                } else {
                    (
                        "application/json",
                        serde_json::to_vec(&entry.completion).unwrap_or_default(),
                    )
                };
                let served = entry
                    .completion
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                self.host.send(
                    200,
                    &[
                        ("content-type", ctype.into()),
                        (contract::response::CACHE, "hit".into()),
                        ("age", now.saturating_sub(entry.stored_at).to_string()),
                        (contract::response::PROVIDER, "cache".into()),
                        (
                            contract::response::SERVED_MODEL,
                            contract::escape_for_header(&served).into_owned(),
                        ),
                    ],
                    &out,
                );
                self.state = State::Idle;
                return Action::Pause;
            }
        }
        if no_store {
            self.metrics
                .borrow_mut()
                .add(self.host, "sluice_cache.bypasses", 1);
            return Action::Continue;
        }
        self.metrics
            .borrow_mut()
            .add(self.host, "sluice_cache.misses", 1);
        let model = v.get("model").and_then(Value::as_str).unwrap_or_default();
        let ttl = self.ttl(model, ttl);
        self.state = State::Miss {
            hash,
            ttl,
            json: None,
            sse: None,
            ok: false,
        };
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let resp = host::map_response();
        let max = self.config.max_entry_bytes;
        match &mut self.state {
            State::Bypass => self
                .host
                .set_header(resp, contract::response::CACHE, Some("bypass")),
            State::Miss { json, sse, ok, .. } => {
                self.host
                    .set_header(resp, contract::response::CACHE, Some("miss"));
                let headers = self.host.read_headers(resp);
                *ok = headers.get_str(":status") == Some("200");
                if headers
                    .get_str("content-type")
                    .is_some_and(|c| c.starts_with("text/event-stream"))
                {
                    *sse = Some(Assembling::new(self.endpoint == Endpoint::Messages, max));
                } else {
                    *json = Some(Vec::new());
                }
            }
            _ => {}
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let bounds = self.bounds();
        let State::Miss {
            hash,
            ttl,
            json,
            sse,
            ok,
        } = &mut self.state
        else {
            return Action::Continue;
        };
        if !*ok {
            return Action::Continue;
        }
        let chunk = self.host.body(Buffer::HttpResponseBody, 0, body_size);
        if let Some(a) = sse.as_mut() {
            a.feed(&chunk);
        } else if let Some(buf) = json.as_mut() {
            if (buf.len() + chunk.len()) as u64 <= self.config.max_entry_bytes {
                buf.extend_from_slice(&chunk);
            } else {
                *ok = false; // over the entry limit: not stored
                *json = None;
                self.metrics
                    .borrow_mut()
                    .add(self.host, "sluice_cache.too_large", 1);
                return Action::Continue;
            }
        }
        if !end_of_stream {
            return Action::Continue;
        }
        let (store_tools, endpoint) = (self.config.store_tool_calls, self.endpoint);
        // The completion's JSON text: a JSON answer as it came (parsed once, shared with
        // sluice-auth, to check it), a stream's as assembled.
        let completion: Option<std::borrow::Cow<[u8]>> = match (sse.as_mut(), json.as_ref()) {
            (Some(a), _) => a
                .finish(store_tools)
                .and_then(|v| serde_json::to_vec(&v).ok())
                .map(Into::into),
            (None, Some(b)) => host::response_json(b)
                .is_some_and(|v| match endpoint {
                    Endpoint::Embeddings => cache::is_storable_embeddings(&v),
                    Endpoint::Messages => cache::is_storable_message(&v, store_tools),
                    _ => cache::is_storable(&v, store_tools),
                })
                .then(|| b.as_slice().into()),
            _ => None,
        };
        let (hash, ttl) = (*hash, *ttl);
        if let Some(completion) = completion {
            let now = self.host.now_secs();
            let c = Cache {
                store: &Shared(self.host),
                bounds,
            };
            let out = c.insert_json(&hash, now, &completion, ttl, now);
            let mut m = self.metrics.borrow_mut();
            if out.stored {
                m.add(self.host, "sluice_cache.stored", 1);
                m.add(self.host, "sluice_cache.stored_bytes", out.bytes);
            }
            m.add(self.host, "sluice_cache.evictions", u64::from(out.evicted));
            m.add(
                self.host,
                "sluice_cache.expired_reclaimed",
                u64::from(out.expired),
            );
            m.add(
                self.host,
                "sluice_cache.too_large",
                u64::from(out.too_large),
            );
        }
        self.state = State::Idle;
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_host::fake::FakeHost;

    const ANSWER: &[u8] = br#"{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;

    /// One request through the cache; `answer` is what the upstream says on a miss.
    fn run(host: &'static FakeHost, team: &str, path: &str, body: &str) -> Option<Vec<u8>> {
        let config =
            Rc::new(Config::compile(br#"{"model_ttl":{"gpt-*":10,"gpt-4o":20}}"#).unwrap());
        host.properties
            .borrow_mut()
            .insert(property::TEAM.into(), team.as_bytes().to_vec());
        host.with_request("POST", path, &[]);
        *host.request_body.borrow_mut() = body.as_bytes().to_vec();
        *host.sent.borrow_mut() = None;
        let mut c = CacheCtx {
            host,
            config,
            metrics: Rc::new(RefCell::new(Counters::new(32))),
            state: State::Idle,
            endpoint: Endpoint::ChatCompletions,
        };
        c.on_http_request_headers(0, false);
        c.on_http_request_body(body.len(), true);
        if let Some(r) = host.reply() {
            return Some(r.body);
        }
        host.with_response(200, &[("content-type", "application/json")]);
        c.on_http_response_headers(0, false);
        *host.response_body.borrow_mut() = ANSWER.to_vec();
        c.on_http_response_body(ANSWER.len(), true);
        None
    }

    const BODY: &str =
        r#"{"model":"gpt-4o","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;

    #[test]
    fn stores_a_miss_and_replays_it_to_the_same_tenant_only() {
        let host = FakeHost::leak();
        host.now.set(1000);
        assert!(run(host, "a", "/v1/chat/completions", BODY).is_none());
        assert_eq!(
            host.response_header(contract::response::CACHE).as_deref(),
            Some("miss")
        );
        // The same request on a path variant of the route table is the same entry.
        let hit = run(host, "a", "/v1/chat/completions/", BODY).expect("a hit");
        let v: serde_json::Value = serde_json::from_slice(&hit).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hi");
        assert!(host
            .reply()
            .unwrap()
            .headers
            .contains(&(contract::response::CACHE.into(), "hit".into())));
        assert!(
            run(host, "b", "/v1/chat/completions", BODY).is_none(),
            "another team"
        );
        // Exact model_ttl beats the glob: 20 s, so expired at +21.
        host.now.set(1015);
        assert!(run(host, "a", "/v1/chat/completions", BODY).is_some());
        host.now.set(1021);
        assert!(run(host, "a", "/v1/chat/completions", BODY).is_none());
    }

    #[test]
    fn ttl_ranks_exact_names_first() {
        let c = CacheCtx {
            host: FakeHost::leak(),
            config: Rc::new(
                Config::compile(br#"{"model_ttl":{"gpt-*":10,"gpt-4o":20,"gpt-4o-*":30}}"#)
                    .unwrap(),
            ),
            metrics: Rc::default(),
            state: State::Idle,
            endpoint: Endpoint::ChatCompletions,
        };
        assert_eq!(c.ttl("gpt-4o", None), 20);
        assert_eq!(c.ttl("gpt-4o-mini", None), 30);
        assert_eq!(c.ttl("gpt-5", None), 10);
        assert_eq!(c.ttl("claude", None), 3600);
        assert_eq!(c.ttl("gpt-4o", Some(999_999)), 86_400);
        assert!(Config::compile(br#"{"max_entries":0}"#).is_err());
        assert!(Config::compile(br#"{"bogus":1}"#)
            .unwrap_err()
            .contains("bogus"));
    }
}
