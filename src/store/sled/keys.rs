//! Keys in sled: the trees `keys` (id → KeyRecord as JSON) and `key_hashes` (sha256(secret) →
//! id). Every change is one transaction, flushed before it is acknowledged.

use super::blocking;
use super::database::Database;
use crate::store::error::StoreError;
use crate::store::error::What;
use crate::store::keys::{
    hash_secret, mark_revoked, new_record, rotate_secret, sort_listed, KeyIndex, KeyRecord,
    KeyStore, KeyUpdate, NewKey,
};
use crate::store::portable::{Import, KeyWithHashes};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A handle on the sled key store; clones share it.
#[derive(Clone)]
pub struct SledKeyStore(Arc<Keys>);

struct Keys {
    db: Arc<Database>,
    live: KeyIndex,
    /// Serialises writers so the in-memory index is rebuilt from a consistent view.
    write_lock: Mutex<()>,
}

impl SledKeyStore {
    pub fn open(db: &Arc<Database>) -> Result<Self, StoreError> {
        let keys = Arc::new(Keys {
            db: db.clone(),
            live: KeyIndex::default(),
            write_lock: Mutex::new(()),
        });
        keys.rebuild_index()?;
        // A reopened database holds what reached the disk: the index follows it.
        let weak = Arc::downgrade(&keys);
        db.on_reopen(move || match weak.upgrade() {
            Some(keys) => {
                let _guard = keys.lock();
                keys.rebuild_index()
            }
            None => Ok(()),
        });
        Ok(SledKeyStore(keys))
    }

    /// Runs a write off the async workers (it flushes to disk), serialised with the others.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Keys) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let keys = self.0.clone();
        blocking(move || {
            let _guard = keys.lock();
            f(&keys)
        })
        .await
    }

    /// Every key with the secret hashes that name it (none for a revoked key): what an export
    /// carries. Blocking.
    pub(super) fn with_hashes(&self) -> Result<Vec<KeyWithHashes>, StoreError> {
        let keys = &self.0;
        let _guard = keys.lock();
        let trees = keys.db.trees()?;
        let mut hashes: HashMap<Vec<u8>, Vec<[u8; 32]>> = HashMap::new();
        for entry in trees.key_hashes.iter() {
            let (hash, id) = entry?;
            if let Ok(hash) = <[u8; 32]>::try_from(hash.as_ref()) {
                hashes.entry(id.to_vec()).or_default().push(hash);
            }
        }
        let mut out = Vec::new();
        for entry in trees.keys.iter() {
            let (id, bytes) = entry?;
            let record = serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Corrupt(format!("key {}: {e}", String::from_utf8_lossy(&id)))
            })?;
            out.push((record, hashes.remove(id.as_ref()).unwrap_or_default()));
        }
        Ok(out)
    }

    /// Writes an import's keys as `commit` writes one: one transaction (each record replaces
    /// the one with its id, and its secret hashes the ones that key had), flushed, and only
    /// then the index follows. Blocking.
    pub(super) fn put_all(&self, import: &Import) -> Result<(), StoreError> {
        if import.keys.is_empty() {
            return Ok(());
        }
        let keys = &self.0;
        let _guard = keys.lock();
        let written = keys.db.writable().and_then(|()| keys.write_all(import));
        if let Err(e) = &written {
            keys.db.report(What::Keys, e);
        }
        written?;
        keys.rebuild_index()
    }
}

impl Keys {
    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rebuild_index(&self) -> Result<(), StoreError> {
        let trees = self.db.trees()?;
        let mut live = Vec::new();
        for entry in trees.key_hashes.iter() {
            let (hash, id) = entry?;
            let Ok(hash) = <[u8; 32]>::try_from(hash.as_ref()) else {
                continue;
            };
            if let Some(record) = self.get(&String::from_utf8_lossy(&id))? {
                live.push((hash, record));
            }
        }
        self.live.replace(live);
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        match self.db.trees()?.keys.get(id.as_bytes())? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("key {id}: {e}"))),
            None => Ok(None),
        }
    }

    /// Every secret hash that points at this id.
    fn hashes_of(&self, id: &str) -> Result<Vec<sled::IVec>, StoreError> {
        let mut out = Vec::new();
        for entry in self.db.trees()?.key_hashes.iter() {
            let (hash, owner) = entry?;
            if owner.as_ref() == id.as_bytes() {
                out.push(hash);
            }
        }
        Ok(out)
    }

    /// Writes `record`, removes the secret hashes `forget` and adds `add`, all in one
    /// transaction (a crash never leaves a record with a half-changed secret), flushes it to
    /// disk, and only then refreshes the in-memory index (a revoked secret stops working at
    /// once): the caller answers only once the change would survive a crash or a power cut,
    /// and a change that could not be written (a full disk) is an error and never takes effect
    /// in this process. Such a change may still have reached the disk before the failure: it
    /// is then there after the store reopens.
    fn commit(
        &self,
        record: &KeyRecord,
        forget: &[sled::IVec],
        add: Option<[u8; 32]>,
    ) -> Result<(), StoreError> {
        let written = self
            .db
            .writable()
            .and_then(|()| self.write(record, forget, add));
        if let Err(e) = &written {
            self.db.report(What::Keys, e);
        }
        written?;
        self.rebuild_index()
    }

    fn write(
        &self,
        record: &KeyRecord,
        forget: &[sled::IVec],
        add: Option<[u8; 32]>,
    ) -> Result<(), StoreError> {
        use sled::transaction::{TransactionError, Transactional};
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let trees = self.db.trees()?;
        (&trees.keys, &trees.key_hashes)
            .transaction(|(records, hashes)| {
                records.insert(record.id.as_bytes(), bytes.as_slice())?;
                for hash in forget {
                    hashes.remove(hash)?;
                }
                if let Some(hash) = add {
                    hashes.insert(&hash[..], record.id.as_bytes())?;
                }
                Ok(())
            })
            .map_err(|e: TransactionError<()>| match e {
                TransactionError::Storage(e) => e.into(),
                TransactionError::Abort(()) => StoreError::Corrupt("key write aborted".into()),
            })?;
        drop(trees);
        self.db.flush()
    }

    /// The transaction of [`SledKeyStore::put_all`], flushed.
    fn write_all(&self, import: &Import) -> Result<(), StoreError> {
        use sled::transaction::{TransactionError, Transactional};
        let mut records = Vec::with_capacity(import.keys.len());
        for (id, record) in &import.keys {
            let bytes =
                serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            records.push((id.as_bytes(), bytes));
        }
        let trees = self.db.trees()?;
        // The secrets the imported keys had here: theirs replace them.
        let mut forget = Vec::new();
        for entry in trees.key_hashes.iter() {
            let (hash, owner) = entry?;
            if import
                .keys
                .contains_key(String::from_utf8_lossy(&owner).as_ref())
            {
                forget.push(hash);
            }
        }
        (&trees.keys, &trees.key_hashes)
            .transaction(|(stored, hashes)| {
                for (id, bytes) in &records {
                    stored.insert(*id, bytes.as_slice())?;
                }
                for hash in &forget {
                    hashes.remove(hash)?;
                }
                for (hash, id) in &import.hashes {
                    hashes.insert(&hash[..], id.as_bytes())?;
                }
                Ok(())
            })
            .map_err(|e: TransactionError<()>| match e {
                TransactionError::Storage(e) => e.into(),
                TransactionError::Abort(()) => StoreError::Corrupt("key import aborted".into()),
            })?;
        drop(trees);
        self.db.flush()
    }
}

#[async_trait::async_trait]
impl KeyStore for SledKeyStore {
    async fn create(&self, new: NewKey) -> Result<(KeyRecord, String), StoreError> {
        self.write(|keys| {
            let (record, secret) = new_record(new);
            keys.commit(&record, &[], Some(hash_secret(&secret)))?;
            Ok((record, secret))
        })
        .await
    }

    fn authenticate_hash(&self, hash: &[u8; 32]) -> Option<Arc<KeyRecord>> {
        self.0.live.authenticate_hash(hash)
    }

    async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let keys = self.0.clone();
        blocking(move || {
            let mut out = Vec::new();
            for entry in keys.db.trees()?.keys.iter() {
                let (_, bytes) = entry?;
                out.push(
                    serde_json::from_slice(&bytes)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
            sort_listed(&mut out);
            Ok(out)
        })
        .await
    }

    async fn find(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        // One point read from sled's cache: cheap enough for the worker.
        self.0.get(id)
    }

    async fn update(&self, id: &str, update: KeyUpdate) -> Result<Option<KeyRecord>, StoreError> {
        let id = id.to_string();
        self.write(move |keys| {
            let Some(mut record) = keys.get(&id)?.filter(|r| r.revoked_at.is_none()) else {
                return Ok(None);
            };
            update.apply(&mut record);
            keys.commit(&record, &[], None)?;
            Ok(Some(record))
        })
        .await
    }

    async fn rotate(&self, id: &str) -> Result<Option<(KeyRecord, String)>, StoreError> {
        let id = id.to_string();
        self.write(move |keys| {
            let Some(mut record) = keys.get(&id)?.filter(|r| r.revoked_at.is_none()) else {
                return Ok(None);
            };
            let old = keys.hashes_of(&id)?;
            let secret = rotate_secret(&mut record);
            keys.commit(&record, &old, Some(hash_secret(&secret)))?;
            Ok(Some((record, secret)))
        })
        .await
    }

    async fn revoke(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let id = id.to_string();
        self.write(move |keys| {
            let Some(mut record) = keys.get(&id)? else {
                return Ok(None);
            };
            mark_revoked(&mut record);
            let old = keys.hashes_of(&id)?;
            keys.commit(&record, &old, None)?;
            Ok(Some(record))
        })
        .await
    }

    async fn has_admin(&self) -> Result<bool, StoreError> {
        Ok(self.0.live.has_admin())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::Role;

    #[tokio::test]
    async fn stored_bytes_hold_no_secret_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let secret = {
            let db = Database::open(dir.path(), 1 << 20).unwrap();
            let keys = SledKeyStore::open(&db).unwrap();
            let new = NewKey {
                name: "test".into(),
                role: Role::Admin,
                ..NewKey::default()
            };
            let (_, secret) = keys.create(new).await.unwrap();
            let trees = db.trees().unwrap();
            for tree in [&trees.keys, &trees.key_hashes] {
                for entry in tree.iter() {
                    let (k, v) = entry.unwrap();
                    let hay = [k.as_ref(), v.as_ref()].concat();
                    assert!(!hay.windows(secret.len()).any(|w| w == secret.as_bytes()));
                }
            }
            secret
        };
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        let keys = SledKeyStore::open(&db).unwrap();
        assert_eq!(keys.authenticate(&secret).unwrap().role, Role::Admin);
        assert!(keys.has_admin().await.unwrap());
    }
}
