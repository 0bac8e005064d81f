//! Alerts by webhook: `webhooks.yaml` names receivers and the events each wants; events are
//! raised anywhere through [`Webhooks::emit`] (never blocking), and delivered in the background
//! as signed JSON POSTs, retried with backoff, the recent ones listed at
//! `GET /admin/webhooks/deliveries`.
//!
//! - `event.rs`: the events and their JSON bodies;
//! - `config.rs`: `webhooks.yaml`, validated (loaded by `load.rs`, kept in the `Snapshot`);
//! - `handle.rs`: [`Webhooks`], the bounded queue's sending end;
//! - `dispatch.rs`: the dispatcher and the deliveries with their retries;
//! - `sign.rs`: the HMAC-SHA256 signature and its check;
//! - `deliveries.rs`: the ring of recent deliveries;
//! - `expiry.rs`: the periodic `key.expiring` check.

pub mod config;
pub mod deliveries;
pub mod dispatch;
pub mod event;
pub mod expiry;
pub mod handle;
pub mod sign;

pub use config::{Hook, WebhookConfig};
pub use event::{Event, EventKind, Problem};
pub use handle::Webhooks;
