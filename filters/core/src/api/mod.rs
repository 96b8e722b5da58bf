//! The client-facing APIs: request models, validation and answers of each API a client may
//! speak to Sluice.
//!
//! - [`openai`]: chat completions (the pivot every backend translator reads and writes).
//! - [`anthropic`]: Messages (`/v1/messages`), its error envelope, and its translation to and
//!   from OpenAI chat for backends that are not Anthropic.

pub mod anthropic;
pub mod openai;
