//! Usage in sled: the trees `usage_hours` (hour, 8 bytes, ++ dims joined by 0x1f → Totals as
//! JSON) and `usage_keys` (key id → KeyUsage as JSON). Written by the ledger.

use super::blocking;
use super::database::Database;
use crate::store::error::StoreError;
use crate::store::usage::{
    first_kept_hour, regroup, Bucket, GroupBy, KeyUsage, Totals, UsageRow, UsageStore,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A handle on the usage trees; clones share them.
#[derive(Clone)]
pub struct SledUsage {
    db: Arc<Database>,
}

impl SledUsage {
    pub fn open(db: &Arc<Database>) -> SledUsage {
        SledUsage { db: db.clone() }
    }

    fn query_rows(
        &self,
        since: u64,
        until: u64,
        bucket: Bucket,
        group: &GroupBy,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let from = since / 3600 * 3600;
        let trees = self.db.trees()?;
        let mut rows = Vec::new();
        for item in trees
            .usage_hours
            .range(from.to_be_bytes().to_vec()..until.to_be_bytes().to_vec())
        {
            let (key, value) = item?;
            rows.push((key, read::<Totals>(Some(value))));
        }
        Ok(regroup(
            rows.iter().map(|(k, t)| (k.as_ref(), *t)),
            bucket,
            group,
        ))
    }

    fn prune_rows(&self, before: u64) -> Result<usize, StoreError> {
        let Some(first_kept) = first_kept_hour(before) else {
            return Ok(0);
        };
        self.db.writable()?;
        let trees = self.db.trees()?;
        let hours = &trees.usage_hours;
        let old: Vec<sled::IVec> = hours
            .range(..first_kept.to_be_bytes().to_vec())
            .keys()
            .collect::<Result<_, _>>()?;
        for key in &old {
            hours.remove(key)?;
        }
        Ok(old.len())
    }
}

pub(super) fn read<T: for<'de> Deserialize<'de> + Default>(v: Option<sled::IVec>) -> T {
    v.and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default()
}

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[async_trait::async_trait]
impl UsageStore for SledUsage {
    async fn query(
        &self,
        since: u64,
        until: u64,
        bucket: Bucket,
        group: &GroupBy,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let (usage, group) = (self.clone(), group.clone());
        blocking(move || usage.query_rows(since, until, bucket, &group)).await
    }

    async fn key_usage(&self, key_id: &str) -> Result<KeyUsage, StoreError> {
        // One point read from sled's page cache.
        Ok(read(self.db.trees()?.usage_keys.get(key_id.as_bytes())?))
    }

    async fn prune(&self, before: u64) -> Result<usize, StoreError> {
        let usage = self.clone();
        blocking(move || usage.prune_rows(before)).await
    }
}
