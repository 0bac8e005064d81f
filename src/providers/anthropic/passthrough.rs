//! A Messages client's request to an Anthropic provider: passed through as the client sent it,
//! byte for byte apart from the model id, so `cache_control`, thinking blocks and their
//! signatures, documents and beta features reach Anthropic unchanged; and Anthropic's reply
//! goes back the same way (the proxy relays it untranslated, `proxy/native.rs`).
//!
//! Only a request no policy changed is passed through: a policy's change is made on the chat
//! form, so a changed request is translated from that form like a chat client's.

use crate::config::ProviderKind;
use crate::providers::sse::SseEvent;
use crate::providers::stream::{Out, Step, Translate};
use crate::providers::ProviderError;
use crate::wire::{Format, Inbound, RequestBody};

/// The Messages request to send as it came, when `body` may be passed through.
pub fn native_request(body: &RequestBody) -> Option<&Inbound> {
    let inbound = body.inbound()?;
    let untouched = body
        .changed_fields()
        .iter()
        .all(|field| field == "stream_options");
    (inbound.format == Format::Messages && inbound.native.is_some() && untouched).then_some(inbound)
}

/// Whether a provider of `kind` takes `body` as the client sent it (and so answers in the
/// client's API): an Anthropic provider, for a Messages request no policy changed.
pub fn served_natively(kind: ProviderKind, body: &RequestBody) -> bool {
    kind == ProviderKind::Anthropic && native_request(body).is_some()
}

/// Anthropic's stream as it came: every event's data, in order, until `message_stop` (or an
/// `error` event, which the proxy reads as the end); a body that ends before either is an error.
pub struct Passthrough {
    pub provider: String,
}

impl Translate for Passthrough {
    fn event(&mut self, event: SseEvent, out: &mut Out) -> Step {
        let end = matches!(event.event.as_deref(), Some("message_stop") | Some("error"))
            || ends_stream(&event.data);
        out.push_back(Ok(event.data));
        if end {
            Step::Done
        } else {
            Step::Continue
        }
    }

    fn end_of_body(&mut self, out: &mut Out) {
        out.push_back(Err(ProviderError::Protocol(format!(
            "provider `{}` ended its stream before message_stop",
            self.provider
        ))));
    }
}

/// An event whose data says it is the last (`message_stop` or `error`), for a stream without
/// `event:` names.
fn ends_stream(data: &[u8]) -> bool {
    let head = &data[..data.len().min(48)];
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    has(b"\"message_stop\"") || has(b"\"type\":\"error\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn events_pass_as_they_came_until_message_stop() {
        let mut p = Passthrough {
            provider: "claude".into(),
        };
        let mut out = Out::new();
        let ev = |name: &str, data: &'static str| SseEvent {
            event: Some(name.to_string()),
            data: Bytes::from_static(data.as_bytes()),
        };
        assert_eq!(
            p.event(ev("ping", r#"{"type":"ping"}"#), &mut out),
            Step::Continue
        );
        assert_eq!(
            p.event(ev("message_stop", r#"{"type":"message_stop"}"#), &mut out),
            Step::Done
        );
        let sent: Vec<Bytes> = out.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(sent[0], Bytes::from_static(br#"{"type":"ping"}"#));
        assert_eq!(sent.len(), 2);
    }

    #[test]
    fn a_body_cut_short_is_an_error() {
        let mut p = Passthrough {
            provider: "claude".into(),
        };
        let mut out = Out::new();
        p.end_of_body(&mut out);
        assert!(matches!(
            out.pop_front(),
            Some(Err(ProviderError::Protocol(_)))
        ));
    }
}
