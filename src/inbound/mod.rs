//! The APIs clients speak besides OpenAI's chat completions: Anthropic Messages
//! (`messages/`) and OpenAI Responses (`responses/`).
//!
//! The pipeline works on one internal request, the OpenAI chat form, so policies, limits,
//! budgets, the cache, routing, fallbacks, usage, cost and logs treat every format alike. Each
//! format here therefore has three translations, all pure:
//! - its request into a chat request (`request.rs`), plus what the chat form cannot carry;
//! - a chat completion reply back into its reply (`reply.rs`);
//! - a stream of `chat.completion.chunk`s back into its own event stream (`stream.rs`, a
//!   [`StreamEncoder`]), event by event, never buffering the stream;
//!
//! and its error shape (`error.rs`). The handlers that wire them into the pipeline are in
//! `proxy/`.

pub mod messages;
pub mod responses;

use crate::error::ApiError;
use bytes::{BufMut, BytesMut};
use serde::Serialize;

/// Writes a reply stream in the client's API, fed one OpenAI `chat.completion.chunk` payload
/// at a time (the usage chunk, `"choices":[]`, included), and says how the stream ends.
/// What it writes is the SSE bytes for the client, framing included.
pub trait StreamEncoder: Send {
    /// One chunk payload (JSON). Writes nothing, one event or several.
    fn chunk(&mut self, payload: &[u8], out: &mut BytesMut);
    /// The stream ended cleanly: the closing events.
    fn done(&mut self, out: &mut BytesMut);
    /// The stream ends with `error` (an upstream that broke, a hard budget): the format's error
    /// event, after which the stream must not look complete.
    fn error(&mut self, error: &ApiError, out: &mut BytesMut);
    /// True once the encoder has ended the stream itself (an output guard blocked it): the
    /// relay stops reading the upstream and writes nothing more.
    fn ended(&self) -> bool {
        false
    }
}

/// Chat completions and completions as OpenAI streams them: each payload as `data: ...`, the
/// clean end as `data: [DONE]`, an error as OpenAI's error body with no `[DONE]`.
#[derive(Debug, Default)]
pub struct OpenAiEncoder;

impl StreamEncoder for OpenAiEncoder {
    fn chunk(&mut self, payload: &[u8], out: &mut BytesMut) {
        data_event(payload, out);
    }

    fn done(&mut self, out: &mut BytesMut) {
        out.put_slice(b"data: [DONE]\n\n");
    }

    fn error(&mut self, error: &ApiError, out: &mut BytesMut) {
        data_event(error.body_json().as_bytes(), out);
    }
}

/// `data: <payload>\n\n`
pub fn data_event(payload: &[u8], out: &mut BytesMut) {
    out.reserve(payload.len() + 8);
    out.put_slice(b"data: ");
    out.put_slice(payload);
    out.put_slice(b"\n\n");
}

/// `event: <name>\ndata: <payload>\n\n`: the framing of Anthropic's and the Responses API's
/// typed events.
pub fn named_event(name: &str, payload: &[u8], out: &mut BytesMut) {
    out.reserve(name.len() + payload.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(payload);
    out.put_slice(b"\n\n");
}

/// `event: <name>\ndata: <payload as JSON>\n\n`, the payload serialised straight into `out`
/// (no intermediate value or string: the encoders' per-chunk events go this way).
pub fn serialized_event(name: &str, payload: &impl Serialize, out: &mut BytesMut) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    // Writing to memory cannot fail, and the payloads are plain structs of strings and numbers.
    if let Err(e) = serde_json::to_writer(out.writer(), payload) {
        tracing::error!(error = %e, event = name, "an event could not be written");
    }
    out.put_slice(b"\n\n");
}
