//! Split assignments in Redis: the hash `assign` (split ++ 0x1f ++ sticky id → variant), shared
//! by the fleet. A split runs inside a synchronous script, so `get` is answered from this
//! instance's memory: loaded at start, and kept current by the fleet's pub/sub messages, one
//! per assignment made anywhere. A caller then keeps its variant whichever instance serves it.

use super::conn::Redis;
use crate::store::assignments::{key, AssignmentStore};
use crate::store::error::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Assignments held in memory at most; beyond this the memory is cleared and refilled as
/// callers come back (Redis has them all; a caller missing here is given the same variant by
/// the split's deterministic pick unless its weights changed).
const REMEMBERED: usize = 100_000;
/// The first byte of an assignment's pub/sub message.
pub const MESSAGE: u8 = b'a';

pub struct RedisAssignments {
    redis: Arc<Redis>,
    seen: RwLock<HashMap<Vec<u8>, String>>,
}

impl RedisAssignments {
    pub async fn open(redis: Arc<Redis>) -> Result<Arc<Self>, StoreError> {
        let store = Arc::new(RedisAssignments {
            redis,
            seen: RwLock::new(HashMap::new()),
        });
        store.reload().await?;
        Ok(store)
    }

    /// Reads the assignments into memory, up to `REMEMBERED`.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let mut loaded = HashMap::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(Vec<u8>, String)>) = self
                .redis
                .cmd(
                    redis::cmd("HSCAN")
                        .arg(self.redis.key("assign"))
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            loaded.extend(page);
            cursor = next;
            if cursor == 0 || loaded.len() >= REMEMBERED {
                break;
            }
        }
        *self.seen.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    fn remember(&self, key: Vec<u8>, variant: String) {
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        seen.insert(key, variant);
    }

    /// An assignment another instance made, from its pub/sub message (after [`MESSAGE`]:
    /// key ++ 0x1e ++ variant).
    pub fn heard(&self, message: &[u8]) {
        let Some(at) = message.iter().rposition(|b| *b == 0x1e) else {
            return;
        };
        let variant = String::from_utf8_lossy(&message[at + 1..]).into_owned();
        self.remember(message[..at].to_vec(), variant);
    }

    /// Every assignment (split, sticky id, variant), for export.
    pub async fn all(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let all: HashMap<Vec<u8>, String> = self
            .redis
            .cmd(redis::cmd("HGETALL").arg(self.redis.key("assign")))
            .await?;
        Ok(all
            .into_iter()
            .filter_map(|(k, variant)| {
                let at = k.iter().position(|b| *b == 0x1f)?;
                Some((
                    String::from_utf8_lossy(&k[..at]).into_owned(),
                    String::from_utf8_lossy(&k[at + 1..]).into_owned(),
                    variant,
                ))
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl AssignmentStore for RedisAssignments {
    fn get(&self, split: &str, sticky_id: &str) -> Option<String> {
        self.seen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key(split, sticky_id))
            .cloned()
    }

    async fn set(&self, split: &str, sticky_id: &str, variant: &str) -> Result<(), StoreError> {
        let k = key(split, sticky_id);
        // Seen here at once; the fleet hears it from the message.
        self.remember(k.clone(), variant.to_string());
        let mut message = vec![MESSAGE];
        message.extend_from_slice(&k);
        message.push(0x1e);
        message.extend_from_slice(variant.as_bytes());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(self.redis.key("assign"))
            .arg(&k)
            .arg(variant)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.redis.channel())
            .arg(message)
            .ignore();
        self.redis.pipe::<()>(&pipe).await
    }
}
