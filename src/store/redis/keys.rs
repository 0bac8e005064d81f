//! Keys in Redis: the hash `keys` (secret hash, hex → record JSON) and `key_ids` (id → secret
//! hash), shared by the fleet. Each instance answers `authenticate` from its own [`KeyIndex`],
//! reloaded whole when any instance writes a key (told by pub/sub at once, and checked against
//! the `version` hash every second in case a message was missed): a revoked key stops working
//! everywhere within a second, usually within milliseconds.
//!
//! Writes are compare-and-set scripts (`lua/record_write.lua`): two instances changing one key
//! at once never lose either change; the later one reads again and reapplies.

use super::conn::Redis;
use crate::store::error::StoreError;
use crate::store::keys::{
    hash_secret, mark_revoked, new_record, rotate_secret, sort_listed, KeyIndex, KeyRecord,
    KeyStore, KeyUpdate, NewKey,
};
use redis::Script;
use std::collections::HashMap;
use std::sync::Arc;

/// The field of a key stored without a secret hash (revoked, as imported): it authenticates
/// nothing.
pub const REVOKED_FIELD: &str = "revoked:";

/// Attempts at a compare-and-set before giving up (only under a storm of writes to one key).
const CAS_ATTEMPTS: usize = 16;

pub struct RedisKeyStore {
    redis: Arc<Redis>,
    index: KeyIndex,
    write: Arc<Script>,
    /// The `version` hash's `keys` field when the index was last loaded.
    pub(super) loaded_version: std::sync::atomic::AtomicU64,
}

impl RedisKeyStore {
    pub async fn open(redis: Arc<Redis>, write: Arc<Script>) -> Result<Arc<Self>, StoreError> {
        let store = Arc::new(RedisKeyStore {
            redis,
            index: KeyIndex::default(),
            write,
            loaded_version: Default::default(),
        });
        store.reload().await?;
        Ok(store)
    }

    /// Reads every key into the index.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let (version, all) = super::read_versioned(&self.redis, "keys", "keys").await?;
        let mut live = Vec::with_capacity(all.len());
        for (hash, json) in all {
            if hash.starts_with(REVOKED_FIELD) {
                continue;
            }
            let (Ok(bytes), Ok(record)) =
                (hex::decode(&hash), serde_json::from_str::<KeyRecord>(&json))
            else {
                tracing::error!(hash = %hash, "an unreadable key record in redis is skipped");
                continue;
            };
            let Ok(hash) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                continue;
            };
            live.push((hash, record));
        }
        self.index.replace(live);
        self.loaded_version
            .store(version, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// The secret hash (hex) and record JSON of a key, if it exists.
    async fn read(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        let hash: Option<String> = self
            .redis
            .cmd(redis::cmd("HGET").arg(self.redis.key("key_ids")).arg(id))
            .await?;
        let Some(hash) = hash else {
            return Ok(None);
        };
        let json: Option<String> = self
            .redis
            .cmd(redis::cmd("HGET").arg(self.redis.key("keys")).arg(&hash))
            .await?;
        Ok(json.map(|json| (hash, json)))
    }

    /// Writes a record in place of `old` (`None`: a new key); false when someone else wrote
    /// first. Reloads this instance's index at once, so a write is seen here when it returns.
    async fn put(
        &self,
        id: &str,
        old: Option<(&str, &str)>,
        new_hash: &str,
        record: &KeyRecord,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(record)
            .map_err(|e| StoreError::Corrupt(format!("key record: {e}")))?;
        let (old_hash, expected) = old.unwrap_or(("", ""));
        let mut call = self.write.prepare_invoke();
        call.key(self.redis.key("keys"))
            .key(self.redis.key("key_ids"))
            .key(self.redis.key("version"))
            .arg(id)
            .arg(old_hash)
            .arg(expected)
            .arg(new_hash)
            .arg(json)
            .arg("keys")
            .arg(self.redis.channel());
        let written: i64 = self.redis.script(&call).await?;
        if written == 1 {
            self.reload().await?;
        }
        Ok(written == 1)
    }

    /// Reads a key, changes it with `change` (which may give it a new secret hash), and writes
    /// it back if nobody wrote it meanwhile; retries otherwise. `Ok(None)`: no such key, or
    /// `change` declined (returned `None`).
    async fn modify<T>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut KeyRecord) -> Option<(Option<String>, T)>,
    ) -> Result<Option<(KeyRecord, T)>, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some((hash, json)) = self.read(id).await? else {
                return Ok(None);
            };
            let mut record: KeyRecord = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("key {id}: {e}")))?;
            let Some((new_hash, out)) = change(&mut record) else {
                return Ok(None);
            };
            let new_hash = new_hash.unwrap_or_else(|| hash.clone());
            if self
                .put(id, Some((&hash, &json)), &new_hash, &record)
                .await?
            {
                return Ok(Some((record, out)));
            }
        }
        Err(StoreError::Backend(format!(
            "key {id} kept changing under this write; try again"
        )))
    }

    /// Every key with its secret hash (hex), for export.
    pub async fn all(&self) -> Result<Vec<(String, KeyRecord)>, StoreError> {
        let all: HashMap<String, String> = self
            .redis
            .cmd(redis::cmd("HGETALL").arg(self.redis.key("keys")))
            .await?;
        all.into_iter()
            .map(|(hash, json)| {
                serde_json::from_str(&json)
                    .map(|record| (hash, record))
                    .map_err(|e| StoreError::Corrupt(format!("key record: {e}")))
            })
            .collect()
    }

    /// Stores a key as exported (its secret hash and record), replacing what is there.
    pub async fn put_exported(&self, hash: &str, record: &KeyRecord) -> Result<(), StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let old = self.read(&record.id).await?;
            let old = old.as_ref().map(|(h, j)| (h.as_str(), j.as_str()));
            if self.put(&record.id, old, hash, record).await? {
                return Ok(());
            }
        }
        Err(StoreError::Backend(format!(
            "key {} kept changing under the import",
            record.id
        )))
    }
}

#[async_trait::async_trait]
impl KeyStore for RedisKeyStore {
    async fn create(&self, new: NewKey) -> Result<(KeyRecord, String), StoreError> {
        let (record, secret) = new_record(new);
        let hash = hex::encode(hash_secret(&secret));
        if !self.put(&record.id, None, &hash, &record).await? {
            return Err(StoreError::Backend(
                "a new key's id or secret collided".into(),
            ));
        }
        Ok((record, secret))
    }

    fn authenticate_hash(&self, hash: &[u8; 32]) -> Option<Arc<KeyRecord>> {
        self.index.authenticate_hash(hash)
    }

    async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut keys: Vec<KeyRecord> = self.all().await?.into_iter().map(|(_, r)| r).collect();
        sort_listed(&mut keys);
        Ok(keys)
    }

    async fn find(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let Some((_, json)) = self.read(id).await? else {
            return Ok(None);
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("key {id}: {e}")))
    }

    async fn update(&self, id: &str, update: KeyUpdate) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self
            .modify(id, |record| {
                if record.revoked_at.is_some() {
                    return None;
                }
                update.clone().apply(record);
                Some((None, ()))
            })
            .await?
            .map(|(record, ())| record))
    }

    async fn rotate(&self, id: &str) -> Result<Option<(KeyRecord, String)>, StoreError> {
        self.modify(id, |record| {
            if record.revoked_at.is_some() {
                return None;
            }
            let secret = rotate_secret(record);
            Some((Some(hex::encode(hash_secret(&secret))), secret))
        })
        .await
    }

    async fn revoke(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self
            .modify(id, |record| {
                mark_revoked(record);
                Some((None, ()))
            })
            .await?
            .map(|(record, ())| record))
    }

    async fn has_admin(&self) -> Result<bool, StoreError> {
        self.reload().await?;
        Ok(self.index.has_admin())
    }
}
