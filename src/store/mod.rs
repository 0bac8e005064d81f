//! Persistent state behind backend-neutral async traits, one module per kind of state.
//!
//! Each trait is shaped so that one call is one round trip (or one pipeline) to a network
//! store; what runs on every request (authenticating a key, reading a counter or a split
//! assignment from a script, a key's team) is answered from memory. Backends implement every trait:
//! [`sled`] (the default, one embedded database), [`memory`] (nothing kept) and [`redis`] (shared
//! by a fleet of gateways). The backend is
//! chosen at start ([`StoreKind`], `--store`); `store/contract.rs` is the suite every backend passes.

pub mod assignments;
pub mod backend;
pub mod cache;
#[cfg(test)]
mod contract;
pub mod counters;
pub mod error;
pub mod keys;
pub mod ledger;
pub mod limits;
pub mod logs;
pub mod memory;
pub mod portable;
pub mod redis;
/// A real redis-server for the tests (one file shared with the integration tests).
#[cfg(test)]
#[path = "../../tests/support/redis_server.rs"]
pub(crate) mod redis_server;
pub mod responses;
pub mod shard;
pub mod sled;
pub mod teams;
pub mod usage;
pub mod windows;

pub use assignments::AssignmentStore;
pub use backend::{Backend, Store, StoreKind};
pub use cache::{CachedReply, ResponseCache};
pub use counters::{AdmitError, CounterAdd, CounterStore, Limit, OverLimit};
pub use error::{StoreError, What};
pub use keys::{KeyRecord, KeyStore, NewKey, Role};
pub use ledger::{Ledger, LedgerBatch};
pub use limits::Limits;
pub use logs::LogStore;
pub use portable::{ImportCounts, Portable, Record};
pub use teams::{TeamRecord, TeamStore};
pub use usage::UsageStore;

use std::path::Path;

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
    /// Where Redis is (`StoreKind::Redis`).
    pub redis: Option<&'a self::redis::RedisOptions>,
}

impl Store {
    /// Opens the backend the options name.
    pub async fn open_with(options: &StoreOptions<'_>) -> Result<Store, StoreError> {
        match options.kind {
            StoreKind::Sled => {
                self::sled::open(options.dir, options.cache_bytes, options.cache_max_entries)
            }
            StoreKind::Memory => Ok(memory::open(options.cache_max_entries)),
            StoreKind::Redis => match options.redis {
                Some(redis) => self::redis::open(redis, options.cache_max_entries).await,
                None => Err(StoreError::Backend(
                    "--store redis needs --redis-url (or SWITCHBOARD_REDIS_URL)".into(),
                )),
            },
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
