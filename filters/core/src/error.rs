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

    /// `model` is a name `contract::check_model` accepted, or escaped by the caller.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            format!("The model `{model}` does not exist or is not served by this gateway."),
        )
        .with_param("model")
        .with_code("model_not_found")
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
            401 | 403 => Self::new(502, "server_error", message).with_code("upstream_auth_error"),
            408 | 504 => Self::new(504, "server_error", message).with_code("upstream_timeout"),
            // Anthropic's "overloaded" (529) and every 503 mean: try again later.
            503 | 529 => Self::new(503, "server_error", message).with_code("upstream_overloaded"),
            s if (400..500).contains(&s) => Self::new(s, "invalid_request_error", message),
            _ => Self::new(502, "server_error", message).with_code("upstream_error"),
        }
    }
}

/// Statuses whose provider message tells the client what to fix in its request; it is passed
/// on, scrubbed. Every other status gets the gateway's own words (an authentication failure or
/// a server error is where a provider quotes the credential it received).
const CLIENT_FIXABLE: &[u16] = &[400, 404, 409, 413, 422, 429];

/// Longest provider message passed on.
const MAX_PROVIDER_MESSAGE: usize = 512;

/// Words that mark a message as being about credentials: such a message is never passed on,
/// whatever it looks like (a key has no shape the gateway can rely on; it never sees the key,
/// which the credential injector adds after it).
const CREDENTIAL_CUES: &[&str] = &[
    "key",
    "keys",
    "apikey",
    "token",
    "bearer",
    "auth",
    "authorization",
    "authentication",
    "unauthorized",
    "unauthenticated",
    "credential",
    "credentials",
    "secret",
    "password",
    "signature",
];

/// A provider's error mapped into the gateway's envelope: the status and type OpenAI would use,
/// the provider's error type/code when it is an identifier, and the provider's message only
/// where the client can act on it (a 4xx about the request) and when it says nothing about
/// credentials, with credential-shaped strings removed all the same ([`scrub_secrets`]).
pub fn from_provider(
    provider: &str,
    status: u16,
    kind: Option<&str>,
    message: Option<&str>,
) -> GatewayError {
    let kind = kind.filter(|k| {
        !k.is_empty()
            && k.len() <= 64
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    });
    // Whole words (`max_tokens` is not about a token).
    let about_credentials = |m: &str| {
        m.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| CREDENTIAL_CUES.iter().any(|c| w.eq_ignore_ascii_case(c)))
    };
    let passed = message.filter(|m| CLIENT_FIXABLE.contains(&status) && !about_credentials(m));
    let text = match passed {
        Some(m) if !m.trim().is_empty() => format!("{provider}: {}", scrub_secrets(m)),
        _ => {
            let what = match status {
                401 | 403 => "rejected the gateway's credentials",
                _ => "answered with an error",
            };
            match kind {
                Some(k) => format!("The {provider} backend {what} (HTTP {status}, {k})."),
                None => format!("The {provider} backend {what} (HTTP {status})."),
            }
        }
    };
    let mut err = GatewayError::from_status(status, text);
    if err.code.is_none() {
        err.code = kind.map(str::to_string);
    }
    err
}

/// Replaces what looks like a credential with `[redacted]`: a word of 8+ characters with a
/// digit or mixed case after `Bearer`, `key`, `token`, `secret` or `password`; words with a known key prefix (`sk-`, `AIza`, `AKIA`,
/// `ASIA`, `ya29.`, `ghp_`, `xox`); and long random-looking words (24+ characters mixing upper
/// case, lower case and digits, or 32+ hex digits). The text is also cut to 512 bytes and
/// stripped of control characters.
pub fn scrub_secrets(text: &str) -> String {
    const PREFIXES: &[&str] = &["sk-", "sk_", "AIza", "AKIA", "ASIA", "ya29.", "ghp_", "xox"];
    const CUES: &[&str] = &[
        "bearer", "key", "api-key", "api_key", "apikey", "token", "secret", "password",
    ];
    let is_word = |c: char| c.is_ascii_alphanumeric() || "-_.+/~*".contains(c);
    let mut out = String::with_capacity(text.len().min(MAX_PROVIDER_MESSAGE));
    let mut after_cue = false;
    let mut rest = text;
    while !rest.is_empty() && out.len() < MAX_PROVIDER_MESSAGE {
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        if word.is_empty() {
            let mut chars = tail.chars();
            if let Some(c) = chars.next() {
                out.push(if c.is_control() { ' ' } else { c });
            }
            rest = chars.as_str();
            continue;
        }
        let bare = word.trim_end_matches('.');
        let lower = bare.to_ascii_lowercase();
        let hex = bare.len() >= 32 && bare.bytes().all(|b| b.is_ascii_hexdigit());
        let mixed = bare.len() >= 24
            && bare.bytes().any(|b| b.is_ascii_uppercase())
            && bare.bytes().any(|b| b.is_ascii_lowercase())
            && bare.bytes().any(|b| b.is_ascii_digit());
        let random = bare.bytes().any(|b| b.is_ascii_digit())
            || (bare.bytes().any(|b| b.is_ascii_uppercase())
                && bare.bytes().any(|b| b.is_ascii_lowercase()));
        let secret = (after_cue && bare.len() >= 8 && random)
            || PREFIXES
                .iter()
                .any(|p| bare.starts_with(p) && bare.len() > p.len() + 3)
            || hex
            || mixed;
        if secret {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
        // "key: X", "key=X", "Bearer X", "token 'X'": the next word is the value.
        after_cue = CUES
            .iter()
            .any(|c| lower == *c || lower.ends_with(&format!("_{c}")));
        rest = tail;
    }
    if out.len() >= MAX_PROVIDER_MESSAGE {
        let mut cut = MAX_PROVIDER_MESSAGE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
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
    fn provider_text_is_passed_on_only_scrubbed_and_where_it_helps() {
        let keys = [
            "sk-proj-AbCdEf0123456789xyzXYZ",
            "sk-ant-api03-Zx9_abcDEF123456789-qwerty",
            "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv",
            "AKIAIOSFODNN7EXAMPLE",
            "0123456789abcdef0123456789abcdef",
            "ya29.a0AfH6SMBxyz",
            "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RF",
        ];
        for k in keys {
            for text in [
                format!("Incorrect API key provided: {k}."),
                format!("invalid x-api-key {k}"),
                format!("Authorization: Bearer {k}"),
                format!("key={k}&alt=sse"),
                format!("{{\"key\": \"{k}\"}}"),
            ] {
                let s = scrub_secrets(&text);
                assert!(!s.contains(k), "{text} -> {s}");
                for status in [400, 401, 403, 404, 429, 500, 503] {
                    let e = from_provider("openai", status, Some("invalid_api_key"), Some(&text));
                    assert!(!e.message.contains(k), "{status}: {}", e.message);
                    assert!(!String::from_utf8_lossy(&e.body()).contains(k));
                }
            }
        }
        // Whatever the key looks like, a message about credentials is not passed on.
        for text in [
            "Incorrect API key provided: mock-openai-key.",
            "bad token abc",
            "Unauthorized: x",
        ] {
            let e = from_provider("p", 400, None, Some(text));
            assert_eq!(
                e.message,
                "The p backend answered with an error (HTTP 400)."
            );
        }
        // What the client can fix stays readable.
        let s =
            scrub_secrets("max_tokens: 100000 > 8192, the maximum for claude-3-5-sonnet-20241022");
        assert!(
            s.contains("claude-3-5-sonnet-20241022") && s.contains("8192"),
            "{s}"
        );
        let e = from_provider(
            "anthropic",
            400,
            Some("invalid_request_error"),
            Some("bad max_tokens"),
        );
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "anthropic: bad max_tokens")
        );
        // Auth and server errors: only the gateway's words and the provider's type.
        let e = from_provider("gemini", 403, Some("PERMISSION_DENIED"), Some("anything"));
        assert_eq!(e.status, 502);
        assert!(!e.message.contains("anything") && e.message.contains("PERMISSION_DENIED"));
        let e = from_provider("x", 500, Some("bad type\r\n"), Some("boom"));
        assert_eq!(e.code.as_deref(), Some("upstream_error"));
        assert!(!e.message.contains('\n'));
        assert!(scrub_secrets(&"a ".repeat(10_000)).len() <= 515);
        assert!(!scrub_secrets("line\r\nInjected: 1").contains('\n'));
    }

    #[test]
    fn retry_after_becomes_a_header() {
        let mut e = GatewayError::from_status(429, "slow down");
        e.retry_after = Some(7);
        assert!(e.headers().contains(&("retry-after", "7".to_string())));
    }
}
