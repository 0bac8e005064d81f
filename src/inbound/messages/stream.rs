//! `chat.completion.chunk`s -> Anthropic's event stream.

use crate::error::ApiError;
use crate::inbound::StreamEncoder;
use bytes::BytesMut;

pub struct MessagesEncoder {
    id: String,
    model: String,
}

impl MessagesEncoder {
    pub fn new(id: String, model: String) -> Self {
        MessagesEncoder { id, model }
    }
}

impl StreamEncoder for MessagesEncoder {
    fn chunk(&mut self, payload: &[u8], out: &mut BytesMut) {
        let _ = (payload, out, &self.id, &self.model);
    }
    fn done(&mut self, out: &mut BytesMut) {
        let _ = out;
    }
    fn error(&mut self, error: &ApiError, out: &mut BytesMut) {
        crate::inbound::named_event("error", super::error::body(error).as_bytes(), out);
    }
}
