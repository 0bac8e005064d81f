//! [`Webhooks`]: the handle every part of the gateway raises events through. `emit` puts the
//! event on a bounded queue and returns: it never waits, never touches the network, and when
//! the queue is full the event is dropped and counted (`switchboard_webhook_events_dropped_total`).
//! The dispatcher (`dispatch.rs`) takes it from there.

use super::deliveries::{Deliveries, Delivery};
use super::event::Event;
use crate::metrics::Metrics;
use std::sync::{Arc, Weak};
use tokio::sync::mpsc::{self, error::TrySendError};

/// Events waiting for the dispatcher. Far more than a burst of breaker flips or budget
/// crossings; a flood beyond it is dropped rather than held.
pub const QUEUE: usize = 1024;

/// An event as queued: what happened and when (unix milliseconds).
#[derive(Debug, Clone)]
pub struct Queued {
    pub event: Event,
    pub at_ms: u64,
}

struct Shared {
    tx: mpsc::Sender<Queued>,
    deliveries: Arc<Deliveries>,
    metrics: Arc<Metrics>,
}

/// Cheap to clone; [`Webhooks::disabled`] (the default) drops every event, for parts built
/// without a dispatcher (unit tests, tools).
#[derive(Clone, Default)]
pub struct Webhooks {
    shared: Option<Arc<Shared>>,
}

/// The dispatcher's end of the queue.
pub struct Receiver {
    pub rx: mpsc::Receiver<Queued>,
    pub deliveries: Arc<Deliveries>,
    pub metrics: Arc<Metrics>,
}

impl Webhooks {
    pub fn disabled() -> Self {
        Webhooks::default()
    }

    /// A handle and the queue's other end. The dispatcher ends when every handle is gone.
    pub fn channel(metrics: Arc<Metrics>) -> (Webhooks, Receiver) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let deliveries = Arc::new(Deliveries::default());
        let handle = Webhooks {
            shared: Some(Arc::new(Shared {
                tx,
                deliveries: deliveries.clone(),
                metrics: metrics.clone(),
            })),
        };
        (
            handle,
            Receiver {
                rx,
                deliveries,
                metrics,
            },
        )
    }

    /// Queues `event` for every webhook that wants it. Never blocks, never fails: safe on the
    /// request path and under locks that are held briefly.
    pub fn emit(&self, event: Event) {
        let Some(shared) = &self.shared else { return };
        let queued = Queued {
            event,
            at_ms: crate::clock::now_ms(),
        };
        match shared.tx.try_send(queued) {
            Ok(()) => {}
            Err(TrySendError::Full(q)) => {
                shared.metrics.webhook_event_dropped();
                tracing::warn!(
                    event = q.event.kind().as_str(),
                    "webhook queue full; event dropped"
                );
            }
            // The dispatcher is gone: the gateway is stopping.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// The recent deliveries, newest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared
            .as_ref()
            .map(|s| s.deliveries.recent())
            .unwrap_or_default()
    }

    /// A handle that does not keep the dispatcher alive (for background tasks that should end
    /// with the gateway).
    pub fn downgrade(&self) -> WeakWebhooks {
        WeakWebhooks {
            shared: self.shared.as_ref().map(Arc::downgrade),
        }
    }
}

pub struct WeakWebhooks {
    shared: Option<Weak<Shared>>,
}

impl WeakWebhooks {
    pub fn upgrade(&self) -> Option<Webhooks> {
        let shared = self.shared.as_ref()?.upgrade()?;
        Some(Webhooks {
            shared: Some(shared),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event::BreakerClosed {
            provider: "p".into(),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let metrics = Arc::new(Metrics::default());
        let (hooks, mut receiver) = Webhooks::channel(metrics.clone());
        for _ in 0..QUEUE + 3 {
            hooks.emit(event());
        }
        assert!(metrics
            .render()
            .contains("switchboard_webhook_events_dropped_total 3"));
        assert_eq!(receiver.rx.try_recv().unwrap().event, event());
        Webhooks::disabled().emit(event());
    }

    #[test]
    fn a_weak_handle_ends_with_the_last_strong_one() {
        let (hooks, mut receiver) = Webhooks::channel(Arc::new(Metrics::default()));
        let weak = hooks.downgrade();
        assert!(weak.upgrade().is_some());
        drop(hooks);
        assert!(weak.upgrade().is_none());
        assert!(matches!(
            receiver.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
