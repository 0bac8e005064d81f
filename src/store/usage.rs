//! Usage and cost rolled up per hour, per key, provider, model, variant, tags and team, kept
//! after the request log has been pruned. Queries regroup the hourly rows by the dimension
//! asked for.

use super::error::StoreError;
use super::logs::LogEntry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Upper bounds (ms, inclusive) of the latency histograms' buckets; one more bucket holds
/// everything slower. Fixed, so rows of any backend, hour and gateway add up bucket by bucket.
pub const LATENCY_BOUNDS_MS: [u64; 9] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000];
/// Buckets of a latency histogram: one per bound and one past the last.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Requests counted by latency bucket (see [`LATENCY_BOUNDS_MS`]): small and fixed, so a usage
/// row can keep one per figure and percentiles can be read per bucket of any range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Histogram(pub [u64; LATENCY_BUCKETS]);

impl Histogram {
    pub fn observe(&mut self, ms: u64) {
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.0[i] += 1;
    }

    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `q` quantile (0..1) in ms, interpolated linearly inside its bucket; past the last
    /// bound, the last bound (a floor: the histogram knows no more). `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * n as f64;
        let mut below = 0u64;
        for (i, &c) in self.0.iter().enumerate() {
            if c > 0 && (below + c) as f64 >= rank {
                let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_MS[i - 1] } as f64;
                let Some(&upper) = LATENCY_BOUNDS_MS.get(i) else {
                    return Some(lower);
                };
                let within = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
                return Some(lower + (upper as f64 - lower) * within);
            }
            below += c;
        }
        LATENCY_BOUNDS_MS.last().map(|&b| b as f64)
    }
}

/// Summed figures. Tokens and cost are what the upstreams reported; cache hits are counted in
/// `requests` and `cached` but add no tokens or cost (the upstream was not called).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    /// Requests answered from the gateway's response cache (not the providers' prompt cache:
    /// see `cached_tokens`).
    pub cached: u64,
    /// Every prompt token, `cached_tokens` and `cache_write_tokens` included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Of `prompt_tokens`, those providers read from their prompt caches. Rows written before
    /// it was counted read as 0.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Of `prompt_tokens`, those providers wrote to their prompt caches.
    #[serde(default)]
    pub cache_write_tokens: u64,
    pub cost_usd: f64,
    /// Requests whose tokens (and cost) are estimated: the upstream reported no usage.
    #[serde(default)]
    pub estimated: u64,
    /// Latency of the requests a provider served (cache hits left out), counted per bucket of
    /// `LATENCY_BOUNDS_MS` (ms: 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, then
    /// slower). Rows written before it was kept read as all zeros.
    #[serde(default)]
    #[schema(value_type = Vec<u64>)]
    pub latency_hist: Histogram,
    /// Time to the first token of the streams a provider served, in the same buckets.
    #[serde(default)]
    #[schema(value_type = Vec<u64>)]
    pub ttft_hist: Histogram,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.cached += o.cached;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.total_tokens += o.total_tokens;
        self.cached_tokens += o.cached_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.cost_usd += o.cost_usd;
        self.estimated += o.estimated;
        self.latency_hist.add(&o.latency_hist);
        self.ttft_hist.add(&o.ttft_hist);
    }

    fn of(e: &LogEntry) -> Totals {
        let billed = !e.cached;
        let tokens = |n: u64| if billed { n } else { 0 };
        // Latency is the providers': a cache hit or a request nothing served has none.
        let mut latency_hist = Histogram::default();
        let mut ttft_hist = Histogram::default();
        if billed && e.provider.is_some() {
            latency_hist.observe(e.latency_ms);
            if let Some(ttft) = e.ttft_ms.filter(|_| e.stream) {
                ttft_hist.observe(ttft);
            }
        }
        Totals {
            requests: 1,
            errors: u64::from(e.status >= 400),
            cached: u64::from(e.cached),
            prompt_tokens: tokens(e.prompt_tokens),
            completion_tokens: tokens(e.completion_tokens),
            total_tokens: tokens(e.total_tokens),
            cached_tokens: tokens(e.cached_tokens),
            cache_write_tokens: tokens(e.cache_write_tokens),
            cost_usd: if billed { e.cost_usd } else { 0.0 },
            estimated: u64::from(billed && e.usage_estimated),
            latency_hist,
            ttft_hist,
        }
    }
}

/// Latency percentiles read from a [`Totals`]' histograms (ms; `null` when it has none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct Percentiles {
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    /// Streams only: time to the first token.
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
}

impl Percentiles {
    pub fn of(t: &Totals) -> Percentiles {
        Percentiles {
            latency_p50_ms: t.latency_hist.quantile(0.5),
            latency_p95_ms: t.latency_hist.quantile(0.95),
            ttft_p50_ms: t.ttft_hist.quantile(0.5),
            ttft_p95_ms: t.ttft_hist.quantile(0.95),
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

/// What to group by: `key`, `team`, `provider`, `model`, `variant`, `tag:<name>`, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    None,
    Key,
    /// The team the key belonged to when the request was made.
    Team,
    Provider,
    Model,
    Variant,
    Tag(String),
}

/// A `group_by` that is none of those.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot group by `{0}`: use key, team, provider, model, variant, shadow or tag:<name>")]
pub struct UnknownGroup(pub String);

impl std::str::FromStr for GroupBy {
    type Err = UnknownGroup;
    fn from_str(s: &str) -> Result<Self, UnknownGroup> {
        Ok(match s {
            "" | "none" => GroupBy::None,
            "key" => GroupBy::Key,
            "team" => GroupBy::Team,
            "provider" => GroupBy::Provider,
            "model" => GroupBy::Model,
            "variant" => GroupBy::Variant,
            // Shadow traffic: the primaries a policy mirrored, and their copies.
            "shadow" => GroupBy::Tag("shadow".to_string()),
            other => match other.strip_prefix("tag:") {
                Some(name) if !name.is_empty() => GroupBy::Tag(name.to_string()),
                _ => return Err(UnknownGroup(other.to_string())),
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
    /// Read from `latency_hist` and `ttft_hist`.
    #[serde(flatten)]
    pub percentiles: Percentiles,
}

/// Usage roll-ups. Written with the log entries they count, through the [`super::Ledger`].
#[async_trait::async_trait]
pub trait UsageStore: Send + Sync {
    /// Rows for `[since, until)` (unix seconds), oldest first, then by group.
    async fn query(
        &self,
        since: u64,
        until: u64,
        bucket: Bucket,
        group: &GroupBy,
    ) -> Result<Vec<UsageRow>, StoreError>;
    async fn key_usage(&self, key_id: &str) -> Result<KeyUsage, StoreError>;
    /// Drops the hourly rows that ended at or before `before` (unix seconds); returns how
    /// many. Keys' all-time figures are kept.
    async fn prune(&self, before: u64) -> Result<usize, StoreError>;
}

/// A batch's usage merged in memory: what to add to each hourly row and to each key.
#[derive(Debug, Default)]
pub struct Merged {
    pub rows: BTreeMap<Vec<u8>, Totals>,
    pub keys: BTreeMap<String, KeyUsage>,
}

impl Merged {
    pub fn of(entries: &[LogEntry]) -> Merged {
        let mut m = Merged::default();
        // One buffer for every row key: a row seen before in the batch costs no allocation.
        let mut key = Vec::with_capacity(128);
        for e in entries {
            let hour = e.at_ms / 1000 / 3600 * 3600;
            let t = Totals::of(e);
            row_key_into(&mut key, hour, e);
            match m.rows.get_mut(key.as_slice()) {
                Some(row) => row.add(&t),
                None => {
                    m.rows.insert(key.clone(), t);
                }
            }
            let k = match m.keys.get_mut(e.key_id.as_str()) {
                Some(k) => k,
                None => m.keys.entry(e.key_id.clone()).or_default(),
            };
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

/// The model a request for an unknown model is counted under (see [`LogEntry::unknown_model`]).
pub const UNKNOWN_MODEL: &str = "(unknown)";

/// Writes an entry's row key into `out` (cleared first): the hour (8 bytes, big-endian), then
/// the dimensions separated by `SEP`: key, provider, model, variants (`name=value`, joined by
/// `,`), tags (likewise), team. `team` came last, later than the others: rows written before
/// it have five parts, and count as no team.
fn row_key_into(out: &mut Vec<u8>, hour: u64, e: &LogEntry) {
    let asked = if e.unknown_model {
        UNKNOWN_MODEL
    } else {
        &e.requested_model
    };
    let mut sep = [0u8; 4];
    let sep = SEP.encode_utf8(&mut sep).as_bytes();
    let pairs = |out: &mut Vec<u8>, map: &BTreeMap<String, String>| {
        for (i, (k, v)) in map.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
    };
    out.clear();
    out.extend_from_slice(&hour.to_be_bytes());
    out.extend_from_slice(e.key_id.as_bytes());
    out.extend_from_slice(sep);
    out.extend_from_slice(e.provider.as_deref().unwrap_or("").as_bytes());
    out.extend_from_slice(sep);
    out.extend_from_slice(e.model.as_deref().unwrap_or(asked).as_bytes());
    out.extend_from_slice(sep);
    pairs(out, &e.variants);
    out.extend_from_slice(sep);
    pairs(out, &e.tags);
    out.extend_from_slice(sep);
    out.extend_from_slice(e.team.as_deref().unwrap_or("").as_bytes());
}

fn group_value(group: &GroupBy, parts: &[&str]) -> Option<String> {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match group {
        GroupBy::None => None,
        GroupBy::Key => non_empty(parts[0]),
        GroupBy::Team => parts.get(5).and_then(|team| non_empty(team)),
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

/// The first hour row kept by a prune of rows ended at or before `before`: rows are keyed
/// by their hour's start, and those starting at or before `before - 1 h` have ended. `None`:
/// nothing has ended.
pub fn first_kept_hour(before: u64) -> Option<u64> {
    before.checked_sub(3600).map(|last_ended| last_ended + 1)
}

/// Hourly rows (key as made by `row_key`, totals) regrouped into buckets and groups: what
/// every backend's `query` returns from the rows in its range.
pub fn regroup<'a>(
    rows: impl IntoIterator<Item = (&'a [u8], Totals)>,
    bucket: Bucket,
    group: &GroupBy,
) -> Vec<UsageRow> {
    let width = match bucket {
        Bucket::Hour => 3600,
        Bucket::Day => 86_400,
    };
    let mut grouped: BTreeMap<(u64, Option<String>), Totals> = BTreeMap::new();
    for (key, totals) in rows {
        let Some(hour) = key.get(..8).and_then(|b| b.try_into().ok()) else {
            continue;
        };
        let hour = u64::from_be_bytes(hour);
        let text = String::from_utf8_lossy(&key[8..]);
        let parts: Vec<&str> = text.split(SEP).collect();
        // Five parts: a row written before teams were recorded.
        if !(5..=6).contains(&parts.len()) {
            continue;
        }
        grouped
            .entry((hour / width * width, group_value(group, &parts)))
            .or_default()
            .add(&totals);
    }
    grouped
        .into_iter()
        .map(|((start, group), totals)| UsageRow {
            start,
            group,
            totals,
            percentiles: Percentiles::of(&totals),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_key_is_the_hour_then_the_dimensions_as_rows_were_always_keyed() {
        let e = LogEntry {
            at_ms: 7_200_000 + 5,
            key_id: "k1".into(),
            provider: Some("openai".into()),
            model: Some("gpt-4o".into()),
            variants: [
                ("exp".to_string(), "b".to_string()),
                ("a".to_string(), "x".to_string()),
            ]
            .into(),
            tags: [("team".to_string(), "red".to_string())].into(),
            team: Some("t1".into()),
            ..LogEntry::default()
        };
        let mut key = vec![1, 2, 3];
        row_key_into(&mut key, 7200, &e);
        let mut expected = 7200u64.to_be_bytes().to_vec();
        expected.extend_from_slice(
            "k1\u{1f}openai\u{1f}gpt-4o\u{1f}a=x,exp=b\u{1f}team=red\u{1f}t1".as_bytes(),
        );
        assert_eq!(key, expected);
        // An unknown model with no provider, no variants, tags or team.
        let unknown = LogEntry {
            key_id: "k2".into(),
            requested_model: "nope".into(),
            unknown_model: true,
            ..LogEntry::default()
        };
        row_key_into(&mut key, 0, &unknown);
        let mut expected = 0u64.to_be_bytes().to_vec();
        expected.extend_from_slice("k2\u{1f}\u{1f}(unknown)\u{1f}\u{1f}\u{1f}".as_bytes());
        assert_eq!(key, expected);
        // Merged: two entries of one row add up in one row.
        let m = Merged::of(&[e.clone(), e]);
        assert_eq!(m.rows.len(), 1);
        assert_eq!(m.keys["k1"].totals.requests, 2);
    }

    fn entry(key: &str, team: Option<&str>) -> LogEntry {
        LogEntry {
            at_ms: 7_200_000,
            key_id: key.into(),
            team: team.map(str::to_string),
            requested_model: "echo".into(),
            ..LogEntry::default()
        }
    }

    #[test]
    fn prompt_cache_tokens_are_summed_like_prompt_tokens_but_not_for_cache_hits() {
        let billed = |cached_tokens, cache_write_tokens| LogEntry {
            prompt_tokens: 100,
            completion_tokens: 10,
            total_tokens: 110,
            cached_tokens,
            cache_write_tokens,
            cost_usd: 0.5,
            ..entry("a", None)
        };
        let hit = LogEntry {
            cached: true,
            ..billed(70, 20)
        };
        let merged = Merged::of(&[billed(70, 20), billed(0, 30), hit]);
        let totals = merged.keys["a"].totals;
        assert_eq!(
            (
                totals.requests,
                totals.cached,
                totals.prompt_tokens,
                totals.cached_tokens,
                totals.cache_write_tokens
            ),
            (3, 1, 200, 70, 50)
        );
        let rows = regroup(
            merged.rows.iter().map(|(k, t)| (k.as_slice(), *t)),
            Bucket::Day,
            &GroupBy::None,
        );
        assert_eq!(
            (
                rows[0].totals.cached_tokens,
                rows[0].totals.cache_write_tokens
            ),
            (70, 50)
        );
    }

    #[test]
    fn rows_and_log_entries_stored_before_prompt_caching_still_read() {
        let old: Totals = serde_json::from_str(
            r#"{"requests":2,"errors":0,"cached":0,"prompt_tokens":9,"completion_tokens":1,"total_tokens":10,"cost_usd":0.1,"estimated":0}"#,
        )
        .unwrap();
        assert_eq!(
            (old.prompt_tokens, old.cached_tokens, old.cache_write_tokens),
            (9, 0, 0)
        );
        let key: KeyUsage = serde_json::from_str(
            r#"{"requests":1,"errors":0,"cached":0,"prompt_tokens":9,"completion_tokens":1,"total_tokens":10,"cost_usd":0.1,"last_used_ms":5}"#,
        )
        .unwrap();
        assert_eq!((key.totals.requests, key.totals.cached_tokens), (1, 0));
        let log: LogEntry = serde_json::from_str(
            r#"{"request_id":"r","at_ms":1,"key_id":"k","endpoint":"/v1/chat/completions","requested_model":"m","provider":"p","model":"m","status":200,"latency_ms":3,"prompt_tokens":9,"completion_tokens":1,"total_tokens":10,"cost_usd":0.0,"cached":false,"stream":false,"attempts":1,"variants":{},"tags":{},"error":null}"#,
        )
        .unwrap();
        assert_eq!(
            (log.prompt_tokens, log.cached_tokens, log.cache_write_tokens),
            (9, 0, 0)
        );
    }

    #[test]
    fn histograms_bucket_by_the_fixed_bounds_and_read_percentiles_inside_a_bucket() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in [0, 50, 51, 100, 30_000, 30_001, u64::MAX] {
            h.observe(ms);
        }
        assert_eq!(h, Histogram([2, 2, 0, 0, 0, 0, 0, 0, 1, 2]));
        // Past the last bound only the bound is known.
        assert_eq!(h.quantile(1.0), Some(30_000.0));
        let mut one = Histogram::default();
        one.observe(700);
        // A single request in (500, 1000]: p50 is the bucket's middle.
        assert_eq!(one.quantile(0.5), Some(750.0));
        let copy = one;
        one.add(&copy);
        assert_eq!(one.count(), 2);
    }

    #[test]
    fn cache_hits_and_unserved_requests_add_no_latency() {
        let served = LogEntry {
            provider: Some("mock".into()),
            latency_ms: 120,
            stream: true,
            ttft_ms: Some(40),
            ..entry("a", None)
        };
        let hit = LogEntry {
            cached: true,
            ..served.clone()
        };
        let unserved = LogEntry {
            provider: None,
            ..served.clone()
        };
        let t = Merged::of(&[served, hit, unserved]).keys["a"].totals;
        assert_eq!(
            (t.requests, t.latency_hist.count(), t.ttft_hist.count()),
            (3, 1, 1)
        );
        // Stored before histograms were kept: all zeros, no percentiles.
        let old: Totals = serde_json::from_str(r#"{"requests":1,"errors":0,"cached":0,"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"cost_usd":0.0}"#).unwrap();
        assert_eq!(Percentiles::of(&old), Percentiles::default());
    }

    #[test]
    fn rows_written_before_teams_were_recorded_count_as_no_team() {
        // A row as keyed before the team dimension existed: five parts.
        let mut old = 7200u64.to_be_bytes().to_vec();
        old.extend_from_slice(format!("a{SEP}mock{SEP}echo{SEP}{SEP}").as_bytes());
        let merged = Merged::of(&[entry("a", Some("team_x")), entry("b", None)]);
        let mut rows: Vec<(&[u8], Totals)> = merged
            .rows
            .iter()
            .map(|(k, t)| (k.as_slice(), *t))
            .collect();
        let one = Totals {
            requests: 1,
            ..Totals::default()
        };
        rows.push((old.as_slice(), one));

        let by_team: Vec<(Option<String>, u64)> =
            regroup(rows.clone(), Bucket::Day, &GroupBy::Team)
                .into_iter()
                .map(|r| (r.group, r.totals.requests))
                .collect();
        assert_eq!(by_team, vec![(None, 2), (Some("team_x".into()), 1)]);
        // The other dimensions read the same from old rows and new ones.
        let by_key: Vec<(Option<String>, u64)> = regroup(rows, Bucket::Day, &GroupBy::Key)
            .into_iter()
            .map(|r| (r.group, r.totals.requests))
            .collect();
        assert_eq!(by_key, vec![(Some("a".into()), 2), (Some("b".into()), 1)]);
        assert_eq!("team".parse::<GroupBy>(), Ok(GroupBy::Team));
    }
}
