//! Bedrock: Converse and ConverseStream (checked as Bedrock checks them), InvokeModel for
//! Anthropic's models (Anthropic's body with bedrock-2023-05-31), streams as event-stream frames.

use super::aws;
use super::*;

pub(super) fn validate_converse(b: &Map<String, Value>) -> Result<(), String> {
    only_keys(
        b,
        &[
            "messages",
            "system",
            "inferenceConfig",
            "toolConfig",
            "additionalModelRequestFields",
            "guardrailConfig",
            "additionalModelResponseFieldPaths",
            "requestMetadata",
            "performanceConfig",
        ],
        "body",
    )?;
    if let Some(s) = b.get("system") {
        for (i, blk) in s
            .as_array()
            .ok_or("system: must be a list")?
            .iter()
            .enumerate()
        {
            if !blk.get("text").is_some_and(Value::is_string) && blk.get("cachePoint").is_none() {
                return Err(format!(
                    "system.{i}: a system block is text or a cachePoint"
                ));
            }
        }
    }
    if let Some(c) = b.get("inferenceConfig") {
        only_keys(
            c.as_object().ok_or("inferenceConfig: must be an object")?,
            &["maxTokens", "temperature", "topP", "stopSequences"],
            "inferenceConfig",
        )?;
    }
    let mut tool_names = Vec::new();
    if let Some(tc) = b.get("toolConfig") {
        let tc = tc.as_object().ok_or("toolConfig: must be an object")?;
        only_keys(tc, &["tools", "toolChoice"], "toolConfig")?;
        for (i, t) in tc
            .get("tools")
            .and_then(Value::as_array)
            .ok_or("toolConfig.tools: required")?
            .iter()
            .enumerate()
        {
            let name = t
                .pointer("/toolSpec/name")
                .and_then(Value::as_str)
                .ok_or(format!("toolConfig.tools.{i}.toolSpec.name: required"))?;
            if !t
                .pointer("/toolSpec/inputSchema/json")
                .is_some_and(Value::is_object)
            {
                return Err(format!(
                    "toolConfig.tools.{i}.toolSpec.inputSchema.json: required"
                ));
            }
            tool_names.push(name.to_string());
        }
        if let Some(choice) = tc.get("toolChoice") {
            let ok = choice.get("auto").is_some()
                || choice.get("any").is_some()
                || choice
                    .pointer("/tool/name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| tool_names.iter().any(|t| t == n));
            if !ok {
                return Err(
                    "toolConfig.toolChoice: auto, any, or tool naming one of the tools".into(),
                );
            }
        }
    }
    let msgs = b
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: required")?;
    if msgs.is_empty() {
        return Err("messages: at least one message".into());
    }
    let mut prev_uses: Vec<String> = Vec::new();
    let mut any_tool_block = false;
    for (i, m) in msgs.iter().enumerate() {
        let o = m
            .as_object()
            .ok_or(format!("messages.{i}: must be an object"))?;
        only_keys(o, &["role", "content"], &format!("messages.{i}"))?;
        let role = o.get("role").and_then(Value::as_str).unwrap_or_default();
        let want = if i % 2 == 0 { "user" } else { "assistant" };
        if role != want {
            return Err(format!("messages.{i}.role: a conversation must alternate between user and assistant roles, starting with user"));
        }
        let blocks = o
            .get("content")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or(format!("messages.{i}.content: a non-empty list"))?;
        let mut uses = Vec::new();
        for (j, blk) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            let obj = blk.as_object().ok_or(format!("{at}: must be an object"))?;
            if obj.len() != 1 {
                return Err(format!("{at}: a content block has exactly one member"));
            }
            let (kind, v) = obj
                .iter()
                .next()
                .map(|(k, v)| (k.as_str(), v))
                .unwrap_or(("", &Value::Null));
            match kind {
                "text" if v.as_str().is_some_and(|t| !t.is_empty()) => {}
                "image" => {
                    let f = v.get("format").and_then(Value::as_str).unwrap_or_default();
                    if !["png", "jpeg", "gif", "webp"].contains(&f)
                        || !v.pointer("/source/bytes").is_some_and(Value::is_string)
                    {
                        return Err(format!("{at}.image: format and source.bytes"));
                    }
                }
                "toolUse" if role == "assistant" => {
                    any_tool_block = true;
                    if !v.get("toolUseId").is_some_and(Value::is_string)
                        || !v.get("name").is_some_and(Value::is_string)
                        || !v.get("input").is_some_and(Value::is_object)
                    {
                        return Err(format!("{at}.toolUse: toolUseId, name and an object input"));
                    }
                    uses.push(v["toolUseId"].as_str().unwrap_or_default().to_string());
                }
                "toolResult" if role == "user" => {
                    any_tool_block = true;
                    let id = v
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !prev_uses.iter().any(|u| u == id) {
                        return Err(format!("{at}.toolResult: toolUseId '{id}' matches no toolUse of the previous turn"));
                    }
                    for c in v
                        .get("content")
                        .and_then(Value::as_array)
                        .ok_or(format!("{at}.toolResult.content: a list"))?
                    {
                        if c.get("text").is_none() && c.get("json").is_none() {
                            return Err(format!("{at}.toolResult.content: text or json blocks"));
                        }
                    }
                }
                "reasoningContent" if role == "assistant" => {}
                "cachePoint" => {}
                other => return Err(format!("{at}: '{other}' is not a valid block here")),
            }
        }
        prev_uses = uses;
    }
    if any_tool_block && tool_names.is_empty() {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
    }
    Ok(())
}

fn converse_stop(r: &Reply) -> &'static str {
    if r.tool.is_some() {
        "tool_use"
    } else if r.finish == "length" {
        "max_tokens"
    } else if r.finish.starts_with("stop_sequence:") {
        "stop_sequence"
    } else {
        "end_turn"
    }
}

fn converse_usage(r: &Reply) -> Value {
    let out = r.output_tokens();
    json!({"inputTokens": r.input_tokens, "outputTokens": out, "totalTokens": r.input_tokens + out,
           "cacheReadInputTokens": r.cached_tokens, "cacheWriteInputTokens": 0})
}

pub(super) fn converse_json(r: &Reply) -> Value {
    let mut content = Vec::new();
    if r.thinking {
        content.push(json!({"reasoningContent": {"reasoningText": {"text": "mock reasoning", "signature": SIGNATURE}}}));
    }
    match &r.tool {
        Some((name, input)) => content.push(
            json!({"toolUse": {"toolUseId": "tooluse_mock_0", "name": name, "input": input}}),
        ),
        None => content.push(json!({"text": r.text})),
    }
    json!({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": converse_stop(r),
           "usage": converse_usage(r), "metrics": {"latencyMs": 12}})
}

pub(super) fn converse_frames(r: &Reply) -> Vec<Vec<u8>> {
    let mut out = vec![aws::event("messageStart", json!({"role": "assistant"}))];
    let mut idx = 0;
    if r.thinking {
        for t in ["mock ", "reasoning"] {
            out.push(aws::event(
                "contentBlockDelta",
                json!({"contentBlockIndex": idx, "delta": {"reasoningContent": {"text": t}}}),
            ));
        }
        out.push(aws::event("contentBlockDelta", json!({"contentBlockIndex": idx, "delta": {"reasoningContent": {"signature": SIGNATURE}}})));
        out.push(aws::event(
            "contentBlockStop",
            json!({"contentBlockIndex": idx}),
        ));
        idx += 1;
    }
    match &r.tool {
        Some((name, input)) => {
            out.push(aws::event("contentBlockStart", json!({"contentBlockIndex": idx, "start": {"toolUse": {"toolUseId": "tooluse_mock_0", "name": name}}})));
            let a = input.to_string();
            let (a1, a2) = a.split_at(a.len() / 2);
            for part in [a1, a2] {
                out.push(aws::event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": idx, "delta": {"toolUse": {"input": part}}}),
                ));
            }
        }
        None => {
            for p in pieces(&r.text) {
                out.push(aws::event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": idx, "delta": {"text": p}}),
                ));
            }
        }
    }
    out.push(aws::event(
        "contentBlockStop",
        json!({"contentBlockIndex": idx}),
    ));
    out.push(aws::event(
        "messageStop",
        json!({"stopReason": converse_stop(r)}),
    ));
    out.push(aws::event(
        "metadata",
        json!({"usage": converse_usage(r), "metrics": {"latencyMs": 12}}),
    ));
    out
}

/// InvokeModel's stream: each Anthropic event, base64, in a `chunk` frame.
pub(super) fn invoke_frames(r: &Reply) -> Vec<Vec<u8>> {
    anthropic_sse(r)
        .iter()
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_string)
        })
        .map(|data| aws::event("chunk", json!({"bytes": aws::base64(data.as_bytes())})))
        .collect()
}

/// A cloud's Anthropic body (InvokeModel, Vertex rawPredict): its `anthropic_version`, no
/// `model`; checked as an Anthropic request once the model from the path is put back.
pub(super) fn validate_cloud_anthropic(
    b: &Map<String, Value>,
    version: &str,
    model: &str,
    stream_in_body: bool,
) -> Result<(), String> {
    if b.get("anthropic_version").and_then(Value::as_str) != Some(version) {
        return Err(format!("anthropic_version: must be {version}"));
    }
    if b.contains_key("model") {
        return Err("model: the model goes in the path, not the body".into());
    }
    if !stream_in_body && b.contains_key("stream") {
        return Err("stream: not a field of InvokeModel (the path says it)".into());
    }
    let mut m = b.clone();
    m.remove("anthropic_version");
    if let Some(betas) = m.remove("anthropic_beta") {
        if !betas
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
        {
            return Err("anthropic_beta: a list of strings".into());
        }
    }
    m.insert("model".into(), json!(model));
    validate_anthropic(&m)
}

/// Bedrock's error: the type in x-amzn-ErrorType, a message in the body.
pub(super) fn error_type(status: u16) -> &'static str {
    match status {
        400 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    }
}
