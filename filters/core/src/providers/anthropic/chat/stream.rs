//! The stream: the provider's events to OpenAI chunks, incrementally.

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) enum Block {
    Text,
    Thinking,
    Tool(u32),
    Json,
    Other,
}

/// Anthropic SSE -> OpenAI chunks.
pub type Stream = SseStream<Events>;

pub fn stream(plan: &ResponsePlan, created: u64) -> Stream {
    SseStream::new(Events::new(plan, created))
}

pub struct Events {
    w: ChunkWriter,
    json_tool: Option<String>,
    started: bool,
    blocks: Vec<(u64, Block)>,
    next_call: u32,
    /// Tool calls that received argument text; one that ends without any gets `{}`, so that
    /// `arguments` always parses as JSON.
    calls_with_args: Vec<u32>,
    usage: AnthropicUsage,
    stop_reason: Option<String>,
}

impl Events {
    fn new(plan: &ResponsePlan, created: u64) -> Self {
        Events {
            w: ChunkWriter::new(
                "chatcmpl-anthropic".into(),
                plan.client_model.clone(),
                created,
            ),
            json_tool: plan.json_tool.clone(),
            started: false,
            blocks: Vec::new(),
            next_call: 0,
            calls_with_args: Vec::new(),
            usage: AnthropicUsage::default(),
            stop_reason: None,
        }
    }

    fn block(&self, index: u64) -> Block {
        self.blocks
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| *b)
            .unwrap_or(Block::Other)
    }
}

impl EventTranslator for Events {
    const PROVIDER: &'static str = PROVIDER;

    fn writer(&mut self) -> &mut ChunkWriter {
        &mut self.w
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        // Anthropic ends every complete answer with message_stop, which closes the stream.
        self.w.error(out, &cut_short(PROVIDER));
    }

    fn event(&mut self, ev: SseEvent, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| broken_event(PROVIDER, e))?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        if !self.started && !matches!(kind, "message_start" | "ping" | "error") {
            return Err(broken_event(
                PROVIDER,
                format!("'{kind}' before message_start"),
            ));
        }
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                let m = v
                    .get("message")
                    .ok_or_else(|| broken_event(PROVIDER, "message_start without message"))?;
                if let Some(id) = m.get("id").and_then(Value::as_str) {
                    self.w.id = format!("chatcmpl-{id}");
                }
                if let Some(model) = m.get("model").and_then(Value::as_str) {
                    self.w.model = model.to_string();
                }
                if let Some(u) = m.get("usage") {
                    self.usage.merge(u);
                }
                self.started = true;
                // The role goes out at once: the client's first byte does not wait for text.
                self.w.delta(out, 0, Map::new());
            }
            "content_block_start" => {
                let b = v.get("content_block").unwrap_or(&Value::Null);
                let block = match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = b
                            .get("text")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            self.w.content(out, 0, t);
                        }
                        Block::Text
                    }
                    Some("thinking") => Block::Thinking,
                    Some("tool_use") => {
                        let name = b.get("name").and_then(Value::as_str).unwrap_or_default();
                        if self.json_tool.as_deref() == Some(name) {
                            Block::Json
                        } else {
                            let id = b.get("id").and_then(Value::as_str).unwrap_or_default();
                            let call = self.next_call;
                            self.next_call += 1;
                            self.w.tool_call(out, 0, call, Some((id, name)), "");
                            Block::Tool(call)
                        }
                    }
                    _ => Block::Other,
                };
                self.blocks.push((index, block));
            }
            "content_block_delta" => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default();
                match (d.get("type").and_then(Value::as_str), self.block(index)) {
                    (Some("text_delta"), _) if !s("text").is_empty() => {
                        self.w.content(out, 0, s("text"))
                    }
                    (Some("thinking_delta"), _) if !s("thinking").is_empty() => {
                        self.w.reasoning(out, 0, s("thinking"))
                    }
                    (Some("input_json_delta"), Block::Tool(call))
                        if !s("partial_json").is_empty() =>
                    {
                        if !self.calls_with_args.contains(&call) {
                            self.calls_with_args.push(call);
                        }
                        self.w.tool_call(out, 0, call, None, s("partial_json"))
                    }
                    (Some("input_json_delta"), Block::Json) if !s("partial_json").is_empty() => {
                        self.w.content(out, 0, s("partial_json"))
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    self.usage.merge(u);
                }
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(r.to_string());
                    let reason = finish_reason(Some(r), self.json_tool.is_some());
                    self.w.finish_reason(out, 0, reason);
                }
            }
            "message_stop" => {
                if self.stop_reason.is_none() {
                    self.w.finish_reason(out, 0, "stop");
                }
                let usage = self.usage.openai();
                self.w.usage(out, &usage);
                self.w.done(out);
            }
            "error" => {
                let e = v.get("error").unwrap_or(&Value::Null);
                let kind = e.get("type").and_then(Value::as_str).unwrap_or("api_error");
                let msg = e.get("message").and_then(Value::as_str);
                return Err(crate::error::from_provider(
                    PROVIDER,
                    error_status(kind),
                    Some(kind),
                    msg,
                ));
            }
            "content_block_stop" => {
                if let Block::Tool(call) = self.block(index) {
                    if !self.calls_with_args.contains(&call) {
                        self.calls_with_args.push(call);
                        self.w.tool_call(out, 0, call, None, "{}");
                    }
                }
            }
            _ => {} // ping, and event types added later
        }
        Ok(())
    }
}
