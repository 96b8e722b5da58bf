//! The fleet quota protocol: gRPC service `sluice.quota.v1.Quota` with three unary methods,
//! encoded with [`crate::proto`]. sluice-auth (wasm) writes the requests and reads the replies;
//! the quota service (services/quota) reads the requests and writes the replies, with these
//! same functions. Limits, windows and the reservation's TTL travel in every request: the
//! Envoy configuration is the one source of truth and the service has no configuration of keys.
//!
//! ```text
//! service Quota {
//!   rpc Reserve(ReserveRequest) returns (ReserveReply);  // all-or-nothing over every scope
//!   rpc Settle(SettleRequest) returns (SettleReply);     // idempotent per request id
//!   rpc Read(ReadRequest) returns (ReadReply);           // counters, for usage and headers
//! }
//! message Limits   { optional uint64 requests_per_minute = 1; optional uint64 tokens_per_minute = 2;
//!                    optional uint64 tokens_per_day = 3; optional uint64 micro_usd_per_day = 4;
//!                    optional uint64 micro_usd_per_month = 5; optional uint64 parallel_requests = 6; }
//! message Scope    { string kind = 1; string id = 2; string name = 3; Limits limits = 4; }
//! message Windows  { uint64 minute = 1; uint64 day = 2; optional uint64 month = 3; }
//! message ReserveRequest { string request_id = 1; string team = 2; repeated Scope scopes = 3;
//!                    uint64 tokens = 4; uint64 micro_usd = 5; Windows windows = 6; uint64 ttl_seconds = 7; }
//! message Refusal  { string limit = 1; string scope = 2; uint64 retry_after = 3; bool budget = 4;
//!                    bool too_large = 5; }
//! message Record   { uint64 f1 = 1; ... uint64 f15 = 15; }  // quota::Record's fields, in order
//! message ReserveReply { bool admitted = 1; Refusal refusal = 2; repeated Record records = 3;
//!                    uint64 now = 4; }
//! message SettleRequest { string request_id = 1; string team = 2; repeated Scope scopes = 3;
//!                    uint64 tokens_in = 4; uint64 tokens_out = 5; uint64 micro_usd = 6; bool partial = 7;
//!                    Windows windows = 8; uint64 ttl_seconds = 9; bool release = 10; }
//! message SettleReply { string outcome = 1; }  // settled | duplicate | late | unreserved
//! message Group    { string team = 1; repeated Scope scopes = 2; }
//! message ReadRequest { repeated Group groups = 1; Windows windows = 2; }
//! message ReadReply { repeated Record records = 1; uint64 now = 2; }
//! ```

use super::{Actual, Ask, Limits, Record, Refusal, Scope, Windows, FIELDS};
use crate::proto::{fields, Malformed, Value, Writer};

pub const SERVICE: &str = "sluice.quota.v1.Quota";
pub const RESERVE: &str = "Reserve";
pub const SETTLE: &str = "Settle";
pub const READ: &str = "Read";

/// Names a refusal may carry (a reply's `limit` is matched against these; anything else is
/// reported as `quota`).
pub const LIMIT_NAMES: &[&str] = &[
    "parallel_requests",
    "requests_per_minute",
    "tokens_per_minute",
    "tokens_per_day",
    "usd_per_day",
    "usd_per_month",
    "contention",
];

/// The static name of a refusal's limit as read from the wire; anything unknown is `quota`
/// (a name from the wire is never trusted as text).
pub fn limit_name(name: &str) -> &'static str {
    LIMIT_NAMES
        .iter()
        .find(|x| **x == name)
        .copied()
        .unwrap_or("quota")
}

const SCOPE_KINDS: &[&str] = &["key", "project", "team"];

/// The longest id, team or name accepted from the wire (config values are far shorter).
const MAX_TEXT: usize = 512;
/// At most this many scopes in one request (a key, a project and a team are three).
pub const MAX_SCOPES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    pub request_id: String,
    pub team: String,
    pub scopes: Vec<Scope>,
    pub ask: Ask,
    pub windows: Windows,
    pub ttl_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReserveReply {
    pub admitted: bool,
    pub refusal: Option<Refusal>,
    /// Each scope's counters after the decision, in the request's order.
    pub records: Vec<Record>,
    /// Redis's clock (seconds) when it decided.
    pub now: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleRequest {
    pub request_id: String,
    pub team: String,
    pub scopes: Vec<Scope>,
    pub actual: Actual,
    pub windows: Windows,
    pub ttl_seconds: u64,
    /// The request was not served (refused after its reserve, or its reserve went unanswered):
    /// return the reservation whole, requests included, and charge nothing.
    pub release: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SettleReply {
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadRequest {
    pub groups: Vec<(String, Vec<Scope>)>,
    pub windows: Windows,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadReply {
    pub records: Vec<Record>,
    pub now: u64,
}

fn text(v: Value<'_>) -> Result<String, Malformed> {
    let s = v.str()?;
    if s.len() > MAX_TEXT {
        return Err(Malformed);
    }
    Ok(s.to_string())
}

fn put_limits(w: &mut Writer, l: &Limits) {
    w.opt(1, l.requests_per_minute)
        .opt(2, l.tokens_per_minute)
        .opt(3, l.tokens_per_day)
        .opt(4, l.micro_usd_per_day)
        .opt(5, l.micro_usd_per_month)
        .opt(6, l.parallel_requests);
}

fn get_limits(b: &[u8]) -> Result<Limits, Malformed> {
    let mut l = Limits::default();
    fields(b, |t, v| {
        let slot = match t {
            1 => &mut l.requests_per_minute,
            2 => &mut l.tokens_per_minute,
            3 => &mut l.tokens_per_day,
            4 => &mut l.micro_usd_per_day,
            5 => &mut l.micro_usd_per_month,
            6 => &mut l.parallel_requests,
            _ => return Ok(()),
        };
        *slot = Some(v.uint());
        Ok(())
    })?;
    Ok(l)
}

fn put_scope(w: &mut Writer, tag: u32, s: &Scope) {
    w.msg(tag, |m| {
        m.str(1, s.kind).str(2, &s.id).str(3, &s.name);
        m.msg(4, |l| put_limits(l, &s.limits));
    });
}

fn get_scope(b: &[u8]) -> Result<Scope, Malformed> {
    let mut s = Scope {
        kind: "",
        id: String::new(),
        key: String::new(),
        name: String::new(),
        limits: Limits::default(),
    };
    fields(b, |t, v| {
        match t {
            1 => {
                let k = v.str()?;
                s.kind = SCOPE_KINDS
                    .iter()
                    .find(|x| **x == k)
                    .copied()
                    .ok_or(Malformed)?;
            }
            2 => s.id = text(v)?,
            3 => s.name = text(v)?,
            4 => s.limits = get_limits(v.bytes())?,
            _ => {}
        }
        Ok(())
    })?;
    if s.kind.is_empty() || s.id.is_empty() {
        return Err(Malformed);
    }
    Ok(s)
}

fn push_scope(scopes: &mut Vec<Scope>, v: Value<'_>) -> Result<(), Malformed> {
    if scopes.len() >= MAX_SCOPES {
        return Err(Malformed);
    }
    scopes.push(get_scope(v.bytes())?);
    Ok(())
}

fn put_windows(w: &mut Writer, tag: u32, x: &Windows) {
    w.msg(tag, |m| {
        m.uint(1, x.minute).uint(2, x.day).opt(3, x.month);
    });
}

fn get_windows(b: &[u8]) -> Result<Windows, Malformed> {
    let mut x = Windows::default();
    fields(b, |t, v| {
        match t {
            1 => x.minute = v.uint().max(1),
            2 => x.day = v.uint().max(1),
            3 => x.month = Some(v.uint().max(1)),
            _ => {}
        }
        Ok(())
    })?;
    Ok(x)
}

fn put_record(w: &mut Writer, tag: u32, r: &Record) {
    w.msg(tag, |m| {
        for (i, v) in r.fields().iter().enumerate() {
            m.uint(i as u32 + 1, *v);
        }
    });
}

fn get_record(b: &[u8]) -> Result<Record, Malformed> {
    let mut f = [0u64; FIELDS];
    fields(b, |t, v| {
        if let Some(slot) = (t as usize).checked_sub(1).and_then(|i| f.get_mut(i)) {
            *slot = v.uint();
        }
        Ok(())
    })?;
    Ok(Record::from_fields(f))
}

/// Fields 1-3 of a reserve or settle request: which request, of which team, in which scopes.
#[derive(Default)]
struct Head {
    request_id: String,
    team: String,
    scopes: Vec<Scope>,
}

fn put_head(w: &mut Writer, id: &str, team: &str, scopes: &[Scope]) {
    w.str(1, id).str(2, team);
    for s in scopes {
        put_scope(w, 3, s);
    }
}

impl Head {
    /// Takes field `t` if it is one of the head's; `Ok(false)` for any other field.
    fn take(&mut self, t: u32, v: Value<'_>) -> Result<bool, Malformed> {
        match t {
            1 => self.request_id = text(v)?,
            2 => self.team = text(v)?,
            3 => push_scope(&mut self.scopes, v)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A request id of printable ASCII (it becomes part of a Redis key), a team, a scope.
    fn checked(self) -> Result<Head, Malformed> {
        let id = &self.request_id;
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Malformed);
        }
        if self.team.is_empty() || self.scopes.is_empty() {
            return Err(Malformed);
        }
        Ok(self)
    }
}

impl ReserveRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        put_head(&mut w, &self.request_id, &self.team, &self.scopes);
        w.uint(4, self.ask.tokens).uint(5, self.ask.micro_usd);
        put_windows(&mut w, 6, &self.windows);
        w.uint(7, self.ttl_seconds);
        w.buf
    }

    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        let (mut head, mut ask, mut windows, mut ttl_seconds) =
            (Head::default(), Ask::default(), Windows::default(), 0);
        fields(b, |t, v| {
            if head.take(t, v)? {
                return Ok(());
            }
            match t {
                4 => ask.tokens = v.uint(),
                5 => ask.micro_usd = v.uint(),
                6 => windows = get_windows(v.bytes())?,
                7 => ttl_seconds = v.uint(),
                _ => {}
            }
            Ok(())
        })?;
        let head = head.checked()?;
        Ok(ReserveRequest {
            request_id: head.request_id,
            team: head.team,
            scopes: head.scopes,
            ask,
            windows,
            ttl_seconds,
        })
    }
}

impl ReserveReply {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bool(1, self.admitted);
        if let Some(r) = &self.refusal {
            w.msg(2, |m| {
                m.str(1, r.limit)
                    .str(2, &r.scope)
                    .uint(3, r.retry_after)
                    .bool(4, r.budget)
                    .bool(5, r.too_large);
            });
        }
        for r in &self.records {
            put_record(&mut w, 3, r);
        }
        w.uint(4, self.now);
        w.buf
    }

    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        let mut r = ReserveReply::default();
        fields(b, |t, v| {
            match t {
                1 => r.admitted = v.uint() != 0,
                2 => {
                    let mut f = Refusal {
                        limit: "quota",
                        scope: String::new(),
                        retry_after: 1,
                        budget: false,
                        too_large: false,
                    };
                    fields(v.bytes(), |t, v| {
                        match t {
                            1 => {
                                f.limit = limit_name(v.str()?);
                            }
                            2 => f.scope = text(v)?,
                            3 => f.retry_after = v.uint().max(1),
                            4 => f.budget = v.uint() != 0,
                            5 => f.too_large = v.uint() != 0,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    r.refusal = Some(f);
                }
                3 => {
                    if r.records.len() >= MAX_SCOPES {
                        return Err(Malformed);
                    }
                    r.records.push(get_record(v.bytes())?);
                }
                4 => r.now = v.uint(),
                _ => {}
            }
            Ok(())
        })?;
        Ok(r)
    }
}

impl SettleRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        put_head(&mut w, &self.request_id, &self.team, &self.scopes);
        w.uint(4, self.actual.tokens_in)
            .uint(5, self.actual.tokens_out)
            .uint(6, self.actual.micro_usd)
            .bool(7, self.actual.partial);
        put_windows(&mut w, 8, &self.windows);
        w.uint(9, self.ttl_seconds).bool(10, self.release);
        w.buf
    }

    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        let mut head = Head::default();
        let (mut actual, mut windows, mut ttl_seconds, mut release) =
            (Actual::default(), Windows::default(), 0, false);
        fields(b, |t, v| {
            if head.take(t, v)? {
                return Ok(());
            }
            match t {
                4 => actual.tokens_in = v.uint(),
                5 => actual.tokens_out = v.uint(),
                6 => actual.micro_usd = v.uint(),
                7 => actual.partial = v.uint() != 0,
                8 => windows = get_windows(v.bytes())?,
                9 => ttl_seconds = v.uint(),
                10 => release = v.uint() != 0,
                _ => {}
            }
            Ok(())
        })?;
        let head = head.checked()?;
        Ok(SettleRequest {
            request_id: head.request_id,
            team: head.team,
            scopes: head.scopes,
            actual,
            windows,
            ttl_seconds,
            release,
        })
    }
}

impl SettleReply {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.str(1, &self.outcome);
        w.buf
    }

    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        let mut r = SettleReply::default();
        fields(b, |t, v| {
            if t == 1 {
                r.outcome = text(v)?;
            }
            Ok(())
        })?;
        Ok(r)
    }
}

impl ReadRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        for (team, scopes) in &self.groups {
            w.msg(1, |g| {
                g.str(1, team);
                for s in scopes {
                    put_scope(g, 2, s);
                }
            });
        }
        put_windows(&mut w, 2, &self.windows);
        w.buf
    }

    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        let mut r = ReadRequest::default();
        fields(b, |t, v| {
            match t {
                1 => {
                    let (mut team, mut scopes) = (String::new(), Vec::new());
                    fields(v.bytes(), |t, v| {
                        match t {
                            1 => team = text(v)?,
                            2 => push_scope(&mut scopes, v)?,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    if team.is_empty() || r.groups.len() >= 4096 {
                        return Err(Malformed);
                    }
                    r.groups.push((team, scopes));
                }
                2 => r.windows = get_windows(v.bytes())?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(r)
    }
}

impl ReadReply {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        for r in &self.records {
            put_record(&mut w, 1, r);
        }
        w.uint(2, self.now);
        w.buf
    }

    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        let mut r = ReadReply::default();
        fields(b, |t, v| {
            match t {
                1 => r.records.push(get_record(v.bytes())?),
                2 => r.now = v.uint(),
                _ => {}
            }
            Ok(())
        })?;
        Ok(r)
    }
}

/// gRPC's length-prefixed message framing (one uncompressed message), for callers that see
/// the raw HTTP/2 body.
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 5);
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes() -> Vec<Scope> {
        vec![
            Scope {
                kind: "key",
                id: "k1".into(),
                key: String::new(),
                name: "key k1".into(),
                limits: Limits {
                    tokens_per_minute: Some(0),
                    micro_usd_per_month: Some(u64::MAX),
                    ..Default::default()
                },
            },
            Scope {
                kind: "team",
                id: "t".into(),
                key: String::new(),
                name: "team t".into(),
                limits: Limits::default(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        let w = Windows {
            minute: 60,
            day: 86_400,
            month: None,
        };
        let r = ReserveRequest {
            request_id: "0123abcd".into(),
            team: "t".into(),
            scopes: scopes(),
            ask: Ask {
                tokens: 5,
                micro_usd: 7,
            },
            windows: w,
            ttl_seconds: 600,
        };
        assert_eq!(ReserveRequest::decode(&r.encode()).unwrap(), r);
        let reply = ReserveReply {
            admitted: false,
            refusal: Some(Refusal {
                limit: "usd_per_day",
                scope: "team t".into(),
                retry_after: 9,
                budget: true,
                too_large: false,
            }),
            records: vec![
                Record {
                    in_flight: 2,
                    total_micro_usd: u64::MAX,
                    ..Default::default()
                },
                Record::default(),
            ],
            now: 1_700_000_000,
        };
        assert_eq!(ReserveReply::decode(&reply.encode()).unwrap(), reply);
        let s = SettleRequest {
            request_id: "x".into(),
            team: "t".into(),
            scopes: scopes(),
            actual: Actual {
                tokens_in: 1,
                tokens_out: 2,
                micro_usd: 3,
                partial: true,
            },
            windows: Windows {
                month: Some(100),
                ..w
            },
            ttl_seconds: 5,
            release: true,
        };
        assert_eq!(SettleRequest::decode(&s.encode()).unwrap(), s);
        let read = ReadRequest {
            groups: vec![("t".into(), scopes()), ("u".into(), vec![])],
            windows: w,
        };
        assert_eq!(ReadRequest::decode(&read.encode()).unwrap(), read);
        let rr = ReadReply {
            records: vec![Record::default(); 3],
            now: 4,
        };
        assert_eq!(ReadReply::decode(&rr.encode()).unwrap(), rr);
        let sr = SettleReply {
            outcome: "duplicate".into(),
        };
        assert_eq!(SettleReply::decode(&sr.encode()).unwrap(), sr);
    }

    #[test]
    fn hostile_requests_are_refused() {
        let base = ReserveRequest {
            request_id: "id".into(),
            team: "t".into(),
            scopes: scopes(),
            ask: Ask::default(),
            windows: Windows::default(),
            ttl_seconds: 1,
        };
        let mut no_id = base.clone();
        no_id.request_id = String::new();
        let mut spaced = base.clone();
        spaced.request_id = "a b".into();
        let mut no_scope = base.clone();
        no_scope.scopes.clear();
        let mut many = base.clone();
        many.scopes = (0..9).map(|_| scopes().remove(0)).collect();
        for bad in [no_id, spaced, no_scope, many] {
            assert_eq!(ReserveRequest::decode(&bad.encode()), Err(Malformed));
        }
        // An unknown scope kind.
        let mut w = Writer::default();
        w.str(1, "id").str(2, "t").msg(3, |m| {
            m.str(1, "admin").str(2, "x");
        });
        assert_eq!(ReserveRequest::decode(&w.buf), Err(Malformed));
        // An unknown refusal name is reported as "quota", never trusted as text.
        let mut w = Writer::default();
        w.msg(2, |m| {
            m.str(1, "evil\r\nname");
        });
        assert_eq!(
            ReserveReply::decode(&w.buf).unwrap().refusal.unwrap().limit,
            "quota"
        );
    }
}
