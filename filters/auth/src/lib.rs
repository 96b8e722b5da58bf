//! sluice-auth: authenticates virtual keys (headers phase, no body needed), checks the model
//! against the key's and team's allow-lists, admits the request against every limit of its key,
//! project and team with a reservation (body phase), and settles the reservation to the real
//! usage read from the answer (JSON or SSE) or, for a stream cut short, to what is known.
//!
//! Counters are `sluice_core::quota` records in shared data (local mode) or in Redis behind the
//! fleet quota service (`store:`, fleet mode: reserve over gRPC from the body callback, paused
//! until the answer; settle at the end of the response or from `on_log`, fire-and-forget and
//! idempotent per request id). `GET /v1/sluice/usage` reports them (everything for an admin
//! key, its own scopes for any other key).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::Action;
use serde_json::{json, Map, Value};
use sluice_core::auth::FailureMode;
use sluice_core::auth::{self, AuthConfig, Principal};
use sluice_core::contract::{self, property, Endpoint};
use sluice_core::identity;
use sluice_core::quota::wire::{self, ReadRequest, ReserveReply, ReserveRequest, SettleRequest};
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

    fn tick_ms(c: &AuthConfig) -> Option<u64> {
        c.store.as_ref().map(|_| OUTBOX_TICK_MS)
    }

    fn on_tick(c: &AuthConfig, metrics: &Rc<RefCell<Counters>>) {
        flush_outbox(&sluice_host::REAL, c, metrics);
    }

    fn on_root_grpc(_c: &AuthConfig, metrics: &Rc<RefCell<Counters>>, token: u32, status: u32) {
        outbox_answer(&sluice_host::REAL, metrics, token, status);
    }

    fn context(config: &Rc<AuthConfig>, metrics: &Rc<RefCell<Counters>>) -> Box<dyn HttpContext> {
        sluice_host::http_context(
            "auth",
            Auth::new(&sluice_host::REAL, Rc::clone(config), Rc::clone(metrics)),
        )
    }
}

/// How often the root context sends the settles the streams left in the outbox.
const OUTBOX_TICK_MS: u64 = 10;

/// Settles waiting to be sent, and those sent and not yet answered. A stream hands its settle
/// here and may end at once; the root context (which outlives every stream) sends it on its
/// next tick, gets the answer, and sends it again after a failure (another replica answers;
/// the service makes a repeat a no-op). One per VM (worker): the filters run on its one thread.
#[derive(Default)]
struct Outbox {
    tick: u64,
    queued: Vec<Queued>,
    sent: std::collections::HashMap<u32, Queued>,
}

struct Queued {
    message: Vec<u8>,
    tries: u32,
    /// The tick from which it may be sent (backoff after failures).
    due: u64,
    /// When the stream handed it over; it is given up after the reservation's TTL (the service
    /// has reaped the reservation by then).
    since: u64,
}

/// The most settles one worker keeps waiting (beyond it the oldest would be reaped by the
/// service after their reservation's TTL; never reached unless the service is gone for long).
const OUTBOX_MAX: usize = 100_000;

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
}

fn outbox_push(host: &dyn Host, metrics: &Rc<RefCell<Counters>>, message: Vec<u8>) {
    let full = OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        if o.queued.len() + o.sent.len() >= OUTBOX_MAX {
            return true;
        }
        let due = o.tick;
        o.queued.push(Queued {
            message,
            tries: 0,
            due,
            since: host.now_secs(),
        });
        false
    });
    if full {
        metrics
            .borrow_mut()
            .add(host, "sluice_auth.fleet.settle_dropped", 1);
    }
}

fn flush_outbox(host: &dyn Host, c: &AuthConfig, metrics: &Rc<RefCell<Counters>>) {
    let Some(store) = &c.store else {
        return;
    };
    let (tick, due) = OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        o.tick += 1;
        let tick = o.tick;
        let (due, later) = std::mem::take(&mut o.queued)
            .into_iter()
            .partition::<Vec<_>, _>(|q| q.due <= tick);
        o.queued = later;
        (tick, due)
    });
    let now = host.now_secs();
    for mut q in due {
        if now.saturating_sub(q.since) > store.reservation_ttl_seconds {
            metrics
                .borrow_mut()
                .add(host, "sluice_auth.fleet.settle_failed", 1);
            continue;
        }
        q.tries += 1;
        match host.grpc_call(
            &store.cluster,
            wire::SERVICE,
            wire::SETTLE,
            &q.message,
            store.timeout_ms,
        ) {
            Some(token) => OUTBOX.with(|o| {
                o.borrow_mut().sent.insert(token, q);
            }),
            None => {
                q.due = tick + backoff(q.tries);
                OUTBOX.with(|o| o.borrow_mut().queued.push(q));
            }
        }
    }
}

/// Ticks to wait after `tries` failures: 1, 2, 4... up to a second.
fn backoff(tries: u32) -> u64 {
    (1u64 << tries.min(7)).min(1000 / OUTBOX_TICK_MS)
}

fn outbox_answer(host: &dyn Host, metrics: &Rc<RefCell<Counters>>, token: u32, status: u32) {
    let Some(mut q) = OUTBOX.with(|o| o.borrow_mut().sent.remove(&token)) else {
        return;
    };
    if status == 0 {
        return;
    }
    if status == 3 {
        // INVALID_ARGUMENT: the service cannot read it; sending it again will not help.
        metrics
            .borrow_mut()
            .add(host, "sluice_auth.fleet.settle_failed", 1);
        return;
    }
    metrics
        .borrow_mut()
        .add(host, "sluice_auth.fleet.settle_retried", 1);
    OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        q.due = o.tick + backoff(q.tries);
        o.queued.push(q);
    });
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

/// gRPC statuses after which another replica may answer: UNAVAILABLE, INTERNAL, UNKNOWN
/// (a reset stream). Every quota operation is idempotent per request id, so a retry is safe.
/// Tries of one quota call: enough to pass over a dead replica and a dead connection to it.
const MAX_TRIES: u32 = 3;

fn retryable(status: u32) -> bool {
    matches!(status, 14 | 13 | 2)
}

/// Which counters hold a request's reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Local,
    Fleet,
    /// The quota service could not answer: reserved locally on a share of each limit; the
    /// settle still goes to the fleet (as a charge without reservation).
    FailOpen,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Fleet => "fleet",
            Mode::FailOpen => "fail_open",
        }
    }
}

struct Reservation {
    mode: Mode,
    /// The fleet request id (fleet and fail-open modes).
    id: String,
    scopes: Vec<Scope>,
    ask: Ask,
    at: Now,
}

/// A reserve sent and not yet answered, with what a retry sends again.
struct Reserving {
    id: String,
    scopes: Vec<Scope>,
    ask: Ask,
    message: Vec<u8>,
    tries: u32,
}

/// A gRPC call this stream waits for.
enum Pending {
    Reserve(Reserving),
    Usage { rows: Vec<UsageRow> },
}

/// One line of the usage report: which section, its name, its scope and what is shown beside.
struct UsageRow {
    section: &'static str,
    name: String,
    team: String,
    scope: Scope,
    extra: Vec<(&'static str, Value)>,
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
    /// The client speaks Anthropic's Messages API.
    anthropic: bool,
    /// `/v1/embeddings`: input tokens only.
    embeddings: bool,
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
    pending: Option<(u32, Pending)>,
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
            anthropic: false,
            embeddings: false,
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
            pending: None,
        }
    }

    fn principal(&self) -> Option<&Principal> {
        self.principal.and_then(|i| self.config.principals.get(i))
    }

    fn team(&self) -> String {
        self.principal()
            .map_or_else(|| "unknown".to_string(), |p| p.team.clone())
    }

    /// The principal id of the calling workload, from the configured identity source.
    fn workload(&self) -> Option<String> {
        let identity = match self.config.identity_source? {
            identity::Source::Peer => {
                let san = self
                    .host
                    .property(&["connection", "uri_san_peer_certificate"])?;
                identity::Identity::from_spiffe(std::str::from_utf8(&san).ok()?)?
            }
            identity::Source::Node => {
                // Envoy names the node `xds.node`; Istio's proxy also answers `node`.
                let node = |path: &[&str]| {
                    let mut full = vec!["xds", "node", "metadata"];
                    full.extend_from_slice(path);
                    self.host
                        .property(&full)
                        .or_else(|| self.host.property(full.get(1..).unwrap_or_default()))
                        .and_then(|v| String::from_utf8(v).ok())
                };
                let meta = |k: &str| node(&[k]);
                let labels: Vec<(String, String)> = self
                    .config
                    .identities
                    .iter()
                    .flat_map(|(m, _)| m.labels.keys())
                    .filter_map(|k| Some((k.clone(), node(&["LABELS", k])?)))
                    .collect();
                identity::Identity::from_node(
                    meta("NAMESPACE").as_deref(),
                    meta("SERVICE_ACCOUNT").as_deref(),
                    meta("WORKLOAD_NAME").as_deref(),
                    labels,
                )?
            }
        };
        let p = self.config.identify(&identity)?;
        self.host
            .set_log_field(property::IDENTITY, &identity.describe());
        Some(p.id.clone())
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
        let (status, body) = sluice_core::api::error_reply(host::client_api(self.host), err);
        self.host.send(status, &headers, &body);
        Action::Pause
    }

    fn now(&self) -> Now {
        self.config.windows.at(self.host.now_secs())
    }

    fn set_rate_headers(&mut self, scopes: &[Scope], records: &[Record], now: &Now) {
        self.rate_headers = auth::rate_headers(scopes, records, now);
    }

    fn usage_rows(&self, p: &Principal) -> Vec<UsageRow> {
        let mut rows = Vec::new();
        for q in &self.config.principals {
            if p.admin || q.id == p.id {
                let Some(scope) = self.config.scopes(q).into_iter().next() else {
                    continue;
                };
                rows.push(UsageRow {
                    section: "keys",
                    name: q.id.clone(),
                    team: q.team.clone(),
                    scope,
                    extra: vec![
                        ("name", json!(q.name)),
                        ("team", json!(q.team)),
                        ("project", json!(q.project)),
                    ],
                });
            }
        }
        for (name, (team, _)) in &self.config.projects {
            if p.admin || p.project.as_deref() == Some(name) {
                rows.push(UsageRow {
                    section: "projects",
                    name: name.clone(),
                    team: team.clone(),
                    scope: self.config.project_scope(name),
                    extra: vec![("team", json!(team))],
                });
            }
        }
        for name in self.config.teams.keys() {
            if p.admin || p.team == *name {
                rows.push(UsageRow {
                    section: "teams",
                    name: name.clone(),
                    team: name.clone(),
                    scope: self.config.team_scope(name),
                    extra: Vec::new(),
                });
            }
        }
        rows
    }

    fn send_usage(&self, rows: &[UsageRow], records: &[Record]) {
        let mut out: Map<String, Value> = ["keys", "projects", "teams"]
            .iter()
            .map(|s| (s.to_string(), Value::Object(Map::new())))
            .collect();
        for (row, rec) in rows.iter().zip(records) {
            let mut v = auth::usage_report(&row.scope.limits, rec);
            if let Some(o) = v.as_object_mut() {
                for (k, x) in &row.extra {
                    o.insert((*k).into(), x.clone());
                }
            }
            if let Some(Value::Object(section)) = out.get_mut(row.section) {
                section.insert(row.name.clone(), v);
            }
        }
        out.insert("object".into(), json!("sluice.usage"));
        out.insert(
            "store".into(),
            json!(if self.config.store.is_some() {
                "fleet"
            } else {
                "local"
            }),
        );
        self.host.send(
            200,
            &[("content-type", "application/json".into())],
            Value::Object(out).to_string().as_bytes(),
        );
    }

    fn local_records(&self, scopes: &[&Scope], now: &Now) -> Vec<Record> {
        let store = Shared(self.host);
        scopes
            .iter()
            .map(|s| {
                let mut r = store
                    .get(&s.key)
                    .0
                    .map(|b| Record::decode(&b))
                    .unwrap_or_default();
                r.roll(now);
                r
            })
            .collect()
    }

    fn usage_endpoint(&mut self) -> Action {
        let Some(p) = self.principal().cloned() else {
            return Action::Continue;
        };
        let rows = self.usage_rows(&p);
        // The configuration outlives the stream: borrowed, not copied per request.
        let config = Rc::clone(&self.config);
        let Some(store) = config.store.as_ref() else {
            let scopes: Vec<&Scope> = rows.iter().map(|r| &r.scope).collect();
            let records = self.local_records(&scopes, &self.now());
            self.send_usage(&rows, &records);
            return Action::Pause;
        };
        // One group per row keeps the answer's records in the rows' order.
        let req = ReadRequest {
            groups: rows
                .iter()
                .map(|r| (r.team.clone(), vec![r.scope.clone()]))
                .collect(),
            windows: self.config.windows,
        };
        match self.grpc(&store.cluster, wire::READ, &req.encode(), store.timeout_ms) {
            Some(token) => {
                self.pending = Some((token, Pending::Usage { rows }));
                Action::Pause
            }
            None => {
                self.host.send_error(&auth::quota_unavailable());
                Action::Pause
            }
        }
    }

    fn grpc(&self, cluster: &str, method: &str, message: &[u8], timeout_ms: u64) -> Option<u32> {
        self.host
            .grpc_call(cluster, wire::SERVICE, method, message, timeout_ms)
    }

    fn fleet_metric(&self, what: &str) {
        self.metrics
            .borrow_mut()
            .add(self.host, &format!("sluice_auth.fleet.{what}"), 1);
    }

    /// Admits against local shared data: the whole of each limit (local mode) or a share of
    /// it (the fleet store failed open).
    fn admit_local(&mut self, p: &Principal, mode: Mode, id: String, ask: Ask) -> Action {
        let mut scopes = self.config.scopes(p);
        if mode == Mode::FailOpen {
            let share = self
                .config
                .store
                .as_ref()
                .map_or(1000, |s| s.local_share_permille);
            for s in &mut scopes {
                s.limits = s.limits.share(share);
            }
        }
        let now = self.now();
        match quota::admit_all(&Shared(self.host), &scopes, ask, &now) {
            Ok(records) => {
                self.set_rate_headers(&scopes, &records, &now);
                self.admitted(
                    p,
                    Reservation {
                        mode,
                        id,
                        scopes,
                        ask,
                        at: now,
                    },
                );
                Action::Continue
            }
            Err(refusal) => {
                // Headers that show the refusing limit as exhausted.
                let refs: Vec<&Scope> = scopes.iter().collect();
                let records = self.local_records(&refs, &now);
                self.set_rate_headers(&scopes, &records, &now);
                self.refuse(&refusal.to_error(), refusal.reason())
            }
        }
    }

    fn admitted(&mut self, p: &Principal, res: Reservation) {
        let team = label(&p.team);
        let m = label(self.config.model_label(&self.model));
        self.metrics.borrow_mut().add(
            self.host,
            &format!("sluice_auth.team.{team}.model.{m}.requests"),
            1,
        );
        self.host.set_log_field(property::QUOTA, res.mode.name());
        self.reservation = Some(res);
    }

    /// The quota service did not answer a reserve: the store's failure mode decides.
    fn reserve_failed(&mut self, id: String, scopes: Vec<Scope>, ask: Ask) -> Action {
        let Some(p) = self.principal().cloned() else {
            return Action::Continue;
        };
        let mode = self
            .config
            .store
            .as_ref()
            .map_or(FailureMode::Closed, |s| s.failure_mode);
        if mode == FailureMode::Open {
            self.fleet_metric("fail_open");
            return self.admit_local(&p, Mode::FailOpen, id, ask);
        }
        self.fleet_metric("fail_closed");
        // A reserve the service may still commit late is released by id.
        self.send_settle(&id, &scopes, Actual::default(), true);
        self.host.set_log_field(property::QUOTA, "fail_closed");
        self.refuse(&auth::quota_unavailable(), "quota_unavailable")
    }

    /// Hands a settle to the outbox (sent by the root context; see [`Outbox`]).
    fn send_settle(&mut self, id: &str, scopes: &[Scope], actual: Actual, release: bool) {
        let config = Rc::clone(&self.config);
        let Some(store) = config.store.as_ref() else {
            return;
        };
        let Some(team) = self.principal().map(|p| p.team.clone()) else {
            return;
        };
        let message = SettleRequest {
            request_id: id.to_string(),
            team,
            scopes: scopes.to_vec(),
            actual,
            windows: self.config.windows,
            ttl_seconds: store.reservation_ttl_seconds,
            release,
        }
        .encode();
        outbox_push(self.host, &self.metrics, message);
    }

    fn on_reserve_reply(&mut self, status: u32, size: usize, mut r: Reserving) {
        let reply = (status == 0)
            .then(|| self.host.body(Buffer::GrpcReceiveBuffer, 0, size))
            .and_then(|b| ReserveReply::decode(&b).ok());
        let Some(reply) = reply else {
            // A replica down or reset (UNAVAILABLE, or the stream failing as INTERNAL or
            // UNKNOWN): one more try, which Envoy's load balancer sends to another replica. A
            // timeout (DEADLINE_EXCEEDED) is not retried: the time is spent.
            self.host.log(
                sluice_host::LogLevel::Warn,
                &format!("sluice-auth: quota service reserve failed (gRPC status {status})"),
            );
            if retryable(status) && r.tries < MAX_TRIES {
                let config = Rc::clone(&self.config);
                if let Some(store) = config.store.as_ref() {
                    if let Some(t) =
                        self.grpc(&store.cluster, wire::RESERVE, &r.message, store.timeout_ms)
                    {
                        self.fleet_metric("reserve_retried");
                        r.tries += 1;
                        self.pending = Some((t, Pending::Reserve(r)));
                        return;
                    }
                }
            }
            self.fleet_metric("reserve_failed");
            if matches!(self.reserve_failed(r.id, r.scopes, r.ask), Action::Continue) {
                self.host.resume_request();
            }
            return;
        };
        let now = self.config.windows.at(reply.now);
        let records = if reply.records.len() == r.scopes.len() {
            reply.records
        } else {
            vec![Record::default(); r.scopes.len()]
        };
        self.set_rate_headers(&r.scopes, &records, &now);
        if reply.admitted {
            let Some(p) = self.principal().cloned() else {
                return;
            };
            self.admitted(
                &p,
                Reservation {
                    mode: Mode::Fleet,
                    id: r.id,
                    scopes: r.scopes,
                    ask: r.ask,
                    at: now,
                },
            );
            self.host.resume_request();
        } else {
            let refusal = reply.refusal.unwrap_or(quota::Refusal {
                limit: "quota",
                scope: String::new(),
                retry_after: 1,
                budget: false,
                too_large: false,
            });
            self.refuse(&refusal.to_error(), refusal.reason());
        }
    }

    /// Replaces the reservation by the real cost, once.
    fn settle(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        if let Some((_, Pending::Reserve(r))) = self.pending.take() {
            // The stream ended (a client abort) while its reserve was out: release it.
            self.send_settle(&r.id, &r.scopes, Actual::default(), true);
        }
        let Some(res) = self.reservation.take() else {
            return;
        };
        let Some(p) = self.principal().cloned() else {
            return;
        };
        let model = self
            .served_model
            .clone()
            .unwrap_or_else(|| self.model.clone());
        let (reported, generated, complete) = match (&self.tap, &self.json) {
            (Some(t), _) => (t.usage, t.estimated_completion_tokens(), t.done),
            (None, Some(body)) => {
                let (u, content) =
                    host::response_json(body).map_or((None, 0), |v| usage::completion_usage(&v));
                (u, content.div_ceil(4), true)
            }
            (None, None) => (None, 0, false),
        };
        let seen = auth::Observed {
            ok: (200..300).contains(&self.status),
            cache_hit: self.cache_hit,
            reported,
            generated,
            complete,
        };
        let (usage, actual) = self.config.charge(&p, &model, self.prompt_estimate, &seen);
        let (cost, partial) = (actual.micro_usd, actual.partial);
        if res.mode != Mode::Fleet {
            quota::settle_all(
                &Shared(self.host),
                &res.scopes,
                res.ask,
                &res.at,
                actual,
                &self.now(),
            );
        }
        if res.mode != Mode::Local {
            self.send_settle(&res.id, &res.scopes, actual, false);
        }
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

impl Context for Auth {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let Some((expected, pending)) = self.pending.take() else {
            return;
        };
        if expected != token {
            self.pending = Some((expected, pending));
            return;
        }
        match pending {
            Pending::Reserve(r) => self.on_reserve_reply(status, size, r),
            Pending::Usage { rows } => {
                let reply = (status == 0)
                    .then(|| self.host.body(Buffer::GrpcReceiveBuffer, 0, size))
                    .and_then(|b| wire::ReadReply::decode(&b).ok())
                    .filter(|r| r.records.len() == rows.len());
                match reply {
                    Some(r) => self.send_usage(&rows, &r.records),
                    None => self.host.send_error(&auth::quota_unavailable()),
                }
            }
        }
    }
}

impl HttpContext for Auth {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let req = host::map_request();
        let headers = self.host.read_headers(req);
        headers.strip_internal(self.host, false);
        let key = auth::presented_key(headers.get("authorization"), headers.get("x-api-key"));
        // The client's credential never goes further, whatever happens next.
        self.host.remove_header(req, "authorization");
        self.host.remove_header(req, "x-api-key");
        let by_key = key
            .as_ref()
            .ok()
            .and_then(|k| self.config.authenticate(k))
            .map(|p| p.id.clone());
        let id = match (by_key, key) {
            (Some(id), _) => id,
            // In a mesh, the workload's identity stands in for a key: a request with no key,
            // or one that is no Sluice key (an SDK's placeholder), is the workload's.
            (None, _) if !self.config.identities.is_empty() => match self.workload() {
                Some(id) => id,
                None => return self.refuse(&auth::unknown_identity(), "unknown_identity"),
            },
            (None, Err(e)) => return self.refuse(&e, "invalid_api_key"),
            (None, Ok(_)) => return self.refuse(&auth::unknown_key(), "invalid_api_key"),
        };
        self.principal = self.config.principals.iter().position(|p| p.id == id);
        if let Some(p) = self.principal() {
            self.host.set_log_field(property::KEY_ID, &p.id);
            self.host.set_log_field(property::TEAM, &p.team);
            self.host
                .set_log_field(property::PROJECT, p.project.as_deref().unwrap_or("-"));
        }
        match host::endpoint(self.host, &headers) {
            Some(Endpoint::Usage) => self.usage_endpoint(),
            // What generates is metered; a token count is authenticated, not charged.
            // The headers go on (only the route role holds them, for routing on the model):
            // the body is held in `on_http_request_body` until it is whole, which also works
            // where headers cannot be held (Istio's WasmPlugin).
            Some(e) if e.metered() && !end_of_stream => {
                self.chat = true;
                self.anthropic = e.api() == contract::Api::Anthropic;
                self.embeddings = e == Endpoint::Embeddings;
                Action::Continue
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
        let sizing = if self.embeddings {
            self.config.size_embeddings(&p, &self.model, &v)
        } else {
            self.config.size(&p, &self.model, &v)
        };
        self.stream = sizing.stream;
        // Anthropic's streams always carry their usage.
        self.asked_usage = sizing.asked_usage || self.anthropic;
        self.prompt_estimate = sizing.prompt_estimate;
        let ask = sizing.ask;
        let config = Rc::clone(&self.config);
        let Some(store) = config.store.as_ref() else {
            return self.admit_local(&p, Mode::Local, String::new(), ask);
        };
        let id = self.host.random_id();
        let scopes = self.config.scopes(&p);
        let message = ReserveRequest {
            request_id: id.clone(),
            team: p.team.clone(),
            scopes: scopes.clone(),
            ask,
            windows: self.config.windows,
            ttl_seconds: store.reservation_ttl_seconds,
        }
        .encode();
        match self.grpc(&store.cluster, wire::RESERVE, &message, store.timeout_ms) {
            Some(token) => {
                self.pending = Some((
                    token,
                    Pending::Reserve(Reserving {
                        id,
                        scopes,
                        ask,
                        message,
                        tries: 1,
                    }),
                ));
                Action::Pause
            }
            None => {
                self.fleet_metric("reserve_failed");
                self.reserve_failed(id, scopes, ask)
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
    use sluice_core::contract::key;
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

    fn fleet_config(mode: &str) -> Rc<AuthConfig> {
        let mut raw: serde_json::Value = serde_json::from_str(&format!(
            r#"{{"store": {{"cluster": "quota", "failure_mode": "{mode}", "local_share": 0.5}}}}"#
        ))
        .unwrap();
        let hash = {
            use sha2::{Digest, Sha256};
            Sha256::digest(b"sk-test")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        raw["keys"] = serde_json::json!([{"id": "k1", "sha256": hash, "team": "t", "limits": {"tokens_per_minute": 1000}}]);
        raw["prices"] = serde_json::json!({"mock-gpt": {"input": 10, "output": 20}});
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
        assert!(matches!(
            a.on_http_request_headers(0, false),
            Action::Continue
        ));
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

    fn mesh(source: &str) -> Rc<AuthConfig> {
        let raw = serde_json::json!({
            "identity_source": source,
            "identities": [
                {"match": {"namespace": "shop", "service_account": "*"}, "team": "shop", "project": "web"},
                {"match": {"namespace": "shop", "service_account": "checkout"}, "team": "shop", "project": "checkout", "id": "checkout"},
                {"match": {"namespace": "ml", "labels": {"tier": "batch"}}, "team": "ml"}
            ],
        });
        Rc::new(AuthConfig::from_json(raw.to_string().as_bytes()).unwrap())
    }

    #[test]
    fn a_workload_identity_stands_in_for_a_key() {
        let node = |host: &FakeHost, ns: &str, sa: &str| {
            let mut p = host.properties.borrow_mut();
            p.insert("node.metadata.NAMESPACE".into(), ns.as_bytes().to_vec());
            p.insert(
                "node.metadata.SERVICE_ACCOUNT".into(),
                sa.as_bytes().to_vec(),
            );
        };
        for (ns, sa, headers, want) in [
            ("shop", "checkout", vec![], Some(("checkout", "checkout"))),
            (
                "shop",
                "cart",
                vec![("authorization", "Bearer sk-placeholder")],
                Some(("identity-0", "web")),
            ),
            ("billing", "x", vec![], None),
        ] {
            let host = FakeHost::leak();
            node(host, ns, sa);
            host.with_request("POST", "/v1/chat/completions", &headers);
            let mut a = auth(host, &mesh("node"));
            a.on_http_request_headers(0, false);
            match want {
                Some((id, project)) => {
                    assert!(host.reply().is_none(), "{ns}/{sa}");
                    assert_eq!(host.property_str(property::KEY_ID).as_deref(), Some(id));
                    assert_eq!(
                        host.property_str(property::PROJECT).as_deref(),
                        Some(project)
                    );
                    assert_eq!(host.property_str(property::TEAM).as_deref(), Some("shop"));
                    assert_eq!(
                        host.request_header("authorization"),
                        None,
                        "the placeholder goes"
                    );
                }
                None => {
                    let r = host.reply().unwrap();
                    assert_eq!(
                        (r.status, r.json()["error"]["code"].as_str()),
                        (403, Some("unknown_identity"))
                    );
                }
            }
        }
        // Labels as Istio sets them; a gateway reads the mTLS peer instead.
        let host = FakeHost::leak();
        node(host, "ml", "trainer");
        host.properties
            .borrow_mut()
            .insert("node.metadata.LABELS.tier".into(), b"batch".to_vec());
        host.with_request("POST", "/v1/chat/completions", &[]);
        auth(host, &mesh("node")).on_http_request_headers(0, false);
        assert_eq!(host.property_str(property::TEAM).as_deref(), Some("ml"));
        let host = FakeHost::leak();
        node(host, "ml", "trainer"); // the gateway's own metadata must not count
        host.properties.borrow_mut().insert(
            "connection.uri_san_peer_certificate".into(),
            b"spiffe://cluster.local/ns/shop/sa/checkout".to_vec(),
        );
        host.with_request("POST", "/v1/chat/completions", &[]);
        auth(host, &mesh("peer")).on_http_request_headers(0, false);
        assert_eq!(
            host.property_str(property::KEY_ID).as_deref(),
            Some("checkout")
        );
        let host = FakeHost::leak();
        node(host, "shop", "checkout");
        host.with_request("POST", "/v1/chat/completions", &[]);
        auth(host, &mesh("peer")).on_http_request_headers(0, false);
        assert_eq!(
            host.reply().unwrap().status,
            403,
            "no peer certificate: no identity"
        );
        assert!(
            AuthConfig::from_json(br#"{"identities":[{"match":{"namespace":"a"},"team":"t"}]}"#)
                .is_err(),
            "a source is required"
        );
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

    /// Runs the root context's tick and returns the settles it sent.
    fn flush(host: &'static FakeHost, config: &Rc<AuthConfig>) -> Vec<SettleRequest> {
        let metrics = Rc::new(RefCell::new(Counters::new(10)));
        flush_outbox(host, config, &metrics);
        host.grpc
            .borrow()
            .iter()
            .filter(|c| c.2 == wire::SETTLE)
            .map(|c| SettleRequest::decode(&c.3).unwrap())
            .collect()
    }

    const BODY: &str =
        r#"{"model":"mock-gpt","max_tokens":50,"messages":[{"role":"user","content":"hello"}]}"#;

    fn answer(host: &'static FakeHost, a: &mut Auth) {
        host.with_response(200, &[("content-type", "application/json")]);
        a.on_http_response_headers(0, false);
        let body = br#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#;
        *host.response_body.borrow_mut() = body.to_vec();
        a.on_http_response_body(body.len(), true);
        a.on_log();
    }

    #[test]
    fn fleet_mode_reserves_over_grpc_and_settles_once() {
        let host = FakeHost::leak();
        let config = fleet_config("closed");
        let mut a = auth(host, &config);
        assert!(matches!(chat(host, &mut a, BODY), Action::Pause));
        let (cluster, service, method, msg) = host.grpc.borrow()[0].clone();
        assert_eq!(
            (cluster.as_str(), service.as_str(), method.as_str()),
            ("quota", wire::SERVICE, wire::RESERVE)
        );
        let req = ReserveRequest::decode(&msg).unwrap();
        assert_eq!(req.team, "t");
        assert_eq!(
            req.scopes.iter().map(|s| s.kind).collect::<Vec<_>>(),
            ["key", "team"]
        );
        assert_eq!(req.scopes[0].limits.tokens_per_minute, Some(1000));
        assert!(req.ask.tokens >= 50 && req.ttl_seconds == 900);
        // Nothing local is touched in fleet mode.
        assert!(host.shared.borrow().is_empty());
        let reply = ReserveReply {
            admitted: true,
            records: vec![
                Record {
                    tokens_minute: 60,
                    ..Default::default()
                };
                2
            ],
            now: 1_000_000,
            ..Default::default()
        };
        *host.grpc_reply.borrow_mut() = reply.encode();
        a.on_grpc_call_response(1, 0, reply.encode().len());
        assert_eq!(host.resumed.get(), 1);
        assert_eq!(host.property_str(property::QUOTA).as_deref(), Some("fleet"));
        answer(host, &mut a);
        assert_eq!(
            host.response_header("x-ratelimit-remaining-tokens")
                .as_deref(),
            Some("940")
        );
        assert_eq!(
            host.grpc.borrow().len(),
            1,
            "settles go out from the root context"
        );
        let settles = flush(host, &config);
        assert_eq!(
            settles.len(),
            1,
            "one settle, though both end of stream and on_log ran"
        );
        let settle = &settles[0];
        assert_eq!(settle.request_id, req.request_id);
        assert_eq!(
            (
                settle.actual.tokens_in,
                settle.actual.tokens_out,
                settle.actual.micro_usd
            ),
            (7, 3, 130)
        );
        assert!(!settle.release);
    }

    #[test]
    fn a_fleet_refusal_is_a_429_in_the_envelope() {
        let host = FakeHost::leak();
        let mut a = auth(host, &fleet_config("closed"));
        chat(host, &mut a, BODY);
        let reply = ReserveReply {
            admitted: false,
            refusal: Some(quota::Refusal {
                limit: "usd_per_day",
                scope: "team t".into(),
                retry_after: 30,
                budget: true,
                too_large: false,
            }),
            records: vec![Record::default(); 2],
            now: 5,
        };
        *host.grpc_reply.borrow_mut() = reply.encode();
        a.on_grpc_call_response(1, 0, reply.encode().len());
        let r = host.reply().unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(r.json()["error"]["code"], "insufficient_quota");
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "retry-after" && v == "30"));
        assert_eq!(host.resumed.get(), 0);
        a.on_log();
        assert_eq!(
            host.grpc.borrow().len(),
            1,
            "nothing to settle for a refusal"
        );
    }

    #[test]
    fn an_unreachable_service_fails_closed_or_open() {
        // Closed: 503, and the reserve the service may still commit is released by id.
        let host = FakeHost::leak();
        let config = fleet_config("closed");
        let mut a = auth(host, &config);
        chat(host, &mut a, BODY);
        a.on_grpc_call_response(1, 14, 0); // retried (another replica)
        assert_eq!(host.grpc.borrow().len(), 2);
        a.on_grpc_call_response(2, 4, 0); // deadline exceeded: not retried
        let r = host.reply().unwrap();
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (503, Some("quota_unavailable"))
        );
        let release = flush(host, &config);
        assert!(release.len() == 1 && release[0].release);
        assert_eq!(host.metric("sluice_auth.fleet.fail_closed"), 1);

        // Open: served against half of each limit locally, marked, and settled to the fleet.
        let host = FakeHost::leak();
        host.now.set(1_000_000);
        let config = fleet_config("open");
        let mut a = auth(host, &config);
        host.grpc_down.set(true);
        assert!(matches!(chat(host, &mut a, BODY), Action::Continue));
        assert_eq!(
            host.property_str(property::QUOTA).as_deref(),
            Some("fail_open")
        );
        assert_eq!(host.response_header("x-ratelimit-limit-tokens"), None);
        host.grpc_down.set(false);
        answer(host, &mut a);
        assert_eq!(
            host.response_header("x-ratelimit-limit-tokens").as_deref(),
            Some("500")
        );
        let settles = flush(host, &config);
        assert_eq!(settles[0].actual.tokens_in, 7);
        let key = Record::decode(&host.shared_get(&key::quota_key("k1")).0.unwrap());
        assert_eq!((key.in_flight, key.tokens_minute), (0, 10));
        // A second request larger than the local share is refused while the service is away.
        let mut b = auth(host, &fleet_config("open"));
        host.grpc_down.set(true);
        let big =
            r#"{"model":"mock-gpt","max_tokens":600,"messages":[{"role":"user","content":"x"}]}"#;
        assert!(matches!(chat(host, &mut b, big), Action::Pause));
        assert_eq!(host.reply().unwrap().status, 429);
    }

    #[test]
    fn a_client_abort_while_reserving_releases_the_reservation() {
        let host = FakeHost::leak();
        let config = fleet_config("closed");
        let mut a = auth(host, &config);
        chat(host, &mut a, BODY);
        a.on_log();
        let settles = flush(host, &config);
        assert!(settles.len() == 1 && settles[0].release);
    }

    #[test]
    fn the_outbox_sends_a_failed_settle_again_with_backoff() {
        let host = FakeHost::leak();
        let config = fleet_config("closed");
        let metrics = Rc::new(RefCell::new(Counters::new(10)));
        let mut a = auth(host, &config);
        chat(host, &mut a, BODY);
        let reply = ReserveReply {
            admitted: true,
            records: vec![Record::default(); 2],
            ..Default::default()
        };
        *host.grpc_reply.borrow_mut() = reply.encode();
        a.on_grpc_call_response(1, 0, reply.encode().len());
        answer(host, &mut a);
        drop(a); // the stream is gone; its settle is not
        assert_eq!(flush(host, &config).len(), 1);
        outbox_answer(host, &metrics, 2, 14); // the replica died
        flush_outbox(host, &config, &metrics); // backoff: not yet
        assert_eq!(
            flush(host, &config).len(),
            2,
            "sent again after one tick of backoff"
        );
        outbox_answer(host, &metrics, 3, 0);
        for _ in 0..5 {
            flush_outbox(host, &config, &metrics);
        }
        assert_eq!(flush(host, &config).len(), 2, "an answered settle is done");
    }
}
