//! Stored Responses API responses: what `previous_response_id` continues from and
//! `GET`/`DELETE /v1/responses/{id}` read and remove. Kept like request logs (the same
//! retention), written off the request path without a flush of their own.

use super::error::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One stored response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// `resp_...`
    pub id: String,
    /// The key that made it: only that key may read, continue from or delete it.
    pub key_id: String,
    /// When it was made (ms since the epoch); retention prunes by it.
    pub created_ms: u64,
    /// The conversation that led to it, in order: the earlier turns' items (their inputs and
    /// outputs) and this request's input items.
    pub conversation: Vec<Value>,
    /// The response object as the client received it.
    pub response: Value,
}

#[async_trait::async_trait]
pub trait ResponseStore: Send + Sync {
    /// Stores (or replaces) a response.
    async fn put(&self, response: StoredResponse) -> Result<(), StoreError>;
    async fn get(&self, id: &str) -> Result<Option<StoredResponse>, StoreError>;
    /// True when there was such a response.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;
    /// Removes the responses made before `before_ms`; how many.
    async fn prune(&self, before_ms: u64) -> Result<u64, StoreError>;
}
