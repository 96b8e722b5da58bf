//! A Messages request: checked as Anthropic checks it, and carried to OpenAI chat for backends
//! that are not Anthropic. What OpenAI chat cannot carry without changing the request's meaning
//! (documents other than PDF, images inside tool results, Anthropic's server tools) is a 400
//! naming the field, never a silent drop. What only tunes Anthropic's own serving
//! (`cache_control`, earlier turns' thinking blocks) is left out.

use crate::error::GatewayError;
use serde_json::{json, Map, Value};

fn bad(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_param(param, message)
}

fn str_field<'a>(o: &'a Map<String, Value>, k: &str, at: &str) -> Result<&'a str, GatewayError> {
    o.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&format!("{at}{k}"), format!("{at}{k}: expected a string")))
}

/// The request's shape as the Messages API requires it: `model`, `max_tokens` >= 1, and
/// `messages` of `user` and `assistant` turns, each a string or a list of typed blocks.
pub fn validate(v: &Value) -> Result<(), GatewayError> {
    check(v, true)
}

/// A `count_tokens` request: a Messages request without `max_tokens`.
pub fn validate_count_tokens(v: &Value) -> Result<(), GatewayError> {
    check(v, false)
}

fn check(v: &Value, needs_max_tokens: bool) -> Result<(), GatewayError> {
    let o = v
        .as_object()
        .ok_or_else(|| GatewayError::invalid_request("The body must be a JSON object."))?;
    str_field(o, "model", "")?;
    match o.get("max_tokens").map(Value::as_u64) {
        Some(Some(n)) if n >= 1 => {}
        None if !needs_max_tokens => {}
        _ => {
            return Err(bad(
                "max_tokens",
                "max_tokens: expected an integer of at least 1",
            ))
        }
    }
    let msgs = o
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages", "messages: expected a list of messages"))?;
    if msgs.is_empty() {
        return Err(bad(
            "messages",
            "messages: at least one message is required",
        ));
    }
    for (i, m) in msgs.iter().enumerate() {
        let at = format!("messages.{i}.");
        let m = m.as_object().ok_or_else(|| {
            bad(
                &format!("messages.{i}"),
                format!("messages.{i}: expected an object"),
            )
        })?;
        match str_field(m, "role", &at)? {
            "user" | "assistant" => {}
            r => {
                return Err(bad(
                    &format!("{at}role"),
                    format!(
                        "{at}role: '{r}' is not 'user' or 'assistant' (system goes in 'system')"
                    ),
                ))
            }
        }
        match m.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) => {
                for (j, b) in blocks.iter().enumerate() {
                    let bat = format!("{at}content.{j}.");
                    let b = b.as_object().ok_or_else(|| {
                        bad(
                            &format!("{at}content.{j}"),
                            format!("{at}content.{j}: expected a block"),
                        )
                    })?;
                    str_field(b, "type", &bat)?;
                }
            }
            _ => {
                return Err(bad(
                    &format!("{at}content"),
                    format!("{at}content: expected a string or a list of blocks"),
                ))
            }
        }
    }
    if let Some(s) = o.get("stream") {
        if !s.is_boolean() {
            return Err(bad("stream", "stream: expected true or false"));
        }
    }
    Ok(())
}

fn system_text(v: &Value) -> Result<String, GatewayError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut parts = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                match (
                    b.get("type").and_then(Value::as_str),
                    b.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => parts.push(t),
                    _ => {
                        return Err(bad(
                            &format!("system.{i}"),
                            format!("system.{i}: only text blocks can be sent to this backend"),
                        ))
                    }
                }
            }
            Ok(parts.join("\n\n"))
        }
        _ => Err(bad(
            "system",
            "system: expected a string or a list of text blocks",
        )),
    }
}

fn image_part(b: &Value, at: &str) -> Result<Value, GatewayError> {
    let src = b.get("source").unwrap_or(&Value::Null);
    let url = match src.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let mt = src
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let data = src.get("data").and_then(Value::as_str).unwrap_or_default();
            if mt.is_empty() || data.is_empty() {
                return Err(bad(
                    &format!("{at}source"),
                    format!("{at}source: media_type and data are required"),
                ));
            }
            format!("data:{mt};base64,{data}")
        }
        Some("url") => src
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                bad(
                    &format!("{at}source.url"),
                    format!("{at}source.url: expected a string"),
                )
            })?
            .to_string(),
        _ => {
            return Err(bad(
                &format!("{at}source.type"),
                format!("{at}source.type: only base64 and url images can be sent to this backend"),
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn document_part(b: &Value, at: &str) -> Result<Value, GatewayError> {
    let src = b.get("source").unwrap_or(&Value::Null);
    match (
        src.get("type").and_then(Value::as_str),
        src.get("media_type").and_then(Value::as_str),
        src.get("data").and_then(Value::as_str),
    ) {
        (Some("base64"), Some("application/pdf"), Some(data)) => {
            let name = b
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("document.pdf");
            Ok(json!({"type": "file", "file": {"filename": name,
                                               "file_data": format!("data:application/pdf;base64,{data}")}}))
        }
        _ => Err(bad(
            &format!("{at}source"),
            format!("{at}source: only base64 PDF documents can be sent to this backend"),
        )),
    }
}

/// Text of a `tool_result`'s content (a string or text blocks).
fn tool_result_text(c: Option<&Value>, at: &str) -> Result<String, GatewayError> {
    match c {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(blocks)) => {
            let mut out = Vec::new();
            for (k, b) in blocks.iter().enumerate() {
                match (
                    b.get("type").and_then(Value::as_str),
                    b.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => out.push(t),
                    _ => {
                        return Err(bad(
                            &format!("{at}content.{k}"),
                            format!(
                            "{at}content.{k}: a tool result can carry only text to this backend"
                        ),
                        ))
                    }
                }
            }
            Ok(out.join("\n"))
        }
        Some(_) => Err(bad(
            &format!("{at}content"),
            format!("{at}content: expected a string or blocks"),
        )),
    }
}

fn user_turn(content: &Value, at: &str, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => return Ok(()),
    };
    let mut parts = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bat = format!("{at}content.{j}.");
        match b.get("type").and_then(Value::as_str).unwrap_or_default() {
            "text" => parts.push(json!({"type": "text", "text": str_field(b.as_object().unwrap_or(&Map::new()), "text", &bat)?})),
            "image" => parts.push(image_part(b, &bat)?),
            "document" => parts.push(document_part(b, &bat)?),
            "tool_result" => {
                let id = b.get("tool_use_id").and_then(Value::as_str).ok_or_else(|| {
                    bad(&format!("{bat}tool_use_id"), format!("{bat}tool_use_id: expected a string"))
                })?;
                let mut text = tool_result_text(b.get("content"), &bat)?;
                if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                    text = format!("Error: {text}");
                }
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            other => {
                return Err(bad(
                    &format!("{bat}type"),
                    format!("{bat}type: '{other}' blocks cannot be sent to this backend"),
                ))
            }
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn assistant_turn(content: &Value, at: &str, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({"role": "assistant", "content": s}));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => return Ok(()),
    };
    let (mut text, mut calls) = (String::new(), Vec::new());
    for (j, b) in blocks.iter().enumerate() {
        let bat = format!("{at}content.{j}.");
        match b.get("type").and_then(Value::as_str).unwrap_or_default() {
            "text" => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or_default()),
            "tool_use" => {
                let o = b.as_object().cloned().unwrap_or_default();
                let input = o.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({"id": str_field(&o, "id", &bat)?, "type": "function",
                                  "function": {"name": str_field(&o, "name", &bat)?,
                                               "arguments": input.to_string()}}));
            }
            // Earlier turns' reasoning: other backends neither take it back nor need it.
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(bad(
                    &format!("{bat}type"),
                    format!("{bat}type: '{other}' blocks cannot be sent to this backend"),
                ))
            }
        }
    }
    let mut m = Map::new();
    m.insert("role".into(), json!("assistant"));
    m.insert(
        "content".into(),
        if text.is_empty() {
            Value::Null
        } else {
            json!(text)
        },
    );
    if !calls.is_empty() {
        m.insert("tool_calls".into(), json!(calls));
    }
    out.push(Value::Object(m));
    Ok(())
}

fn tools(v: &Value) -> Result<Vec<Value>, GatewayError> {
    let list = v
        .as_array()
        .ok_or_else(|| bad("tools", "tools: expected a list"))?;
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let at = format!("tools.{i}.");
        if let Some(kind) = t
            .get("type")
            .and_then(Value::as_str)
            .filter(|k| *k != "custom")
        {
            return Err(bad(
                &format!("{at}type"),
                format!(
                    "{at}type: '{kind}' is an Anthropic server tool; this backend cannot run it"
                ),
            ));
        }
        let o = t.as_object().cloned().unwrap_or_default();
        let mut f = Map::new();
        f.insert("name".into(), json!(str_field(&o, "name", &at)?));
        f.insert(
            "parameters".into(),
            o.get("input_schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"})),
        );
        if let Some(d) = o.get("description") {
            f.insert("description".into(), d.clone());
        }
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(out)
}

/// `reasoning_effort` for a thinking budget (the inverse of the OpenAI -> Anthropic mapping).
fn effort(budget: u64) -> &'static str {
    match budget {
        0..=1024 => "low",
        1025..=4096 => "medium",
        _ => "high",
    }
}

/// Top-level fields of a Messages request that OpenAI chat carries (translated below).
const TRANSLATED: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "output_format",
];

/// Top-level fields that only tune how Anthropic serves the request (its prompt cache, tier,
/// region, speed, context editing, diagnostics): left out, the answer's meaning is the same.
const SERVING_ONLY: &[&str] = &[
    "cache_control",
    "service_tier",
    "inference_geo",
    "speed",
    "diagnostics",
    "context_management",
];

/// A validated Messages request as OpenAI chat, for `model` (the backend's model name).
/// Every top-level field is translated, left out as serving-only, or refused with a 400 that
/// names it (Anthropic's server-side features, and fields this gateway does not know yet):
/// never dropped in silence.
pub fn to_openai(v: &Value, model: &str) -> Result<Value, GatewayError> {
    validate(v)?;
    let o = v.as_object().cloned().unwrap_or_default();
    for k in o.keys() {
        if TRANSLATED.contains(&k.as_str()) || SERVING_ONLY.contains(&k.as_str()) {
            continue;
        }
        let k = crate::contract::escape_for_header(k);
        let why = match &*k {
            "mcp_servers" | "container" => "it asks Anthropic's servers to run tools or code",
            _ => "this gateway cannot carry it to a backend that is not Anthropic",
        };
        return Err(bad(
            &k,
            format!("{k}: not supported for this model: {why}. Use a model served by Anthropic, or leave it out."),
        ));
    }
    let mut messages = Vec::new();
    if let Some(s) = o.get("system") {
        messages.push(json!({"role": "system", "content": system_text(s)?}));
    }
    for (i, m) in o
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("messages.{i}.");
        let content = m.get("content").unwrap_or(&Value::Null);
        match m.get("role").and_then(Value::as_str) {
            Some("user") => user_turn(content, &at, &mut messages)?,
            _ => assistant_turn(content, &at, &mut messages)?,
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), json!(messages));
    out.insert(
        "max_tokens".into(),
        o.get("max_tokens").cloned().unwrap_or_default(),
    );
    for k in ["temperature", "top_p", "top_k"] {
        if let Some(x) = o.get(k) {
            out.insert(k.into(), x.clone());
        }
    }
    if let Some(s) = o.get("stop_sequences") {
        out.insert("stop".into(), s.clone());
    }
    if let Some(u) = v.pointer("/metadata/user_id") {
        out.insert("user".into(), u.clone());
    }
    if let Some(t) = o.get("tools") {
        out.insert("tools".into(), json!(tools(t)?));
    }
    if let Some(tc) = o.get("tool_choice") {
        let choice = match tc.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": tc.get("name").cloned().unwrap_or_default()}})
            }
            _ => {
                return Err(bad(
                    "tool_choice.type",
                    "tool_choice.type: expected auto, any, tool or none",
                ))
            }
        };
        out.insert("tool_choice".into(), choice);
        if tc.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    let asked_effort = match v.pointer("/output_config/effort") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(match e.as_str() {
            "low" | "medium" | "high" => e.clone(),
            "xhigh" | "max" => "high".to_string(),
            other => {
                return Err(bad(
                    "output_config.effort",
                    format!(
                        "output_config.effort: '{}' is not low, medium, high, xhigh or max",
                        crate::contract::escape_for_header(other)
                    ),
                ))
            }
        }),
        Some(_) => {
            return Err(bad(
                "output_config.effort",
                "output_config.effort: expected a string",
            ))
        }
    };
    let thinking = v.pointer("/thinking/type").and_then(Value::as_str);
    let budget_effort = match thinking {
        Some("enabled") => Some(
            effort(
                v.pointer("/thinking/budget_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(1024),
            )
            .to_string(),
        ),
        Some("adaptive") => Some("medium".to_string()),
        _ => None,
    };
    if let Some(e) = asked_effort.or(budget_effort) {
        out.insert("reasoning_effort".into(), json!(e));
    }
    let format = v
        .pointer("/output_config/format")
        .filter(|f| !f.is_null())
        .or_else(|| o.get("output_format").filter(|f| !f.is_null()));
    if let Some(f) = format {
        let schema =
            match (f.get("type").and_then(Value::as_str), f.get("schema")) {
                (Some("json_schema"), Some(schema)) if schema.is_object() => schema.clone(),
                _ => return Err(bad(
                    "output_config.format",
                    "output_config.format: expected {\"type\": \"json_schema\", \"schema\": {...}}",
                )),
            };
        out.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}}),
        );
    }
    if o.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_top_level_field_is_carried_left_out_or_refused() {
        let base = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        let with = |k: &str, x: Value| {
            let mut b = base.clone();
            b[k] = x;
            to_openai(&b, "gpt")
        };
        let o = with("output_config", json!({"effort": "max", "format": {"type": "json_schema", "schema": {"type": "object"}}})).unwrap();
        assert_eq!(o["reasoning_effort"], "high");
        assert_eq!(
            o["response_format"]["json_schema"]["schema"],
            json!({"type": "object"})
        );
        let o = with("thinking", json!({"type": "adaptive"})).unwrap();
        assert_eq!(o["reasoning_effort"], "medium");
        assert!(with("cache_control", json!({"type": "ephemeral"})).is_ok());
        assert!(with("output_config", json!({"effort": "huge"})).is_err());
        for k in ["mcp_servers", "container", "brand_new_field"] {
            let e = with(k, json!([])).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(k)), "{k}");
        }
    }

    #[test]
    fn a_conversation_with_tools_becomes_openai_chat() {
        let v = json!({
            "model": "claude-x", "max_tokens": 256, "stream": true,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "stop_sequences": ["END"], "metadata": {"user_id": "u1"}, "top_k": 5,
            "thinking": {"type": "enabled", "budget_tokens": 4000},
            "tools": [{"name": "weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Paris?"},
                                             {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                                  {"type": "text", "text": "Checking."},
                                                  {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "20C"}]},
                                             {"type": "text", "text": "Thanks"}]}
            ]
        });
        let o = to_openai(&v, "gpt-4o").unwrap();
        assert_eq!(o["model"], "gpt-4o");
        assert_eq!(
            o["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(
            o["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,iVBO"
        );
        let a = &o["messages"][2];
        assert_eq!(a["content"], "Checking.");
        assert_eq!(
            a["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Paris"}"#
        );
        assert_eq!(
            o["messages"][3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "20C"})
        );
        assert_eq!(o["messages"][4]["content"][0]["text"], "Thanks");
        assert_eq!(
            (o["stop"].clone(), o["user"].clone()),
            (json!(["END"]), json!("u1"))
        );
        assert_eq!(
            o["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(
            (o["tool_choice"].clone(), o["parallel_tool_calls"].clone()),
            (json!("required"), json!(false))
        );
        assert_eq!(o["reasoning_effort"], "medium");
        assert_eq!(o["stream_options"]["include_usage"], true);
        assert_eq!(o["max_tokens"], 256);
        // What passes OpenAI validation is what a backend translator reads.
        assert!(crate::openai::validate(&o).is_ok(), "{o}");
    }

    #[test]
    fn what_cannot_be_carried_is_a_400_naming_the_field() {
        let base = |content: Value| json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": content}]});
        for (v, param) in [
            (json!({"model": "m", "messages": []}), "max_tokens"),
            (
                json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
                "messages.0.role",
            ),
            (
                base(json!([{"type": "document", "source": {"type": "text", "data": "x"}}])),
                "messages.0.content.0.source",
            ),
            (
                base(
                    json!([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {}}]}]),
                ),
                "messages.0.content.0.content.0",
            ),
            (
                base(json!([{"type": "server_tool_use", "id": "x"}])),
                "messages.0.content.0.type",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                    "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tools.0.type",
            ),
        ] {
            let e = to_openai(&v, "gpt").unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(param)), "{v}");
        }
        // A PDF goes as an OpenAI file part.
        let pdf = base(
            json!([{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]),
        );
        let o = to_openai(&pdf, "gpt").unwrap();
        assert_eq!(
            o["messages"][0]["content"][0]["file"]["file_data"],
            "data:application/pdf;base64,JVBE"
        );
    }
}
