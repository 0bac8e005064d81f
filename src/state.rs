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
    /// What scripts read with `ctx.provider(name)` / `ctx.providers()`.
    pub providers: Arc<dyn crate::policy::facts::ProviderSource>,
    /// Room for shadow copies in flight (`ctx.mirror`).
    pub mirrors: Arc<crate::proxy::mirror::Mirrors>,
    /// Proxies whose `X-Forwarded-For` is believed (`req.client_ip`).
    pub trusted_proxies: crate::http::client_ip::TrustedProxies,
    /// OpenTelemetry traces (`--otlp-endpoint`); off, it only passes a client's
    /// `traceparent` upstream.
    pub telemetry: crate::telemetry::Telemetry,
    /// The share of requests traced, changeable while running:
    /// `state.trace_sampling.set_sampling_ratio(0.1)` (0..=1, else refused) applies to the next
    /// request. Shared with the tracer's sampler; without tracing it is kept but unused.
    pub trace_sampling: crate::telemetry::SamplingRatio,
    /// Files and batches (`/v1/files`, `/v1/batches`); the runner is `proxy::batch_runner`.
    pub batches: Arc<crate::batches::Batches>,
}

impl AppState {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }
}
