//! OpenAI's Responses API (`POST /v1/responses`) for clients, over any provider.
//!
//! A request goes as its chat form (`request.rs`, its items through `items.rs`, its refusals
//! as `error.rs` says), with the conversation of its `previous_response_id` (kept in the
//! store) after the instructions; the reply comes back as a response object (`reply.rs`) or
//! the Responses API's typed event stream (`stream.rs`).

pub mod error;
pub mod items;
pub mod reply;
pub mod request;
pub mod stream;
