//! The OpenAI chat-completions request model, its validation, and builders for responses,
//! chunks and usage.
//!
//! The request is parsed once into a [`serde_json::Value`] (so unknown fields survive for
//! OpenAI-compatible backends) and then read into the typed [`ChatRequest`], whose
//! deserialisation errors carry the JSON path of the bad field.

use crate::error::GatewayError;
use serde::{de, Deserialize, Deserializer};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    #[serde(default)]
    pub modalities: Option<Vec<String>>,
    /// Every other field, kept for OpenAI-compatible backends.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawMessage")]
pub enum Message {
    System {
        content: Content,
        name: Option<String>,
    },
    Developer {
        content: Content,
        name: Option<String>,
    },
    User {
        content: Content,
        name: Option<String>,
    },
    Assistant {
        content: Option<Content>,
        tool_calls: Option<Vec<ToolCall>>,
        name: Option<String>,
        reasoning_content: Option<String>,
        refusal: Option<String>,
    },
    Tool {
        content: Content,
        tool_call_id: String,
    },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

/// A message as written, read field by field so that errors name the field's path.
#[derive(Deserialize)]
struct RawMessage {
    role: Role,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

impl TryFrom<RawMessage> for Message {
    type Error = String;
    fn try_from(m: RawMessage) -> Result<Self, String> {
        let need = |c: Option<Content>, role: &str| {
            c.ok_or_else(|| format!("'content' is required in a {role} message"))
        };
        Ok(match m.role {
            Role::System => Message::System {
                content: need(m.content, "system")?,
                name: m.name,
            },
            Role::Developer => Message::Developer {
                content: need(m.content, "developer")?,
                name: m.name,
            },
            Role::User => Message::User {
                content: need(m.content, "user")?,
                name: m.name,
            },
            Role::Assistant => {
                if m.content.is_none()
                    && m.tool_calls.as_ref().is_none_or(Vec::is_empty)
                    && m.refusal.is_none()
                {
                    return Err("an assistant message needs 'content' or 'tool_calls'".into());
                }
                Message::Assistant {
                    content: m.content,
                    tool_calls: m.tool_calls,
                    name: m.name,
                    reasoning_content: m.reasoning_content,
                    refusal: m.refusal,
                }
            }
            Role::Tool => Message::Tool {
                content: need(m.content, "tool")?,
                tool_call_id: m
                    .tool_call_id
                    .ok_or("'tool_call_id' is required in a tool message")?,
            },
        })
    }
}

/// Message content: a string or a list of parts.
#[derive(Debug, Clone)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
    InputAudio { input_audio: Value },
    File { file: Value },
    Refusal { refusal: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub function: Option<FunctionDef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    Function(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaSpec },
}

#[derive(Debug, Clone, Deserialize)]
pub struct JsonSchemaSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub schema: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Content::Text(s)),
            Value::Array(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let part = ContentPart::deserialize(item)
                        .map_err(|e| de::Error::custom(format!("content part {i}: {e}")))?;
                    parts.push(part);
                }
                Ok(Content::Parts(parts))
            }
            other => Err(de::Error::custom(format!(
                "expected a string or an array of content parts, got {}",
                type_name(&other)
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::String(s) => match s.as_str() {
                "auto" => Ok(ToolChoice::Auto),
                "none" => Ok(ToolChoice::None),
                "required" => Ok(ToolChoice::Required),
                other => Err(de::Error::custom(format!(
                    "expected 'auto', 'none', 'required' or a named function, got '{other}'"
                ))),
            },
            Value::Object(o) => match o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
            {
                Some(name) => Ok(ToolChoice::Function(name.to_string())),
                None => Err(de::Error::custom(
                    "expected {\"type\":\"function\",\"function\":{\"name\":...}}",
                )),
            },
            other => Err(de::Error::custom(format!(
                "expected a string or an object, got {}",
                type_name(other)
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Stop::One(s)),
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(de::Error::custom(format!(
                        "stop sequences must be strings, got {}",
                        type_name(&other)
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Stop::Many),
            other => Err(de::Error::custom(format!(
                "expected a string or an array of strings, got {}",
                type_name(&other)
            ))),
        }
    }
}

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

/// OpenAI usage with the optional details objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    pub fn to_json(&self) -> Value {
        let mut u = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens.saturating_add(self.completion_tokens),
        });
        if let Some(obj) = u.as_object_mut() {
            if let Some(c) = self.cached_tokens {
                obj.insert(
                    "prompt_tokens_details".into(),
                    json!({ "cached_tokens": c }),
                );
            }
            if let Some(r) = self.reasoning_tokens {
                obj.insert(
                    "completion_tokens_details".into(),
                    json!({ "reasoning_tokens": r }),
                );
            }
        }
        u
    }
}

/// One choice of a complete (non-streaming) answer.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<(String, String, String)>,
    pub finish_reason: Option<&'static str>,
}

pub struct Completion<'a> {
    pub id: &'a str,
    pub model: &'a str,
    pub created: u64,
    pub choices: Vec<Choice>,
    pub usage: Option<Usage>,
}

impl Completion<'_> {
    pub fn to_bytes(&self) -> Result<Vec<u8>, GatewayError> {
        serde_json::to_vec(&self.to_json()).map_err(|e| GatewayError::bad_upstream(e.to_string()))
    }

    pub fn to_json(&self) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut msg = Map::new();
                msg.insert("role".into(), json!("assistant"));
                msg.insert("content".into(), json!(c.content));
                if let Some(r) = &c.reasoning {
                    msg.insert("reasoning_content".into(), json!(r));
                }
                if !c.tool_calls.is_empty() {
                    let calls: Vec<Value> = c
                        .tool_calls
                        .iter()
                        .map(|(id, name, args)| {
                            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
                        })
                        .collect();
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                msg.insert("refusal".into(), Value::Null);
                json!({"index": i, "message": msg, "logprobs": null, "finish_reason": c.finish_reason})
            })
            .collect();
        let mut v = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let (Some(u), Some(obj)) = (self.usage, v.as_object_mut()) {
            obj.insert("usage".into(), u.to_json());
        }
        v
    }
}

/// Makes a streaming request ask for usage, so the gateway always knows what a stream cost.
/// Returns `(asked, new_body)`: whether the client asked for usage itself, and the body to send
/// when it had to change. When `stream_options` is absent (the common case) the field is
/// inserted after the opening brace of the original bytes instead of re-encoding the body.
pub fn force_stream_usage(body: &[u8], value: &Value) -> (bool, Option<Vec<u8>>) {
    let Some(obj) = value.as_object() else {
        return (false, None);
    };
    if obj.get("stream").and_then(Value::as_bool) != Some(true) {
        return (false, None);
    }
    match obj.get("stream_options") {
        Some(opts) if opts.get("include_usage").and_then(Value::as_bool) == Some(true) => {
            (true, None)
        }
        None => {
            let Some(brace) = body.iter().position(|&b| b == b'{') else {
                return (false, None);
            };
            const FIELD: &[u8] = b"\"stream_options\":{\"include_usage\":true},";
            let mut out = Vec::with_capacity(body.len() + FIELD.len());
            out.extend_from_slice(body.get(..=brace).unwrap_or_default());
            out.extend_from_slice(FIELD);
            out.extend_from_slice(body.get(brace + 1..).unwrap_or_default());
            (false, Some(out))
        }
        Some(_) => {
            let mut v = value.clone();
            if let Some(o) = v.as_object_mut() {
                o.insert("stream_options".into(), json!({"include_usage": true}));
            }
            (false, serde_json::to_vec(&v).ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> GatewayError {
        parse_body(body.as_bytes())
            .and_then(|v| validate(&v))
            .unwrap_err()
    }

    #[test]
    fn precise_messages_for_bad_bodies() {
        assert!(err("").message.contains("empty"));
        assert!(err("{").message.contains("could not parse"));
        assert!(err("[1]").message.contains("must be a JSON object"));
        assert_eq!(err(r#"{"messages":[]}"#).param.as_deref(), Some("model"));
        assert_eq!(
            err(r#"{"model":3,"messages":[]}"#).param.as_deref(),
            Some("model")
        );
        assert!(err(r#"{"model":"m"}"#).message.contains("messages"));
        assert!(err(r#"{"model":"m","messages":[]}"#)
            .message
            .contains("at least one"));
        assert!(err(r#"{"model":"m","messages":{}}"#)
            .message
            .contains("must be an array"));
        let e = err(r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#);
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        assert!(e.message.contains("robot"), "{}", e.message);
        let e = err(r#"{"model":"m","messages":[{"role":"user","content":5}]}"#);
        assert_eq!(e.param.as_deref(), Some("messages[0].content"), "{e:?}");
        let e = err(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}"#);
        assert!(e.message.contains("content part 0"), "{}", e.message);
        let e =
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#);
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}"#);
        assert_eq!(e.param.as_deref(), Some("n"));
        let e = err(r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#);
        assert!(e.message.contains("tool_call_id"), "{}", e.message);
    }

    #[test]
    fn non_utf8_body_is_a_400() {
        let e = parse_body(b"{\"model\":\"\xff\"}").unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn accepts_a_full_request_and_keeps_unknown_fields() {
        let v = parse_body(
            br#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAA"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"r"}],"stop":["x"],"tool_choice":{"type":"function","function":{"name":"f"}},"response_format":{"type":"json_object"},"custom_thing":1}"#,
        )
        .unwrap();
        let r = validate(&v).unwrap();
        assert_eq!(r.messages.len(), 4);
        assert_eq!(r.tool_choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(r.stop, Some(Stop::Many(vec!["x".into()])));
        assert!(r.extra.contains_key("custom_thing"));
    }

    #[test]
    fn forces_usage_on_streams_only() {
        let check = |body: &str| {
            let v = parse_body(body.as_bytes()).unwrap();
            let (asked, out) = force_stream_usage(body.as_bytes(), &v);
            (
                asked,
                out.map(|b| serde_json::from_slice::<Value>(&b).unwrap()),
            )
        };
        let (asked, out) = check(r#" {"stream":true,"model":"m"}"#);
        let out = out.unwrap();
        assert!(!asked);
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(out["model"], "m");
        let (_, out) = check(r#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#);
        assert_eq!(
            out.unwrap()["stream_options"],
            json!({"include_usage": true})
        );
        assert_eq!(
            check(r#"{"stream":true,"stream_options":{"include_usage":true}}"#),
            (true, None)
        );
        assert_eq!(check(r#"{"stream":false}"#), (false, None));
        assert_eq!(check(r#"{}"#), (false, None));
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            parse_data_url("data:image/png;base64,AAAA"),
            Some(("image/png", "AAAA"))
        );
        assert_eq!(parse_data_url("data:,hello"), None);
        assert_eq!(parse_data_url("data:image/png,AAAA"), None);
    }
}
