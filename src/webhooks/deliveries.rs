//! The recent deliveries, in memory, for `GET /admin/webhooks/deliveries`: a ring of the last
//! [`KEPT`], each updated in place as its attempts go. Nothing here is persisted: after a
//! restart the list starts empty (the receiver's side is the record that lasts).

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use utoipa::ToSchema;

/// How many deliveries are kept; the oldest is forgotten first.
pub const KEPT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first attempt (or for a delivery slot).
    Pending,
    /// An attempt failed; another is scheduled (`next_attempt_at`).
    Retrying,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed, or the receiver refused it with a 4xx that retrying cannot fix.
    Failed,
}

/// One delivery of one event to one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Delivery {
    /// Also sent as `x-switchboard-delivery` and the body's `id`; the same on every attempt.
    pub id: String,
    /// The event's name, e.g. `breaker.opened`.
    pub event: String,
    /// The receiver, without credentials, query or fragment.
    pub url: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    pub max_attempts: u32,
    /// The HTTP status of the last answer, if the receiver answered.
    pub response_status: Option<u16>,
    /// Why the last attempt failed (never the URL or the secret).
    pub last_error: Option<String>,
    /// Unix milliseconds: when the event happened.
    pub created_at_ms: u64,
    /// Unix milliseconds of the last attempt's end.
    pub last_attempt_at_ms: Option<u64>,
    /// Unix milliseconds: when the next attempt is due, while retrying.
    pub next_attempt_at_ms: Option<u64>,
}

/// The ring. A short mutex section per change; the dispatcher is its only writer.
#[derive(Default)]
pub struct Deliveries {
    ring: Mutex<VecDeque<Delivery>>,
}

impl Deliveries {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Delivery>> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a new delivery, forgetting the oldest beyond [`KEPT`].
    pub fn add(&self, delivery: Delivery) {
        let mut ring = self.lock();
        if ring.len() >= KEPT {
            ring.pop_front();
        }
        ring.push_back(delivery);
    }

    /// Changes the delivery `id`, if it is still kept.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Delivery)) {
        let mut ring = self.lock();
        // Newest last, and a delivery being updated is recent: search from the back.
        if let Some(d) = ring.iter_mut().rev().find(|d| d.id == id) {
            change(d);
        }
    }

    /// Every kept delivery, newest first.
    pub fn recent(&self) -> Vec<Delivery> {
        self.lock().iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str) -> Delivery {
        Delivery {
            id: id.into(),
            event: "breaker.opened".into(),
            url: "http://127.0.0.1/hook".into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            max_attempts: 3,
            response_status: None,
            last_error: None,
            created_at_ms: 0,
            last_attempt_at_ms: None,
            next_attempt_at_ms: None,
        }
    }

    #[test]
    fn keeps_the_newest_and_updates_in_place() {
        let ring = Deliveries::default();
        for i in 0..KEPT + 5 {
            ring.add(delivery(&i.to_string()));
        }
        ring.update(&(KEPT + 4).to_string(), |d| {
            d.attempts = 2;
            d.status = DeliveryStatus::Delivered;
        });
        ring.update("0", |d| d.attempts = 9);
        let recent = ring.recent();
        assert_eq!(recent.len(), KEPT);
        assert_eq!(recent[0].id, (KEPT + 4).to_string());
        assert_eq!(
            (recent[0].attempts, recent[0].status),
            (2, DeliveryStatus::Delivered)
        );
        assert_eq!(recent[KEPT - 1].id, "5", "the oldest were forgotten");
    }
}
