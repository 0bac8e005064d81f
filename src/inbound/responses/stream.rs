//! `chat.completion.chunk`s -> the Responses API's typed event stream.

use super::reply::Meta;
use crate::error::ApiError;
use crate::inbound::StreamEncoder;
use bytes::BytesMut;
use serde_json::Value;

/// Called once with the final response object when the stream completes.
pub type OnComplete = Box<dyn FnOnce(Value) + Send>;

pub struct ResponsesEncoder {
    meta: Meta,
    on_complete: Option<OnComplete>,
}

impl ResponsesEncoder {
    pub fn new(meta: Meta, on_complete: Option<OnComplete>) -> Self {
        ResponsesEncoder { meta, on_complete }
    }
}

impl StreamEncoder for ResponsesEncoder {
    fn chunk(&mut self, payload: &[u8], out: &mut BytesMut) {
        let _ = (payload, out, &self.meta, &self.on_complete);
    }
    fn done(&mut self, out: &mut BytesMut) {
        let _ = out;
    }
    fn error(&mut self, error: &ApiError, out: &mut BytesMut) {
        crate::inbound::named_event("error", error.body_json().as_bytes(), out);
    }
}
