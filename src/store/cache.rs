//! The response cache: exact-match entries with a TTL, bounded in count, swept when expired.
//!
//! Entries are keyed by a namespace (the first target, `provider/model`), a 0x1f separator and
//! a SHA-256 of the resolved route and the canonical request, so one provider's or model's
//! entries can be purged alone. A second tree orders keys by expiry, so sweeping and evicting
//! touch only what they remove.

use super::database::Trees;
use super::{Database, StoreError, What};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use utoipa::ToSchema;

/// A cached reply: a whole JSON body, or a stream's event payloads in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedReply {
    pub provider: String,
    pub model: String,
    pub expires_at: u64,
    /// JSON body (for non-streamed misses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Stream payloads, `[DONE]` excluded (for streamed misses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
pub struct CacheStats {
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
}

pub trait ResponseCache: Send + Sync {
    fn get(&self, key: &[u8], now: u64) -> Option<CachedReply>;
    fn put(&self, key: &[u8], reply: &CachedReply) -> Result<(), StoreError>;
    /// Removes expired entries; returns how many.
    fn sweep(&self, now: u64) -> Result<usize, StoreError>;
    /// Removes every entry, or those of one namespace: a provider (`mock`) or a model
    /// (`mock/echo`). Returns how many.
    fn purge(&self, namespace: Option<&str>) -> Result<usize, StoreError>;
    fn stats(&self) -> CacheStats;
}

pub struct SledCache {
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
    pub fn open(db: &Arc<Database>, max_entries: usize) -> Result<Arc<Self>, StoreError> {
        let count = db.trees()?.cache.len();
        let cache = Arc::new(SledCache {
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
        Ok(cache)
    }

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

impl ResponseCache for SledCache {
    fn get(&self, key: &[u8], now: u64) -> Option<CachedReply> {
        let found = self
            .db
            .trees()
            .ok()
            .and_then(|t| t.cache.get(key).ok().flatten())
            .and_then(|v| serde_json::from_slice::<CachedReply>(&v).ok())
            .filter(|r| r.expires_at > now);
        match found {
            Some(r) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(r)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn put(&self, key: &[u8], reply: &CachedReply) -> Result<(), StoreError> {
        // While the store cannot write, a reply is simply not cached.
        let written = self.db.writable().and_then(|()| self.insert(key, reply));
        if let Err(e) = &written {
            self.db.report(What::Cache, e);
        }
        written
    }

    fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        self.db.writable()?;
        let swept = self.sweep_expired(now);
        if let Err(e) = &swept {
            self.db.report(What::Cache, e);
        }
        swept
    }

    fn purge(&self, namespace: Option<&str>) -> Result<usize, StoreError> {
        self.db.writable()?;
        let purged = self.remove_namespace(namespace);
        if let Err(e) = &purged {
            self.db.report(What::Cache, e);
        }
        purged
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.count.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

impl SledCache {
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
        // `provider` matches `provider/<any model>`; `provider/model` matches itself.
        let prefix = if namespace.contains('/') {
            format!("{namespace}\u{1f}")
        } else {
            format!("{namespace}/")
        };
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

    #[test]
    fn expiry_bounds_and_sweeping() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        let cache = SledCache::open(&db, 2).unwrap();
        cache.put(&[1; 32], &reply(100)).unwrap();
        assert!(cache.get(&[1; 32], 50).is_some());
        assert!(
            cache.get(&[1; 32], 100).is_none(),
            "expired entries are not served"
        );
        cache.put(&[2; 32], &reply(200)).unwrap();
        cache.put(&[3; 32], &reply(300)).unwrap();
        assert_eq!(
            cache.stats().entries,
            2,
            "bounded: the earliest-expiring entry went"
        );
        assert!(cache.get(&[1; 32], 0).is_none());
        assert_eq!(cache.sweep(250).unwrap(), 1);
        assert_eq!(cache.stats().entries, 1);
        assert!(cache.get(&[3; 32], 250).is_some());
        assert_eq!(cache.purge(None).unwrap(), 1);
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn purge_by_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        let cache = SledCache::open(&db, 10).unwrap();
        for (i, ns) in ["a/m1", "a/m2", "ab/m1"].iter().enumerate() {
            let mut key = ns.as_bytes().to_vec();
            key.push(0x1f);
            key.extend_from_slice(&[i as u8; 32]);
            cache.put(&key, &reply(100)).unwrap();
        }
        assert_eq!(cache.purge(Some("a/m1")).unwrap(), 1);
        assert_eq!(cache.purge(Some("a")).unwrap(), 1, "a/m2, not ab/m1");
        assert_eq!(cache.stats().entries, 1);
    }

    #[test]
    fn sweeps_and_purges_larger_than_a_batch_remove_everything_they_should() {
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
                .unwrap();
        }
        assert_eq!(cache.sweep(500).unwrap(), n.div_ceil(2));
        assert_eq!(cache.stats().entries as usize, n / 2);
        assert_eq!(cache.purge(Some("a")).unwrap(), n / 2);
        assert_eq!(cache.stats().entries, 0);
    }
}
