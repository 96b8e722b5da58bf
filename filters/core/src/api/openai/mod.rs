//! The OpenAI chat-completions request model, its validation, and builders for responses,
//! chunks and usage.
//!
//! The request is parsed once into a [`serde_json::Value`] (so unknown fields survive for
//! OpenAI-compatible backends) and then read into the typed [`ChatRequest`], whose
//! deserialisation errors carry the JSON path of the bad field.
//!
//! - [`model`]: the typed request (messages, content parts, tools) and its deserialisers.
//! - [`validate`]: parsing a body, validation, readers over the request.
//! - [`answer`]: usage, choices, completions, the stream-usage option.
//! - [`embeddings`]: `/v1/embeddings` requests and answers.

use crate::error::GatewayError;
use serde::{de, Deserialize, Deserializer};
use serde_json::{json, Map, Value};

mod answer;
pub mod embeddings;
mod model;
mod validate;

pub use answer::*;
pub use model::*;
pub use validate::*;

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
