//! The response cache in memory only: the same bound and expiry order as the sled backend.

use crate::store::cache::{namespace_prefix, CacheStats, CachedReply, ResponseCache};
use crate::store::error::StoreError;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

pub struct MemoryCache {
    max_entries: usize,
    entries: Mutex<Entries>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<Vec<u8>, CachedReply>,
    /// (expires_at, key): sweeping and making room take the earliest first.
    by_expiry: BTreeSet<(u64, Vec<u8>)>,
}

impl Entries {
    fn remove(&mut self, key: &[u8]) -> bool {
        match self.by_key.remove(key) {
            Some(old) => {
                self.by_expiry.remove(&(old.expires_at, key.to_vec()));
                true
            }
            None => false,
        }
    }
}

impl MemoryCache {
    pub fn new(max_entries: usize) -> MemoryCache {
        MemoryCache {
            max_entries: max_entries.max(1),
            entries: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl ResponseCache for MemoryCache {
    async fn get(&self, key: &[u8], now: u64) -> Result<Option<CachedReply>, StoreError> {
        let found = self
            .lock()
            .by_key
            .get(key)
            .filter(|r| r.expires_at > now)
            .cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(found)
    }

    async fn put(&self, key: &[u8], reply: &CachedReply) -> Result<(), StoreError> {
        let mut entries = self.lock();
        entries.remove(key);
        entries.by_expiry.insert((reply.expires_at, key.to_vec()));
        entries.by_key.insert(key.to_vec(), reply.clone());
        while entries.by_key.len() > self.max_entries {
            let Some((_, oldest)) = entries.by_expiry.pop_first() else {
                break;
            };
            entries.by_key.remove(&oldest);
        }
        Ok(())
    }

    async fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        let mut entries = self.lock();
        let mut removed = 0;
        while let Some((expires_at, _)) = entries.by_expiry.first() {
            if *expires_at >= now {
                break;
            }
            if let Some((_, key)) = entries.by_expiry.pop_first() {
                entries.by_key.remove(&key);
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn purge(&self, namespace: Option<&str>) -> Result<usize, StoreError> {
        let mut entries = self.lock();
        let Some(namespace) = namespace else {
            let n = entries.by_key.len();
            *entries = Entries::default();
            return Ok(n);
        };
        let prefix = namespace_prefix(namespace);
        let doomed: Vec<Vec<u8>> = entries
            .by_key
            .keys()
            .filter(|k| k.starts_with(prefix.as_bytes()))
            .cloned()
            .collect();
        for key in &doomed {
            entries.remove(key);
        }
        Ok(doomed.len())
    }

    async fn stats(&self) -> Result<CacheStats, StoreError> {
        Ok(CacheStats {
            entries: self.lock().by_key.len(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        })
    }
}
