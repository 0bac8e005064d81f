//! A served stream's guard: ends it with a timeout error when the upstream goes silent for
//! longer than the idle timeout or runs past the total one, and tells the provider's health
//! entry when a stream that started well breaks (it was a success at its first byte).

use super::provider_health::Entry;
use crate::config::BreakerPolicy;
use crate::providers::{EventStream, ProviderError};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub struct Limits {
    pub provider: Arc<str>,
    pub idle: Duration,
    /// The whole exchange ends by then.
    pub deadline: Instant,
}

pub fn watch(
    events: EventStream,
    limits: Limits,
    entry: Arc<Entry>,
    policy: BreakerPolicy,
) -> EventStream {
    Watched {
        idle_timer: Box::pin(tokio::time::sleep(limits.idle)),
        total_timer: Box::pin(tokio::time::sleep_until(limits.deadline)),
        limits,
        events,
        entry,
        policy,
        ended: false,
    }
    .boxed()
}

struct Watched {
    events: EventStream,
    limits: Limits,
    idle_timer: Pin<Box<Sleep>>,
    total_timer: Pin<Box<Sleep>>,
    entry: Arc<Entry>,
    policy: BreakerPolicy,
    ended: bool,
}

impl Watched {
    fn fail(&mut self, e: ProviderError) -> Poll<Option<Result<Bytes, ProviderError>>> {
        self.ended = true;
        self.entry.stream_broke(&self.policy);
        Poll::Ready(Some(Err(e)))
    }
}

impl Stream for Watched {
    type Item = Result<Bytes, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.events.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(payload))) => {
                let next = Instant::now() + self.limits.idle;
                self.idle_timer.as_mut().reset(next);
                return Poll::Ready(Some(Ok(payload)));
            }
            Poll::Ready(Some(Err(e))) => return self.fail(e),
            Poll::Ready(None) => {
                self.ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if self.total_timer.as_mut().poll(cx).is_ready() {
            let message = format!(
                "provider `{}` did not finish its stream in time",
                self.limits.provider
            );
            return self.fail(ProviderError::Timeout(message));
        }
        if self.idle_timer.as_mut().poll(cx).is_ready() {
            let message = format!(
                "provider `{}` went silent for {:.1} s mid-stream",
                self.limits.provider,
                self.limits.idle.as_secs_f64()
            );
            return self.fail(ProviderError::Timeout(message));
        }
        Poll::Pending
    }
}
