//! Gemini generateContent: request validation and answers, JSON and SSE.

use super::*;

pub(super) fn validate_gemini(b: &Map<String, Value>, req: &Request) -> Result<(), String> {
    let stream = req.path.ends_with(":streamGenerateContent");
    if stream && req.query != "alt=sse" {
        return Err("streamGenerateContent needs alt=sse for server-sent events".into());
    }
    if !stream && !req.path.ends_with(":generateContent") {
        return Err(format!("unknown method in {}", req.path));
    }
    only_keys(
        b,
        &[
            "contents",
            "systemInstruction",
            "generationConfig",
            "tools",
            "toolConfig",
            "safetySettings",
            "cachedContent",
        ],
        "GenerateContentRequest",
    )
    .map_err(|e| format!("Invalid JSON payload received. Unknown name in {e}"))?;
    if let Some(gc) = b.get("generationConfig") {
        only_keys(
            gc.as_object().ok_or("generationConfig must be an object")?,
            &[
                "maxOutputTokens",
                "temperature",
                "topP",
                "topK",
                "stopSequences",
                "candidateCount",
                "seed",
                "presencePenalty",
                "frequencyPenalty",
                "responseMimeType",
                "responseSchema",
                "responseJsonSchema",
                "thinkingConfig",
                "responseLogprobs",
                "logprobs",
            ],
            "generationConfig",
        )?;
    }
    if let Some(si) = b.get("systemInstruction") {
        if !si
            .get("parts")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty() && p.iter().all(|x| is_str(x.get("text"))))
        {
            return Err("systemInstruction.parts must be text parts".into());
        }
    }
    let contents = b
        .get("contents")
        .and_then(Value::as_array)
        .ok_or("contents is not specified")?;
    if contents.is_empty() {
        return Err("contents is not specified".into());
    }
    let mut prev_calls: Vec<String> = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let role = c.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "model" {
            return Err(format!(
                "contents[{i}].role: Please use a valid role: user, model."
            ));
        }
        let parts = c
            .get("parts")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or(format!("contents[{i}].parts: must not be empty"))?;
        let mut calls = Vec::new();
        for (j, p) in parts.iter().enumerate() {
            let o = p
                .as_object()
                .ok_or(format!("contents[{i}].parts[{j}] must be an object"))?;
            let data: Vec<&String> = o
                .keys()
                .filter(|k| !["thought", "thoughtSignature"].contains(&k.as_str()))
                .collect();
            if data.len() != 1 {
                return Err(format!(
                    "contents[{i}].parts[{j}]: a part must have exactly one data field"
                ));
            }
            match data[0].as_str() {
                "text" | "inlineData" | "fileData" => {}
                "functionCall" if role == "model" => {
                    // Gemini 3: the first function call of a model turn carries a signature
                    // Gemini issued (or the documented skip value); parallel calls after it
                    // may have none; a signature that is there must be valid.
                    let sig = o.get("thoughtSignature").and_then(Value::as_str);
                    let valid = |s: &str| s == SIGNATURE || s == "skip_thought_signature_validator";
                    if (calls.is_empty() && sig.is_none()) || sig.is_some_and(|s| !valid(s)) {
                        return Err(format!("contents[{i}].parts[{j}]: Function call is missing a thought_signature"));
                    }
                    calls.push(
                        p["functionCall"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
                "functionResponse" if role == "user" => {
                    let name = p["functionResponse"]["name"].as_str().unwrap_or_default();
                    if !prev_calls.iter().any(|c| c == name) {
                        return Err(format!("contents[{i}].parts[{j}]: functionResponse '{name}' does not answer a functionCall of the previous turn"));
                    }
                    if !p["functionResponse"]["response"].is_object() {
                        return Err(format!(
                            "contents[{i}].parts[{j}].functionResponse.response must be an object"
                        ));
                    }
                }
                other => {
                    return Err(format!(
                        "contents[{i}].parts[{j}]: '{other}' is not allowed for role {role}"
                    ))
                }
            }
        }
        prev_calls = calls;
    }
    Ok(())
}

pub(super) fn gemini_finish(r: &Reply) -> &'static str {
    if r.finish == "length" {
        "MAX_TOKENS"
    } else {
        "STOP"
    }
}

pub(super) fn gemini_usage(r: &Reply) -> Value {
    let out = r.output_tokens() * u64::from(r.n);
    let mut u = json!({"promptTokenCount": r.input_tokens, "candidatesTokenCount": out, "totalTokenCount": r.input_tokens + out});
    if r.cached_tokens > 0 {
        u["cachedContentTokenCount"] = json!(r.cached_tokens);
    }
    u
}

pub(super) fn gemini_parts(r: &Reply) -> Vec<Value> {
    let mut parts = Vec::new();
    if r.thinking {
        parts.push(json!({"text":"mock reasoning","thought":true}));
    }
    match &r.tool {
        Some((name, args)) => parts
            .push(json!({"functionCall":{"name":name,"args":args},"thoughtSignature":SIGNATURE})),
        None => parts.push(json!({"text": r.text})),
    }
    parts
}

pub(super) fn gemini_json(r: &Reply) -> Value {
    let candidates: Vec<Value> = (0..r.n)
        .map(|i| json!({"content":{"parts":gemini_parts(r),"role":"model"},"finishReason":gemini_finish(r),"index":i}))
        .collect();
    json!({"candidates":candidates,"usageMetadata":gemini_usage(r),"modelVersion":r.model,"responseId":"mockresp"})
}

pub(super) fn gemini_sse(r: &Reply) -> Vec<String> {
    let ev = |v: Value| format!("data: {v}\r\n\r\n");
    let mut out = Vec::new();
    let mut parts: Vec<Value> = Vec::new();
    if r.thinking {
        parts.push(json!({"text":"mock reasoning","thought":true}));
    }
    match &r.tool {
        Some((name, args)) => parts
            .push(json!({"functionCall":{"name":name,"args":args},"thoughtSignature":SIGNATURE})),
        None => parts.extend(pieces(&r.text).into_iter().map(|p| json!({"text": p}))),
    }
    let last = parts.len().saturating_sub(1);
    for (k, part) in parts.into_iter().enumerate() {
        let cands: Vec<Value> = (0..r.n)
            .map(|i| {
                let mut c = json!({"content":{"parts":[part.clone()],"role":"model"},"index":i});
                if k == last {
                    c["finishReason"] = json!(gemini_finish(r));
                }
                c
            })
            .collect();
        let mut v = json!({"candidates":cands,"modelVersion":r.model,"responseId":"mockresp"});
        v["usageMetadata"] = if k == last {
            gemini_usage(r)
        } else {
            json!({"promptTokenCount": r.input_tokens, "totalTokenCount": r.input_tokens})
        };
        out.push(ev(v));
    }
    out
}
