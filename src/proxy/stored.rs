//! Stored Responses API responses as the handlers use them: saved off the request path, yet
//! readable at once. A response is saved when its reply is complete (a JSON body built, a
//! stream's last event written), which happens in synchronous code; the store write is a task
//! of its own, and until it is done the response is kept here, so a client that continues from
//! it (`previous_response_id`) the moment it has it never misses it on this instance.

use crate::store::responses::{ResponseStore, StoredResponse};
use crate::store::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub struct StoredResponses {
    store: Arc<dyn ResponseStore>,
    /// Saved, not yet in the store.
    pending: Mutex<HashMap<String, StoredResponse>>,
}

impl StoredResponses {
    pub fn new(store: Arc<dyn ResponseStore>) -> Arc<Self> {
        Arc::new(StoredResponses {
            store,
            pending: Mutex::new(HashMap::new()),
        })
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, StoredResponse>> {
        // A panic while holding the lock leaves the map as it was: keep using it.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Saves `response`: readable here at once, written to the store by a task.
    pub fn save(self: &Arc<Self>, response: StoredResponse) {
        let id = response.id.clone();
        self.pending().insert(id.clone(), response.clone());
        let this = self.clone();
        let write = async move {
            if let Err(e) = this.store.put(response).await {
                tracing::warn!(error = %e, response_id = %id, "a stored response was not written");
            }
            // Gone from here already: it was deleted while being written, so the write just
            // made must not bring it back.
            if this.pending().remove(&id).is_none() {
                if let Err(e) = this.store.delete(&id).await {
                    tracing::warn!(error = %e, response_id = %id, "a deleted response stayed stored");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(write);
            }
            Err(_) => tracing::warn!("no runtime to store a response on"),
        }
    }

    /// The response `id`, if `key_id` may see it: another key's response is as good as
    /// missing.
    pub async fn get(&self, id: &str, key_id: &str) -> Result<Option<StoredResponse>, StoreError> {
        let pending = self.pending().get(id).cloned();
        let found = match pending {
            Some(found) => Some(found),
            None => self.store.get(id).await?,
        };
        Ok(found.filter(|r| r.key_id == key_id))
    }

    /// Deletes the response `id` if `key_id` made it; true when it did.
    pub async fn delete(&self, id: &str, key_id: &str) -> Result<bool, StoreError> {
        if self.get(id, key_id).await?.is_none() {
            return Ok(false);
        }
        let was_pending = self.pending().remove(id).is_some();
        // Not in the store yet when its write is still in flight: that write undoes itself.
        Ok(self.store.delete(id).await? || was_pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::responses::MemoryResponses;
    use std::time::Duration;

    /// A store whose writes take a while, so a delete can come in between.
    struct SlowPuts(MemoryResponses);

    #[async_trait::async_trait]
    impl ResponseStore for SlowPuts {
        async fn put(&self, response: StoredResponse) -> Result<(), StoreError> {
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.0.put(response).await
        }
        async fn get(&self, id: &str) -> Result<Option<StoredResponse>, StoreError> {
            self.0.get(id).await
        }
        async fn delete(&self, id: &str) -> Result<bool, StoreError> {
            self.0.delete(id).await
        }
        async fn prune(&self, before_ms: u64) -> Result<u64, StoreError> {
            self.0.prune(before_ms).await
        }
    }

    fn response(id: &str) -> StoredResponse {
        StoredResponse {
            id: id.into(),
            key_id: "k".into(),
            created_ms: 1,
            conversation: vec![],
            response: serde_json::json!({"id": id}),
        }
    }

    #[tokio::test]
    async fn a_response_is_readable_at_once_and_stays_deleted_when_deleted_mid_write() {
        let saved = StoredResponses::new(Arc::new(SlowPuts(MemoryResponses::default())));
        saved.save(response("resp_a"));
        assert!(
            saved.get("resp_a", "k").await.unwrap().is_some(),
            "readable at once"
        );
        assert!(
            saved.get("resp_a", "other").await.unwrap().is_none(),
            "not another key's"
        );
        assert!(saved.delete("resp_a", "k").await.unwrap());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            saved.get("resp_a", "k").await.unwrap().is_none(),
            "the late write was undone"
        );

        saved.save(response("resp_b"));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            saved.pending().is_empty(),
            "written, and no longer held in memory"
        );
        assert!(saved.get("resp_b", "k").await.unwrap().is_some());
    }
}
