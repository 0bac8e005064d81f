//! Export and import in memory: each store's records read and written under its own lock.

use super::assignments::MemoryAssignments;
use super::counters::MemoryCounters;
use super::keys::MemoryKeyStore;
use super::ledger::MemoryLedger;
use super::teams::MemoryTeamStore;
use crate::store::error::StoreError;
use crate::store::portable::{
    counter_records, key_records, Import, ImportCounts, Portable, Record,
};
use crate::store::teams::TeamStore;
use crate::store::windows::CounterWindows;
use std::sync::Arc;

/// Every memory store an export reads and an import writes.
pub struct MemoryPortable {
    pub keys: Arc<MemoryKeyStore>,
    pub teams: Arc<MemoryTeamStore>,
    pub assignments: Arc<MemoryAssignments>,
    pub counters: Arc<MemoryCounters>,
    pub ledger: Arc<MemoryLedger>,
}

#[async_trait::async_trait]
impl Portable for MemoryPortable {
    async fn export(&self) -> Result<Vec<Record>, StoreError> {
        let mut out = key_records(self.keys.with_hashes());
        let teams = self.teams.list().await?;
        out.extend(teams.into_iter().map(|record| Record::Team { record }));
        out.extend(self.assignments.records());
        out.extend(counter_records(&self.counters.windows().all()));
        out.extend(self.ledger.usage_records());
        Ok(out)
    }

    async fn import(&self, records: Vec<Record>) -> Result<ImportCounts, StoreError> {
        let import = Import::of(records)?;
        self.teams.put_all(&import.teams);
        self.keys.put_all(&import);
        self.assignments.put_all(&import.assignments);
        import.restore_counters(&mut self.counters.windows().all());
        self.ledger.put_usage(&import);
        Ok(import.counts())
    }
}
