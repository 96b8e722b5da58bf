//! Anthropic Messages: request validation and answers, JSON and SSE.

use super::*;

pub(super) fn validate_anthropic(b: &Map<String, Value>) -> Result<(), String> {
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

pub(super) fn anthropic_stop(r: &Reply) -> (String, Value) {
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

pub(super) fn anthropic_json(r: &Reply) -> Value {
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

pub(super) fn anthropic_sse(r: &Reply) -> Vec<String> {
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
