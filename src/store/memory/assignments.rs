//! Assignments in memory only.

use crate::store::assignments::{key, AssignmentStore};
use crate::store::error::StoreError;
use crate::store::portable::{assignment_record, Record};
use std::collections::BTreeMap;

/// For `switchboard policy test`, the simulator, `--store memory`, benches and unit tests.
#[derive(Default)]
pub struct MemoryAssignments {
    map: std::sync::RwLock<std::collections::HashMap<Vec<u8>, String>>,
}

impl MemoryAssignments {
    /// Every assignment as a record, by split and sticky id.
    pub(super) fn records(&self) -> Vec<Record> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let mut stored: Vec<(&Vec<u8>, &String)> = map.iter().collect();
        stored.sort_unstable();
        stored
            .into_iter()
            .filter_map(|(k, variant)| assignment_record(k, variant.as_bytes()))
            .collect()
    }

    /// Writes imported assignments, each replacing the one of its split and sticky id.
    pub(super) fn put_all(&self, assignments: &BTreeMap<(String, String), String>) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        for ((split, sticky_id), variant) in assignments {
            map.insert(key(split, sticky_id), variant.clone());
        }
    }
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
