//! OpenAI and OpenAI-compatible servers, Azure: the OpenAI chat front passes through ([`chat`]).

pub mod chat;
