//! Stored responses in memory.

use crate::store::error::StoreError;
use crate::store::responses::{ResponseStore, StoredResponse};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryResponses(Mutex<HashMap<String, StoredResponse>>);

impl MemoryResponses {
    /// A panic elsewhere while holding the lock leaves the map as it was: keep using it.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredResponse>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl ResponseStore for MemoryResponses {
    async fn put(&self, response: StoredResponse) -> Result<(), StoreError> {
        self.lock().insert(response.id.clone(), response);
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        Ok(self.lock().get(id).cloned())
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().remove(id).is_some())
    }

    async fn prune(&self, before_ms: u64) -> Result<u64, StoreError> {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, r| r.created_ms >= before_ms);
        Ok((before - map.len()) as u64)
    }
}
