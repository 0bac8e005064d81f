//! Sticky A/B assignments: (split, sticky id) → variant, persisted so they survive restarts.

use super::StoreError;

pub trait AssignmentStore: Send + Sync {
    fn get(&self, split: &str, sticky_id: &str) -> Option<String>;
    fn set(&self, split: &str, sticky_id: &str, variant: &str) -> Result<(), StoreError>;
}

/// Assignments served from memory once seen; this many at most before the memory is cleared
/// (sled still has them all).
const REMEMBERED: usize = 100_000;

pub struct SledAssignments {
    tree: sled::Tree,
    /// What sled holds, for the keys seen lately: a split runs on every request, so the hot
    /// path is a read lock and a hash lookup.
    seen: std::sync::RwLock<std::collections::HashMap<Vec<u8>, String>>,
}

impl SledAssignments {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(SledAssignments {
            tree: db.open_tree("assignments")?,
            seen: Default::default(),
        })
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
        match self.tree.get(&k) {
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
        self.tree.insert(&k, variant.as_bytes())?;
        self.remember(k, variant);
        Ok(())
    }
}
