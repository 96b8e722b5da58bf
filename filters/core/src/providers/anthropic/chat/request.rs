//! The request: OpenAI chat to the provider's format.

use super::*;

/// Instruction added for `response_format: json_object` (Anthropic has no JSON mode).
pub(super) const JSON_OBJECT_INSTRUCTION: &str =
    "Respond with a single valid JSON object and nothing else.";

/// Thinking budget for an OpenAI `reasoning_effort`.
pub(super) fn thinking_budget(effort: &str) -> Result<Option<u64>, GatewayError> {
    match effort {
        "none" => Ok(None),
        "minimal" | "low" => Ok(Some(1024)),
        "medium" => Ok(Some(4096)),
        "high" => Ok(Some(16384)),
        other => Err(GatewayError::invalid_param(
            "reasoning_effort",
            format!(
                "'reasoning_effort' must be one of none, minimal, low, medium, high; got '{other}'"
            ),
        )),
    }
}

pub(super) struct Turns {
    turns: Vec<(&'static str, Vec<Value>)>,
}

impl Turns {
    /// Appends a block, merging consecutive blocks of one role into one turn (Anthropic wants
    /// strictly alternating user and assistant turns).
    fn push(&mut self, role: &'static str, block: Value) {
        match self.turns.last_mut() {
            Some((r, blocks)) if *r == role => blocks.push(block),
            _ => self.turns.push((role, vec![block])),
        }
    }
}

pub(super) fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

pub(super) fn user_blocks(content: &Content, param: &str) -> Result<Vec<Value>, GatewayError> {
    match content {
        Content::Text(s) => Ok(if s.is_empty() {
            vec![]
        } else {
            vec![text_block(s)]
        }),
        Content::Parts(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (i, p) in parts.iter().enumerate() {
                let param = format!("{param}[{i}]");
                match p {
                    ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                        if !text.is_empty() {
                            out.push(text_block(text));
                        }
                    }
                    ContentPart::ImageUrl { image_url } => {
                        let source = match image_source(&image_url.url, &param)? {
                            ImageSource::Base64 { media_type, data } => {
                                json!({"type": "base64", "media_type": media_type, "data": data})
                            }
                            ImageSource::Url(url) => json!({"type": "url", "url": url}),
                        };
                        out.push(json!({"type": "image", "source": source}));
                    }
                    ContentPart::InputAudio { .. } | ContentPart::File { .. } => {
                        return Err(GatewayError::invalid_param(
                            &param,
                            "audio and file content parts are not supported by the anthropic backend",
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Builds the Anthropic request. Returns it and, in json_schema mode, the name of the tool
/// whose input is the answer.
pub fn request(
    req: &ChatRequest,
    model: &str,
    max_tokens_default: u64,
) -> Result<(Value, Option<String>), GatewayError> {
    req.refuse_unsupported(PROVIDER, false)?;
    let mut system: Vec<Value> = Vec::new();
    let mut turns = Turns { turns: Vec::new() };
    for (i, m) in req.messages.iter().enumerate() {
        let param = format!("messages[{i}].content");
        match m {
            Message::System { content, .. } | Message::Developer { content, .. } => {
                for b in user_blocks(content, &param)? {
                    if b.get("type").and_then(Value::as_str) != Some("text") {
                        return Err(GatewayError::invalid_param(
                            &param,
                            "system messages may only contain text",
                        ));
                    }
                    system.push(b);
                }
            }
            Message::User { content, .. } => {
                for b in user_blocks(content, &param)? {
                    turns.push("user", b);
                }
            }
            Message::Assistant {
                content,
                tool_calls,
                refusal,
                ..
            } => {
                let mut any = false;
                if let Some(c) = content {
                    for b in user_blocks(c, &param)? {
                        if b.get("type").and_then(Value::as_str) != Some("text") {
                            return Err(GatewayError::invalid_param(
                                &param,
                                "assistant messages may only contain text",
                            ));
                        }
                        turns.push("assistant", b);
                        any = true;
                    }
                }
                if let (false, Some(r)) = (any, refusal) {
                    if !r.is_empty() {
                        turns.push("assistant", text_block(r));
                    }
                }
                for (j, call) in tool_calls.iter().flatten().enumerate() {
                    let input = parse_arguments(
                        &call.function.arguments,
                        &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                    )?;
                    turns.push(
                        "assistant",
                        json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input}),
                    );
                }
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                let content = match content {
                    Content::Text(s) => Value::String(s.clone()),
                    Content::Parts(_) => Value::Array(user_blocks(content, &param)?),
                };
                turns.push(
                    "user",
                    json!({"type": "tool_result", "tool_use_id": tool_call_id, "content": content}),
                );
            }
        }
    }
    if turns.turns.is_empty() {
        return Err(GatewayError::invalid_param(
            "messages",
            "the anthropic backend needs at least one user or assistant message besides system messages",
        ));
    }
    let mut messages = Vec::with_capacity(turns.turns.len());
    for (role, mut blocks) in turns.turns {
        // tool_result blocks must come first in their user turn.
        blocks.sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
        messages.push(json!({"role": role, "content": blocks}));
    }

    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    let mut max_tokens = req.max_output_tokens().unwrap_or(max_tokens_default);
    let budget = match &req.reasoning_effort {
        Some(e) => thinking_budget(e)?,
        None => None,
    };
    if let Some(b) = budget {
        // Thinking counts against max_tokens, which must stay above the budget.
        if max_tokens <= b {
            max_tokens = max_tokens.saturating_add(b);
        }
        out.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": b}),
        );
    } else if let Some(t @ Value::Object(_)) = req.extra.get("thinking") {
        out.insert("thinking".into(), t.clone());
    }
    let thinking = out.contains_key("thinking");
    out.insert("max_tokens".into(), json!(max_tokens));
    if !thinking {
        // Anthropic refuses sampling parameters together with extended thinking.
        if let Some(t) = req.temperature {
            out.insert("temperature".into(), json!(t));
        }
        if let Some(p) = req.top_p {
            out.insert("top_p".into(), json!(p));
        }
        if let Some(k @ Value::Number(_)) = req.extra.get("top_k") {
            out.insert("top_k".into(), k.clone());
        }
    }
    if let Some(stop) = &req.stop {
        out.insert("stop_sequences".into(), json!(stop.to_vec()));
    }
    if let Some(u) = &req.user {
        out.insert("metadata".into(), json!({"user_id": u}));
    }
    if req.is_stream() {
        out.insert("stream".into(), json!(true));
    }

    let mut tools: Vec<Value> = req
        .function_tools(PROVIDER)?
        .into_iter()
        .map(|f| {
            let mut t = json!({
                "name": f.name,
                "input_schema": f.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let (Some(d), Some(o)) = (&f.description, t.as_object_mut()) {
                o.insert("description".into(), json!(d));
            }
            t
        })
        .collect();
    let mut tool_choice = match (&req.tool_choice, tools.is_empty()) {
        (_, true) => None,
        (None | Some(ToolChoice::Auto), _) => Some(json!({"type": "auto"})),
        (Some(ToolChoice::None), _) => Some(json!({"type": "none"})),
        (Some(ToolChoice::Required), _) => Some(json!({"type": "any"})),
        (Some(ToolChoice::Function(name)), _) => Some(json!({"type": "tool", "name": name})),
    };

    let mut json_tool = None;
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => system.push(text_block(JSON_OBJECT_INSTRUCTION)),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            if !tools.is_empty() {
                return Err(GatewayError::invalid_param(
                    "response_format",
                    "the anthropic backend cannot combine response_format json_schema with tools",
                ));
            }
            let schema = json_schema
                .schema
                .clone()
                .unwrap_or_else(|| json!({"type": "object"}));
            if schema.get("type").and_then(Value::as_str) != Some("object") {
                return Err(GatewayError::invalid_param(
                    "response_format.json_schema.schema",
                    "the anthropic backend needs a json_schema whose root is an object",
                ));
            }
            let name = json_schema.name.clone();
            let mut t = json!({"name": name, "input_schema": schema});
            if let (Some(d), Some(o)) = (&json_schema.description, t.as_object_mut()) {
                o.insert("description".into(), json!(d));
            }
            tools.push(t);
            tool_choice = Some(json!({"type": "tool", "name": name}));
            json_tool = Some(name);
        }
    }
    if req.parallel_tool_calls == Some(false) {
        if let Some(Value::Object(tc)) = tool_choice.as_mut() {
            if tc.get("type").and_then(Value::as_str) != Some("none") {
                tc.insert("disable_parallel_tool_use".into(), json!(true));
            }
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = tool_choice {
        out.insert("tool_choice".into(), tc);
    }
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    Ok((Value::Object(out), json_tool))
}

pub(super) fn parse_arguments(args: &str, param: &str) -> Result<Value, GatewayError> {
    if args.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(GatewayError::invalid_param(
            param,
            "tool call arguments must be a JSON object",
        )),
        Err(e) => Err(GatewayError::invalid_param(
            param,
            format!("tool call arguments are not valid JSON: {e}"),
        )),
    }
}
