//! The Anthropic Messages front on Anthropic's models on Bedrock: InvokeModel
//! (`/model/{id}/invoke`) and InvokeModelWithResponseStream (`/invoke-with-response-stream`).
//! The body is the client's Messages request without `model` and `stream`, with
//! `anthropic_version: bedrock-2023-05-31` and the client's betas as `anthropic_beta`; the
//! answer is Anthropic's message; the stream is event-stream frames whose `chunk` payloads carry
//! base64 Anthropic events, written back as Anthropic's SSE.

use super::converse::{bedrock_error, exception_status, PROVIDER};
use crate::contract::path_segment;
use crate::error::GatewayError;
use crate::eventstream::{FrameEvents, ERROR, EXCEPTION};
use crate::providers::anthropic::messages::{error_event, for_cloud, MESSAGES};
use crate::providers::{
    via_openai::ViaOpenAi, Peeked, Plan, ResponsePlan, Target, Translator, UpstreamError,
    UpstreamRequest,
};
use crate::stream::{broken_event, cut_short, Framing, StreamTranslator};
use serde_json::Value;

pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// The Messages front on Bedrock: InvokeModel for Anthropic's models, Converse for the others.
#[derive(Debug)]
pub struct BedrockMessages;

pub static MESSAGES_ON_BEDROCK: BedrockMessages = BedrockMessages;

static VIA_CONVERSE: ViaOpenAi = ViaOpenAi::new(&super::converse::TRANSLATOR);

impl Translator for BedrockMessages {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError> {
        let Peeked {
            client_model,
            model,
            stream,
        } = Peeked::new(target, body)?;
        if !super::is_anthropic(&model) {
            return VIA_CONVERSE.request(target, body);
        }
        // Parsed once: checked, then rewritten for InvokeModel.
        let v = crate::openai::parse_body(body)?;
        crate::api::anthropic::request::validate(&v)?;
        let action = if stream {
            "invoke-with-response-stream"
        } else {
            "invoke"
        };
        let body = for_cloud(
            v,
            BEDROCK_ANTHROPIC_VERSION,
            false,
            target.client.anthropic_beta.as_deref(),
        )?;
        let request = UpstreamRequest {
            path: format!(
                "{}/model/{}/{action}",
                target.base_path,
                path_segment(&model)
            ),
            headers: vec![
                ("content-type", "application/json".to_string()),
                ("accept", "application/json".to_string()),
            ],
            body: Some(body),
        };
        Ok(Plan::forwarded(self, client_model, model, stream, request))
    }

    /// Anthropic's message, checked as the pass-through checks it.
    fn response(
        &self,
        plan: &ResponsePlan,
        body: &[u8],
        created: u64,
    ) -> Result<Vec<u8>, GatewayError> {
        MESSAGES.response(plan, body, created)
    }

    fn stream(&self, _plan: &ResponsePlan, _created: u64) -> Box<dyn StreamTranslator> {
        Box::new(Chunks::default())
    }

    fn error(&self, e: UpstreamError) -> GatewayError {
        bedrock_error(e)
    }
}

/// InvokeModelWithResponseStream's frames -> Anthropic's SSE events.
#[derive(Default)]
pub struct Chunks {
    frames: FrameEvents,
    ended: bool,
}

impl Chunks {
    fn fail(&mut self, e: &GatewayError, out: &mut Vec<u8>) {
        if !self.ended {
            self.ended = true;
            out.extend(error_event(e));
        }
    }

    fn events(
        &mut self,
        events: Vec<crate::sse::SseEvent>,
        framing: Result<(), String>,
        out: &mut Vec<u8>,
    ) {
        self.chunks(events, out);
        if let Err(e) = framing {
            self.fail(&broken_event(PROVIDER, e), out);
        }
    }

    fn chunks(&mut self, events: Vec<crate::sse::SseEvent>, out: &mut Vec<u8>) {
        for ev in events {
            if self.ended {
                return;
            }
            let name = ev.event.unwrap_or_default();
            if let Some(kind) = name
                .strip_prefix(EXCEPTION)
                .or_else(|| name.strip_prefix(ERROR))
            {
                let msg = serde_json::from_str::<Value>(&ev.data)
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string));
                let e = crate::error::from_provider(
                    PROVIDER,
                    exception_status(kind, 500),
                    Some(kind),
                    msg.as_deref(),
                );
                return self.fail(&e, out);
            }
            if name != "chunk" {
                continue;
            }
            let inner = serde_json::from_str::<Value>(&ev.data)
                .ok()
                .and_then(|v| {
                    v.get("bytes")
                        .and_then(Value::as_str)
                        .and_then(crate::eventstream::base64_decode)
                })
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            let Some(event) = inner else {
                return self.fail(
                    &broken_event(PROVIDER, "a chunk that is not a base64 Anthropic event"),
                    out,
                );
            };
            let kind = event
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if matches!(kind.as_str(), "message_stop" | "error") {
                self.ended = true;
            }
            crate::sse::write_event(out, &kind, event.to_string().as_bytes());
        }
    }
}

impl StreamTranslator for Chunks {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let (mut out, mut events) = (Vec::new(), Vec::new());
        let framing = self.frames.feed(chunk, &mut events);
        self.events(events, framing, &mut out);
        out
    }

    fn finish(&mut self) -> Vec<u8> {
        let (mut out, mut events) = (Vec::new(), Vec::new());
        let framing = self.frames.finish(&mut events);
        self.events(events, framing, &mut out);
        self.fail(&cut_short(PROVIDER), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::eventstream::encode;
    use crate::providers::{ClientApi, ClientHints};
    use serde_json::json;

    fn b64(data: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in data.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    const BODY: &[u8] = br#"{"model":"claude","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"c2ln"},{"type":"text","text":"a"}]},{"role":"user","content":"more"}],"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}]}"#;

    #[test]
    fn anthropic_models_go_through_invoke_model_others_through_converse() {
        let hints = ClientHints {
            anthropic_version: None,
            anthropic_beta: Some("a-1, b-2".into()),
        };
        let b = Backend::from_json(&json!({"provider": "bedrock", "models": {"claude": "us.anthropic.claude-sonnet-4-5-v1:0", "llama": "meta.llama3-70b"}})).unwrap();
        let p = b
            .plan_for(ClientApi::AnthropicMessages, BODY, &hints)
            .unwrap();
        assert_eq!(
            p.request.path,
            "/model/us.anthropic.claude-sonnet-4-5-v1%3A0/invoke-with-response-stream"
        );
        let sent: Value = serde_json::from_slice(p.request.body.as_ref().unwrap()).unwrap();
        assert!(sent.get("model").is_none() && sent.get("stream").is_none());
        assert_eq!(sent["anthropic_version"], BEDROCK_ANTHROPIC_VERSION);
        assert_eq!(sent["anthropic_beta"], json!(["a-1", "b-2"]));
        assert_eq!(
            sent["messages"][1]["content"][0]["signature"], "c2ln",
            "signed thinking kept"
        );
        assert_eq!(sent["system"][0]["cache_control"]["type"], "ephemeral");
        let llama = String::from_utf8_lossy(BODY).replace("\"claude\"", "\"llama\"");
        let p = b
            .plan_for(ClientApi::AnthropicMessages, llama.as_bytes(), &hints)
            .unwrap();
        assert_eq!(p.request.path, "/model/meta.llama3-70b/converse-stream");
    }

    #[test]
    fn chunks_become_anthropic_events_split_anywhere() {
        let events = [
            json!({"type": "message_start", "message": {"id": "m", "content": [], "usage": {"input_tokens": 3, "output_tokens": 1}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "message_stop"}),
        ];
        let input: Vec<u8> = events
            .iter()
            .flat_map(|e| {
                encode(
                    &[(":event-type", "chunk"), (":message-type", "event")],
                    json!({"bytes": b64(e.to_string().as_bytes()), "p": "ab"})
                        .to_string()
                        .as_bytes(),
                )
            })
            .collect();
        for cut in 0..input.len() {
            let mut c = Chunks::default();
            let mut out = c.feed(&input[..cut]);
            out.extend(c.feed(&input[cut..]));
            out.extend(c.finish());
            let text = String::from_utf8(out).unwrap();
            let names: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("event: "))
                .collect();
            assert_eq!(
                names,
                ["message_start", "content_block_delta", "message_stop"],
                "cut {cut}"
            );
        }
        let cut_short: Vec<u8> = input[..input.len() / 2].to_vec();
        let mut c = Chunks::default();
        let mut out = c.feed(&cut_short);
        out.extend(c.finish());
        assert!(String::from_utf8(out).unwrap().contains("event: error"));
        let exception = encode(
            &[
                (":message-type", "exception"),
                (":exception-type", "modelStreamErrorException"),
            ],
            br#"{"message":"boom"}"#,
        );
        let mut c = Chunks::default();
        let out = c.feed(&exception);
        assert!(String::from_utf8(out).unwrap().contains("event: error"));
    }
}
