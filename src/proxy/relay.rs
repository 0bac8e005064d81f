//! Relaying a provider's event stream to the client as SSE, chunk by chunk.
//!
//! Each payload is written in the client's API (`inbound::StreamEncoder`: OpenAI's
//! `data: ...\n\n` by default) the moment it arrives. The clean end is the API's closing event
//! (`data: [DONE]`); a broken upstream ends with an in-band error event and no closing event,
//! so a truncated answer never looks complete. A provider's own stream passed through to a
//! client of the same API (`native`) goes out event by event as it came, and is read as the
//! chunks it amounts to for everything else here. Usage is read off the stream as it passes; the usage
//! chunk the gateway asked for on the client's behalf is not forwarded to a client that did
//! not ask for it. Payloads kept for the cache and the request log are bounded in bytes.

use super::native::{self, NativeDecoder};
use crate::error::ApiError;
use crate::inbound::{named_event, OpenAiEncoder, StreamEncoder};
use crate::providers::EventStream;
use crate::wire::Usage;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// What became of a relayed stream.
#[derive(Debug, Clone, Default)]
pub struct StreamOutcome {
    pub usage: Option<Usage>,
    pub chunks: u64,
    /// Bytes of text streamed (`delta.content`, `text`): what the completion is estimated
    /// from when no usage arrives.
    pub text_bytes: usize,
    /// Set when the stream broke instead of ending cleanly.
    pub error: Option<String>,
    /// Set when the gateway ended the stream for a hard budget (named here).
    pub cut_for: Option<String>,
    /// Set when an output guard blocked the reply and ended the stream.
    pub blocked: bool,
    /// True when the client went away before the end.
    pub client_gone: bool,
    /// When the first chunk with content arrived (time to first token).
    pub first_token: Option<Instant>,
    /// The choices' `finish_reason`s, when asked for (the request's span records).
    pub finish_reasons: Vec<String>,
    /// Every payload, the stripped usage chunk included, when capture was asked for (caching,
    /// logging bodies). Empty when the payloads outgrew the capture's bound: a partial reply
    /// is worth neither caching nor logging.
    pub payloads: Vec<Bytes>,
}

/// Called once when the relay ends, however it ends.
pub type OnFinish = Box<dyn FnOnce(StreamOutcome) + Send>;

pub struct Relay {
    events: EventStream,
    strip_usage_chunk: bool,
    /// Bytes that capture may still keep; `None` when not capturing (or no longer).
    capture_room: Option<usize>,
    outcome: StreamOutcome,
    on_finish: Option<OnFinish>,
    done: bool,
    cut_off: Option<CutOff>,
    /// Writes the chunks in the client's API.
    encoder: Box<dyn StreamEncoder>,
    /// Set when the events are the provider's own, passed through as they came.
    native: Option<NativeDecoder>,
    /// Read the chunks' `finish_reason`s (for the trace).
    read_finish_reasons: bool,
}

/// Where a stream is ended for a hard budget: once the prompt's estimate and the streamed
/// text's tokens would pass what the request may use.
pub struct CutOff {
    pub budget: String,
    pub allowed_tokens: u64,
    pub prompt_tokens: u64,
}

impl Relay {
    pub fn new(events: EventStream, strip_usage_chunk: bool, on_finish: Option<OnFinish>) -> Self {
        Relay {
            events,
            strip_usage_chunk,
            capture_room: None,
            outcome: StreamOutcome::default(),
            on_finish,
            done: false,
            cut_off: None,
            encoder: Box::new(OpenAiEncoder),
            native: None,
            read_finish_reasons: false,
        }
    }

    /// Collects the chunks' `finish_reason`s into the outcome: a parse of the chunks that
    /// carry one, so only when a trace records them.
    pub fn finish_reasons(mut self, read: bool) -> Self {
        self.read_finish_reasons = read;
        self
    }

    /// Writes the stream in another API than OpenAI's.
    pub fn encoder(mut self, encoder: Box<dyn StreamEncoder>) -> Self {
        self.encoder = encoder;
        self
    }

    /// The events are the provider's own, for a client of the same API: each goes out as it
    /// came, and `decoder` reads it for usage, text, hard budgets and the capture.
    pub fn native(mut self, decoder: NativeDecoder) -> Self {
        self.native = Some(decoder);
        self
    }
    /// Keeps a copy of every payload for the finish callback (to fill the cache, or the
    /// request log), up to `max_bytes` of payloads. Past that, capture stops and what was kept
    /// is dropped; the stream itself goes on to the client unchanged.
    pub fn capture(mut self, max_bytes: usize) -> Self {
        self.capture_room = Some(max_bytes);
        self
    }

    /// Ends the stream, with a `budget_exceeded` error event, before it takes a hard budget
    /// past its limit.
    pub fn cut_off(mut self, cut_off: Option<CutOff>) -> Self {
        self.cut_off = cut_off;
        self
    }

    /// The error event that ends the stream if this payload takes it past its cut-off.
    fn over_cut_off(&mut self) -> Option<Bytes> {
        let c = self.cut_off.as_ref()?;
        let used = c.prompt_tokens + super::estimate::text_tokens(self.outcome.text_bytes);
        if used <= c.allowed_tokens {
            return None;
        }
        let message = format!(
            "the reply was ended: it would take the hard token budget `{}` past its limit",
            c.budget
        );
        self.outcome.cut_for = Some(c.budget.clone());
        self.outcome.error = Some(message.clone());
        let err = ApiError::new(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            message,
        )
        .with_code(crate::error_codes::Code::BudgetExceeded);
        let mut out = BytesMut::new();
        self.encoder.error(&err, &mut out);
        Some(out.freeze())
    }

    /// One of the provider's own events: read as its chunks, sent as it came. An error event
    /// ends the stream (sent too: it is the client's API's own error).
    fn pass_native(&mut self, mut decoder: NativeDecoder, payload: Bytes) -> Option<Bytes> {
        let decoded: Vec<_> = decoder.decode(&payload).collect();
        self.native = Some(decoder);
        for chunk in decoded {
            match chunk {
                Ok(chunk) => {
                    self.keep(&chunk);
                    let text_before = self.outcome.text_bytes;
                    self.inspect(&chunk);
                    if let Some(end) = self.over_cut_off() {
                        self.outcome.text_bytes = text_before;
                        tracing::info!("a stream was ended for a hard budget");
                        self.finish();
                        return Some(end);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "upstream stream ended with an error event");
                    self.outcome.error = Some(e.to_string());
                    let mut out = BytesMut::new();
                    named_event(&native::event_type(&payload), &payload, &mut out);
                    self.finish();
                    return Some(out.freeze());
                }
            }
        }
        self.outcome.chunks += 1;
        let mut out = BytesMut::new();
        named_event(&native::event_type(&payload), &payload, &mut out);
        Some(out.freeze())
    }

    fn keep(&mut self, payload: &Bytes) {
        let Some(room) = self.capture_room else {
            return;
        };
        match room.checked_sub(payload.len()) {
            Some(left) => {
                self.capture_room = Some(left);
                self.outcome.payloads.push(payload.clone());
            }
            None => {
                tracing::debug!(
                    kept = self.outcome.payloads.len(),
                    "a streamed reply outgrew its capture bound; it is not cached or logged"
                );
                self.capture_room = None;
                self.outcome.payloads = Vec::new();
            }
        }
    }

    /// The encoder ended the stream itself: an output guard blocked the reply.
    fn mark_blocked(&mut self) {
        self.outcome.blocked = true;
        self.outcome.error = Some(crate::policy::guard::BLOCKED_MESSAGE.into());
    }

    fn finish(&mut self) {
        self.done = true;
        if let Some(f) = self.on_finish.take() {
            f(std::mem::take(&mut self.outcome));
        }
    }

    /// Records usage from `payload`; true when the payload is a usage-only chunk to drop.
    fn inspect(&mut self, payload: &[u8]) -> bool {
        let text = super::estimate::streamed_text_bytes(payload);
        if text > 0 && self.outcome.first_token.is_none() {
            self.outcome.first_token = Some(Instant::now());
        }
        self.outcome.text_bytes += text;
        if self.read_finish_reasons {
            for reason in finish_reasons(payload) {
                if !self.outcome.finish_reasons.contains(&reason) {
                    self.outcome.finish_reasons.push(reason);
                }
            }
        }
        // Most chunks carry no usage object; skip the parse for them.
        if !contains(payload, b"\"usage\"") {
            return false;
        }
        #[derive(Deserialize)]
        struct Chunk {
            #[serde(default)]
            choices: Vec<IgnoredAny>,
            usage: Option<Usage>,
        }
        match serde_json::from_slice::<Chunk>(payload) {
            Ok(Chunk {
                choices,
                usage: Some(usage),
            }) => {
                self.outcome.usage = Some(usage);
                self.strip_usage_chunk && choices.is_empty()
            }
            _ => false,
        }
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            match self.events.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(payload))) => {
                    if let Some(decoder) = self.native.take() {
                        return Poll::Ready(self.pass_native(decoder, payload).map(Ok));
                    }
                    self.keep(&payload);
                    let text_before = self.outcome.text_bytes;
                    if self.inspect(&payload) {
                        continue;
                    }
                    if let Some(end) = self.over_cut_off() {
                        // The chunk that would pass the budget is withheld, and not charged.
                        self.outcome.text_bytes = text_before;
                        tracing::info!("a stream was ended for a hard budget");
                        self.finish();
                        return Poll::Ready(Some(Ok(end)));
                    }
                    self.outcome.chunks += 1;
                    let mut out = BytesMut::new();
                    self.encoder.chunk(&payload, &mut out);
                    if self.encoder.ended() {
                        // An output guard blocked the reply: its error event is the end.
                        self.mark_blocked();
                        self.finish();
                        return Poll::Ready(Some(Ok(out.freeze())));
                    }
                    if out.is_empty() {
                        // Nothing to say in the client's API for this chunk (yet).
                        continue;
                    }
                    return Poll::Ready(Some(Ok(out.freeze())));
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e, "upstream stream broke");
                    self.outcome.error = Some(e.to_string());
                    self.finish();
                    let mut out = BytesMut::new();
                    self.encoder.error(&ApiError::from(e), &mut out);
                    return Poll::Ready(Some(Ok(out.freeze())));
                }
                Poll::Ready(None) => {
                    if self.native.is_some() {
                        // The provider's own closing event has gone out already.
                        self.finish();
                        return Poll::Ready(None);
                    }
                    let mut out = BytesMut::new();
                    self.encoder.done(&mut out);
                    if self.encoder.ended() {
                        // An output guard blocked the text held back to the end.
                        self.mark_blocked();
                    }
                    self.finish();
                    return Poll::Ready(Some(Ok(out.freeze())));
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if !self.done {
            self.outcome.client_gone = true;
            self.finish();
        }
    }
}

/// The `finish_reason`s of a chat completion or chunk (or `text_completion`), in choice
/// order; none for a body that names none.
pub fn finish_reasons(json: &[u8]) -> Vec<String> {
    if !contains(json, b"\"finish_reason\"") {
        return Vec::new();
    }
    #[derive(Deserialize)]
    struct Choice {
        finish_reason: Option<String>,
    }
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        choices: Vec<Choice>,
    }
    serde_json::from_slice::<Body>(json)
        .map(|b| {
            b.choices
                .into_iter()
                .filter_map(|c| c.finish_reason)
                .collect()
        })
        .unwrap_or_default()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderError;
    use futures_util::StreamExt;
    use std::sync::{Arc, Mutex};

    fn events(items: Vec<Result<&'static str, ProviderError>>) -> EventStream {
        futures_util::stream::iter(
            items
                .into_iter()
                .map(|r| r.map(|s| Bytes::from_static(s.as_bytes()))),
        )
        .boxed()
    }

    async fn collect(relay: Relay) -> String {
        let parts: Vec<Bytes> = relay.map(|r| r.unwrap()).collect().await;
        parts
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn usage_chunk_is_read_and_stripped_when_not_asked_for() {
        let seen = Arc::new(Mutex::new(None));
        let sink = seen.clone();
        let relay = Relay::new(
            events(vec![
                Ok(r#"{"choices":[{"delta":{"content":"hi"}}],"usage":null}"#),
                Ok(
                    r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
                ),
            ]),
            true,
            Some(Box::new(move |o| *sink.lock().unwrap() = Some(o))),
        );
        let text = collect(relay).await;
        assert!(text.contains("\"hi\""));
        assert!(!text.contains("prompt_tokens"));
        assert!(text.ends_with("data: [DONE]\n\n"));
        let outcome = seen.lock().unwrap().clone().unwrap();
        assert_eq!(outcome.usage.unwrap().total_tokens, 3);
        assert_eq!(outcome.chunks, 1);
    }

    #[tokio::test]
    async fn capture_keeps_payloads_up_to_its_bound_and_then_none() {
        let run = |max_bytes: usize| {
            let seen = Arc::new(Mutex::new(None));
            let sink = seen.clone();
            let relay = Relay::new(
                events(vec![Ok("{\"a\":1}"), Ok("{\"b\":2}"), Ok("{\"c\":3}")]),
                false,
                Some(Box::new(move |o| *sink.lock().unwrap() = Some(o))),
            )
            .capture(max_bytes);
            async move {
                let text = collect(relay).await;
                let outcome = seen.lock().unwrap().clone().unwrap();
                (text, outcome)
            }
        };
        let (_, all) = run(21).await;
        assert_eq!(all.payloads.len(), 3, "7 bytes each: 21 fit");
        let (text, over) = run(20).await;
        assert!(over.payloads.is_empty(), "past the bound nothing is kept");
        assert_eq!(over.chunks, 3);
        assert!(over.error.is_none());
        assert_eq!(
            text, "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: {\"c\":3}\n\ndata: [DONE]\n\n",
            "the client still gets every event"
        );
    }

    #[tokio::test]
    async fn a_broken_stream_ends_with_an_error_event_not_done() {
        let relay = Relay::new(
            events(vec![Ok("{}"), Err(ProviderError::Protocol("cut".into()))]),
            false,
            None,
        );
        let text = collect(relay).await;
        assert!(text.contains("\"error\""), "{text}");
        assert!(!text.contains("[DONE]"));
    }
}
