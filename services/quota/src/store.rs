//! The quota operations on Redis, each one Lua script (atomic across a request's key, project
//! and team records, which share the team's hash tag).

use redis::aio::ConnectionManager;
use redis::{RedisError, Script, Value};
use sluice_core::contract::key;
use sluice_core::quota::wire::{
    self, ReadReply, ReadRequest, ReserveReply, ReserveRequest, SettleReply, SettleRequest,
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
        let refusal = (status == 0).then(|| Refusal {
            limit: wire::limit_name(&text(out.get(2))),
            scope: text(out.get(3)),
            retry_after: int(out.get(4)).max(1),
            budget: int(out.get(5)) == 1,
            too_large: int(out.get(6)) == 1,
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

/// The scripts against a real redis-server (Debian's; `make redis` installs it), started here on
/// a free loopback port: what each operation does to the counters, exactly.
#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::quota::wire::ReadRequest;
    use sluice_core::quota::{Actual, Ask};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    struct Server(Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    async fn redis() -> (Server, ConnectionManager) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (make redis installs it)");
        let server = Server(child);
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
        for _ in 0..100 {
            if let Ok(c) = ConnectionManager::new(client.clone()).await {
                return (server, c);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start");
    }

    /// Day-long "minutes": no test run crosses a window by chance.
    const WIN: Windows = Windows {
        minute: 86_400,
        day: 86_400,
        month: None,
    };

    fn scope(kind: &'static str, id: &str, limits: Limits) -> Scope {
        Scope {
            kind,
            id: id.into(),
            key: String::new(),
            name: format!("{kind} {id}"),
            limits,
        }
    }

    fn scopes() -> Vec<Scope> {
        let tpm = Limits {
            tokens_per_minute: Some(100),
            ..Default::default()
        };
        vec![
            scope("key", "k", tpm),
            scope("team", "t", Limits::default()),
        ]
    }

    fn reserve(id: &str, tokens: u64, ttl: u64) -> ReserveRequest {
        ReserveRequest {
            request_id: id.into(),
            team: "t".into(),
            scopes: scopes(),
            ask: Ask {
                tokens,
                micro_usd: tokens * 10,
            },
            windows: WIN,
            ttl_seconds: ttl,
        }
    }

    fn settle(id: &str, tin: u64, tout: u64, release: bool) -> SettleRequest {
        SettleRequest {
            request_id: id.into(),
            team: "t".into(),
            scopes: scopes(),
            actual: Actual {
                tokens_in: tin,
                tokens_out: tout,
                micro_usd: (tin + tout) * 10,
                partial: false,
            },
            windows: WIN,
            ttl_seconds: 60,
            release,
        }
    }

    async fn records(s: &Scripts, con: &mut ConnectionManager) -> Vec<Record> {
        let r = ReadRequest {
            groups: vec![("t".into(), scopes())],
            windows: WIN,
        };
        s.read(con, &r).await.expect("read").records
    }

    #[tokio::test]
    async fn every_operation_is_exact_and_idempotent() {
        let (_server, mut con) = redis().await;
        let s = Scripts::default();

        // All or nothing: the key's 100 tokens per minute refuse the second 60; the team, which
        // has no limit, keeps only the first.
        assert!(
            s.reserve(&mut con, &reserve("a", 60, 60))
                .await
                .unwrap()
                .admitted
        );
        let no = s.reserve(&mut con, &reserve("b", 60, 60)).await.unwrap();
        assert!(!no.admitted);
        assert_eq!(no.refusal.unwrap().limit, "tokens_per_minute");
        let [key, team] = <[Record; 2]>::try_from(records(&s, &mut con).await).unwrap();
        assert_eq!(
            (key.tokens_minute, key.in_flight, key.total_refused),
            (60, 1, 1)
        );
        assert_eq!(
            (team.tokens_minute, team.in_flight, team.total_requests),
            (60, 1, 1)
        );

        // A reserve sent again (a retry) is answered as the first one was, once.
        assert!(
            s.reserve(&mut con, &reserve("a", 60, 60))
                .await
                .unwrap()
                .admitted
        );
        assert_eq!(records(&s, &mut con).await[1].total_requests, 1);

        // Settle: actual minus reserved, once.
        assert_eq!(
            s.settle(&mut con, &settle("a", 7, 3, false))
                .await
                .unwrap()
                .outcome,
            "settled"
        );
        assert_eq!(
            s.settle(&mut con, &settle("a", 7, 3, false))
                .await
                .unwrap()
                .outcome,
            "duplicate"
        );
        let team = records(&s, &mut con).await[1];
        assert_eq!((team.tokens_minute, team.in_flight), (10, 0));
        assert_eq!(
            (
                team.total_tokens_in,
                team.total_tokens_out,
                team.total_micro_usd
            ),
            (7, 3, 100)
        );

        // Release: the request was never served; everything it reserved comes back.
        s.reserve(&mut con, &reserve("c", 50, 60)).await.unwrap();
        assert_eq!(
            s.settle(&mut con, &settle("c", 0, 0, true))
                .await
                .unwrap()
                .outcome,
            "settled"
        );
        let team = records(&s, &mut con).await[1];
        assert_eq!(
            (
                team.tokens_minute,
                team.requests_minute,
                team.total_requests
            ),
            (10, 1, 1)
        );

        // A settle with no reservation (served on local limits) is charged as a request, and a
        // reserve that arrives after it reserves nothing.
        assert_eq!(
            s.settle(&mut con, &settle("d", 4, 1, false))
                .await
                .unwrap()
                .outcome,
            "unreserved"
        );
        let late = s.reserve(&mut con, &reserve("d", 5, 60)).await.unwrap();
        assert!(!late.admitted);
        let team = records(&s, &mut con).await[1];
        assert_eq!(
            (team.tokens_minute, team.total_requests, team.in_flight),
            (15, 2, 0)
        );
    }

    #[tokio::test]
    async fn an_unsettled_reservation_is_reaped_and_a_late_settle_corrects_it() {
        let (_server, mut con) = redis().await;
        let s = Scripts::default();
        s.reserve(&mut con, &reserve("r", 40, 1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let team = records(&s, &mut con).await[1];
        // Reaped: the lease is back; the reservation is charged, as an estimate.
        assert_eq!(
            (team.in_flight, team.total_partial, team.total_tokens_in),
            (0, 1, 40)
        );
        assert_eq!(
            s.settle(&mut con, &settle("r", 6, 2, false))
                .await
                .unwrap()
                .outcome,
            "late"
        );
        let team = records(&s, &mut con).await[1];
        assert_eq!((team.in_flight, team.total_partial), (0, 0));
        assert_eq!((team.total_tokens_in, team.total_tokens_out), (6, 2));
    }
}
