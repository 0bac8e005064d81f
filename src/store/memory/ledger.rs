//! The request log, usage roll-ups and the ledger that writes both, in memory only: one
//! structure behind one lock, so a batch lands in both at once as it does in sled.

use crate::store::error::StoreError;
use crate::store::ledger::{BatchId, Ledger, LedgerBatch};
use crate::store::logs::{
    decode_cursor, encode_cursor, LogEntry, LogFilter, LogPage, LogStore, MAX_SCAN,
};
use crate::store::portable::{usage_row_record, Import, Record};
use crate::store::usage::{
    first_kept_hour, regroup, Bucket, GroupBy, KeyUsage, Merged, Totals, UsageRow, UsageStore,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub struct MemoryLedger {
    seq: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Sequence number → (the batch's write time, the entry), oldest first.
    log: BTreeMap<u64, (u64, LogEntry)>,
    /// Hourly rows, keyed as the usage module keys them (hour ++ dimensions).
    hours: BTreeMap<Vec<u8>, Totals>,
    keys: HashMap<String, KeyUsage>,
}

impl MemoryLedger {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The usage rows, then keys' usage, as records: by row key, then by key id.
    pub(super) fn usage_records(&self) -> Vec<Record> {
        let state = self.lock();
        let mut out: Vec<Record> = state
            .hours
            .iter()
            .map(|(row, totals)| usage_row_record(row, *totals))
            .collect();
        let mut keys: Vec<(&String, &KeyUsage)> = state.keys.iter().collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.extend(keys.into_iter().map(|(key_id, usage)| Record::KeyUsage {
            key_id: key_id.clone(),
            usage: *usage,
        }));
        out
    }

    /// Writes imported usage rows and keys' usage, each replacing the one with its key.
    pub(super) fn put_usage(&self, import: &Import) {
        let mut state = self.lock();
        for (row, totals) in &import.usage_rows {
            state.hours.insert(row.clone(), *totals);
        }
        for (key_id, usage) in &import.key_usage {
            state.keys.insert(key_id.clone(), *usage);
        }
    }
}

#[async_trait::async_trait]
impl Ledger for MemoryLedger {
    fn batch(&self, entries: Vec<LogEntry>) -> LedgerBatch {
        LedgerBatch {
            id: BatchId::next(&entries, &self.seq),
            entries: entries.into(),
        }
    }

    async fn write(&self, batch: &LedgerBatch) -> Result<bool, StoreError> {
        if batch.entries.is_empty() {
            return Ok(false);
        }
        let mut state = self.lock();
        if state.log.contains_key(&batch.id.seq) {
            return Ok(false);
        }
        for (i, entry) in batch.entries.iter().enumerate() {
            state
                .log
                .insert(batch.id.seq + i as u64, (batch.id.write_ms, entry.clone()));
        }
        let merged = Merged::of(&batch.entries);
        for (key, add) in merged.rows {
            state.hours.entry(key).or_default().add(&add);
        }
        for (key_id, add) in merged.keys {
            Merged::add_key(state.keys.entry(key_id).or_default(), &add);
        }
        Ok(true)
    }
}

#[async_trait::async_trait]
impl LogStore for MemoryLedger {
    async fn query(
        &self,
        filter: &LogFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<LogPage, StoreError> {
        // The cursor's position is the sequence number of the next entry to read.
        let upper = match cursor {
            Some(c) => {
                let (position, _) = decode_cursor(c)?;
                let position: [u8; 8] = position
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("bad cursor".into()))?;
                u64::from_be_bytes(position)
            }
            None => u64::MAX,
        };
        let state = self.lock();
        let mut data = Vec::new();
        for (scanned, (seq, (_, entry))) in state.log.range(..=upper).rev().enumerate() {
            if data.len() == limit || scanned >= MAX_SCAN {
                return Ok(LogPage {
                    data,
                    next_cursor: Some(encode_cursor(&seq.to_be_bytes(), 0)),
                });
            }
            if filter.matches(entry) {
                data.push(entry.clone());
            }
        }
        Ok(LogPage {
            data,
            next_cursor: None,
        })
    }

    async fn get(&self, request_id: &str) -> Result<Option<LogEntry>, StoreError> {
        Ok(self
            .lock()
            .log
            .values()
            .rev()
            .find(|(_, e)| e.request_id == request_id)
            .map(|(_, e)| e.clone()))
    }

    async fn prune(
        &self,
        now_ms: u64,
        max_age_ms: u64,
        max_entries: usize,
    ) -> Result<usize, StoreError> {
        let cutoff = now_ms.saturating_sub(max_age_ms);
        let mut state = self.lock();
        let before = state.log.len();
        state.log.retain(|_, (write_ms, _)| *write_ms >= cutoff);
        while state.log.len() > max_entries {
            state.log.pop_first();
        }
        Ok(before - state.log.len())
    }
}

#[async_trait::async_trait]
impl UsageStore for MemoryLedger {
    async fn query(
        &self,
        since: u64,
        until: u64,
        bucket: Bucket,
        group: &GroupBy,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let from = (since / 3600 * 3600).to_be_bytes().to_vec();
        let state = self.lock();
        let rows = state
            .hours
            .range(from..until.to_be_bytes().to_vec())
            .map(|(k, t)| (k.as_slice(), *t));
        Ok(regroup(rows, bucket, group))
    }

    async fn key_usage(&self, key_id: &str) -> Result<KeyUsage, StoreError> {
        Ok(self.lock().keys.get(key_id).copied().unwrap_or_default())
    }

    async fn prune(&self, before: u64) -> Result<usize, StoreError> {
        let Some(first_kept) = first_kept_hour(before) else {
            return Ok(0);
        };
        let mut state = self.lock();
        let kept = state.hours.split_off(first_kept.to_be_bytes().as_slice());
        let removed = state.hours.len();
        state.hours = kept;
        Ok(removed)
    }
}
