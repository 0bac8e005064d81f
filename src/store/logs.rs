//! The request log: one entry per proxied request, newest first, bounded by age and count.

use super::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use utoipa::ToSchema;

/// One proxied request, as the log keeps it. Bodies only when `--log-bodies` is on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogEntry {
    pub request_id: String,
    /// Unix milliseconds when the request arrived.
    pub at_ms: u64,
    pub key_id: String,
    pub endpoint: String,
    /// The model the client asked for.
    pub requested_model: String,
    /// Who served it (absent when nothing did).
    pub provider: Option<String>,
    pub model: Option<String>,
    pub status: u16,
    pub latency_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cost_usd: f64,
    pub cached: bool,
    pub stream: bool,
    /// Upstream attempts made (0 for a cache hit or a request refused before any).
    pub attempts: u32,
    pub variants: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

/// What to look for. Every field given must match.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogFilter {
    pub key_id: Option<String>,
    /// Matches the requested model, the served model, or `provider/model`.
    pub model: Option<String>,
    pub provider: Option<String>,
    /// An exact status (`429`) or a class (`5xx`).
    pub status: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<u64>,
    /// Unix milliseconds, exclusive.
    pub until_ms: Option<u64>,
}

impl LogFilter {
    fn matches(&self, e: &LogEntry) -> bool {
        let model_ok = self.model.as_deref().is_none_or(|m| {
            e.requested_model == m
                || e.model.as_deref() == Some(m)
                || matches!((&e.provider, &e.model), (Some(p), Some(mm)) if m.split_once('/') == Some((p.as_str(), mm.as_str())))
        });
        let status_ok = self.status.as_deref().is_none_or(|s| {
            let code = e.status.to_string();
            if s.len() == 3 && s.ends_with("xx") {
                code.starts_with(&s[..1])
            } else {
                code == s
            }
        });
        self.key_id.as_deref().is_none_or(|k| e.key_id == k)
            && self
                .provider
                .as_deref()
                .is_none_or(|p| e.provider.as_deref() == Some(p))
            && model_ok
            && status_ok
    }
}

/// A page of entries and where the next page starts.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    pub data: Vec<LogEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

pub trait LogStore: Send + Sync {
    fn append(&self, entries: &[LogEntry]) -> Result<(), StoreError>;
    /// Newest first, starting before `cursor`.
    fn query(
        &self,
        filter: &LogFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<LogPage, StoreError>;
    fn get(&self, request_id: &str) -> Result<Option<LogEntry>, StoreError>;
    /// Drops entries older than `max_age_ms` and the oldest beyond `max_entries`.
    fn prune(&self, now_ms: u64, max_age_ms: u64, max_entries: usize) -> Result<usize, StoreError>;
}

/// Scanning stops after this many entries, so a filter that matches little cannot stall.
const MAX_SCAN: usize = 200_000;

pub struct SledLogs {
    /// at_ms (8 bytes, big-endian) ++ request id → entry (JSON)
    entries: sled::Tree,
    /// request id → entry key
    by_id: sled::Tree,
    count: AtomicUsize,
}

fn entry_key(e: &LogEntry) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + e.request_id.len());
    k.extend_from_slice(&e.at_ms.to_be_bytes());
    k.extend_from_slice(e.request_id.as_bytes());
    k
}

impl SledLogs {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let entries = db.open_tree("logs")?;
        let count = entries.len();
        Ok(SledLogs {
            entries,
            by_id: db.open_tree("log_ids")?,
            count: AtomicUsize::new(count),
        })
    }

    fn remove(&self, key: &[u8]) -> Result<bool, StoreError> {
        if self.entries.remove(key)?.is_some() {
            self.by_id.remove(&key[8..])?;
            self.count.fetch_sub(1, Ordering::Relaxed);
            return Ok(true);
        }
        Ok(false)
    }
}

impl LogStore for SledLogs {
    fn append(&self, entries: &[LogEntry]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut ids = sled::Batch::default();
        for e in entries {
            let key = entry_key(e);
            let value =
                serde_json::to_vec(e).map_err(|err| StoreError::Corrupt(err.to_string()))?;
            batch.insert(key.clone(), value);
            ids.insert(e.request_id.as_bytes(), key);
        }
        self.entries.apply_batch(batch)?;
        self.by_id.apply_batch(ids)?;
        self.count.fetch_add(entries.len(), Ordering::Relaxed);
        Ok(())
    }

    fn query(
        &self,
        filter: &LogFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<LogPage, StoreError> {
        let upper: Vec<u8> = match cursor {
            Some(c) => hex::decode(c).map_err(|_| StoreError::Corrupt("bad cursor".into()))?,
            None => match filter.until_ms {
                Some(until) => until.to_be_bytes().to_vec(),
                None => vec![0xff; 9],
            },
        };
        let lower = filter.since_ms.unwrap_or(0).to_be_bytes().to_vec();
        let mut data = Vec::new();
        let mut next_cursor = None;
        for (scanned, item) in self.entries.range(lower..upper).rev().enumerate() {
            let (key, value) = item?;
            if scanned >= MAX_SCAN {
                next_cursor = Some(hex::encode(&key));
                break;
            }
            let Ok(entry) = serde_json::from_slice::<LogEntry>(&value) else {
                continue;
            };
            if filter.until_ms.is_some_and(|u| entry.at_ms >= u) || !filter.matches(&entry) {
                continue;
            }
            if data.len() == limit {
                // The next page starts before the last entry returned.
                next_cursor = data.last().map(|e: &LogEntry| hex::encode(entry_key(e)));
                break;
            }
            data.push(entry);
        }
        Ok(LogPage { data, next_cursor })
    }

    fn get(&self, request_id: &str) -> Result<Option<LogEntry>, StoreError> {
        let Some(key) = self.by_id.get(request_id.as_bytes())? else {
            return Ok(None);
        };
        match self.entries.get(key)? {
            Some(v) => Ok(serde_json::from_slice(&v).ok()),
            None => Ok(None),
        }
    }

    fn prune(&self, now_ms: u64, max_age_ms: u64, max_entries: usize) -> Result<usize, StoreError> {
        let mut removed = 0;
        let cutoff = now_ms.saturating_sub(max_age_ms).to_be_bytes();
        let old: Vec<sled::IVec> = self
            .entries
            .range(..cutoff.to_vec())
            .keys()
            .collect::<Result<_, _>>()?;
        for key in old {
            removed += usize::from(self.remove(&key)?);
        }
        while self.count.load(Ordering::Relaxed) > max_entries {
            let Some((key, _)) = self.entries.first()? else {
                break;
            };
            if !self.remove(&key)? {
                break;
            }
            removed += 1;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let logs = SledLogs::open(&db).unwrap();
        let entries: Vec<LogEntry> = (0..10)
            .map(|i| {
                entry(
                    i,
                    if i % 3 == 0 { 500 } else { 200 },
                    if i < 5 { "a" } else { "b" },
                )
            })
            .collect();
        logs.append(&entries).unwrap();

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

        assert_eq!(logs.get("req3").unwrap().unwrap().status, 500);
        assert_eq!(
            logs.prune(1000 + 100, 97, 100).unwrap(),
            3,
            "req0..req2 are too old"
        );
        assert_eq!(
            logs.prune(2000, 10_000, 5).unwrap(),
            2,
            "then the oldest beyond 5"
        );
        assert!(logs.get("req4").unwrap().is_none());
        assert!(logs.get("req5").unwrap().is_some());
    }
}
