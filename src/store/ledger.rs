//! Request log entries and the usage they add up to, written together.
//!
//! One batch is one sled transaction over the log records and the usage roll-ups: after a
//! crash or a write failure it is on disk whole or not at all. A batch keeps the record keys it
//! was given when made, so writing it again (after a reopen that may or may not have kept it)
//! finds its first record and does nothing: usage is never counted twice.

use super::logs::{BatchId, LogEntry, SledLogs};
use super::usage::{encode, read, KeyUsage, Merged, Totals};
use super::{Database, StoreError};
use std::sync::Arc;

/// Entries to write together, with the id that fixes where their records go.
#[derive(Debug, Clone)]
pub struct LedgerBatch {
    pub id: BatchId,
    pub entries: Vec<LogEntry>,
}

pub trait Ledger: Send + Sync {
    /// A batch of these entries, not yet written.
    fn batch(&self, entries: Vec<LogEntry>) -> LedgerBatch;
    /// Writes the entries to the request log and adds them to usage, all or nothing. A batch
    /// already written is left as it is; returns whether this call wrote it.
    fn write(&self, batch: &LedgerBatch) -> Result<bool, StoreError>;
}

pub struct SledLedger {
    db: Arc<Database>,
    logs: Arc<SledLogs>,
}

impl SledLedger {
    pub fn new(db: &Arc<Database>, logs: Arc<SledLogs>) -> SledLedger {
        SledLedger {
            db: db.clone(),
            logs,
        }
    }
}

impl Ledger for SledLedger {
    fn batch(&self, entries: Vec<LogEntry>) -> LedgerBatch {
        LedgerBatch {
            id: self.logs.batch_id(&entries),
            entries,
        }
    }

    fn write(&self, batch: &LedgerBatch) -> Result<bool, StoreError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
        if batch.entries.is_empty() {
            return Ok(false);
        }
        self.db.writable()?;
        // Encoded and merged before the transaction: it holds sled's global write lock.
        let records = SledLogs::records(batch.id, &batch.entries)?;
        let merged = Merged::of(&batch.entries);
        let rows: Vec<(&[u8], &Totals)> = merged.rows.iter().map(|(k, t)| (&k[..], t)).collect();
        let keys: Vec<(&[u8], &KeyUsage)> =
            merged.keys.iter().map(|(k, u)| (k.as_bytes(), u)).collect();
        let first = records[0].0.clone();

        let _guard = self.logs.lock();
        let trees = self.db.trees()?;
        let wrote = (&trees.log_batches, &trees.usage_hours, &trees.usage_keys)
            .transaction(|(log, hours, key_usage)| {
                if log.get(&first)?.is_some() {
                    return Ok(false);
                }
                for (key, value) in &records {
                    log.insert(key.as_slice(), value.as_slice())?;
                }
                for (key, add) in &rows {
                    let mut current: Totals = read(hours.get(key)?);
                    current.add(add);
                    hours.insert(*key, encode(&current))?;
                }
                for (key, add) in &keys {
                    let mut current: KeyUsage = read(key_usage.get(key)?);
                    Merged::add_key(&mut current, add);
                    key_usage.insert(*key, encode(&current))?;
                }
                Ok::<_, ConflictableTransactionError<()>>(true)
            })
            .map_err(|e: TransactionError<()>| match e {
                TransactionError::Storage(e) => e.into(),
                TransactionError::Abort(()) => StoreError::Corrupt("ledger write aborted".into()),
            })?;
        if wrote {
            self.logs.counted(batch.entries.len());
        }
        Ok(wrote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::logs::LogFilter;
    use crate::store::usage::{Bucket, GroupBy};
    use crate::store::Store;

    fn entry(i: u64) -> LogEntry {
        LogEntry {
            request_id: format!("r{i}"),
            at_ms: 7_200_000 + i,
            key_id: "k".into(),
            provider: Some("mock".into()),
            model: Some("echo".into()),
            status: 200,
            prompt_tokens: 2,
            completion_tokens: 3,
            total_tokens: 5,
            ..LogEntry::default()
        }
    }

    #[test]
    fn a_batch_written_twice_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let batch = store.ledger.batch((0..3).map(entry).collect());
        assert!(store.ledger.write(&batch).unwrap());
        assert!(!store.ledger.write(&batch).unwrap(), "already there");
        let other = store.ledger.batch(vec![entry(3)]);
        assert!(store.ledger.write(&other).unwrap());

        let usage = store.usage.key_usage("k").unwrap();
        assert_eq!(usage.totals.requests, 4);
        assert_eq!(usage.totals.total_tokens, 20);
        let rows = store
            .usage
            .query(0, u64::MAX / 2, Bucket::Hour, &GroupBy::None)
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].totals.requests, 4);
        let page = store.logs.query(&LogFilter::default(), 10, None).unwrap();
        let ids: Vec<&str> = page.data.iter().map(|e| e.request_id.as_str()).collect();
        assert_eq!(ids, vec!["r3", "r2", "r1", "r0"]);
    }
}
