//! The state every handler shares.

use crate::auth::Authenticator;
use crate::reload::Reloader;
use crate::snapshot::Snapshot;
use crate::store::Store;
use arc_swap::ArcSwap;
use std::sync::Arc;

pub struct AppState {
    /// The live configuration; replaced whole on reload.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub reloader: Arc<Reloader>,
    pub accountant: Arc<crate::ledger_writer::Accountant>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub store: Store,
    pub auth: Authenticator,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// `--read-only-policies`: the admin API does not write or delete policy scripts.
    pub read_only_policies: bool,
    /// Provider health (breakers, latency), kept across reloads.
    pub health: Arc<crate::router::provider_health::Registry>,
    /// Budgets reaching 50, 80, 100 %, reported once each per window (to the log and the
    /// webhooks).
    pub budget_alerts: Arc<crate::proxy::budget_alerts::BudgetAlerts>,
    /// Alerts: `state.webhooks.emit(Event::...)` queues an event for the webhooks that want
    /// it and returns at once (never blocks, never fails); see `webhooks/`.
    pub webhooks: crate::webhooks::Webhooks,
    /// Stored Responses API responses, readable as soon as they are saved.
    pub responses: Arc<crate::proxy::stored::StoredResponses>,
}

impl AppState {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }
}
