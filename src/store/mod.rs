//! Persistent state behind backend-neutral async traits, one module per kind of state.
//!
//! Each trait is shaped so that one call is one round trip (or one pipeline) to a network
//! store; what runs on every request (authenticating a key, reading a counter or a split
//! assignment from a script) is answered from memory. Backends implement every trait:
//! [`sled`] (the default, one embedded database) and [`memory`] (nothing kept). The backend is
//! chosen at start ([`StoreKind`], `--store`); [`contract`] is the suite every backend passes.

pub mod assignments;
pub mod cache;
#[cfg(test)]
mod contract;
pub mod counters;
pub mod keys;
pub mod ledger;
pub mod logs;
pub mod memory;
pub mod sled;
pub mod usage;
pub mod windows;

pub use self::sled::database::What;
pub use assignments::AssignmentStore;
pub use cache::{CachedReply, ResponseCache};
pub use counters::{AdmitError, CounterAdd, CounterStore, Limit, OverLimit};
pub use keys::{KeyRecord, KeyStore, NewKey, Role};
pub use ledger::{Ledger, LedgerBatch};
pub use logs::LogStore;
pub use usage::UsageStore;

use std::path::Path;
use std::sync::Arc;

/// What can go wrong in a store, whatever the backend: the variants say what it means for
/// the caller (retry later, the data is bad, someone else holds the folder), not which
/// library failed. A backend maps its own errors in (`From<sled::Error>` below).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the data folder {0} is in use by another switchboard process (is the gateway running? use the admin API instead)")]
    Locked(String),
    /// The disk or the connection failed (a full disk, an I/O error): the same call may work
    /// later.
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// The store cannot take the call now: it is being reopened after a write failure.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Any other failure of the backend.
    #[error("storage backend error: {0}")]
    Backend(String),
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        match e {
            ::sled::Error::Io(io) => StoreError::Io(io),
            ::sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
            other => StoreError::Backend(other.to_string()),
        }
    }
}

impl StoreError {
    /// A failure of the disk or the database file, not of the data: a full disk, an I/O
    /// error, a store being reopened. The same call may work later.
    pub fn is_storage(&self) -> bool {
        matches!(self, StoreError::Io(_) | StoreError::Unavailable(_))
    }
}

/// Which backend holds the state; chosen at start (`--store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One embedded database in the data folder: durable, one process.
    #[default]
    Sled,
    /// This process's memory: nothing survives a restart. For trying the gateway out.
    Memory,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Sled => "sled",
            StoreKind::Memory => "memory",
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
    fn sled_database(&self) -> Option<&Arc<self::sled::database::Database>> {
        None
    }
}

/// Every store, from one backend.
#[derive(Clone)]
pub struct Store {
    pub keys: Arc<dyn KeyStore>,
    pub counters: Arc<dyn CounterStore>,
    pub assignments: Arc<dyn AssignmentStore>,
    pub cache: Arc<dyn ResponseCache>,
    pub logs: Arc<dyn LogStore>,
    pub usage: Arc<dyn UsageStore>,
    /// Request log entries with their usage, written together (what the accounting writer uses).
    pub ledger: Arc<dyn Ledger>,
    pub backend: Arc<dyn Backend>,
}

/// How many cached responses to keep at most, unless told otherwise.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;

/// Where and how to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions<'a> {
    pub kind: StoreKind,
    /// The data folder (sled).
    pub dir: &'a Path,
    /// Bounds sled's page cache.
    pub cache_bytes: u64,
    pub cache_max_entries: usize,
}

impl Store {
    /// Opens the backend the options name.
    pub fn open_with(options: &StoreOptions) -> Result<Store, StoreError> {
        match options.kind {
            StoreKind::Sled => {
                self::sled::open(options.dir, options.cache_bytes, options.cache_max_entries)
            }
            StoreKind::Memory => Ok(memory::open(options.cache_max_entries)),
        }
    }

    /// Opens (or creates) the sled database in `dir`. `cache_bytes` bounds sled's page cache.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        self::sled::open(dir, cache_bytes, DEFAULT_CACHE_ENTRIES)
    }

    /// Every store in memory.
    pub fn memory() -> Store {
        memory::open(DEFAULT_CACHE_ENTRIES)
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        self.backend.flush().await
    }
}
