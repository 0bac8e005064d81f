//! Client API keys: created with a secret shown once, stored only as a SHA-256 hash.
//!
//! Keys are 32+ random characters, so a fast hash is safe (no password stretching needed) and
//! keeps authentication to a hash and a map lookup. The hash → record index lives in memory
//! behind an `ArcSwap`, rebuilt on the rare writes, so requests never touch sled to authenticate.

use super::{Database, StoreError, What};
use arc_swap::ArcSwap;
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use utoipa::ToSchema;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    User,
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role `{other}` (use `user` or `admin`)")),
        }
    }
}

/// A key as stored and as listed. Holds no secret, only its masked form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The first and last characters of the secret, e.g. `sk-sb-Ab12…wXyz`.
    pub masked: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Models this key may call (`provider/model` or bare names, `*` for all); empty means
    /// all. Each entry allows the model a request naming it goes to: a bare name, the first
    /// provider (in file order) that serves it.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Unix seconds; set on a revoked key.
    #[serde(default)]
    pub revoked_at: Option<u64>,
    /// Unix seconds after which the key stops working.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Free-form data for the operator (owner, ticket, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

impl KeyRecord {
    /// May this key call the model `target_id` (`provider/model`)?
    ///
    /// An entry allows exactly the model a request naming it is served by: `resolve` gives the
    /// id a name resolves to (the model index: `provider/model` first, then a bare name's first
    /// provider in file order). So `echo` allows `mock/echo` when that is where `echo` goes,
    /// and not `other/echo`, which only `other/echo` allows. `*` allows every model.
    pub fn allows_model<'a>(
        &self,
        target_id: &str,
        resolve: impl Fn(&str) -> Option<&'a str>,
    ) -> bool {
        self.models.is_empty()
            || self
                .models
                .iter()
                .any(|m| m == "*" || m == target_id || resolve(m) == Some(target_id))
    }
}

/// What a caller asks for when creating a key.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
    pub models: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub expires_at: Option<u64>,
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Changes to a key; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub models: Option<Vec<String>>,
    pub tags: Option<BTreeMap<String, String>>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<u64>>,
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
}

pub trait KeyStore: Send + Sync {
    /// Stores a new key; returns its record and the secret, which is never retrievable again.
    fn create(&self, new: NewKey) -> Result<(KeyRecord, String), StoreError>;
    /// The live key this secret belongs to, if any. Must be cheap: it runs on every request.
    fn authenticate(&self, secret: &str) -> Option<Arc<KeyRecord>>;
    fn list(&self) -> Result<Vec<KeyRecord>, StoreError>;
    fn find(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// Applies `update`; `Ok(None)` when there is no such (live) key.
    fn update(&self, id: &str, update: KeyUpdate) -> Result<Option<KeyRecord>, StoreError>;
    /// A new secret for the same key; the old one stops working at once.
    fn rotate(&self, id: &str) -> Result<Option<(KeyRecord, String)>, StoreError>;
    /// Revokes a key; `Ok(None)` when there is no such id.
    fn revoke(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// True when at least one live admin key exists.
    fn has_admin(&self) -> bool;
}

pub const SECRET_PREFIX: &str = "sk-sb-";

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub struct SledKeyStore {
    /// The trees `keys` (id → KeyRecord as JSON) and `key_hashes` (sha256(secret) → id).
    /// Flushed after every change: a key change is durable before it is acknowledged.
    db: Arc<Database>,
    live: ArcSwap<HashMap<[u8; 32], Arc<KeyRecord>>>,
    /// Serialises writers so the in-memory index is rebuilt from a consistent view.
    write_lock: Mutex<()>,
}

impl SledKeyStore {
    pub fn open(db: &Arc<Database>) -> Result<Arc<Self>, StoreError> {
        let store = Arc::new(SledKeyStore {
            db: db.clone(),
            live: ArcSwap::from_pointee(HashMap::new()),
            write_lock: Mutex::new(()),
        });
        store.rebuild_index()?;
        // A reopened database holds what reached the disk: the index follows it.
        let weak = Arc::downgrade(&store);
        db.on_reopen(move || match weak.upgrade() {
            Some(keys) => {
                let _guard = keys.write_lock.lock().unwrap_or_else(|p| p.into_inner());
                keys.rebuild_index()
            }
            None => Ok(()),
        });
        Ok(store)
    }

    fn rebuild_index(&self) -> Result<(), StoreError> {
        let trees = self.db.trees()?;
        let mut index = HashMap::new();
        for entry in trees.key_hashes.iter() {
            let (hash, id) = entry?;
            let Ok(hash) = <[u8; 32]>::try_from(hash.as_ref()) else {
                continue;
            };
            if let Some(record) = self.get(&String::from_utf8_lossy(&id))? {
                if record.revoked_at.is_none() {
                    index.insert(hash, Arc::new(record));
                }
            }
        }
        self.live.store(Arc::new(index));
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
}

impl KeyStore for SledKeyStore {
    fn create(&self, new: NewKey) -> Result<(KeyRecord, String), StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let secret = new_secret();
        let id = format!(
            "key_{}",
            Alphanumeric.sample_string(&mut rand::thread_rng(), 16)
        );
        let record = KeyRecord {
            id,
            name: new.name,
            role: new.role,
            masked: mask(&secret),
            created_at: now_secs(),
            models: new.models,
            tags: new.tags,
            revoked_at: None,
            expires_at: new.expires_at,
            metadata: new.metadata,
        };
        self.commit(&record, &[], Some(hash_secret(&secret)))?;
        Ok((record, secret))
    }

    fn authenticate(&self, secret: &str) -> Option<Arc<KeyRecord>> {
        self.live.load().get(&hash_secret(secret)).cloned()
    }

    fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self.db.trees()?.keys.iter() {
            let (_, bytes) = entry?;
            out.push(
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
        }
        out.sort_by(|a: &KeyRecord, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    fn find(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.get(id)
    }

    fn update(&self, id: &str, update: KeyUpdate) -> Result<Option<KeyRecord>, StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut record) = self.get(id)?.filter(|r| r.revoked_at.is_none()) else {
            return Ok(None);
        };
        if let Some(name) = update.name {
            record.name = name;
        }
        if let Some(models) = update.models {
            record.models = models;
        }
        if let Some(tags) = update.tags {
            record.tags = tags;
        }
        if let Some(expires_at) = update.expires_at {
            record.expires_at = expires_at;
        }
        if let Some(metadata) = update.metadata {
            record.metadata = metadata;
        }
        self.commit(&record, &[], None)?;
        Ok(Some(record))
    }

    fn rotate(&self, id: &str) -> Result<Option<(KeyRecord, String)>, StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut record) = self.get(id)?.filter(|r| r.revoked_at.is_none()) else {
            return Ok(None);
        };
        let old = self.hashes_of(id)?;
        let secret = new_secret();
        record.masked = mask(&secret);
        self.commit(&record, &old, Some(hash_secret(&secret)))?;
        Ok(Some((record, secret)))
    }

    fn revoke(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut record) = self.get(id)? else {
            return Ok(None);
        };
        if record.revoked_at.is_none() {
            record.revoked_at = Some(now_secs());
        }
        let old = self.hashes_of(id)?;
        self.commit(&record, &old, None)?;
        Ok(Some(record))
    }

    fn has_admin(&self) -> bool {
        self.live.load().values().any(|k| k.role == Role::Admin)
    }
}

fn new_secret() -> String {
    format!(
        "{SECRET_PREFIX}{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 40)
    )
}

fn mask(secret: &str) -> String {
    let head: String = secret.chars().take(SECRET_PREFIX.len() + 4).collect();
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head}…{tail}")
}

pub use crate::clock::now_secs;

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<SledKeyStore>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        let store = SledKeyStore::open(&db).unwrap();
        (dir, store)
    }

    fn new_key(role: Role) -> NewKey {
        NewKey {
            name: "test".into(),
            role,
            ..NewKey::default()
        }
    }

    #[test]
    fn an_entry_allows_the_model_a_request_naming_it_goes_to() {
        // `echo` is served by `first` and `second`; a bare `echo` goes to `first`.
        let resolve = |name: &str| match name {
            "echo" | "first/echo" => Some("first/echo"),
            "second/echo" => Some("second/echo"),
            _ => None,
        };
        let key = |models: &[&str]| KeyRecord {
            id: "k".into(),
            name: "k".into(),
            role: Role::User,
            masked: String::new(),
            created_at: 0,
            models: models.iter().map(|m| m.to_string()).collect(),
            tags: BTreeMap::new(),
            revoked_at: None,
            expires_at: None,
            metadata: BTreeMap::new(),
        };
        let allows = |k: &KeyRecord, id: &str| k.allows_model(id, resolve);
        let bare = key(&["echo"]);
        assert!(allows(&bare, "first/echo"));
        assert!(!allows(&bare, "second/echo"), "not every provider's `echo`");
        let second = key(&["second/echo"]);
        assert!(allows(&second, "second/echo"));
        assert!(!allows(&second, "first/echo"));
        assert!(allows(&key(&[]), "second/echo"));
        assert!(allows(&key(&["*"]), "second/echo"));
        assert!(!allows(&key(&["gone"]), "first/echo"));
    }

    #[test]
    fn create_authenticate_revoke() {
        let (_dir, keys) = store();
        let (record, secret) = keys.create(new_key(Role::User)).unwrap();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert!(!record.masked.contains(&secret[10..30]));
        assert_eq!(keys.authenticate(&secret).unwrap().id, record.id);
        assert!(keys.authenticate("sk-sb-wrong").is_none());
        assert!(!keys.has_admin());

        keys.revoke(&record.id).unwrap().unwrap();
        assert!(keys.authenticate(&secret).is_none());
        assert!(keys.list().unwrap()[0].revoked_at.is_some());
        assert!(keys.revoke("key_missing").unwrap().is_none());
    }

    #[test]
    fn stored_bytes_hold_no_secret_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let secret = {
            let db = Database::open(dir.path(), 1 << 20).unwrap();
            let keys = SledKeyStore::open(&db).unwrap();
            let (_, secret) = keys.create(new_key(Role::Admin)).unwrap();
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
        assert!(keys.has_admin());
    }
}
