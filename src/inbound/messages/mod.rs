//! Anthropic's Messages API (`POST /v1/messages`) for clients, over any provider.
//!
//! To an Anthropic provider a request is passed through as sent (the model id aside, see
//! `providers/anthropic`); to every other provider it goes as its chat form (`request.rs`), and
//! the reply comes back as a message (`reply.rs`) or Anthropic's event stream (`stream.rs`).

pub mod error;
pub mod reply;
pub mod request;
pub mod stream;
