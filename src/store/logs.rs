//! The request log: one entry per proxied request, newest first, bounded by age and count.

use super::error::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A shadow copy compared with its primary (the copy's own figures are its entry's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShadowComparison {
    /// The primary's `request_id`.
    pub of: String,
    pub primary_latency_ms: u64,
    pub primary_prompt_tokens: u64,
    pub primary_completion_tokens: u64,
    pub primary_cost_usd: f64,
    pub primary_finish_reason: Option<String>,
    /// The copy's finish reason.
    pub finish_reason: Option<String>,
    /// The two replies' texts are the same; `null` when either is unknown (a failed copy, a
    /// primary reply too long to keep).
    pub identical: Option<bool>,
}

/// A request's attempt records as JSON text (an array). Written once on the request path,
/// straight from the records (a tree of `serde_json::Value`s cost a map and a string per field
/// per attempt on the worker), and stored and served as it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttemptLog(Box<serde_json::value::RawValue>);

impl AttemptLog {
    /// The records' JSON, or `None` for no records (the field is then left out).
    pub fn of<T: Serialize>(records: &[T]) -> Option<AttemptLog> {
        if records.is_empty() {
            return None;
        }
        serde_json::value::to_raw_value(records)
            .ok()
            .map(AttemptLog)
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for AttemptLog {
    fn eq(&self, other: &AttemptLog) -> bool {
        self.json() == other.json()
    }
}

/// One proxied request, as the log keeps it. Bodies only when `--log-bodies` is on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogEntry {
    /// The gateway's own id for the request, unique: `GET /admin/logs/{request_id}`. It is the
    /// `x-request-id` response header unless the client sent its own.
    pub request_id: String,
    /// The `x-request-id` the client sent, if any (echoed back to it and passed upstream). Any
    /// client may send any id, so it is not unique: find it with `GET /admin/logs?request_id=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    /// The W3C trace id (32 hex digits) the request belongs to: the client's `traceparent`,
    /// or the gateway's own trace when it traced the request (`--otlp-endpoint`). Absent in
    /// entries written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Unix milliseconds when the request arrived.
    pub at_ms: u64,
    pub key_id: String,
    /// The team the key belonged to when the request was made (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub endpoint: String,
    /// The API the client spoke (`chat_completions`, `messages`, `responses`, ...); absent in
    /// entries written before there were several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The model the client asked for.
    pub requested_model: String,
    /// Who served it (absent when nothing did).
    pub provider: Option<String>,
    pub model: Option<String>,
    pub status: u16,
    pub latency_ms: u64,
    /// A stream's time to its first token (ms), when a provider sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<u64>,
    /// Every prompt token, those a provider's prompt cache served or stored included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Of `prompt_tokens`, those the provider read from its prompt cache (priced at the
    /// model's `cache_read`). Entries written before it was recorded read as 0.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Of `prompt_tokens`, those the provider wrote to its prompt cache (priced at the
    /// model's `cache_write`).
    #[serde(default)]
    pub cache_write_tokens: u64,
    pub cost_usd: f64,
    /// Answered from the gateway's own response cache (no upstream call); nothing to do with
    /// a provider's prompt cache.
    pub cached: bool,
    /// The tokens are estimated: the upstream reported no usage (see README, "Limits and
    /// budgets").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
    pub stream: bool,
    /// Upstream attempts made (0 for a cache hit or a request refused before any).
    pub attempts: u32,
    /// Each try: target, outcome, latency, and what happened next (retried, next target...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<Object>)]
    pub attempt_log: Option<AttemptLog>,
    pub variants: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// On a shadow copy's entry (`ctx.mirror`): how it compares with the request it copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowComparison>,
    /// Set on a request that nothing served, that reached no target, and whose
    /// `requested_model` names no served model (an unknown name, refused or not): usage counts
    /// it under [`super::usage::UNKNOWN_MODEL`], so names clients make up never become usage
    /// rows. For the usage writer only; not stored in the log.
    #[serde(skip)]
    pub unknown_model: bool,
}

/// What to look for. Every field given must match.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogFilter {
    /// The gateway's id of the request, or the `x-request-id` the client sent.
    pub request_id: Option<String>,
    /// The W3C trace id the request belongs to (from a trace, its log entries).
    pub trace_id: Option<String>,
    pub key_id: Option<String>,
    /// The team the key belonged to when the request was made.
    pub team: Option<String>,
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
    /// Whether `e` is one this filter looks for (its time range included).
    pub fn matches(&self, e: &LogEntry) -> bool {
        let in_range =
            self.since_ms.is_none_or(|s| e.at_ms >= s) && self.until_ms.is_none_or(|u| e.at_ms < u);
        in_range && self.matches_fields(e)
    }

    /// Whether `e` matches every field given, the time range aside.
    pub fn matches_fields(&self, e: &LogEntry) -> bool {
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
        let id_ok = self
            .request_id
            .as_deref()
            .is_none_or(|id| e.request_id == id || e.client_request_id.as_deref() == Some(id));
        id_ok
            && self
                .trace_id
                .as_deref()
                .is_none_or(|t| e.trace_id.as_deref() == Some(t))
            && self.key_id.as_deref().is_none_or(|k| e.key_id == k)
            && self
                .team
                .as_deref()
                .is_none_or(|t| e.team.as_deref() == Some(t))
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

/// The request log. Entries are written with their usage through the [`super::Ledger`].
#[async_trait::async_trait]
pub trait LogStore: Send + Sync {
    /// Newest first, starting before `cursor` (one this store gave out).
    async fn query(
        &self,
        filter: &LogFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<LogPage, StoreError>;
    async fn get(&self, request_id: &str) -> Result<Option<LogEntry>, StoreError>;
    /// Drops entries older than `max_age_ms` and the oldest beyond `max_entries`.
    async fn prune(
        &self,
        now_ms: u64,
        max_age_ms: u64,
        max_entries: usize,
    ) -> Result<usize, StoreError>;
}

/// Scanning stops after this many entries, so a filter that matches little cannot stall.
pub const MAX_SCAN: usize = 200_000;

/// A page cursor: `hex(position)` and the index of the next entry to read there (reading
/// backwards). What a position is belongs to the backend; the shape is shared, so the admin
/// API can refuse a malformed cursor before asking the store.
pub fn encode_cursor(position: &[u8], next: usize) -> String {
    format!("{}.{next}", hex::encode(position))
}

/// Whether `cursor` has the shape of one a store gave out.
pub fn valid_cursor(cursor: &str) -> bool {
    decode_cursor(cursor).is_ok()
}

pub fn decode_cursor(cursor: &str) -> Result<(Vec<u8>, usize), StoreError> {
    let bad = || StoreError::Corrupt("bad cursor".into());
    let (key, next) = cursor.split_once('.').ok_or_else(bad)?;
    Ok((
        hex::decode(key).map_err(|_| bad())?,
        next.parse().map_err(|_| bad())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Attempt {
        target: &'static str,
        latency_ms: u64,
    }

    #[test]
    fn the_attempt_log_is_stored_and_read_as_the_array_it_always_was() {
        let entry = LogEntry {
            request_id: "r1".into(),
            attempt_log: AttemptLog::of(&[
                Attempt {
                    target: "a/m",
                    latency_ms: 3,
                },
                Attempt {
                    target: "b/m",
                    latency_ms: 5,
                },
            ]),
            ..LogEntry::default()
        };
        let json: serde_json::Value = serde_json::to_value(&entry).unwrap();
        assert_eq!(
            json["attempt_log"],
            serde_json::json!([{"target": "a/m", "latency_ms": 3}, {"target": "b/m", "latency_ms": 5}])
        );
        // What was written (as these entries are stored: JSON bytes) reads back the same.
        let bytes = serde_json::to_vec(&[&entry]).unwrap();
        let back: Vec<LogEntry> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, vec![entry]);
        // No attempts: no field, as before.
        assert_eq!(AttemptLog::of::<Attempt>(&[]), None);
        let none = serde_json::to_value(LogEntry::default()).unwrap();
        assert!(none.get("attempt_log").is_none());
    }
}
