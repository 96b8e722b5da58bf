//! The quota operations on Redis, each one Lua script (atomic across a request's key, project
//! and team records, which share the team's hash tag).

use redis::aio::ConnectionManager;
use redis::{RedisError, Script, Value};
use sluice_core::contract::key;
use sluice_core::quota::wire::{
    ReadReply, ReadRequest, ReserveReply, ReserveRequest, SettleReply, SettleRequest, LIMIT_NAMES,
};
use sluice_core::quota::{Limits, Record, Refusal, Scope, Windows, FIELDS};

const COMMON: &str = include_str!("lua/common.lua");

pub struct Scripts {
    reserve: Script,
    settle: Script,
    read: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            reserve: Script::new(&format!("{COMMON}{}", include_str!("lua/reserve.lua"))),
            settle: Script::new(&format!("{COMMON}{}", include_str!("lua/settle.lua"))),
            read: Script::new(&format!("{COMMON}{}", include_str!("lua/read.lua"))),
        }
    }
}

/// The longest reservation accepted: a day.
const MAX_TTL: u64 = 86_400;

fn ttl(asked: u64) -> u64 {
    asked.clamp(1, MAX_TTL)
}

fn window_args(w: &Windows) -> [u64; 3] {
    [w.minute.max(1), w.day.max(1), w.month.unwrap_or(0)]
}

fn limit_args(l: &Limits) -> [i64; 6] {
    let v = |x: Option<u64>| x.map_or(-1, |x| i64::try_from(x).unwrap_or(i64::MAX));
    [
        v(l.requests_per_minute),
        v(l.tokens_per_minute),
        v(l.tokens_per_day),
        v(l.micro_usd_per_day),
        v(l.micro_usd_per_month),
        v(l.parallel_requests),
    ]
}

fn scope_keys(team: &str, scopes: &[Scope]) -> Vec<String> {
    scopes
        .iter()
        .map(|s| key::fleet_scope(team, s.kind, &s.id))
        .collect()
}

/// KEYS of reserve and settle: expiries, the reservation, the settled marker, the scopes.
fn request_keys(inv: &mut redis::ScriptInvocation<'_>, team: &str, id: &str, scopes: &[Scope]) {
    inv.key(key::fleet_expiries(team))
        .key(key::fleet_reservation(team, id))
        .key(key::fleet_settled(team, id));
    for k in scope_keys(team, scopes) {
        inv.key(k);
    }
}

fn reservation_prefix(team: &str) -> String {
    key::fleet_reservation(team, "")
}

fn int(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Int(i)) => u64::try_from(*i).unwrap_or(0),
        Some(Value::BulkString(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    }
}

fn records(vals: &[Value]) -> Vec<Record> {
    vals.chunks_exact(FIELDS)
        .map(|c| {
            let mut f = [0u64; FIELDS];
            for (slot, v) in f.iter_mut().zip(c) {
                *slot = int(Some(v));
            }
            Record::from_fields(f)
        })
        .collect()
}

fn array(v: Value) -> Result<Vec<Value>, RedisError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(RedisError::from((
            redis::ErrorKind::TypeError,
            "unexpected script reply",
            format!("{other:?}"),
        ))),
    }
}

impl Scripts {
    pub async fn reserve(
        &self,
        con: &mut ConnectionManager,
        r: &ReserveRequest,
    ) -> Result<ReserveReply, RedisError> {
        let mut inv = self.reserve.prepare_invoke();
        request_keys(&mut inv, &r.team, &r.request_id, &r.scopes);
        inv.arg(&r.request_id)
            .arg(r.ask.tokens)
            .arg(r.ask.micro_usd)
            .arg(&window_args(&r.windows)[..])
            .arg(ttl(r.ttl_seconds))
            .arg(reservation_prefix(&r.team));
        for s in &r.scopes {
            inv.arg(&s.name).arg(&limit_args(&s.limits)[..]);
        }
        let out = array(inv.invoke_async(con).await?)?;
        let status = int(out.first());
        let refusal = (status == 0).then(|| {
            let name = text(out.get(2));
            Refusal {
                limit: LIMIT_NAMES
                    .iter()
                    .find(|n| **n == name)
                    .copied()
                    .unwrap_or("quota"),
                scope: text(out.get(3)),
                retry_after: int(out.get(4)).max(1),
                budget: int(out.get(5)) == 1,
                too_large: int(out.get(6)) == 1,
            }
        });
        Ok(ReserveReply {
            admitted: status == 1,
            refusal,
            records: records(out.get(7..).unwrap_or_default()),
            now: int(out.get(1)),
        })
    }

    pub async fn settle(
        &self,
        con: &mut ConnectionManager,
        r: &SettleRequest,
    ) -> Result<SettleReply, RedisError> {
        let mut inv = self.settle.prepare_invoke();
        request_keys(&mut inv, &r.team, &r.request_id, &r.scopes);
        inv.arg(&r.request_id)
            .arg(r.actual.tokens_in)
            .arg(r.actual.tokens_out)
            .arg(r.actual.micro_usd)
            .arg(u8::from(r.actual.partial))
            .arg(u8::from(r.release))
            .arg(&window_args(&r.windows)[..])
            .arg(ttl(r.ttl_seconds));
        let out = array(inv.invoke_async(con).await?)?;
        Ok(SettleReply {
            outcome: text(out.first()),
        })
    }

    /// One script call per team (each team is its own hash slot).
    pub async fn read(
        &self,
        con: &mut ConnectionManager,
        r: &ReadRequest,
    ) -> Result<ReadReply, RedisError> {
        let mut reply = ReadReply::default();
        for (team, scopes) in &r.groups {
            if scopes.is_empty() {
                continue;
            }
            let mut inv = self.read.prepare_invoke();
            inv.key(key::fleet_expiries(team));
            for k in scope_keys(team, scopes) {
                inv.key(k);
            }
            inv.arg(&window_args(&r.windows)[..])
                .arg(reservation_prefix(team));
            let out = array(inv.invoke_async(con).await?)?;
            reply.now = int(out.first());
            reply
                .records
                .extend(records(out.get(1..).unwrap_or_default()));
        }
        Ok(reply)
    }
}
