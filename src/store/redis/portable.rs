//! Export and import on Redis. Keys and teams go through their stores (compare-and-set, the
//! fleet told at once); assignments, counters and usage are written in pipelines. Counters whose
//! window has passed are not written (Redis would drop them at once).

use super::assignments::RedisAssignments;
use super::conn::Redis;
use super::keys::{RedisKeyStore, REVOKED_FIELD};
use super::teams::RedisTeamStore;
use crate::store::counters::LIFETIME;
use crate::store::error::StoreError;
use crate::store::keys::KeyRecord;
use crate::store::portable::{
    key_records, usage_row_record, Import, ImportCounts, KeyWithHashes, Portable, Record,
};
use crate::store::teams::TeamStore;
use crate::store::usage::{KeyUsage, Totals};
use crate::store::windows::{seconds_left, window_start};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub struct RedisPortable {
    pub redis: Arc<Redis>,
    pub keys: Arc<RedisKeyStore>,
    pub teams: Arc<RedisTeamStore>,
    pub assignments: Arc<RedisAssignments>,
}

/// Pipelines are cut at this many commands, so one call never carries an unbounded payload.
const CHUNK: usize = 1000;

impl RedisPortable {
    async fn counter_records(&self) -> Result<Vec<Record>, StoreError> {
        let pattern = {
            let mut p = self.redis.key("c:");
            p.push(b'*');
            p
        };
        let prefix_len = self.redis.key("c:").len();
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<Vec<u8>>) = self
                .redis
                .cmd(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            names.extend(page);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let mut out = BTreeMap::new();
        for chunk in names.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for name in chunk {
                pipe.cmd("HGET").arg(name).arg("u");
            }
            let counts: Vec<Option<u64>> = self.redis.pipe_slow(&pipe).await?;
            for (name, count) in chunk.iter().zip(counts) {
                let (Some(count), Some((name, window_secs, start))) =
                    (count, parse_counter(&name[prefix_len..]))
                else {
                    continue;
                };
                out.insert(
                    (name.clone(), window_secs),
                    Record::Counter {
                        name,
                        window_secs,
                        start,
                        count,
                    },
                );
            }
        }
        Ok(out.into_values().collect())
    }

    async fn usage_records(&self) -> Result<Vec<Record>, StoreError> {
        let hours: Vec<u64> = self
            .redis
            .cmd(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.redis.key("u_hours"))
                    .arg("-inf")
                    .arg("+inf"),
            )
            .await?;
        let mut rows: BTreeMap<Vec<u8>, Totals> = BTreeMap::new();
        for hour in hours {
            let table: HashMap<Vec<u8>, String> = self
                .redis
                .cmd(redis::cmd("HGETALL").arg(self.redis.key(format!("u:{hour}"))))
                .await?;
            for (field, value) in table {
                let Some((dims, figure)) = split_field(&field) else {
                    continue;
                };
                let mut row = hour.to_be_bytes().to_vec();
                row.extend_from_slice(dims);
                super::ledger::set_figure(rows.entry(row).or_default(), &figure, &value);
            }
        }
        let mut out: Vec<Record> = rows
            .into_iter()
            .map(|(row, totals)| usage_row_record(&row, totals))
            .collect();
        let table: HashMap<Vec<u8>, String> = self
            .redis
            .cmd(redis::cmd("HGETALL").arg(self.redis.key("u_keys")))
            .await?;
        let mut keys: BTreeMap<String, KeyUsage> = BTreeMap::new();
        for (field, value) in table {
            let Some((key_id, figure)) = split_field(&field) else {
                continue;
            };
            let usage = keys
                .entry(String::from_utf8_lossy(key_id).into_owned())
                .or_default();
            if figure == "last_used_ms" {
                usage.last_used_ms = value.parse().ok();
            } else {
                super::ledger::set_figure(&mut usage.totals, &figure, &value);
            }
        }
        out.extend(
            keys.into_iter()
                .map(|(key_id, usage)| Record::KeyUsage { key_id, usage }),
        );
        Ok(out)
    }

    async fn import_counters(&self, import: &Import) -> Result<(), StoreError> {
        let now = crate::clock::now_secs();
        let live: Vec<_> = import
            .counters
            .iter()
            .filter(|((_, window_secs), (start, _))| window_start(now, *window_secs) == *start)
            .collect();
        for chunk in live.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for ((name, window_secs), (start, count)) in chunk {
                let key = self
                    .redis
                    .key(format!("c:{name}\u{1f}{window_secs}:{start}"));
                pipe.cmd("HSET").arg(&key).arg("u").arg(*count).ignore();
                if *window_secs != LIFETIME {
                    let expire_at = now + seconds_left(now, *window_secs) + 120;
                    pipe.cmd("EXPIREAT").arg(&key).arg(expire_at).ignore();
                }
            }
            self.redis.pipe_slow::<()>(&pipe).await?;
        }
        Ok(())
    }

    async fn import_usage(&self, import: &Import) -> Result<(), StoreError> {
        let rows: Vec<_> = import.usage_rows.iter().collect();
        for chunk in rows.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for (row, totals) in chunk {
                let Some(hour) = row.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                    continue;
                };
                let hour = u64::from_be_bytes(hour);
                let hash = self.redis.key(format!("u:{hour}"));
                for (figure, value) in super::ledger::figures(totals) {
                    let mut field = row[8..].to_vec();
                    field.push(0x1e);
                    field.extend_from_slice(figure.as_bytes());
                    pipe.cmd("HSET").arg(&hash).arg(field).arg(value).ignore();
                }
                pipe.cmd("ZADD")
                    .arg(self.redis.key("u_hours"))
                    .arg(hour)
                    .arg(hour)
                    .ignore();
            }
            self.redis.pipe_slow::<()>(&pipe).await?;
        }
        let keys: Vec<_> = import.key_usage.iter().collect();
        for chunk in keys.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            let hash = self.redis.key("u_keys");
            for (key_id, usage) in chunk {
                for (figure, value) in super::ledger::figures(&usage.totals) {
                    pipe.cmd("HSET")
                        .arg(&hash)
                        .arg(format!("{key_id}\u{1e}{figure}"))
                        .arg(value)
                        .ignore();
                }
                let field = format!("{key_id}\u{1e}last_used_ms");
                match usage.last_used_ms {
                    Some(at) => pipe.cmd("HSET").arg(&hash).arg(field).arg(at).ignore(),
                    None => pipe.cmd("HDEL").arg(&hash).arg(field).ignore(),
                };
            }
            self.redis.pipe_slow::<()>(&pipe).await?;
        }
        Ok(())
    }

    async fn import_assignments(&self, import: &Import) -> Result<(), StoreError> {
        let all: Vec<_> = import.assignments.iter().collect();
        for chunk in all.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for ((split, sticky_id), variant) in chunk {
                pipe.cmd("HSET")
                    .arg(self.redis.key("assign"))
                    .arg(crate::store::assignments::key(split, sticky_id))
                    .arg(variant.as_str())
                    .ignore();
            }
            self.redis.pipe_slow::<()>(&pipe).await?;
        }
        self.assignments.reload().await?;
        // The other instances load them afresh too.
        self.redis
            .cmd::<()>(
                redis::cmd("PUBLISH")
                    .arg(self.redis.channel())
                    .arg(super::events::ASSIGNMENTS),
            )
            .await
    }
}

/// A usage field (`<dimensions or key id>\x1e<figure>`) split in two.
fn split_field(field: &[u8]) -> Option<(&[u8], String)> {
    let at = field.iter().rposition(|b| *b == 0x1e)?;
    Some((
        &field[..at],
        String::from_utf8_lossy(&field[at + 1..]).into_owned(),
    ))
}

/// A counter key without the prefix (`c:<name>\x1f<window>:<start>`) as name, window, start.
fn parse_counter(key: &[u8]) -> Option<(String, u64, u64)> {
    let text = std::str::from_utf8(key).ok()?;
    let (rest, start) = text.rsplit_once(':')?;
    let (name, window) = rest.rsplit_once('\u{1f}')?;
    Some((name.to_string(), window.parse().ok()?, start.parse().ok()?))
}

#[async_trait::async_trait]
impl Portable for RedisPortable {
    async fn export(&self) -> Result<Vec<Record>, StoreError> {
        let keys: Vec<KeyWithHashes> = self
            .keys
            .all()
            .await?
            .into_iter()
            .map(|(field, record): (String, KeyRecord)| {
                // A revoked key is exported without a hash, as every backend does.
                let hash = match (record.revoked_at, hex::decode(&field)) {
                    (None, Ok(bytes)) => <[u8; 32]>::try_from(bytes.as_slice()).ok(),
                    _ => None,
                };
                (record, hash.into_iter().collect())
            })
            .collect();
        let mut out = key_records(keys);
        let teams = self.teams.list().await?;
        out.extend(teams.into_iter().map(|record| Record::Team { record }));
        let mut assignments = self.assignments.all().await?;
        assignments.sort();
        out.extend(
            assignments
                .into_iter()
                .map(|(split, sticky_id, variant)| Record::Assignment {
                    split,
                    sticky_id,
                    variant,
                }),
        );
        out.extend(self.counter_records().await?);
        out.extend(self.usage_records().await?);
        Ok(out)
    }

    async fn import(&self, records: Vec<Record>) -> Result<ImportCounts, StoreError> {
        let import = Import::of(records)?;
        for team in import.teams.values() {
            self.teams.put_exported(team).await?;
        }
        let mut hashes: BTreeMap<&str, &[u8; 32]> = BTreeMap::new();
        for (hash, id) in &import.hashes {
            // One secret per key here: a key exported with several keeps the last.
            hashes.insert(id.as_str(), hash);
        }
        for (id, record) in &import.keys {
            let field = match (record.revoked_at, hashes.get(id.as_str())) {
                (None, Some(hash)) => hex::encode(hash),
                _ => format!("{REVOKED_FIELD}{id}"),
            };
            self.keys.put_exported(&field, record).await?;
        }
        self.import_assignments(&import).await?;
        self.import_counters(&import).await?;
        self.import_usage(&import).await?;
        Ok(import.counts())
    }
}
