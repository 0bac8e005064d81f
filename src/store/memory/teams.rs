//! Teams in memory only: lost when the process ends.

use crate::store::error::StoreError;
use crate::store::keys::KeyStore;
use crate::store::teams::{
    live_members, new_record, sort_listed, Deletion, NewTeam, TeamIndex, TeamRecord, TeamStore,
    TeamUpdate,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

pub struct MemoryTeamStore {
    teams: Mutex<HashMap<String, TeamRecord>>,
    index: TeamIndex,
    /// The keys whose membership holds a deletion back.
    keys: Arc<dyn KeyStore>,
}

impl MemoryTeamStore {
    pub fn new(keys: Arc<dyn KeyStore>) -> MemoryTeamStore {
        MemoryTeamStore {
            teams: Mutex::new(HashMap::new()),
            index: TeamIndex::default(),
            keys,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, TeamRecord>> {
        self.teams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refreshes the index from `teams`: what every write ends with.
    fn reindex(&self, teams: &HashMap<String, TeamRecord>) {
        self.index.replace(teams.values().cloned());
    }

    /// Writes imported teams, each replacing the one with its id; the index follows at once.
    pub(super) fn put_all(&self, imported: &BTreeMap<String, TeamRecord>) {
        let mut teams = self.lock();
        for (id, record) in imported {
            teams.insert(id.clone(), record.clone());
        }
        self.reindex(&teams);
    }
}

#[async_trait::async_trait]
impl TeamStore for MemoryTeamStore {
    async fn create(&self, new: NewTeam) -> Result<TeamRecord, StoreError> {
        let record = new_record(new);
        let mut teams = self.lock();
        teams.insert(record.id.clone(), record.clone());
        self.reindex(&teams);
        Ok(record)
    }

    async fn list(&self) -> Result<Vec<TeamRecord>, StoreError> {
        let mut out: Vec<TeamRecord> = self.lock().values().cloned().collect();
        sort_listed(&mut out);
        Ok(out)
    }

    async fn find(&self, id: &str) -> Result<Option<TeamRecord>, StoreError> {
        Ok(self.lock().get(id).cloned())
    }

    async fn update(&self, id: &str, update: TeamUpdate) -> Result<Option<TeamRecord>, StoreError> {
        let mut teams = self.lock();
        let Some(record) = teams.get_mut(id) else {
            return Ok(None);
        };
        update.apply(record);
        let record = record.clone();
        self.reindex(&teams);
        Ok(Some(record))
    }

    async fn delete(&self, id: &str) -> Result<Deletion, StoreError> {
        // The keys are read before the lock is taken (it is not held across an await).
        let keys = self.keys.list().await?;
        let members = live_members(&keys, id);
        let mut teams = self.lock();
        if !teams.contains_key(id) {
            return Ok(Deletion::NotFound);
        }
        if !members.is_empty() {
            return Ok(Deletion::HasKeys(members));
        }
        let Some(record) = teams.remove(id) else {
            return Ok(Deletion::NotFound);
        };
        self.reindex(&teams);
        Ok(Deletion::Deleted(record))
    }

    fn get_cached(&self, id: &str) -> Option<Arc<TeamRecord>> {
        self.index.get(id)
    }
}
