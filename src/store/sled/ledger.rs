//! The ledger in sled: one transaction over the log records and the usage roll-ups.

use super::blocking;
use super::database::Database;
use super::logs::SledLogs;
use super::usage::{encode, read};
use crate::store::error::StoreError;
use crate::store::ledger::{Ledger, LedgerBatch};
use crate::store::logs::LogEntry;
use crate::store::usage::{KeyUsage, Merged, Totals};
use std::sync::Arc;

#[derive(Clone)]
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

#[async_trait::async_trait]
impl Ledger for SledLedger {
    fn batch(&self, entries: Vec<LogEntry>) -> LedgerBatch {
        LedgerBatch {
            id: self.logs.batch_id(&entries),
            entries: entries.into(),
        }
    }

    async fn write(&self, batch: &LedgerBatch) -> Result<bool, StoreError> {
        let (ledger, batch) = (self.clone(), batch.clone());
        blocking(move || ledger.write_now(&batch)).await
    }
}

impl SledLedger {
    /// One sled transaction over the log records and the usage roll-ups.
    fn write_now(&self, batch: &LedgerBatch) -> Result<bool, StoreError> {
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
