//! Counters in sled: the windows live in memory ([`crate::store::windows`]); a background
//! thread writes changed ones to the tree `counters` every 250 ms and on flush, and they are
//! loaded back on start, so limits survive a restart (a crash can lose at most the last
//! interval's counts).

use super::database::Database;
use crate::store::error::StoreError;
use crate::store::error::What;
use crate::store::windows::{Changed, CounterWindows, ShardedWindows, Window};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct SledCounters {
    /// The tree `counters`: name ++ 0x1f ++ window → window start and count (8 + 8 bytes).
    db: Arc<Database>,
    windows: ShardedWindows,
}

impl SledCounters {
    pub fn open(db: &Arc<Database>) -> Result<Arc<Self>, StoreError> {
        let mut windows = HashMap::new();
        for entry in db.trees()?.counters.iter() {
            let (k, v) = entry?;
            if v.len() == 16 {
                let start = u64::from_be_bytes(v[..8].try_into().unwrap_or([0; 8]));
                let count = u64::from_be_bytes(v[8..].try_into().unwrap_or([0; 8]));
                windows.insert(
                    String::from_utf8_lossy(&k).into_owned(),
                    Window {
                        start,
                        count,
                        reserved: 0,
                    },
                );
            }
        }
        let counters = Arc::new(SledCounters {
            db: db.clone(),
            windows: ShardedWindows::loaded(windows),
        });
        // What is in memory is newer than anything on disk: after a reopen (which lost what
        // was not flushed), all of it is written again.
        let weak = Arc::downgrade(&counters);
        db.on_reopen(move || {
            if let Some(c) = weak.upgrade() {
                c.windows.mark_all_changed();
            }
            Ok(())
        });
        // The writer holds a weak reference, so it ends when the store is dropped.
        let weak = Arc::downgrade(&counters);
        std::thread::Builder::new()
            .name("counter-writer".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250));
                match weak.upgrade() {
                    // While the store cannot write, changes wait in memory (marked dirty)
                    // instead of failing every 250 ms; the probe notices when it can again.
                    Some(c) if c.db.fault().is_some() => {}
                    Some(c) => {
                        if let Err(e) = c.write_changed() {
                            tracing::debug!(error = %e, "could not persist counters");
                        }
                    }
                    None => return,
                }
            })
            .map_err(StoreError::from)?;
        Ok(counters)
    }
}

impl CounterWindows for SledCounters {
    fn windows(&self) -> &ShardedWindows {
        &self.windows
    }

    fn write_changed(&self) -> Result<(), StoreError> {
        // While the store cannot write, changes wait in memory, marked dirty.
        self.db.writable()?;
        let Changed { written, removed } = self.windows.take_changed();
        if written.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        // Pruned counters go from disk too; if the batch fails they stay there, harmless (a
        // past window reads as 0) and pruned again after the next restart.
        for k in &removed {
            batch.remove(k.as_bytes());
        }
        for (k, w) in &written {
            let mut v = [0u8; 16];
            v[..8].copy_from_slice(&w.start.to_be_bytes());
            v[8..].copy_from_slice(&w.count.to_be_bytes());
            batch.insert(k.as_bytes(), &v);
        }
        let applied = self
            .db
            .trees()
            .and_then(|t| t.counters.apply_batch(batch).map_err(StoreError::from));
        if let Err(e) = applied {
            // Not written: still changed, for the next try (with their newest windows).
            self.windows
                .mark_changed(written.into_iter().map(|(k, _)| k));
            self.db.report(What::Counters, &e);
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::counters::{Actual, CounterStore, Limit, LimitKind};

    #[tokio::test]
    async fn use_survives_a_restart_and_reservations_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let rpm = Limit::new("rpm:k", 10, 3600, LimitKind::Requests);
        let tokens = Limit::new("tokens", 500, 3600, LimitKind::Tokens);
        {
            let db = Database::open(dir.path(), 1 << 20).unwrap();
            let counters = SledCounters::open(&db).unwrap();
            let settled = counters
                .reserve(&[(rpm.clone(), 1), (tokens.clone(), 100)])
                .await
                .unwrap();
            let actual = Actual {
                tokens: 400,
                micro_usd: 0,
            };
            counters.settle(&settled, actual).await.unwrap();
            // In flight at the crash: its reservation is not kept.
            counters.reserve(&[(tokens.clone(), 50)]).await.unwrap();
            counters.write_changed().unwrap();
            db.flush().unwrap();
        }
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        let counters = SledCounters::open(&db).unwrap();
        assert_eq!(counters.get("rpm:k", 3600).await.unwrap(), 1);
        let used = counters.usage(std::slice::from_ref(&tokens)).await.unwrap();
        assert_eq!((used[0].used, used[0].reserved), (400, 0));
        assert!(counters.reserve(&[(tokens.clone(), 100)]).await.is_ok());
        assert!(
            counters.reserve(&[(tokens, 1)]).await.is_err(),
            "400 + 100 of 500"
        );
    }
}
