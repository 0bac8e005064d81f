//! The request log and usage roll-ups in Redis, shared by the fleet, written together by one
//! script per batch (`lua/ledger_write.lua`): a batch lands whole or not at all, and a batch
//! written again (after a timeout that may or may not have kept it) finds its marker and adds
//! nothing. Every instance's writer sends its own batches; every instance reads them all.
//!
//! - log: a sorted set of members named `<write ms><sequence><instance>` (hex, so names sort
//!   by time), the entries by member, and members by request id;
//! - usage: one hash per hour (`u:<hour>`), a field per row and figure
//!   (`<dimensions>\x1e<figure>`), and keys' all-time figures in `u_keys`.

use super::conn::Redis;
use crate::store::error::StoreError;
use crate::store::ledger::{BatchId, Ledger, LedgerBatch};
use crate::store::logs::{
    decode_cursor, encode_cursor, LogEntry, LogFilter, LogPage, LogStore, MAX_SCAN,
};
use crate::store::usage::{
    first_kept_hour, regroup, Bucket, GroupBy, KeyUsage, Merged, Totals, UsageRow, UsageStore,
    LATENCY_BUCKETS,
};
use redis::Script;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// How long a batch's marker is kept: longer than any batch waits to be written again.
const MARKER_SECS: u64 = 7 * 86_400;
/// The length of a log member before its request id: write time and sequence (16 hex digits
/// each) and the instance's name (12).
const MEMBER_HEAD: usize = 16 + 16 + INSTANCE_LEN;
const INSTANCE_LEN: usize = 12;
/// Log members read per round trip while scanning.
const PAGE: usize = 256;
/// Every figure of a usage row, in the order `lua/ledger_write.lua` takes them (its `names`):
/// the sums, then the latency histogram's buckets (`lat0`..`lat9`) and time to first token's
/// (`ttft0`..`ttft9`), each a counter like the others.
pub(super) const FIGURES: [&str; 10 + 2 * LATENCY_BUCKETS] = [
    "requests",
    "errors",
    "cached",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "estimated",
    "cached_tokens",
    "cache_write_tokens",
    "lat0",
    "lat1",
    "lat2",
    "lat3",
    "lat4",
    "lat5",
    "lat6",
    "lat7",
    "lat8",
    "lat9",
    "ttft0",
    "ttft1",
    "ttft2",
    "ttft3",
    "ttft4",
    "ttft5",
    "ttft6",
    "ttft7",
    "ttft8",
    "ttft9",
];

pub struct RedisLedger {
    redis: Arc<Redis>,
    seq: AtomicU64,
    /// This instance's name in log members and batch markers: batches of different instances
    /// never collide.
    instance: String,
    write: Script,
    prune_usage: Script,
}

impl RedisLedger {
    pub fn new(redis: Arc<Redis>) -> RedisLedger {
        RedisLedger {
            redis,
            seq: AtomicU64::new(0),
            instance: uuid::Uuid::new_v4().simple().to_string()[..INSTANCE_LEN].to_string(),
            write: Script::new(include_str!("lua/ledger_write.lua")),
            prune_usage: Script::new(include_str!("lua/usage_prune.lua")),
        }
    }

    /// A log member: write time and sequence (hex, so members sort by time), this instance,
    /// and the request id, so a prune knows which index entries to drop without reading the
    /// entries.
    fn member(&self, id: BatchId, i: usize, request_id: &str) -> String {
        format!(
            "{:016x}{:016x}{}{request_id}",
            id.write_ms,
            id.seq + i as u64,
            self.instance
        )
    }

    /// Deletes log members with their entries and request-id index.
    async fn remove(&self, members: &[Vec<u8>]) -> Result<usize, StoreError> {
        if members.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&[u8]> = members
            .iter()
            .filter_map(|m| m.get(MEMBER_HEAD..))
            .filter(|id| !id.is_empty())
            .collect();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZREM")
            .arg(self.redis.key("log"))
            .arg(members)
            .ignore()
            .cmd("HDEL")
            .arg(self.redis.key("log_data"))
            .arg(members)
            .ignore();
        if !ids.is_empty() {
            pipe.cmd("HDEL")
                .arg(self.redis.key("log_ids"))
                .arg(ids)
                .ignore();
        }
        self.redis.pipe_slow::<()>(&pipe).await?;
        Ok(members.len())
    }
}

#[async_trait::async_trait]
impl Ledger for RedisLedger {
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
        let marker = format!("batch:{}:{}", self.instance, batch.id.seq);
        let mut call = self.write.prepare_invoke();
        call.key(self.redis.key(marker))
            .key(self.redis.key("log"))
            .key(self.redis.key("log_data"))
            .key(self.redis.key("log_ids"))
            .key(self.redis.key("u_hours"))
            .key(self.redis.key("u_keys"))
            .arg(MARKER_SECS)
            .arg(self.redis.key("u:"))
            .arg(batch.entries.len());
        for (i, entry) in batch.entries.iter().enumerate() {
            let json = serde_json::to_string(entry)
                .map_err(|e| StoreError::Corrupt(format!("log entry: {e}")))?;
            call.arg(self.member(batch.id, i, &entry.request_id))
                .arg(&entry.request_id)
                .arg(json);
        }
        let merged = Merged::of(&batch.entries);
        call.arg(merged.rows.len());
        for (row, totals) in &merged.rows {
            let (hour, dims) = split_row(row)?;
            call.arg(hour).arg(dims);
            push_totals(&mut call, totals);
        }
        call.arg(merged.keys.len());
        for (key_id, usage) in &merged.keys {
            call.arg(key_id);
            push_totals(&mut call, &usage.totals);
            call.arg(usage.last_used_ms.unwrap_or(0));
        }
        let written: i64 = self.redis.script_slow(&call).await?;
        Ok(written == 1)
    }
}

/// A usage row key (hour, big-endian, ++ dimensions) split into its parts.
fn split_row(row: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    let hour: [u8; 8] = row
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt("a usage row without its hour".into()))?;
    Ok((u64::from_be_bytes(hour), &row[8..]))
}

fn push_totals(call: &mut redis::ScriptInvocation<'_>, t: &Totals) {
    for (_, value) in figures(t) {
        call.arg(value);
    }
}

/// Every figure of `t` as stored, in the order of [`FIGURES`]. A zero cost is written `0`,
/// which the script skips, as it skips every other zero.
pub(super) fn figures(t: &Totals) -> [(&'static str, String); FIGURES.len()] {
    let cost = if t.cost_usd == 0.0 {
        "0".to_string()
    } else {
        t.cost_usd.to_string()
    };
    let base = [
        t.requests.to_string(),
        t.errors.to_string(),
        t.cached.to_string(),
        t.prompt_tokens.to_string(),
        t.completion_tokens.to_string(),
        t.total_tokens.to_string(),
        cost,
        t.estimated.to_string(),
        t.cached_tokens.to_string(),
        t.cache_write_tokens.to_string(),
    ];
    let mut values = base
        .into_iter()
        .chain(t.latency_hist.0.iter().map(u64::to_string))
        .chain(t.ttft_hist.0.iter().map(u64::to_string));
    std::array::from_fn(|i| (FIGURES[i], values.next().unwrap_or_default()))
}

/// Sets one figure of `t` from its stored text. Figures a row was written without (those
/// added later, such as `cached_tokens`) stay 0.
pub(super) fn set_figure(t: &mut Totals, figure: &str, value: &str) {
    let int = || value.parse::<u64>().unwrap_or(0);
    match figure {
        "requests" => t.requests = int(),
        "errors" => t.errors = int(),
        "cached" => t.cached = int(),
        "prompt_tokens" => t.prompt_tokens = int(),
        "completion_tokens" => t.completion_tokens = int(),
        "total_tokens" => t.total_tokens = int(),
        "cost_usd" => t.cost_usd = value.parse().unwrap_or(0.0),
        "estimated" => t.estimated = int(),
        "cached_tokens" => t.cached_tokens = int(),
        "cache_write_tokens" => t.cache_write_tokens = int(),
        other => {
            let bucket = |prefix: &str| {
                other
                    .strip_prefix(prefix)
                    .and_then(|i| i.parse::<usize>().ok())
                    .filter(|i| *i < LATENCY_BUCKETS)
            };
            if let Some(i) = bucket("lat") {
                t.latency_hist.0[i] = int();
            } else if let Some(i) = bucket("ttft") {
                t.ttft_hist.0[i] = int();
            }
        }
    }
}

#[async_trait::async_trait]
impl LogStore for RedisLedger {
    async fn query(
        &self,
        filter: &LogFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<LogPage, StoreError> {
        // The cursor's position is the member of the next entry to read.
        let mut upper = match cursor {
            Some(c) => {
                let (position, _) = decode_cursor(c)?;
                let mut bound = b"[".to_vec();
                bound.extend_from_slice(&position);
                bound
            }
            None => b"+".to_vec(),
        };
        let mut data = Vec::new();
        let mut scanned = 0;
        loop {
            let members: Vec<Vec<u8>> = self
                .redis
                .cmd(
                    redis::cmd("ZRANGE")
                        .arg(self.redis.key("log"))
                        .arg(&upper)
                        .arg("-")
                        .arg("BYLEX")
                        .arg("REV")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(PAGE),
                )
                .await?;
            if members.is_empty() {
                return Ok(LogPage {
                    data,
                    next_cursor: None,
                });
            }
            let entries: Vec<Option<Vec<u8>>> = self
                .redis
                .cmd(
                    redis::cmd("HMGET")
                        .arg(self.redis.key("log_data"))
                        .arg(&members),
                )
                .await?;
            for (member, entry) in members.iter().zip(entries) {
                if data.len() == limit || scanned >= MAX_SCAN {
                    return Ok(LogPage {
                        data,
                        next_cursor: Some(encode_cursor(member, 0)),
                    });
                }
                scanned += 1;
                let Some(entry) = entry.and_then(|e| serde_json::from_slice::<LogEntry>(&e).ok())
                else {
                    continue;
                };
                if filter.matches(&entry) {
                    data.push(entry);
                }
            }
            let Some(last) = members.last() else {
                continue;
            };
            upper = b"(".to_vec();
            upper.extend_from_slice(last);
            if members.len() < PAGE {
                return Ok(LogPage {
                    data,
                    next_cursor: None,
                });
            }
        }
    }

    async fn get(&self, request_id: &str) -> Result<Option<LogEntry>, StoreError> {
        let member: Option<Vec<u8>> = self
            .redis
            .cmd(
                redis::cmd("HGET")
                    .arg(self.redis.key("log_ids"))
                    .arg(request_id),
            )
            .await?;
        let Some(member) = member else {
            return Ok(None);
        };
        let entry: Option<Vec<u8>> = self
            .redis
            .cmd(
                redis::cmd("HGET")
                    .arg(self.redis.key("log_data"))
                    .arg(member),
            )
            .await?;
        entry
            .map(|e| {
                serde_json::from_slice(&e)
                    .map_err(|e| StoreError::Corrupt(format!("log entry: {e}")))
            })
            .transpose()
    }

    async fn prune(
        &self,
        now_ms: u64,
        max_age_ms: u64,
        max_entries: usize,
    ) -> Result<usize, StoreError> {
        let cutoff = format!("({:016x}", now_ms.saturating_sub(max_age_ms));
        let mut removed = 0;
        loop {
            let old: Vec<Vec<u8>> = self
                .redis
                .cmd(
                    redis::cmd("ZRANGE")
                        .arg(self.redis.key("log"))
                        .arg("-")
                        .arg(&cutoff)
                        .arg("BYLEX")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(1000),
                )
                .await?;
            if old.is_empty() {
                break;
            }
            removed += self.remove(&old).await?;
        }
        loop {
            let count: usize = self
                .redis
                .cmd(redis::cmd("ZCARD").arg(self.redis.key("log")))
                .await?;
            let excess = count.saturating_sub(max_entries).min(1000);
            if excess == 0 {
                break;
            }
            let oldest: Vec<Vec<u8>> = self
                .redis
                .cmd(
                    redis::cmd("ZRANGE")
                        .arg(self.redis.key("log"))
                        .arg(0)
                        .arg(excess - 1),
                )
                .await?;
            removed += self.remove(&oldest).await?;
        }
        Ok(removed)
    }
}

#[async_trait::async_trait]
impl UsageStore for RedisLedger {
    async fn query(
        &self,
        since: u64,
        until: u64,
        bucket: Bucket,
        group: &GroupBy,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let hours: Vec<u64> = self
            .redis
            .cmd(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.redis.key("u_hours"))
                    .arg(since / 3600 * 3600)
                    .arg(format!("({until}")),
            )
            .await?;
        if hours.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for hour in &hours {
            pipe.cmd("HGETALL").arg(self.redis.key(format!("u:{hour}")));
        }
        let tables: Vec<HashMap<Vec<u8>, String>> = self.redis.pipe_slow(&pipe).await?;
        let mut rows: BTreeMap<Vec<u8>, Totals> = BTreeMap::new();
        for (hour, table) in hours.iter().zip(tables) {
            for (field, value) in table {
                let Some(at) = field.iter().rposition(|b| *b == 0x1e) else {
                    continue;
                };
                let figure = String::from_utf8_lossy(&field[at + 1..]).into_owned();
                let mut key = hour.to_be_bytes().to_vec();
                key.extend_from_slice(&field[..at]);
                set_figure(rows.entry(key).or_default(), &figure, &value);
            }
        }
        Ok(regroup(
            rows.iter().map(|(k, t)| (k.as_slice(), *t)),
            bucket,
            group,
        ))
    }

    async fn key_usage(&self, key_id: &str) -> Result<KeyUsage, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.redis.key("u_keys"));
        for figure in FIGURES {
            cmd.arg(format!("{key_id}\u{1e}{figure}"));
        }
        cmd.arg(format!("{key_id}\u{1e}last_used_ms"));
        let values: Vec<Option<String>> = self.redis.cmd(&cmd).await?;
        let mut usage = KeyUsage::default();
        for (figure, value) in FIGURES.iter().zip(&values) {
            if let Some(value) = value {
                set_figure(&mut usage.totals, figure, value);
            }
        }
        usage.last_used_ms = values
            .get(FIGURES.len())
            .cloned()
            .flatten()
            .and_then(|v| v.parse().ok());
        Ok(usage)
    }

    async fn prune(&self, before: u64) -> Result<usize, StoreError> {
        let Some(first_kept) = first_kept_hour(before) else {
            return Ok(0);
        };
        let mut call = self.prune_usage.prepare_invoke();
        call.key(self.redis.key("u_hours"))
            .arg(self.redis.key("u:"))
            .arg(first_kept);
        self.redis.script_slow(&call).await
    }
}
