//! Reading a provider's own event stream, passed through to a client of the same API (an
//! Anthropic provider's events to a Messages client), for the gateway's accounting: each event
//! is turned into the OpenAI chunks it amounts to, which the relay counts, checks against hard
//! budgets and captures for the cache exactly as it does any other stream, while the client
//! gets the event as the upstream sent it.

use crate::providers::anthropic::stream::StreamTranslator;
use crate::providers::sse::SseEvent;
use crate::providers::stream::{Out, Translate};
use crate::providers::ProviderError;
use bytes::Bytes;
use serde::Deserialize;

pub struct NativeDecoder {
    translator: StreamTranslator,
    out: Out,
}

impl NativeDecoder {
    /// For an Anthropic Messages event stream.
    pub fn anthropic(provider: &str, model: &str) -> Self {
        NativeDecoder {
            translator: StreamTranslator::new(
                provider.to_string(),
                "msg".to_string(),
                model.to_string(),
                true,
            ),
            out: Out::new(),
        }
    }

    /// The chunks `payload` amounts to, in order; an `Err` when it is an error event (or
    /// cannot be read), which ends the stream.
    pub fn decode(
        &mut self,
        payload: &Bytes,
    ) -> std::collections::vec_deque::Drain<'_, Result<Bytes, ProviderError>> {
        self.out.clear();
        let event = SseEvent {
            event: None,
            data: payload.clone(),
        };
        let _ = self.translator.event(event, &mut self.out);
        self.out.drain(..)
    }
}

/// The `type` of an event payload, which Anthropic repeats as the SSE event name.
pub fn event_type(payload: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<Typed>(payload)
        .map(|t| t.kind.into_owned())
        .unwrap_or_else(|_| "message".to_string())
}
