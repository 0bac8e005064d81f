//! Teams in Redis: the hash `teams` (id → record JSON), shared by the fleet and mirrored in
//! each instance's [`TeamIndex`] the way keys are (see `keys.rs`). Deleting a team checks its
//! live keys and deletes in one script, so no key can join it in between on any instance.

use super::conn::Redis;
use crate::store::error::StoreError;
use crate::store::teams::{
    new_record, sort_listed, Deletion, NewTeam, TeamIndex, TeamRecord, TeamStore, TeamUpdate,
};
use redis::Script;
use std::collections::HashMap;
use std::sync::Arc;

const CAS_ATTEMPTS: usize = 16;

pub struct RedisTeamStore {
    redis: Arc<Redis>,
    index: TeamIndex,
    write: Arc<Script>,
    delete: Script,
    pub(super) loaded_version: std::sync::atomic::AtomicU64,
}

/// What the delete script answers.
#[derive(serde::Deserialize)]
struct DeleteReply {
    deleted: Option<TeamRecord>,
    #[serde(default)]
    members: Vec<String>,
}

impl RedisTeamStore {
    pub async fn open(redis: Arc<Redis>, write: Arc<Script>) -> Result<Arc<Self>, StoreError> {
        let store = Arc::new(RedisTeamStore {
            redis,
            index: TeamIndex::default(),
            write,
            delete: Script::new(include_str!("lua/team_delete.lua")),
            loaded_version: Default::default(),
        });
        store.reload().await?;
        Ok(store)
    }

    pub async fn reload(&self) -> Result<(), StoreError> {
        let (version, all) = super::read_versioned(&self.redis, "teams", "teams").await?;
        let teams = all
            .into_iter()
            .filter_map(|(id, json)| match serde_json::from_str::<TeamRecord>(&json) {
                Ok(team) => Some(team),
                Err(e) => {
                    tracing::error!(team = %id, error = %e, "an unreadable team record in redis is skipped");
                    None
                }
            });
        self.index.replace(teams);
        self.loaded_version
            .store(version, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    async fn read(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.redis
            .cmd(redis::cmd("HGET").arg(self.redis.key("teams")).arg(id))
            .await
    }

    /// Writes `team` in place of `expected` (`None`: a new team); false when someone else
    /// wrote first.
    async fn put(&self, team: &TeamRecord, expected: Option<&str>) -> Result<bool, StoreError> {
        let json = serde_json::to_string(team)
            .map_err(|e| StoreError::Corrupt(format!("team record: {e}")))?;
        let mut call = self.write.prepare_invoke();
        call.key(self.redis.key("teams"))
            .key(self.redis.key("teams"))
            .key(self.redis.key("version"))
            .arg(&team.id)
            .arg(if expected.is_some() {
                team.id.as_str()
            } else {
                ""
            })
            .arg(expected.unwrap_or(""))
            .arg(&team.id)
            .arg(json)
            .arg("teams")
            .arg(self.redis.channel());
        let written: i64 = self.redis.script(&call).await?;
        if written == 1 {
            self.reload().await?;
        }
        Ok(written == 1)
    }

    /// Stores a team as exported, replacing what is there.
    pub async fn put_exported(&self, team: &TeamRecord) -> Result<(), StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let old = self.read(&team.id).await?;
            if self.put(team, old.as_deref()).await? {
                return Ok(());
            }
        }
        Err(StoreError::Backend(format!(
            "team {} kept changing under the import",
            team.id
        )))
    }
}

#[async_trait::async_trait]
impl TeamStore for RedisTeamStore {
    async fn create(&self, new: NewTeam) -> Result<TeamRecord, StoreError> {
        let team = new_record(new);
        if !self.put(&team, None).await? {
            return Err(StoreError::Backend("a new team's id collided".into()));
        }
        Ok(team)
    }

    async fn list(&self) -> Result<Vec<TeamRecord>, StoreError> {
        let all: HashMap<String, String> = self
            .redis
            .cmd(redis::cmd("HGETALL").arg(self.redis.key("teams")))
            .await?;
        let mut teams = all
            .into_values()
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("team record: {e}")))
            })
            .collect::<Result<Vec<TeamRecord>, _>>()?;
        sort_listed(&mut teams);
        Ok(teams)
    }

    async fn find(&self, id: &str) -> Result<Option<TeamRecord>, StoreError> {
        self.read(id)
            .await?
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("team {id}: {e}")))
            })
            .transpose()
    }

    async fn update(&self, id: &str, update: TeamUpdate) -> Result<Option<TeamRecord>, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(json) = self.read(id).await? else {
                return Ok(None);
            };
            let mut team: TeamRecord = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("team {id}: {e}")))?;
            update.clone().apply(&mut team);
            if self.put(&team, Some(&json)).await? {
                return Ok(Some(team));
            }
        }
        Err(StoreError::Backend(format!(
            "team {id} kept changing under this write; try again"
        )))
    }

    async fn delete(&self, id: &str) -> Result<Deletion, StoreError> {
        let mut call = self.delete.prepare_invoke();
        call.key(self.redis.key("teams"))
            .key(self.redis.key("keys"))
            .key(self.redis.key("version"))
            .arg(id)
            .arg(self.redis.channel());
        let reply: String = self.redis.script(&call).await?;
        let reply: DeleteReply = serde_json::from_str(&reply)
            .map_err(|e| StoreError::Corrupt(format!("team delete reply: {e}")))?;
        if let Some(team) = reply.deleted {
            self.reload().await?;
            return Ok(Deletion::Deleted(team));
        }
        if reply.members.is_empty() {
            return Ok(Deletion::NotFound);
        }
        // Oldest first, as every backend lists them.
        let keys = super::keys_by_id(&self.redis).await?;
        let mut members: Vec<&crate::store::keys::KeyRecord> =
            reply.members.iter().filter_map(|id| keys.get(id)).collect();
        members.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(Deletion::HasKeys(
            members.into_iter().map(|k| k.id.clone()).collect(),
        ))
    }

    fn get_cached(&self, id: &str) -> Option<Arc<TeamRecord>> {
        self.index.get(id)
    }
}
