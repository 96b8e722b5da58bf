//! sluice-auth: authenticates virtual keys (headers phase, no body needed), checks the model
//! against the key's and team's allow-lists, admits the request against every limit of its key,
//! project and team with a reservation (body phase), and settles the reservation to the real
//! usage read from the answer (JSON or SSE) or, for a stream cut short, to what is known.
//!
//! Counters are `sluice_core::quota` records in shared data; `GET /v1/sluice/usage` reports
//! them (everything for an admin key, its own scopes for any other key).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::Action;
use serde_json::{json, Map, Value};
use sluice_core::auth::{self, AuthConfig, Principal};
use sluice_core::contract::{self, key, property, Endpoint};
use sluice_core::openai::Usage;
use sluice_core::quota::{self, Actual, Ask, Now, Record, Scope, Store};
use sluice_core::usage::{self, UsageTap};
use sluice_core::GatewayError;
use sluice_host::{self as host, Buffer, Counters, Host, Shared};
use std::cell::RefCell;
use std::rc::Rc;

/// sluice-auth as a filter: its configuration and per-stream context.
struct AuthFilter;

impl host::Filter for AuthFilter {
    type Config = AuthConfig;
    const NAME: &'static str = "sluice-auth";
    const MAX_METRICS: usize = MAX_METRICS;

    fn compile(raw: &[u8]) -> Result<AuthConfig, String> {
        AuthConfig::from_json(raw)
    }

    fn loaded(c: &AuthConfig) -> Option<String> {
        Some(format!("{} keys configured", c.principals.len()))
    }

    fn context(config: &Rc<AuthConfig>, metrics: &Rc<RefCell<Counters>>) -> Box<dyn HttpContext> {
        sluice_host::http_context(
            "auth",
            Auth::new(&sluice_host::REAL, Rc::clone(config), Rc::clone(metrics)),
        )
    }
}

/// This filter's root context (the `sluice` module creates it for the plugin's `root_id`).
pub fn root() -> Box<dyn RootContext> {
    host::root::<AuthFilter>()
}

/// Metric names hold a team, a model and a reason: `sluice_auth.team.<team>.model.<model>.<what>`
/// or `...reason.<reason>.refused`; the bootstrap's stats_tags turn them into labels.
const MAX_METRICS: usize = 2000;

/// A label value: dots would split the stat name, so only [A-Za-z0-9_-] survive.
fn label(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

struct Reservation {
    scopes: Vec<Scope>,
    ask: Ask,
    at: Now,
}

struct Auth {
    host: &'static dyn Host,
    config: Rc<AuthConfig>,
    metrics: Rc<RefCell<Counters>>,
    principal: Option<usize>,
    chat: bool,
    model: String,
    stream: bool,
    asked_usage: bool,
    prompt_estimate: u64,
    reservation: Option<Reservation>,
    rate_headers: Vec<(&'static str, String)>,
    status: u16,
    served_model: Option<String>,
    cache_hit: bool,
    json: Option<Vec<u8>>,
    tap: Option<UsageTap>,
    strip: bool,
    settled: bool,
}

impl Auth {
    fn new(
        host: &'static dyn Host,
        config: Rc<AuthConfig>,
        metrics: Rc<RefCell<Counters>>,
    ) -> Self {
        Auth {
            host,
            config,
            metrics,
            principal: None,
            chat: false,
            model: String::new(),
            stream: false,
            asked_usage: false,
            prompt_estimate: 0,
            reservation: None,
            rate_headers: Vec::new(),
            status: 0,
            served_model: None,
            cache_hit: false,
            json: None,
            tap: None,
            strip: false,
            settled: false,
        }
    }

    fn principal(&self) -> Option<&Principal> {
        self.principal.and_then(|i| self.config.principals.get(i))
    }

    fn team(&self) -> String {
        self.principal()
            .map_or_else(|| "unknown".to_string(), |p| p.team.clone())
    }

    fn refuse(&mut self, err: &GatewayError, reason: &str) -> Action {
        let team = label(&self.team());
        self.metrics.borrow_mut().add(
            self.host,
            &format!("sluice_auth.team.{team}.reason.{}.refused", label(reason)),
            1,
        );
        self.host.set_log_field(property::REFUSAL, reason);
        let mut headers = err.headers();
        headers.extend(self.rate_headers.iter().cloned());
        self.host.send(err.status, &headers, &err.body());
        Action::Pause
    }

    fn now(&self) -> Now {
        self.config.windows.at(self.host.now_secs())
    }

    /// OpenAI's x-ratelimit-* headers from the tightest scope of each kind.
    fn set_rate_headers(&mut self, scopes: &[Scope], records: &[Record], now: &Now) {
        let reset = auth::reset_text(now.minute_end.saturating_sub(now.secs).max(1));
        let tightest = |limit: fn(&Scope) -> Option<u64>, used: fn(&Record) -> u64| {
            scopes
                .iter()
                .zip(records)
                .filter_map(|(s, r)| limit(s).map(|l| (l, l.saturating_sub(used(r)))))
                .min_by_key(|(_, rem)| *rem)
        };
        let mut h = Vec::new();
        if let Some((l, rem)) = tightest(|s| s.limits.requests_per_minute, |r| r.requests_minute) {
            h.push(("x-ratelimit-limit-requests", l.to_string()));
            h.push(("x-ratelimit-remaining-requests", rem.to_string()));
            h.push(("x-ratelimit-reset-requests", reset.clone()));
        }
        if let Some((l, rem)) = tightest(|s| s.limits.tokens_per_minute, |r| r.tokens_minute) {
            h.push(("x-ratelimit-limit-tokens", l.to_string()));
            h.push(("x-ratelimit-remaining-tokens", rem.to_string()));
            h.push(("x-ratelimit-reset-tokens", reset));
        }
        self.rate_headers = h;
    }

    fn usage_endpoint(&mut self) -> Action {
        let Some(p) = self.principal().cloned() else {
            return Action::Continue;
        };
        let store = Shared(self.host);
        let now = self.now();
        let read = |key: &str| {
            let mut r = store
                .get(key)
                .0
                .map(|b| Record::decode(&b))
                .unwrap_or_default();
            r.roll(&now);
            r
        };
        let mut keys = Map::new();
        let mut projects = Map::new();
        let mut teams = Map::new();
        for q in &self.config.principals {
            if !p.admin && q.id != p.id {
                continue;
            }
            let mut v = auth::usage_report(&q.limits, &read(&key::quota_key(&q.id)));
            if let Some(o) = v.as_object_mut() {
                o.insert("name".into(), json!(q.name));
                o.insert("team".into(), json!(q.team));
                o.insert("project".into(), json!(q.project));
            }
            keys.insert(q.id.clone(), v);
        }
        for (name, (team, limits)) in &self.config.projects {
            if p.admin || p.project.as_deref() == Some(name) {
                let mut v = auth::usage_report(limits, &read(&key::quota_project(name)));
                if let Some(o) = v.as_object_mut() {
                    o.insert("team".into(), json!(team));
                }
                projects.insert(name.clone(), v);
            }
        }
        for (name, t) in &self.config.teams {
            if p.admin || p.team == *name {
                teams.insert(
                    name.clone(),
                    auth::usage_report(&t.limits, &read(&key::quota_team(name))),
                );
            }
        }
        let body =
            json!({"object": "sluice.usage", "keys": keys, "projects": projects, "teams": teams});
        self.host.send(
            200,
            &[("content-type", "application/json".into())],
            body.to_string().as_bytes(),
        );
        Action::Pause
    }

    /// Replaces the reservation by the real cost, once.
    fn settle(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        let Some(res) = self.reservation.take() else {
            return;
        };
        let Some(p) = self.principal().cloned() else {
            return;
        };
        let ok = (200..300).contains(&self.status);
        let free_hit = self.cache_hit && !self.config.charge_cache_hits;
        let model = self
            .served_model
            .clone()
            .unwrap_or_else(|| self.model.clone());
        let (usage, partial) = if !ok || free_hit {
            (Usage::default(), false)
        } else {
            let (known, generated, complete) = match (&self.tap, &self.json) {
                (Some(t), _) => (t.usage, t.estimated_completion_tokens(), t.done),
                (None, Some(body)) => {
                    let (u, content) = host::response_json(body)
                        .map_or((None, 0), |v| usage::completion_usage(&v));
                    (u, content.div_ceil(4), true)
                }
                (None, None) => (None, 0, false),
            };
            match known {
                Some(u) => (u, !complete),
                None => (
                    Usage {
                        prompt_tokens: self.prompt_estimate,
                        completion_tokens: generated,
                        ..Default::default()
                    },
                    true,
                ),
            }
        };
        let cost = self.config.cost(&p, &model, &usage);
        let actual = Actual {
            tokens_in: usage.prompt_tokens,
            tokens_out: usage.completion_tokens,
            micro_usd: cost,
            partial,
        };
        quota::settle_all(
            &Shared(self.host),
            &res.scopes,
            res.ask,
            &res.at,
            actual,
            &self.now(),
        );
        let (team, m) = (label(&p.team), label(self.config.model_label(&model)));
        let mut metrics = self.metrics.borrow_mut();
        metrics.add(
            self.host,
            &format!("sluice_auth.team.{team}.model.{m}.tokens_in"),
            usage.prompt_tokens,
        );
        metrics.add(
            self.host,
            &format!("sluice_auth.team.{team}.model.{m}.tokens_out"),
            usage.completion_tokens,
        );
        metrics.add(
            self.host,
            &format!("sluice_auth.team.{team}.model.{m}.cost_micro_usd"),
            cost,
        );
        if partial {
            metrics.add(
                self.host,
                &format!("sluice_auth.team.{team}.model.{m}.partial"),
                1,
            );
        }
        self.host
            .set_log_field(property::TOKENS_IN, &usage.prompt_tokens.to_string());
        self.host
            .set_log_field(property::TOKENS_OUT, &usage.completion_tokens.to_string());
        self.host
            .set_log_field(property::COST_MICRO_USD, &cost.to_string());
    }
}

impl Context for Auth {}

impl HttpContext for Auth {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let req = host::map_request();
        let headers = self.host.read_headers(req);
        headers.strip_internal(self.host, false);
        let key = auth::presented_key(headers.get("authorization"), headers.get("x-api-key"));
        // The client's credential never goes further, whatever happens next.
        self.host.remove_header(req, "authorization");
        self.host.remove_header(req, "x-api-key");
        let key = match key {
            Ok(k) => k,
            Err(e) => return self.refuse(&e, "invalid_api_key"),
        };
        let found = self.config.authenticate(&key).map(|p| p.id.clone());
        let Some(id) = found else {
            return self.refuse(&auth::unknown_key(), "invalid_api_key");
        };
        self.principal = self.config.principals.iter().position(|p| p.id == id);
        if let Some(p) = self.principal() {
            self.host.set_log_field(property::KEY_ID, &p.id);
            self.host.set_log_field(property::TEAM, &p.team);
            self.host
                .set_log_field(property::PROJECT, p.project.as_deref().unwrap_or("-"));
        }
        match host::endpoint(&headers) {
            Some(Endpoint::Usage) => self.usage_endpoint(),
            Some(e) if e.has_body() && !end_of_stream => {
                self.chat = true;
                Action::Pause
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.chat {
            return Action::Continue;
        }
        if body_size > self.config.max_body_bytes {
            // The translate filter refuses it with a 413; nothing to reserve.
            self.chat = false;
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.chat = false;
        let body = self.host.body(Buffer::HttpRequestBody, 0, body_size);
        // Bad bodies are the translate filter's to refuse, with a precise message.
        let Ok(v) = host::request_json(&body) else {
            return Action::Continue;
        };
        let Some(p) = self.principal().cloned() else {
            return Action::Continue;
        };
        self.model = v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if contract::check_model(&self.model).is_err() {
            // The translate filter refuses it (400); nothing is reserved for it.
            return Action::Continue;
        }
        if !self.config.allowed(&p, &self.model) {
            let err = auth::model_not_allowed(&self.model);
            return self.refuse(&err, "model_not_allowed");
        }
        self.stream = v.get("stream").and_then(Value::as_bool) == Some(true);
        self.asked_usage = v
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        self.prompt_estimate = usage::estimate_prompt_tokens(&v);
        let n = v
            .get("n")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .clamp(1, 128);
        let max_out = v
            .get("max_completion_tokens")
            .or_else(|| v.get("max_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(self.config.default_max_tokens)
            .min(usage::MAX_TOKENS_PER_REQUEST)
            .saturating_mul(n);
        let worst = Usage {
            prompt_tokens: self.prompt_estimate,
            completion_tokens: max_out,
            ..Default::default()
        };
        let ask = Ask {
            tokens: self.prompt_estimate.saturating_add(max_out),
            micro_usd: self.config.cost(&p, &self.model, &worst),
        };
        let scopes = self.config.scopes(&p);
        let now = self.now();
        match quota::admit_all(&Shared(self.host), &scopes, ask, &now) {
            Ok(records) => {
                self.set_rate_headers(&scopes, &records, &now);
                let team = label(&p.team);
                let m = label(self.config.model_label(&self.model));
                self.metrics.borrow_mut().add(
                    self.host,
                    &format!("sluice_auth.team.{team}.model.{m}.requests"),
                    1,
                );
                self.reservation = Some(Reservation {
                    scopes,
                    ask,
                    at: now,
                });
                Action::Continue
            }
            Err(refusal) => {
                // Headers that show the refusing limit as exhausted.
                let records: Vec<Record> = scopes
                    .iter()
                    .map(|s| {
                        let mut r = Shared(self.host)
                            .get(&s.key)
                            .0
                            .map(|b| Record::decode(&b))
                            .unwrap_or_default();
                        r.roll(&now);
                        r
                    })
                    .collect();
                self.set_rate_headers(&scopes, &records, &now);
                self.refuse(&refusal.to_error(), refusal.reason())
            }
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let resp = host::map_response();
        for (k, v) in &self.rate_headers {
            self.host.set_header(resp, k, Some(v));
        }
        if self.reservation.is_none() {
            return Action::Continue;
        }
        let headers = self.host.read_headers(resp);
        self.status = headers
            .get_str(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        self.served_model = headers
            .get_str(contract::response::SERVED_MODEL)
            .map(str::to_string);
        self.cache_hit = headers.get_str(contract::response::CACHE) == Some("hit");
        let sse = headers
            .get_str("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if (200..300).contains(&self.status) {
            if sse {
                self.strip =
                    self.config.strip_unrequested_usage && self.stream && !self.asked_usage;
                if self.strip {
                    self.host.remove_header(resp, "content-length");
                }
                self.tap = Some(UsageTap::new(self.strip));
            } else {
                self.json = Some(Vec::new());
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(tap) = self.tap.as_mut() {
            host::stream_chunk(self.host, body_size, end_of_stream, tap, self.strip);
        } else if let Some(buf) = self.json.as_mut() {
            // A copy: the body flows on unchanged while it is read.
            buf.extend(self.host.body(Buffer::HttpResponseBody, 0, body_size));
        }
        if end_of_stream {
            self.settle();
        }
        Action::Continue
    }

    /// Runs when the stream ends in any way (also after a reset): nothing stays reserved.
    fn on_log(&mut self) {
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_host::fake::FakeHost;

    fn config() -> Rc<AuthConfig> {
        let hash = {
            use sha2::{Digest, Sha256};
            Sha256::digest(b"sk-test")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let raw = serde_json::json!({
            "keys": [{"id": "k1", "sha256": hash, "team": "t", "limits": {"tokens_per_minute": 1000}}],
            "prices": {"mock-*": {"input": 1, "output": 2}, "mock-gpt": {"input": 10, "output": 20}},
            "models": ["mock-gpt"],
            "default_max_tokens": 100
        });
        Rc::new(AuthConfig::from_json(raw.to_string().as_bytes()).unwrap())
    }

    fn auth(host: &'static FakeHost, config: &Rc<AuthConfig>) -> Auth {
        Auth::new(
            host,
            Rc::clone(config),
            Rc::new(RefCell::new(Counters::new(100))),
        )
    }

    fn chat(host: &'static FakeHost, a: &mut Auth, body: &str) -> Action {
        host.with_request(
            "POST",
            "/v1/chat/completions",
            &[("authorization", "Bearer sk-test")],
        );
        *host.request_body.borrow_mut() = body.as_bytes().to_vec();
        assert!(matches!(a.on_http_request_headers(0, false), Action::Pause));
        assert_eq!(
            host.request_header("authorization"),
            None,
            "the client's key goes no further"
        );
        a.on_http_request_body(body.len(), true)
    }

    #[test]
    fn unknown_or_missing_keys_are_401_before_the_body() {
        for h in [
            vec![],
            vec![("authorization", "Bearer sk-nope")],
            vec![("x-api-key", "sk-nope")],
        ] {
            let host = FakeHost::leak();
            host.with_request("POST", "/v1/chat/completions", &h);
            let mut a = auth(host, &config());
            assert!(matches!(a.on_http_request_headers(0, false), Action::Pause));
            assert_eq!(host.reply().unwrap().status, 401);
            assert_eq!(
                host.property_str(property::REFUSAL).as_deref(),
                Some("invalid_api_key")
            );
        }
    }

    #[test]
    fn reserves_then_settles_to_the_real_usage() {
        let host = FakeHost::leak();
        host.now.set(1_000_000);
        let config = config();
        let mut a = auth(host, &config);
        let body = r#"{"model":"mock-gpt","max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}"#;
        assert!(matches!(chat(host, &mut a, body), Action::Continue));
        let team = Record::decode(&host.shared_get(&key::quota_team("t")).0.unwrap());
        assert!(team.in_flight == 1 && team.tokens_minute >= 50, "{team:?}");
        host.with_response(
            200,
            &[
                ("content-type", "application/json"),
                (contract::response::SERVED_MODEL, "mock-gpt"),
            ],
        );
        a.on_http_response_headers(0, false);
        assert!(host
            .response_header("x-ratelimit-remaining-tokens")
            .is_some());
        let answer = br#"{"choices":[{"index":0,"message":{"content":"hi"}}],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#;
        *host.response_body.borrow_mut() = answer.to_vec();
        a.on_http_response_body(answer.len(), true);
        a.on_log(); // settles once, whatever calls it
        let key = Record::decode(&host.shared_get(&key::quota_key("k1")).0.unwrap());
        assert_eq!((key.in_flight, key.tokens_minute), (0, 10));
        assert_eq!(host.property_str(property::TOKENS_IN).as_deref(), Some("7"));
        // 7 x 10 + 3 x 20 USD per million tokens = 130 micro-USD.
        assert_eq!(
            host.property_str(property::COST_MICRO_USD).as_deref(),
            Some("130")
        );
        assert_eq!(
            host.metric("sluice_auth.team.t.model.mock-gpt.tokens_in"),
            7
        );
    }

    #[test]
    fn a_request_over_the_limit_is_429_with_rate_headers() {
        let host = FakeHost::leak();
        host.now.set(1_000_000);
        let config = config();
        let body =
            r#"{"model":"mock-gpt","max_tokens":2000,"messages":[{"role":"user","content":"x"}]}"#;
        let mut a = auth(host, &config);
        assert!(matches!(chat(host, &mut a, body), Action::Pause));
        let r = host.reply().unwrap();
        assert_eq!(r.status, 429);
        assert!(r
            .headers
            .iter()
            .any(|(k, _)| k == "x-ratelimit-limit-tokens"));
    }

    #[test]
    fn unknown_models_count_as_other_and_bad_names_reserve_nothing() {
        let host = FakeHost::leak();
        host.now.set(1_000_000);
        let config = config();
        let mut a = auth(host, &config);
        chat(
            host,
            &mut a,
            r#"{"model":"mock-made-up-1","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#,
        );
        assert_eq!(host.metric("sluice_auth.team.t.model.other.requests"), 1);
        assert!(host.metrics.borrow().keys().all(|k| !k.contains("made-up")));
        let host = FakeHost::leak();
        let mut a = auth(host, &config);
        chat(
            host,
            &mut a,
            r#"{"model":"../x","messages":[{"role":"user","content":"x"}]}"#,
        );
        assert!(host.shared.borrow().is_empty() && host.reply().is_none());
    }
}
