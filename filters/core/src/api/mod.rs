//! The client-facing APIs: request models, validation and answers of each API a client may
//! speak to Sluice.
//!
//! - [`openai`]: chat completions (the pivot every backend translator reads and writes).
//! - [`anthropic`]: Messages (`/v1/messages`), its error envelope, and its translation to and
//!   from OpenAI chat for backends that are not Anthropic.

pub mod anthropic;
pub mod openai;

use crate::contract::Api;
use crate::error::GatewayError;

/// An error as a client of `api` receives it: the status and the body in that API's envelope.
pub fn error_reply(api: Api, e: &GatewayError) -> (u16, Vec<u8>) {
    match api {
        Api::OpenAi => (e.status, e.body()),
        Api::Anthropic => (anthropic::envelope::status(e), anthropic::envelope::body(e)),
    }
}
