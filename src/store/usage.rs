//! Usage and cost rolled up per hour, per key, provider, model, variant and tags, kept after
//! the request log has been pruned. Queries regroup the hourly rows by the dimension asked for.

use super::logs::LogEntry;
use super::{Database, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;

/// Summed figures. Tokens and cost are what the upstreams reported; cache hits are counted in
/// `requests` and `cached` but add no tokens or cost (the upstream was not called).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub cached: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cost_usd: f64,
}

impl Totals {
    pub(super) fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.cached += o.cached;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.total_tokens += o.total_tokens;
        self.cost_usd += o.cost_usd;
    }

    fn of(e: &LogEntry) -> Totals {
        let billed = !e.cached;
        Totals {
            requests: 1,
            errors: u64::from(e.status >= 400),
            cached: u64::from(e.cached),
            prompt_tokens: if billed { e.prompt_tokens } else { 0 },
            completion_tokens: if billed { e.completion_tokens } else { 0 },
            total_tokens: if billed { e.total_tokens } else { 0 },
            cost_usd: if billed { e.cost_usd } else { 0.0 },
        }
    }
}

/// A key's all-time figures and when it was last used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyUsage {
    #[serde(flatten)]
    pub totals: Totals,
    /// Unix milliseconds.
    pub last_used_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
}

/// What to group by: `key`, `provider`, `model`, `variant`, `tag:<name>`, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    None,
    Key,
    Provider,
    Model,
    Variant,
    Tag(String),
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "" | "none" => GroupBy::None,
            "key" => GroupBy::Key,
            "provider" => GroupBy::Provider,
            "model" => GroupBy::Model,
            "variant" => GroupBy::Variant,
            other => match other.strip_prefix("tag:") {
                Some(name) if !name.is_empty() => GroupBy::Tag(name.to_string()),
                _ => {
                    return Err(format!(
                    "cannot group by `{other}`: use key, provider, model, variant or tag:<name>"
                ))
                }
            },
        })
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageRow {
    /// Unix seconds at the start of the bucket.
    pub start: u64,
    /// The group's value (`null` when not grouping or the value is absent).
    pub group: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
}

pub trait UsageStore: Send + Sync {
    fn record(&self, entries: &[LogEntry]) -> Result<(), StoreError>;
    /// Rows for `[since, until)` (unix seconds), oldest first, then by group.
    fn query(
        &self,
        since: u64,
        until: u64,
        bucket: Bucket,
        group: &GroupBy,
    ) -> Result<Vec<UsageRow>, StoreError>;
    fn key_usage(&self, key_id: &str) -> Result<KeyUsage, StoreError>;
    /// Drops the hourly rows that ended at or before `before` (unix seconds); returns how
    /// many. Keys' all-time figures are kept.
    fn prune(&self, before: u64) -> Result<usize, StoreError>;
}

pub struct SledUsage {
    /// The trees `usage_hours` (hour, 8 bytes, ++ dims joined by 0x1f → Totals as JSON) and
    /// `usage_keys` (key id → KeyUsage as JSON).
    db: Arc<Database>,
}

/// A batch's usage merged in memory: what to add to each hourly row and to each key.
#[derive(Debug, Default)]
pub(super) struct Merged {
    pub rows: BTreeMap<Vec<u8>, Totals>,
    pub keys: BTreeMap<String, KeyUsage>,
}

impl Merged {
    pub fn of(entries: &[LogEntry]) -> Merged {
        let mut m = Merged::default();
        for e in entries {
            let hour = e.at_ms / 1000 / 3600 * 3600;
            let t = Totals::of(e);
            m.rows.entry(row_key(hour, &dims(e))).or_default().add(&t);
            let k = m.keys.entry(e.key_id.clone()).or_default();
            k.totals.add(&t);
            k.last_used_ms = k.last_used_ms.max(Some(e.at_ms));
        }
        m
    }

    /// `current` with this batch's figures for `key_id` added.
    pub fn add_key(current: &mut KeyUsage, add: &KeyUsage) {
        current.totals.add(&add.totals);
        current.last_used_ms = current.last_used_ms.max(add.last_used_ms);
    }
}

const SEP: char = '\u{1f}';

/// The dimensions of a row, in key order.
struct Dims<'a> {
    key: &'a str,
    provider: &'a str,
    model: &'a str,
    variant: String,
    tags: String,
}

/// The model a request for an unknown model is counted under (see [`LogEntry::unknown_model`]).
pub const UNKNOWN_MODEL: &str = "(unknown)";

fn dims(e: &LogEntry) -> Dims<'_> {
    let asked = if e.unknown_model {
        UNKNOWN_MODEL
    } else {
        &e.requested_model
    };
    Dims {
        key: &e.key_id,
        provider: e.provider.as_deref().unwrap_or(""),
        model: e.model.as_deref().unwrap_or(asked),
        variant: e
            .variants
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        tags: e
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn row_key(hour: u64, d: &Dims) -> Vec<u8> {
    let mut k = hour.to_be_bytes().to_vec();
    k.extend_from_slice(
        format!(
            "{}{SEP}{}{SEP}{}{SEP}{}{SEP}{}",
            d.key, d.provider, d.model, d.variant, d.tags
        )
        .as_bytes(),
    );
    k
}

fn group_value(group: &GroupBy, parts: &[&str]) -> Option<String> {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match group {
        GroupBy::None => None,
        GroupBy::Key => non_empty(parts[0]),
        GroupBy::Provider => non_empty(parts[1]),
        GroupBy::Model => match (parts[1], parts[2]) {
            ("", m) => non_empty(m),
            (p, m) => Some(format!("{p}/{m}")),
        },
        GroupBy::Variant => non_empty(parts[3]),
        GroupBy::Tag(name) => parts[4]
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string()),
    }
}

impl SledUsage {
    pub fn open(db: &Arc<Database>) -> SledUsage {
        SledUsage { db: db.clone() }
    }
}

pub(super) fn read<T: for<'de> Deserialize<'de> + Default>(v: Option<sled::IVec>) -> T {
    v.and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default()
}

impl UsageStore for SledUsage {
    fn record(&self, entries: &[LogEntry]) -> Result<(), StoreError> {
        self.db.writable()?;
        // Merge the batch in memory first: one read and one write per row touched.
        let merged = Merged::of(entries);
        let trees = self.db.trees()?;
        for (key, add) in merged.rows {
            let mut current: Totals = read(trees.usage_hours.get(&key)?);
            current.add(&add);
            trees.usage_hours.insert(key, encode(&current))?;
        }
        for (key_id, add) in merged.keys {
            let mut current: KeyUsage = read(trees.usage_keys.get(key_id.as_bytes())?);
            Merged::add_key(&mut current, &add);
            trees
                .usage_keys
                .insert(key_id.as_bytes(), encode(&current))?;
        }
        Ok(())
    }

    fn query(
        &self,
        since: u64,
        until: u64,
        bucket: Bucket,
        group: &GroupBy,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let width = match bucket {
            Bucket::Hour => 3600,
            Bucket::Day => 86_400,
        };
        let from = since / 3600 * 3600;
        let mut grouped: BTreeMap<(u64, Option<String>), Totals> = BTreeMap::new();
        for item in self
            .db
            .trees()?
            .usage_hours
            .range(from.to_be_bytes().to_vec()..until.to_be_bytes().to_vec())
        {
            let (key, value) = item?;
            let hour = u64::from_be_bytes(key[..8].try_into().unwrap_or([0; 8]));
            let text = String::from_utf8_lossy(&key[8..]);
            let parts: Vec<&str> = text.split(SEP).collect();
            if parts.len() != 5 {
                continue;
            }
            let totals: Totals = read(Some(value));
            grouped
                .entry((hour / width * width, group_value(group, &parts)))
                .or_default()
                .add(&totals);
        }
        Ok(grouped
            .into_iter()
            .map(|((start, group), totals)| UsageRow {
                start,
                group,
                totals,
            })
            .collect())
    }

    fn key_usage(&self, key_id: &str) -> Result<KeyUsage, StoreError> {
        Ok(read(self.db.trees()?.usage_keys.get(key_id.as_bytes())?))
    }

    fn prune(&self, before: u64) -> Result<usize, StoreError> {
        // Rows are keyed by their hour's start: those starting at or before `before - 1 h`
        // have ended.
        let Some(last_ended) = before.checked_sub(3600) else {
            return Ok(0);
        };
        let first_kept = last_ended + 1;
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

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(at_s: u64, key: &str, model: &str, tokens: u64, cached: bool, team: &str) -> LogEntry {
        LogEntry {
            request_id: format!("{at_s}{key}{model}"),
            at_ms: at_s * 1000,
            key_id: key.into(),
            provider: Some("mock".into()),
            model: Some(model.into()),
            status: 200,
            prompt_tokens: tokens,
            completion_tokens: tokens,
            total_tokens: tokens * 2,
            cost_usd: tokens as f64 * 0.5,
            cached,
            tags: BTreeMap::from([("team".to_string(), team.to_string())]),
            ..LogEntry::default()
        }
    }

    #[test]
    fn rolls_up_and_regroups() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        let usage = SledUsage::open(&db);
        usage
            .record(&[
                e(10, "a", "m1", 1, false, "x"),
                e(20, "a", "m1", 2, false, "x"),
            ])
            .unwrap();
        usage
            .record(&[
                e(3700, "b", "m2", 5, false, "y"),
                e(3800, "b", "m2", 5, true, "y"),
            ])
            .unwrap();

        let by_model = usage
            .query(0, 86_400, Bucket::Day, &"model".parse().unwrap())
            .unwrap();
        assert_eq!(by_model.len(), 2);
        assert_eq!(by_model[0].group.as_deref(), Some("mock/m1"));
        assert_eq!(by_model[0].totals.total_tokens, 6);
        assert_eq!(by_model[1].totals.requests, 2);
        assert_eq!(by_model[1].totals.cached, 1);
        assert_eq!(
            by_model[1].totals.prompt_tokens, 5,
            "the cache hit adds no tokens"
        );

        let hourly = usage
            .query(0, 86_400, Bucket::Hour, &GroupBy::None)
            .unwrap();
        assert_eq!(
            hourly.iter().map(|r| r.start).collect::<Vec<_>>(),
            vec![0, 3600]
        );
        let by_team = usage
            .query(0, 86_400, Bucket::Day, &"tag:team".parse().unwrap())
            .unwrap();
        assert_eq!(
            by_team
                .iter()
                .map(|r| r.group.clone().unwrap())
                .collect::<Vec<_>>(),
            vec!["x", "y"]
        );
        assert_eq!(
            usage
                .query(3600, 86_400, Bucket::Hour, &GroupBy::None)
                .unwrap()
                .len(),
            1
        );

        // Requests for unknown models: one row, whatever names they used.
        let unknown = |at_s: u64, name: &str| LogEntry {
            at_ms: at_s * 1000,
            key_id: "a".into(),
            requested_model: name.into(),
            status: 404,
            unknown_model: true,
            ..LogEntry::default()
        };
        usage
            .record(&[unknown(30, "made-up-1"), unknown(40, "made-up-2")])
            .unwrap();
        let by_model = usage
            .query(0, 3600, Bucket::Hour, &"model".parse().unwrap())
            .unwrap();
        let unknown_rows: Vec<_> = by_model
            .iter()
            .filter(|r| r.group.as_deref() == Some(UNKNOWN_MODEL))
            .collect();
        assert_eq!(unknown_rows.len(), 1);
        assert_eq!(
            (
                unknown_rows[0].totals.requests,
                unknown_rows[0].totals.errors
            ),
            (2, 2)
        );
        assert_eq!(
            usage.db.trees().unwrap().usage_hours.len(),
            3,
            "one stored row for both"
        );

        let a = usage.key_usage("a").unwrap();
        assert_eq!((a.totals.requests, a.last_used_ms), (4, Some(40_000)));
        assert!("color".parse::<GroupBy>().is_err());

        // The hour [0, 3600) has not ended at 3599; it has at 3600, and goes.
        assert_eq!(usage.prune(3599).unwrap(), 0);
        assert_eq!(usage.prune(3600).unwrap(), 2);
        let left = usage
            .query(0, 86_400, Bucket::Hour, &GroupBy::None)
            .unwrap();
        assert_eq!(left.iter().map(|r| r.start).collect::<Vec<_>>(), vec![3600]);
        assert_eq!(usage.key_usage("a").unwrap().totals.requests, 4);
    }
}
