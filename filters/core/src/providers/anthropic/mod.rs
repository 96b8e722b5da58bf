//! Anthropic Messages: the OpenAI chat front translated to it ([`chat`]).

pub mod chat;
