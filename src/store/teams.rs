//! Teams: a name and limits shared by the keys that belong to them. A key names at most one
//! team (`KeyRecord::team`); a request must fit its key's limits and its team's.
//!
//! The request path reads a key's team on every request, so every backend keeps the teams in
//! memory ([`TeamIndex`]) and answers [`TeamStore::get_cached`] from there; the writes (rare,
//! from the admin API) are async and durable when they return, like keys'.

use super::error::StoreError;
use super::keys::KeyRecord;
use super::limits::Limits;
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use utoipa::ToSchema;

/// A team as stored and as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TeamRecord {
    pub id: String,
    pub name: String,
    /// Limits and budgets shared by every key of the team (each key's own apply as well).
    #[serde(default)]
    pub limits: Limits,
    /// Unix seconds.
    pub created_at: u64,
    /// Free-form data for the operator (owner, cost centre, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// What a caller asks for when creating a team.
#[derive(Debug, Clone, Default)]
pub struct NewTeam {
    pub name: String,
    pub limits: Limits,
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Changes to a team; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TeamUpdate {
    pub name: Option<String>,
    /// Replaces the team's limits whole.
    pub limits: Option<Limits>,
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
}

/// What [`TeamStore::delete`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Deletion {
    Deleted(TeamRecord),
    NotFound,
    /// Nothing was deleted: these live keys (ids, oldest first) still belong to the team.
    /// Deleting it would lift its limits from them at once, so they must leave it first;
    /// revoked keys keep the team's id on record and do not hold it back.
    HasKeys(Vec<String>),
}

/// Teams. Writes are durable when they return; `get_cached` is answered from memory.
#[async_trait::async_trait]
pub trait TeamStore: Send + Sync {
    async fn create(&self, new: NewTeam) -> Result<TeamRecord, StoreError>;
    /// Oldest first.
    async fn list(&self) -> Result<Vec<TeamRecord>, StoreError>;
    async fn find(&self, id: &str) -> Result<Option<TeamRecord>, StoreError>;
    /// Applies `update`; `Ok(None)` when there is no such team.
    async fn update(&self, id: &str, update: TeamUpdate) -> Result<Option<TeamRecord>, StoreError>;
    /// Deletes the team unless a live key still belongs to it (see [`Deletion::HasKeys`]).
    async fn delete(&self, id: &str) -> Result<Deletion, StoreError>;
    /// The team with this id, if any. Runs on every request of a key in a team: answered from
    /// the backend's in-memory index, never a round trip.
    fn get_cached(&self, id: &str) -> Option<Arc<TeamRecord>>;
}

/// Every team by id, swapped whole on the rare writes: what `get_cached` reads.
#[derive(Default)]
pub struct TeamIndex(arc_swap::ArcSwap<HashMap<String, Arc<TeamRecord>>>);

impl TeamIndex {
    pub fn get(&self, id: &str) -> Option<Arc<TeamRecord>> {
        self.0.load().get(id).cloned()
    }

    /// Replaces the index with these teams.
    pub fn replace(&self, teams: impl IntoIterator<Item = TeamRecord>) {
        let all = teams
            .into_iter()
            .map(|team| (team.id.clone(), Arc::new(team)))
            .collect();
        self.0.store(Arc::new(all));
    }
}

/// A new team's record: what every backend stores for `create`.
pub fn new_record(new: NewTeam) -> TeamRecord {
    TeamRecord {
        id: format!(
            "team_{}",
            Alphanumeric.sample_string(&mut rand::thread_rng(), 16)
        ),
        name: new.name,
        limits: new.limits,
        created_at: crate::clock::now_secs(),
        metadata: new.metadata,
    }
}

impl TeamUpdate {
    /// The changes applied to `record`.
    pub fn apply(self, record: &mut TeamRecord) {
        if let Some(name) = self.name {
            record.name = name;
        }
        if let Some(limits) = self.limits {
            record.limits = limits;
        }
        if let Some(metadata) = self.metadata {
            record.metadata = metadata;
        }
    }
}

/// Teams listed oldest first, the order `list` promises.
pub fn sort_listed(teams: &mut [TeamRecord]) {
    teams.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
}

/// The live keys among `keys` that belong to `team`, oldest first: what holds a deletion back.
pub fn live_members<'a>(keys: impl IntoIterator<Item = &'a KeyRecord>, team: &str) -> Vec<String> {
    let mut members: Vec<&KeyRecord> = keys
        .into_iter()
        .filter(|k| k.revoked_at.is_none() && k.team.as_deref() == Some(team))
        .collect();
    members.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    members.into_iter().map(|k| k.id.clone()).collect()
}
