//! A store's state as records any backend can write: what `switchboard export` writes out
//! (as JSON lines, `crate::backup`) and `switchboard import` reads in, to keep a backup or to
//! move a deployment from one backend to another.
//!
//! An export carries keys (as their secrets' hashes, never a secret), teams, split assignments,
//! counters and usage. It leaves out, on purpose, what is rebuilt or ends with the process: the
//! response cache (refilled by traffic), the request log (bounded and pruned; usage keeps its
//! figures), and reservations and requests in flight (their requests ended with the process).

use super::error::StoreError;
use super::keys::{sort_listed, KeyRecord};
use super::teams::TeamRecord;
use super::usage::{KeyUsage, Totals};
use super::windows::Locked;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A key: its secret's SHA-256 (hex), never the secret, and its record. A revoked key has
    /// no secret left (revoking forgets it): its `hash` is empty.
    Key {
        hash: String,
        record: KeyRecord,
    },
    Team {
        record: TeamRecord,
    },
    Assignment {
        split: String,
        sticky_id: String,
        variant: String,
    },
    /// A counter's window: requests, tokens or micro-USD used (reservations in flight are not exported).
    Counter {
        name: String,
        window_secs: u64,
        start: u64,
        count: u64,
    },
    /// An hourly usage roll-up row: its key as the usage module makes it (hex), and its totals.
    UsageRow {
        row: String,
        totals: Totals,
    },
    KeyUsage {
        key_id: String,
        usage: KeyUsage,
    },
}

/// Moving the state out and in, the same for every backend.
#[async_trait::async_trait]
pub trait Portable: Send + Sync {
    /// Everything the store holds that an export carries, keys first (oldest first), then
    /// teams, assignments, counters, usage rows and keys' usage, each in a stable order: two
    /// stores holding the same state export the same records.
    async fn export(&self) -> Result<Vec<Record>, StoreError>;
    /// Writes the records, replacing what has the same identity (key id, and the secret hash
    /// that names it; team id; assignment; counter name+window; usage row; key id). Durable
    /// when it returns. The in-memory indexes (keys' KeyIndex, teams' TeamIndex, assignment
    /// memory, counter windows) reflect the import at once. Records are checked first
    /// ([`Import::of`]): an invalid one fails the call before anything is written.
    async fn import(&self, records: Vec<Record>) -> Result<ImportCounts, StoreError>;
}

/// How many of each kind an import wrote (or an export holds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    pub keys: usize,
    pub teams: usize,
    pub assignments: usize,
    pub counters: usize,
    pub usage_rows: usize,
    pub key_usage: usize,
}

impl ImportCounts {
    /// What these records hold; a key is counted once however many secret hashes it has.
    pub fn of(records: &[Record]) -> ImportCounts {
        let mut counts = ImportCounts::default();
        let mut keys = BTreeSet::new();
        for record in records {
            match record {
                Record::Key { record, .. } => {
                    keys.insert(record.id.as_str());
                }
                Record::Team { .. } => counts.teams += 1,
                Record::Assignment { .. } => counts.assignments += 1,
                Record::Counter { .. } => counts.counters += 1,
                Record::UsageRow { .. } => counts.usage_rows += 1,
                Record::KeyUsage { .. } => counts.key_usage += 1,
            }
        }
        counts.keys = keys.len();
        counts
    }
}

impl std::fmt::Display for ImportCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |count: usize, one: &str, many: &str| {
            format!("{count} {}", if count == 1 { one } else { many })
        };
        write!(
            f,
            "{}, {}, {}, {}, {}, {}",
            n(self.keys, "key", "keys"),
            n(self.teams, "team", "teams"),
            n(self.assignments, "assignment", "assignments"),
            n(self.counters, "counter", "counters"),
            n(self.usage_rows, "usage row", "usage rows"),
            n(self.key_usage, "key usage total", "key usage totals"),
        )
    }
}

/// Why a record cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRecord {
    #[error("a key's `hash` must be its secret's SHA-256 in hex (64 digits), or empty for a key with no secret")]
    Hash,
    #[error("`{0}` must not be empty")]
    Empty(&'static str),
    #[error("an assignment's `split` must not hold U+001F (it separates the split from the sticky id where assignments are kept)")]
    Split,
    #[error("a usage row's `row` must be hex: 8 bytes of hour, then its dimensions")]
    Row,
}

impl From<InvalidRecord> for StoreError {
    fn from(e: InvalidRecord) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

impl Record {
    /// Whether a backend can write this record: what `switchboard import` checks of every
    /// line before it writes any.
    pub fn check(&self) -> Result<(), InvalidRecord> {
        match self {
            Record::Key { hash, record } => {
                decode_hash(hash)?;
                non_empty(&record.id, "record.id")
            }
            Record::Team { record } => non_empty(&record.id, "record.id"),
            Record::Assignment { split, .. } if split.contains('\u{1f}') => {
                Err(InvalidRecord::Split)
            }
            Record::UsageRow { row, .. } => decode_row(row).map(drop),
            Record::Assignment { .. } | Record::Counter { .. } | Record::KeyUsage { .. } => Ok(()),
        }
    }
}

fn non_empty(value: &str, field: &'static str) -> Result<(), InvalidRecord> {
    if value.is_empty() {
        return Err(InvalidRecord::Empty(field));
    }
    Ok(())
}

/// A key's secret hash; `None` for the empty hash of a key with no secret (a revoked one).
fn decode_hash(hash: &str) -> Result<Option<[u8; 32]>, InvalidRecord> {
    if hash.is_empty() {
        return Ok(None);
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hash, &mut bytes).map_err(|_| InvalidRecord::Hash)?;
    Ok(Some(bytes))
}

fn decode_row(row: &str) -> Result<Vec<u8>, InvalidRecord> {
    match hex::decode(row) {
        Ok(bytes) if bytes.len() >= 8 => Ok(bytes),
        _ => Err(InvalidRecord::Row),
    }
}

/// An import's records checked, decoded and sorted by kind: what a backend writes. Of records
/// with the same identity, the last one given counts.
#[derive(Debug, Default)]
pub struct Import {
    /// Key records by id.
    pub keys: BTreeMap<String, KeyRecord>,
    /// Secret hash → the id of its key. An imported key's hashes replace the ones it had.
    pub hashes: BTreeMap<[u8; 32], String>,
    pub teams: BTreeMap<String, TeamRecord>,
    /// (split, sticky id) → variant.
    pub assignments: BTreeMap<(String, String), String>,
    /// (name, window_secs) → (start, count).
    pub counters: BTreeMap<(String, u64), (u64, u64)>,
    /// Usage row keys (as `store::usage` makes them) → totals.
    pub usage_rows: BTreeMap<Vec<u8>, Totals>,
    pub key_usage: BTreeMap<String, KeyUsage>,
}

impl Import {
    pub fn of(records: Vec<Record>) -> Result<Import, InvalidRecord> {
        let mut import = Import::default();
        for record in records {
            record.check()?;
            match record {
                Record::Key { hash, record } => {
                    if let Some(hash) = decode_hash(&hash)? {
                        import.hashes.insert(hash, record.id.clone());
                    }
                    import.keys.insert(record.id.clone(), record);
                }
                Record::Team { record } => {
                    import.teams.insert(record.id.clone(), record);
                }
                Record::Assignment {
                    split,
                    sticky_id,
                    variant,
                } => {
                    import.assignments.insert((split, sticky_id), variant);
                }
                Record::Counter {
                    name,
                    window_secs,
                    start,
                    count,
                } => {
                    import.counters.insert((name, window_secs), (start, count));
                }
                Record::UsageRow { row, totals } => {
                    import.usage_rows.insert(decode_row(&row)?, totals);
                }
                Record::KeyUsage { key_id, usage } => {
                    import.key_usage.insert(key_id, usage);
                }
            }
        }
        Ok(import)
    }

    /// How many of each kind this import writes.
    pub fn counts(&self) -> ImportCounts {
        ImportCounts {
            keys: self.keys.len(),
            teams: self.teams.len(),
            assignments: self.assignments.len(),
            counters: self.counters.len(),
            usage_rows: self.usage_rows.len(),
            key_usage: self.key_usage.len(),
        }
    }

    /// The counters' windows set as imported (see [`Locked::restore`]).
    pub fn restore_counters(&self, windows: &mut Locked<'_>) {
        for ((name, window_secs), (start, count)) in &self.counters {
            windows.restore(name, *window_secs, *start, *count);
        }
    }
}

/// A key's record and the hashes of the secrets that name it (none: a revoked key).
pub type KeyWithHashes = (KeyRecord, Vec<[u8; 32]>);

/// Keys with their secret hashes as records, oldest key first: one record per hash, or one
/// with an empty hash for a key that has none (a revoked key).
pub fn key_records(keys: Vec<KeyWithHashes>) -> Vec<Record> {
    let (mut records, mut hashes): (Vec<KeyRecord>, BTreeMap<String, Vec<[u8; 32]>>) =
        (Vec::with_capacity(keys.len()), BTreeMap::new());
    for (record, mut of_key) in keys {
        of_key.sort_unstable();
        hashes.insert(record.id.clone(), of_key);
        records.push(record);
    }
    sort_listed(&mut records);
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        match hashes.remove(&record.id).unwrap_or_default().as_slice() {
            [] => out.push(Record::Key {
                hash: String::new(),
                record,
            }),
            of_key => {
                for hash in of_key {
                    out.push(Record::Key {
                        hash: hex::encode(hash),
                        record: record.clone(),
                    });
                }
            }
        }
    }
    out
}

/// An assignment as stored (split ++ 0x1f ++ sticky id → variant) as a record; `None` for a
/// stored key without the separator (not one `store::assignments::key` made).
pub fn assignment_record(stored: &[u8], variant: &[u8]) -> Option<Record> {
    let at = stored.iter().position(|b| *b == 0x1f)?;
    Some(Record::Assignment {
        split: String::from_utf8_lossy(&stored[..at]).into_owned(),
        sticky_id: String::from_utf8_lossy(&stored[at + 1..]).into_owned(),
        variant: String::from_utf8_lossy(variant).into_owned(),
    })
}

/// Every counter's window as a record, by name and window length.
pub fn counter_records(windows: &Locked<'_>) -> Vec<Record> {
    windows
        .kept()
        .into_iter()
        .map(|(name, window_secs, w)| Record::Counter {
            name: name.to_string(),
            window_secs,
            start: w.start,
            count: w.count,
        })
        .collect()
}

pub fn usage_row_record(row: &[u8], totals: Totals) -> Record {
    Record::UsageRow {
        row: hex::encode(row),
        totals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, created_at: u64) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            name: id.into(),
            role: Default::default(),
            masked: String::new(),
            created_at,
            models: vec![],
            tags: Default::default(),
            revoked_at: None,
            expires_at: None,
            metadata: Default::default(),
            limits: Default::default(),
            team: None,
        }
    }

    #[test]
    fn records_are_json_lines_tagged_by_kind() {
        let row = Record::UsageRow {
            row: hex::encode(7200u64.to_be_bytes()),
            totals: Totals::default(),
        };
        let line = serde_json::to_string(&row).unwrap();
        assert!(
            line.starts_with(r#"{"kind":"usage_row","row":"0000000000001c20""#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), row);
        let counter = r#"{"kind":"counter","name":"rpm:k","window_secs":18446744073709551615,"start":1,"count":2}"#;
        let Record::Counter { window_secs, .. } = serde_json::from_str(counter).unwrap() else {
            panic!("a counter");
        };
        assert_eq!(window_secs, u64::MAX, "the monthly window, exactly");
    }

    #[test]
    fn keys_are_exported_by_hash_oldest_first_and_a_revoked_one_with_none() {
        let records = key_records(vec![
            (key("key_new", 2), vec![[2; 32]]),
            (key("key_old", 1), vec![]),
        ]);
        let hashes: Vec<(&str, &str)> = records
            .iter()
            .map(|r| match r {
                Record::Key { hash, record } => (record.id.as_str(), hash.as_str()),
                _ => panic!("keys only"),
            })
            .collect();
        assert_eq!(hashes[0], ("key_old", ""));
        assert_eq!(hashes[1].0, "key_new");
        assert_eq!(hashes[1].1, "02".repeat(32));
        let import = Import::of(records).unwrap();
        assert_eq!(
            import.hashes.get(&[2; 32]).map(String::as_str),
            Some("key_new")
        );
        assert_eq!(import.counts().keys, 2);
    }

    #[test]
    fn invalid_records_are_refused_and_repeats_count_once() {
        let bad_hash = Record::Key {
            hash: "abc".into(),
            record: key("k", 0),
        };
        assert_eq!(bad_hash.check(), Err(InvalidRecord::Hash));
        let no_id = Record::Key {
            hash: String::new(),
            record: key("", 0),
        };
        assert_eq!(no_id.check(), Err(InvalidRecord::Empty("record.id")));
        let short_row = Record::UsageRow {
            row: "00".into(),
            totals: Totals::default(),
        };
        assert_eq!(short_row.check(), Err(InvalidRecord::Row));
        let split = Record::Assignment {
            split: "a\u{1f}b".into(),
            sticky_id: "u".into(),
            variant: "x".into(),
        };
        assert_eq!(split.check(), Err(InvalidRecord::Split));
        assert!(Import::of(vec![split]).is_err());

        let assign = |variant: &str| Record::Assignment {
            split: "s".into(),
            sticky_id: "u".into(),
            variant: variant.into(),
        };
        let import = Import::of(vec![assign("a"), assign("b")]).unwrap();
        assert_eq!(import.counts().assignments, 1);
        assert_eq!(
            import
                .assignments
                .get(&("s".into(), "u".into()))
                .map(String::as_str),
            Some("b"),
            "the last one counts"
        );
    }
}
