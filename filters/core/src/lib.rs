//! Pure logic shared by the Sluice filters. Nothing here depends on proxy-wasm, so all of it is
//! unit-tested on the host and on `wasm32-wasip1`.
//!
//! - [`contract`]: the route table, every shared header, property and key name, shared
//!   defaults, and the edge checks for values copied into paths, headers and logs.
//! - [`error`]: the OpenAI error envelope and the statuses Sluice answers with.
//! - [`json`]: JSON parsing that refuses duplicate keys (what is checked is what is sent).
//! - [`sse`]: incremental server-sent-events framing on bytes.
//! - [`api`]: the client APIs: [`openai`] chat completions (request model, validation, answer
//!   builders; re-exported at the crate root) and [`api::anthropic`] Messages.
//! - [`backend`]: what a backend is (from host metadata), and the factory of translators.
//! - [`providers`]: the translator interface, and one folder per backend wire format.
//! - [`stream`]: the OpenAI chunk writer shared by the streaming translators.
//! - [`metadata`]: decoding Envoy's serialized host metadata.
//! - [`quota`]: windows, limits, reservations; [`quota::wire`] is the fleet quota protocol.
//! - [`proto`]: the protobuf wire format of Sluice's own messages.

pub mod api;
pub mod auth;
pub mod backend;
pub mod base64;
pub mod cache;
pub mod contract;
pub mod error;
pub mod eventstream;
pub mod fuzz;
pub mod identity;
pub mod json;
pub mod metadata;
pub mod models;
pub mod pii;
pub mod proto;
pub mod providers;
pub mod quota;
pub mod sse;
pub mod stream;
pub mod usage;

pub use api::openai;
pub use error::GatewayError;
