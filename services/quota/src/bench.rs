//! `sluice-quota bench`: reserve + settle pairs against a running service, as fast as it
//! answers, from `concurrency` tasks (what `make bench` reports as the service's throughput).

use crate::grpc::WireCodec;
use sluice_core::quota::wire::{self, ReserveReply, ReserveRequest, SettleReply, SettleRequest};
use sluice_core::quota::{Actual, Ask, Limits, Scope, Windows};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::codegen::http::uri::PathAndQuery;

fn scopes(team: &str) -> Vec<Scope> {
    let s = |kind: &'static str, id: &str| Scope {
        kind,
        id: id.to_string(),
        key: String::new(),
        name: format!("{kind} {id}"),
        limits: Limits {
            requests_per_minute: Some(u64::MAX / 2),
            tokens_per_minute: Some(u64::MAX / 2),
            ..Default::default()
        },
    };
    vec![s("key", &format!("{team}-key")), s("team", team)]
}

pub async fn run(target: &str, seconds: u64, concurrency: usize) -> Result<(), String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (channel, done, failed) = (channel.clone(), Arc::clone(&done), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            let team = format!("bench{t}");
            let mut n = 0u64;
            while Instant::now() < end {
                n += 1;
                let id = format!("b{t}x{n}x{}", std::process::id());
                let mut g = tonic::client::Grpc::new(channel.clone());
                if g.ready().await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let reserve = ReserveRequest {
                    request_id: id.clone(),
                    team: team.clone(),
                    scopes: scopes(&team),
                    ask: Ask {
                        tokens: 100,
                        micro_usd: 10,
                    },
                    windows: Windows::default(),
                    ttl_seconds: 60,
                };
                let path = |m: &str| {
                    PathAndQuery::try_from(format!("/{}/{m}", wire::SERVICE))
                        .unwrap_or_else(|_| PathAndQuery::from_static("/"))
                };
                let r = g
                    .unary(
                        tonic::Request::new(reserve),
                        path(wire::RESERVE),
                        WireCodec::<ReserveRequest, ReserveReply>::default(),
                    )
                    .await;
                if !matches!(&r, Ok(x) if x.get_ref().admitted) {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let settle = SettleRequest {
                    request_id: id,
                    team: team.clone(),
                    scopes: scopes(&team),
                    actual: Actual {
                        tokens_in: 40,
                        tokens_out: 20,
                        micro_usd: 5,
                        partial: false,
                    },
                    windows: Windows::default(),
                    ttl_seconds: 60,
                    release: false,
                };
                if g.ready().await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let s = g
                    .unary(
                        tonic::Request::new(settle),
                        path(wire::SETTLE),
                        WireCodec::<SettleRequest, SettleReply>::default(),
                    )
                    .await;
                match s {
                    Ok(x) if x.get_ref().outcome == "settled" => {
                        done.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let ok = done.load(Ordering::Relaxed);
    println!(
        "reserve+settle pairs: {ok} in {seconds} s = {:.0}/s, failed {}",
        ok as f64 / seconds as f64,
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}
