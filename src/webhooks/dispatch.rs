//! The dispatcher: one task takes events off the queue, finds the webhooks of the running
//! configuration that want each, and starts one delivery per receiver. A delivery is a task of
//! its own (at most [`IN_FLIGHT`] at once), so a slow or dead receiver holds only its own
//! slot, never the queue, another receiver or a request.
//!
//! Each attempt is a signed JSON POST with the hook's timeout; failures are retried after
//! 1, 2, 4, 8 ... s (doubling, at most [`MAX_BACKOFF`], plus up to 20 % jitter) until the
//! hook's `max_attempts` are used. A 4xx other than 408 and 429 is final: the receiver
//! refused this delivery, and sending it again would not change that.

use super::config::Hook;
use super::deliveries::{Deliveries, Delivery, DeliveryStatus};
use super::event::Event;
use super::handle::{Queued, Receiver, Webhooks};
use super::sign;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use rand::Rng;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Deliveries running at once (each may be waiting out a timeout or a backoff).
pub const IN_FLIGHT: usize = 64;
/// The first retry's delay; each further one doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Starts the dispatcher for the configuration in `live`; returns the handle to emit with.
/// Must run inside a tokio runtime. It stops once every handle is dropped (deliveries under
/// way finish their attempts) or `live` is gone.
pub fn start(metrics: Arc<Metrics>, live: &Arc<ArcSwap<Snapshot>>) -> Webhooks {
    let (handle, receiver) = Webhooks::channel(metrics);
    tokio::spawn(run(receiver, Arc::downgrade(live)));
    handle
}

async fn run(mut receiver: Receiver, live: Weak<ArcSwap<Snapshot>>) {
    let client = match client() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are off");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(Queued { event, at_ms }) = receiver.rx.recv().await {
        let Some(live) = live.upgrade() else { return };
        let kind = event.kind();
        // Read when the event is dispatched: a reload applies to every later event.
        let hooks: Vec<Arc<Hook>> = live.load().webhooks.subscribed(kind).cloned().collect();
        drop(live);
        for hook in hooks {
            let id = format!("whd_{}", uuid::Uuid::new_v4().simple());
            receiver.deliveries.add(Delivery {
                id: id.clone(),
                event: kind.as_str().to_string(),
                url: hook.display_url(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                max_attempts: hook.max_attempts,
                response_status: None,
                last_error: None,
                created_at_ms: at_ms,
                last_attempt_at_ms: None,
                next_attempt_at_ms: None,
            });
            // Waits while every slot is busy; the queue (bounded) absorbs that meanwhile.
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let job = Job {
                body: event.body(&id, at_ms / 1000),
                id,
                event: event.clone(),
                hook,
                client: client.clone(),
                deliveries: receiver.deliveries.clone(),
                metrics: receiver.metrics.clone(),
            };
            tokio::spawn(job.deliver(permit));
        }
    }
}

fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("switchboard-webhooks/", env!("CARGO_PKG_VERSION")))
        // A redirect would send the signed body somewhere the configuration does not name.
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}

/// Why one attempt failed; shown in the deliveries list, so never the URL or the secret.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("the receiver answered {0}")]
    Status(u16),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect to the receiver")]
    Connect,
    #[error("the request failed: {0}")]
    Other(String),
    #[error("the body could not be signed")]
    Sign,
}

impl AttemptError {
    fn retryable(&self) -> bool {
        match self {
            AttemptError::Status(s) => *s == 408 || *s == 429 || !(400..500).contains(s),
            AttemptError::Sign => false,
            _ => true,
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            AttemptError::Status(s) => Some(*s),
            _ => None,
        }
    }
}

/// One delivery: the event to one receiver, with its attempts.
struct Job {
    id: String,
    event: Event,
    body: Vec<u8>,
    hook: Arc<Hook>,
    client: reqwest::Client,
    deliveries: Arc<Deliveries>,
    metrics: Arc<Metrics>,
}

impl Job {
    async fn deliver(self, _slot: OwnedSemaphorePermit) {
        let kind = self.event.kind().as_str();
        let max = self.hook.max_attempts.max(1);
        for attempt in 1..=max {
            let result = self.attempt(attempt).await;
            let now = crate::clock::now_ms();
            self.metrics.webhook_attempt(result.is_ok());
            let error = match result {
                Ok(status) => {
                    // Counted before the row changes, so whoever sees the row delivered also
                    // sees it in the metrics.
                    self.metrics.webhook_delivery(kind, true);
                    self.deliveries.update(&self.id, |d| {
                        d.status = DeliveryStatus::Delivered;
                        d.attempts = attempt;
                        d.response_status = Some(status);
                        d.last_attempt_at_ms = Some(now);
                        d.next_attempt_at_ms = None;
                    });
                    tracing::debug!(event = kind, url = %self.hook.display_url(), attempt, "webhook delivered");
                    return;
                }
                Err(e) => e,
            };
            let last = attempt == max || !error.retryable();
            let delay = backoff(attempt);
            if last {
                self.metrics.webhook_delivery(kind, false);
            }
            self.deliveries.update(&self.id, |d| {
                d.status = if last {
                    DeliveryStatus::Failed
                } else {
                    DeliveryStatus::Retrying
                };
                d.attempts = attempt;
                d.response_status = error.status();
                d.last_error = Some(error.to_string());
                d.last_attempt_at_ms = Some(now);
                d.next_attempt_at_ms = (!last).then(|| now + delay.as_millis() as u64);
            });
            if last {
                tracing::warn!(
                    event = kind,
                    url = %self.hook.display_url(),
                    delivery = %self.id,
                    attempts = attempt,
                    error = %error,
                    "webhook delivery failed"
                );
                return;
            }
            tracing::debug!(event = kind, url = %self.hook.display_url(), attempt, error = %error, "webhook attempt failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One signed POST; the HTTP status when it is a 2xx.
    async fn attempt(&self, attempt: u32) -> Result<u16, AttemptError> {
        // Signed per attempt: a retry carries a fresh timestamp and passes a receiver's
        // replay window however late it comes.
        let timestamp = crate::clock::now_secs();
        let signature =
            sign::header_value(self.hook.secret.expose().as_bytes(), timestamp, &self.body)
                .ok_or(AttemptError::Sign)?;
        let sent = self
            .client
            .post(self.hook.url.clone())
            .timeout(self.hook.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(sign::EVENT_HEADER, self.event.kind().as_str())
            .header(sign::DELIVERY_HEADER, &self.id)
            .header(sign::ATTEMPT_HEADER, attempt.to_string())
            .header(sign::SIGNATURE_HEADER, signature)
            .body(self.body.clone())
            .send()
            .await;
        // The answer's body is never read: only the status matters, and a receiver cannot
        // make the gateway read megabytes.
        match sent {
            Ok(res) if res.status().is_success() => Ok(res.status().as_u16()),
            Ok(res) => Err(AttemptError::Status(res.status().as_u16())),
            Err(e) if e.is_timeout() => Err(AttemptError::Timeout(self.hook.timeout)),
            Err(e) if e.is_connect() => Err(AttemptError::Connect),
            Err(e) => Err(AttemptError::Other(e.without_url().to_string())),
        }
    }
}

/// The delay after failed attempt `attempt` (1-based): doubling from [`FIRST_BACKOFF`], at
/// most [`MAX_BACKOFF`], plus up to 20 % so receivers coming back are not hit all at once.
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    base.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..0.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        for (attempt, secs) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (4, 8.0),
            (7, 60.0),
            (40, 60.0),
        ] {
            let d = backoff(attempt).as_secs_f64();
            assert!(d >= secs && d <= secs * 1.2, "attempt {attempt}: {d}");
        }
    }

    #[test]
    fn refusals_are_final_and_outages_are_retried() {
        assert!(!AttemptError::Status(400).retryable());
        assert!(!AttemptError::Status(401).retryable());
        assert!(AttemptError::Status(408).retryable());
        assert!(AttemptError::Status(429).retryable());
        assert!(AttemptError::Status(503).retryable());
        assert!(AttemptError::Status(302).retryable());
        assert!(AttemptError::Connect.retryable());
        assert!(AttemptError::Timeout(Duration::from_secs(1)).retryable());
    }
}
