//! The names the Sluice filters share, in one place: the route table (method + normalised path
//! -> [`Endpoint`]), every `x-sluice-*` header, filter-state property and shared-data key (with
//! its builder), the defaults the Envoy generator must agree with, and the two edge rules for
//! values that get copied into a path, a header or a log line: [`check_model`] and
//! [`escape_for_header`].
//!
//! `scripts/sluice_gen.py` reads the same values from `filters/core/contract.json`, which a test
//! here keeps equal to these constants (`cargo test -p sluice-core contract`).

use crate::error::GatewayError;
use serde_json::{json, Value};

/// What a request is, decided once from its method and path by every filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `GET /v1/models`
    Models,
    /// `GET /v1/models/{id}`
    Model(&'a str),
    /// `GET /v1/sluice/usage`
    Usage,
    /// `POST /v1/messages` (Anthropic's Messages API)
    Messages,
    /// `POST /v1/messages/count_tokens`
    CountTokens,
    /// `POST /v1/embeddings`
    Embeddings,
}

/// The API a client speaks, which decides the envelope of every error it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
}

impl Endpoint<'_> {
    /// Endpoints whose JSON body the filters read (pause, parse, maybe rewrite).
    pub fn has_body(&self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions
                | Endpoint::Messages
                | Endpoint::CountTokens
                | Endpoint::Embeddings
        )
    }

    /// Endpoints that are charged (tokens and money against quotas): what generates, and
    /// embeddings (input tokens only).
    pub fn metered(&self) -> bool {
        self.generates() || *self == Endpoint::Embeddings
    }

    /// Endpoints that generate an answer (metered in tokens and money, cached, re-hydrated).
    pub fn generates(&self) -> bool {
        matches!(self, Endpoint::ChatCompletions | Endpoint::Messages)
    }

    pub fn api(&self) -> Api {
        match self {
            Endpoint::Messages | Endpoint::CountTokens => Api::Anthropic,
            _ => Api::OpenAi,
        }
    }

    /// The endpoint's canonical path, as access logs show it (`property::PATH`) and as the
    /// upstream role reads it back to learn the client's API on every attempt (the `:path`
    /// header is the provider's by then).
    pub fn path(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Models | Endpoint::Model(_) => "/v1/models",
            Endpoint::Usage => "/v1/sluice/usage",
            Endpoint::Messages => "/v1/messages",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
            Endpoint::Embeddings => "/v1/embeddings",
        }
    }

    /// The endpoint whose canonical path this is (the inverse of [`Endpoint::path`]).
    pub fn from_path(path: &str) -> Option<Endpoint<'static>> {
        [
            Endpoint::ChatCompletions,
            Endpoint::Messages,
            Endpoint::CountTokens,
            Endpoint::Embeddings,
            Endpoint::Models,
            Endpoint::Usage,
        ]
        .into_iter()
        .find(|e| e.path() == path)
    }
}

/// The API whose envelope a request's errors use when no endpoint matched: Anthropic's for
/// paths under `/v1/messages` and for clients that send `anthropic-version`, else OpenAI's.
pub fn api_of(raw_path: &str, anthropic_version: bool) -> Api {
    let path = raw_path.split(['?', '#']).next().unwrap_or_default();
    if anthropic_version || path == "/v1/messages" || path.starts_with("/v1/messages/") {
        Api::Anthropic
    } else {
        Api::OpenAi
    }
}

/// The `anthropic-version` and `anthropic-beta` values a Messages client may send: at most
/// [`MAX_ANTHROPIC_HEADER_BYTES`] of letters, digits and `- _ . ,` (and spaces between
/// betas). Anything else is refused at the edge: these go to Anthropic as they are.
pub fn check_anthropic_header(name: &str, value: &[u8]) -> Result<(), GatewayError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ANTHROPIC_HEADER_BYTES
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,: ".contains(b));
    if ok {
        Ok(())
    } else {
        Err(GatewayError::invalid_request(format!(
            "The {name} header is not valid: expected up to {MAX_ANTHROPIC_HEADER_BYTES} characters of letters, digits and - _ . , :"
        )))
    }
}

/// Longest `anthropic-version` / `anthropic-beta` value accepted.
pub const MAX_ANTHROPIC_HEADER_BYTES: usize = 1024;

/// The path as the route table sees it: without query or fragment, one trailing `/` allowed
/// (`/v1/chat/completions/` is the same endpoint), and nothing else rewritten. A path that is
/// not in its normal form (dot segments, empty segments, percent-escapes, a backslash,
/// control bytes) is no endpoint at all, so every filter refuses or ignores it alike.
pub fn normalise_path(raw: &str) -> Option<&str> {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    let path = path.strip_suffix('/').unwrap_or(path);
    let normal = path.starts_with('/')
        && path.len() <= MAX_PATH_BYTES
        && !path.contains("//")
        && !path
            .bytes()
            .any(|b| b == b'%' || b == b'\\' || b.is_ascii_control() || b >= 0x80)
        && !path.split('/').any(|seg| seg == "." || seg == "..");
    normal.then_some(path)
}

/// Longest path the route table looks at.
pub const MAX_PATH_BYTES: usize = 2048;

/// The route table: the one definition of "is this a chat request" (and of every other
/// endpoint) that all filters use.
pub fn route<'a>(method: &str, raw_path: &'a str) -> Option<Endpoint<'a>> {
    let path = normalise_path(raw_path)?;
    match (method, path) {
        ("POST", "/v1/chat/completions") => Some(Endpoint::ChatCompletions),
        ("POST", "/v1/messages") => Some(Endpoint::Messages),
        ("POST", "/v1/messages/count_tokens") => Some(Endpoint::CountTokens),
        ("POST", "/v1/embeddings") => Some(Endpoint::Embeddings),
        ("GET", "/v1/models") => Some(Endpoint::Models),
        ("GET", "/v1/sluice/usage") => Some(Endpoint::Usage),
        ("GET", p) => p
            .strip_prefix("/v1/models/")
            .filter(|id| !id.is_empty())
            .map(Endpoint::Model),
        _ => None,
    }
}

/// Routes as the 404 message names them.
pub const ROUTES_TEXT: &str =
    "POST /v1/chat/completions, POST /v1/embeddings, POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models";

/// The 404 for a request that is no endpoint of the route table.
pub fn unknown_route(method: &str, path: &str) -> GatewayError {
    GatewayError::new(
        404,
        "invalid_request_error",
        format!(
            "Invalid URL ({} {}): this gateway serves {ROUTES_TEXT}.",
            escape_for_header(method),
            escape_for_header(path)
        ),
    )
    .with_code("unknown_url")
}

/// Prefix of every internal signal: removed from what clients send (but the cache's request
/// controls below) and from what goes to providers.
pub const HEADER_PREFIX: &str = "x-sluice-";

/// Whether a client may send this `x-sluice-*` request header (the cache's controls); every
/// other one is removed by the first Sluice filter that sees the request.
pub fn is_client_control(name: &str) -> bool {
    name.eq_ignore_ascii_case(request::CACHE_TTL) || name.eq_ignore_ascii_case(request::CACHE_FORCE)
}

/// Request headers.
pub mod request {
    /// The model the route role validated; Envoy's route table matches on it.
    pub const MODEL: &str = "x-sluice-model";
    /// Names this attempt's credential for the credential matcher (removed before sending).
    pub const CREDENTIAL: &str = "x-sluice-credential";
    /// Client controls of sluice-cache (read by it, then removed by the route role).
    pub const CACHE_TTL: &str = "x-sluice-cache-ttl";
    pub const CACHE_FORCE: &str = "x-sluice-cache-force";
}

/// Response headers.
pub mod response {
    /// `hit`, `miss` or `bypass`.
    pub const CACHE: &str = "x-sluice-cache";
    /// The backend's name (or `cache`).
    pub const PROVIDER: &str = "x-sluice-provider";
    /// The model the provider was asked for.
    pub const SERVED_MODEL: &str = "x-sluice-served-model";
}

/// Filter-state properties (`%FILTER_STATE(wasm.<name>:PLAIN)%` in access logs). Every value
/// written to one goes through [`escape_for_header`].
pub mod property {
    pub const PATH: &str = "sluice_path";
    pub const MODEL: &str = "sluice_model";
    pub const KEY_ID: &str = "sluice_key_id";
    pub const TEAM: &str = "sluice_team";
    pub const PROJECT: &str = "sluice_project";
    pub const REFUSAL: &str = "sluice_refusal";
    pub const TOKENS_IN: &str = "sluice_tokens_in";
    pub const TOKENS_OUT: &str = "sluice_tokens_out";
    pub const COST_MICRO_USD: &str = "sluice_cost_micro_usd";
    /// Which counters admitted the request: `local`, `fleet`, or `fail_open` (the quota
    /// service could not answer and local limits applied).
    pub const QUOTA: &str = "sluice_quota";
    /// The calling workload (`namespace/service-account`) when a mesh identity stood in for a
    /// key.
    pub const IDENTITY: &str = "sluice_identity";
    /// The Messages client's `anthropic-version` and `anthropic-beta`, checked by the route
    /// role and read by the upstream role on every attempt (not log fields).
    pub const ANTHROPIC_VERSION: &str = "sluice_anthropic_version";
    /// Set by a filter on the request it answers itself: Envoy's local-reply mappers leave
    /// such answers (already in the API's envelope) as they are and map only Envoy's own. A
    /// property, not a header: request headers may already have gone on (only the route role
    /// holds them), and changing them then would trap the VM.
    pub const LOCAL_REPLY: &str = "sluice_local_reply";
    pub const ANTHROPIC_BETA: &str = "sluice_anthropic_beta";

    pub const ALL: &[&str] = &[
        PATH,
        MODEL,
        KEY_ID,
        TEAM,
        PROJECT,
        REFUSAL,
        TOKENS_IN,
        TOKENS_OUT,
        COST_MICRO_USD,
        QUOTA,
        IDENTITY,
    ];
}

/// Shared-data keys: `sluice:<filter>:...`.
pub mod key {
    pub fn quota_key(id: &str) -> String {
        format!("sluice:auth:key:{id}")
    }
    pub fn quota_project(name: &str) -> String {
        format!("sluice:auth:project:{name}")
    }
    pub fn quota_team(name: &str) -> String {
        format!("sluice:auth:team:{name}")
    }
    /// A scope's counters in Redis (fleet mode). Every key of one team shares the hash tag
    /// `{team}`, so one Lua script can touch them all on Redis Cluster too.
    pub fn fleet_scope(team: &str, kind: &str, id: &str) -> String {
        format!("sluice:{{{team}}}:{kind}:{id}")
    }
    /// A reservation record of a request (fleet mode).
    pub fn fleet_reservation(team: &str, request_id: &str) -> String {
        format!("sluice:{{{team}}}:res:{request_id}")
    }
    /// A team's open reservations by expiry (fleet mode), for reaping.
    pub fn fleet_expiries(team: &str) -> String {
        format!("sluice:{{{team}}}:expiries")
    }
    /// Marks a request as settled (fleet mode): a second settle is a no-op.
    pub fn fleet_settled(team: &str, request_id: &str) -> String {
        format!("sluice:{{{team}}}:done:{request_id}")
    }
    pub fn cache_index(shard: u32) -> String {
        format!("sluice:cache:index:{shard}")
    }
    pub fn cache_slot(shard: u32, slot: u32) -> String {
        format!("sluice:cache:slot:{shard}:{slot}")
    }
}

/// Defaults shared with the generator.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// API base path per provider kind when the backend's URL names none.
pub const BASE_PATHS: &[(&str, &str)] = &[
    ("openai", "/v1"),
    ("azure", "/openai/deployments"),
    ("anthropic", "/v1"),
    ("gemini", "/v1beta"),
    // Bedrock's paths start at the host's root (`/model/{id}/converse`).
    ("bedrock", ""),
    // Vertex's base is per project and location (the generator writes it).
    ("vertex", "/v1"),
];

/// Request headers that may reach a provider (besides pseudo-headers, what the upstream filter
/// sets itself, the credential the injector adds, and a backend's configured `forward_headers`).
pub const FORWARDED_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "x-request-id",
    "traceparent",
    "tracestate",
];

/// Provider response headers that reach the client (besides pseudo-headers); the filters add
/// their own (`x-sluice-*`, `x-ratelimit-*` from sluice-auth) after this.
pub const RETURNED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "retry-after",
    "date",
    "cache-control",
    "x-request-id",
    "request-id",
];

/// Whether a provider's response header may reach the client.
pub fn passes_back(name: &str) -> bool {
    name.starts_with(':')
        || RETURNED_HEADERS
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
}

/// Longest model name accepted from a client.
pub const MAX_MODEL_BYTES: usize = 256;

/// Checks a model name from a client before it reaches a route, a path, a header or a log:
/// 1 to [`MAX_MODEL_BYTES`] bytes of `A-Z a-z 0-9 . _ - : /` and `@` (a version tag, as in
/// `claude-3-5-sonnet@20240620`: no `.` after it, so an e-mail address is refused), no empty,
/// `.` or `..` segment between slashes.
pub fn check_model(model: &str) -> Result<(), GatewayError> {
    let bad = |why: &str| {
        Err(GatewayError::invalid_param(
            "model",
            format!(
                "The model name is not valid: {why}. A model name is 1 to {MAX_MODEL_BYTES} characters of letters, digits and . _ - : / @."
            ),
        )
        .with_code("invalid_model"))
    };
    if model.is_empty() {
        return bad("it is empty");
    }
    if model.len() > MAX_MODEL_BYTES {
        return bad("it is too long");
    }
    if let Some(c) = model
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-:/@".contains(*c)))
    {
        return bad(if c.is_control() {
            "it contains a control character"
        } else {
            "it contains a character outside the allowed set"
        });
    }
    if model
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("it contains an empty, '.' or '..' path segment");
    }
    if let Some((_, tag)) = model.split_once('@') {
        if tag.is_empty() || tag.contains(['@', '.', '/']) {
            return bad("'@' may only start a version tag");
        }
    }
    Ok(())
}

/// Longest value written into a header or a log field.
pub const MAX_HEADER_VALUE_BYTES: usize = 256;

/// The one escaping of values copied into a response header, a filter-state property (access
/// log) or a log line: printable ASCII stays, every other byte becomes `\xNN`, and the result is
/// cut at [`MAX_HEADER_VALUE_BYTES`] (a cut is marked with `...`). No CR, LF or NUL survives,
/// so no value can start a header, a response or a log line.
pub fn escape_for_header(value: &str) -> std::borrow::Cow<'_, str> {
    let clean = value.len() <= MAX_HEADER_VALUE_BYTES
        && value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'\\');
    if clean {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len().min(MAX_HEADER_VALUE_BYTES + 4));
    for b in value.bytes() {
        if out.len() >= MAX_HEADER_VALUE_BYTES {
            out.push_str("...");
            break;
        }
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Percent-escapes a value for one path segment (RFC 3986 unreserved characters stay), so a
/// model name can never add a segment, a query or a method to a provider's path.
pub fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The contract as JSON, for the generator (`filters/core/contract.json`).
pub fn export() -> Value {
    json!({
        "header_prefix": HEADER_PREFIX,
        "request_headers": {
            "model": request::MODEL,
            "credential": request::CREDENTIAL,
            "cache_ttl": request::CACHE_TTL,
            "cache_force": request::CACHE_FORCE,
        },
        "response_headers": {
            "cache": response::CACHE,
            "provider": response::PROVIDER,
            "served_model": response::SERVED_MODEL,
        },
        "properties": property::ALL,
        "local_reply_property": property::LOCAL_REPLY,
        "default_max_body_bytes": DEFAULT_MAX_BODY_BYTES,
        "base_paths": BASE_PATHS.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "forwarded_headers": FORWARDED_HEADERS,
        "returned_headers": RETURNED_HEADERS,
        "max_model_bytes": MAX_MODEL_BYTES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_route_table_with_normalised_paths() {
        let chat = Some(Endpoint::ChatCompletions);
        assert_eq!(route("POST", "/v1/chat/completions"), chat);
        assert_eq!(route("POST", "/v1/chat/completions/"), chat);
        assert_eq!(route("POST", "/v1/chat/completions?x=1"), chat);
        assert_eq!(route("POST", "/v1/chat/completions/?x=1"), chat);
        assert_eq!(route("POST", "/v1/chat/completions#f"), chat);
        for p in [
            "/v1/chat/completions//",
            "/v1//chat/completions",
            "/v1/chat/./completions",
            "/v1/x/../chat/completions",
            "/v1/chat/%63ompletions",
            "/v1/chat/completions%2F",
            "/v1/chat\\completions",
            "/V1/chat/completions",
            "v1/chat/completions",
            "/v1/chat/completions\n",
            "",
        ] {
            assert_eq!(route("POST", p), None, "{p:?}");
        }
        assert_eq!(route("GET", "/v1/chat/completions"), None);
        assert_eq!(route("GET", "/v1/models/"), Some(Endpoint::Models));
        assert_eq!(
            route("GET", "/v1/models/gpt-4o"),
            Some(Endpoint::Model("gpt-4o"))
        );
        assert_eq!(route("GET", "/v1/sluice/usage/"), Some(Endpoint::Usage));
        assert!(Endpoint::ChatCompletions.has_body() && !Endpoint::Models.has_body());
        assert_eq!(
            route("POST", "/v1/messages/?beta=true"),
            Some(Endpoint::Messages)
        );
        assert_eq!(
            route("POST", "/v1/messages/count_tokens"),
            Some(Endpoint::CountTokens)
        );
        for p in [
            "/v1/messages/x",
            "/v1/messages/count_tokens/x",
            "/v1//messages",
        ] {
            assert_eq!(route("POST", p), None, "{p:?}");
        }
        for e in [
            Endpoint::ChatCompletions,
            Endpoint::Messages,
            Endpoint::CountTokens,
            Endpoint::Embeddings,
            Endpoint::Usage,
            Endpoint::Models,
        ] {
            assert_eq!(Endpoint::from_path(e.path()), Some(e));
            assert_eq!(
                route(if e.has_body() { "POST" } else { "GET" }, e.path()),
                Some(e)
            );
        }
        assert_eq!(Endpoint::Messages.api(), Api::Anthropic);
        assert!(Endpoint::Messages.generates() && !Endpoint::CountTokens.generates());
        assert_eq!(api_of("/v1/messages/batches?x", false), Api::Anthropic);
        assert_eq!(api_of("/v1/nope", true), Api::Anthropic);
        assert_eq!(api_of("/v1/messagesx", false), Api::OpenAi);
        assert!(check_anthropic_header(
            "anthropic-beta",
            b"interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
        )
        .is_ok());
        for bad in [&b""[..], b"a\r\nx: y", b"a;b", &[b'a'; 2000]] {
            assert!(check_anthropic_header("anthropic-beta", bad).is_err());
        }
    }

    #[test]
    fn model_names_are_checked_at_the_edge() {
        for ok in [
            "gpt-4o",
            "claude-sonnet-4-5",
            "accounts/fireworks/models/llama-v3",
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "claude-3-5-sonnet@20240620",
            "meta-llama/Llama-3.1-8B-Instruct",
            "o1",
        ] {
            assert!(check_model(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_MODEL_BYTES + 1);
        for bad in [
            "",
            "gemini-x/../../v1beta/cachedContents?",
            "gemini-x/../gemini-2.5-pro",
            "./gpt",
            "a//b",
            "/gpt",
            "gpt/",
            "gpt\r\nx-evil: 1",
            "gpt\nfake log line",
            "gpt\u{0}",
            "jane.doe@example.com",
            "m@",
            "m@1@2",
            "gpt 4",
            "gpt%2F",
            "gpt?x",
            "gpt#x",
            "gpt\u{e9}",
            long.as_str(),
        ] {
            let e = check_model(bad).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some("model")),
                "{bad:?}"
            );
            assert!(!e.message.contains(bad) || bad.is_empty(), "echoed {bad:?}");
        }
    }

    #[test]
    fn escaping_for_headers_and_logs() {
        assert_eq!(escape_for_header("gpt-4o"), "gpt-4o");
        assert_eq!(escape_for_header("a\r\nb"), "a\\x0d\\x0ab");
        assert_eq!(escape_for_header("a\\b"), "a\\x5cb");
        assert_eq!(escape_for_header("é"), "\\xc3\\xa9");
        let long = escape_for_header(&"x".repeat(100_000)).into_owned();
        assert!(long.len() <= MAX_HEADER_VALUE_BYTES + 3 && long.ends_with("..."));
        assert!(escape_for_header(&"\n".repeat(1000))
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b)));
    }

    #[test]
    fn shared_data_keys_are_prefixed_by_filter() {
        assert_eq!(key::quota_key("k1"), "sluice:auth:key:k1");
        assert_eq!(key::quota_project("p"), "sluice:auth:project:p");
        assert_eq!(key::quota_team("t"), "sluice:auth:team:t");
        assert_eq!(key::cache_index(3), "sluice:cache:index:3");
        assert_eq!(key::cache_slot(3, 9), "sluice:cache:slot:3:9");
    }

    #[test]
    fn path_segments_cannot_add_structure() {
        assert_eq!(path_segment("gemini-2.5-pro"), "gemini-2.5-pro");
        assert_eq!(path_segment("a/../b?c:d"), "a%2F..%2Fb%3Fc%3Ad");
    }

    /// `contract.json` is what the generator reads: it must say what this module says.
    #[cfg(not(target_arch = "wasm32"))] // no file system under the wasm test runner
    #[test]
    fn contract_json_matches_the_constants() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contract.json");
        let want = serde_json::to_string_pretty(&export()).unwrap() + "\n";
        if std::env::var_os("SLUICE_WRITE_CONTRACT").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "filters/core/contract.json is stale: run SLUICE_WRITE_CONTRACT=1 cargo test -p sluice-core contract"
        );
    }
}
