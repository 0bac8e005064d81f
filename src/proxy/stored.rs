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
        self.pending().remove(id);
        self.store.delete(id).await
    }
}
