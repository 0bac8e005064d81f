//! Counters in Redis: exact for the whole fleet. A request's limits are checked and charged by
//! one Lua script (one round trip, atomic on the server, nothing read-then-written from here),
//! which also records what the request holds as a *lease*: settling or releasing ends the
//! lease, a running request's lease is renewed by its gateway (every 5 minutes), and a lease
//! whose gateway died is given back when it expires ([`LEASE`]).
//!
//! Counter keys carry their window's start (`c:<name>\x1f<window>:<start>`) and expire after
//! the window ends, so a new window starts at zero with no reset step and old windows clean
//! themselves up. Requests in flight are a plain integer per limit (`f:<name>`).
//!
//! Scripts read counters synchronously (`peek`): they see the last value this instance read or
//! wrote, which for counters written by other instances can lag. Limits never do: they are
//! enforced by the script on the server.

use super::conn::Redis;
use crate::clock::{now_ms, now_secs};
use crate::store::counters::{
    Actual, AdmitError, CounterAdd, CounterStore, Limit, LimitKind, OverLimit, Reservation,
    Standing, Use, LIFETIME,
};
use crate::store::error::StoreError;
use crate::store::windows::{key as window_key, seconds_left, window_start};
use redis::Script;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a request may hold its reservation before the fleet takes it back, if its gateway
/// never settles it (a crash, a kill -9). Longer than any request should run.
pub const LEASE: Duration = Duration::from_secs(15 * 60);
/// Counters outlive their window by this much, so a late settlement still finds them.
const WINDOW_SLACK_SECS: u64 = 120;
/// How often each instance gives back expired leases.
const REAP_EVERY: Duration = Duration::from_secs(10);
/// How often each instance extends the leases of its requests still running, so a request
/// longer than [`LEASE`] (a long stream) keeps what it holds: only a gateway that stopped
/// renewing (it died) loses its leases.
const RENEW_EVERY: Duration = Duration::from_secs(LEASE.as_secs() / 3);
/// The most leases extended by one command.
const RENEW_BATCH: usize = 500;
/// Counter values remembered for `peek`; cleared beyond this.
const REMEMBERED: usize = 100_000;
/// Charges kept while Redis is away (`--redis-unavailable open`); beyond this they are dropped
/// and counted.
const DEFERRED_MAX: usize = 100_000;

/// What to do with a request's limits while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unavailable {
    /// Refuse it: a 503 `store_unavailable` with `retry-after`, at once.
    #[default]
    Closed,
    /// Admit it, and charge its limits once Redis is back.
    Open,
}

pub struct RedisCounters {
    redis: Arc<Redis>,
    unavailable: Unavailable,
    reserve: Script,
    finish: Script,
    reap: Script,
    /// The last value seen of each counter (by windows' key): window start and count. Shared
    /// with the reads `peek` starts for counters it has not seen.
    seen: Arc<Mutex<HashMap<String, (u64, u64)>>>,
    /// Charges of requests admitted while Redis was away, to add once it is back.
    deferred: Mutex<Vec<CounterAdd>>,
    /// Settlements and releases that could not reach Redis: tried again once it is back, so a
    /// short outage does not leave slots and reservations held until their leases expire.
    unfinished: Mutex<Vec<(Reservation, Option<Actual>)>>,
    /// Leases waiting to be ended by the batch writer ([`finish_batches`]).
    finishing: Mutex<Vec<Finishing>>,
    finish_ready: Arc<tokio::sync::Notify>,
    pub(super) deferred_dropped: std::sync::atomic::AtomicU64,
    /// The leases of this instance's requests not yet settled or released: renewed every
    /// [`RENEW_EVERY`] while they run.
    live: Mutex<std::collections::HashSet<String>>,
}

impl RedisCounters {
    pub fn new(redis: Arc<Redis>, unavailable: Unavailable) -> Arc<RedisCounters> {
        let counters = Arc::new(RedisCounters {
            redis,
            unavailable,
            reserve: Script::new(include_str!("lua/reserve.lua")),
            finish: Script::new(include_str!("lua/finish.lua")),
            reap: Script::new(include_str!("lua/reap.lua")),
            seen: Arc::new(Mutex::new(HashMap::new())),
            deferred: Mutex::new(Vec::new()),
            unfinished: Mutex::new(Vec::new()),
            finishing: Mutex::new(Vec::new()),
            finish_ready: Arc::new(tokio::sync::Notify::new()),
            deferred_dropped: Default::default(),
            live: Mutex::new(std::collections::HashSet::new()),
        });
        tokio::spawn(maintain(Arc::downgrade(&counters)));
        tokio::spawn(finish_batches(Arc::downgrade(&counters)));
        counters
    }

    /// The key of a counter's window at `now`, and when it expires (0: never).
    fn window(&self, name: &str, window_secs: u64, now: u64) -> (Vec<u8>, u64) {
        let start = window_start(now, window_secs);
        let key = self
            .redis
            .key(format!("c:{name}\u{1f}{window_secs}:{start}"));
        let expire_at = match window_secs {
            LIFETIME => 0,
            w => now + seconds_left(now, w) + WINDOW_SLACK_SECS,
        };
        (key, expire_at)
    }

    /// What a reservation holds, counter by counter: key, field, amount, and when it is given
    /// back (`a`: always; `r`: on release only, an admitted request staying counted).
    fn holdings(
        &self,
        held: &[(Limit, u64)],
        at: u64,
    ) -> Vec<(Vec<u8>, &'static str, u64, &'static str)> {
        held.iter()
            .map(|(limit, amount)| holding(limit, *amount, self.limit_key(limit, at).0))
            .collect()
    }

    fn in_flight_key(&self, name: &str) -> Vec<u8> {
        self.redis.key(format!("f:{name}"))
    }

    fn limit_key(&self, limit: &Limit, now: u64) -> (Vec<u8>, u64) {
        match limit.kind {
            // In flight: kept while any request holds a slot, and a while after.
            LimitKind::Parallel => (
                self.in_flight_key(&limit.name),
                now + LEASE.as_secs() + WINDOW_SLACK_SECS,
            ),
            _ => self.window(&limit.name, limit.window_secs, now),
        }
    }

    fn remember(&self, name: &str, window_secs: u64, now: u64, count: u64) {
        remember(
            &self.seen,
            window_key(name, window_secs),
            window_secs,
            now,
            count,
        );
    }

    fn defer(&self, adds: impl IntoIterator<Item = CounterAdd>) {
        let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        for add in adds {
            if deferred.len() >= DEFERRED_MAX {
                self.deferred_dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            deferred.push(add);
        }
    }

    /// Writes the charges deferred while Redis was away; keeps them if it still is.
    async fn write_deferred(&self) {
        let adds = std::mem::take(&mut *self.deferred.lock().unwrap_or_else(|p| p.into_inner()));
        if adds.is_empty() {
            return;
        }
        if let Err(e) = self.add(&adds).await {
            tracing::debug!(error = %e, "deferred counter charges wait for redis");
            self.defer(adds);
        }
    }

    /// Ends a reservation; one that cannot reach Redis is kept and tried again when it is
    /// back (beyond [`DEFERRED_MAX`] it is left to its lease, and counted).
    async fn end(
        &self,
        reservation: &Reservation,
        actual: Option<Actual>,
    ) -> Result<(), StoreError> {
        let result = self.try_end(reservation, actual).await;
        if let Err(e) = &result {
            if e.is_unreachable() {
                let mut unfinished = self.unfinished.lock().unwrap_or_else(|p| p.into_inner());
                if unfinished.len() < DEFERRED_MAX {
                    unfinished.push((reservation.clone(), actual));
                    return Ok(());
                }
                self.deferred_dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        result
    }

    /// Settles or releases what could not be while Redis was away; keeps what still cannot.
    async fn finish_unfinished(&self) {
        let unfinished =
            std::mem::take(&mut *self.unfinished.lock().unwrap_or_else(|p| p.into_inner()));
        for (i, (reservation, actual)) in unfinished.iter().enumerate() {
            if let Err(e) = self.try_end(reservation, *actual).await {
                tracing::debug!(error = %e, "unfinished settlements wait for redis");
                let mut kept = self.unfinished.lock().unwrap_or_else(|p| p.into_inner());
                kept.extend(unfinished[i..].iter().cloned());
                return;
            }
        }
    }

    /// Extends every running request's lease to `now_ms` + [`LEASE`] (`ZADD XX`: a lease ended
    /// meanwhile stays ended). Returns how many were extended.
    async fn renew_leases(&self, now_ms: u64) -> Result<u64, StoreError> {
        let live: Vec<String> = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let until = now_ms + LEASE.as_millis() as u64;
        let mut renewed = 0;
        for chunk in live.chunks(RENEW_BATCH) {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(self.redis.key("leases")).arg("XX").arg("CH");
            for lease in chunk {
                cmd.arg(until).arg(lease.as_bytes());
            }
            renewed += self.redis.cmd::<u64>(&cmd).await?;
        }
        Ok(renewed)
    }

    async fn try_end(
        &self,
        reservation: &Reservation,
        actual: Option<Actual>,
    ) -> Result<(), StoreError> {
        let now = now_secs();
        if reservation.deferred {
            // Admitted while Redis was away: charged now, as if admitted now.
            if let Some(actual) = actual {
                self.defer(deferred_charges(reservation, actual));
            }
            return Ok(());
        }
        let Some(lease) = &reservation.lease else {
            return Ok(());
        };
        let holdings = self.holdings(&reservation.held, reservation.at);
        let mut charges = Vec::new();
        let mut charged = Vec::new();
        if let Some(actual) = actual {
            for (limit, _) in &reservation.held {
                let used = match limit.kind {
                    LimitKind::Tokens => actual.tokens,
                    LimitKind::MicroUsd => actual.micro_usd,
                    _ => continue,
                };
                if used == 0 {
                    continue;
                }
                let (key, expire_at) = self.window(&limit.name, limit.window_secs, now);
                charges.push((key, used, expire_at));
                charged.push(limit);
            }
        }
        let finish = Finish {
            release: actual.is_none(),
            lease: lease.clone(),
            holdings,
            charges,
        };
        let (done, result) = tokio::sync::oneshot::channel();
        self.finishing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((finish, done));
        self.finish_ready.notify_one();
        let after = result
            .await
            .map_err(|_| StoreError::Backend("the settlement writer stopped".into()))??;
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(lease);
        for (limit, count) in charged.iter().zip(after) {
            self.remember(&limit.name, limit.window_secs, now, count);
        }
        Ok(())
    }
}

/// What a request holds of one limit under the counter `key`: key, field, amount, and when
/// it is given back (see [`RedisCounters::holdings`]).
fn holding(limit: &Limit, amount: u64, key: Vec<u8>) -> (Vec<u8>, &'static str, u64, &'static str) {
    match limit.kind {
        LimitKind::Parallel => (key, "", 1, "a"),
        LimitKind::Requests => (key, "u", amount, "r"),
        LimitKind::Tokens | LimitKind::MicroUsd => (key, "r", amount, "a"),
    }
}

fn remember(
    seen: &Mutex<HashMap<String, (u64, u64)>>,
    key: String,
    window_secs: u64,
    now: u64,
    count: u64,
) {
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.len() >= REMEMBERED {
        seen.clear();
    }
    seen.insert(key, (window_start(now, window_secs), count));
}

/// One lease to end: what it holds, and what its request used.
struct Finish {
    release: bool,
    lease: String,
    holdings: Vec<(Vec<u8>, &'static str, u64, &'static str)>,
    /// Counter, amount, expiry.
    charges: Vec<(Vec<u8>, u64, u64)>,
}

/// A lease to end and where its counters' new counts go.
type Finishing = (
    Finish,
    tokio::sync::oneshot::Sender<Result<Vec<u64>, StoreError>>,
);

/// The most leases ended by one script call.
const FINISH_BATCH: usize = 256;

/// Ends the leases queued by `settle` and `release`, as many as are waiting in one script call
/// (while one call is out, the next batch gathers): under load the fleet's settlements cost a
/// fraction of a call each. Ends with the store.
async fn finish_batches(counters: std::sync::Weak<RedisCounters>) {
    loop {
        let Some(ready) = counters.upgrade().map(|c| c.finish_ready.clone()) else {
            return;
        };
        ready.notified().await;
        loop {
            let Some(counters) = counters.upgrade() else {
                return;
            };
            let batch: Vec<Finishing> = {
                let mut queue = counters.finishing.lock().unwrap_or_else(|p| p.into_inner());
                let n = queue.len().min(FINISH_BATCH);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                break;
            }
            counters.finish_batch(batch).await;
        }
    }
}

impl RedisCounters {
    async fn finish_batch(&self, batch: Vec<Finishing>) {
        let mut call = self.finish.prepare_invoke();
        call.key(self.redis.key("leases")).arg(batch.len());
        for (finish, _) in &batch {
            call.arg(if finish.release { "release" } else { "settle" })
                .arg(finish.lease.as_bytes())
                .arg(finish.holdings.len())
                .arg(finish.charges.len());
            for (key, field, amount, when) in &finish.holdings {
                call.key(key).arg(*field).arg(*amount).arg(*when);
            }
            for (key, amount, expire_at) in &finish.charges {
                call.key(key).arg(*amount).arg(*expire_at);
            }
        }
        match self.redis.script::<Vec<u64>>(&call).await {
            Ok(after) => {
                let mut after = after.into_iter();
                for (finish, done) in batch {
                    let counts: Vec<u64> = after.by_ref().take(finish.charges.len()).collect();
                    let _ = done.send(Ok(counts));
                }
            }
            Err(e) => {
                for (_, done) in batch {
                    let _ = done.send(Err(match &e {
                        StoreError::Unreachable(cause) => StoreError::Unreachable(cause.clone()),
                        other => StoreError::Backend(other.to_string()),
                    }));
                }
            }
        }
    }
}

/// What a request admitted while Redis was away adds once it is back: its request slots and
/// what it used.
fn deferred_charges(reservation: &Reservation, actual: Actual) -> Vec<CounterAdd> {
    reservation
        .held
        .iter()
        .filter_map(|(limit, amount)| {
            let amount = match limit.kind {
                LimitKind::Requests => *amount,
                LimitKind::Tokens => actual.tokens,
                LimitKind::MicroUsd => actual.micro_usd,
                LimitKind::Parallel => 0,
            };
            (amount > 0).then(|| CounterAdd {
                name: limit.name.clone(),
                window_secs: limit.window_secs,
                amount,
            })
        })
        .collect()
}

#[async_trait::async_trait]
impl CounterStore for RedisCounters {
    async fn reserve(&self, limits: &[(Limit, u64)]) -> Result<Reservation, AdmitError> {
        let now = now_secs();
        // An amount larger than the whole limit counts as the whole limit (as in process).
        let held: Vec<(Limit, u64)> = limits
            .iter()
            .map(|(l, amount)| {
                let amount = match l.kind {
                    LimitKind::Parallel => 1,
                    _ => (*amount).min(l.max),
                };
                (l.clone(), amount)
            })
            .collect();
        // The lease's member says what it holds, so the reaper can give it back without
        // asking anyone: id, 0x1c, then per counter key, field, amount, when (0x1d between,
        // 0x1e after each).
        // Each counter's key and expiry, made once: the lease, KEYS and ARGV all need them.
        let keys: Vec<(Vec<u8>, u64)> = held
            .iter()
            .map(|(limit, _)| self.limit_key(limit, now))
            .collect();
        let mut lease = uuid::Uuid::new_v4().simple().to_string().into_bytes();
        lease.push(0x1c);
        for ((limit, amount), (key, _)) in held.iter().zip(&keys) {
            let (key, field, amount, when) = holding(limit, *amount, key.clone());
            lease.extend_from_slice(&key);
            lease.push(0x1d);
            lease.extend_from_slice(field.as_bytes());
            lease.push(0x1d);
            lease.extend_from_slice(amount.to_string().as_bytes());
            lease.push(0x1d);
            lease.extend_from_slice(when.as_bytes());
            lease.push(0x1e);
        }
        let lease = String::from_utf8_lossy(&lease).into_owned();
        let mut call = self.reserve.prepare_invoke();
        for (key, _) in &keys {
            call.key(key);
        }
        call.key(self.redis.key("leases"));
        call.arg(held.len())
            .arg(now_ms() + LEASE.as_millis() as u64)
            .arg(lease.as_bytes());
        for ((limit, amount), (_, expire_at)) in held.iter().zip(&keys) {
            let kind = match limit.kind {
                LimitKind::Requests => "r",
                LimitKind::Tokens => "t",
                LimitKind::MicroUsd => "u",
                LimitKind::Parallel => "p",
            };
            call.arg(kind).arg(limit.max).arg(*amount).arg(*expire_at);
        }
        let reply: Vec<u64> = match self.redis.script(&call).await {
            Ok(reply) => reply,
            Err(e) if e.is_unreachable() && self.unavailable == Unavailable::Open => {
                // Admitted on trust; charged once Redis is back (see `end`).
                let standing = held
                    .iter()
                    .map(|(limit, amount)| Standing {
                        limit: limit.clone(),
                        remaining: limit.max.saturating_sub(*amount),
                        reset_secs: reset_secs(limit, now),
                    })
                    .collect();
                return Ok(Reservation {
                    held,
                    at: now,
                    standing,
                    lease: None,
                    deferred: true,
                });
            }
            Err(e) => return Err(AdmitError::Store(e)),
        };
        match reply.as_slice() {
            [0, i, taken] => {
                let Some((limit, amount)) = held.get((*i as usize).saturating_sub(1)) else {
                    return Err(AdmitError::Store(StoreError::Corrupt(
                        "the reserve script named no limit".into(),
                    )));
                };
                Err(AdmitError::Over(OverLimit {
                    limit: limit.clone(),
                    used: *taken,
                    wanted: *amount,
                    retry_after_secs: reset_secs(limit, now),
                }))
            }
            [1, after @ ..] if after.len() == held.len() => {
                let standing = held
                    .iter()
                    .zip(after)
                    .map(|((limit, _), taken)| {
                        if limit.kind == LimitKind::Requests {
                            self.remember(&limit.name, limit.window_secs, now, *taken);
                        }
                        Standing {
                            limit: limit.clone(),
                            remaining: limit.max.saturating_sub(*taken),
                            reset_secs: reset_secs(limit, now),
                        }
                    })
                    .collect();
                self.live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(lease.clone());
                Ok(Reservation {
                    held,
                    at: now,
                    standing,
                    lease: Some(lease),
                    deferred: false,
                })
            }
            _ => Err(AdmitError::Store(StoreError::Corrupt(
                "the reserve script gave an unexpected reply".into(),
            ))),
        }
    }

    async fn settle(&self, reservation: &Reservation, actual: Actual) -> Result<(), StoreError> {
        self.end(reservation, Some(actual)).await
    }

    async fn release(&self, reservation: &Reservation) -> Result<(), StoreError> {
        self.end(reservation, None).await
    }

    async fn add(&self, adds: &[CounterAdd]) -> Result<(), StoreError> {
        if adds.is_empty() {
            return Ok(());
        }
        let now = now_secs();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for add in adds {
            let (key, expire_at) = self.window(&add.name, add.window_secs, now);
            pipe.cmd("HINCRBY").arg(&key).arg("u").arg(add.amount);
            if expire_at > 0 {
                pipe.cmd("EXPIREAT").arg(&key).arg(expire_at).ignore();
            }
        }
        let counts: Vec<u64> = self.redis.pipe(&pipe).await?;
        for (add, count) in adds.iter().zip(counts) {
            self.remember(&add.name, add.window_secs, now, count);
        }
        Ok(())
    }

    async fn get(&self, name: &str, window_secs: u64) -> Result<u64, StoreError> {
        let now = now_secs();
        let (key, _) = self.window(name, window_secs, now);
        let count: Option<u64> = self.redis.cmd(redis::cmd("HGET").arg(key).arg("u")).await?;
        let count = count.unwrap_or(0);
        self.remember(name, window_secs, now, count);
        Ok(count)
    }

    /// What this instance last saw of the counter. One it has not seen in this window is read
    /// from Redis in the background (a script cannot wait), so the next peek has it; until
    /// then it reads 0.
    fn peek(&self, name: &str, window_secs: u64) -> u64 {
        let now = now_secs();
        let k = window_key(name, window_secs);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            match seen.get(&k) {
                Some((start, count)) if *start == window_start(now, window_secs) => return *count,
                // Marked as seen (0) at once, so a burst of peeks starts one read.
                _ => {
                    if seen.len() >= REMEMBERED {
                        seen.clear();
                    }
                    seen.insert(k.clone(), (window_start(now, window_secs), 0));
                }
            }
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (redis, seen) = (self.redis.clone(), self.seen.clone());
            let (key, _) = self.window(name, window_secs, now);
            runtime.spawn(async move {
                let read: Result<Option<u64>, _> =
                    redis.cmd(redis::cmd("HGET").arg(key).arg("u")).await;
                if let Ok(count) = read {
                    let mut all = seen.lock().unwrap_or_else(|p| p.into_inner());
                    // Only raise it: an add made meanwhile may already have said more.
                    if let Some((start, seen_count)) = all.get_mut(&k) {
                        if *start == window_start(now, window_secs) {
                            *seen_count = (*seen_count).max(count.unwrap_or(0));
                        }
                    }
                }
            });
        }
        0
    }

    async fn usage(&self, limits: &[Limit]) -> Result<Vec<Use>, StoreError> {
        if limits.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_secs();
        let mut pipe = redis::pipe();
        for limit in limits {
            let (key, _) = self.limit_key(limit, now);
            match limit.kind {
                LimitKind::Parallel => pipe.cmd("GET").arg(key),
                _ => pipe.cmd("HMGET").arg(key).arg("u").arg("r"),
            };
        }
        let replies: Vec<redis::Value> = self.redis.pipe(&pipe).await?;
        Ok(limits
            .iter()
            .zip(replies)
            .map(|(limit, reply)| match limit.kind {
                LimitKind::Parallel => Use {
                    used: redis::from_redis_value::<Option<u64>>(reply)
                        .ok()
                        .flatten()
                        .unwrap_or(0),
                    reserved: 0,
                },
                _ => {
                    let v: Vec<Option<u64>> = redis::from_redis_value(reply).unwrap_or_default();
                    Use {
                        used: v.first().copied().flatten().unwrap_or(0),
                        reserved: v.get(1).copied().flatten().unwrap_or(0),
                    }
                }
            })
            .collect())
    }
}

fn reset_secs(limit: &Limit, now: u64) -> u64 {
    match limit.kind {
        LimitKind::Parallel => 0,
        _ => seconds_left(now, limit.window_secs),
    }
}

/// Every [`REAP_EVERY`], gives back expired leases; every second, writes charges deferred while
/// Redis was away. Ends with the store.
async fn maintain(counters: std::sync::Weak<RedisCounters>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reap = std::time::Instant::now();
    let mut last_renew = std::time::Instant::now();
    loop {
        tick.tick().await;
        let Some(counters) = counters.upgrade() else {
            return;
        };
        if !counters.redis.is_up() {
            continue;
        }
        counters.write_deferred().await;
        counters.finish_unfinished().await;
        if last_renew.elapsed() >= RENEW_EVERY {
            match counters.renew_leases(now_ms()).await {
                Ok(_) => last_renew = std::time::Instant::now(),
                Err(e) => tracing::debug!(error = %e, "could not renew leases; trying again"),
            }
        }
        if last_reap.elapsed() >= REAP_EVERY {
            last_reap = std::time::Instant::now();
            let mut call = counters.reap.prepare_invoke();
            call.key(counters.redis.key("leases"))
                .arg(now_ms())
                .arg(1000);
            match counters.redis.script::<u64>(&call).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    leases = n,
                    "gave back the limits of requests whose gateway never settled them"
                ),
                Err(e) => tracing::debug!(error = %e, "could not reap expired leases"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::redis_server;

    async fn counters(server: &redis_server::RedisServer) -> (Arc<Redis>, Arc<RedisCounters>) {
        let redis = Redis::connect(
            &server.url(),
            "t:",
            Duration::from_millis(500),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let counters = RedisCounters::new(redis.clone(), Unavailable::Closed);
        (redis, counters)
    }

    async fn reap_at(redis: &Redis, counters: &RedisCounters, at_ms: u64) -> u64 {
        let mut call = counters.reap.prepare_invoke();
        call.key(redis.key("leases")).arg(at_ms).arg(1000);
        redis.script(&call).await.unwrap()
    }

    /// A gateway killed with requests in flight never settles them: the fleet gives back what
    /// they held once their leases expire, and a settlement arriving after that gives back
    /// nothing twice.
    #[tokio::test]
    async fn a_lease_never_settled_is_given_back_when_it_expires() {
        let Some(server) = redis_server::RedisServer::start() else {
            return;
        };
        let (redis, counters) = counters(&server).await;
        let parallel = Limit::new("par", 1, LIFETIME, LimitKind::Parallel);
        let tokens = Limit::new("tok", 100, 3600, LimitKind::Tokens);
        let requests = Limit::new("rpm", 10, 3600, LimitKind::Requests);
        let held = [
            (parallel.clone(), 1),
            (tokens.clone(), 60),
            (requests.clone(), 1),
        ];
        let orphan = counters.reserve(&held).await.unwrap();
        assert!(counters.reserve(&[(parallel.clone(), 1)]).await.is_err());
        assert_eq!(
            reap_at(&redis, &counters, now_ms()).await,
            0,
            "not expired yet"
        );

        let expired = now_ms() + LEASE.as_millis() as u64 + 1;
        assert_eq!(reap_at(&redis, &counters, expired).await, 1);
        let limits = [parallel.clone(), tokens.clone(), requests.clone()];
        let usage = counters.usage(&limits).await.unwrap();
        assert_eq!(usage[0], Use::default(), "the slot is free again");
        assert_eq!(usage[1], Use::default(), "the reservation is given back");
        assert_eq!(usage[2].used, 1, "an admitted request stays counted");

        // The request did finish after all: its use is charged, nothing is given back twice.
        let actual = Actual {
            tokens: 30,
            micro_usd: 0,
        };
        counters.settle(&orphan, actual).await.unwrap();
        let usage = counters.usage(&limits).await.unwrap();
        assert_eq!(usage[0].used, 0);
        assert_eq!(
            usage[1],
            Use {
                used: 30,
                reserved: 0
            }
        );
        assert_eq!(usage[2].used, 1);
    }

    /// A request that runs longer than its lease (a long stream) keeps what it holds while its
    /// gateway lives and renews it; a dead gateway's lease (no renewal) is still given back.
    #[tokio::test]
    async fn a_running_requests_lease_is_renewed_and_a_dead_gateways_is_not() {
        let Some(server) = redis_server::RedisServer::start() else {
            return;
        };
        let (redis, alive) = counters(&server).await;
        let (_, dying) = counters(&server).await;
        let parallel = Limit::new("par", 1, LIFETIME, LimitKind::Parallel);
        let other = Limit::new("other", 1, LIFETIME, LimitKind::Parallel);
        let long = alive.reserve(&[(parallel.clone(), 1)]).await.unwrap();
        let orphan = dying.reserve(&[(other.clone(), 1)]).await.unwrap();
        drop(dying); // its gateway is gone: nothing renews its lease
        let start = now_ms();
        // Just before the lease would end, the live instance renews its own.
        let lease_ms = LEASE.as_millis() as u64;
        assert_eq!(
            alive.renew_leases(start + lease_ms - 1_000).await.unwrap(),
            1
        );
        // Past the first expiry: only the dead gateway's lease is reaped.
        assert_eq!(reap_at(&redis, &alive, start + lease_ms + 1_000).await, 1);
        assert!(
            alive.reserve(&[(parallel.clone(), 1)]).await.is_err(),
            "the long request still holds its slot"
        );
        let freed = alive.reserve(&[(other.clone(), 1)]).await.unwrap();
        // Settled: nothing is renewed any more, and the slot is free at once.
        alive.settle(&long, Actual::default()).await.unwrap();
        alive.settle(&freed, Actual::default()).await.unwrap();
        assert_eq!(alive.renew_leases(now_ms()).await.unwrap(), 0);
        let again = alive.reserve(&[(parallel, 1)]).await.unwrap();
        alive.release(&again).await.unwrap();
        drop(orphan);
    }

    /// A settlement that cannot reach Redis is kept and made once it is back, so a short outage
    /// leaves no slot taken.
    #[tokio::test]
    async fn settlements_made_while_redis_is_away_are_made_when_it_returns() {
        let Some(mut server) = redis_server::RedisServer::start() else {
            return;
        };
        let (redis, counters) = counters(&server).await;
        let parallel = Limit::new("par", 1, LIFETIME, LimitKind::Parallel);
        let running = counters.reserve(&[(parallel.clone(), 1)]).await.unwrap();
        server.stop();
        counters
            .settle(&running, Actual::default())
            .await
            .expect("kept for later");
        assert!(!redis.is_up());
        server.resume();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(usage) = counters.usage(std::slice::from_ref(&parallel)).await {
                if usage[0].used == 0 {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "settled once redis returned"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
