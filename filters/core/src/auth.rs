//! Virtual keys, teams and projects: the sluice-auth configuration, compiled once.
//!
//! Keys are stored as SHA-256 hashes; a presented key is hashed, looked up, and confirmed with a
//! constant-time comparison. Limits apply at key, project and team level; models are allowed per
//! key and per team (names and globs); prices are per million tokens, with a multiplier per team.

use crate::error::GatewayError;
use crate::models::{ModelSet, Ranked};
use crate::openai::Usage;
use crate::quota::{Actual, Ask, Limits, Now, Record, Scope, Windows};
use crate::usage::Price;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

pub const MAX_KEY_BYTES: usize = 512;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    requests_per_minute: Option<u64>,
    tokens_per_minute: Option<u64>,
    tokens_per_day: Option<u64>,
    usd_per_day: Option<f64>,
    usd_per_month: Option<f64>,
    parallel_requests: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: String,
    #[serde(default)]
    name: Option<String>,
    sha256: String,
    team: String,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    limits: RawLimits,
    /// May read everyone's usage at GET /v1/sluice/usage.
    #[serde(default)]
    admin: bool,
}

/// A workload identity rule (`crate::identity`): who, and whose team and project it spends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    #[serde(rename = "match")]
    matcher: crate::identity::Match,
    team: String,
    #[serde(default)]
    project: Option<String>,
    /// The principal's id in usage reports and logs (default `identity-<n>`).
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    price_multiplier: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    team: String,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: f64,
    output: f64,
    #[serde(default)]
    cached_input: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWindows {
    minute_seconds: Option<u64>,
    day_seconds: Option<u64>,
    month_seconds: Option<u64>,
}

/// Where the counters live: absent = this Envoy's shared data (local mode); present = the
/// fleet quota service (services/quota), reached through an Envoy cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    cluster: String,
    #[serde(default = "default_store_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    failure_mode: FailureMode,
    /// In `open` mode, the share of each fleet limit one Envoy may use on its own.
    #[serde(default = "default_local_share")]
    local_share: f64,
    /// How long an unsettled reservation holds before the service reaps it (longer than the
    /// longest request the routes allow).
    #[serde(default = "default_reservation_ttl")]
    reservation_ttl_seconds: u64,
}

/// What sluice-auth does when the quota service cannot answer (down, slow, Redis gone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Refuse with 503: no request goes unaccounted.
    #[default]
    Closed,
    /// Serve against local limits (`local_share` of each fleet limit), marked, and send the
    /// settle anyway so the fleet counters learn of it when the service is back.
    Open,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetStore {
    pub cluster: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
    pub local_share_permille: u64,
    pub reservation_ttl_seconds: u64,
}

fn default_store_timeout() -> u64 {
    250
}

fn default_local_share() -> f64 {
    0.1
}

fn default_reservation_ttl() -> u64 {
    900
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    keys: Vec<RawKey>,
    /// Workload identities (in a mesh) that stand in for keys.
    #[serde(default)]
    identities: Vec<RawIdentity>,
    /// Where the identity is read: `node` (a sidecar) or `peer` (an mTLS gateway).
    #[serde(default)]
    identity_source: Option<crate::identity::Source>,
    #[serde(default)]
    store: Option<RawStore>,
    #[serde(default)]
    teams: BTreeMap<String, RawTeam>,
    #[serde(default)]
    projects: BTreeMap<String, RawProject>,
    #[serde(default)]
    prices: BTreeMap<String, RawPrice>,
    #[serde(default = "default_max_tokens")]
    default_max_tokens: u64,
    #[serde(default)]
    charge_cache_hits: bool,
    #[serde(default)]
    windows: RawWindows,
    #[serde(default = "yes")]
    strip_unrequested_usage: bool,
    /// Bodies larger than this are left to the translate filter (which answers 413).
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    /// Model names the gateway serves (the generator passes its spec's). Metric labels take only
    /// exact configured names (these and the priced ones); any other model counts as `other`,
    /// so a client cannot create series.
    #[serde(default)]
    models: Vec<String>,
}

fn default_max_body() -> usize {
    crate::contract::DEFAULT_MAX_BODY_BYTES
}

fn default_max_tokens() -> u64 {
    4096
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub id: String,
    pub name: String,
    pub team: String,
    pub project: Option<String>,
    pub models: Option<ModelSet>,
    pub limits: Limits,
    pub admin: bool,
    hash: [u8; 32],
}

#[derive(Debug, Clone, Default)]
pub struct Team {
    pub limits: Limits,
    pub models: Option<ModelSet>,
    /// Price multiplier in thousandths (1000 = list price).
    pub multiplier_permille: u64,
}

#[derive(Debug)]
pub struct AuthConfig {
    by_hash: HashMap<[u8; 32], usize>,
    pub principals: Vec<Principal>,
    pub teams: BTreeMap<String, Team>,
    pub projects: BTreeMap<String, (String, Limits)>,
    pub prices: Ranked<Price>,
    /// Exact model names that may be metric labels.
    pub label_models: std::collections::BTreeSet<String>,
    pub default_max_tokens: u64,
    pub charge_cache_hits: bool,
    pub windows: Windows,
    pub strip_unrequested_usage: bool,
    pub max_body_bytes: usize,
    /// `None`: local mode.
    pub store: Option<FleetStore>,
    /// Workload identity rules and the principal each maps to.
    pub identities: Vec<(crate::identity::Match, usize)>,
    pub identity_source: Option<crate::identity::Source>,
}

/// Checks a principal's id (unique, no ':') and registers its team and project (a project
/// belongs to one team).
fn principal_scopes(
    ids: &mut std::collections::HashSet<String>,
    teams: &mut BTreeMap<String, Team>,
    projects: &mut BTreeMap<String, (String, Limits)>,
    at: &str,
    id: &str,
    team: &str,
    project: Option<&str>,
) -> Result<(), String> {
    if !ids.insert(id.to_string()) {
        return Err(format!("field '{at}.id': duplicate id '{id}'"));
    }
    if id.is_empty() || id.contains(':') {
        return Err(format!(
            "field '{at}.id': must be non-empty and contain no ':'"
        ));
    }
    teams.entry(team.to_string()).or_insert_with(|| Team {
        multiplier_permille: 1000,
        ..Default::default()
    });
    if let Some(p) = project {
        match projects.get(p) {
            Some((owner, _)) if owner != team => {
                return Err(format!(
                    "field '{at}.project': project '{p}' belongs to team '{owner}', not '{team}'"
                ))
            }
            Some(_) => {}
            None => {
                projects.insert(p.to_string(), (team.to_string(), Limits::default()));
            }
        }
    }
    Ok(())
}

fn micro_usd(x: Option<f64>, what: &str) -> Result<Option<u64>, String> {
    match x {
        None => Ok(None),
        Some(v) if v.is_finite() && (0.0..1e12).contains(&v) => Ok(Some((v * 1e6).round() as u64)),
        Some(v) => Err(format!(
            "{what} must be a non-negative number of USD, got {v}"
        )),
    }
}

fn limits(raw: &RawLimits, at: &str) -> Result<Limits, String> {
    Ok(Limits {
        requests_per_minute: raw.requests_per_minute,
        tokens_per_minute: raw.tokens_per_minute,
        tokens_per_day: raw.tokens_per_day,
        micro_usd_per_day: micro_usd(raw.usd_per_day, &format!("{at}.usd_per_day"))?,
        micro_usd_per_month: micro_usd(raw.usd_per_month, &format!("{at}.usd_per_month"))?,
        parallel_requests: raw.parallel_requests,
    })
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = (pair.first()?.to_ascii_lowercase() as char).to_digit(16)?;
        let lo = (pair.get(1)?.to_ascii_lowercase() as char).to_digit(16)?;
        *out.get_mut(i)? = (hi * 16 + lo) as u8;
    }
    Some(out)
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equality whose time does not depend on where the inputs differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl AuthConfig {
    pub fn from_json(bytes: &[u8]) -> Result<AuthConfig, String> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| format!("field '{}': {}", e.path(), e.inner()))?;
        let mut teams = BTreeMap::new();
        for (name, t) in &raw.teams {
            let mult = t.price_multiplier.unwrap_or(1.0);
            if !(mult.is_finite() && (0.0..1000.0).contains(&mult)) {
                return Err(format!(
                    "field 'teams.{name}.price_multiplier': must be between 0 and 1000"
                ));
            }
            teams.insert(
                name.clone(),
                Team {
                    limits: limits(&t.limits, &format!("teams.{name}.limits"))?,
                    models: t.models.clone().map(ModelSet::new),
                    multiplier_permille: (mult * 1000.0).round() as u64,
                },
            );
        }
        let mut projects = BTreeMap::new();
        for (name, p) in &raw.projects {
            projects.insert(
                name.clone(),
                (
                    p.team.clone(),
                    limits(&p.limits, &format!("projects.{name}.limits"))?,
                ),
            );
        }
        let mut by_hash = HashMap::new();
        let mut principals = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for (i, k) in raw.keys.iter().enumerate() {
            let at = format!("keys[{i}]");
            let hash =
                hex32(&k.sha256).ok_or(format!("field '{at}.sha256': expected 64 hex digits"))?;
            principal_scopes(
                &mut ids,
                &mut teams,
                &mut projects,
                &at,
                &k.id,
                &k.team,
                k.project.as_deref(),
            )?;
            if by_hash.insert(hash, principals.len()).is_some() {
                return Err(format!("field '{at}.sha256': two keys have the same hash"));
            }
            principals.push(Principal {
                id: k.id.clone(),
                name: k.name.clone().unwrap_or_else(|| k.id.clone()),
                team: k.team.clone(),
                project: k.project.clone(),
                models: k.models.clone().map(ModelSet::new),
                limits: limits(&k.limits, &format!("{at}.limits"))?,
                admin: k.admin,
                hash,
            });
        }
        let mut identities = Vec::new();
        for (i, r) in raw.identities.iter().enumerate() {
            let at = format!("identities[{i}]");
            r.matcher.check(&format!("{at}.match"))?;
            let id = r.id.clone().unwrap_or_else(|| format!("identity-{i}"));
            principal_scopes(
                &mut ids,
                &mut teams,
                &mut projects,
                &at,
                &id,
                &r.team,
                r.project.as_deref(),
            )?;
            identities.push((r.matcher.clone(), principals.len()));
            principals.push(Principal {
                name: r.name.clone().unwrap_or_else(|| id.clone()),
                id,
                team: r.team.clone(),
                project: r.project.clone(),
                models: r.models.clone().map(ModelSet::new),
                limits: limits(&r.limits, &format!("{at}.limits"))?,
                admin: false,
                // No key hashes to this: an identity principal is found by `identify` only.
                hash: [0; 32],
            });
        }
        if !identities.is_empty() && raw.identity_source.is_none() {
            return Err("field 'identity_source': say where identities come from: node (a sidecar) or peer (an mTLS gateway)".into());
        }
        let mut prices = Vec::new();
        for (model, p) in &raw.prices {
            let price = Price::from_usd_per_million(p.input, p.output, p.cached_input)
                .map_err(|e| format!("field 'prices.{model}': {e}"))?;
            prices.push((model.clone(), price));
        }
        let label_models = raw
            .models
            .iter()
            .chain(raw.prices.keys())
            .filter(|m| !m.contains('*'))
            .cloned()
            .collect();
        let prices = Ranked::new(prices);
        let store = match &raw.store {
            None => None,
            Some(st) => {
                if st.cluster.is_empty() {
                    return Err("field 'store.cluster': the quota service's cluster".into());
                }
                if !(st.local_share.is_finite() && (0.0..=1.0).contains(&st.local_share)) {
                    return Err("field 'store.local_share': must be between 0 and 1".into());
                }
                if !(1..=60_000).contains(&st.timeout_ms) {
                    return Err("field 'store.timeout_ms': must be 1 to 60000".into());
                }
                if !(1..=86_400).contains(&st.reservation_ttl_seconds) {
                    return Err("field 'store.reservation_ttl_seconds': must be 1 to 86400".into());
                }
                Some(FleetStore {
                    cluster: st.cluster.clone(),
                    timeout_ms: st.timeout_ms,
                    failure_mode: st.failure_mode,
                    local_share_permille: (st.local_share * 1000.0).round() as u64,
                    reservation_ttl_seconds: st.reservation_ttl_seconds,
                })
            }
        };
        let w = &raw.windows;
        let d = Windows::default();
        Ok(AuthConfig {
            by_hash,
            principals,
            teams,
            projects,
            prices,
            label_models,
            default_max_tokens: raw.default_max_tokens,
            charge_cache_hits: raw.charge_cache_hits,
            windows: Windows {
                minute: w.minute_seconds.unwrap_or(d.minute),
                day: w.day_seconds.unwrap_or(d.day),
                month: w.month_seconds,
            },
            strip_unrequested_usage: raw.strip_unrequested_usage,
            max_body_bytes: raw.max_body_bytes,
            store,
            identities,
            identity_source: raw.identity_source,
        })
    }

    /// The principal of a workload identity (the most specific matching rule).
    pub fn identify(&self, id: &crate::identity::Identity) -> Option<&Principal> {
        let best = crate::identity::best(self.identities.iter().map(|(m, _)| m), id)?;
        let (_, p) = self.identities.get(best)?;
        self.principals.get(*p)
    }

    /// The principal of a presented key.
    pub fn authenticate(&self, key: &[u8]) -> Option<&Principal> {
        let h = sha256(key);
        let p = self.principals.get(*self.by_hash.get(&h)?)?;
        ct_eq(&p.hash, &h).then_some(p)
    }

    pub fn allowed(&self, p: &Principal, model: &str) -> bool {
        let key_ok = p.models.as_ref().is_none_or(|m| m.contains(model));
        let team_ok = self
            .teams
            .get(&p.team)
            .and_then(|t| t.models.as_ref())
            .is_none_or(|m| m.contains(model));
        key_ok && team_ok
    }

    /// Key, project and team scopes of a principal, with their limits.
    pub fn scopes(&self, p: &Principal) -> Vec<Scope> {
        let mut s = vec![scope("key", &p.id, p.limits)];
        if let Some(proj) = &p.project {
            s.push(self.project_scope(proj));
        }
        s.push(self.team_scope(&p.team));
        s
    }

    /// A project's scope with its configured limits (none if the project is not configured).
    pub fn project_scope(&self, name: &str) -> Scope {
        let limits = self.projects.get(name).map(|(_, l)| *l).unwrap_or_default();
        scope("project", name, limits)
    }

    pub fn team_scope(&self, name: &str) -> Scope {
        let limits = self.teams.get(name).map(|t| t.limits).unwrap_or_default();
        scope("team", name, limits)
    }

    /// The metric label of a model: its name when configured exactly, else `other`.
    pub fn model_label<'a>(&self, model: &'a str) -> &'a str {
        if self.label_models.contains(model) {
            model
        } else {
            "other"
        }
    }

    pub fn price(&self, model: &str) -> Price {
        self.prices.get(model).copied().unwrap_or_default()
    }

    pub fn multiplier(&self, p: &Principal) -> u64 {
        self.teams
            .get(&p.team)
            .map_or(1000, |t| t.multiplier_permille)
    }

    pub fn cost(&self, p: &Principal, model: &str, usage: &Usage) -> u64 {
        self.price(model).cost(usage, self.multiplier(p))
    }
}

/// What a request asks of its scopes, sized from its (OpenAI-shaped) body before it is sent:
/// the prompt estimate plus the most it may generate, in tokens and in micro-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    pub prompt_estimate: u64,
    pub ask: Ask,
    pub stream: bool,
    /// The client asked for the stream's usage chunk itself.
    pub asked_usage: bool,
}

/// What was seen of an answer when it ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// A 2xx answer.
    pub ok: bool,
    pub cache_hit: bool,
    /// The usage the provider reported, if any.
    pub reported: Option<Usage>,
    /// Completion tokens estimated from the content seen (when usage was not reported).
    pub generated: u64,
    /// The answer ended normally (not cut short).
    pub complete: bool,
}

impl AuthConfig {
    /// An embeddings request: its input tokens, nothing generated.
    pub fn size_embeddings(&self, p: &Principal, model: &str, v: &Value) -> Sizing {
        let prompt_estimate = crate::usage::estimate_embedding_tokens(v);
        let worst = Usage {
            prompt_tokens: prompt_estimate,
            ..Default::default()
        };
        Sizing {
            prompt_estimate,
            ask: Ask {
                tokens: prompt_estimate,
                micro_usd: self.cost(p, model, &worst),
            },
            stream: false,
            asked_usage: false,
        }
    }

    pub fn size(&self, p: &Principal, model: &str, v: &Value) -> Sizing {
        let prompt_estimate = crate::usage::estimate_prompt_tokens(v);
        let n = v
            .get("n")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .clamp(1, 128);
        let max_out = v
            .get("max_completion_tokens")
            .or_else(|| v.get("max_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(self.default_max_tokens)
            .min(crate::usage::MAX_TOKENS_PER_REQUEST)
            .saturating_mul(n);
        let worst = Usage {
            prompt_tokens: prompt_estimate,
            completion_tokens: max_out,
            ..Default::default()
        };
        Sizing {
            prompt_estimate,
            ask: Ask {
                tokens: prompt_estimate.saturating_add(max_out),
                micro_usd: self.cost(p, model, &worst),
            },
            stream: v.get("stream").and_then(Value::as_bool) == Some(true),
            asked_usage: v
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true),
        }
    }

    /// What a request is charged when its answer ends: nothing for an error or a free cache
    /// hit; the reported usage (partial if the answer was cut); else the prompt estimate and
    /// the content seen, as partial. Returns the usage and its cost at the served model.
    pub fn charge(
        &self,
        p: &Principal,
        served_model: &str,
        prompt_estimate: u64,
        seen: &Observed,
    ) -> (Usage, Actual) {
        let usage = if !seen.ok || (seen.cache_hit && !self.charge_cache_hits) {
            (Usage::default(), false)
        } else {
            match seen.reported {
                Some(u) => (u, !seen.complete),
                None => (
                    Usage {
                        prompt_tokens: prompt_estimate,
                        completion_tokens: seen.generated,
                        ..Default::default()
                    },
                    true,
                ),
            }
        };
        let (usage, partial) = usage;
        let cost = self.cost(p, served_model, &usage);
        (
            usage,
            Actual {
                tokens_in: usage.prompt_tokens,
                tokens_out: usage.completion_tokens,
                micro_usd: cost,
                partial,
            },
        )
    }
}

/// OpenAI's `x-ratelimit-*` headers from the tightest scope of each kind.
pub fn rate_headers(
    scopes: &[Scope],
    records: &[Record],
    now: &Now,
) -> Vec<(&'static str, String)> {
    let reset = reset_text(now.minute_end.saturating_sub(now.secs).max(1));
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
    h
}

/// A scope of kind `key`, `project` or `team`: its shared-data key (local mode), and the name
/// refusals give it.
fn scope(kind: &'static str, id: &str, limits: Limits) -> Scope {
    let key = match kind {
        "key" => crate::contract::key::quota_key(id),
        "project" => crate::contract::key::quota_project(id),
        _ => crate::contract::key::quota_team(id),
    };
    Scope {
        kind,
        id: id.to_string(),
        key,
        name: format!("{kind} {id}"),
        limits,
    }
}

/// The key a client presented: `Authorization: Bearer <key>` or `x-api-key: <key>`.
pub fn presented_key(
    authorization: Option<&[u8]>,
    x_api_key: Option<&[u8]>,
) -> Result<Vec<u8>, GatewayError> {
    let invalid =
        |m: &str| GatewayError::new(401, "invalid_request_error", m).with_code("invalid_api_key");
    let raw = match (authorization, x_api_key) {
        (Some(a), _) => {
            let a = a.strip_prefix(b"Bearer ").or_else(|| a.strip_prefix(b"bearer ")).ok_or_else(|| {
                invalid("The Authorization header must be 'Bearer <your Sluice API key>'.")
            })?;
            a
        }
        (None, Some(k)) => k,
        (None, None) => {
            return Err(invalid(
                "You didn't provide an API key. Send your Sluice key as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
            ))
        }
    };
    let key = raw.trim_ascii();
    if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.iter().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "The API key is malformed: expected up to 512 printable ASCII characters.",
        ));
    }
    Ok(key.to_vec())
}

/// The quota service could not answer and the store fails closed.
pub fn quota_unavailable() -> GatewayError {
    GatewayError::new(
        503,
        "server_error",
        "The quota service is unavailable; the request was not sent. Retry shortly.",
    )
    .with_code("quota_unavailable")
}

pub fn unknown_identity() -> GatewayError {
    GatewayError::new(
        403,
        "permission_error",
        "This workload is not allowed to use the gateway: no identity rule matches it.",
    )
    .with_code("unknown_identity")
}

pub fn unknown_key() -> GatewayError {
    GatewayError::new(401, "invalid_request_error", "Incorrect API key provided.")
        .with_code("invalid_api_key")
}

pub fn model_not_allowed(model: &str) -> GatewayError {
    GatewayError::new(
        403,
        "invalid_request_error",
        format!("This API key may not use the model `{model}`."),
    )
    .with_param("model")
    .with_code("model_not_allowed")
}

/// One scope's usage and limits, for the admin endpoint.
pub fn usage_report(limits: &Limits, rec: &Record) -> Value {
    let rem = |l: Option<u64>, used: u64| l.map(|l| l.saturating_sub(used));
    json!({
        "window": {
            "requests_this_minute": rec.requests_minute,
            "tokens_this_minute": rec.tokens_minute,
            "tokens_today": rec.tokens_day,
            "usd_today": rec.micro_usd_day as f64 / 1e6,
            "usd_this_month": rec.micro_usd_month as f64 / 1e6,
            "in_flight": rec.in_flight,
        },
        "total": {
            "requests": rec.total_requests,
            "tokens_in": rec.total_tokens_in,
            "tokens_out": rec.total_tokens_out,
            "usd": rec.total_micro_usd as f64 / 1e6,
            "micro_usd": rec.total_micro_usd,
            "partial": rec.total_partial,
            "refused": rec.total_refused,
        },
        "limits": {
            "requests_per_minute": limits.requests_per_minute,
            "tokens_per_minute": limits.tokens_per_minute,
            "tokens_per_day": limits.tokens_per_day,
            "usd_per_day": limits.micro_usd_per_day.map(|v| v as f64 / 1e6),
            "usd_per_month": limits.micro_usd_per_month.map(|v| v as f64 / 1e6),
            "parallel_requests": limits.parallel_requests,
        },
        "remaining": {
            "requests_this_minute": rem(limits.requests_per_minute, rec.requests_minute),
            "tokens_this_minute": rem(limits.tokens_per_minute, rec.tokens_minute),
            "tokens_today": rem(limits.tokens_per_day, rec.tokens_day),
            "usd_today": rem(limits.micro_usd_per_day, rec.micro_usd_day).map(|v| v as f64 / 1e6),
            "usd_this_month": rem(limits.micro_usd_per_month, rec.micro_usd_month).map(|v| v as f64 / 1e6),
        },
    })
}

/// OpenAI's reset format: "1s", "6m0s", "1h2m3s".
pub fn reset_text(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hexs(b: &[u8; 32]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn config() -> AuthConfig {
        let cfg = json!({
            "keys": [
                {"id": "k1", "sha256": hexs(&sha256(b"sk-one")), "team": "t", "project": "p", "models": ["mock-*"],
                 "limits": {"requests_per_minute": 5, "usd_per_day": 1.5}},
                {"id": "k2", "sha256": hexs(&sha256(b"sk-two")).to_uppercase(), "team": "t", "admin": true}
            ],
            "teams": {"t": {"models": ["mock-gpt", "mock-claude"], "price_multiplier": 1.5, "limits": {"tokens_per_day": 1000}}},
            "projects": {"p": {"team": "t", "limits": {"parallel_requests": 2}}},
            "prices": {"mock-*": {"input": 1, "output": 2}, "mock-gpt": {"input": 10, "output": 20}}
        });
        AuthConfig::from_json(cfg.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn requests_are_sized_by_their_worst_case_and_charged_what_was_seen() {
        let c = config();
        let p = c.principals[0].clone();
        let v = json!({"model": "mock-gpt", "n": 2, "max_tokens": 100, "stream": true,
                       "stream_options": {"include_usage": true},
                       "messages": [{"role": "user", "content": "hello there"}]});
        let s = c.size(&p, "mock-gpt", &v);
        assert!(s.stream && s.asked_usage && s.prompt_estimate > 0);
        assert_eq!(s.ask.tokens, s.prompt_estimate + 200);
        // 10 and 20 USD per million, times the team's 1.5.
        assert_eq!(s.ask.micro_usd, (s.prompt_estimate * 10 + 200 * 20) * 3 / 2);
        let no_max = c.size(&p, "mock-gpt", &json!({"messages": []}));
        assert_eq!(
            no_max.ask.tokens,
            no_max.prompt_estimate + c.default_max_tokens
        );

        let reported = Usage {
            prompt_tokens: 7,
            completion_tokens: 3,
            ..Default::default()
        };
        let seen = Observed {
            ok: true,
            reported: Some(reported),
            complete: true,
            ..Default::default()
        };
        let (u, a) = c.charge(&p, "mock-gpt", 50, &seen);
        assert_eq!(
            (u.prompt_tokens, a.micro_usd, a.partial),
            (7, (70 + 60) * 3 / 2, false)
        );
        // Cut short without usage: the prompt estimate and what was seen, as partial.
        let cut = Observed {
            ok: true,
            generated: 4,
            ..Default::default()
        };
        let (u, a) = c.charge(&p, "mock-gpt", 50, &cut);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, a.partial),
            (50, 4, true)
        );
        // Errors and free cache hits cost nothing.
        for free in [
            Observed { ok: false, ..seen },
            Observed {
                cache_hit: true,
                ..seen
            },
        ] {
            let (_, a) = c.charge(&p, "mock-gpt", 50, &free);
            assert_eq!((a.tokens_in, a.micro_usd), (0, 0));
        }
    }

    #[test]
    fn rate_headers_come_from_the_tightest_scope() {
        let c = config();
        let scopes = c.scopes(&c.principals[0]);
        let records = vec![
            Record {
                requests_minute: 4,
                ..Default::default()
            };
            scopes.len()
        ];
        let now = Windows::default().at(1_000_050);
        let h = rate_headers(&scopes, &records, &now);
        assert!(h.contains(&("x-ratelimit-limit-requests", "5".into())));
        assert!(h.contains(&("x-ratelimit-remaining-requests", "1".into())));
        assert!(h.contains(&("x-ratelimit-reset-requests", "30s".into())));
        assert!(
            !h.iter().any(|(k, _)| k.contains("tokens")),
            "no scope limits tokens per minute"
        );
    }

    #[test]
    fn authenticates_by_hash() {
        let c = config();
        assert_eq!(c.authenticate(b"sk-one").unwrap().id, "k1");
        assert!(c.authenticate(b"sk-two").unwrap().admin);
        assert!(c.authenticate(b"sk-three").is_none());
    }

    #[test]
    fn models_limits_prices() {
        let c = config();
        let k1 = c.authenticate(b"sk-one").unwrap();
        assert!(c.allowed(k1, "mock-gpt"));
        assert!(!c.allowed(k1, "mock-gemini")); // team forbids
        assert!(!c.allowed(k1, "gpt-4o")); // key forbids
        let s = c.scopes(k1);
        assert_eq!(
            s.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
            [
                crate::contract::key::quota_key("k1"),
                crate::contract::key::quota_project("p"),
                crate::contract::key::quota_team("t"),
            ]
        );
        assert_eq!(s[0].limits.micro_usd_per_day, Some(1_500_000));
        assert_eq!(s[1].limits.parallel_requests, Some(2));
        assert_eq!(s[2].limits.tokens_per_day, Some(1000));
        let u = Usage {
            prompt_tokens: 1000,
            completion_tokens: 1000,
            ..Default::default()
        };
        // exact price wins over the glob; team multiplier 1.5
        assert_eq!(c.cost(k1, "mock-gpt", &u), (10_000 + 20_000) * 3 / 2);
        assert_eq!(c.cost(k1, "mock-claude", &u), 3000 * 3 / 2);
        assert_eq!(c.cost(k1, "unpriced", &u), 0);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let bad = |v: Value| AuthConfig::from_json(v.to_string().as_bytes()).unwrap_err();
        assert!(
            bad(json!({"keys": [{"id": "a", "sha256": "zz", "team": "t"}]}))
                .contains("keys[0].sha256")
        );
        assert!(bad(json!({"keys": [], "bogus": 1})).contains("bogus"));
        let h = hexs(&sha256(b"x"));
        assert!(bad(json!({"keys": [{"id": "a", "sha256": h, "team": "t"}, {"id": "a", "sha256": hexs(&sha256(b"y")), "team": "t"}]})).contains("duplicate"));
        assert!(bad(
            json!({"keys": [{"id": "a", "sha256": h, "team": "t", "limits": {"usd_per_day": -1}}]})
        )
        .contains("usd_per_day"));
        assert!(bad(json!({"keys": [{"id": "a", "sha256": h, "team": "t", "project": "p"}], "projects": {"p": {"team": "u"}}})).contains("belongs to team"));
    }

    #[test]
    fn presented_keys() {
        assert_eq!(presented_key(Some(b"Bearer sk-1"), None).unwrap(), b"sk-1");
        assert_eq!(presented_key(None, Some(b" sk-2 ")).unwrap(), b"sk-2");
        assert_eq!(presented_key(None, None).unwrap_err().status, 401);
        assert!(presented_key(Some(b"Basic abc"), None)
            .unwrap_err()
            .message
            .contains("Bearer"));
        assert!(presented_key(Some(b"Bearer \xff\xfe"), None)
            .unwrap_err()
            .message
            .contains("malformed"));
        assert!(presented_key(Some(&[b'a'; 600]), None).is_err());
        let long = [b"Bearer ".as_slice(), &[b'k'; 600]].concat();
        assert!(presented_key(Some(&long), None)
            .unwrap_err()
            .message
            .contains("malformed"));
    }

    #[test]
    fn reset_texts() {
        assert_eq!(reset_text(1), "1s");
        assert_eq!(reset_text(360), "6m0s");
        assert_eq!(reset_text(3723), "1h2m3s");
    }
}
