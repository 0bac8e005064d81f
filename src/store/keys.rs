//! Client API keys: created with a secret shown once, stored only as a SHA-256 hash.
//!
//! Keys are 32+ random characters, so a fast hash is safe (no password stretching needed) and
//! keeps authentication to a hash and a map lookup. Every backend keeps the hash → record index
//! in memory ([`KeyIndex`]), so requests never wait for the store to authenticate; the writes
//! (rare, from the admin API) are async and durable when they return.

use super::error::StoreError;
use super::limits::Limits;
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
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
    /// Limits and budgets of this key, enforced without a script.
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    /// The team this key belongs to; a request must fit the team's limits too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
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
    pub limits: Limits,
    pub team: Option<String>,
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
    /// Replaces the key's limits whole.
    pub limits: Option<Limits>,
    /// `Some(None)` takes the key out of its team.
    pub team: Option<Option<String>>,
}

/// Client keys. Writes are durable when they return; `authenticate` is answered from memory.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key; returns its record and the secret, which is never retrievable again.
    async fn create(&self, new: NewKey) -> Result<(KeyRecord, String), StoreError>;
    /// The live key whose secret has this SHA-256 ([`hash_secret`]), if any. Runs on every
    /// request: answered from the backend's in-memory index, never a round trip.
    fn authenticate_hash(&self, hash: &[u8; 32]) -> Option<Arc<KeyRecord>>;
    /// The live key this secret belongs to, if any.
    fn authenticate(&self, secret: &str) -> Option<Arc<KeyRecord>> {
        self.authenticate_hash(&hash_secret(secret))
    }
    async fn list(&self) -> Result<Vec<KeyRecord>, StoreError>;
    async fn find(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// Applies `update`; `Ok(None)` when there is no such (live) key.
    async fn update(&self, id: &str, update: KeyUpdate) -> Result<Option<KeyRecord>, StoreError>;
    /// A new secret for the same key; the old one stops working at once.
    async fn rotate(&self, id: &str) -> Result<Option<(KeyRecord, String)>, StoreError>;
    /// Revokes a key; `Ok(None)` when there is no such id.
    async fn revoke(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// True when at least one live admin key exists.
    async fn has_admin(&self) -> Result<bool, StoreError>;
}

pub const SECRET_PREFIX: &str = "sk-sb-";

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Hashes a map key that is a SHA-256 digest by taking its first eight bytes: a digest is
/// already uniform, so hashing it again (SipHash, ~20 ns a lookup) buys nothing, and no one
/// can choose secrets whose digests collide.
#[derive(Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length (a `usize`, through `write_usize`) then its bytes.
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }

    fn write_usize(&mut self, _len: usize) {}
}

type ByDigest = std::collections::HashMap<
    [u8; 32],
    Arc<KeyRecord>,
    std::hash::BuildHasherDefault<DigestHasher>,
>;

/// The live keys by secret hash, swapped whole on the rare writes: what `authenticate` reads.
#[derive(Default)]
pub struct KeyIndex(arc_swap::ArcSwap<ByDigest>);

impl KeyIndex {
    pub fn authenticate_hash(&self, hash: &[u8; 32]) -> Option<Arc<KeyRecord>> {
        self.0.load().get(hash).cloned()
    }

    pub fn has_admin(&self) -> bool {
        self.0.load().values().any(|k| k.role == Role::Admin)
    }

    /// Replaces the index with these (hash, record) pairs; revoked keys are left out.
    pub fn replace(&self, keys: impl IntoIterator<Item = ([u8; 32], KeyRecord)>) {
        let live = keys
            .into_iter()
            .filter(|(_, record)| record.revoked_at.is_none())
            .map(|(hash, record)| (hash, Arc::new(record)))
            .collect();
        self.0.store(Arc::new(live));
    }
}

/// A new key's record and secret: what every backend stores for `create`.
pub fn new_record(new: NewKey) -> (KeyRecord, String) {
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
        limits: new.limits,
        team: new.team,
    };
    (record, secret)
}

impl KeyUpdate {
    /// The changes applied to `record`.
    pub fn apply(self, record: &mut KeyRecord) {
        if let Some(name) = self.name {
            record.name = name;
        }
        if let Some(models) = self.models {
            record.models = models;
        }
        if let Some(tags) = self.tags {
            record.tags = tags;
        }
        if let Some(expires_at) = self.expires_at {
            record.expires_at = expires_at;
        }
        if let Some(metadata) = self.metadata {
            record.metadata = metadata;
        }
        if let Some(limits) = self.limits {
            record.limits = limits;
        }
        if let Some(team) = self.team {
            record.team = team;
        }
    }
}

/// Gives `record` a new secret (its masked form changes); returns the secret.
pub fn rotate_secret(record: &mut KeyRecord) -> String {
    let secret = new_secret();
    record.masked = mask(&secret);
    secret
}

/// Marks `record` revoked now, unless it already was.
pub fn mark_revoked(record: &mut KeyRecord) {
    if record.revoked_at.is_none() {
        record.revoked_at = Some(now_secs());
    }
}

/// Keys listed oldest first, the order `list` promises.
pub fn sort_listed(keys: &mut [KeyRecord]) {
    keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
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
            limits: Default::default(),
            team: None,
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
}
