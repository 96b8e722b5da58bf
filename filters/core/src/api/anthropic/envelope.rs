//! Anthropic's error envelope. Every refusal on the Messages front is written in it, with the
//! status Anthropic itself would answer (529 for an overloaded upstream).

use crate::error::GatewayError;
use serde_json::{json, Value};

/// Anthropic's `error.type` for a status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

/// The status a Messages client gets: what the gateway decided, except that an upstream that
/// is unavailable (503, Envoy's "no healthy upstream") reads as Anthropic's 529 overloaded.
pub fn status(e: &GatewayError) -> u16 {
    if e.status == 503 {
        529
    } else {
        e.status
    }
}

/// `e` in Anthropic's envelope. The OpenAI `code` (e.g. `insufficient_quota`) has no field
/// there; it stays readable at the message's end.
pub fn value(e: &GatewayError) -> Value {
    let message = match &e.code {
        Some(code) if !e.message.contains(code.as_str()) => format!("{} ({code})", e.message),
        _ => e.message.clone(),
    };
    json!({"type": "error", "error": {"type": error_type(status(e)), "message": message}})
}

/// The body of `e` in Anthropic's envelope.
pub fn body(e: &GatewayError) -> Vec<u8> {
    value(e).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_types_are_anthropics() {
        let e = GatewayError::new(429, "requests", "Rate limit reached.")
            .with_code("rate_limit_exceeded");
        let v: serde_json::Value = serde_json::from_slice(&body(&e)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("(rate_limit_exceeded)"));
        let down = GatewayError::new(503, "server_error", "no healthy upstream");
        assert_eq!(status(&down), 529);
        assert_eq!(error_type(status(&down)), "overloaded_error");
        for (s, t) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (500, "api_error"),
        ] {
            assert_eq!(error_type(s), t);
        }
    }
}
