//! Keys in memory only: lost when the process ends.

use crate::store::error::StoreError;
use crate::store::keys::{
    hash_secret, mark_revoked, new_record, rotate_secret, sort_listed, KeyIndex, KeyRecord,
    KeyStore, KeyUpdate, NewKey,
};
use crate::store::portable::{Import, KeyWithHashes};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
pub struct MemoryKeyStore {
    state: Mutex<Keys>,
    live: KeyIndex,
}

#[derive(Default)]
struct Keys {
    records: HashMap<String, KeyRecord>,
    /// sha256(secret) → id.
    hashes: HashMap<[u8; 32], String>,
}

impl MemoryKeyStore {
    fn lock(&self) -> MutexGuard<'_, Keys> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `record`, drops its old secrets when `new_hash` replaces them, and refreshes the
    /// index: what every write ends with.
    fn commit(&self, keys: &mut Keys, record: KeyRecord, new_hash: Option<[u8; 32]>, forget: bool) {
        if forget {
            keys.hashes.retain(|_, id| *id != record.id);
        }
        if let Some(hash) = new_hash {
            keys.hashes.insert(hash, record.id.clone());
        }
        keys.records.insert(record.id.clone(), record);
        self.reindex(keys);
    }

    fn reindex(&self, keys: &Keys) {
        self.live.replace(
            keys.hashes.iter().filter_map(|(hash, id)| {
                keys.records.get(id).map(|record| (*hash, record.clone()))
            }),
        );
    }

    /// Every key with the secret hashes that name it (none for a revoked key): what an export
    /// carries.
    pub(super) fn with_hashes(&self) -> Vec<KeyWithHashes> {
        let keys = self.lock();
        let mut hashes: HashMap<&str, Vec<[u8; 32]>> = HashMap::new();
        for (hash, id) in &keys.hashes {
            hashes.entry(id.as_str()).or_default().push(*hash);
        }
        keys.records
            .values()
            .map(|record| {
                let of_key = hashes.remove(record.id.as_str()).unwrap_or_default();
                (record.clone(), of_key)
            })
            .collect()
    }

    /// Writes an import's keys: each record replaces the one with its id, and its secret
    /// hashes the ones that key had; the index follows at once.
    pub(super) fn put_all(&self, import: &Import) {
        let mut keys = self.lock();
        keys.hashes.retain(|_, id| !import.keys.contains_key(id));
        for (hash, id) in &import.hashes {
            keys.hashes.insert(*hash, id.clone());
        }
        for (id, record) in &import.keys {
            keys.records.insert(id.clone(), record.clone());
        }
        self.reindex(&keys);
    }

    fn live(keys: &Keys, id: &str) -> Option<KeyRecord> {
        keys.records
            .get(id)
            .filter(|r| r.revoked_at.is_none())
            .cloned()
    }
}

#[async_trait::async_trait]
impl KeyStore for MemoryKeyStore {
    async fn create(&self, new: NewKey) -> Result<(KeyRecord, String), StoreError> {
        let (record, secret) = new_record(new);
        let mut keys = self.lock();
        self.commit(&mut keys, record.clone(), Some(hash_secret(&secret)), false);
        Ok((record, secret))
    }

    fn authenticate_hash(&self, hash: &[u8; 32]) -> Option<Arc<KeyRecord>> {
        self.live.authenticate_hash(hash)
    }

    async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut out: Vec<KeyRecord> = self.lock().records.values().cloned().collect();
        sort_listed(&mut out);
        Ok(out)
    }

    async fn find(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.lock().records.get(id).cloned())
    }

    async fn update(&self, id: &str, update: KeyUpdate) -> Result<Option<KeyRecord>, StoreError> {
        let mut keys = self.lock();
        let Some(mut record) = Self::live(&keys, id) else {
            return Ok(None);
        };
        update.apply(&mut record);
        self.commit(&mut keys, record.clone(), None, false);
        Ok(Some(record))
    }

    async fn rotate(&self, id: &str) -> Result<Option<(KeyRecord, String)>, StoreError> {
        let mut keys = self.lock();
        let Some(mut record) = Self::live(&keys, id) else {
            return Ok(None);
        };
        let secret = rotate_secret(&mut record);
        self.commit(&mut keys, record.clone(), Some(hash_secret(&secret)), true);
        Ok(Some((record, secret)))
    }

    async fn revoke(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let mut keys = self.lock();
        let Some(mut record) = keys.records.get(id).cloned() else {
            return Ok(None);
        };
        mark_revoked(&mut record);
        self.commit(&mut keys, record.clone(), None, true);
        Ok(Some(record))
    }

    async fn has_admin(&self) -> Result<bool, StoreError> {
        Ok(self.live.has_admin())
    }
}
