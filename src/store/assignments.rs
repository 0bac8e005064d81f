//! Sticky A/B assignments: (split, sticky id) → variant, kept so they survive restarts.

use super::error::StoreError;

/// Split assignments. A split runs on every request inside a (synchronous) script, so `get`
/// is answered from memory; `set` is one round trip, made after the policies ran.
#[async_trait::async_trait]
pub trait AssignmentStore: Send + Sync {
    fn get(&self, split: &str, sticky_id: &str) -> Option<String>;
    async fn set(&self, split: &str, sticky_id: &str, variant: &str) -> Result<(), StoreError>;
}

/// The stored key of an assignment: split ++ 0x1f ++ sticky id.
pub fn key(split: &str, sticky_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(split.len() + sticky_id.len() + 1);
    k.extend_from_slice(split.as_bytes());
    k.push(0x1f);
    k.extend_from_slice(sticky_id.as_bytes());
    k
}
