//! OpenAI and OpenAI-compatible backends (Azure, vLLM, llama.cpp, Ollama, DeepSeek, Groq...):
//! the request passes through (model renamed when the host maps it), the answer passes through,
//! checked: a body that is not JSON, or a stream that ends without `[DONE]`, becomes an error.

use crate::error::GatewayError;
use crate::sse::{self, SseParser};
use crate::stream::{broken_event, cut_short, StreamTranslator};
use serde_json::Value;

/// The fields a pass-through needs, read without building the document.
#[derive(serde::Deserialize)]
pub struct Peek {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
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

pub fn response(body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => Ok(body.to_vec()),
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
            } else if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&ev.data) {
                // Checked without building a tree: a scan, no allocation.
                self.failed = true;
                sse::write_data(out, &broken_event("openai", e).body());
                return;
            } else if ev.data.starts_with("{\"error\"") {
                self.failed = true;
            }
            sse::write_data(out, ev.data.as_bytes());
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
                sse::write_data(&mut out, &broken_event("openai", e).body());
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
                sse::write_data(&mut out, &broken_event("openai", e).body());
            }
        }
        if !self.done && !self.failed {
            sse::write_data(&mut out, &cut_short("openai").body());
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
