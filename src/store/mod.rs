//! Persistent state in one embedded sled database.
//!
//! One module per kind of state, each behind a small trait so that a shared backend can later
//! serve several gateway instances without touching the callers.

pub mod assignments;
pub mod cache;
pub mod counters;
pub mod database;
pub mod keys;
pub mod ledger;
pub mod logs;
pub mod usage;

pub use assignments::AssignmentStore;
pub use cache::{CachedReply, ResponseCache};
pub use counters::{CounterStore, Limit, OverLimit};
pub use database::{Database, What};
pub use keys::{KeyRecord, KeyStore, NewKey, Role, SledKeyStore};
pub use ledger::{Ledger, LedgerBatch};

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

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => StoreError::Io(io),
            sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
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

/// The open database and the stores built on it.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    pub keys: Arc<dyn KeyStore>,
    pub counters: Arc<dyn CounterStore>,
    pub assignments: Arc<dyn AssignmentStore>,
    pub cache: Arc<dyn ResponseCache>,
    pub logs: Arc<dyn logs::LogStore>,
    pub usage: Arc<dyn usage::UsageStore>,
    /// Request log entries with their usage, written together (what the accounting writer uses).
    pub ledger: Arc<dyn Ledger>,
}

/// How many cached responses to keep at most, unless told otherwise.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;
/// sled's segment size; see `database::open_sled`. Fixed once a database is created.
pub const SEGMENT_BYTES: usize = 2 << 20;

/// How often expired cache entries are swept.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

impl Store {
    /// Opens (or creates) the database in `dir`. `cache_bytes` bounds sled's page cache.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        Self::open_with(dir, cache_bytes, DEFAULT_CACHE_ENTRIES)
    }

    /// As [`Store::open`], with a bound on cached responses.
    pub fn open_with(
        dir: &Path,
        cache_bytes: u64,
        cache_max_entries: usize,
    ) -> Result<Store, StoreError> {
        let db = Database::open(dir, cache_bytes)?;
        let keys = SledKeyStore::open(&db)?;
        let counters = counters::SledCounters::open(&db)?;
        let assignments = assignments::SledAssignments::open(&db)?;
        let cache = cache::SledCache::open(&db, cache_max_entries)?;
        spawn_sweeper(Arc::downgrade(&cache));
        let logs = logs::SledLogs::open(&db)?;
        let usage = Arc::new(usage::SledUsage::open(&db));
        let ledger = Arc::new(ledger::SledLedger::new(&db, logs.clone()));
        Ok(Store {
            logs,
            usage,
            ledger,
            db,
            keys,
            counters,
            assignments,
            cache,
        })
    }

    /// Writes everything to disk now: the counters, then whatever sled holds. If the store
    /// cannot write, it first tries to recover (see [`Database::check`]). For shutdown and
    /// the CLI, which exit right after.
    pub fn flush(&self) -> Result<(), StoreError> {
        if self.db.fault().is_some() {
            self.db.check();
        }
        self.db.writable()?;
        self.counters.persist()?;
        self.db.flush()
    }

    /// Makes every write so far durable (sled's flush alone).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.flush()
    }

    /// True when the database answers a read; `/health/ready` uses it.
    pub fn is_healthy(&self) -> bool {
        self.db
            .trees()
            .is_ok_and(|t| t.db.contains_key(b"health").is_ok())
    }

    /// Why the store cannot write, or `None` while it can (the last write or probe worked).
    pub fn write_fault(&self) -> Option<String> {
        self.db.fault()
    }

    /// Checks now that the store writes, recovering if it can; see [`Database::check`].
    pub fn check(&self) -> bool {
        self.db.check()
    }

    /// Increases by one each time the database is reopened after a write failure: anything
    /// written before that and not flushed was lost with the old one.
    pub fn generation(&self) -> u64 {
        self.db.generation()
    }

    /// Counts a failed write (and notes a storage failure for readiness).
    pub fn report(&self, what: What, e: &StoreError) {
        self.db.report(what, e)
    }

    /// The store's metrics in Prometheus text.
    pub fn render_metrics(&self, out: &mut String) {
        self.db.render_metrics(out)
    }

    #[cfg(test)]
    pub(crate) fn database(&self) -> &Arc<Database> {
        &self.db
    }
}

/// Sweeps expired cache entries off the async workers, until the cache is dropped.
fn spawn_sweeper(cache: std::sync::Weak<cache::SledCache>) {
    let spawned = std::thread::Builder::new()
        .name("cache-sweeper".into())
        .spawn(move || loop {
            std::thread::sleep(SWEEP_EVERY);
            let Some(cache) = cache.upgrade() else { return };
            match cache.sweep(keys::now_secs()) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "swept expired cache entries"),
                Err(e) if e.is_storage() => {
                    tracing::debug!(error = %e, "cache sweep skipped or failed")
                }
                Err(e) => tracing::error!(error = %e, "cache sweep failed"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the cache sweeper");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_made_with_sleds_default_segments_still_opens_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let old = sled::Config::new().path(dir.path()).open().unwrap();
            old.insert(b"kept", b"yes").unwrap();
            old.flush().unwrap();
        }
        assert_eq!(database::segment_size_of(dir.path()), 512 * 1024);
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let trees = store.db.trees().unwrap();
        assert_eq!(trees.db.get(b"kept").unwrap().unwrap(), &b"yes"[..]);
        drop((trees, store));

        let fresh = tempfile::tempdir().unwrap();
        drop(Store::open(fresh.path(), 1 << 20).unwrap());
        assert_eq!(database::segment_size_of(fresh.path()), SEGMENT_BYTES);
    }

    #[test]
    fn an_unfinished_snapshot_left_by_a_full_disk_does_not_stop_the_store_opening() {
        let dir = tempfile::tempdir().unwrap();
        let secret = {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            let (_, secret) = store.keys.create(NewKey::default()).unwrap();
            secret
        };
        // What sled leaves when writing a snapshot fails for want of space; alone, sled then
        // refuses to open ("Read corrupted data").
        std::fs::write(dir.path().join("snap.7FFFFFFFFFFFFFFF.generating"), b"").unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert!(store.keys.authenticate(&secret).is_some());
        assert!(!dir.path().join("snap.7FFFFFFFFFFFFFFF.generating").exists());
    }

    #[test]
    fn after_a_reopen_every_store_works_and_memory_follows_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let (_, secret) = store.keys.create(NewKey::default()).unwrap();
        store.counters.add("tokens", 0, 7);
        store.assignments.set("split", "user", "b").unwrap();
        let reply = CachedReply {
            provider: "p".into(),
            model: "m".into(),
            expires_at: u64::MAX,
            body: Some("{}".into()),
            chunks: vec![],
        };
        store.cache.put(b"p/m\x1fk", &reply).unwrap();
        let entry = logs::LogEntry {
            request_id: "r".into(),
            key_id: "k".into(),
            ..logs::LogEntry::default()
        };
        store
            .ledger
            .write(&store.ledger.batch(vec![entry]))
            .unwrap();
        // The counter may not be persisted yet: a reopen may lose it on disk, not in memory.
        assert_eq!(store.generation(), 0);

        store.database().reopen().unwrap();
        assert_eq!(store.generation(), 1);
        assert!(store.keys.authenticate(&secret).is_some());
        assert_eq!(store.counters.get("tokens", 0), 7);
        assert_eq!(store.assignments.get("split", "user").as_deref(), Some("b"));
        assert_eq!(store.cache.stats().entries, 1);
        assert!(store.logs.get("r").unwrap().is_some());
        assert_eq!(store.usage.key_usage("k").unwrap().totals.requests, 1);
        // Written again from memory into the reopened database.
        store.flush().unwrap();
        drop(store);
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.counters.get("tokens", 0), 7);
        assert!(store.keys.authenticate(&secret).is_some());
    }
}
