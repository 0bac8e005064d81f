//! Driving an upstream SSE body through a per-format translator, event by event.
//!
//! The driver owns the I/O (reading chunks, decoding SSE, transport errors); a [`Translate`]
//! owns the meaning (which events become which OpenAI payloads, and what a clean end looks
//! like). Nothing is buffered beyond the event being decoded.

use super::sse::{SseDecoder, SseEvent};
use super::upstream::transport_error;
use super::{EventStream, ProviderError};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::collections::VecDeque;

/// Payloads ready for the client, in order; an `Err` ends the stream.
pub type Out = VecDeque<Result<Bytes, ProviderError>>;

/// Whether the upstream has said its stream is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Continue,
    Done,
}

pub trait Translate: Send + 'static {
    /// One upstream event; pushes what the client should see.
    fn event(&mut self, event: SseEvent, out: &mut Out) -> Step;
    /// The body ended before [`Step::Done`]. Pushes the last payloads, or the error that says
    /// the answer was cut off, so a truncated answer never looks complete.
    fn end_of_body(&mut self, out: &mut Out);
}

pub fn translate(
    provider: String,
    body: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    translator: impl Translate,
) -> EventStream {
    struct State<S, T> {
        body: S,
        decoder: SseDecoder,
        ready: Out,
        ended: bool,
        provider: String,
        translator: T,
    }
    let state = State {
        body: Box::pin(body),
        decoder: SseDecoder::new(),
        ready: VecDeque::new(),
        ended: false,
        provider,
        translator,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.ready.pop_front() {
                if item.is_err() {
                    // An error is the last thing a client sees of this stream.
                    st.ready.clear();
                    st.ended = true;
                }
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            match st.body.next().await {
                Some(Ok(chunk)) => {
                    if let Err(e) = st.decoder.push(&chunk) {
                        st.ended = true;
                        st.ready
                            .push_back(Err(ProviderError::Protocol(e.to_string())));
                        continue;
                    }
                    while let Some(event) = st.decoder.next_event() {
                        if st.translator.event(event, &mut st.ready) == Step::Done {
                            st.ended = true;
                            break;
                        }
                    }
                }
                Some(Err(e)) => {
                    st.ended = true;
                    st.ready.push_back(Err(transport_error(&st.provider, e)));
                }
                None => {
                    st.ended = true;
                    if let Some(event) = st.decoder.finish() {
                        if st.translator.event(event, &mut st.ready) == Step::Done {
                            continue;
                        }
                    }
                    st.translator.end_of_body(&mut st.ready);
                }
            }
        }
    })
    .boxed()
}
