//! AWS Bedrock. Requests are signed by Envoy (`aws_request_signing` after the translating
//! filter, selected per attempt), never by the wasm: nothing here sees a credential.
//!
//! - [`converse`]: OpenAI chat <-> Converse / ConverseStream, for every Bedrock model.
//! - [`invoke`]: the Anthropic Messages front on Anthropic's models through InvokeModel
//!   (Anthropic's own body and events, so thinking signatures, `cache_control` and betas
//!   survive); other models on that front go through OpenAI chat to Converse.

pub mod converse;
pub mod invoke;

/// Whether a Bedrock model id (or inference profile, or ARN) is one of Anthropic's.
pub fn is_anthropic(model: &str) -> bool {
    model.contains("anthropic.")
}
