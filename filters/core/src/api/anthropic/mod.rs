//! Anthropic's Messages API as a client speaks it (`POST /v1/messages`): the error envelope,
//! request validation, and the translation to and from OpenAI chat that serves a Messages
//! request on a backend that is not Anthropic (the request becomes OpenAI chat, any backend
//! translator takes it from there, and its OpenAI answer becomes an Anthropic message).
//!
//! - [`envelope`]: `{"type":"error","error":{"type","message"}}` with Anthropic's statuses.
//! - [`request`]: validation, and Messages -> OpenAI chat (a clear 400 for what cannot be
//!   carried without changing its meaning).
//! - [`answer`]: an OpenAI chat completion -> an Anthropic message.
//! - [`stream`]: an OpenAI chunk stream -> Anthropic's event stream, incrementally.

pub mod answer;
pub mod envelope;
pub mod request;
pub mod stream;

/// The `anthropic-version` a Messages request gets when it sends none.
pub const DEFAULT_VERSION: &str = "2023-06-01";
