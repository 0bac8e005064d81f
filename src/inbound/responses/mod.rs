//! OpenAI's Responses API (`POST /v1/responses`) for clients, over any provider.
//!
//! A request goes as its chat form (`request.rs`), with the conversation of its
//! `previous_response_id` (kept in the store) in front; the reply comes back as a response
//! object (`reply.rs`) or the Responses API's typed event stream (`stream.rs`).

pub mod reply;
pub mod request;
pub mod stream;
