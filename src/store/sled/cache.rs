//! The response cache in sled: the trees `cache` (key → CachedReply as JSON) and
//! `cache_expiry` (expires_at, 8 bytes big-endian, ++ key → ()), so sweeping and evicting
//! touch only what they remove.

use super::blocking;
use super::database::{Database, Trees};
use crate::store::cache::{namespace_prefix, CacheStats, CachedReply, ResponseCache};
use crate::store::error::StoreError;
use crate::store::error::What;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The cache in sled; a handle, clones share it.
#[derive(Clone)]
pub struct SledCache(Arc<Cache>);

struct Cache {
    /// The trees `cache` (key → CachedReply as JSON) and `cache_expiry` (expires_at, 8 bytes
    /// big-endian, ++ key → ()).
    db: Arc<Database>,
    max_entries: usize,
    count: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Serialises writers so count and both trees stay in step.
    write_lock: Mutex<()>,
}

fn expiry_key(expires_at: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&expires_at.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Entries a sweep or purge removes per hold of the write lock.
const BATCH: usize = 256;

impl SledCache {
    pub fn open(db: &Arc<Database>, max_entries: usize) -> Result<Self, StoreError> {
        let count = db.trees()?.cache.len();
        let cache = Arc::new(Cache {
            db: db.clone(),
            max_entries: max_entries.max(1),
            count: AtomicUsize::new(count),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            write_lock: Mutex::new(()),
        });
        // A reopened database may hold fewer (or more) entries than were counted.
        let weak = Arc::downgrade(&cache);
        db.on_reopen(move || {
            if let Some(cache) = weak.upgrade() {
                let _guard = cache.write_lock.lock().unwrap_or_else(|p| p.into_inner());
                let n = cache.db.trees()?.cache.len();
                cache.count.store(n, Ordering::Relaxed);
            }
            Ok(())
        });
        spawn_sweeper(Arc::downgrade(&cache));
        Ok(SledCache(cache))
    }
}

impl Cache {
    fn remove_oldest(&self, trees: &Trees) -> Result<bool, StoreError> {
        let Some((ek, _)) = trees.cache_expiry.pop_min()? else {
            return Ok(false);
        };
        if trees.cache.remove(&ek[8..])?.is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(true)
    }

    fn insert(&self, key: &[u8], reply: &CachedReply) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(reply).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let trees = self.db.trees()?;
        match trees.cache.insert(key, bytes)? {
            Some(old) => {
                if let Ok(old) = serde_json::from_slice::<CachedReply>(&old) {
                    trees.cache_expiry.remove(expiry_key(old.expires_at, key))?;
                }
            }
            None => {
                self.count.fetch_add(1, Ordering::Relaxed);
            }
        }
        trees
            .cache_expiry
            .insert(expiry_key(reply.expires_at, key), &[])?;
        while self.count.load(Ordering::Relaxed) > self.max_entries {
            if !self.remove_oldest(&trees)? {
                break;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ResponseCache for SledCache {
    async fn get(&self, key: &[u8], now: u64) -> Result<Option<CachedReply>, StoreError> {
        // A point read from sled's page cache, on the request's own thread: cheaper than a
        // hop to another thread.
        let cache = &self.0;
        let found = cache
            .db
            .trees()?
            .cache
            .get(key)?
            .and_then(|v| serde_json::from_slice::<CachedReply>(&v).ok())
            .filter(|r| r.expires_at > now);
        let counter = if found.is_some() {
            &cache.hits
        } else {
            &cache.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(found)
    }

    async fn put(&self, key: &[u8], reply: &CachedReply) -> Result<(), StoreError> {
        let (cache, key, reply) = (self.0.clone(), key.to_vec(), reply.clone());
        blocking(move || {
            // While the store cannot write, a reply is simply not cached.
            let written = cache
                .db
                .writable()
                .and_then(|()| cache.insert(&key, &reply));
            if let Err(e) = &written {
                cache.db.report(What::Cache, e);
            }
            written
        })
        .await
    }

    async fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        let cache = self.0.clone();
        blocking(move || cache.sweep(now)).await
    }

    async fn purge(&self, namespace: Option<&str>) -> Result<usize, StoreError> {
        let (cache, namespace) = (self.0.clone(), namespace.map(str::to_string));
        blocking(move || {
            cache.db.writable()?;
            let purged = cache.remove_namespace(namespace.as_deref());
            if let Err(e) = &purged {
                cache.db.report(What::Cache, e);
            }
            purged
        })
        .await
    }

    async fn stats(&self) -> Result<CacheStats, StoreError> {
        let cache = &self.0;
        Ok(CacheStats {
            entries: cache.count.load(Ordering::Relaxed),
            hits: cache.hits.load(Ordering::Relaxed),
            misses: cache.misses.load(Ordering::Relaxed),
        })
    }
}

impl Cache {
    fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        self.db.writable()?;
        let swept = self.sweep_expired(now);
        if let Err(e) = &swept {
            self.db.report(What::Cache, e);
        }
        swept
    }

    /// Removes expired entries in batches of `BATCH`, taking the write lock for one batch at
    /// a time, so a request's cache write waits for at most one batch, never a whole sweep.
    fn sweep_expired(&self, now: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        loop {
            let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
            let trees = self.db.trees()?;
            let batch: Vec<sled::IVec> = trees
                .cache_expiry
                .range(..now.to_be_bytes().to_vec())
                .keys()
                .take(BATCH)
                .collect::<Result<_, _>>()?;
            for ek in &batch {
                trees.cache_expiry.remove(ek)?;
                if trees.cache.remove(&ek[8..])?.is_some() {
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    removed += 1;
                }
            }
            if batch.len() < BATCH {
                return Ok(removed);
            }
        }
    }

    fn remove_namespace(&self, namespace: Option<&str>) -> Result<usize, StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let trees = self.db.trees()?;
        let Some(namespace) = namespace else {
            let n = trees.cache.len();
            trees.cache.clear()?;
            trees.cache_expiry.clear()?;
            self.count.store(0, Ordering::Relaxed);
            return Ok(n);
        };
        let prefix = namespace_prefix(namespace);
        drop(_guard);
        // In batches, as the sweep, so a purge never holds up requests' cache writes.
        let mut removed = 0;
        loop {
            let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
            let batch: Vec<(sled::IVec, sled::IVec)> = trees
                .cache
                .scan_prefix(prefix.as_bytes())
                .take(BATCH)
                .collect::<Result<_, _>>()?;
            for (key, value) in &batch {
                if let Ok(old) = serde_json::from_slice::<CachedReply>(value) {
                    trees.cache_expiry.remove(expiry_key(old.expires_at, key))?;
                }
                if trees.cache.remove(key)?.is_some() {
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    removed += 1;
                }
            }
            if batch.len() < BATCH {
                return Ok(removed);
            }
        }
    }
}

/// How often expired entries are swept.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Sweeps expired entries on a thread of its own (never an async worker), until the cache is
/// dropped.
fn spawn_sweeper(cache: std::sync::Weak<Cache>) {
    let spawned = std::thread::Builder::new()
        .name("cache-sweeper".into())
        .spawn(move || loop {
            std::thread::sleep(SWEEP_EVERY);
            let Some(cache) = cache.upgrade() else { return };
            match cache.sweep(crate::clock::now_secs()) {
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

    fn reply(expires_at: u64) -> CachedReply {
        CachedReply {
            provider: "p".into(),
            model: "m".into(),
            expires_at,
            body: Some("{}".into()),
            chunks: vec![],
        }
    }

    #[tokio::test]
    async fn sweeps_and_purges_larger_than_a_batch_remove_everything_they_should() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        let cache = SledCache::open(&db, 10_000).unwrap();
        let n = BATCH * 2 + 7;
        for i in 0..n {
            let mut key = b"a/m\x1f".to_vec();
            key.extend_from_slice(&(i as u64).to_be_bytes());
            // Half expire at 100, half at 1000.
            cache
                .put(&key, &reply(if i % 2 == 0 { 100 } else { 1000 }))
                .await
                .unwrap();
        }
        assert_eq!(cache.sweep(500).await.unwrap(), n.div_ceil(2));
        assert_eq!(cache.stats().await.unwrap().entries, n / 2);
        assert_eq!(cache.purge(Some("a")).await.unwrap(), n / 2);
        assert_eq!(cache.stats().await.unwrap().entries, 0);
    }
}
