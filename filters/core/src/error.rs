//! The one error type of Sluice: an HTTP status plus the OpenAI error envelope
//! `{"error":{"message","type","param","code"}}`.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<String>,
    /// Seconds, for 429 and 503 answers that say when to come back.
    pub retry_after: Option<u64>,
}

impl GatewayError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        GatewayError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }

    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::invalid_request(message).with_param(param)
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            format!("The model `{model}` does not exist or is not served by this gateway."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    pub fn not_found_url(method: &str, path: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            format!("Invalid URL ({method} {path}): this gateway serves POST /v1/chat/completions and GET /v1/models."),
        )
        .with_code("unknown_url")
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            format!("Request body is larger than the gateway's limit of {limit} bytes."),
        )
        .with_code("request_too_large")
    }

    /// The upstream answered something that is not its own wire format.
    pub fn bad_upstream(message: impl Into<String>) -> Self {
        Self::new(502, "server_error", message).with_code("bad_upstream_response")
    }

    /// The OpenAI envelope as compact JSON bytes.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.envelope()).unwrap_or_default()
    }

    pub fn envelope(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// Response headers that belong with this error (besides content-type).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("content-type", "application/json".to_string())];
        if let Some(s) = self.retry_after {
            h.push(("retry-after", s.to_string()));
        }
        h
    }

    /// The error type and code OpenAI uses for a given status, for provider errors that are
    /// mapped into the envelope.
    pub fn from_status(status: u16, message: impl Into<String>) -> Self {
        let message = message.into();
        match status {
            400 | 422 => Self::invalid_request(message),
            404 => Self::new(404, "invalid_request_error", message).with_code("model_not_found"),
            413 => Self::new(413, "invalid_request_error", message).with_code("request_too_large"),
            429 => Self::new(429, "requests", message).with_code("rate_limit_exceeded"),
            // The provider refused the gateway's own credential: the client cannot fix that,
            // so it is a gateway failure, not an authentication error of the client.
            401 | 403 => Self::new(
                502,
                "server_error",
                format!("The provider rejected the gateway's credentials: {message}"),
            )
            .with_code("upstream_auth_error"),
            408 | 504 => Self::new(504, "server_error", message).with_code("upstream_timeout"),
            // Anthropic's "overloaded" (529) and every 503 mean: try again later.
            503 | 529 => Self::new(503, "server_error", message).with_code("upstream_overloaded"),
            s if (400..500).contains(&s) => Self::new(s, "invalid_request_error", message),
            _ => Self::new(502, "server_error", message).with_code("upstream_error"),
        }
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_all_four_fields() {
        let e = GatewayError::invalid_param("messages", "bad");
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["message"], "bad");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "messages");
        assert!(v["error"]["code"].is_null());
    }

    #[test]
    fn provider_statuses_map_like_openai() {
        assert_eq!(GatewayError::from_status(529, "x").status, 503);
        assert_eq!(GatewayError::from_status(401, "x").status, 502);
        assert_eq!(
            GatewayError::from_status(429, "x").code.as_deref(),
            Some("rate_limit_exceeded")
        );
        assert_eq!(GatewayError::from_status(500, "x").status, 502);
        assert_eq!(GatewayError::from_status(504, "x").status, 504);
        assert_eq!(GatewayError::from_status(409, "x").status, 409);
    }

    #[test]
    fn retry_after_becomes_a_header() {
        let mut e = GatewayError::from_status(429, "slow down");
        e.retry_after = Some(7);
        assert!(e.headers().contains(&("retry-after", "7".to_string())));
    }
}
