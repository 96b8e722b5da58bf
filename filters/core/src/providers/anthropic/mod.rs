//! Anthropic Messages: the OpenAI chat front translated to it ([`chat`]), and the Messages
//! front passed through to it ([`messages`]).

pub mod chat;
pub mod messages;
