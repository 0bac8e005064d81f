//! Stored Responses API responses in Redis, shared by the fleet: each response a JSON string
//! (`response:<id>`), and `response_index`, a sorted set of ids by created_ms, that retention
//! prunes by. A put and a delete change both in one `MULTI`.

use super::conn::Redis;
use crate::store::error::StoreError;
use crate::store::responses::{ResponseStore, StoredResponse};
use std::sync::Arc;

/// Ids a prune takes at a time.
const BATCH: usize = 1000;

pub struct RedisResponses {
    redis: Arc<Redis>,
}

impl RedisResponses {
    pub fn new(redis: Arc<Redis>) -> RedisResponses {
        RedisResponses { redis }
    }

    fn entry(&self, id: &str) -> Vec<u8> {
        self.redis.key(format!("response:{id}"))
    }

    fn index(&self) -> Vec<u8> {
        self.redis.key("response_index")
    }
}

#[async_trait::async_trait]
impl ResponseStore for RedisResponses {
    /// Given the time of a call that carries much ([`Redis::pipe_slow`]): a conversation can
    /// be megabytes, and a put that timed out would lose it.
    async fn put(&self, response: StoredResponse) -> Result<(), StoreError> {
        let json = serde_json::to_vec(&response)
            .map_err(|e| StoreError::Invalid(format!("stored response: {e}")))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.entry(&response.id))
            .arg(json)
            .ignore()
            .cmd("ZADD")
            .arg(self.index())
            .arg(response.created_ms)
            .arg(&response.id)
            .ignore();
        self.redis.pipe_slow::<()>(&pipe).await
    }

    async fn get(&self, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        let json: Option<Vec<u8>> = self
            .redis
            .cmd(redis::cmd("GET").arg(self.entry(id)))
            .await?;
        json.map(|json| {
            serde_json::from_slice(&json)
                .map_err(|e| StoreError::Corrupt(format!("stored response: {e}")))
        })
        .transpose()
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(self.entry(id))
            .cmd("ZREM")
            .arg(self.index())
            .arg(id)
            .ignore();
        let (deleted,): (u64,) = self.redis.pipe(&pipe).await?;
        Ok(deleted > 0)
    }

    /// The ids made before `before_ms`, a batch at a time, each batch's strings and index
    /// entries removed in one `MULTI`. Only the ids read are taken out of the index: one
    /// written meanwhile stays indexed (but one of those ids written again in between, with a
    /// later created_ms, goes too).
    async fn prune(&self, before_ms: u64) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            let ids: Vec<String> = self
                .redis
                .cmd(
                    redis::cmd("ZRANGE")
                        .arg(self.index())
                        .arg("-inf")
                        .arg(format!("({before_ms}"))
                        .arg("BYSCORE")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(BATCH),
                )
                .await?;
            if ids.is_empty() {
                return Ok(removed);
            }
            let entries: Vec<Vec<u8>> = ids.iter().map(|id| self.entry(id)).collect();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("DEL")
                .arg(&entries)
                .cmd("ZREM")
                .arg(self.index())
                .arg(&ids)
                .ignore();
            let (deleted,): (u64,) = self.redis.pipe_slow(&pipe).await?;
            removed += deleted;
            if ids.len() < BATCH {
                return Ok(removed);
            }
        }
    }
}
