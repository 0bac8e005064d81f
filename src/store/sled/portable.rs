//! Export and import in sled. Keys, teams and assignments go through their stores, which hold
//! the write locks and what is kept in memory; counters through their windows (the writer
//! persists them); usage straight into its trees. An import ends with one flush.

use super::assignments::SledAssignments;
use super::blocking;
use super::counters::SledCounters;
use super::database::Database;
use super::keys::SledKeyStore;
use super::teams::SledTeamStore;
use super::usage::{encode, read};
use crate::store::error::{StoreError, What};
use crate::store::portable::{
    assignment_record, counter_records, key_records, usage_row_record, Import, ImportCounts,
    Portable, Record,
};
use crate::store::windows::CounterWindows;
use std::sync::Arc;

/// A handle on every sled store an export reads and an import writes; clones share them.
#[derive(Clone)]
pub struct SledPortable {
    db: Arc<Database>,
    keys: SledKeyStore,
    teams: SledTeamStore,
    assignments: Arc<SledAssignments>,
    counters: Arc<SledCounters>,
}

impl SledPortable {
    pub fn new(
        db: &Arc<Database>,
        keys: SledKeyStore,
        teams: SledTeamStore,
        assignments: Arc<SledAssignments>,
        counters: Arc<SledCounters>,
    ) -> SledPortable {
        SledPortable {
            db: db.clone(),
            keys,
            teams,
            assignments,
            counters,
        }
    }

    fn export_now(&self) -> Result<Vec<Record>, StoreError> {
        let mut out = key_records(self.keys.with_hashes()?);
        let teams = self.teams.sorted()?;
        out.extend(teams.into_iter().map(|record| Record::Team { record }));
        for (stored, variant) in self.assignments.all()? {
            out.extend(assignment_record(&stored, &variant));
        }
        // From memory: what is there is newer than the tree (the writer is up to 250 ms behind).
        out.extend(counter_records(&self.counters.windows().all()));
        let trees = self.db.trees()?;
        for entry in trees.usage_hours.iter() {
            let (row, totals) = entry?;
            out.push(usage_row_record(&row, read(Some(totals))));
        }
        for entry in trees.usage_keys.iter() {
            let (key_id, usage) = entry?;
            out.push(Record::KeyUsage {
                key_id: String::from_utf8_lossy(&key_id).into_owned(),
                usage: read(Some(usage)),
            });
        }
        Ok(out)
    }

    fn import_now(&self, import: &Import) -> Result<ImportCounts, StoreError> {
        self.db.writable()?;
        self.teams.put_all(&import.teams)?;
        self.keys.put_all(import)?;
        self.assignments.put_all(&import.assignments)?;
        import.restore_counters(&mut self.counters.windows().all());
        self.counters.write_changed()?;
        self.write_usage(import)?;
        self.db.flush()?;
        Ok(import.counts())
    }

    /// Usage rows and keys' usage, each replacing the one with its key. Not one transaction
    /// with the ledger's writes: an import is made while the gateway is stopped.
    fn write_usage(&self, import: &Import) -> Result<(), StoreError> {
        let mut hours = sled::Batch::default();
        for (row, totals) in &import.usage_rows {
            hours.insert(row.as_slice(), encode(totals));
        }
        let mut keys = sled::Batch::default();
        for (key_id, usage) in &import.key_usage {
            keys.insert(key_id.as_bytes(), encode(usage));
        }
        let written = self.db.trees().and_then(|trees| {
            trees.usage_hours.apply_batch(hours)?;
            trees.usage_keys.apply_batch(keys)?;
            Ok(())
        });
        if let Err(e) = &written {
            self.db.report(What::Accounting, e);
        }
        written
    }
}

#[async_trait::async_trait]
impl Portable for SledPortable {
    async fn export(&self) -> Result<Vec<Record>, StoreError> {
        let this = self.clone();
        blocking(move || this.export_now()).await
    }

    async fn import(&self, records: Vec<Record>) -> Result<ImportCounts, StoreError> {
        let import = Import::of(records)?;
        let this = self.clone();
        blocking(move || this.import_now(&import)).await
    }
}
