//! Request log entries and the usage they add up to, written together: after a crash or a
//! write failure a batch is stored whole or not at all. A batch keeps the id it was given when
//! made, so writing it again (after a failure that may or may not have kept it) finds it and
//! does nothing: usage is never counted twice.

use super::error::StoreError;
use super::logs::LogEntry;

/// Where a batch of entries goes: its write time and the first of the sequence numbers kept
/// for it, one per entry (a record holds one entry or more). The same batch always gets the
/// same record keys, so writing it again after a failure finds what is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchId {
    pub write_ms: u64,
    pub seq: u64,
}

impl BatchId {
    /// The id of a batch of these entries, written after they completed: its write time (no
    /// earlier than any entry's arrival) and the next sequence numbers from `seq`, one per
    /// entry.
    pub fn next(entries: &[LogEntry], seq: &std::sync::atomic::AtomicU64) -> BatchId {
        let write_ms = entries
            .iter()
            .map(|e| e.at_ms)
            .max()
            .unwrap_or(0)
            .max(crate::clock::now_ms());
        let seq = seq.fetch_add(
            entries.len().max(1) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        BatchId { write_ms, seq }
    }
}

/// Entries to write together, with the id that fixes where their records go.
#[derive(Debug, Clone)]
pub struct LedgerBatch {
    pub id: BatchId,
    /// Shared, so a backend that moves the batch to a blocking thread clones a pointer, not
    /// every entry.
    pub entries: std::sync::Arc<[LogEntry]>,
}

#[async_trait::async_trait]
pub trait Ledger: Send + Sync {
    /// A batch of these entries, not yet written.
    fn batch(&self, entries: Vec<LogEntry>) -> LedgerBatch;
    /// Writes the entries to the request log and adds them to usage, all or nothing, in one
    /// round trip. A batch already written is left as it is; returns whether this call wrote
    /// it.
    async fn write(&self, batch: &LedgerBatch) -> Result<bool, StoreError>;
}
