//! The request log in sled: the tree `log_batches`.

use super::blocking;
use super::database::Database;
use crate::store::error::StoreError;
use crate::store::ledger::BatchId;
use crate::store::logs::{
    decode_cursor, encode_cursor, LogEntry, LogFilter, LogPage, LogStore, MAX_SCAN,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A record is closed once its JSON reaches this size. sled splits a leaf beyond 16 values, so
/// a leaf of records stays near 16 × this even if it did not compress, under the blob limit of
/// a quarter segment ([`super::SEGMENT_BYTES`]).
const RECORD_BYTES: usize = 24 * 1024;

/// The first byte of a compressed record; a plain JSON record starts with `[`.
const LZ4_JSON: u8 = 1;

/// Entries are stored many to a record: one sled insert for many requests, which is what
/// keeps logging cheap at high request rates (sled copies a leaf on every insert). A record is
/// the JSON array of its entries, LZ4-compressed: log entries repeat themselves, and sled's
/// memory grows with the bytes written, well beyond its cache size (uncompressed, the log was
/// most of the gateway's memory under load). A record also stays under `RECORD_BYTES`:
/// sled keeps larger pages as blobs, and its cache counts a blob by its pointer, not its size.
///
/// Key: write time in ms (8 bytes) ++ sequence (8) ++ entry count (4), all big-endian, so
/// records sort by write time and the count is known without reading the value. A request is
/// written after it completes, so its `at_ms` is at or before its record's write time.
pub struct SledLogs {
    /// The tree `log_batches`.
    db: Arc<Database>,
    seq: std::sync::atomic::AtomicU64,
    count: AtomicUsize,
    /// Serialises writers, so `count` follows the tree (and is recounted alone after a reopen).
    write_lock: Mutex<()>,
}

/// A stored record: its key and its (compressed) value.
pub(super) type Record = (Vec<u8>, Vec<u8>);

fn batch_key(write_ms: u64, seq: u64, n: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(20);
    k.extend_from_slice(&write_ms.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn key_parts(key: &[u8]) -> (u64, u64, u32) {
    let num = |r: std::ops::Range<usize>| key.get(r).and_then(|b| b.try_into().ok());
    (
        num(0..8).map(u64::from_be_bytes).unwrap_or(0),
        num(8..16).map(u64::from_be_bytes).unwrap_or(0),
        key.get(16..20)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .unwrap_or(0),
    )
}

/// How many entries the records in `tree` hold, and the next free sequence number.
fn scan(tree: &sled::Tree) -> Result<(usize, u64), StoreError> {
    let mut count = 0usize;
    let mut seq = 0u64;
    for key in tree.iter().keys() {
        let (_, s, n) = key_parts(&key?);
        count += n as usize;
        seq = seq.max(s + 1);
    }
    Ok((count, seq))
}

impl SledLogs {
    pub fn open(db: &Arc<Database>) -> Result<Arc<Self>, StoreError> {
        let (count, seq) = scan(&db.trees()?.log_batches)?;
        let logs = Arc::new(SledLogs {
            db: db.clone(),
            seq: std::sync::atomic::AtomicU64::new(seq),
            count: AtomicUsize::new(count),
            write_lock: Mutex::new(()),
        });
        // A reopened database holds what reached the disk: count that. Sequence numbers only
        // go up, so a batch given its id before the reopen still writes to the same keys.
        let weak = Arc::downgrade(&logs);
        db.on_reopen(move || {
            if let Some(logs) = weak.upgrade() {
                let _guard = logs.lock();
                let (count, seq) = scan(&logs.db.trees()?.log_batches)?;
                logs.count.store(count, Ordering::Relaxed);
                logs.seq.fetch_max(seq, Ordering::Relaxed);
            }
            Ok(())
        });
        Ok(logs)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An id for a batch of these entries, written after they completed.
    pub fn batch_id(&self, entries: &[LogEntry]) -> BatchId {
        BatchId::next(entries, &self.seq)
    }

    /// The records (key, value) of a batch: always the same for the same id and entries.
    pub(super) fn records(id: BatchId, entries: &[LogEntry]) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        let mut record = Vec::with_capacity(RECORD_BYTES + 4096);
        let mut in_record = 0u32;
        for (i, entry) in entries.iter().enumerate() {
            record.push(if in_record == 0 { b'[' } else { b',' });
            serde_json::to_writer(&mut record, entry)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            in_record += 1;
            if record.len() >= RECORD_BYTES || i + 1 == entries.len() {
                record.push(b']');
                let seq = id.seq + out.len() as u64;
                out.push((batch_key(id.write_ms, seq, in_record), Self::pack(&record)));
                record.clear();
                in_record = 0;
            }
        }
        Ok(out)
    }

    /// Notes entries written by someone else (the ledger), for pruning by count.
    pub(super) fn counted(&self, entries: usize) {
        self.count.fetch_add(entries, Ordering::Relaxed);
    }

    /// A record's entries: LZ4-compressed JSON, or plain JSON as earlier versions wrote it.
    fn read(value: &[u8]) -> Vec<LogEntry> {
        match value.split_first() {
            Some((&LZ4_JSON, packed)) => lz4_flex::decompress_size_prepended(packed)
                .ok()
                .and_then(|json| serde_json::from_slice(&json).ok())
                .unwrap_or_default(),
            _ => serde_json::from_slice(value).unwrap_or_default(),
        }
    }

    /// `LZ4_JSON` ++ the LZ4 block (with its size) of the JSON array.
    fn pack(json: &[u8]) -> Vec<u8> {
        let mut value = Vec::with_capacity(json.len() / 4 + 16);
        value.push(LZ4_JSON);
        value.extend_from_slice(&lz4_flex::compress_prepend_size(json));
        value
    }

    fn remove(&self, trees: &super::database::Trees, key: &[u8]) -> Result<usize, StoreError> {
        if trees.log_batches.remove(key)?.is_some() {
            let n = key_parts(key).2 as usize;
            self.count.fetch_sub(n, Ordering::Relaxed);
            return Ok(n);
        }
        Ok(0)
    }
}

impl SledLogs {
    /// Writes entries alone (no usage): for tests; the gateway writes through the ledger.
    #[cfg(test)]
    pub fn append(&self, entries: &[LogEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.db.writable()?;
        let records = Self::records(self.batch_id(entries), entries)?;
        let _guard = self.lock();
        let trees = self.db.trees()?;
        for (key, value) in records {
            trees.log_batches.insert(key, value)?;
        }
        self.counted(entries.len());
        Ok(())
    }

    fn query(
        &self,
        filter: &LogFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<LogPage, StoreError> {
        let (upper, mut start) = match cursor {
            Some(c) => {
                let (key, next) = decode_cursor(c)?;
                // Include the cursor's own record: reading resumes inside it.
                let mut upper = key.clone();
                upper.push(0);
                (upper, Some((key, next)))
            }
            None => (vec![0xff; 21], None),
        };
        // Entries at or after `since` were written at or after it.
        let lower = filter.since_ms.unwrap_or(0).to_be_bytes().to_vec();
        let mut data = Vec::new();
        let mut scanned = 0usize;
        let trees = self.db.trees()?;
        for item in trees.log_batches.range(lower..upper).rev() {
            let (key, value) = item?;
            let entries = Self::read(&value);
            let from = match start.take() {
                Some((k, next)) if k == key.as_ref() => next.min(entries.len()),
                _ => entries.len(),
            };
            for index in (0..from).rev() {
                scanned += 1;
                let entry = &entries[index];
                if !filter.matches(entry) {
                    if scanned >= MAX_SCAN {
                        return Ok(LogPage {
                            data,
                            next_cursor: Some(encode_cursor(&key, index)),
                        });
                    }
                    continue;
                }
                if data.len() == limit {
                    return Ok(LogPage {
                        data,
                        next_cursor: Some(encode_cursor(&key, index + 1)),
                    });
                }
                data.push(entry.clone());
            }
        }
        Ok(LogPage {
            data,
            next_cursor: None,
        })
    }

    fn get(&self, request_id: &str) -> Result<Option<LogEntry>, StoreError> {
        // Admin detail lookups are rare; a newest-first scan keeps writes to one insert.
        let mut scanned = 0usize;
        for item in self.db.trees()?.log_batches.iter().rev() {
            let (_, value) = item?;
            let entries = Self::read(&value);
            scanned += entries.len();
            if let Some(found) = entries
                .into_iter()
                .rev()
                .find(|e| e.request_id == request_id)
            {
                return Ok(Some(found));
            }
            if scanned >= MAX_SCAN {
                break;
            }
        }
        Ok(None)
    }

    fn prune(&self, now_ms: u64, max_age_ms: u64, max_entries: usize) -> Result<usize, StoreError> {
        self.db.writable()?;
        let _guard = self.lock();
        let trees = self.db.trees()?;
        let mut removed = 0;
        let cutoff = now_ms.saturating_sub(max_age_ms).to_be_bytes();
        let old: Vec<sled::IVec> = trees
            .log_batches
            .range(..cutoff.to_vec())
            .keys()
            .collect::<Result<_, _>>()?;
        for key in old {
            removed += self.remove(&trees, &key)?;
        }
        // Whole records go, oldest first, until the count is within bounds.
        while self.count.load(Ordering::Relaxed) > max_entries {
            let Some((key, _)) = trees.log_batches.first()? else {
                break;
            };
            let n = self.remove(&trees, &key)?;
            if n == 0 {
                break;
            }
            removed += n;
        }
        Ok(removed)
    }
}

/// The log store as the gateway reaches it: scans run on the blocking pool.
#[derive(Clone)]
pub struct SledLogStore(pub Arc<SledLogs>);

#[async_trait::async_trait]
impl LogStore for SledLogStore {
    async fn query(
        &self,
        filter: &LogFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<LogPage, StoreError> {
        let (logs, filter, cursor) = (self.0.clone(), filter.clone(), cursor.map(str::to_string));
        blocking(move || logs.query(&filter, limit, cursor.as_deref())).await
    }

    async fn get(&self, request_id: &str) -> Result<Option<LogEntry>, StoreError> {
        let (logs, id) = (self.0.clone(), request_id.to_string());
        blocking(move || logs.get(&id)).await
    }

    async fn prune(
        &self,
        now_ms: u64,
        max_age_ms: u64,
        max_entries: usize,
    ) -> Result<usize, StoreError> {
        let logs = self.0.clone();
        blocking(move || logs.prune(now_ms, max_age_ms, max_entries)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log store in a fresh sled folder; the folder lives as long as the first value.
    fn open_logs() -> (tempfile::TempDir, Arc<Database>, Arc<SledLogs>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        let logs = SledLogs::open(&db).unwrap();
        (dir, db, logs)
    }

    fn entry(i: u64, status: u16, key: &str) -> LogEntry {
        LogEntry {
            request_id: format!("req{i}"),
            at_ms: 1000 + i,
            key_id: key.into(),
            requested_model: "echo".into(),
            provider: Some("mock".into()),
            model: Some("echo".into()),
            status,
            ..LogEntry::default()
        }
    }

    #[test]
    fn pages_filters_and_prunes() {
        let (_dir, _db, logs) = open_logs();
        let entries: Vec<LogEntry> = (0..10)
            .map(|i| LogEntry {
                client_request_id: (i == 7).then(|| "client-7".into()),
                ..entry(
                    i,
                    if i % 3 == 0 { 500 } else { 200 },
                    if i < 5 { "a" } else { "b" },
                )
            })
            .collect();
        // Several records of several entries, as the writer makes them.
        logs.append(&entries[..3]).unwrap();
        logs.append(&entries[3..4]).unwrap();
        logs.append(&entries[4..]).unwrap();

        let page = logs.query(&LogFilter::default(), 4, None).unwrap();
        let ids: Vec<&str> = page.data.iter().map(|e| e.request_id.as_str()).collect();
        assert_eq!(ids, vec!["req9", "req8", "req7", "req6"]);
        let next = logs
            .query(&LogFilter::default(), 4, page.next_cursor.as_deref())
            .unwrap();
        assert_eq!(next.data[0].request_id, "req5");

        let errors = LogFilter {
            status: Some("5xx".into()),
            key_id: Some("b".into()),
            ..LogFilter::default()
        };
        let ids: Vec<String> = logs
            .query(&errors, 10, None)
            .unwrap()
            .data
            .into_iter()
            .map(|e| e.request_id)
            .collect();
        assert_eq!(ids, vec!["req9", "req6"]);
        let by_model = LogFilter {
            model: Some("mock/echo".into()),
            ..LogFilter::default()
        };
        assert_eq!(logs.query(&by_model, 100, None).unwrap().data.len(), 10);

        // Pages cross records: 4 + 4 + 2, nothing twice, nothing lost.
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = logs
                .query(&LogFilter::default(), 4, cursor.as_deref())
                .unwrap();
            seen.extend(page.data.into_iter().map(|e| e.request_id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let expected: Vec<String> = (0..10).rev().map(|i| format!("req{i}")).collect();
        assert_eq!(seen, expected);

        assert_eq!(logs.get("req3").unwrap().unwrap().status, 500);
        // By id: the gateway's, or the one the client sent.
        let by_id = |id: &str| {
            let filter = LogFilter {
                request_id: Some(id.into()),
                ..LogFilter::default()
            };
            logs.query(&filter, 10, None)
                .unwrap()
                .data
                .into_iter()
                .map(|e| e.request_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(by_id("req4"), vec!["req4"]);
        assert_eq!(by_id("client-7"), vec!["req7"]);
        assert_eq!(by_id("req3x"), Vec::<String>::new());
        let now = crate::clock::now_ms();
        assert_eq!(
            logs.prune(now, 86_400_000, 7).unwrap(),
            3,
            "the oldest record goes whole"
        );
        assert!(logs.get("req0").unwrap().is_none());
        assert!(logs.get("req3").unwrap().is_some());
        assert_eq!(
            logs.prune(now + 2 * 86_400_000, 86_400_000, 100).unwrap(),
            7,
            "then by age"
        );
        assert!(logs
            .query(&LogFilter::default(), 10, None)
            .unwrap()
            .data
            .is_empty());
    }

    #[test]
    fn a_big_batch_is_split_into_records_below_the_blob_size() {
        let (_dir, db, logs) = open_logs();
        // About 1 KiB each: 1000 of them are a megabyte, a few times a blob's size.
        let entries: Vec<LogEntry> = (0..1000)
            .map(|i| LogEntry {
                error: Some("x".repeat(900)),
                ..entry(i, 200, "a")
            })
            .collect();
        logs.append(&entries).unwrap();

        let records: Vec<(sled::IVec, sled::IVec)> = db
            .trees()
            .unwrap()
            .log_batches
            .iter()
            .map(|r| r.unwrap())
            .collect();
        assert!(records.len() > 10, "{} records", records.len());
        for (key, value) in &records {
            assert_eq!(value[0], LZ4_JSON);
            assert!(value.len() < RECORD_BYTES / 4, "{} bytes", value.len());
            assert_eq!(key_parts(key).2 as usize, SledLogs::read(value).len());
        }
        // All there, newest first, and counted once.
        let page = logs.query(&LogFilter::default(), 1000, None).unwrap();
        let ids: Vec<u64> = page
            .data
            .iter()
            .map(|e| e.request_id[3..].parse().unwrap())
            .collect();
        assert_eq!(ids, (0..1000).rev().collect::<Vec<u64>>());
        assert_eq!(logs.count.load(Ordering::Relaxed), 1000);
        drop(logs);
        assert_eq!(
            SledLogs::open(&db).unwrap().count.load(Ordering::Relaxed),
            1000
        );
    }

    #[test]
    fn records_written_uncompressed_are_still_read() {
        let (_dir, db, logs) = open_logs();
        let old = serde_json::to_vec(&[entry(1, 200, "a"), entry(2, 500, "a")]).unwrap();
        db.trees()
            .unwrap()
            .log_batches
            .insert(batch_key(1002, 0, 2), old)
            .unwrap();
        logs.append(&[entry(3, 200, "b")]).unwrap();
        let ids: Vec<String> = logs
            .query(&LogFilter::default(), 10, None)
            .unwrap()
            .data
            .into_iter()
            .map(|e| e.request_id)
            .collect();
        assert_eq!(ids, vec!["req3", "req2", "req1"]);
    }
}
