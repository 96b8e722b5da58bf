//! OpenAI and OpenAI-compatible backends (Azure, vLLM, llama.cpp, Ollama, DeepSeek, Groq...):
//! the request passes through (model renamed when the host maps it), the answer passes through,
//! checked: a body that is not JSON, or a stream that ends without `[DONE]`, becomes an error.

use crate::contract::path_segment;
use crate::error::GatewayError;
use crate::openai;
use crate::providers::{Peeked, Plan, ResponsePlan, Target, Translator, UpstreamRequest};
use crate::sse::{self, SseParser};
use crate::stream::{broken_event, cut_short, StreamTranslator};
use serde_json::Value;

pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// The OpenAI chat front on OpenAI or an OpenAI-compatible server; Azure differs in its path
/// (deployment, `api-version`).
#[derive(Debug)]
pub struct OpenAiCompat {
    azure: bool,
}

pub static OPENAI: OpenAiCompat = OpenAiCompat { azure: false };
pub static AZURE: OpenAiCompat = OpenAiCompat { azure: true };

impl Translator for OpenAiCompat {
    fn provider(&self) -> &'static str {
        if self.azure {
            "azure"
        } else {
            PROVIDER
        }
    }

    /// A pass-through reads two fields (the route role validated the rest) and keeps the
    /// client's bytes unless the host renames the model.
    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError> {
        let Peeked {
            client_model,
            model,
            stream,
        } = Peeked::new(target, body)?;
        let path = path(target, &model, self.azure, "chat/completions");
        let body = request(body, &model, &client_model)?;
        let request = UpstreamRequest {
            path,
            headers: vec![("content-type", "application/json".to_string())],
            body,
        };
        Ok(Plan::forwarded(self, client_model, model, stream, request))
    }

    fn response(
        &self,
        _plan: &ResponsePlan,
        body: &[u8],
        _created: u64,
    ) -> Result<Vec<u8>, GatewayError> {
        response(body)
    }

    fn stream(&self, _plan: &ResponsePlan, _created: u64) -> Box<dyn StreamTranslator> {
        Box::new(Stream::new())
    }

    fn passthrough(&self) -> bool {
        true
    }
}

/// The path of an OpenAI API operation (`chat/completions`, `embeddings`) on a host: Azure's
/// names the deployment and carries `api-version`.
pub fn path(target: &Target, model: &str, azure: bool, operation: &str) -> String {
    if azure {
        let version = target.api_version.unwrap_or(DEFAULT_AZURE_API_VERSION);
        format!(
            "{}/{}/{operation}?api-version={}",
            target.base_path,
            path_segment(model),
            path_segment(version)
        )
    } else {
        format!("{}/{operation}", target.base_path)
    }
}

/// The body for an OpenAI-compatible backend: `None` keeps the client's bytes as they are (the
/// common case); a host that maps the model gets the body with the model renamed.
pub fn request(
    body: &[u8],
    model: &str,
    client_model: &str,
) -> Result<Option<Vec<u8>>, GatewayError> {
    if model == client_model {
        return Ok(None);
    }
    let mut value = crate::openai::parse_body(body)?;
    if let Some(o) = value.as_object_mut() {
        o.insert("model".into(), Value::String(model.to_string()));
    }
    serde_json::to_vec(&value)
        .map(Some)
        .map_err(|e| GatewayError::invalid_request(e.to_string()))
}

/// What the pass-through checks in an answer or a chunk, read without building the document.
#[derive(serde::Deserialize)]
struct Check {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    choices: Option<Vec<ChoiceCheck>>,
}

#[derive(serde::Deserialize)]
struct ChoiceCheck {
    #[serde(default)]
    finish_reason: Option<String>,
}

impl Check {
    /// Whether some `finish_reason` is not one of OpenAI's values.
    fn odd_finish(&self) -> bool {
        self.choices.iter().flatten().any(|c| {
            c.finish_reason
                .as_deref()
                .is_some_and(|r| !openai::FINISH_REASONS.contains(&r))
        })
    }
}

/// An `{"error": ...}` object from an OpenAI-compatible server, in a 2xx answer or a stream.
fn error_in_answer(e: &Value) -> GatewayError {
    let status = e
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(502);
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| e.as_str());
    let kind = e.get("type").and_then(Value::as_str);
    crate::error::from_provider(PROVIDER, status, kind, message)
}

const PROVIDER: &str = "openai";

/// `finish_reason`s rewritten to OpenAI's values (rare: only when a server used another word).
fn normalise_finish(text: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(text).ok()?;
    for c in v
        .get_mut("choices")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(Value::String(r)) = c.get_mut("finish_reason") {
            *r = openai::normal_finish_reason(r).to_string();
        }
    }
    serde_json::to_vec(&v).ok()
}

/// Checks a complete answer: a JSON object with no `error` in place of `choices` (some servers
/// answer errors with HTTP 200), and OpenAI's `finish_reason` values.
pub fn response(body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    match serde_json::from_slice::<Check>(body) {
        Ok(c) if object => {
            if let (Some(e), None) = (&c.error, &c.choices) {
                return Err(error_in_answer(e));
            }
            if c.odd_finish() {
                if let Some(b) = normalise_finish(body) {
                    return Ok(b);
                }
            }
            Ok(body.to_vec())
        }
        _ => Err(GatewayError::bad_upstream(
            "The OpenAI-compatible backend answered with a body that is not a JSON object.",
        )),
    }
}

/// Passes complete events through; only a stream that stops without `[DONE]` is changed (an
/// error event is added), and a partial event at the end is never forwarded.
pub struct Stream {
    parser: SseParser,
    done: bool,
    failed: bool,
}

impl Stream {
    pub fn new() -> Self {
        Stream {
            parser: SseParser::default(),
            done: false,
            failed: false,
        }
    }

    fn write(&mut self, events: Vec<sse::SseEvent>, out: &mut Vec<u8>) {
        for ev in events {
            if self.done || self.failed {
                return;
            }
            if ev.data == "[DONE]" {
                self.done = true;
                sse::write_data(out, ev.data.as_bytes());
                continue;
            }
            // Checked without building a tree: a scan and the finish reasons.
            match serde_json::from_str::<Check>(&ev.data) {
                Err(e) => {
                    self.failed = true;
                    sse::write_data(out, &broken_event(PROVIDER, e).body());
                    return;
                }
                Ok(c) if c.error.is_some() && c.choices.is_none() => {
                    // The server's error, in the gateway's words; the stream ends here.
                    self.failed = true;
                    let e = c.error.as_ref().map(error_in_answer);
                    sse::write_data(out, &e.unwrap_or_else(|| cut_short(PROVIDER)).body());
                    return;
                }
                Ok(c) if c.odd_finish() => match normalise_finish(ev.data.as_bytes()) {
                    Some(b) => sse::write_data(out, &b),
                    None => sse::write_data(out, ev.data.as_bytes()),
                },
                Ok(_) => sse::write_data(out, ev.data.as_bytes()),
            }
        }
    }
}

impl Default for Stream {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamTranslator for Stream {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.failed {
            return out;
        }
        match self.parser.feed(chunk) {
            Ok(events) => self.write(events, &mut out),
            Err(e) => {
                self.failed = true;
                sse::write_data(&mut out, &broken_event(PROVIDER, e).body());
            }
        }
        out
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.failed {
            return out;
        }
        match self.parser.finish() {
            // An unterminated last event is forwarded only when it is whole.
            Ok(events) => {
                let whole = events
                    .into_iter()
                    .filter(|e| {
                        e.data == "[DONE]"
                            || serde_json::from_str::<serde::de::IgnoredAny>(&e.data).is_ok()
                    })
                    .collect();
                self.write(whole, &mut out)
            }
            Err(e) => {
                self.failed = true;
                sse::write_data(&mut out, &broken_event(PROVIDER, e).body());
            }
        }
        if !self.done && !self.failed {
            sse::write_data(&mut out, &cut_short(PROVIDER).body());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{assemble, run_split};
    use serde_json::json;

    const STREAM: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"h\u{e9}\"}}]}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

    #[test]
    fn passes_through_at_every_split() {
        let b = STREAM.as_bytes();
        for cut in 0..b.len() {
            let ev = run_split(&mut Stream::new(), b, &[cut]);
            let a = assemble(&ev);
            assert_eq!(a.content, "hé");
            assert!(a.done && a.error.is_none());
        }
    }

    #[test]
    fn cut_stream_ends_with_an_error_event() {
        let b = STREAM.as_bytes();
        let cut = STREAM.find("data: [DONE]").unwrap() - 10;
        let ev = run_split(&mut Stream::new(), &b[..cut], &[]);
        let a = assemble(&ev);
        assert!(!a.done);
        assert_eq!(a.error.unwrap()["code"], "upstream_stream_cut");
    }

    #[test]
    fn broken_event_becomes_an_error_event() {
        let input = "data: {\"object\":\"chat.completion.chunk\",\"choices\":[]}\n\ndata: {\"broken\n\ndata: [DONE]\n\n";
        let a = assemble(&run_split(&mut Stream::new(), input.as_bytes(), &[]));
        assert_eq!(a.error.unwrap()["code"], "bad_upstream_response");
        assert!(!a.done);
    }

    #[test]
    fn errors_in_a_200_and_in_a_stream_are_mapped_and_scrubbed() {
        let key = "sk-live-AbCdEf0123456789xyzXYZ";
        let body = format!(r#"{{"error":{{"message":"bad key {key}","type":"auth","code":401}}}}"#);
        let e = response(body.as_bytes()).unwrap_err();
        assert_eq!(e.status, 502);
        assert!(!e.message.contains(key));
        let e = response(br#"{"object":"error","error":"overloaded"}"#).unwrap_err();
        assert_eq!(e.status, 502);
        let stream = format!("data: {{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"a\"}}}}]}}\n\ndata: {{\"error\":{{\"message\":\"{key}\",\"code\":429}}}}\n\ndata: [DONE]\n\n");
        let a = assemble(&run_split(&mut Stream::new(), stream.as_bytes(), &[]));
        let err = a.error.unwrap();
        assert_eq!(err["code"], "rate_limit_exceeded");
        assert!(!err.to_string().contains(key));
        assert!(!a.done);
    }

    #[test]
    fn finish_reasons_are_openais() {
        let out = response(br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"eos"}]}"#).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let same = br#"{"choices":[{"finish_reason":"length"}]}"#;
        assert_eq!(response(same).unwrap(), same.to_vec());
        let stream = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"max_tokens\"}]}\n\ndata: [DONE]\n\n";
        let ev = run_split(&mut Stream::new(), stream.as_bytes(), &[]);
        assert_eq!(ev[0]["choices"][0]["finish_reason"], "length");
        for (raw, want) in [
            ("eos", "stop"),
            ("end_turn", "stop"),
            ("max_length", "length"),
            ("tool_use", "tool_calls"),
            ("SAFETY", "content_filter"),
            ("tool_calls", "tool_calls"),
        ] {
            assert_eq!(openai::normal_finish_reason(raw), want);
        }
    }

    #[test]
    fn renames_model_and_checks_json() {
        let body = json!({"model":"a","messages":[]}).to_string();
        let out = request(body.as_bytes(), "b", "a").unwrap().unwrap();
        assert!(String::from_utf8(out).unwrap().contains("\"model\":\"b\""));
        assert!(request(body.as_bytes(), "a", "a").unwrap().is_none());
        assert!(response(b"{\"x\":1}").is_ok());
        assert_eq!(response(b"<html>").unwrap_err().status, 502);
        assert_eq!(response(b"[1]").unwrap_err().status, 502);
    }
}
