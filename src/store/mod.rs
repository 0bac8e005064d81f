//! Persistent state in one embedded sled database.
//!
//! One module per kind of state, each behind a small trait so that a shared backend can later
//! serve several gateway instances without touching the callers.

pub mod keys;

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
}

impl Store {
    /// Opens (or creates) the database in `dir`. `cache_bytes` bounds sled's page cache.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Sled(e.into()))?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
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
        Ok(Store { db, keys })
    }

    /// Writes everything to disk now; for the CLI, which exits right after.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// True when the database answers a read; `/health/ready` uses it.
    pub fn is_healthy(&self) -> bool {
        self.db.contains_key(b"health").is_ok()
    }
}
