//! Sticky A/B assignments: (split, sticky id) → variant, persisted so they survive restarts.

use super::{Database, StoreError, What};
use std::sync::Arc;

pub trait AssignmentStore: Send + Sync {
    fn get(&self, split: &str, sticky_id: &str) -> Option<String>;
    fn set(&self, split: &str, sticky_id: &str, variant: &str) -> Result<(), StoreError>;
}

/// Assignments served from memory once seen; this many at most before the memory is cleared
/// (sled still has them all).
const REMEMBERED: usize = 100_000;

pub struct SledAssignments {
    /// The tree `assignments`: split ++ 0x1f ++ sticky id → variant.
    db: Arc<Database>,
    /// What sled holds, for the keys seen lately: a split runs on every request, so the hot
    /// path is a read lock and a hash lookup.
    seen: std::sync::RwLock<std::collections::HashMap<Vec<u8>, String>>,
}

impl SledAssignments {
    pub fn open(db: &Arc<Database>) -> Result<Arc<Self>, StoreError> {
        let store = Arc::new(SledAssignments {
            db: db.clone(),
            seen: Default::default(),
        });
        // Assignments already handed out stay as they were: those remembered are written
        // again into a reopened database, which may have lost the latest.
        let weak = Arc::downgrade(&store);
        db.on_reopen(move || {
            let Some(store) = weak.upgrade() else {
                return Ok(());
            };
            let seen = store.seen.read().unwrap_or_else(|p| p.into_inner()).clone();
            let trees = store.db.trees()?;
            for (k, variant) in seen {
                trees.assignments.insert(k, variant.as_bytes())?;
            }
            Ok(())
        });
        Ok(store)
    }

    fn remember(&self, key: Vec<u8>, variant: &str) {
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        seen.insert(key, variant.to_string());
    }
}

fn key(split: &str, sticky_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(split.len() + sticky_id.len() + 1);
    k.extend_from_slice(split.as_bytes());
    k.push(0x1f);
    k.extend_from_slice(sticky_id.as_bytes());
    k
}

impl AssignmentStore for SledAssignments {
    fn get(&self, split: &str, sticky_id: &str) -> Option<String> {
        let k = key(split, sticky_id);
        if let Some(v) = self.seen.read().unwrap_or_else(|p| p.into_inner()).get(&k) {
            return Some(v.clone());
        }
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

    fn set(&self, split: &str, sticky_id: &str, variant: &str) -> Result<(), StoreError> {
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

/// Assignments in memory only, for `switchboard policy test`, benches and unit tests.
#[derive(Default)]
pub struct MemoryAssignments {
    map: std::sync::RwLock<std::collections::HashMap<Vec<u8>, String>>,
}

impl AssignmentStore for MemoryAssignments {
    fn get(&self, split: &str, sticky_id: &str) -> Option<String> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key(split, sticky_id))
            .cloned()
    }

    fn set(&self, split: &str, sticky_id: &str, variant: &str) -> Result<(), StoreError> {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key(split, sticky_id), variant.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod contract {
    use super::*;

    /// What every assignment backend must do; each backend runs it below.
    fn keeps_the_contract(store: &dyn AssignmentStore) {
        assert_eq!(store.get("split", "k1"), None);
        store.set("split", "k1", "a").unwrap();
        store.set("split", "k2", "b").unwrap();
        store.set("other", "k1", "c").unwrap();
        assert_eq!(store.get("split", "k1").as_deref(), Some("a"));
        assert_eq!(store.get("split", "k2").as_deref(), Some("b"));
        assert_eq!(store.get("other", "k1").as_deref(), Some("c"));
    }

    #[test]
    fn sled_assignments_keep_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        keeps_the_contract(SledAssignments::open(&db).unwrap().as_ref());
    }

    #[test]
    fn memory_assignments_keep_the_contract() {
        keeps_the_contract(&MemoryAssignments::default());
    }
}
