//! OpenAI chat <-> Bedrock Converse (`POST /model/{modelId}/converse`) and ConverseStream
//! (`/converse-stream`, AWS event-stream frames), for every model Bedrock serves through it.
//!
//! The request: system and developer messages become `system` text blocks; user text and
//! inline images (`image.source.bytes`, base64 as JSON carries blobs) and assistant text and
//! tool calls (`toolUse`) become content blocks of alternating turns (same-role messages
//! merged); tool messages become `toolResult` blocks, consecutive ones merged into one user
//! turn; `inferenceConfig` takes the sampling fields; `toolConfig` the tools and `toolChoice`;
//! `json_schema` answers are a forced tool whose input becomes the content (as for Anthropic).
//! Model-specific fields go in `additionalModelRequestFields` (`top_k`, Claude's `thinking`
//! from `reasoning_effort`, and whatever the client puts in `additionalModelRequestFields`).

use crate::contract::path_segment;
use crate::error::GatewayError;
use crate::eventstream::{FrameEvents, ERROR, EXCEPTION};
use crate::openai::{
    image_source, ChatRequest, Choice, Completion, Content, ContentPart, ImageSource, Message,
    ResponseFormat, ToolChoice, Usage,
};
use crate::providers::{Plan, ResponsePlan, Target, Translator, UpstreamError, UpstreamRequest};
use crate::sse::SseEvent;
use crate::stream::{broken_event, cut_short, ChunkWriter, EventTranslator, SseStream};
use serde_json::{json, Map, Value};

pub const PROVIDER: &str = "bedrock";

/// The forced tool of `json_schema` mode.
const JSON_TOOL: &str = "json_answer";

/// The OpenAI chat front on Bedrock's Converse API.
#[derive(Debug)]
pub struct OpenAiToConverse;

pub static TRANSLATOR: OpenAiToConverse = OpenAiToConverse;

impl Translator for OpenAiToConverse {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn request(&'static self, target: &Target, body: &[u8]) -> Result<Plan, GatewayError> {
        let req = crate::openai::chat_request(body)?;
        let model = target.upstream_model(&req.model).to_string();
        let (out, json_tool) = request(&req, &model)?;
        let action = if req.is_stream() {
            "converse-stream"
        } else {
            "converse"
        };
        let request = UpstreamRequest {
            path: format!(
                "{}/model/{}/{action}",
                target.base_path,
                path_segment(&model)
            ),
            headers: vec![("content-type", "application/json".to_string())],
            body: Some(serde_json::to_vec(&out).unwrap_or_default()),
        };
        Ok(Plan::chat(self, &req, model, json_tool, request))
    }

    fn response(
        &self,
        plan: &ResponsePlan,
        body: &[u8],
        created: u64,
    ) -> Result<Vec<u8>, GatewayError> {
        response(body, plan, created)
    }

    fn stream(
        &self,
        plan: &ResponsePlan,
        created: u64,
    ) -> Box<dyn crate::stream::StreamTranslator> {
        Box::new(SseStream::<Events, FrameEvents>::new(Events::new(
            plan, created,
        )))
    }

    fn error(&self, e: UpstreamError) -> GatewayError {
        bedrock_error(e)
    }
}

/// A Bedrock error answer: its type is in `x-amzn-ErrorType` (`ThrottlingException:http://...`)
/// or the body's `__type`; the status follows the type where the HTTP status is generic.
pub fn bedrock_error(e: UpstreamError) -> GatewayError {
    let v: Option<Value> = serde_json::from_slice(e.body).ok();
    let body_type = v
        .as_ref()
        .and_then(|v| v.get("__type").or_else(|| v.get("type")))
        .and_then(Value::as_str);
    let kind = e
        .error_type
        .or(body_type)
        .map(|t| {
            t.split([':', '#'])
                .find(|p| p.ends_with("Exception"))
                .unwrap_or(t)
        })
        .map(str::trim);
    let status = kind.map_or(e.status, |k| exception_status(k, e.status));
    let msg = v.as_ref().and_then(|v| {
        v.get("message")
            .or_else(|| v.get("Message"))
            .and_then(Value::as_str)
    });
    let mut err = crate::error::from_provider(PROVIDER, status, kind, msg);
    if let Some(secs) = e.retry_after.and_then(|s| s.trim().parse::<f64>().ok()) {
        if secs.is_finite() && secs >= 0.0 {
            err.retry_after = Some(secs.ceil() as u64);
        }
    }
    err
}

/// The HTTP status an exception type stands for (inside a stream there is none).
pub fn exception_status(kind: &str, status: u16) -> u16 {
    match kind {
        "ThrottlingException"
        | "throttlingException"
        | "ServiceQuotaExceededException"
        | "serviceQuotaExceededException" => 429,
        "ValidationException" | "validationException" => 400,
        "AccessDeniedException" | "UnrecognizedClientException" => 403,
        "ResourceNotFoundException" => 404,
        "ModelNotReadyException"
        | "ServiceUnavailableException"
        | "serviceUnavailableException" => 503,
        "ModelTimeoutException" | "modelTimeoutException" => 504,
        "ModelStreamErrorException" | "modelStreamErrorException" | "ModelErrorException" => 502,
        "InternalServerException" | "internalServerException" => 500,
        _ if (400..600).contains(&status) => status,
        _ => 500,
    }
}

fn bad(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_param(param, message)
}

/// Content blocks of a user or assistant message.
fn blocks_of(content: &Content, param: &str) -> Result<Vec<Value>, GatewayError> {
    match content {
        Content::Text(s) if s.is_empty() => Ok(vec![]),
        Content::Text(s) => Ok(vec![json!({"text": s})]),
        Content::Parts(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (i, p) in parts.iter().enumerate() {
                let param = format!("{param}[{i}]");
                match p {
                    ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                        if !text.is_empty() {
                            out.push(json!({"text": text}));
                        }
                    }
                    ContentPart::ImageUrl { image_url } => {
                        match image_source(&image_url.url, &param)? {
                            ImageSource::Base64 { media_type, data } => {
                                let format = match media_type {
                                    "image/png" => "png",
                                    "image/jpeg" | "image/jpg" => "jpeg",
                                    "image/gif" => "gif",
                                    "image/webp" => "webp",
                                    _ => {
                                        return Err(bad(
                                            &param,
                                            "the bedrock backend takes png, jpeg, gif and webp images",
                                        ))
                                    }
                                };
                                out.push(json!({"image": {"format": format, "source": {"bytes": data}}}));
                            }
                            ImageSource::Url(_) => {
                                return Err(bad(
                                    &param,
                                    "the bedrock backend needs images inline: send a base64 data URL (data:image/png;base64,...)",
                                ))
                            }
                        }
                    }
                    ContentPart::InputAudio { .. } | ContentPart::File { .. } => {
                        return Err(bad(
                            &param,
                            "audio and file content parts are not supported by the bedrock backend",
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

fn push(turns: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((r, b)) if *r == role => b.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

fn tool_input(arguments: &str, param: &str) -> Result<Value, GatewayError> {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ if arguments.trim().is_empty() => Ok(json!({})),
        Ok(_) => Err(bad(param, "tool call arguments must be a JSON object")),
        Err(e) => Err(bad(
            param,
            format!("tool call arguments are not valid JSON: {e}"),
        )),
    }
}

/// A Converse request for `model`, and the forced tool's name in `json_schema` mode.
pub fn request(req: &ChatRequest, model: &str) -> Result<(Value, Option<String>), GatewayError> {
    req.refuse_unsupported(PROVIDER, false)?;
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let param = format!("messages[{i}].content");
        match m {
            Message::System { content, .. } | Message::Developer { content, .. } => {
                for b in blocks_of(content, &param)? {
                    if b.get("text").is_none() {
                        return Err(bad(&param, "system messages may only contain text"));
                    }
                    system.push(b);
                }
            }
            Message::User { content, .. } => push(&mut turns, "user", blocks_of(content, &param)?),
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                // Earlier reasoning is not sent back: Bedrock would want its signature.
                let mut blocks = match content {
                    Some(c) => blocks_of(c, &param)?,
                    None => vec![],
                };
                for (j, call) in tool_calls.iter().flatten().enumerate() {
                    let param = format!("messages[{i}].tool_calls[{j}].function.arguments");
                    blocks.push(json!({"toolUse": {"toolUseId": call.id, "name": call.function.name,
                                                   "input": tool_input(&call.function.arguments, &param)?}}));
                }
                push(&mut turns, "assistant", blocks);
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                let text = content.text();
                let result = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ (Value::Object(_) | Value::Array(_))) => json!([{"json": v}]),
                    _ => json!([{"text": text}]),
                };
                push(
                    &mut turns,
                    "user",
                    vec![
                        json!({"toolResult": {"toolUseId": tool_call_id, "content": result, "status": "success"}}),
                    ],
                );
            }
        }
    }
    if turns.first().is_none_or(|(r, _)| *r != "user") {
        return Err(bad(
            "messages",
            "the bedrock backend needs the conversation to start with a user message (after system messages)",
        ));
    }
    let mut out = Map::new();
    out.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    let mut inference = Map::new();
    if let Some(m) = req.max_output_tokens() {
        inference.insert("maxTokens".into(), json!(m));
    }
    if let Some(t) = req.temperature {
        inference.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        inference.insert("topP".into(), json!(p));
    }
    if let Some(s) = &req.stop {
        inference.insert("stopSequences".into(), json!(s.to_vec()));
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    let mut tools: Vec<Value> = req
        .function_tools(PROVIDER)?
        .into_iter()
        .map(|f| {
            let mut spec = Map::new();
            spec.insert("name".into(), json!(f.name));
            if let Some(d) = &f.description {
                spec.insert("description".into(), json!(d));
            }
            let schema = f
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            spec.insert("inputSchema".into(), json!({ "json": schema }));
            json!({ "toolSpec": spec })
        })
        .collect();
    let mut choice = match &req.tool_choice {
        None | Some(ToolChoice::Auto) => None,
        Some(ToolChoice::Required) => Some(json!({"any": {}})),
        Some(ToolChoice::Function(name)) => Some(json!({"tool": {"name": name}})),
        Some(ToolChoice::None) => {
            return Err(bad(
                "tool_choice",
                "tool_choice 'none' is not supported by the bedrock backend (Converse has no such choice): leave the tools out instead",
            ))
        }
    };
    let mut json_tool = None;
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => system.push(json!({
            "text": "Answer with one JSON object and nothing else."
        })),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            if !tools.is_empty() {
                return Err(bad(
                    "response_format",
                    "json_schema answers cannot be combined with tools on the bedrock backend",
                ));
            }
            let schema = json_schema
                .schema
                .clone()
                .unwrap_or_else(|| json!({"type": "object"}));
            tools.push(json!({"toolSpec": {"name": JSON_TOOL,
                "description": "Give the answer as this tool's input.",
                "inputSchema": {"json": schema}}}));
            choice = Some(json!({"tool": {"name": JSON_TOOL}}));
            json_tool = Some(JSON_TOOL.to_string());
        }
    }
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    if !tools.is_empty() {
        let mut cfg = Map::new();
        cfg.insert("tools".into(), Value::Array(tools));
        if let Some(c) = choice {
            cfg.insert("toolChoice".into(), c);
        }
        out.insert("toolConfig".into(), Value::Object(cfg));
    }
    let mut extra = Map::new();
    if let Some(Value::Object(fields)) = req.extra.get("additionalModelRequestFields") {
        extra.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(k) = req.extra.get("top_k") {
        extra.insert("top_k".into(), k.clone());
    }
    if let Some(effort) = req.reasoning_effort.as_deref().filter(|e| *e != "none") {
        if !model.contains("anthropic.") {
            return Err(bad(
                "reasoning_effort",
                "reasoning_effort is supported on Bedrock for Anthropic models only; pass the model's own field in additionalModelRequestFields",
            ));
        }
        let budget = match effort {
            "minimal" | "low" => 1024,
            "medium" => 4096,
            "high" => 16384,
            other => {
                return Err(bad(
                    "reasoning_effort",
                    format!(
                    "'reasoning_effort' must be one of none, minimal, low, medium, high; got '{}'",
                    crate::contract::escape_for_header(other)
                ),
                ))
            }
        };
        extra.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    if !extra.is_empty() {
        out.insert("additionalModelRequestFields".into(), Value::Object(extra));
    }
    Ok((Value::Object(out), json_tool))
}

/// OpenAI's finish reason for a Converse stop reason.
pub fn finish_reason(stop: Option<&str>, json_mode: bool) -> &'static str {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") if !json_mode => "tool_calls",
        Some("guardrail_intervened" | "content_filtered") => "content_filter",
        _ => "stop",
    }
}

/// OpenAI usage from Converse usage (cache reads and writes are part of the prompt).
pub fn usage(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let read = n("cacheReadInputTokens");
    Usage {
        prompt_tokens: n("inputTokens")
            .saturating_add(read)
            .saturating_add(n("cacheWriteInputTokens")),
        completion_tokens: n("outputTokens"),
        cached_tokens: Some(read),
        reasoning_tokens: None,
    }
}

pub fn response(body: &[u8], plan: &ResponsePlan, created: u64) -> Result<Vec<u8>, GatewayError> {
    let bad_answer = || {
        GatewayError::bad_upstream(
            "The bedrock backend answered with a body that is not a Converse answer.",
        )
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| bad_answer())?;
    let blocks = v
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(bad_answer)?;
    let json_mode = plan.json_tool.is_some();
    let (mut text, mut reasoning, mut calls) = (String::new(), None::<String>, Vec::new());
    for b in blocks {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(r) = b
            .pointer("/reasoningContent/reasoningText/text")
            .and_then(Value::as_str)
        {
            reasoning.get_or_insert_with(String::new).push_str(r);
        } else if let Some(u) = b.get("toolUse") {
            let name = u.get("name").and_then(Value::as_str).unwrap_or_default();
            let input =
                serde_json::to_string(u.get("input").unwrap_or(&json!({}))).unwrap_or_default();
            if plan.json_tool.as_deref() == Some(name) {
                text.push_str(&input);
            } else {
                let id = u
                    .get("toolUseId")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                calls.push((id.to_string(), name.to_string(), input));
            }
        }
    }
    let stop = v.get("stopReason").and_then(Value::as_str);
    let choice = Choice {
        content: (!text.is_empty() || calls.is_empty()).then_some(text),
        reasoning,
        tool_calls: calls,
        finish_reason: Some(finish_reason(stop, json_mode)),
    };
    let id = format!("chatcmpl-bedrock-{created}");
    Completion {
        id: &id,
        model: &plan.client_model,
        created,
        choices: vec![choice],
        usage: v.get("usage").map(usage),
    }
    .to_bytes()
}

/// ConverseStream events (decoded from event-stream frames) -> OpenAI chunks.
pub struct Events {
    w: ChunkWriter,
    json_tool: Option<String>,
    /// Converse block index -> OpenAI tool-call index, for tool blocks.
    calls: Vec<(u64, u32)>,
    /// The block index of the json_schema tool, whose input is content.
    json_block: Option<u64>,
    finish: Option<&'static str>,
    usage: Option<Usage>,
    stopped: bool,
}

impl Events {
    pub fn new(plan: &ResponsePlan, created: u64) -> Self {
        Events {
            w: ChunkWriter::new(
                format!("chatcmpl-bedrock-{created}"),
                plan.client_model.clone(),
                created,
            ),
            json_tool: plan.json_tool.clone(),
            calls: Vec::new(),
            json_block: None,
            finish: None,
            usage: None,
            stopped: false,
        }
    }
}

impl EventTranslator for Events {
    const PROVIDER: &'static str = PROVIDER;

    fn writer(&mut self) -> &mut ChunkWriter {
        &mut self.w
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if !self.stopped {
            self.w.error(out, &cut_short(PROVIDER));
            return;
        }
        if let Some(u) = self.usage {
            self.w.usage(out, &u);
        }
        self.w.done(out);
    }

    fn event(&mut self, ev: SseEvent, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        let name = ev.event.unwrap_or_default();
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| broken_event(PROVIDER, e))?;
        if let Some(kind) = name
            .strip_prefix(EXCEPTION)
            .or_else(|| name.strip_prefix(ERROR))
        {
            let msg = v.get("message").and_then(Value::as_str);
            let status = exception_status(kind, 500);
            return Err(crate::error::from_provider(
                PROVIDER,
                status,
                Some(kind),
                msg,
            ));
        }
        let index = v
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match name.as_str() {
            "messageStart" => self.w.delta(out, 0, Map::new()),
            "contentBlockStart" => {
                if let Some(u) = v.pointer("/start/toolUse") {
                    let name = u.get("name").and_then(Value::as_str).unwrap_or_default();
                    if self.json_tool.as_deref() == Some(name) {
                        self.json_block = Some(index);
                    } else {
                        let id = u
                            .get("toolUseId")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let call = u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
                        self.calls.push((index, call));
                        self.w.tool_call(out, 0, call, Some((id, name)), "");
                    }
                }
            }
            "contentBlockDelta" => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                if let Some(t) = d.get("text").and_then(Value::as_str) {
                    self.w.content(out, 0, t);
                } else if let Some(r) = d.pointer("/reasoningContent/text").and_then(Value::as_str)
                {
                    self.w.reasoning(out, 0, r);
                } else if let Some(input) = d.pointer("/toolUse/input").and_then(Value::as_str) {
                    if self.json_block == Some(index) {
                        self.w.content(out, 0, input);
                    } else if let Some((_, call)) = self.calls.iter().find(|(b, _)| *b == index) {
                        let call = *call;
                        self.w.tool_call(out, 0, call, None, input);
                    } else {
                        return Err(broken_event(
                            PROVIDER,
                            "tool input for a block that never started",
                        ));
                    }
                }
            }
            "messageStop" => {
                let stop = v.get("stopReason").and_then(Value::as_str);
                let reason = finish_reason(stop, self.json_tool.is_some());
                self.finish = Some(reason);
                self.stopped = true;
                self.w.finish_reason(out, 0, reason);
            }
            "metadata" => {
                if let Some(u) = v.get("usage") {
                    self.usage = Some(usage(u));
                }
            }
            // contentBlockStop and events added later carry nothing an OpenAI client reads.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventstream::encode;
    use crate::openai::{parse_body, validate};
    use crate::stream::{assemble, run_split};

    fn req(body: Value) -> Result<(Value, Option<String>), GatewayError> {
        let v = parse_body(body.to_string().as_bytes()).unwrap();
        request(
            &validate(&v).unwrap(),
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
        )
    }

    #[test]
    fn a_conversation_with_tools_becomes_converse() {
        let (v, _) = req(json!({"model": "m", "max_tokens": 50, "temperature": 0.2, "stop": "END", "top_k": 5,
            "reasoning_effort": "low",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "t2", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "{\"c\":20}"},
                {"role": "tool", "tool_call_id": "t2", "content": "cold"}],
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
            "tool_choice": "required"})).unwrap();
        assert_eq!(v["system"], json!([{"text": "Be brief."}]));
        assert_eq!(
            v["messages"][0]["content"][1]["image"],
            json!({"format": "png", "source": {"bytes": "iVBO"}})
        );
        assert_eq!(
            v["messages"][1]["content"][1]["toolUse"]["input"],
            json!({"city": "Oslo"})
        );
        let results = v["messages"][2]["content"].as_array().unwrap();
        assert_eq!(
            results.len(),
            2,
            "consecutive tool results are one user message"
        );
        assert_eq!(
            results[0]["toolResult"]["content"],
            json!([{"json": {"c": 20}}])
        );
        assert_eq!(
            results[1]["toolResult"]["content"],
            json!([{"text": "cold"}])
        );
        assert_eq!(
            v["inferenceConfig"],
            json!({"maxTokens": 50, "temperature": 0.2, "stopSequences": ["END"]})
        );
        assert_eq!(v["toolConfig"]["toolChoice"], json!({"any": {}}));
        assert_eq!(v["additionalModelRequestFields"]["top_k"], 5);
        assert_eq!(
            v["additionalModelRequestFields"]["thinking"]["budget_tokens"],
            1024
        );
    }

    #[test]
    fn what_converse_cannot_carry_is_refused() {
        for body in [
            json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}),
            json!({"model": "m", "tool_choice": "none", "messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "function", "function": {"name": "w"}}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]}),
            json!({"model": "m", "messages": [{"role": "assistant", "content": "first"}]}),
        ] {
            assert_eq!(req(body.clone()).unwrap_err().status, 400, "{body}");
        }
    }

    fn plan(json_tool: Option<&str>) -> ResponsePlan {
        ResponsePlan {
            translator: &TRANSLATOR,
            stream: true,
            json_tool: json_tool.map(str::to_string),
            client_model: "claude-on-bedrock".into(),
            upstream_model: "anthropic.claude".into(),
            embeddings: None,
        }
    }

    #[test]
    fn every_stop_reason_and_the_usage_map() {
        for (stop, want) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            let body = json!({"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
                "stopReason": stop, "usage": {"inputTokens": 3, "outputTokens": 2, "cacheReadInputTokens": 4, "cacheWriteInputTokens": 1}});
            let out: Value = serde_json::from_slice(
                &response(body.to_string().as_bytes(), &plan(None), 1).unwrap(),
            )
            .unwrap();
            assert_eq!(out["choices"][0]["finish_reason"], want, "{stop}");
            assert_eq!(out["usage"]["prompt_tokens"], 8);
            assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        }
    }

    fn frames(events: &[(&str, Value)]) -> Vec<u8> {
        events
            .iter()
            .flat_map(|(t, v)| {
                encode(
                    &[
                        (":event-type", t),
                        (":message-type", "event"),
                        (":content-type", "application/json"),
                    ],
                    v.to_string().as_bytes(),
                )
            })
            .collect()
    }

    #[test]
    fn a_stream_split_anywhere() {
        let input = frames(&[
            ("messageStart", json!({"role": "assistant", "p": "abc"})),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"text": "Hel"}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"text": "lo"}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 1})),
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tu1", "name": "w"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"city\":"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 2})),
            ("messageStop", json!({"stopReason": "tool_use"})),
            (
                "metadata",
                json!({"usage": {"inputTokens": 5, "outputTokens": 7}, "metrics": {"latencyMs": 1}}),
            ),
        ]);
        for cut in 0..input.len() {
            let mut t = SseStream::<Events, FrameEvents>::new(Events::new(&plan(None), 1));
            let a = assemble(&run_split(&mut t, &input, &[cut]));
            assert_eq!(a.content, "Hello", "cut {cut}");
            assert_eq!(a.reasoning, "hmm");
            assert_eq!(
                a.tool_calls,
                vec![("tu1".into(), "w".into(), "{\"city\":\"Paris\"}".into())]
            );
            assert_eq!(a.finish.as_deref(), Some("tool_calls"));
            assert!(a.done && a.error.is_none());
            assert_eq!(
                a.usage.map(|u| u["completion_tokens"].clone()),
                Some(json!(7))
            );
        }
    }

    #[test]
    fn exceptions_corruption_and_cuts_end_in_an_error() {
        let start = frames(&[
            ("messageStart", json!({"role": "assistant"})),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
            ),
        ]);
        let exception = encode(
            &[
                (":message-type", "exception"),
                (":exception-type", "throttlingException"),
            ],
            br#"{"message":"Too many requests"}"#,
        );
        let mut corrupt = frames(&[("messageStop", json!({"stopReason": "end_turn"}))]);
        corrupt[20] ^= 1;
        for (tail, said) in [
            (exception, Some("Too many requests")),
            (corrupt, None),
            (Vec::new(), None),
        ] {
            let input = [start.clone(), tail].concat();
            let mut t = SseStream::<Events, FrameEvents>::new(Events::new(&plan(None), 1));
            let a = assemble(&run_split(&mut t, &input, &[7]));
            assert_eq!(a.content, "Hi");
            assert!(!a.done, "no [DONE] after an error");
            let e = a.error.expect("an error event");
            if let Some(said) = said {
                assert!(e["message"].as_str().unwrap().contains(said), "{e}");
            }
        }
    }

    #[test]
    fn errors_are_read_from_the_error_type_header() {
        let e = bedrock_error(UpstreamError {
            status: 400,
            body: br#"{"message":"Too many tokens, please wait before trying again."}"#,
            retry_after: None,
            error_type: Some(
                "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            ),
        });
        assert_eq!(e.status, 429);
        let e = bedrock_error(UpstreamError {
            status: 424,
            body: br#"{"message":"Model is not ready"}"#,
            retry_after: None,
            error_type: Some("ModelNotReadyException"),
        });
        assert_eq!(e.status, 503);
    }
}
