//! Persistent state in one embedded sled database.
//!
//! One module per kind of state, each behind a small trait so that a shared backend can later
//! serve several gateway instances without touching the callers.

pub mod assignments;
pub mod cache;
pub mod counters;
pub mod keys;
pub mod logs;
pub mod usage;

pub use assignments::AssignmentStore;
pub use cache::{CachedReply, ResponseCache};
pub use counters::{CounterStore, Limit, OverLimit};
pub use keys::{KeyRecord, KeyStore, NewKey, Role, SledKeyStore};

use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the data folder {0} is in use by another switchboard process (is the gateway running? use the admin API instead)")]
    Locked(String),
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

/// The open database and the stores built on it.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    pub keys: Arc<dyn KeyStore>,
    pub counters: Arc<dyn CounterStore>,
    pub assignments: Arc<dyn AssignmentStore>,
    pub cache: Arc<dyn ResponseCache>,
    pub logs: Arc<dyn logs::LogStore>,
    pub usage: Arc<dyn usage::UsageStore>,
}

/// How many cached responses to keep at most, unless told otherwise.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;
/// sled's segment size; see `open_with`. Fixed once a database is created.
pub const SEGMENT_BYTES: usize = 2 << 20;

/// The segment size of the database in `dir`: the one it was created with (sled refuses to open
/// it with another; folders made before 2 MiB segments have sled's default 512 KiB), or
/// [`SEGMENT_BYTES`] for a new one.
fn segment_size_of(dir: &Path) -> usize {
    // The file ends in a binary checksum, so it is read as bytes.
    std::fs::read(dir.join("conf"))
        .ok()
        .and_then(|conf| {
            String::from_utf8_lossy(&conf)
                .lines()
                .find_map(|l| l.strip_prefix("segment_size:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(SEGMENT_BYTES)
}

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
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Sled(e.into()))?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // sled writes a page bigger than a quarter segment as a blob, and its cache counts
            // a blob by its pointer: such pages would never be evicted. 2 MiB segments (sled's
            // default is 512 KiB) put that limit at 512 KiB, above a full leaf of log records.
            .segment_size(segment_size_of(dir))
            // Writes reach disk in the background; nothing on a request path waits for a flush.
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    StoreError::Locked(dir.display().to_string())
                }
                other => StoreError::Sled(other),
            })?;
        let keys = Arc::new(SledKeyStore::open(&db)?);
        let counters = counters::SledCounters::open(&db)?;
        let assignments = Arc::new(assignments::SledAssignments::open(&db)?);
        let cache = Arc::new(cache::SledCache::open(&db, cache_max_entries)?);
        spawn_sweeper(Arc::downgrade(&cache));
        let logs = Arc::new(logs::SledLogs::open(&db)?);
        let usage = Arc::new(usage::SledUsage::open(&db)?);
        Ok(Store {
            logs,
            usage,
            db,
            keys,
            counters,
            assignments,
            cache,
        })
    }

    /// Writes everything to disk now; for the CLI, which exits right after.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.counters.persist()?;
        self.db.flush()?;
        Ok(())
    }

    /// True when the database answers a read; `/health/ready` uses it.
    pub fn is_healthy(&self) -> bool {
        self.db.contains_key(b"health").is_ok()
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
        assert_eq!(segment_size_of(dir.path()), 512 * 1024);
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.db.get(b"kept").unwrap().unwrap(), &b"yes"[..]);
        drop(store);

        let fresh = tempfile::tempdir().unwrap();
        drop(Store::open(fresh.path(), 1 << 20).unwrap());
        assert_eq!(segment_size_of(fresh.path()), SEGMENT_BYTES);
    }
}
