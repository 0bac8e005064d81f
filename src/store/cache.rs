//! The response cache: exact-match entries with a TTL, bounded in count, swept when expired.
//!
//! Entries are keyed by a namespace (the first target, `provider/model`), a 0x1f separator and
//! a SHA-256 of the resolved route and the canonical request, so one provider's or model's
//! entries can be purged alone. When full, the entry that expires first makes room.

use super::error::StoreError;
use serde::{Deserialize, Serialize};
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

/// The response cache. Each call is one round trip to a shared backend.
#[async_trait::async_trait]
pub trait ResponseCache: Send + Sync {
    /// The live entry under `key` (expiring after `now`), counted as a hit or a miss.
    async fn get(&self, key: &[u8], now: u64) -> Result<Option<CachedReply>, StoreError>;
    /// Stores an entry; when the cache is full, the entry that expires first makes room.
    async fn put(&self, key: &[u8], reply: &CachedReply) -> Result<(), StoreError>;
    /// Removes expired entries; returns how many.
    async fn sweep(&self, now: u64) -> Result<usize, StoreError>;
    /// Removes every entry, or those of one namespace: a provider (`mock`) or a model
    /// (`mock/echo`). Returns how many.
    async fn purge(&self, namespace: Option<&str>) -> Result<usize, StoreError>;
    async fn stats(&self) -> Result<CacheStats, StoreError>;
}

/// The key prefix of a purge's namespace: `provider` matches `provider/<any model>`;
/// `provider/model` matches itself.
pub fn namespace_prefix(namespace: &str) -> String {
    if namespace.contains('/') {
        format!("{namespace}\u{1f}")
    } else {
        format!("{namespace}/")
    }
}
