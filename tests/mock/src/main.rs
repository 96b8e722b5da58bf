//! sluice-mock: a deterministic stand-in for the OpenAI, Anthropic and Gemini APIs.
//!
//! It checks each request against the provider's rules (auth header included) and answers in
//! that provider's own wire format, JSON or SSE. By default it answers `echo: <last user text>`;
//! when the request requires a tool (or names one) it calls it with arguments that fill the
//! schema's required fields. Faults are chosen per request with headers:
//!
//! | header | effect |
//! |---|---|
//! | `x-mock-status: 429` (or 500, 503, 529...) | that provider's error, `retry-after` from `x-mock-retry-after` (default 1) |
//! | `x-mock-delay-ms: N` | wait before answering |
//! | `x-mock-split: SEED` | write the SSE body in pseudo-random byte pieces, flushed one by one |
//! | `x-mock-fault: reset` | reset the connection instead of answering |
//! | `x-mock-fault: cut` | stream half the events, then reset the connection |
//! | `x-mock-fault: truncate` | stream half the events, then end the HTTP body cleanly |
//! | `x-mock-fault: garbage` | answer 200 with an HTML body |
//! | `x-mock-fault: bad-event` | a stream with a broken event in the middle |
//! | `x-mock-fault: stream-error` | the provider's own error event in the middle of the stream |
//! | `x-mock-cached-tokens: N` | report N cached prompt tokens |
//! | `x-mock-reply: TEXT` | answer TEXT instead of the echo (what a model may write on its own) |
//! | `x-mock-split-at: N` | write the stream in two pieces, split at byte N |
//! | `x-mock-tag: T` | remember the request; `GET /_mock/requests/T` returns what arrived |
//! | `x-mock-target: anthropic,eu` | apply the faults above only on these providers or instances |
//!
//! `--name N` names the instance (`x-mock-instance` on every response); `--default H=V`
//! (repeatable) gives a header to every request that lacks it, e.g. a host that always fails.

// Test tooling, not the data path: readability over these two lints.
#![allow(clippy::nonminimal_bool, clippy::type_complexity)]

mod http;
mod providers;

use std::collections::HashMap;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Keys {
    pub openai: String,
    pub azure: String,
    pub anthropic: String,
    pub gemini: String,
    /// Vertex's OAuth2 access token (Bedrock's credentials are fixed: providers/aws.rs).
    pub vertex: String,
}

pub struct State {
    pub keys: Keys,
    pub name: String,
    pub defaults: Vec<(String, String)>,
    pub seen: Mutex<HashMap<String, serde_json::Value>>,
}

pub enum After {
    KeepAlive,
    Close,
    Reset,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port = arg(&args, "--port").unwrap_or_else(|| "0".into());
    // Loopback unless told otherwise (docker-compose shares the mock's network with Envoy).
    let host = arg(&args, "--host").unwrap_or_else(|| "127.0.0.1".into());
    let key = |name: &str, default: &str| arg(&args, name).unwrap_or_else(|| default.to_string());
    let state = Arc::new(State {
        keys: Keys {
            openai: key("--openai-key", "mock-openai-key"),
            azure: key("--azure-key", "mock-azure-key"),
            anthropic: key("--anthropic-key", "mock-anthropic-key"),
            gemini: key("--gemini-key", "mock-gemini-key"),
            vertex: key("--vertex-token", "mock-vertex-token"),
        },
        seen: Mutex::new(HashMap::new()),
        name: arg(&args, "--name").unwrap_or_else(|| "mock".into()),
        defaults: args
            .windows(2)
            .filter(|w| w[0] == "--default")
            .filter_map(|w| {
                w[1].split_once('=')
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            })
            .collect(),
    });
    let _ = http::INSTANCE.set(state.name.clone());
    if let Some(secs) = arg(&args, "--max-seconds").and_then(|s| s.parse::<u64>().ok()) {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            std::process::exit(0);
        });
    }
    let listener = match TcpListener::bind(format!("{host}:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sluice-mock: cannot listen on {host}:{port}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("sluice-mock listening on {addr}");
    for stream in listener.incoming().flatten() {
        let state = Arc::clone(&state);
        std::thread::spawn(move || serve(stream, &state));
    }
}

fn serve(stream: TcpStream, state: &State) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let mut req = match http::read_request(&mut reader) {
            Ok(Some(r)) => r,
            _ => return,
        };
        for (k, v) in &state.defaults {
            req.headers.entry(k.clone()).or_insert_with(|| v.clone());
        }
        match providers::handle(&req, &mut writer, state) {
            Ok(After::KeepAlive) => continue,
            Ok(After::Close) | Err(_) => return,
            Ok(After::Reset) => {
                http::arm_reset(&writer);
                return;
            }
        }
    }
}
