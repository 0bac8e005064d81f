//! The response cache in Redis, shared by the fleet: each entry a string with its Redis TTL
//! (`cache:<namespace>\x1f<hash>`), an index sorted by expiry that keeps the fleet's entry
//! bound, and the fleet's hit and miss counts. A purge removes the entries for every instance.

use super::conn::Redis;
use crate::store::cache::{namespace_prefix, CacheStats, CachedReply, ResponseCache};
use crate::store::error::StoreError;
use redis::Script;
use std::sync::Arc;

pub struct RedisCache {
    redis: Arc<Redis>,
    max_entries: usize,
    get: Script,
    put: Script,
    purge: Script,
}

impl RedisCache {
    pub fn new(redis: Arc<Redis>, max_entries: usize) -> RedisCache {
        RedisCache {
            redis,
            max_entries,
            get: Script::new(include_str!("lua/cache_get.lua")),
            put: Script::new(include_str!("lua/cache_put.lua")),
            purge: Script::new(include_str!("lua/cache_purge.lua")),
        }
    }

    fn entry(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.redis.key("cache:");
        k.extend_from_slice(key);
        k
    }

    async fn remove(&self, prefix: Vec<u8>, expired_by: Option<u64>) -> Result<usize, StoreError> {
        let mut call = self.purge.prepare_invoke();
        call.key(self.redis.key("cache_index"))
            .arg(prefix)
            .arg(expired_by.map(|t| t.to_string()).unwrap_or_default());
        self.redis.script(&call).await
    }
}

#[async_trait::async_trait]
impl ResponseCache for RedisCache {
    async fn get(&self, key: &[u8], now: u64) -> Result<Option<CachedReply>, StoreError> {
        let mut call = self.get.prepare_invoke();
        call.key(self.entry(key))
            .key(self.redis.key("cache_index"))
            .key(self.redis.key("cache_stats"))
            .arg(now);
        let value: Option<Vec<u8>> = self.redis.script(&call).await?;
        Ok(value
            .and_then(|v| serde_json::from_slice::<CachedReply>(&v).ok())
            .filter(|r| r.expires_at > now))
    }

    async fn put(&self, key: &[u8], reply: &CachedReply) -> Result<(), StoreError> {
        let now = crate::clock::now_secs();
        if reply.expires_at <= now {
            return Ok(());
        }
        let value = serde_json::to_vec(reply)
            .map_err(|e| StoreError::Corrupt(format!("cached reply: {e}")))?;
        let mut call = self.put.prepare_invoke();
        call.key(self.entry(key))
            .key(self.redis.key("cache_index"))
            .arg(value)
            .arg(reply.expires_at)
            .arg(self.max_entries)
            .arg(now);
        self.redis.script::<()>(&call).await
    }

    async fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        self.remove(self.entry(b""), Some(now)).await
    }

    async fn purge(&self, namespace: Option<&str>) -> Result<usize, StoreError> {
        let prefix = match namespace {
            Some(ns) => self.entry(namespace_prefix(ns).as_bytes()),
            None => self.entry(b""),
        };
        self.remove(prefix, None).await
    }

    async fn stats(&self) -> Result<CacheStats, StoreError> {
        let now = crate::clock::now_secs();
        let mut pipe = redis::pipe();
        pipe.cmd("ZCOUNT")
            .arg(self.redis.key("cache_index"))
            .arg(format!("({now}"))
            .arg("+inf")
            .cmd("HMGET")
            .arg(self.redis.key("cache_stats"))
            .arg("hits")
            .arg("misses");
        let (entries, counts): (usize, Vec<Option<u64>>) = self.redis.pipe(&pipe).await?;
        Ok(CacheStats {
            entries,
            hits: counts.first().copied().flatten().unwrap_or(0),
            misses: counts.get(1).copied().flatten().unwrap_or(0),
        })
    }
}
