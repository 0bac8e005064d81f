//! Sticky A/B assignments: (split, sticky id) → variant, persisted so they survive restarts.

use super::StoreError;

pub trait AssignmentStore: Send + Sync {
    fn get(&self, split: &str, sticky_id: &str) -> Option<String>;
    fn set(&self, split: &str, sticky_id: &str, variant: &str) -> Result<(), StoreError>;
}

pub struct SledAssignments {
    tree: sled::Tree,
}

impl SledAssignments {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(SledAssignments {
            tree: db.open_tree("assignments")?,
        })
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
        match self.tree.get(key(split, sticky_id)) {
            Ok(v) => v.map(|v| String::from_utf8_lossy(&v).into_owned()),
            Err(e) => {
                tracing::error!(error = %e, "assignment lookup failed");
                None
            }
        }
    }

    fn set(&self, split: &str, sticky_id: &str, variant: &str) -> Result<(), StoreError> {
        self.tree
            .insert(key(split, sticky_id), variant.as_bytes())?;
        Ok(())
    }
}
