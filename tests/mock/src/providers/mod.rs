//! The three wire formats: what is common (decisions, faults, auth, errors) here, each
//! provider's validation and answers in its own file.

mod anthropic;
mod aws;
mod bedrock;
mod embeddings;
mod gemini;
mod openai;

use anthropic::*;
use bedrock::*;
use gemini::*;
use openai::*;

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
    /// Bedrock Converse / ConverseStream.
    Bedrock,
    /// Bedrock InvokeModel with Anthropic's body.
    BedrockInvoke,
    /// Vertex AI, publisher google (Gemini's body).
    Vertex,
    /// Vertex AI, publisher anthropic (rawPredict).
    VertexAnthropic,
}

impl Provider {
    /// The wire format of the body and the answer.
    fn format(self) -> Provider {
        match self {
            Provider::BedrockInvoke | Provider::VertexAnthropic => Provider::Anthropic,
            Provider::Vertex => Provider::Gemini,
            p => p,
        }
    }
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

/// A 200 with a JSON body; the connection stays open.
fn write_json(w: &mut TcpStream, v: &Value) -> io::Result<After> {
    http::write_full(
        w,
        200,
        &[("content-type", "application/json".into())],
        v.to_string().as_bytes(),
    )?;
    Ok(After::KeepAlive)
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
                Some(v) => write_json(w, &v),
                None => {
                    http::write_full(w, 404, &[], b"no such tag")?;
                    Ok(After::KeepAlive)
                }
            };
        }
    }
    let provider = if req.path.starts_with("/model/")
        && (req.path.ends_with("/converse") || req.path.ends_with("/converse-stream"))
    {
        Provider::Bedrock
    } else if req.path.starts_with("/model/")
        && (req.path.ends_with("/invoke") || req.path.ends_with("/invoke-with-response-stream"))
    {
        Provider::BedrockInvoke
    } else if req.path.starts_with("/v1/projects/")
        && req.path.contains("/publishers/google/models/")
    {
        Provider::Vertex
    } else if req.path.starts_with("/v1/projects/")
        && req.path.contains("/publishers/anthropic/models/")
        && (req.path.ends_with(":rawPredict") || req.path.ends_with(":streamRawPredict"))
    {
        Provider::VertexAnthropic
    } else if req.path.starts_with("/openai/deployments/")
        && (req.path.ends_with("/chat/completions") || req.path.ends_with("/embeddings"))
    {
        Provider::Azure
    } else if req.path.ends_with("/chat/completions") || req.path.ends_with("/v1/embeddings") {
        Provider::OpenAi
    } else if req.path.ends_with("/messages") || req.path.ends_with("/messages/count_tokens") {
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
        Provider::Bedrock | Provider::BedrockInvoke => "bedrock",
        Provider::Vertex | Provider::VertexAnthropic => "vertex",
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
    if req.path.ends_with("/messages/count_tokens") {
        // Anthropic's token count: one token per word of the request's texts.
        let n = count_words(&Value::Object(body.clone()));
        return write_json(w, &json!({"input_tokens": n}));
    }
    let path_model = path_model(provider, req);
    if embeddings::is_embeddings(provider, req, &path_model) {
        return match embeddings::answer(provider, req, &body, &path_model) {
            Ok(v) => write_json(w, &v),
            Err(msg) => error(w, provider, 400, &msg, None),
        };
    }
    let checked = match provider {
        Provider::OpenAi | Provider::Azure => validate_openai(&body),
        Provider::Anthropic => validate_anthropic(&body),
        Provider::Gemini | Provider::Vertex => validate_gemini(&body, req),
        Provider::Bedrock => validate_converse(&body),
        Provider::BedrockInvoke => {
            validate_cloud_anthropic(&body, "bedrock-2023-05-31", &path_model, false)
        }
        Provider::VertexAnthropic => {
            validate_cloud_anthropic(&body, "vertex-2023-10-16", &path_model, true)
        }
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
        let v = match provider.format() {
            Provider::OpenAi | Provider::Azure => openai_json(&reply),
            Provider::Anthropic => anthropic_json(&reply),
            Provider::Bedrock => converse_json(&reply),
            _ => gemini_json(&reply),
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
    let framed = matches!(provider, Provider::Bedrock | Provider::BedrockInvoke);
    let mut events: Vec<Vec<u8>> = match provider {
        Provider::Bedrock => converse_frames(&reply),
        Provider::BedrockInvoke => invoke_frames(&reply),
        _ => match provider.format() {
            Provider::OpenAi | Provider::Azure => openai_sse(&reply),
            Provider::Anthropic => anthropic_sse(&reply),
            _ => gemini_sse(&reply),
        }
        .into_iter()
        .map(String::into_bytes)
        .collect(),
    };
    let half = events.len() / 2;
    let mut after = After::KeepAlive;
    match fault {
        "cut" => {
            events.truncate(half.max(1));
            after = After::Reset;
        }
        "truncate" => events.truncate(half.max(1)),
        "bad-event" if framed => {
            // A frame whose message CRC does not match.
            let mut bad = aws::event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "x"}}),
            );
            let n = bad.len();
            bad[n - 1] ^= 0xff;
            events.insert(half, bad);
        }
        "bad-event" => events.insert(half, b"data: {\"broken\n\n".to_vec()),
        "stream-error" => {
            events.truncate(half.max(1));
            events.push(match provider.format() {
                Provider::Bedrock => aws::exception("throttlingException", "Too many requests, please wait before trying again."),
                _ if framed => aws::exception("modelStreamErrorException", "The model stream failed."),
                Provider::Anthropic => b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n".to_vec(),
                Provider::Gemini => b"data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n".to_vec(),
                _ => b"data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n".to_vec(),
            });
        }
        _ => {}
    }
    let mut bytes: Vec<u8> = events.concat();
    if let Some(seed) = mutation_seed(fault, req) {
        bytes = mutate(&bytes, seed);
    }
    let ctype = if framed {
        "application/vnd.amazon.eventstream"
    } else {
        "text/event-stream"
    };
    let mut out = Chunked::start(
        w,
        200,
        &[
            ("content-type", ctype.into()),
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
        None if framed => {
            for e in &events {
                out.send(e)?;
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
        Provider::Vertex | Provider::VertexAnthropic => {
            ("authorization", format!("Bearer {}", k.vertex))
        }
        Provider::Bedrock | Provider::BedrockInvoke => ("authorization", String::new()),
    };
    // Another provider's credential must never arrive here either.
    for other in ["authorization", "api-key", "x-api-key", "x-goog-api-key"] {
        if other != header && req.header(other).is_some() {
            return Err((400, format!("unexpected credential header '{other}'")));
        }
    }
    if matches!(p, Provider::Bedrock | Provider::BedrockInvoke) {
        return aws::verify(req, "bedrock").map_err(|e| (403, format!("The request signature we calculated does not match the signature you provided ({e}).")));
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
    if matches!(p, Provider::Bedrock | Provider::BedrockInvoke) {
        let kind = error_type(status);
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            (
                "x-amzn-errortype",
                format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            ),
        ];
        if let (429 | 503, Some(r)) = (status, retry) {
            headers.push(("retry-after", r));
        }
        http::write_full(
            w,
            status,
            &headers,
            json!({"message": msg}).to_string().as_bytes(),
        )?;
        return Ok(After::KeepAlive);
    }
    let body = match p.format() {
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
        _ => {
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
            if p.format() != Provider::Gemini {
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
    match p.format() {
        Provider::Bedrock => {
            let msgs = b
                .get("messages")
                .and_then(Value::as_array)
                .unwrap_or(&empty);
            last_text = msgs
                .iter()
                .rev()
                .find(|m| m["role"] == "user")
                .map(|m| {
                    m["content"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            c.get("text")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                                .unwrap_or_else(|| {
                                    c.pointer("/toolResult/content")
                                        .and_then(Value::as_array)
                                        .into_iter()
                                        .flatten()
                                        .map(|r| {
                                            r.get("text")
                                                .and_then(Value::as_str)
                                                .map(str::to_string)
                                                .unwrap_or_else(|| {
                                                    r.get("json")
                                                        .map(Value::to_string)
                                                        .unwrap_or_default()
                                                })
                                        })
                                        .collect::<Vec<_>>()
                                        .join(" ")
                                })
                        })
                        .filter(|t| !t.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let tools = b
                .pointer("/toolConfig/tools")
                .and_then(Value::as_array)
                .unwrap_or(&empty);
            let choice = b.pointer("/toolConfig/toolChoice");
            let pick = if choice.and_then(|c| c.get("any")).is_some() {
                tools
                    .first()
                    .and_then(|t| t.pointer("/toolSpec/name"))
                    .and_then(Value::as_str)
            } else {
                choice
                    .and_then(|c| c.pointer("/tool/name"))
                    .and_then(Value::as_str)
            };
            tool = pick.map(|name| {
                let schema = tools
                    .iter()
                    .find(|t| t.pointer("/toolSpec/name").and_then(Value::as_str) == Some(name))
                    .and_then(|t| t.pointer("/toolSpec/inputSchema/json"))
                    .cloned()
                    .unwrap_or(json!({}));
                (name.to_string(), fill_echo(&schema, &last_text))
            });
            thinking = b
                .pointer("/additionalModelRequestFields/thinking/type")
                .and_then(Value::as_str)
                == Some("enabled");
            n = 1;
            stream = req.path.ends_with("/converse-stream");
            include_usage = true;
            stops = strings(b.pointer("/inferenceConfig/stopSequences"));
            max = b
                .pointer("/inferenceConfig/maxTokens")
                .and_then(Value::as_u64);
        }
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
        _ => {
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
    let stream = if p == Provider::BedrockInvoke {
        req.path.ends_with("-with-response-stream")
    } else {
        stream
    };
    let json_mode: Option<Value> = match p.format() {
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
        Provider::Anthropic | Provider::Bedrock => None,
        _ => None,
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
        Provider::Bedrock
        | Provider::BedrockInvoke
        | Provider::Vertex
        | Provider::VertexAnthropic => path_model(p, req),
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

/// The model a cloud's path names (Bedrock `/model/{id}/...`, Vertex `.../models/{m}:...`).
fn path_model(p: Provider, req: &Request) -> String {
    let raw = match p {
        Provider::Bedrock | Provider::BedrockInvoke => req
            .path
            .strip_prefix("/model/")
            .and_then(|r| r.split('/').next())
            .unwrap_or_default(),
        _ => req
            .path
            .rsplit("/models/")
            .next()
            .and_then(|r| r.split(':').next())
            .unwrap_or_default(),
    };
    aws::unescape(raw)
}

/// The reply text in stream pieces: one word (with its space) per piece.
fn pieces(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_string).collect()
}
