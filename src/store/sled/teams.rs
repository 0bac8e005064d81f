//! Teams in sled: the tree `teams` (id → TeamRecord as JSON). Every change is one transaction,
//! flushed before it is acknowledged; the in-memory index follows what was written.

use super::blocking;
use super::database::Database;
use crate::store::error::{StoreError, What};
use crate::store::keys::KeyRecord;
use crate::store::teams::{
    live_members, new_record, sort_listed, Deletion, NewTeam, TeamIndex, TeamRecord, TeamStore,
    TeamUpdate,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A handle on the sled team store; clones share it.
#[derive(Clone)]
pub struct SledTeamStore(Arc<Teams>);

struct Teams {
    db: Arc<Database>,
    index: TeamIndex,
    /// Serialises writers so the in-memory index is rebuilt from a consistent view.
    write_lock: Mutex<()>,
}

/// A change to the `teams` tree.
enum Change<'a> {
    Put(&'a TeamRecord),
    Remove(&'a str),
}

impl SledTeamStore {
    pub fn open(db: &Arc<Database>) -> Result<Self, StoreError> {
        let teams = Arc::new(Teams {
            db: db.clone(),
            index: TeamIndex::default(),
            write_lock: Mutex::new(()),
        });
        teams.rebuild_index()?;
        // A reopened database holds what reached the disk: the index follows it.
        let weak = Arc::downgrade(&teams);
        db.on_reopen(move || match weak.upgrade() {
            Some(teams) => {
                let _guard = teams.lock();
                teams.rebuild_index()
            }
            None => Ok(()),
        });
        Ok(SledTeamStore(teams))
    }

    /// Runs a write off the async workers (it flushes to disk), serialised with the others.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Teams) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let teams = self.0.clone();
        blocking(move || {
            let _guard = teams.lock();
            f(&teams)
        })
        .await
    }

    /// Every team, oldest first. Blocking.
    pub(super) fn sorted(&self) -> Result<Vec<TeamRecord>, StoreError> {
        let mut out = self.0.all()?;
        sort_listed(&mut out);
        Ok(out)
    }

    /// Writes imported teams as `commit` writes one (each replaces the one with its id): one
    /// batch, flushed, and only then the index follows. Blocking.
    pub(super) fn put_all(&self, teams: &BTreeMap<String, TeamRecord>) -> Result<(), StoreError> {
        if teams.is_empty() {
            return Ok(());
        }
        let inner = &self.0;
        let _guard = inner.lock();
        let mut batch = sled::Batch::default();
        for (id, record) in teams {
            let bytes =
                serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            batch.insert(id.as_bytes(), bytes);
        }
        let written = inner.db.writable().and_then(|()| {
            inner.db.trees()?.teams.apply_batch(batch)?;
            inner.db.flush()
        });
        if let Err(e) = &written {
            inner.db.report(What::Teams, e);
        }
        written?;
        inner.rebuild_index()
    }
}

impl Teams {
    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn all(&self) -> Result<Vec<TeamRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self.db.trees()?.teams.iter() {
            let (id, bytes) = entry?;
            out.push(serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Corrupt(format!("team {}: {e}", String::from_utf8_lossy(&id)))
            })?);
        }
        Ok(out)
    }

    fn rebuild_index(&self) -> Result<(), StoreError> {
        self.index.replace(self.all()?);
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<TeamRecord>, StoreError> {
        match self.db.trees()?.teams.get(id.as_bytes())? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("team {id}: {e}"))),
            None => Ok(None),
        }
    }

    /// The live keys that belong to team `id`, read from the key records on disk.
    fn members(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut keys: Vec<KeyRecord> = Vec::new();
        for entry in self.db.trees()?.keys.iter() {
            let (_, bytes) = entry?;
            keys.push(
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
        }
        Ok(live_members(&keys, id))
    }

    /// Writes `change` in one transaction, flushes it to disk, and only then refreshes the
    /// in-memory index: the caller answers only once the change would survive a crash, and a
    /// change that could not be written (a full disk) is an error and never takes effect in
    /// this process (it may still have reached the disk, and is then there after a reopen).
    fn commit(&self, change: Change<'_>) -> Result<(), StoreError> {
        let written = self.db.writable().and_then(|()| self.write(change));
        if let Err(e) = &written {
            self.db.report(What::Teams, e);
        }
        written?;
        self.rebuild_index()
    }

    fn write(&self, change: Change<'_>) -> Result<(), StoreError> {
        use sled::transaction::TransactionError;
        let (id, bytes) = match change {
            Change::Put(record) => (
                record.id.as_str(),
                Some(serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?),
            ),
            Change::Remove(id) => (id, None),
        };
        let trees = self.db.trees()?;
        trees
            .teams
            .transaction(|tx| {
                match &bytes {
                    Some(bytes) => tx.insert(id.as_bytes(), bytes.as_slice())?,
                    None => tx.remove(id.as_bytes())?,
                };
                Ok(())
            })
            .map_err(|e: TransactionError<()>| match e {
                TransactionError::Storage(e) => e.into(),
                TransactionError::Abort(()) => StoreError::Corrupt("team write aborted".into()),
            })?;
        drop(trees);
        self.db.flush()
    }
}

#[async_trait::async_trait]
impl TeamStore for SledTeamStore {
    async fn create(&self, new: NewTeam) -> Result<TeamRecord, StoreError> {
        self.write(|teams| {
            let record = new_record(new);
            teams.commit(Change::Put(&record))?;
            Ok(record)
        })
        .await
    }

    async fn list(&self) -> Result<Vec<TeamRecord>, StoreError> {
        let teams = self.clone();
        blocking(move || teams.sorted()).await
    }

    async fn find(&self, id: &str) -> Result<Option<TeamRecord>, StoreError> {
        // One point read from sled's cache: cheap enough for the worker.
        self.0.get(id)
    }

    async fn update(&self, id: &str, update: TeamUpdate) -> Result<Option<TeamRecord>, StoreError> {
        let id = id.to_string();
        self.write(move |teams| {
            let Some(mut record) = teams.get(&id)? else {
                return Ok(None);
            };
            update.apply(&mut record);
            teams.commit(Change::Put(&record))?;
            Ok(Some(record))
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<Deletion, StoreError> {
        let id = id.to_string();
        self.write(move |teams| {
            let Some(record) = teams.get(&id)? else {
                return Ok(Deletion::NotFound);
            };
            let members = teams.members(&id)?;
            if !members.is_empty() {
                return Ok(Deletion::HasKeys(members));
            }
            teams.commit(Change::Remove(&id))?;
            Ok(Deletion::Deleted(record))
        })
        .await
    }

    fn get_cached(&self, id: &str) -> Option<Arc<TeamRecord>> {
        self.0.index.get(id)
    }
}
