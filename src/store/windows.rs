//! Counter windows held in memory, sharded by counter name behind short mutexes: exact under
//! concurrency, free of I/O, and with no lock that every request takes. The in-process
//! backends (sled, memory) share this and differ only in how changed windows are written.
//!
//! A window holds what was used (`count`, persisted) and what admitted requests have reserved
//! but not yet settled (`reserved`, memory only: a crash ends those requests too). Requests in
//! flight are counted apart and never persisted, so a crash cannot leave a slot taken.

use super::counters::{
    Actual, AdmitError, CounterAdd, CounterStore, Limit, LimitKind, OverLimit, Reservation,
    Standing, Use, LIFETIME, MONTH,
};
use super::error::StoreError;
use crate::clock::now_secs;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u64,
    pub count: u64,
    pub reserved: u64,
}

/// One shard of the counters (see [`ShardedWindows`]).
#[derive(Default)]
struct Windows {
    windows: HashMap<String, Window>,
    /// Counters changed since they were last written.
    dirty: HashSet<String>,
    /// Counters pruned since they were last written: to delete where they are kept.
    removed: HashSet<String>,
    /// Requests in flight per limit name.
    in_flight: HashMap<String, u64>,
}

/// How often counters whose window has passed are dropped from memory.
const PRUNE_EVERY_SECS: u64 = 60;

pub fn key(name: &str, window_secs: u64) -> String {
    format!("{name}\u{1f}{window_secs}")
}

/// The window length a stored key names (see [`key`]).
pub fn window_of(key: &str) -> Option<u64> {
    key.rsplit_once('\u{1f}')?.1.parse().ok()
}

/// The start of the window `now` falls in: epoch-aligned windows, calendar months (UTC), or
/// 0 for the lifetime window.
pub fn window_start(now: u64, window_secs: u64) -> u64 {
    match window_secs {
        LIFETIME => 0,
        MONTH => month_start(now, 0),
        w => now - now % w,
    }
}

/// Seconds from `now` to the end of its window; 0 for the lifetime window.
pub fn seconds_left(now: u64, window_secs: u64) -> u64 {
    let end = match window_secs {
        LIFETIME => return 0,
        MONTH => month_start(now, 1),
        w => window_start(now, w).saturating_add(w),
    };
    end.saturating_sub(now).max(1)
}

/// Unix seconds at 00:00 UTC on the 1st of the month `now` falls in, moved `ahead` months.
fn month_start(now: u64, ahead: i64) -> u64 {
    let (year, month, _) = civil_from_days((now / 86_400) as i64);
    let months = year * 12 + (month as i64 - 1) + ahead;
    let (year, month) = (months.div_euclid(12), months.rem_euclid(12) as u32 + 1);
    (days_from_civil(year, month, 1).max(0) as u64) * 86_400
}

/// (year, month, day) of a count of days since 1970-01-01, in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Windows {
    /// This shard's counters' windows, unordered: (name, window_secs, window).
    fn kept(&self) -> impl Iterator<Item = (&str, u64, Window)> {
        self.windows.iter().filter_map(|(k, w)| {
            let (name, window_secs) = k.rsplit_once('\u{1f}')?;
            Some((name, window_secs.parse().ok()?, *w))
        })
    }

    /// Sets a counter's window as an import brings it: its start and count replace what was
    /// kept. What requests in flight reserved in that same window stays theirs (they settle
    /// against it); marked changed, so a backend that keeps windows writes it.
    fn restore(&mut self, name: &str, window_secs: u64, start: u64, count: u64) {
        let k = key(name, window_secs);
        let reserved = self
            .windows
            .get(&k)
            .filter(|w| w.start == start)
            .map_or(0, |w| w.reserved);
        self.windows.insert(
            k.clone(),
            Window {
                start,
                count,
                reserved,
            },
        );
        self.mark_dirty(&k);
    }

    /// The live window of a counter, if it has one in the current window.
    fn current(&self, k: &str, window_secs: u64, now: u64) -> Window {
        let start = window_start(now, window_secs);
        match self.windows.get(k) {
            Some(w) if w.start == start => *w,
            _ => Window {
                start,
                count: 0,
                reserved: 0,
            },
        }
    }

    /// The live count of a counter: 0 when it has none yet or its window has passed.
    fn count(&self, k: &str, window_secs: u64, now: u64) -> u64 {
        self.current(k, window_secs, now).count
    }

    /// Changes the counter's window for `now`, started afresh if the old one has passed.
    /// Looks up by `&str` first: only a counter seen for the first time costs an owned key.
    fn with_window(&mut self, k: &str, window_secs: u64, now: u64, f: impl FnOnce(&mut Window)) {
        let start = window_start(now, window_secs);
        let fresh = Window {
            start,
            count: 0,
            reserved: 0,
        };
        if let Some(w) = self.windows.get_mut(k) {
            if w.start != start {
                *w = fresh;
            }
            f(w);
            return;
        }
        let mut w = fresh;
        f(&mut w);
        self.windows.insert(k.to_string(), w);
    }

    fn mark_dirty(&mut self, k: &str) {
        if !self.dirty.contains(k) {
            self.dirty.insert(k.to_string());
        }
        self.removed.remove(k);
    }

    /// Adds to a counter's use, starting a new window if the old one has passed.
    fn charge(&mut self, k: &str, window_secs: u64, now: u64, amount: u64) {
        self.with_window(k, window_secs, now, |w| {
            w.count = w.count.saturating_add(amount)
        });
        self.mark_dirty(k);
    }

    /// Takes `amount` back from a counter's use or reservation, in the window that began at
    /// `at` only: a window that has passed since keeps nothing to take back.
    fn take_back(&mut self, k: &str, window_secs: u64, at: u64, now: u64, amount: u64, used: bool) {
        if window_start(at, window_secs) != window_start(now, window_secs) {
            return;
        }
        if let Some(w) = self.windows.get_mut(k) {
            if used {
                w.count = w.count.saturating_sub(amount);
                self.mark_dirty(k);
            } else {
                w.reserved = w.reserved.saturating_sub(amount);
            }
        }
    }

    fn in_use(&self, limit: &Limit, now: u64) -> Use {
        match limit.kind {
            LimitKind::Parallel => Use {
                used: self.in_flight.get(&limit.name).copied().unwrap_or(0),
                reserved: 0,
            },
            _ => {
                let w = self.current(&key(&limit.name, limit.window_secs), limit.window_secs, now);
                Use {
                    used: w.count,
                    reserved: w.reserved,
                }
            }
        }
    }

    /// Whether `amount` more fits `limit` now, beside what is used and reserved.
    fn check(&self, limit: &Limit, amount: u64, now: u64) -> Result<(), OverLimit> {
        let u = self.in_use(limit, now);
        let used = u.used.saturating_add(u.reserved);
        if used < limit.max && used.saturating_add(amount) <= limit.max {
            return Ok(());
        }
        let retry_after_secs = match limit.kind {
            LimitKind::Parallel => 0,
            _ => seconds_left(now, limit.window_secs),
        };
        Err(OverLimit {
            limit: limit.clone(),
            used,
            wanted: amount,
            retry_after_secs,
        })
    }

    /// Takes `amount` of `limit` (checked first with [`Self::check`]); its standing after.
    fn hold(&mut self, limit: &Limit, amount: u64, now: u64) -> Standing {
        match limit.kind {
            LimitKind::Parallel => {
                *self.in_flight.entry(limit.name.clone()).or_insert(0) += 1;
            }
            LimitKind::Requests => {
                let k = key(&limit.name, limit.window_secs);
                self.charge(&k, limit.window_secs, now, amount);
            }
            LimitKind::Tokens | LimitKind::MicroUsd => {
                let k = key(&limit.name, limit.window_secs);
                self.with_window(&k, limit.window_secs, now, |w| {
                    w.reserved = w.reserved.saturating_add(amount)
                });
            }
        }
        let u = self.in_use(limit, now);
        Standing {
            limit: limit.clone(),
            remaining: limit.max.saturating_sub(u.used.saturating_add(u.reserved)),
            reset_secs: match limit.kind {
                LimitKind::Parallel => 0,
                _ => seconds_left(now, limit.window_secs),
            },
        }
    }

    /// Ends what a reservation made at `at` held of one limit: `actual` replaces a budget's
    /// reservation (None: released, nothing charged, a request slot given back too).
    fn end(&mut self, limit: &Limit, amount: u64, at: u64, actual: Option<Actual>, now: u64) {
        let k = key(&limit.name, limit.window_secs);
        match limit.kind {
            LimitKind::Parallel => {
                if let Some(n) = self.in_flight.get_mut(&limit.name) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.in_flight.remove(&limit.name);
                    }
                }
            }
            LimitKind::Requests => {
                if actual.is_none() {
                    self.take_back(&k, limit.window_secs, at, now, amount, true);
                }
            }
            LimitKind::Tokens | LimitKind::MicroUsd => {
                self.take_back(&k, limit.window_secs, at, now, amount, false);
                let used = match (actual, limit.kind) {
                    (Some(a), LimitKind::Tokens) => a.tokens,
                    (Some(a), _) => a.micro_usd,
                    (None, _) => 0,
                };
                if used > 0 {
                    self.charge(&k, limit.window_secs, now, used);
                }
            }
        }
    }

    /// Drops counters whose window has passed (they would read as 0 anyway) and that hold no
    /// reservation (see [`ShardedWindows::prune_now_and_then`]).
    fn prune(&mut self, now: u64) {
        let stale: Vec<String> = self
            .windows
            .iter()
            .filter(|(k, w)| {
                let window_secs = window_of(k).unwrap_or(LIFETIME);
                window_secs != LIFETIME
                    && w.reserved == 0
                    && w.start != window_start(now, window_secs)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.windows.remove(&k);
            self.dirty.remove(&k);
            self.removed.insert(k);
        }
    }
}

/// How many shards the counters are split into. A request locks only the shards its limits
/// fall in, so workers checking different keys' limits do not wait for each other; 64 makes
/// two unrelated keys share a shard rarely even on a machine with many cores.
const SHARDS: usize = 64;

/// The shard a counter's name falls in: all windows of one name (and its requests in flight)
/// are in the same shard.
fn shard_of(name: &str) -> usize {
    super::shard::shard_of(name.as_bytes(), SHARDS)
}

/// The name part of a stored key (see [`key`]).
fn name_of(key: &str) -> &str {
    key.rsplit_once('\u{1f}').map_or(key, |(name, _)| name)
}

/// Every counter's windows, split by name into shards, each behind its own short mutex.
///
/// A reservation over several limits is all or nothing: it locks every shard its limits fall
/// in, always in ascending shard order (so two reservations can never wait on each other in a
/// circle), checks them all, then takes them all.
pub struct ShardedWindows {
    shards: Box<[Mutex<Windows>]>,
    /// Unix seconds of the last prune: read by every change, written once a minute.
    last_prune: AtomicU64,
}

impl Default for ShardedWindows {
    fn default() -> Self {
        ShardedWindows {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            last_prune: AtomicU64::new(0),
        }
    }
}

/// The shards a caller holds, in ascending order.
pub struct Locked<'a> {
    guards: Vec<(usize, MutexGuard<'a, Windows>)>,
}

impl Locked<'_> {
    /// Held shard number `i`. Callers only ask for shards they locked: one they did not is a
    /// bug, answered with the first held shard rather than a panic.
    fn at(&mut self, i: usize) -> &mut Windows {
        let at = self.guards.iter().position(|(s, _)| *s == i).unwrap_or(0);
        debug_assert_eq!(self.guards[at].0, i, "shard {i} is not held");
        &mut self.guards[at].1
    }

    /// The held shard that `name` falls in.
    fn shard(&mut self, name: &str) -> &mut Windows {
        self.at(shard_of(name))
    }

    /// Every counter's window as kept, ordered by name and window length: (name,
    /// window_secs, window). What an export carries (it leaves `reserved` out).
    pub fn kept(&self) -> Vec<(&str, u64, Window)> {
        let mut kept: Vec<(&str, u64, Window)> =
            self.guards.iter().flat_map(|(_, w)| w.kept()).collect();
        kept.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        kept
    }

    /// Sets a counter's window as an import brings it: its start and count replace what was
    /// kept, and what requests in flight reserved in that same window stays theirs.
    pub fn restore(&mut self, name: &str, window_secs: u64, start: u64, count: u64) {
        self.shard(name).restore(name, window_secs, start, count);
    }
}

/// What changed since the last write: counters to write and pruned ones to delete.
#[derive(Default)]
pub struct Changed {
    pub written: Vec<(String, Window)>,
    pub removed: Vec<String>,
}

impl ShardedWindows {
    /// Windows read back from where a backend keeps them, keyed as [`key`] makes them.
    pub fn loaded(windows: HashMap<String, Window>) -> ShardedWindows {
        let sharded = ShardedWindows::default();
        for (k, w) in windows {
            sharded.lock(shard_of(name_of(&k))).windows.insert(k, w);
        }
        sharded
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Windows> {
        self.shards[shard].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shard of each name, in order.
    fn shards_of<'a>(names: impl Iterator<Item = &'a str>) -> Vec<usize> {
        names.map(shard_of).collect()
    }

    /// Locks `shards` (numbers, in any order, repeats allowed) in ascending order: the one
    /// order every caller takes them in.
    fn lock_for(&self, shards: &[usize]) -> Locked<'_> {
        let mut sorted = shards.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        Locked {
            guards: sorted.into_iter().map(|i| (i, self.lock(i))).collect(),
        }
    }

    /// Every shard, locked in ascending order: a consistent view for an export or import.
    pub fn all(&self) -> Locked<'_> {
        Locked {
            guards: (0..SHARDS).map(|i| (i, self.lock(i))).collect(),
        }
    }

    /// Admits a request against all of `held` or none: each (limit, amount) must fit.
    pub fn reserve(&self, held: &[(Limit, u64)], now: u64) -> Result<Reservation, OverLimit> {
        // An amount larger than the whole limit counts as the whole limit: such a request
        // fits an unused window instead of never fitting.
        let held: Vec<(Limit, u64)> = held
            .iter()
            .map(|(l, amount)| (l.clone(), (*amount).min(l.max)))
            .collect();
        let shards = Self::shards_of(held.iter().map(|(l, _)| l.name.as_str()));
        let mut locked = self.lock_for(&shards);
        for ((limit, amount), shard) in held.iter().zip(&shards) {
            locked.at(*shard).check(limit, *amount, now)?;
        }
        let standing = held
            .iter()
            .zip(&shards)
            .map(|((limit, amount), shard)| locked.at(*shard).hold(limit, *amount, now))
            .collect();
        let reservation = Ok(Reservation {
            held,
            at: now,
            standing,
            lease: None,
            deferred: false,
        });
        drop(locked);
        self.prune_now_and_then(now);
        reservation
    }

    /// Ends a reservation: `actual` replaces budgets' reservations (None: released, nothing
    /// charged, request slots given back too).
    pub fn end(&self, r: &Reservation, actual: Option<Actual>, now: u64) {
        let shards = Self::shards_of(r.held.iter().map(|(l, _)| l.name.as_str()));
        let mut locked = self.lock_for(&shards);
        for ((limit, amount), shard) in r.held.iter().zip(&shards) {
            locked.at(*shard).end(limit, *amount, r.at, actual, now);
        }
        drop(locked);
        self.prune_now_and_then(now);
    }

    /// Adds to counters' use.
    pub fn add(&self, adds: &[CounterAdd], now: u64) {
        let shards = Self::shards_of(adds.iter().map(|a| a.name.as_str()));
        let mut locked = self.lock_for(&shards);
        for (add, shard) in adds.iter().zip(&shards) {
            let k = key(&add.name, add.window_secs);
            locked
                .at(*shard)
                .charge(&k, add.window_secs, now, add.amount);
        }
        drop(locked);
        self.prune_now_and_then(now);
    }

    /// Drops counters whose window has passed from every shard, at most once a minute: per-user
    /// or per-IP limits then keep memory bounded, even in a shard no request touches again.
    /// Called by changes once their own shards are unlocked; one of them does the work.
    fn prune_now_and_then(&self, now: u64) {
        let last = self.last_prune.load(Ordering::Relaxed);
        let due = now >= last.saturating_add(PRUNE_EVERY_SECS);
        if !due
            || self
                .last_prune
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for i in 0..SHARDS {
            self.lock(i).prune(now);
        }
    }

    /// A counter's count in the window `now` falls in.
    pub fn count(&self, name: &str, window_secs: u64, now: u64) -> u64 {
        self.lock(shard_of(name))
            .count(&key(name, window_secs), window_secs, now)
    }

    /// What each of `limits` has used and reserved now, read at one moment.
    pub fn usage(&self, limits: &[Limit], now: u64) -> Vec<Use> {
        let shards = Self::shards_of(limits.iter().map(|l| l.name.as_str()));
        let mut locked = self.lock_for(&shards);
        limits
            .iter()
            .zip(&shards)
            .map(|(l, shard)| locked.at(*shard).in_use(l, now))
            .collect()
    }

    /// Takes the counters changed and pruned since the last call, one shard at a time.
    pub fn take_changed(&self) -> Changed {
        let mut changed = Changed::default();
        for i in 0..SHARDS {
            let mut shard = self.lock(i);
            let shard = &mut *shard;
            changed.removed.extend(shard.removed.drain());
            for k in shard.dirty.drain() {
                if let Some(w) = shard.windows.get(&k) {
                    changed.written.push((k, *w));
                }
            }
        }
        changed
    }

    /// Marks counters changed again (their write failed), so the next write carries them.
    pub fn mark_changed(&self, keys: impl IntoIterator<Item = String>) {
        for k in keys {
            let mut shard = self.lock(shard_of(name_of(&k)));
            if shard.windows.contains_key(&k) {
                shard.dirty.insert(k);
            }
        }
    }

    /// Marks every counter changed (what is kept was lost and must be written again).
    pub fn mark_all_changed(&self) {
        for i in 0..SHARDS {
            let mut shard = self.lock(i);
            let all: Vec<String> = shard.windows.keys().cloned().collect();
            shard.dirty.extend(all);
        }
    }
}

/// A counter backend that keeps the windows in memory (exact, sharded locks) and only
/// differs in how changed windows are written: every such backend gets `CounterStore` from
/// this.
pub trait CounterWindows: Send + Sync {
    fn windows(&self) -> &ShardedWindows;
    /// Writes the windows marked changed, if the backend keeps them anywhere.
    fn write_changed(&self) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl<T: CounterWindows> CounterStore for T {
    async fn reserve(&self, limits: &[(Limit, u64)]) -> Result<Reservation, AdmitError> {
        self.windows()
            .reserve(limits, now_secs())
            .map_err(AdmitError::Over)
    }

    async fn settle(&self, reservation: &Reservation, actual: Actual) -> Result<(), StoreError> {
        self.windows().end(reservation, Some(actual), now_secs());
        Ok(())
    }

    async fn release(&self, reservation: &Reservation) -> Result<(), StoreError> {
        self.windows().end(reservation, None, now_secs());
        Ok(())
    }

    async fn add(&self, adds: &[CounterAdd]) -> Result<(), StoreError> {
        self.windows().add(adds, now_secs());
        Ok(())
    }

    async fn get(&self, name: &str, window_secs: u64) -> Result<u64, StoreError> {
        Ok(self.peek(name, window_secs))
    }

    fn peek(&self, name: &str, window_secs: u64) -> u64 {
        self.windows().count(name, window_secs, now_secs())
    }

    async fn usage(&self, limits: &[Limit]) -> Result<Vec<Use>, StoreError> {
        Ok(self.windows().usage(limits, now_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_restart_and_only_charges_mark_dirty() {
        let mut inner = Windows::default();
        let k = key("rpm:k", 60);
        assert_eq!(inner.count(&k, 60, 120), 0);
        assert!(inner.windows.is_empty(), "reading creates nothing");
        inner.charge(&k, 60, 120, 2);
        inner.charge(&k, 60, 179, 3);
        assert_eq!(inner.count(&k, 60, 179), 5, "same window adds up");
        assert_eq!(inner.count(&k, 60, 180), 0, "the next window starts empty");
        inner.charge(&k, 60, 181, 1);
        assert_eq!(inner.count(&k, 60, 181), 1);
        assert_eq!(inner.dirty.len(), 1);
        let forever = key("exposures:s:a", 0);
        inner.charge(&forever, 0, 10, 1);
        assert_eq!(
            inner.count(&forever, 0, 1_000_000),
            1,
            "window 0 never resets"
        );
    }

    /// 2026-01-31 23:59:59 UTC and the next second.
    const JAN_END: u64 = 1_769_903_999;

    #[test]
    fn a_monthly_window_resets_on_the_first_utc() {
        assert_eq!(window_start(JAN_END, MONTH), 1_767_225_600, "2026-01-01");
        assert_eq!(window_start(JAN_END + 1, MONTH), JAN_END + 1, "2026-02-01");
        assert_eq!(seconds_left(JAN_END, MONTH), 1);
        // February 2028 has 29 days; December rolls over the year.
        let feb_2028 = 1_832_976_000;
        assert_eq!(seconds_left(feb_2028, MONTH), 29 * 86_400);
        let dec_2026 = 1_796_083_200;
        assert_eq!(seconds_left(dec_2026, MONTH), 31 * 86_400);

        let w = ShardedWindows::default();
        let budget = Limit::new("usd", 100, MONTH, LimitKind::MicroUsd);
        let r = w.reserve(&[(budget.clone(), 60)], JAN_END - 10).unwrap();
        w.end(
            &r,
            Some(Actual {
                tokens: 0,
                micro_usd: 90,
            }),
            JAN_END - 5,
        );
        assert!(
            w.reserve(&[(budget.clone(), 20)], JAN_END).is_err(),
            "90 + 20 > 100"
        );
        assert!(
            w.reserve(&[(budget, 20)], JAN_END + 1).is_ok(),
            "a new month"
        );
    }

    #[test]
    fn reservations_hold_until_settled_and_release_gives_everything_back() {
        let w = ShardedWindows::default();
        let now = 1_000_000;
        let in_use = |limit: &Limit| w.usage(std::slice::from_ref(limit), now)[0];
        let rpm = Limit::new("rpm", 10, 60, LimitKind::Requests);
        let tokens = Limit::new("tok", 1000, 3600, LimitKind::Tokens);
        let parallel = Limit::new("par", 1, 0, LimitKind::Parallel);
        let held = [
            (rpm.clone(), 1),
            (tokens.clone(), 600),
            (parallel.clone(), 1),
        ];
        let first = w.reserve(&held, now).unwrap();
        assert_eq!(first.standing[1].remaining, 400);
        // A second: its 600 tokens do not fit beside the first's (nor its slot in flight).
        let Err(refused) = w.reserve(&held, now) else {
            panic!("one in flight at most");
        };
        assert_eq!(refused.limit.name, "tok", "the first that does not fit");
        assert_eq!(in_use(&rpm).used, 1, "a refusal charges nothing");
        w.end(
            &first,
            Some(Actual {
                tokens: 300,
                micro_usd: 0,
            }),
            now,
        );
        assert_eq!(
            in_use(&tokens),
            Use {
                used: 300,
                reserved: 0
            }
        );
        assert_eq!(in_use(&parallel).used, 0);

        let second = w.reserve(&held, now).unwrap();
        assert_eq!(in_use(&rpm).used, 2);
        w.end(&second, None, now);
        assert_eq!(
            in_use(&rpm).used,
            1,
            "released: the request slot comes back"
        );
        assert_eq!(
            in_use(&tokens),
            Use {
                used: 300,
                reserved: 0
            }
        );
        // Too big for what is left, though not for the whole budget.
        assert!(w.reserve(&[(tokens.clone(), 800)], now).is_err());
        // Bigger than the whole budget: counts as the whole budget, which is not free now.
        assert!(w.reserve(&[(tokens, 5000)], now).is_err());
    }

    #[test]
    fn a_restored_window_replaces_the_count_and_keeps_what_is_reserved_in_it() {
        let w = ShardedWindows::default();
        let tokens = Limit::new("tok", 1000, 3600, LimitKind::Tokens);
        let in_use = || w.usage(std::slice::from_ref(&tokens), 7200)[0];
        w.reserve(&[(tokens.clone(), 100)], 7200).unwrap();
        w.all().restore("tok", 3600, 7200, 40);
        let held = Use {
            used: 40,
            reserved: 100,
        };
        assert_eq!(in_use(), held);
        let changed = w.take_changed().written;
        assert_eq!(changed.len(), 1, "to be written");
        assert_eq!(changed[0].0, key("tok", 3600));
        // An earlier window: nothing is reserved there, and it reads as passed.
        w.all().restore("tok", 3600, 3600, 9);
        assert_eq!(in_use(), Use::default());
        let earlier = Window {
            start: 3600,
            count: 9,
            reserved: 0,
        };
        assert_eq!(w.all().kept(), vec![("tok", 3600, earlier)]);
    }

    #[test]
    fn counters_of_past_windows_are_pruned_and_noted_for_deletion() {
        let w = ShardedWindows::default();
        let add = |name: &str, window_secs: u64, now: u64| {
            let adds = [CounterAdd {
                name: name.into(),
                window_secs,
                amount: 1,
            }];
            w.add(&adds, now);
        };
        // The stale counter's shard is not touched again: pruning reaches it all the same.
        let names = names_in_different_shards(2);
        let (stale, fresh) = (&names[0], &names[1]);
        add(stale, 60, 100);
        add("ever", 0, 100);
        add(fresh, 60, 200);
        let kept: Vec<String> = w
            .all()
            .kept()
            .iter()
            .map(|(name, ..)| name.to_string())
            .collect();
        assert_eq!(kept.len(), 2, "{stale}'s minute has passed by 200");
        assert!(w.take_changed().removed.contains(&key(stale, 60)));
        assert!(kept.contains(&"ever".to_string()));
    }

    /// Counter names that fall in different shards, `n` of them.
    fn names_in_different_shards(n: usize) -> Vec<String> {
        let mut seen = HashSet::new();
        (0..)
            .map(|i| format!("limit-{i}"))
            .filter(|name| seen.insert(shard_of(name)))
            .take(n)
            .collect()
    }

    #[test]
    fn a_reservation_over_several_shards_is_all_or_nothing() {
        let names = names_in_different_shards(3);
        let w = ShardedWindows::default();
        let now = 1_000_000;
        let rpm = Limit::new(&names[0], 10, 60, LimitKind::Requests);
        let tokens = Limit::new(&names[1], 100, 3600, LimitKind::Tokens);
        let parallel = Limit::new(&names[2], 1, 0, LimitKind::Parallel);
        let all = [rpm.clone(), tokens.clone(), parallel.clone()];
        let first = w
            .reserve(
                &[
                    (rpm.clone(), 1),
                    (tokens.clone(), 30),
                    (parallel.clone(), 1),
                ],
                now,
            )
            .unwrap();
        // The last limit, in another shard, is full: nothing in the first two is taken.
        let refused = w.reserve(
            &[(rpm.clone(), 1), (tokens.clone(), 30), (parallel, 1)],
            now,
        );
        assert_eq!(refused.unwrap_err().limit.name, names[2]);
        let used: Vec<(u64, u64)> = w
            .usage(&all, now)
            .iter()
            .map(|u| (u.used, u.reserved))
            .collect();
        assert_eq!(used, vec![(1, 0), (0, 30), (1, 0)]);
        w.end(&first, None, now);
        let used: Vec<(u64, u64)> = w
            .usage(&all, now)
            .iter()
            .map(|u| (u.used, u.reserved))
            .collect();
        assert_eq!(
            used,
            vec![(0, 0), (0, 0), (0, 0)],
            "released in every shard"
        );
    }

    /// Threads reserve the same limits, named in opposite orders, across shards: none waits
    /// forever on another (shards are locked in one order), and every count is exact.
    #[test]
    fn concurrent_reservations_across_shards_are_exact_and_never_deadlock() {
        let names = names_in_different_shards(2);
        let w = std::sync::Arc::new(ShardedWindows::default());
        let now = 1_000_000;
        let a = Limit::new(&names[0], 1_000, 3600, LimitKind::Requests);
        let b = Limit::new(&names[1], 1_000_000, 3600, LimitKind::Tokens);
        // Each thread reports how many it got admitted; a deadlock shows as a missing report.
        let (report, reports) = std::sync::mpsc::channel();
        for t in 0..8 {
            let (w, a, b, report) = (w.clone(), a.clone(), b.clone(), report.clone());
            std::thread::spawn(move || {
                let mut admitted = 0u64;
                for _ in 0..500 {
                    let held = if t % 2 == 0 {
                        vec![(a.clone(), 1), (b.clone(), 10)]
                    } else {
                        vec![(b.clone(), 10), (a.clone(), 1)]
                    };
                    if let Ok(r) = w.reserve(&held, now) {
                        admitted += 1;
                        let actual = Actual {
                            tokens: 7,
                            micro_usd: 0,
                        };
                        w.end(&r, Some(actual), now);
                    }
                }
                let _ = report.send(admitted);
            });
        }
        let admitted: u64 = (0..8)
            .map(|_| {
                reports
                    .recv_timeout(std::time::Duration::from_secs(60))
                    .expect("a thread is stuck: shards locked in different orders")
            })
            .sum();
        assert_eq!(admitted, 1_000, "exactly the request limit, of 4,000 tries");
        let used = w.usage(&[a, b], now);
        assert_eq!((used[0].used, used[0].reserved), (1_000, 0));
        assert_eq!((used[1].used, used[1].reserved), (7_000, 0));
    }

    #[test]
    fn changed_counters_are_taken_once_and_marked_again_after_a_failed_write() {
        let names = names_in_different_shards(2);
        let w = ShardedWindows::default();
        let adds: Vec<CounterAdd> = names
            .iter()
            .map(|n| CounterAdd {
                name: n.clone(),
                window_secs: 60,
                amount: 2,
            })
            .collect();
        w.add(&adds, 120);
        let mut written: Vec<String> = w
            .take_changed()
            .written
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        written.sort();
        let mut expected: Vec<String> = names.iter().map(|n| key(n, 60)).collect();
        expected.sort();
        assert_eq!(written, expected);
        assert!(w.take_changed().written.is_empty(), "taken once");
        w.mark_changed(written.clone());
        assert_eq!(w.take_changed().written.len(), 2, "marked again");
        let loaded = ShardedWindows::loaded(
            names
                .iter()
                .map(|n| {
                    (
                        key(n, 60),
                        Window {
                            start: 120,
                            count: 5,
                            reserved: 0,
                        },
                    )
                })
                .collect(),
        );
        assert_eq!(loaded.count(&names[1], 60, 150), 5, "loaded into its shard");
        loaded.mark_all_changed();
        assert_eq!(loaded.take_changed().written.len(), 2);
    }
}
