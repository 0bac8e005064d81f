//! The memory backend: every store in this process's memory, nothing kept when it ends. For
//! `switchboard policy test`, the simulator, benches, unit tests and `--store memory` (trying
//! the gateway out); the semantics are the sled backend's, checked by the same suite.

pub mod assignments;
pub mod cache;
pub mod counters;
pub mod keys;
pub mod ledger;
pub mod portable;
pub mod responses;
pub mod teams;

use crate::store::backend::{Backend, Store, StoreKind};
use crate::store::error::{StoreError, What};
use std::sync::Arc;

/// Every store in memory; `cache_max_entries` bounds the response cache.
pub fn open(cache_max_entries: usize) -> Store {
    let ledger = Arc::new(ledger::MemoryLedger::default());
    let keys = Arc::new(keys::MemoryKeyStore::default());
    let teams = Arc::new(teams::MemoryTeamStore::new(keys.clone()));
    let counters = Arc::new(counters::MemoryCounters::default());
    let assignments = Arc::new(assignments::MemoryAssignments::default());
    let portable = portable::MemoryPortable {
        keys: keys.clone(),
        teams: teams.clone(),
        assignments: assignments.clone(),
        counters: counters.clone(),
        ledger: ledger.clone(),
    };
    Store {
        keys,
        teams,
        counters,
        assignments,
        cache: Arc::new(cache::MemoryCache::new(cache_max_entries)),
        logs: ledger.clone(),
        usage: ledger.clone(),
        ledger,
        responses: Arc::new(responses::MemoryResponses::default()),
        portable: Arc::new(portable),
        backend: Arc::new(MemoryBackend),
    }
}

/// Nothing to flush, nothing that can fail to write.
pub struct MemoryBackend;

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> StoreKind {
        StoreKind::Memory
    }

    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn is_healthy(&self) -> bool {
        true
    }

    fn write_fault(&self) -> Option<String> {
        None
    }

    fn check(&self) -> bool {
        true
    }

    fn generation(&self) -> u64 {
        0
    }

    fn report(&self, _what: What, _e: &StoreError) {}

    fn render_metrics(&self, _out: &mut String) {}
}
