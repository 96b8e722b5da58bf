//! sluice-quota: the fleet quota service. Stateless (run any number of replicas); all state is
//! in Redis, every operation one Lua script. Limits and windows come with each request from the
//! Envoy configuration, so the service needs no configuration of keys.
//!
//! ```text
//! sluice-quota --listen 127.0.0.1:7070 --redis redis://127.0.0.1:6379 [--max-seconds N]
//! sluice-quota bench ADDR SECONDS CONCURRENCY     # reserve+settle pairs against a service
//! ```

mod bench;
mod grpc;
mod store;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn usage() -> ! {
    eprintln!("usage: sluice-quota --listen ADDR:PORT --redis redis://HOST:PORT [--max-seconds N] [--redis-timeout-ms N]");
    std::process::exit(2)
}

struct Args {
    listen: std::net::SocketAddr,
    redis: String,
    max_seconds: Option<u64>,
    redis_timeout_ms: u64,
}

fn args() -> Args {
    let mut a = Args {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 7070)),
        redis: "redis://127.0.0.1:6379".into(),
        max_seconds: None,
        redis_timeout_ms: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(v) = it.next() else { usage() };
        match flag.as_str() {
            "--listen" => a.listen = v.parse().unwrap_or_else(|_| usage()),
            "--redis" => a.redis = v,
            "--max-seconds" => a.max_seconds = Some(v.parse().unwrap_or_else(|_| usage())),
            "--redis-timeout-ms" => a.redis_timeout_ms = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    a
}

// One thread: on loopback it answered faster (fewer cross-thread wake-ups) and gave more
// reserve+settle pairs per core than a two-thread runtime; run more replicas for more cores.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("bench") {
        let (Some(target), Some(secs), Some(conc)) = (
            argv.get(2),
            argv.get(3).and_then(|s| s.parse().ok()),
            argv.get(4).and_then(|s| s.parse().ok()),
        ) else {
            usage()
        };
        if let Err(e) = bench::run(target, secs, conc).await {
            eprintln!("sluice-quota bench: {e}");
            std::process::exit(1);
        }
        return;
    }
    let a = args();
    let client = match redis::Client::open(a.redis.as_str()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice-quota: bad --redis URL: {e}");
            std::process::exit(2)
        }
    };
    // The connection manager reconnects by itself after Redis restarts or fails over; until it
    // can, calls fail fast with UNAVAILABLE and the filters apply their failure mode.
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_millis(a.redis_timeout_ms))
        .set_response_timeout(Duration::from_millis(a.redis_timeout_ms))
        .set_number_of_retries(1)
        .set_max_delay(200);
    let redis = loop {
        match redis::aio::ConnectionManager::new_with_config(client.clone(), cfg.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                eprintln!("sluice-quota: waiting for redis at {}: {e}", a.redis);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let state = Arc::new(grpc::State {
        scripts: store::Scripts::default(),
        redis,
        stats: grpc::Stats::default(),
    });
    let stats = Arc::clone(&state);
    let stop = async move {
        let deadline = async {
            match a.max_seconds {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = deadline => {}
        }
        let s = &stats.stats;
        eprintln!(
            "sluice-quota: stopping; reserves={} refused={} settles={} duplicates={} reads={} redis_errors={}",
            s.reserves.load(Ordering::Relaxed),
            s.refused.load(Ordering::Relaxed),
            s.settles.load(Ordering::Relaxed),
            s.duplicates.load(Ordering::Relaxed),
            s.reads.load(Ordering::Relaxed),
            s.redis_errors.load(Ordering::Relaxed),
        );
    };
    eprintln!(
        "sluice-quota: listening on {} (redis {})",
        a.listen, a.redis
    );
    let served = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(grpc::Quota(state))
        .serve_with_shutdown(a.listen, stop)
        .await;
    if let Err(e) = served {
        eprintln!("sluice-quota: {e}");
        std::process::exit(1);
    }
}
