//! The three wire formats: validation, answers, and the faults applied to them.

use crate::http::{self, Chunked, Request};
use crate::{After, State};
use serde_json::{json, Map, Value};
use std::io;
use std::net::TcpStream;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Provider {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
}

const CREATED: u64 = 1_700_000_000;
const SIGNATURE: &str = "bW9jay1zaWduYXR1cmU=";

/// What the mock decided to answer, before it is written in a provider's format.
struct Reply {
    model: String,
    text: String,
    tool: Option<(String, Value)>,
    thinking: bool,
    n: u32,
    stream: bool,
    include_usage: bool,
    input_tokens: u64,
    cached_tokens: u64,
    /// "stop", "length" or "stop_sequence:<s>"
    finish: String,
}

impl Reply {
    fn output_tokens(&self) -> u64 {
        let tool = self
            .tool
            .as_ref()
            .map(|(_, a)| words(&a.to_string()))
            .unwrap_or(0);
        words(&self.text) + tool + if self.thinking { 2 } else { 0 }
    }
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn count_words(v: &Value) -> u64 {
    match v {
        Value::String(s) if s.len() < 200 || !s.contains("base64") => words(s),
        Value::Array(a) => a.iter().map(count_words).sum(),
        Value::Object(o) => o
            .iter()
            .filter(|(k, _)| k.as_str() != "data")
            .map(|(_, v)| count_words(v))
            .sum(),
        _ => 0,
    }
}

pub fn handle(req: &Request, w: &mut TcpStream, state: &State) -> io::Result<After> {
    if req.method == "GET" && req.path == "/health" {
        http::write_full(w, 200, &[("content-type", "text/plain".into())], b"ok")?;
        return Ok(After::KeepAlive);
    }
    if req.method == "GET" {
        if let Some(tag) = req.path.strip_prefix("/_mock/requests/") {
            let seen = state.seen.lock().ok().and_then(|m| m.get(tag).cloned());
            return match seen {
                Some(v) => {
                    http::write_full(
                        w,
                        200,
                        &[("content-type", "application/json".into())],
                        v.to_string().as_bytes(),
                    )?;
                    Ok(After::KeepAlive)
                }
                None => {
                    http::write_full(w, 404, &[], b"no such tag")?;
                    Ok(After::KeepAlive)
                }
            };
        }
    }
    let provider = if req.path.starts_with("/openai/deployments/")
        && req.path.ends_with("/chat/completions")
    {
        Provider::Azure
    } else if req.path.ends_with("/chat/completions") {
        Provider::OpenAi
    } else if req.path.ends_with("/messages") {
        Provider::Anthropic
    } else if req.path.contains("/models/") && req.path.contains(':') {
        Provider::Gemini
    } else {
        http::write_full(
            w,
            404,
            &[("content-type", "text/plain".into())],
            b"unknown path",
        )?;
        return Ok(After::KeepAlive);
    };
    let parsed: Option<Value> = serde_json::from_slice(&req.body).ok();
    if let Some(tag) = req.header("x-mock-tag") {
        let record = json!({
            "method": req.method, "path": req.path, "query": req.query,
            "headers": req.headers,
            "body": parsed.clone().unwrap_or_else(|| Value::String(String::from_utf8_lossy(&req.body).into())),
        });
        if let Ok(mut m) = state.seen.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(tag.to_string(), record);
        }
    }
    let name = match provider {
        Provider::OpenAi => "openai",
        Provider::Azure => "azure",
        Provider::Anthropic => "anthropic",
        Provider::Gemini => "gemini",
    };
    // Faults apply to every provider and instance, or only to those `x-mock-target` names.
    let targeted = req.header("x-mock-target").is_none_or(|t| {
        t.split(',')
            .map(str::trim)
            .any(|t| t == name || t == state.name)
    });
    let fault_header = |h: &str| if targeted { req.header(h) } else { None };
    if let Some(ms) = fault_header("x-mock-delay-ms").and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms.min(600_000)));
    }
    if let Err((status, msg)) = check_auth(provider, req, state) {
        return error(w, provider, status, &msg, None);
    }
    if let Some(h) = req.headers.keys().find(|k| k.starts_with("x-sluice-")) {
        return error(
            w,
            provider,
            400,
            &format!("internal header {h} reached the provider"),
            None,
        );
    }
    let Some(Value::Object(body)) = parsed else {
        return error(w, provider, 400, "request body is not a JSON object", None);
    };
    let checked = match provider {
        Provider::OpenAi | Provider::Azure => validate_openai(&body),
        Provider::Anthropic => validate_anthropic(&body),
        Provider::Gemini => validate_gemini(&body, req),
    };
    if let Err(msg) = checked {
        return error(w, provider, 400, &msg, None);
    }
    let fault = fault_header("x-mock-fault").unwrap_or_default();
    if fault == "leak-key" {
        // A provider whose error quotes the credential it received (some do, in 401s above
        // all): the gateway must not pass it on.
        let status = fault_header("x-mock-status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(401);
        let cred = ["authorization", "api-key", "x-api-key", "x-goog-api-key"]
            .iter()
            .find_map(|h| req.header(h))
            .unwrap_or_default()
            .to_string();
        let msg = format!("Incorrect API key provided: {cred}. Your key={cred} was refused");
        return error(w, provider, status, &msg, None);
    }
    if let Some(status) = fault_header("x-mock-status").and_then(|s| s.parse::<u16>().ok()) {
        let retry = req.header("x-mock-retry-after").unwrap_or("1").to_string();
        return error(w, provider, status, "mock fault injected", Some(retry));
    }
    match fault {
        "reset" => return Ok(After::Reset),
        "error-200" => {
            // Some OpenAI-compatible servers answer errors with HTTP 200.
            let b = json!({"object": "error", "error": {"message": "CUDA out of memory", "type": "server_error", "code": 500}});
            http::write_full(
                w,
                200,
                &[("content-type", "application/json".into())],
                b.to_string().as_bytes(),
            )?;
            return Ok(After::KeepAlive);
        }
        "garbage" => {
            http::write_full(
                w,
                200,
                &[("content-type", "text/html".into())],
                b"<html><body>502 oops</body></html>",
            )?;
            return Ok(After::KeepAlive);
        }
        _ => {}
    }
    let reply = decide(provider, &body, req);
    if !reply.stream {
        let v = match provider {
            Provider::OpenAi | Provider::Azure => openai_json(&reply),
            Provider::Anthropic => anthropic_json(&reply),
            Provider::Gemini => gemini_json(&reply),
        };
        let mut body = v.to_string().into_bytes();
        if let Some(seed) = mutation_seed(fault, req) {
            body = mutate(&body, seed);
        }
        http::write_full(
            w,
            200,
            &[("content-type", "application/json".into())],
            &body,
        )?;
        return Ok(After::KeepAlive);
    }
    let mut events = match provider {
        Provider::OpenAi | Provider::Azure => openai_sse(&reply),
        Provider::Anthropic => anthropic_sse(&reply),
        Provider::Gemini => gemini_sse(&reply),
    };
    let half = events.len() / 2;
    let mut after = After::KeepAlive;
    match fault {
        "cut" => {
            events.truncate(half.max(1));
            after = After::Reset;
        }
        "truncate" => events.truncate(half.max(1)),
        "bad-event" => events.insert(half, "data: {\"broken\n\n".into()),
        "stream-error" => {
            events.truncate(half.max(1));
            events.push(match provider {
                Provider::Anthropic => "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n".into(),
                Provider::Gemini => "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n".into(),
                _ => "data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n".into(),
            });
        }
        _ => {}
    }
    let mut bytes: Vec<u8> = events.concat().into_bytes();
    if let Some(seed) = mutation_seed(fault, req) {
        bytes = mutate(&bytes, seed);
    }
    let mut out = Chunked::start(
        w,
        200,
        &[
            ("content-type", "text/event-stream".into()),
            ("cache-control", "no-cache".into()),
        ],
    )?;
    match req
        .header("x-mock-split")
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(seed) => {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = ((x % 23) as usize + 1).min(rest.len());
                let (head, tail) = rest.split_at(n);
                out.send(head)?;
                std::thread::sleep(Duration::from_micros(300));
                rest = tail;
            }
        }
        None => {
            for e in &events_bytes_split(&bytes) {
                out.send(e)?;
            }
        }
    }
    if matches!(after, After::Reset) {
        return Ok(After::Reset);
    }
    out.end()?;
    Ok(after)
}

/// `x-mock-fault: mutate` with `x-mock-seed: N`: the answer's bytes are corrupted the same way
/// for the same seed (bits flipped, ranges deleted or repeated, JSON and SSE tokens inserted,
/// the end cut), for the gateway's fuzz test.
fn mutation_seed(fault: &str, req: &Request) -> Option<u64> {
    (fault == "mutate").then(|| {
        req.header("x-mock-seed")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1)
    })
}

fn mutate(input: &[u8], seed: u64) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b"\\u0000",
        b"\n\n",
        b"data: ",
        b"[DONE]",
        b"null",
        b"-1",
        b"1e999",
        b"\xff",
        b"\xf0\x9f",
        b"\"choices\":[]",
        b"\"usage\":{}",
        b"event: error\n",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n.max(1) as u64) as usize
    };
    let mut v = input.to_vec();
    for _ in 0..1 + next(4) {
        let at = next(v.len() + 1);
        match next(5) {
            0 if !v.is_empty() => {
                let i = next(v.len());
                v[i] ^= 1 << next(8);
            }
            1 => {
                let end = (at + 1 + next(24)).min(v.len());
                v.drain(at.min(end)..end);
            }
            2 => {
                let t = TOKENS[next(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            3 if !v.is_empty() => {
                let start = next(v.len());
                let end = (start + 1 + next(48)).min(v.len());
                let piece = v[start..end].to_vec();
                v.splice(at..at, piece);
            }
            _ => v.truncate(at.max(v.len() / 2)),
        }
    }
    v
}

/// Without a split seed the stream is written as one chunk per event.
fn events_bytes_split(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\n' && bytes[i + 1] == b'\n' {
            out.push(bytes[start..i + 2].to_vec());
            start = i + 2;
            i += 2;
            continue;
        }
        i += 1;
    }
    if start < bytes.len() {
        out.push(bytes[start..].to_vec());
    }
    out
}

fn check_auth(p: Provider, req: &Request, state: &State) -> Result<(), (u16, String)> {
    let k = &state.keys;
    let (header, want) = match p {
        Provider::OpenAi => ("authorization", format!("Bearer {}", k.openai)),
        Provider::Azure => ("api-key", k.azure.clone()),
        Provider::Anthropic => ("x-api-key", k.anthropic.clone()),
        Provider::Gemini => ("x-goog-api-key", k.gemini.clone()),
    };
    // Another provider's credential must never arrive here either.
    for other in ["authorization", "api-key", "x-api-key", "x-goog-api-key"] {
        if other != header && req.header(other).is_some() {
            return Err((400, format!("unexpected credential header '{other}'")));
        }
    }
    match req.header(header) {
        Some(v) if v == want => Ok(()),
        Some(_) => Err((401, "invalid api key".into())),
        None => Err((401, format!("missing {header} header"))),
    }
}

fn error(
    w: &mut TcpStream,
    p: Provider,
    status: u16,
    msg: &str,
    retry: Option<String>,
) -> io::Result<After> {
    let body = match p {
        Provider::OpenAi | Provider::Azure => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                429 => ("requests", json!("rate_limit_exceeded")),
                s if s >= 500 => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            json!({"error": {"message": msg, "type": kind, "param": null, "code": code}})
        }
        Provider::Anthropic => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                529 | 503 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": msg}})
        }
        Provider::Gemini => {
            let st = match status {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                _ => "INTERNAL",
            };
            let mut e = json!({"code": status, "message": msg, "status": st});
            if let (429, Some(r)) = (status, &retry) {
                e["details"] = json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{r}s")}]);
            }
            json!({"error": e})
        }
    };
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let Some(r) = retry {
        if status == 429 || status == 503 || status == 529 {
            // Gemini puts the delay in the body only.
            if p != Provider::Gemini {
                headers.push(("retry-after", r));
            }
        }
    }
    http::write_full(w, status, &headers, body.to_string().as_bytes())?;
    Ok(After::KeepAlive)
}

// ---------------------------------------------------------------- validation

fn is_str(v: Option<&Value>) -> bool {
    v.is_some_and(Value::is_string)
}

fn only_keys(o: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("{what}.{k}: Extra inputs are not permitted")),
        None => Ok(()),
    }
}

fn validate_openai(b: &Map<String, Value>) -> Result<(), String> {
    if !b
        .get("model")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err("you must provide a model parameter".into());
    }
    let msgs = b
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("'messages' is a required property")?;
    if msgs.is_empty() {
        return Err("'messages' must contain at least one message".into());
    }
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if !["system", "developer", "user", "assistant", "tool"].contains(&role) {
            return Err(format!("messages[{i}].role: invalid role '{role}'"));
        }
        if role == "tool" && !is_str(m.get("tool_call_id")) {
            return Err(format!("messages[{i}]: tool messages need tool_call_id"));
        }
    }
    if b.contains_key("stream_options") && b.get("stream").and_then(Value::as_bool) != Some(true) {
        return Err(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
        );
    }
    Ok(())
}

fn validate_anthropic(b: &Map<String, Value>) -> Result<(), String> {
    only_keys(
        b,
        &[
            "model",
            "messages",
            "max_tokens",
            "system",
            "metadata",
            "stop_sequences",
            "stream",
            "temperature",
            "top_p",
            "top_k",
            "tools",
            "tool_choice",
            "thinking",
            "service_tier",
        ],
        "body",
    )?;
    if !is_str(b.get("model")) {
        return Err("model: Field required".into());
    }
    let max = b
        .get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or("max_tokens: Field required")?;
    if max == 0 {
        return Err("max_tokens: must be at least 1".into());
    }
    if let Some(t) = b.get("temperature") {
        if !t.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)) {
            return Err("temperature: Input should be less than or equal to 1".into());
        }
    }
    match b.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (i, s) in blocks.iter().enumerate() {
                if s.get("type").and_then(Value::as_str) != Some("text")
                    || !s
                        .get("text")
                        .and_then(Value::as_str)
                        .is_some_and(|t| !t.is_empty())
                {
                    return Err(format!(
                        "system.{i}: system blocks must be non-empty text blocks"
                    ));
                }
            }
        }
        Some(_) => return Err("system: Input should be a valid string or list".into()),
    }
    if let Some(m) = b.get("metadata") {
        only_keys(
            m.as_object().ok_or("metadata: must be an object")?,
            &["user_id"],
            "metadata",
        )?;
    }
    if let Some(s) = b.get("stop_sequences") {
        if !s.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            return Err("stop_sequences: Input should be a list of strings".into());
        }
    }
    let mut tool_names = Vec::new();
    if let Some(tools) = b.get("tools") {
        for (i, t) in tools
            .as_array()
            .ok_or("tools: must be a list")?
            .iter()
            .enumerate()
        {
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .ok_or(format!("tools.{i}.name: Field required"))?;
            if t.pointer("/input_schema/type").and_then(Value::as_str) != Some("object") {
                return Err(format!(
                    "tools.{i}.input_schema.type: Input should be 'object'"
                ));
            }
            only_keys(
                t.as_object().ok_or("tool must be an object")?,
                &[
                    "name",
                    "description",
                    "input_schema",
                    "cache_control",
                    "type",
                ],
                &format!("tools.{i}"),
            )?;
            tool_names.push(name.to_string());
        }
    }
    if let Some(tc) = b.get("tool_choice") {
        let kind = tc.get("type").and_then(Value::as_str).unwrap_or_default();
        if !["auto", "any", "tool", "none"].contains(&kind) {
            return Err(format!("tool_choice.type: invalid '{kind}'"));
        }
        if kind == "tool"
            && !tc
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| tool_names.iter().any(|t| t == n))
        {
            return Err("tool_choice.name: must name one of the tools".into());
        }
        if tool_names.is_empty() {
            return Err("tool_choice may only be specified while providing tools".into());
        }
    }
    if let Some(th) = b.get("thinking") {
        let budget = th.get("budget_tokens").and_then(Value::as_u64).unwrap_or(0);
        if th.get("type").and_then(Value::as_str) == Some("enabled")
            && (budget < 1024 || budget >= max)
        {
            return Err(
                "thinking.budget_tokens: must be at least 1024 and less than max_tokens".into(),
            );
        }
        if b.contains_key("temperature") {
            return Err("temperature may only be set to 1 when thinking is enabled".into());
        }
    }
    let msgs = b
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    if msgs.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let mut prev_tool_uses: Vec<String> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let o = m
            .as_object()
            .ok_or(format!("messages.{i}: must be an object"))?;
        only_keys(o, &["role", "content"], &format!("messages.{i}"))?;
        let role = o.get("role").and_then(Value::as_str).unwrap_or_default();
        let want = if i % 2 == 0 { "user" } else { "assistant" };
        if role != want {
            return Err(format!("messages.{i}.role: roles must alternate between \"user\" and \"assistant\", starting with \"user\" (got '{role}')"));
        }
        let blocks: Vec<Value> = match o.get("content") {
            Some(Value::String(s)) if !s.is_empty() => vec![json!({"type":"text","text":s})],
            Some(Value::Array(a)) if !a.is_empty() => a.clone(),
            _ => {
                return Err(format!(
                    "messages.{i}: all messages must have non-empty content"
                ))
            }
        };
        let mut uses = Vec::new();
        let mut results = Vec::new();
        let mut seen_other = false;
        for (j, blk) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match blk.get("type").and_then(Value::as_str).unwrap_or_default() {
                "text" => {
                    if !blk
                        .get("text")
                        .and_then(Value::as_str)
                        .is_some_and(|t| !t.is_empty())
                    {
                        return Err(format!("{at}: text content blocks must be non-empty"));
                    }
                    seen_other = true;
                }
                "image" => {
                    let src = blk
                        .get("source")
                        .ok_or(format!("{at}.source: Field required"))?;
                    match src.get("type").and_then(Value::as_str) {
                        Some("base64") => {
                            let mt = src
                                .get("media_type")
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            if !["image/jpeg", "image/png", "image/gif", "image/webp"].contains(&mt)
                                || !is_str(src.get("data"))
                            {
                                return Err(format!("{at}.source: invalid base64 image source"));
                            }
                        }
                        Some("url") if is_str(src.get("url")) => {}
                        _ => return Err(format!("{at}.source: invalid image source")),
                    }
                    seen_other = true;
                }
                "tool_use" if role == "assistant" => {
                    if !is_str(blk.get("id"))
                        || !is_str(blk.get("name"))
                        || !blk.get("input").is_some_and(Value::is_object)
                    {
                        return Err(format!("{at}: tool_use needs id, name and an object input"));
                    }
                    uses.push(blk["id"].as_str().unwrap_or_default().to_string());
                }
                "tool_result" if role == "user" => {
                    if seen_other {
                        return Err(format!(
                            "{at}: tool_result blocks must come first in the user message"
                        ));
                    }
                    let id = blk
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !prev_tool_uses.iter().any(|u| u == id) {
                        return Err(format!("{at}: unexpected tool_use_id '{id}' in tool_result blocks: each tool_result must have a corresponding tool_use block in the previous message"));
                    }
                    results.push(id.to_string());
                }
                "thinking" | "redacted_thinking" if role == "assistant" => {}
                other => {
                    return Err(format!(
                        "{at}.type: '{other}' is not allowed in a {role} message"
                    ))
                }
            }
        }
        if role == "user" {
            if let Some(missing) = prev_tool_uses.iter().find(|u| !results.contains(u)) {
                return Err(format!("messages.{i}: tool_use ids were found without tool_result blocks immediately after: {missing}"));
            }
        }
        prev_tool_uses = uses;
    }
    Ok(())
}

fn validate_gemini(b: &Map<String, Value>, req: &Request) -> Result<(), String> {
    let stream = req.path.ends_with(":streamGenerateContent");
    if stream && req.query != "alt=sse" {
        return Err("streamGenerateContent needs alt=sse for server-sent events".into());
    }
    if !stream && !req.path.ends_with(":generateContent") {
        return Err(format!("unknown method in {}", req.path));
    }
    only_keys(
        b,
        &[
            "contents",
            "systemInstruction",
            "generationConfig",
            "tools",
            "toolConfig",
            "safetySettings",
            "cachedContent",
        ],
        "GenerateContentRequest",
    )
    .map_err(|e| format!("Invalid JSON payload received. Unknown name in {e}"))?;
    if let Some(gc) = b.get("generationConfig") {
        only_keys(
            gc.as_object().ok_or("generationConfig must be an object")?,
            &[
                "maxOutputTokens",
                "temperature",
                "topP",
                "topK",
                "stopSequences",
                "candidateCount",
                "seed",
                "presencePenalty",
                "frequencyPenalty",
                "responseMimeType",
                "responseSchema",
                "responseJsonSchema",
                "thinkingConfig",
                "responseLogprobs",
                "logprobs",
            ],
            "generationConfig",
        )?;
    }
    if let Some(si) = b.get("systemInstruction") {
        if !si
            .get("parts")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty() && p.iter().all(|x| is_str(x.get("text"))))
        {
            return Err("systemInstruction.parts must be text parts".into());
        }
    }
    let contents = b
        .get("contents")
        .and_then(Value::as_array)
        .ok_or("contents is not specified")?;
    if contents.is_empty() {
        return Err("contents is not specified".into());
    }
    let mut prev_calls: Vec<String> = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let role = c.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "model" {
            return Err(format!(
                "contents[{i}].role: Please use a valid role: user, model."
            ));
        }
        let parts = c
            .get("parts")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or(format!("contents[{i}].parts: must not be empty"))?;
        let mut calls = Vec::new();
        for (j, p) in parts.iter().enumerate() {
            let o = p
                .as_object()
                .ok_or(format!("contents[{i}].parts[{j}] must be an object"))?;
            let data: Vec<&String> = o
                .keys()
                .filter(|k| !["thought", "thoughtSignature"].contains(&k.as_str()))
                .collect();
            if data.len() != 1 {
                return Err(format!(
                    "contents[{i}].parts[{j}]: a part must have exactly one data field"
                ));
            }
            match data[0].as_str() {
                "text" | "inlineData" | "fileData" => {}
                "functionCall" if role == "model" => {
                    // Gemini 3: the first function call of a model turn carries a signature
                    // Gemini issued (or the documented skip value); parallel calls after it
                    // may have none; a signature that is there must be valid.
                    let sig = o.get("thoughtSignature").and_then(Value::as_str);
                    let valid = |s: &str| s == SIGNATURE || s == "skip_thought_signature_validator";
                    if (calls.is_empty() && sig.is_none()) || sig.is_some_and(|s| !valid(s)) {
                        return Err(format!("contents[{i}].parts[{j}]: Function call is missing a thought_signature"));
                    }
                    calls.push(
                        p["functionCall"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
                "functionResponse" if role == "user" => {
                    let name = p["functionResponse"]["name"].as_str().unwrap_or_default();
                    if !prev_calls.iter().any(|c| c == name) {
                        return Err(format!("contents[{i}].parts[{j}]: functionResponse '{name}' does not answer a functionCall of the previous turn"));
                    }
                    if !p["functionResponse"]["response"].is_object() {
                        return Err(format!(
                            "contents[{i}].parts[{j}].functionResponse.response must be an object"
                        ));
                    }
                }
                other => {
                    return Err(format!(
                        "contents[{i}].parts[{j}]: '{other}' is not allowed for role {role}"
                    ))
                }
            }
        }
        prev_calls = calls;
    }
    Ok(())
}

// ---------------------------------------------------------------- the answer

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(|p| {
                p.get("text")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| {
                        // tool results and function responses echo their content
                        p.get("content").map(text_of).or_else(|| {
                            p.get("functionResponse").map(|f| f["response"].to_string())
                        })
                    })
            })
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn fill(schema: &Value) -> Value {
    fill_echo(schema, "")
}

/// Fills a schema's required fields; a string property named `echo` gets `echo` (the last user
/// text), so tool-call arguments can carry the user's words back.
fn fill_echo(schema: &Value, echo: &str) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    match schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
    {
        "string" => json!("mock"),
        "integer" => json!(1),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "array" => json!([]),
        "null" => Value::Null,
        _ => {
            let mut o = Map::new();
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = r.as_str() {
                    let string = json!({"type": "string"});
                    let sub = schema
                        .pointer(&format!("/properties/{name}"))
                        .unwrap_or(&string);
                    let v = if name == "echo"
                        && sub.get("type").and_then(Value::as_str) == Some("string")
                    {
                        json!(echo)
                    } else {
                        fill_echo(sub, echo)
                    };
                    o.insert(name.into(), v);
                }
            }
            Value::Object(o)
        }
    }
}

fn decide(p: Provider, map: &Map<String, Value>, req: &Request) -> Reply {
    let whole = Value::Object(map.clone());
    let b = &whole;
    let empty = vec![];
    let (last_text, tool, thinking, n, stream, include_usage, stops, max): (
        String,
        Option<(String, Value)>,
        bool,
        u32,
        bool,
        bool,
        Vec<String>,
        Option<u64>,
    );
    let strings = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    match p {
        Provider::OpenAi | Provider::Azure => {
            let msgs = b
                .get("messages")
                .and_then(Value::as_array)
                .unwrap_or(&empty);
            last_text = msgs
                .iter()
                .rev()
                .find(|m| m["role"] == "user" || m["role"] == "tool")
                .map(|m| text_of(&m["content"]))
                .unwrap_or_default();
            let tools = b.get("tools").and_then(Value::as_array).unwrap_or(&empty);
            let pick = match b.get("tool_choice") {
                Some(Value::String(s)) if s == "required" => tools
                    .first()
                    .and_then(|t| t.pointer("/function/name"))
                    .and_then(Value::as_str),
                Some(Value::Object(o)) => o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str),
                _ => None,
            };
            tool = pick.map(|name| {
                let schema = tools
                    .iter()
                    .find(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name))
                    .and_then(|t| t.pointer("/function/parameters"))
                    .cloned()
                    .unwrap_or(json!({}));
                (name.to_string(), fill_echo(&schema, &last_text))
            });
            thinking = false;
            n = b.get("n").and_then(Value::as_u64).unwrap_or(1) as u32;
            stream = b.get("stream").and_then(Value::as_bool) == Some(true);
            include_usage = b
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true);
            stops = strings(b.get("stop"));
            max = b
                .get("max_completion_tokens")
                .or(b.get("max_tokens"))
                .and_then(Value::as_u64);
        }
        Provider::Anthropic => {
            let msgs = b
                .get("messages")
                .and_then(Value::as_array)
                .unwrap_or(&empty);
            last_text = msgs
                .iter()
                .rev()
                .find(|m| m["role"] == "user")
                .map(|m| text_of(&m["content"]))
                .unwrap_or_default();
            let tools = b.get("tools").and_then(Value::as_array).unwrap_or(&empty);
            let pick = match b
                .get("tool_choice")
                .and_then(|t| t.get("type"))
                .and_then(Value::as_str)
            {
                Some("any") => tools
                    .first()
                    .and_then(|t| t.get("name"))
                    .and_then(Value::as_str),
                Some("tool") => b.pointer("/tool_choice/name").and_then(Value::as_str),
                _ => None,
            };
            tool = pick.map(|name| {
                let schema = tools
                    .iter()
                    .find(|t| t["name"] == name)
                    .map(|t| t["input_schema"].clone())
                    .unwrap_or(json!({}));
                (name.to_string(), fill_echo(&schema, &last_text))
            });
            thinking = b.pointer("/thinking/type").and_then(Value::as_str) == Some("enabled");
            n = 1;
            stream = b.get("stream").and_then(Value::as_bool) == Some(true);
            include_usage = true;
            stops = strings(b.get("stop_sequences"));
            max = b.get("max_tokens").and_then(Value::as_u64);
        }
        Provider::Gemini => {
            let contents = b
                .get("contents")
                .and_then(Value::as_array)
                .unwrap_or(&empty);
            last_text = contents
                .iter()
                .rev()
                .find(|c| c["role"] == "user")
                .map(|c| text_of(&c["parts"]))
                .unwrap_or_default();
            let decls: Vec<Value> = b
                .get("tools")
                .and_then(Value::as_array)
                .unwrap_or(&empty)
                .iter()
                .flat_map(|t| {
                    t.get("functionDeclarations")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            let cfg = b.pointer("/toolConfig/functionCallingConfig");
            let pick = match cfg.and_then(|c| c.get("mode")).and_then(Value::as_str) {
                Some("ANY") => cfg
                    .and_then(|c| c.pointer("/allowedFunctionNames/0"))
                    .and_then(Value::as_str)
                    .or_else(|| {
                        decls
                            .first()
                            .and_then(|d| d.get("name"))
                            .and_then(Value::as_str)
                    }),
                _ => None,
            };
            tool = pick.map(|name| {
                let d = decls.iter().find(|d| d["name"] == name);
                let schema = d
                    .and_then(|d| d.get("parametersJsonSchema").or(d.get("parameters")))
                    .cloned()
                    .unwrap_or(json!({}));
                (name.to_string(), fill_echo(&schema, &last_text))
            });
            thinking = b
                .pointer("/generationConfig/thinkingConfig/includeThoughts")
                .and_then(Value::as_bool)
                == Some(true);
            n = b
                .pointer("/generationConfig/candidateCount")
                .and_then(Value::as_u64)
                .unwrap_or(1) as u32;
            stream = req.path.ends_with(":streamGenerateContent");
            include_usage = true;
            stops = strings(b.pointer("/generationConfig/stopSequences"));
            max = b
                .pointer("/generationConfig/maxOutputTokens")
                .and_then(Value::as_u64);
        }
    }
    // JSON modes: answer an object that fits the schema, as a model constrained to it would.
    let json_mode: Option<Value> = match p {
        Provider::OpenAi | Provider::Azure => {
            match b.pointer("/response_format/type").and_then(Value::as_str) {
                Some("json_schema") => Some(
                    b.pointer("/response_format/json_schema/schema")
                        .cloned()
                        .unwrap_or(json!({})),
                ),
                Some("json_object") => Some(Value::Null),
                _ => None,
            }
        }
        Provider::Gemini => (b
            .pointer("/generationConfig/responseMimeType")
            .and_then(Value::as_str)
            == Some("application/json"))
        .then(|| {
            b.pointer("/generationConfig/responseJsonSchema")
                .or(b.pointer("/generationConfig/responseSchema"))
                .cloned()
                .unwrap_or(Value::Null)
        }),
        Provider::Anthropic => None,
    };
    let mut text = match json_mode {
        Some(Value::Null) => json!({"echo": last_text}).to_string(),
        Some(schema) => fill(&schema).to_string(),
        // A reply chosen by the test: what a model may write on its own.
        None => match req.header("x-mock-reply") {
            Some(reply) => reply.to_string(),
            None => format!("echo: {last_text}"),
        },
    };
    let mut finish = if req.header("x-mock-fault") == Some("odd-finish") {
        "eos".to_string() // what vLLM-like servers may write
    } else {
        "stop".to_string()
    };
    if let Some(s) = stops
        .iter()
        .filter(|s| !s.is_empty())
        .find(|s| text.contains(s.as_str()))
    {
        text.truncate(text.find(s.as_str()).unwrap_or(text.len()));
        finish = format!("stop_sequence:{s}");
    }
    if let Some(m) = max {
        let ws: Vec<&str> = text.split_inclusive(' ').collect();
        if ws.len() as u64 > m {
            text = ws[..m as usize].concat();
            finish = "length".into();
        }
    }
    let model = match p {
        Provider::Gemini => req
            .path
            .split("/models/")
            .nth(1)
            .and_then(|s| s.split(':').next())
            .unwrap_or("gemini")
            .to_string(),
        _ => b
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock")
            .to_string(),
    };
    Reply {
        model,
        text: if tool.is_some() { String::new() } else { text },
        tool,
        thinking,
        n: n.max(1),
        stream,
        include_usage,
        input_tokens: count_words(b),
        cached_tokens: req
            .header("x-mock-cached-tokens")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        finish,
    }
}

/// The reply text in stream pieces: one word (with its space) per piece.
fn pieces(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_string).collect()
}

fn openai_usage(r: &Reply) -> Value {
    let out = r.output_tokens() * u64::from(r.n);
    json!({"prompt_tokens": r.input_tokens, "completion_tokens": out, "total_tokens": r.input_tokens + out,
        "prompt_tokens_details": {"cached_tokens": r.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
}

fn openai_finish(r: &Reply) -> &'static str {
    if r.tool.is_some() {
        "tool_calls"
    } else if r.finish == "length" {
        "length"
    } else if r.finish == "eos" {
        "eos"
    } else {
        "stop"
    }
}

fn openai_json(r: &Reply) -> Value {
    let choices: Vec<Value> = (0..r.n)
        .map(|i| {
            let msg = match &r.tool {
                Some((name, args)) => json!({"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_mock_0","type":"function","function":{"name":name,"arguments":args.to_string()}}]}),
                None => json!({"role":"assistant","content":r.text,"refusal":null}),
            };
            json!({"index": i, "message": msg, "logprobs": null, "finish_reason": openai_finish(r)})
        })
        .collect();
    json!({"id":"chatcmpl-mock","object":"chat.completion","created":CREATED,"model":r.model,"system_fingerprint":"fp_mock","choices":choices,"usage":openai_usage(r)})
}

fn openai_sse(r: &Reply) -> Vec<String> {
    let mut out = Vec::new();
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut c = json!({"id":"chatcmpl-mock","object":"chat.completion.chunk","created":CREATED,"model":r.model,"system_fingerprint":"fp_mock","choices":choices});
        if r.include_usage {
            c["usage"] = usage.unwrap_or(Value::Null);
        }
        format!("data: {c}\n\n")
    };
    for i in 0..r.n {
        out.push(chunk(json!([{"index":i,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]), None));
        match &r.tool {
            Some((name, args)) => {
                let a = args.to_string();
                let (a1, a2) = a.split_at(a.len() / 2);
                out.push(chunk(json!([{"index":i,"delta":{"tool_calls":[{"index":0,"id":"call_mock_0","type":"function","function":{"name":name,"arguments":""}}]},"logprobs":null,"finish_reason":null}]), None));
                for part in [a1, a2] {
                    out.push(chunk(json!([{"index":i,"delta":{"tool_calls":[{"index":0,"function":{"arguments":part}}]},"logprobs":null,"finish_reason":null}]), None));
                }
            }
            None => {
                for p in pieces(&r.text) {
                    out.push(chunk(json!([{"index":i,"delta":{"content":p},"logprobs":null,"finish_reason":null}]), None));
                }
            }
        }
        out.push(chunk(
            json!([{"index":i,"delta":{},"logprobs":null,"finish_reason":openai_finish(r)}]),
            None,
        ));
    }
    if r.include_usage {
        out.push(chunk(json!([]), Some(openai_usage(r))));
    }
    out.push("data: [DONE]\n\n".into());
    out
}

fn anthropic_stop(r: &Reply) -> (String, Value) {
    if r.tool.is_some() {
        ("tool_use".into(), Value::Null)
    } else if r.finish == "length" {
        ("max_tokens".into(), Value::Null)
    } else if let Some(s) = r.finish.strip_prefix("stop_sequence:") {
        ("stop_sequence".into(), json!(s))
    } else {
        ("end_turn".into(), Value::Null)
    }
}

fn anthropic_json(r: &Reply) -> Value {
    let mut content = Vec::new();
    if r.thinking {
        content.push(json!({"type":"thinking","thinking":"mock reasoning","signature":SIGNATURE}));
    }
    match &r.tool {
        Some((name, input)) => {
            content.push(json!({"type":"tool_use","id":"toolu_mock_0","name":name,"input":input}))
        }
        None => content.push(json!({"type":"text","text":r.text})),
    }
    let (stop, seq) = anthropic_stop(r);
    json!({"id":"msg_mock","type":"message","role":"assistant","model":r.model,"content":content,"stop_reason":stop,"stop_sequence":seq,
        "usage":{"input_tokens":r.input_tokens,"cache_creation_input_tokens":0,"cache_read_input_tokens":r.cached_tokens,"output_tokens":r.output_tokens()}})
}

fn anthropic_sse(r: &Reply) -> Vec<String> {
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut out = vec![ev(
        "message_start",
        json!({"type":"message_start","message":{"id":"msg_mock","type":"message","role":"assistant","model":r.model,"content":[],"stop_reason":null,"stop_sequence":null,
        "usage":{"input_tokens":r.input_tokens,"cache_creation_input_tokens":0,"cache_read_input_tokens":r.cached_tokens,"output_tokens":1}}}),
    )];
    out.push(ev("ping", json!({"type":"ping"})));
    let mut idx = 0;
    if r.thinking {
        out.push(ev("content_block_start", json!({"type":"content_block_start","index":idx,"content_block":{"type":"thinking","thinking":""}})));
        for t in ["mock ", "reasoning"] {
            out.push(ev("content_block_delta", json!({"type":"content_block_delta","index":idx,"delta":{"type":"thinking_delta","thinking":t}})));
        }
        out.push(ev("content_block_delta", json!({"type":"content_block_delta","index":idx,"delta":{"type":"signature_delta","signature":SIGNATURE}})));
        out.push(ev(
            "content_block_stop",
            json!({"type":"content_block_stop","index":idx}),
        ));
        idx += 1;
    }
    match &r.tool {
        Some((name, input)) => {
            out.push(ev("content_block_start", json!({"type":"content_block_start","index":idx,"content_block":{"type":"tool_use","id":"toolu_mock_0","name":name,"input":{}}})));
            let a = input.to_string();
            let (a1, a2) = a.split_at(a.len() / 2);
            // A tool without input streams one empty delta, as Anthropic does.
            let parts = if input.as_object().is_some_and(|o| o.is_empty()) {
                vec![""]
            } else {
                vec!["", a1, a2]
            };
            for part in parts {
                out.push(ev("content_block_delta", json!({"type":"content_block_delta","index":idx,"delta":{"type":"input_json_delta","partial_json":part}})));
            }
        }
        None => {
            out.push(ev("content_block_start", json!({"type":"content_block_start","index":idx,"content_block":{"type":"text","text":""}})));
            for p in pieces(&r.text) {
                out.push(ev("content_block_delta", json!({"type":"content_block_delta","index":idx,"delta":{"type":"text_delta","text":p}})));
            }
        }
    }
    out.push(ev(
        "content_block_stop",
        json!({"type":"content_block_stop","index":idx}),
    ));
    let (stop, seq) = anthropic_stop(r);
    out.push(ev("message_delta", json!({"type":"message_delta","delta":{"stop_reason":stop,"stop_sequence":seq},"usage":{"output_tokens":r.output_tokens()}})));
    out.push(ev("message_stop", json!({"type":"message_stop"})));
    out
}

fn gemini_finish(r: &Reply) -> &'static str {
    if r.finish == "length" {
        "MAX_TOKENS"
    } else {
        "STOP"
    }
}

fn gemini_usage(r: &Reply) -> Value {
    let out = r.output_tokens() * u64::from(r.n);
    let mut u = json!({"promptTokenCount": r.input_tokens, "candidatesTokenCount": out, "totalTokenCount": r.input_tokens + out});
    if r.cached_tokens > 0 {
        u["cachedContentTokenCount"] = json!(r.cached_tokens);
    }
    u
}

fn gemini_parts(r: &Reply) -> Vec<Value> {
    let mut parts = Vec::new();
    if r.thinking {
        parts.push(json!({"text":"mock reasoning","thought":true}));
    }
    match &r.tool {
        Some((name, args)) => parts
            .push(json!({"functionCall":{"name":name,"args":args},"thoughtSignature":SIGNATURE})),
        None => parts.push(json!({"text": r.text})),
    }
    parts
}

fn gemini_json(r: &Reply) -> Value {
    let candidates: Vec<Value> = (0..r.n)
        .map(|i| json!({"content":{"parts":gemini_parts(r),"role":"model"},"finishReason":gemini_finish(r),"index":i}))
        .collect();
    json!({"candidates":candidates,"usageMetadata":gemini_usage(r),"modelVersion":r.model,"responseId":"mockresp"})
}

fn gemini_sse(r: &Reply) -> Vec<String> {
    let ev = |v: Value| format!("data: {v}\r\n\r\n");
    let mut out = Vec::new();
    let mut parts: Vec<Value> = Vec::new();
    if r.thinking {
        parts.push(json!({"text":"mock reasoning","thought":true}));
    }
    match &r.tool {
        Some((name, args)) => parts
            .push(json!({"functionCall":{"name":name,"args":args},"thoughtSignature":SIGNATURE})),
        None => parts.extend(pieces(&r.text).into_iter().map(|p| json!({"text": p}))),
    }
    let last = parts.len().saturating_sub(1);
    for (k, part) in parts.into_iter().enumerate() {
        let cands: Vec<Value> = (0..r.n)
            .map(|i| {
                let mut c = json!({"content":{"parts":[part.clone()],"role":"model"},"index":i});
                if k == last {
                    c["finishReason"] = json!(gemini_finish(r));
                }
                c
            })
            .collect();
        let mut v = json!({"candidates":cands,"modelVersion":r.model,"responseId":"mockresp"});
        v["usageMetadata"] = if k == last {
            gemini_usage(r)
        } else {
            json!({"promptTokenCount": r.input_tokens, "totalTokenCount": r.input_tokens})
        };
        out.push(ev(v));
    }
    out
}
