//! The Anthropic Messages front on an Anthropic backend: a pass-through. The client's bytes go
//! as sent but for the model name (rewritten in place when the host maps it, every other byte
//! kept: thinking signatures, `cache_control`, citations, server tools, betas' fields), with the
//! client's `anthropic-version` (or the backend's, or [`DEFAULT_VERSION`]) and `anthropic-beta`.
//! The answer comes back as it came; a stream that ends without `message_stop` or an `error`
//! event gets Anthropic's `error` event, so a client never takes a cut stream for a whole one.

use crate::api::anthropic::{envelope, DEFAULT_VERSION};
use crate::error::GatewayError;
use crate::providers::{Peeked, Plan, ResponsePlan, Target, Translator, UpstreamRequest};
use crate::sse::SseParser;
use crate::stream::{broken_event, cut_short, StreamTranslator};

const PROVIDER: &str = "anthropic";

/// `POST /v1/messages` or `/v1/messages/count_tokens` to Anthropic.
#[derive(Debug)]
pub struct Passthrough {
    count_tokens: bool,
}

pub static MESSAGES: Passthrough = Passthrough {
    count_tokens: false,
};
pub static COUNT_TOKENS: Passthrough = Passthrough { count_tokens: true };

impl Translator for Passthrough {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| GatewayError::invalid_request("The request body is not valid UTF-8."))?;
        let Peeked {
            client_model,
            model,
            stream,
        } = Peeked::new(target, body)?;
        let body = if has_unsigned_thinking(text) {
            Some(without_unsigned_thinking(text, &model)?)
        } else if model == client_model {
            None
        } else {
            let renamed = crate::json::replace_top_level_string(text, "model", &model)
                .ok_or_else(|| GatewayError::invalid_param("model", "model: expected a string"))?;
            Some(renamed.into_bytes())
        };
        let version = target
            .client
            .anthropic_version
            .as_deref()
            .or(target.api_version)
            .unwrap_or(DEFAULT_VERSION);
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("anthropic-version", version.to_string()),
        ];
        if let Some(beta) = &target.client.anthropic_beta {
            headers.push(("anthropic-beta", beta.clone()));
        }
        let path = if self.count_tokens {
            format!("{}/messages/count_tokens", target.base_path)
        } else {
            format!("{}/messages", target.base_path)
        };
        let request = UpstreamRequest {
            path,
            headers,
            body,
        };
        Ok(Plan::forwarded(
            self,
            client_model,
            model,
            !self.count_tokens && stream,
            request,
        ))
    }

    /// Checked, not changed: a JSON object that is no error (Anthropic answers errors with an
    /// error status, but a proxy in between may not).
    fn response(
        &self,
        _plan: &ResponsePlan,
        body: &[u8],
        _created: u64,
    ) -> Result<Vec<u8>, GatewayError> {
        #[derive(serde::Deserialize)]
        struct Check<'a> {
            #[serde(default, rename = "type", borrow)]
            kind: Option<&'a str>,
        }
        match serde_json::from_slice::<Check>(body) {
            Ok(Check {
                kind: Some("error"),
            }) => Err(crate::providers::provider_error(PROVIDER, 502, body, None)),
            Ok(_) if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => {
                Ok(body.to_vec())
            }
            _ => Err(GatewayError::bad_upstream(
                "The Anthropic backend answered with a body that is not a JSON object.",
            )),
        }
    }

    fn stream(&self, _plan: &ResponsePlan, _created: u64) -> Box<dyn StreamTranslator> {
        Box::new(PassStream::default())
    }

    fn passthrough(&self) -> bool {
        true
    }
}

/// Whether the body has a `"signature": ""`: a thinking block this gateway wrote for an answer
/// that another backend gave (a failover chain may mix them), which Anthropic would refuse.
fn has_unsigned_thinking(text: &str) -> bool {
    text.match_indices("\"signature\"").any(|(i, m)| {
        let rest = text.get(i + m.len()..).unwrap_or_default().trim_start();
        rest.strip_prefix(':')
            .is_some_and(|r| r.trim_start().starts_with("\"\""))
    })
}

/// The body without unsigned thinking blocks (their text was the other backend's reasoning,
/// which Anthropic cannot verify), for `model`.
fn without_unsigned_thinking(text: &str, model: &str) -> Result<Vec<u8>, GatewayError> {
    let mut v = crate::openai::parse_body(text.as_bytes())?;
    drop_unsigned_thinking(&mut v);
    if let Some(o) = v.as_object_mut() {
        o.insert("model".into(), serde_json::Value::String(model.to_string()));
    }
    serde_json::to_vec(&v).map_err(|e| GatewayError::invalid_request(e.to_string()))
}

fn drop_unsigned_thinking(v: &mut serde_json::Value) {
    for m in v
        .get_mut("messages")
        .and_then(serde_json::Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(blocks) = m
            .get_mut("content")
            .and_then(serde_json::Value::as_array_mut)
        {
            blocks.retain(|b| {
                !(b.get("type").and_then(serde_json::Value::as_str) == Some("thinking")
                    && b.get("signature").and_then(serde_json::Value::as_str) == Some(""))
            });
        }
    }
}

/// A Messages body as a cloud's Anthropic endpoint takes it (Bedrock's InvokeModel, Vertex's
/// rawPredict): the model is in the path, not the body; `anthropic_version` is the cloud's;
/// Bedrock wants the betas in the body and no `stream` field (the path says it).
/// `v` is the parsed body (`openai::parse_body`), consumed.
pub fn for_cloud(
    mut v: serde_json::Value,
    version: &str,
    keep_stream: bool,
    betas: Option<&str>,
) -> Result<Vec<u8>, GatewayError> {
    drop_unsigned_thinking(&mut v);
    if let Some(o) = v.as_object_mut() {
        o.remove("model");
        if !keep_stream {
            o.remove("stream");
        }
        o.insert(
            "anthropic_version".into(),
            serde_json::Value::String(version.into()),
        );
        if let Some(b) = betas {
            let list: Vec<serde_json::Value> = b
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| serde_json::Value::String(s.to_string()))
                .collect();
            o.insert("anthropic_beta".into(), serde_json::Value::Array(list));
        }
    }
    serde_json::to_vec(&v).map_err(|e| GatewayError::invalid_request(e.to_string()))
}

/// An Anthropic event stream passed on byte for byte, watched for its end.
#[derive(Default)]
pub struct PassStream {
    parser: SseParser,
    ended: bool,
}

impl PassStream {
    fn watch(&mut self, events: Result<Vec<crate::sse::SseEvent>, String>) -> Vec<u8> {
        match events {
            Ok(events) => {
                for ev in events {
                    if matches!(ev.event.as_deref(), Some("message_stop" | "error")) {
                        self.ended = true;
                    }
                }
                Vec::new()
            }
            Err(e) if !self.ended => {
                self.ended = true;
                error_event(&broken_event(PROVIDER, e))
            }
            Err(_) => Vec::new(),
        }
    }
}

/// Anthropic's `error` event for `e`.
pub fn error_event(e: &GatewayError) -> Vec<u8> {
    let mut out = Vec::new();
    crate::sse::write_event(&mut out, "error", &envelope::body(e));
    out
}

impl StreamTranslator for PassStream {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let events = self.parser.feed(chunk).map_err(|e| e.to_string());
        let mut out = chunk.to_vec();
        out.extend(self.watch(events));
        out
    }

    fn finish(&mut self) -> Vec<u8> {
        let events = self.parser.finish().map_err(|e| e.to_string());
        let mut out = self.watch(events);
        if !self.ended {
            self.ended = true;
            out.extend(error_event(&cut_short(PROVIDER)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Ranked;
    use crate::providers::ClientHints;

    fn target<'a>(models: &'a Ranked<String>, client: &'a ClientHints) -> Target<'a> {
        Target {
            base_path: "/v1",
            models,
            api_version: None,
            max_tokens_default: None,
            client,
            strip_prefix: None,
        }
    }

    #[test]
    fn bytes_pass_but_for_the_model() {
        let body = br#"{"model":"claude-x", "max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"c2ln"}]}],"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}]}"#;
        let none = Ranked::new(std::collections::BTreeMap::new());
        let hints = ClientHints {
            anthropic_version: Some("2023-06-01".into()),
            anthropic_beta: Some("interleaved-thinking-2025-05-14".into()),
        };
        let p = MESSAGES.request(&target(&none, &hints), body).unwrap();
        assert!(p.request.body.is_none(), "sent as it came");
        assert_eq!(p.request.path, "/v1/messages");
        assert!(p
            .request
            .headers
            .contains(&("anthropic-beta", "interleaved-thinking-2025-05-14".into())));
        let mapped = Ranked::new([("claude-*".to_string(), "claude-sonnet-4-5".to_string())]);
        let p = MESSAGES
            .request(&target(&mapped, &ClientHints::default()), body)
            .unwrap();
        let sent = String::from_utf8(p.request.body.unwrap()).unwrap();
        assert_eq!(
            sent,
            String::from_utf8_lossy(body).replace("claude-x", "claude-sonnet-4-5")
        );
        assert!(p
            .request
            .headers
            .contains(&("anthropic-version", DEFAULT_VERSION.into())));
        let p = COUNT_TOKENS.request(&target(&none, &hints), body).unwrap();
        assert_eq!(p.request.path, "/v1/messages/count_tokens");
    }

    #[test]
    fn unsigned_thinking_from_another_backend_is_left_out() {
        let body = br#"{"model":"c","max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"thinking","thinking":"from gpt","signature" : ""},{"type":"text","text":"a"}]},{"role":"user","content":"next"}]}"#;
        let none = Ranked::new(std::collections::BTreeMap::new());
        let p = MESSAGES
            .request(&target(&none, &ClientHints::default()), body)
            .unwrap();
        let sent: serde_json::Value = serde_json::from_slice(&p.request.body.unwrap()).unwrap();
        assert_eq!(
            sent["messages"][1]["content"],
            serde_json::json!([{"type": "text", "text": "a"}])
        );
        assert!(!has_unsigned_thinking(r#"{"signature":"c2ln","x":""}"#));
    }

    #[test]
    fn a_cut_stream_ends_with_an_error_event() {
        let whole = b"event: message_start\ndata: {}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let mut s = PassStream::default();
        let mut out = Vec::new();
        for b in whole.chunks(3) {
            out.extend(s.feed(b));
        }
        out.extend(s.finish());
        assert_eq!(out, whole.to_vec());
        let mut s = PassStream::default();
        let mut out = s.feed(b"event: message_start\ndata: {}\n\n");
        out.extend(s.finish());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("\n\n")
                && text.contains("event: error\ndata: {")
                && text.contains("\"type\":\"error\""),
            "{text}"
        );
    }
}
