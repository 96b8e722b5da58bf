//! The request: OpenAI chat to the provider's format.

use super::*;

pub(super) fn push(
    contents: &mut Vec<(&'static str, Vec<Value>)>,
    role: &'static str,
    part: Value,
) {
    match contents.last_mut() {
        Some((r, parts)) if *r == role => parts.push(part),
        _ => contents.push((role, vec![part])),
    }
}

pub(super) fn parts_of(content: &Content, param: &str) -> Result<Vec<Value>, GatewayError> {
    match content {
        Content::Text(s) => Ok(if s.is_empty() {
            vec![]
        } else {
            vec![json!({"text": s})]
        }),
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
                    ContentPart::ImageUrl { image_url } => match image_source(&image_url.url, &param)? {
                        ImageSource::Base64 { media_type, data } => {
                            out.push(json!({"inlineData": {"mimeType": media_type, "data": data}}))
                        }
                        ImageSource::Url(_) => {
                            return Err(GatewayError::invalid_param(
                                &param,
                                "the gemini backend needs images inline: send a base64 data URL (data:image/png;base64,...)",
                            ))
                        }
                    },
                    ContentPart::InputAudio { .. } | ContentPart::File { .. } => {
                        return Err(GatewayError::invalid_param(
                            &param,
                            "audio and file content parts are not supported by the gemini backend",
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Splits a tool-call id made by [`make_call_id`] into Gemini's id and thought signature.
pub(super) fn split_call_id(id: &str) -> (&str, Option<&str>) {
    match id.split_once(SIGNATURE_SEP) {
        Some((id, sig)) => (id, Some(sig)),
        None => (id, None),
    }
}

pub(super) fn make_call_id(id: &str, signature: Option<&str>) -> String {
    match signature {
        Some(sig) => format!("{id}{SIGNATURE_SEP}{sig}"),
        None => id.to_string(),
    }
}

pub fn request(req: &ChatRequest) -> Result<Value, GatewayError> {
    req.refuse_unsupported(PROVIDER, true)?;
    let mut system = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // Tool-call id -> function name, for functionResponse (Gemini wants the name).
    let mut call_names: Vec<(&str, &str)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let param = format!("messages[{i}].content");
        match m {
            Message::System { content, .. } | Message::Developer { content, .. } => {
                for p in parts_of(content, &param)? {
                    if p.get("text").is_none() {
                        return Err(GatewayError::invalid_param(
                            &param,
                            "system messages may only contain text",
                        ));
                    }
                    system.push(p);
                }
            }
            Message::User { content, .. } => {
                for p in parts_of(content, &param)? {
                    push(&mut contents, "user", p);
                }
            }
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                if let Some(c) = content {
                    for p in parts_of(c, &param)? {
                        push(&mut contents, "model", p);
                    }
                }
                // Gemini 3 wants the first function call of a model turn signed. A turn that
                // Gemini did not write (another provider's, or a failover mid-conversation) has
                // no signature: it gets the value Gemini documents for skipping the check.
                let unsigned_turn = !tool_calls
                    .iter()
                    .flatten()
                    .any(|c| split_call_id(&c.id).1.is_some());
                for (j, call) in tool_calls.iter().flatten().enumerate() {
                    let param = format!("messages[{i}].tool_calls[{j}].function.arguments");
                    let args = match serde_json::from_str::<Value>(&call.function.arguments) {
                        Ok(v @ Value::Object(_)) => v,
                        Ok(_) if call.function.arguments.trim().is_empty() => json!({}),
                        Err(_) if call.function.arguments.trim().is_empty() => json!({}),
                        Ok(_) => {
                            return Err(GatewayError::invalid_param(
                                &param,
                                "tool call arguments must be a JSON object",
                            ))
                        }
                        Err(e) => {
                            return Err(GatewayError::invalid_param(
                                &param,
                                format!("tool call arguments are not valid JSON: {e}"),
                            ))
                        }
                    };
                    let (id, sig) = split_call_id(&call.id);
                    let sig = sig.or((unsigned_turn && j == 0).then_some(SKIP_SIGNATURE));
                    let mut part = json!({"functionCall": {"id": id, "name": call.function.name, "args": args}});
                    if let (Some(sig), Some(o)) = (sig, part.as_object_mut()) {
                        o.insert("thoughtSignature".into(), json!(sig));
                    }
                    push(&mut contents, "model", part);
                    call_names.push((call.id.as_str(), call.function.name.as_str()));
                }
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                let name = call_names
                    .iter()
                    .find(|(id, _)| id == tool_call_id)
                    .map(|(_, n)| *n)
                    .ok_or_else(|| {
                        GatewayError::invalid_param(
                            &format!("messages[{i}].tool_call_id"),
                            format!("tool_call_id '{tool_call_id}' does not match a tool call of an earlier assistant message"),
                        )
                    })?;
                let text = content.text();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({"content": text}),
                };
                let (id, _) = split_call_id(tool_call_id);
                push(
                    &mut contents,
                    "user",
                    json!({"functionResponse": {"id": id, "name": name, "response": response}}),
                );
            }
        }
    }
    if contents.is_empty() {
        return Err(GatewayError::invalid_param(
            "messages",
            "the gemini backend needs at least one user or assistant message besides system messages",
        ));
    }
    let mut out = Map::new();
    out.insert(
        "contents".into(),
        Value::Array(
            contents
                .into_iter()
                .map(|(role, parts)| json!({"role": role, "parts": parts}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let mut gc = Map::new();
    if let Some(m) = req.max_output_tokens() {
        gc.insert("maxOutputTokens".into(), json!(m));
    }
    if let Some(t) = req.temperature {
        gc.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        gc.insert("topP".into(), json!(p));
    }
    if let Some(s) = &req.stop {
        gc.insert("stopSequences".into(), json!(s.to_vec()));
    }
    if let Some(n) = req.n {
        gc.insert("candidateCount".into(), json!(n));
    }
    if let Some(s) = req.seed {
        gc.insert("seed".into(), json!(s));
    }
    if let Some(p) = req.presence_penalty {
        gc.insert("presencePenalty".into(), json!(p));
    }
    if let Some(p) = req.frequency_penalty {
        gc.insert("frequencyPenalty".into(), json!(p));
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            gc.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            gc.insert("responseMimeType".into(), json!("application/json"));
            if let Some(s) = &json_schema.schema {
                gc.insert("responseJsonSchema".into(), s.clone());
            }
        }
    }
    match req.reasoning_effort.as_deref() {
        None => {}
        Some("none") => {
            gc.insert("thinkingConfig".into(), json!({"thinkingBudget": 0}));
        }
        Some(e @ ("minimal" | "low" | "medium" | "high")) => {
            let budget = match e {
                "minimal" | "low" => 1024,
                "medium" => 8192,
                _ => 24576,
            };
            gc.insert(
                "thinkingConfig".into(),
                json!({"thinkingBudget": budget, "includeThoughts": true}),
            );
        }
        Some(other) => {
            return Err(GatewayError::invalid_param(
                "reasoning_effort",
                format!(
                "'reasoning_effort' must be one of none, minimal, low, medium, high; got '{other}'"
            ),
            ))
        }
    }
    if !gc.is_empty() {
        out.insert("generationConfig".into(), Value::Object(gc));
    }
    let decls: Vec<Value> = req
        .function_tools(PROVIDER)?
        .into_iter()
        .map(|f| {
            let mut d = Map::new();
            d.insert("name".into(), json!(f.name));
            if let Some(desc) = &f.description {
                d.insert("description".into(), json!(desc));
            }
            if let Some(p) = &f.parameters {
                d.insert("parametersJsonSchema".into(), p.clone());
            }
            Value::Object(d)
        })
        .collect();
    if !decls.is_empty() {
        out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
        let fc = match &req.tool_choice {
            None | Some(ToolChoice::Auto) => json!({"mode": "AUTO"}),
            Some(ToolChoice::None) => json!({"mode": "NONE"}),
            Some(ToolChoice::Required) => json!({"mode": "ANY"}),
            Some(ToolChoice::Function(name)) => {
                json!({"mode": "ANY", "allowedFunctionNames": [name]})
            }
        };
        out.insert("toolConfig".into(), json!({"functionCallingConfig": fc}));
    }
    Ok(Value::Object(out))
}
