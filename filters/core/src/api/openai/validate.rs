//! Parsing and validation of a request body, and readers over the typed request.

use super::*;

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses request bytes into a JSON object, with a clear 400 for anything else.
pub fn parse_body(body: &[u8]) -> Result<Value, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::invalid_request(
            "The request body is empty: expected a JSON object with 'model' and 'messages'.",
        ));
    }
    // Checked up front for a precise message; parsing from &str then skips a second check.
    let text = std::str::from_utf8(body).map_err(|e| {
        GatewayError::invalid_request(format!(
            "The request body is not valid UTF-8 (invalid byte at offset {}).",
            e.valid_up_to()
        ))
    })?;
    let v = crate::json::parse_unique(text).map_err(|e| {
        GatewayError::invalid_request(format!(
            "We could not parse the JSON body of your request ({e}). The body must be a JSON object without duplicate keys."
        ))
    })?;
    if !v.is_object() {
        return Err(GatewayError::invalid_request(format!(
            "The request body must be a JSON object, got {}.",
            type_name(&v)
        )));
    }
    Ok(v)
}

/// A chat request from its body: parsed (duplicate keys refused) and validated.
pub fn chat_request(body: &[u8]) -> Result<ChatRequest, GatewayError> {
    validate(&parse_body(body)?)
}

/// OpenAI's `finish_reason` values; typed clients refuse any other.
pub const FINISH_REASONS: &[&str] = &[
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "function_call",
];

/// The OpenAI `finish_reason` for what an OpenAI-compatible server wrote (vLLM, TGI, llama.cpp
/// and others send `eos`, `max_tokens`, `end_turn`...): known values stay, length-like ones
/// become `length`, tool-like ones `tool_calls`, filter-like ones `content_filter`, and
/// anything else `stop` (the model stopped, for a reason the API has no word for).
pub fn normal_finish_reason(raw: &str) -> &'static str {
    if let Some(known) = FINISH_REASONS.iter().find(|r| **r == raw) {
        return known;
    }
    let r = raw.to_ascii_lowercase();
    if r.contains("length") || r.contains("max") || r.contains("token_limit") {
        "length"
    } else if r.contains("tool") || r.contains("function") {
        "tool_calls"
    } else if r.contains("filter") || r.contains("safety") || r.contains("blocked") {
        "content_filter"
    } else {
        "stop"
    }
}

/// Reads a parsed body into the typed request and checks what the types cannot.
pub fn validate(v: &Value) -> Result<ChatRequest, GatewayError> {
    match v.get("model") {
        None | Some(Value::Null) => {
            return Err(GatewayError::invalid_param(
                "model",
                "you must provide a model parameter",
            ))
        }
        Some(Value::String(s)) if s.is_empty() => {
            return Err(GatewayError::invalid_param(
                "model",
                "'model' must not be empty",
            ))
        }
        Some(Value::String(s)) => crate::contract::check_model(s)?,
        Some(other) => {
            return Err(GatewayError::invalid_param(
                "model",
                format!("'model' must be a string, got {}", type_name(other)),
            ))
        }
    }
    match v.get("messages") {
        None | Some(Value::Null) => {
            return Err(GatewayError::invalid_param(
                "messages",
                "Missing required parameter: 'messages'.",
            ))
        }
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(GatewayError::invalid_param(
                "messages",
                "'messages' must contain at least one message.",
            ))
        }
        Some(Value::Array(_)) => {}
        Some(other) => {
            return Err(GatewayError::invalid_param(
                "messages",
                format!("'messages' must be an array, got {}", type_name(other)),
            ))
        }
    }
    let req: ChatRequest = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            GatewayError::invalid_request(format!("Invalid request: {inner}"))
        } else {
            GatewayError::invalid_param(&path, format!("Invalid value for '{path}': {inner}"))
        }
    })?;
    if let Some(n) = req.n {
        if n == 0 || n > 128 {
            return Err(GatewayError::invalid_param(
                "n",
                format!("'n' must be between 1 and 128, got {n}"),
            ));
        }
    }
    for (key, val) in [("temperature", req.temperature), ("top_p", req.top_p)] {
        if let Some(x) = val {
            if !x.is_finite() || x < 0.0 {
                return Err(GatewayError::invalid_param(
                    key,
                    format!("'{key}' must be a non-negative number"),
                ));
            }
        }
    }
    if let Some(tools) = &req.tools {
        for (i, t) in tools.iter().enumerate() {
            if t.kind == "function" && t.function.is_none() {
                return Err(GatewayError::invalid_param(
                    &format!("tools[{i}].function"),
                    "a function tool needs a 'function' object with a 'name'",
                ));
            }
        }
    }
    Ok(req)
}

impl ChatRequest {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn wants_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// `max_completion_tokens` wins over the older `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The function tools, refusing the tool kinds a non-OpenAI backend cannot run.
    pub fn function_tools(&self, provider: &str) -> Result<Vec<&FunctionDef>, GatewayError> {
        let mut out = Vec::new();
        for (i, t) in self.tools.iter().flatten().enumerate() {
            match (&t.function, t.kind.as_str()) {
                (Some(f), "function") => out.push(f),
                _ => {
                    return Err(GatewayError::invalid_param(
                        &format!("tools[{i}].type"),
                        format!("tool type '{}' is not supported by the {provider} backend; only 'function' tools are", t.kind),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// Refuses fields that would change the answer's meaning on a backend that lacks them.
    pub fn refuse_unsupported(&self, provider: &str, allow_n: bool) -> Result<(), GatewayError> {
        if !allow_n && self.n.unwrap_or(1) > 1 {
            return Err(GatewayError::invalid_param(
                "n",
                format!("'n' greater than 1 is not supported by the {provider} backend"),
            ));
        }
        if self.logprobs == Some(true) {
            return Err(GatewayError::invalid_param(
                "logprobs",
                format!("'logprobs' is not supported by the {provider} backend"),
            ));
        }
        if self.modalities.iter().flatten().any(|m| m != "text") {
            return Err(GatewayError::invalid_param(
                "modalities",
                format!("only text output is supported by the {provider} backend"),
            ));
        }
        Ok(())
    }
}

impl Content {
    /// All text of the content, parts joined without separator (as OpenAI concatenates them).
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    ContentPart::Refusal { refusal } => Some(refusal.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

/// A `data:` URL split into media type and base64 payload.
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    if media.is_empty() {
        return None;
    }
    Some((media, data))
}

/// Where an image part points, checked once for every backend.
pub enum ImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url(&'a str),
}

pub fn image_source<'a>(url: &'a str, param: &str) -> Result<ImageSource<'a>, GatewayError> {
    if url.starts_with("data:") {
        return match parse_data_url(url) {
            Some((media_type, data)) => Ok(ImageSource::Base64 { media_type, data }),
            None => Err(GatewayError::invalid_param(
                param,
                "an image data URL must look like data:<media type>;base64,<data>",
            )),
        };
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(ImageSource::Url(url));
    }
    Err(GatewayError::invalid_param(
        param,
        "an image URL must be an http(s) URL or a base64 data URL",
    ))
}
