//! Assignments in sled: the tree `assignments` (split ++ 0x1f ++ sticky id → variant), with
//! the ones seen lately kept in memory.

use super::database::Database;
use crate::store::assignments::{key, AssignmentStore};
use crate::store::error::StoreError;
use crate::store::error::What;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Assignments served from memory once seen; this many at most before the memory is cleared
/// (sled still has them all), a shard at a time.
const REMEMBERED: usize = 100_000;

/// The remembered assignments are split by key into this many maps, each behind its own lock,
/// so the splits of different sticky ids do not share a lock's reader count.
const SHARDS: usize = 16;

type Seen = std::sync::RwLock<std::collections::HashMap<Vec<u8>, String>>;

pub struct SledAssignments {
    /// The tree `assignments`: split ++ 0x1f ++ sticky id → variant.
    db: Arc<Database>,
    /// What sled holds, for the keys seen lately: a split runs on every request, so the hot
    /// path is a read lock of one shard and a hash lookup.
    seen: Box<[Seen]>,
}

impl SledAssignments {
    pub fn open(db: &Arc<Database>) -> Result<Arc<Self>, StoreError> {
        let store = Arc::new(SledAssignments {
            db: db.clone(),
            seen: (0..SHARDS).map(|_| Seen::default()).collect(),
        });
        // Assignments already handed out stay as they were: those remembered are written
        // again into a reopened database, which may have lost the latest.
        let weak = Arc::downgrade(&store);
        db.on_reopen(move || {
            let Some(store) = weak.upgrade() else {
                return Ok(());
            };
            let trees = store.db.trees()?;
            for shard in store.seen.iter() {
                let seen = shard.read().unwrap_or_else(|p| p.into_inner()).clone();
                for (k, variant) in seen {
                    trees.assignments.insert(k, variant.as_bytes())?;
                }
            }
            Ok(())
        });
        Ok(store)
    }

    /// The shard that remembers `key`.
    fn shard(&self, key: &[u8]) -> &Seen {
        &self.seen[crate::store::shard::shard_of(key, SHARDS)]
    }

    fn remember(&self, key: Vec<u8>, variant: &str) {
        let mut seen = self.shard(&key).write().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBERED / SHARDS {
            seen.clear();
        }
        seen.insert(key, variant.to_string());
    }

    /// Every assignment as stored (split ++ 0x1f ++ sticky id, variant): what an export
    /// carries. Blocking.
    pub(super) fn all(&self) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        let trees = self.db.trees()?;
        let all = trees.assignments.iter().collect::<Result<_, _>>()?;
        Ok(all)
    }

    /// Writes imported assignments (each replaces the one of its split and sticky id) in one
    /// batch, and remembers them: `get` answers the imported variant at once. Blocking.
    pub(super) fn put_all(
        &self,
        assignments: &BTreeMap<(String, String), String>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for ((split, sticky_id), variant) in assignments {
            batch.insert(key(split, sticky_id), variant.as_bytes());
        }
        let written = self
            .db
            .writable()
            .and_then(|()| Ok(self.db.trees()?.assignments.apply_batch(batch)?));
        if let Err(e) = written {
            self.db.report(What::Assignments, &e);
            return Err(e);
        }
        for ((split, sticky_id), variant) in assignments {
            self.remember(key(split, sticky_id), variant);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl AssignmentStore for SledAssignments {
    fn get(&self, split: &str, sticky_id: &str) -> Option<String> {
        let k = key(split, sticky_id);
        let seen = self.shard(&k).read().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = seen.get(&k) {
            return Some(v.clone());
        }
        drop(seen);
        match self.db.trees().and_then(|t| Ok(t.assignments.get(&k)?)) {
            Ok(Some(v)) => {
                let variant = String::from_utf8_lossy(&v).into_owned();
                self.remember(k, &variant);
                Some(variant)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "assignment lookup failed");
                None
            }
        }
    }

    async fn set(&self, split: &str, sticky_id: &str, variant: &str) -> Result<(), StoreError> {
        let k = key(split, sticky_id);
        // Remembered even if the write fails: the request goes on with this variant, and
        // the next requests of this sticky id should too.
        self.remember(k.clone(), variant);
        let written = self.db.writable().and_then(|()| {
            let trees = self.db.trees()?;
            trees.assignments.insert(&k, variant.as_bytes())?;
            Ok(())
        });
        if let Err(e) = written {
            self.db.report(What::Assignments, &e);
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn assignments_are_served_from_their_shard_and_read_through_to_sled() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        let store = SledAssignments::open(&db).unwrap();
        for i in 0..100 {
            let variant = if i % 2 == 0 { "a" } else { "b" };
            store
                .set("split", &format!("user-{i}"), variant)
                .await
                .unwrap();
        }
        for i in 0..100 {
            let want = if i % 2 == 0 { "a" } else { "b" };
            let got = store.get("split", &format!("user-{i}"));
            assert_eq!(got.as_deref(), Some(want), "user-{i}");
        }
        assert_eq!(store.get("split", "nobody"), None);
        // A store with nothing remembered reads sled, and remembers what it read.
        let fresh = SledAssignments::open(&db).unwrap();
        assert_eq!(fresh.get("split", "user-7").as_deref(), Some("b"));
        let remembered: usize = fresh.seen.iter().map(|s| s.read().unwrap().len()).sum();
        assert_eq!(remembered, 1);
    }
}
