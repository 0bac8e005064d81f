//! The sled backend: every store in one embedded database in the data folder, the default.
//!
//! sled calls block (a flush waits for the disk, a query scans), so the async methods that can
//! take long run them on tokio's blocking pool (`blocking`); point reads and the in-memory
//! answers (keys, counters, assignments) stay on the caller's thread.

pub mod assignments;
pub mod cache;
pub mod counters;
pub mod database;
pub mod keys;
pub mod ledger;
pub mod logs;
pub mod portable;
pub mod responses;
pub mod teams;
pub mod usage;

use crate::store::backend::{Backend, Store, StoreKind};
use crate::store::error::StoreError;
use crate::store::error::What;
use crate::store::windows::CounterWindows;
use database::Database;
use std::path::Path;
use std::sync::Arc;

/// sled's segment size; see `database::open_sled`. Fixed once a database is created.
pub const SEGMENT_BYTES: usize = 2 << 20;

/// Runs blocking sled work on tokio's blocking pool when there is a runtime, so an async
/// worker never waits on the disk; inline otherwise (a caller without a runtime is blocking
/// anyway).
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(work)
            .await
            .map_err(|e| StoreError::Backend(format!("a store task did not finish: {e}")))?,
        Err(_) => work(),
    }
}

/// Opens (or creates) the database in `dir` and the stores on it. `cache_bytes` bounds
/// sled's page cache; `cache_max_entries` the response cache.
pub fn open(dir: &Path, cache_bytes: u64, cache_max_entries: usize) -> Result<Store, StoreError> {
    let db = Database::open(dir, cache_bytes)?;
    let counters = counters::SledCounters::open(&db)?;
    let logs = logs::SledLogs::open(&db)?;
    let keys = keys::SledKeyStore::open(&db)?;
    let teams = teams::SledTeamStore::open(&db)?;
    let assignments = assignments::SledAssignments::open(&db)?;
    let portable = portable::SledPortable::new(
        &db,
        keys.clone(),
        teams.clone(),
        assignments.clone(),
        counters.clone(),
    );
    Ok(Store {
        keys: Arc::new(keys),
        teams: Arc::new(teams),
        counters: counters.clone(),
        assignments,
        cache: Arc::new(cache::SledCache::open(&db, cache_max_entries)?),
        logs: Arc::new(logs::SledLogStore(logs.clone())),
        usage: Arc::new(usage::SledUsage::open(&db)),
        ledger: Arc::new(ledger::SledLedger::new(&db, logs)),
        responses: Arc::new(responses::SledResponses::open(&db)),
        portable: Arc::new(portable),
        backend: Arc::new(SledBackend { db, counters }),
    })
}

/// What the store as a whole does in sled: flushing, health, recovery, metrics.
pub struct SledBackend {
    db: Arc<Database>,
    /// Counters are written on their own schedule; a flush writes them first.
    counters: Arc<counters::SledCounters>,
}

#[async_trait::async_trait]
impl Backend for SledBackend {
    fn kind(&self) -> StoreKind {
        StoreKind::Sled
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (db, counters) = (self.db.clone(), self.counters.clone());
        blocking(move || {
            if db.fault().is_some() {
                db.check();
            }
            db.writable()?;
            counters.write_changed()?;
            db.flush()
        })
        .await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        blocking(move || db.flush()).await
    }

    fn is_healthy(&self) -> bool {
        self.db
            .trees()
            .is_ok_and(|t| t.db.contains_key(b"health").is_ok())
    }

    fn write_fault(&self) -> Option<String> {
        self.db.fault()
    }

    fn check(&self) -> bool {
        self.db.check()
    }

    fn generation(&self) -> u64 {
        self.db.generation()
    }

    fn report(&self, what: What, e: &StoreError) {
        self.db.report(what, e)
    }

    fn render_metrics(&self, out: &mut String) {
        self.db.render_metrics(out)
    }

    #[cfg(test)]
    fn sled_database(&self) -> Option<&Arc<Database>> {
        Some(&self.db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::cache::CachedReply;
    use crate::store::counters::CounterAdd;
    use crate::store::keys::NewKey;
    use crate::store::logs;
    use crate::store::teams::NewTeam;

    #[tokio::test]
    async fn a_folder_made_with_sleds_default_segments_still_opens_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let old = sled::Config::new().path(dir.path()).open().unwrap();
            old.insert(b"kept", b"yes").unwrap();
            old.flush().unwrap();
        }
        assert_eq!(database::segment_size_of(dir.path()), 512 * 1024);
        let store = crate::store::Store::open(dir.path(), 1 << 20).unwrap();
        let trees = store.backend.sled_database().unwrap().trees().unwrap();
        assert_eq!(trees.db.get(b"kept").unwrap().unwrap(), &b"yes"[..]);
        drop((trees, store));

        let fresh = tempfile::tempdir().unwrap();
        drop(crate::store::Store::open(fresh.path(), 1 << 20).unwrap());
        assert_eq!(database::segment_size_of(fresh.path()), SEGMENT_BYTES);
    }

    #[tokio::test]
    async fn an_unfinished_snapshot_left_by_a_full_disk_does_not_stop_the_store_opening() {
        let dir = tempfile::tempdir().unwrap();
        let secret = {
            let store = crate::store::Store::open(dir.path(), 1 << 20).unwrap();
            let (_, secret) = store.keys.create(NewKey::default()).await.unwrap();
            secret
        };
        // What sled leaves when writing a snapshot fails for want of space; alone, sled then
        // refuses to open ("Read corrupted data").
        std::fs::write(dir.path().join("snap.7FFFFFFFFFFFFFFF.generating"), b"").unwrap();
        let store = crate::store::Store::open(dir.path(), 1 << 20).unwrap();
        assert!(store.keys.authenticate(&secret).is_some());
        assert!(!dir.path().join("snap.7FFFFFFFFFFFFFFF.generating").exists());
    }

    #[tokio::test]
    async fn a_stored_response_synced_is_there_after_a_reopen_and_a_restart() {
        use crate::store::contract::{stored_response, varied_text};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path(), 1 << 20).unwrap();
        let small = stored_response("resp_small", 1_000, 2);
        let mut large = stored_response("resp_large", 2_000, 0);
        large.conversation = vec![serde_json::json!({"content": varied_text(1 << 20, 7)})];
        store.responses.put(small.clone()).await.unwrap();
        store.responses.put(large.clone()).await.unwrap();
        store.backend.sync().await.unwrap();

        // A reopen keeps what reached the disk: what was synced.
        store.backend.sled_database().unwrap().reopen().unwrap();
        assert_eq!(
            store.responses.get("resp_small").await.unwrap().as_ref(),
            Some(&small)
        );
        assert_eq!(
            store.responses.get("resp_large").await.unwrap().as_ref(),
            Some(&large)
        );
        assert!(store.responses.delete("resp_small").await.unwrap());
        store.backend.sync().await.unwrap();
        drop(store);

        let store = crate::store::Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            store.responses.get("resp_large").await.unwrap(),
            Some(large)
        );
        assert!(store.responses.get("resp_small").await.unwrap().is_none());
        assert_eq!(store.responses.prune(u64::MAX).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn after_a_reopen_every_store_works_and_memory_follows_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path(), 1 << 20).unwrap();
        let (_, secret) = store.keys.create(NewKey::default()).await.unwrap();
        let team = store.teams.create(NewTeam::default()).await.unwrap();
        store
            .counters
            .add(&[CounterAdd {
                name: "tokens".into(),
                window_secs: 0,
                amount: 7,
            }])
            .await
            .unwrap();
        store.assignments.set("split", "user", "b").await.unwrap();
        let reply = CachedReply {
            provider: "p".into(),
            model: "m".into(),
            expires_at: u64::MAX,
            body: Some("{}".into()),
            chunks: vec![],
        };
        store.cache.put(b"p/m\x1fk", &reply).await.unwrap();
        let entry = logs::LogEntry {
            request_id: "r".into(),
            key_id: "k".into(),
            ..logs::LogEntry::default()
        };
        store
            .ledger
            .write(&store.ledger.batch(vec![entry]))
            .await
            .unwrap();
        // The counter may not be persisted yet: a reopen may lose it on disk, not in memory.
        assert_eq!(store.backend.generation(), 0);

        store.backend.sled_database().unwrap().reopen().unwrap();
        assert_eq!(store.backend.generation(), 1);
        assert!(store.keys.authenticate(&secret).is_some());
        assert!(store.teams.get_cached(&team.id).is_some());
        assert_eq!(store.counters.get("tokens", 0).await.unwrap(), 7);
        assert_eq!(store.assignments.get("split", "user").as_deref(), Some("b"));
        assert_eq!(store.cache.stats().await.unwrap().entries, 1);
        assert!(store.logs.get("r").await.unwrap().is_some());
        assert_eq!(store.usage.key_usage("k").await.unwrap().totals.requests, 1);
        // Written again from memory into the reopened database.
        store.flush().await.unwrap();
        drop(store);
        let store = crate::store::Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.counters.get("tokens", 0).await.unwrap(), 7);
        assert!(store.keys.authenticate(&secret).is_some());
        assert_eq!(store.teams.get_cached(&team.id).as_deref(), Some(&team));
    }
}
