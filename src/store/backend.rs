//! The store as callers see it: every store's trait object from one backend, and what the
//! backend does as a whole.

use super::assignments::AssignmentStore;
use super::cache::ResponseCache;
use super::counters::CounterStore;
use super::error::{StoreError, What};
use super::keys::KeyStore;
use super::ledger::Ledger;
use super::logs::LogStore;
use super::portable::Portable;
use super::responses::ResponseStore;
use super::teams::TeamStore;
use super::usage::UsageStore;
use std::sync::Arc;

/// Which backend holds the state; chosen at start (`--store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One embedded database in the data folder: durable, one process.
    #[default]
    Sled,
    /// This process's memory: nothing survives a restart. For trying the gateway out.
    Memory,
    /// A Redis (or Valkey) shared by a fleet of gateways (`--redis-url`).
    Redis,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Sled => "sled",
            StoreKind::Memory => "memory",
            StoreKind::Redis => "redis",
        }
    }
}

/// What the store does as a whole, whatever it holds: durability, health, recovery, metrics.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    fn kind(&self) -> StoreKind;
    /// Makes everything written so far durable, counters included: for shutdown and the CLI.
    /// If the store cannot write, it first tries to recover.
    async fn flush(&self) -> Result<(), StoreError>;
    /// Makes the ledger's writes so far durable (the accountant's periodic sync).
    async fn sync(&self) -> Result<(), StoreError>;
    /// True when the store answers a read; `/health/ready` uses it.
    fn is_healthy(&self) -> bool;
    /// Why the store cannot write, or `None` while it can.
    fn write_fault(&self) -> Option<String>;
    /// Checks now that the store writes, recovering if it can.
    fn check(&self) -> bool;
    /// Increases by one each time the store is reopened after a write failure: anything
    /// written before that and not synced was lost with the old one.
    fn generation(&self) -> u64;
    /// Counts a failed write (and notes a storage failure for readiness).
    fn report(&self, what: What, e: &StoreError);
    /// The store's metrics in Prometheus text.
    fn render_metrics(&self, out: &mut String);
    /// The sled database, for tests that reopen it.
    #[cfg(test)]
    fn sled_database(&self) -> Option<&Arc<super::sled::database::Database>> {
        None
    }
}

/// Every store, from one backend.
#[derive(Clone)]
pub struct Store {
    pub keys: Arc<dyn KeyStore>,
    pub teams: Arc<dyn TeamStore>,
    pub counters: Arc<dyn CounterStore>,
    pub assignments: Arc<dyn AssignmentStore>,
    pub cache: Arc<dyn ResponseCache>,
    pub logs: Arc<dyn LogStore>,
    pub usage: Arc<dyn UsageStore>,
    /// Request log entries with their usage, written together (what the accounting writer uses).
    pub ledger: Arc<dyn Ledger>,
    /// Stored Responses API responses (`previous_response_id`).
    pub responses: Arc<dyn ResponseStore>,
    /// The state as records, out and in (`switchboard export` / `import`).
    pub portable: Arc<dyn Portable>,
    pub backend: Arc<dyn Backend>,
}
