//! Assignments in memory only.

use crate::store::assignments::{key, AssignmentStore};
use crate::store::error::StoreError;

/// For `switchboard policy test`, the simulator, `--store memory`, benches and unit tests.
#[derive(Default)]
pub struct MemoryAssignments {
    map: std::sync::RwLock<std::collections::HashMap<Vec<u8>, String>>,
}

#[async_trait::async_trait]
impl AssignmentStore for MemoryAssignments {
    fn get(&self, split: &str, sticky_id: &str) -> Option<String> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key(split, sticky_id))
            .cloned()
    }

    async fn set(&self, split: &str, sticky_id: &str, variant: &str) -> Result<(), StoreError> {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key(split, sticky_id), variant.to_string());
        Ok(())
    }
}
