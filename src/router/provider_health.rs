//! What the gateway knows about each provider's health: its circuit breaker, its recent error
//! rate, and an EWMA of its time to first byte. The registry lives in `AppState`, outside the
//! snapshot and keyed by provider name, so a reload keeps what was learnt.
//!
//! [`Registry::snapshot`] is the public read-out for `/admin/providers`, `/metrics` and
//! `/health/ready`.
//!
//! Webhooks hear of a breaker opening (closed -> open: one `breaker.opened` per outage, not one
//! per failed half-open probe) and closing again (`breaker.closed`), and of a provider's health
//! checks starting to fail (`provider.health_check_failed`: the first failed check after a
//! passing one, or the first check). Each is raised after the entry's lock is released.

use super::balance::Pools;
use super::breaker::{Admit, Breaker, BreakerState};
use crate::config::BreakerPolicy;
use crate::snapshot::Snapshot;
use crate::webhooks::{Event, Webhooks};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Weight of the newest sample in the latency EWMA.
const EWMA_ALPHA: f64 = 0.3;

/// One provider's health, as the admin API and metrics show it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ProviderHealth {
    pub name: String,
    pub breaker: BreakerState,
    pub consecutive_failures: u32,
    /// Failed share of the calls in the breaker's window, 0..1.
    pub error_rate: f64,
    /// EWMA of the time to first byte of successful calls; `None` before the first.
    pub latency_ewma_ms: Option<f64>,
    /// EWMA of the whole reply's time (a stream's until its end) of successful calls; `None`
    /// before the first.
    pub reply_ewma_ms: Option<f64>,
    /// Since start: calls made (streams broken mid-way count again as failures).
    pub calls: u64,
    pub failures: u64,
    /// The last active health check, if the provider has one.
    pub last_check: Option<CheckReport>,
    /// False while the breaker is open: the provider is skipped.
    pub can_serve: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct CheckReport {
    pub ok: bool,
    /// Unix seconds.
    pub at: u64,
}

type Entries = HashMap<Arc<str>, Arc<Entry>>;

/// All providers' health; cheap to share, safe to use from every worker.
#[derive(Default)]
pub struct Registry {
    /// Read by every request, changed only when a provider is first called or pruned: a map
    /// swapped whole, so readers share no lock (an `RwLock`'s reader count is a cache line
    /// every core writes).
    entries: ArcSwap<Entries>,
    /// Serialises the rare changes, so two never lose each other's entry.
    changing: Mutex<()>,
    pools: Pools,
    /// Where breaker and health-check changes are announced.
    webhooks: Webhooks,
}

impl Registry {
    /// A registry that announces nothing (unit tests, tools).
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry that tells `webhooks` when breakers open and close and checks start failing.
    pub fn with_webhooks(webhooks: Webhooks) -> Self {
        Registry {
            webhooks,
            ..Self::default()
        }
    }

    /// The provider's entry, created closed on first use.
    pub fn entry(&self, provider: &str) -> Arc<Entry> {
        if let Some(e) = self.read().get(provider) {
            return e.clone();
        }
        self.change(|entries| {
            entries
                .entry(Arc::from(provider))
                .or_insert_with(|| Arc::new(Entry::new(provider, self.webhooks.clone())))
                .clone()
        })
    }

    /// Changes a copy of the map and swaps it in, one change at a time.
    fn change<T>(&self, f: impl FnOnce(&mut Entries) -> T) -> T {
        let _one_at_a_time = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let mut entries = Entries::clone(&self.read());
        let out = f(&mut entries);
        self.entries.store(Arc::new(entries));
        out
    }

    /// The EWMA of a provider's time to first byte, if it has served anything yet.
    pub fn latency_ms(&self, provider: &str) -> Option<f64> {
        self.read().get(provider).and_then(|e| e.latency_ms.get())
    }

    /// Balancing state (round-robin positions, weighted-round-robin credits).
    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// The health of every provider `live` serves, in name order. Providers never called yet
    /// are reported closed and healthy.
    pub fn snapshot(&self, live: &Snapshot) -> Vec<ProviderHealth> {
        let now = Instant::now();
        let entries = self.read();
        live.config
            .providers
            .iter()
            .map(|p| Self::health_of(&entries, &p.name, now))
            .collect()
    }

    /// One provider's health, as [`Self::snapshot`] reports it (for `ctx.provider(name)`).
    pub fn health(&self, provider: &str) -> ProviderHealth {
        Self::health_of(&self.read(), provider, Instant::now())
    }

    fn health_of(entries: &Entries, name: &str, now: Instant) -> ProviderHealth {
        match entries.get(name) {
            Some(e) => e.report(name, now),
            None => ProviderHealth {
                name: name.to_string(),
                breaker: BreakerState::Closed,
                consecutive_failures: 0,
                error_rate: 0.0,
                latency_ewma_ms: None,
                reply_ewma_ms: None,
                calls: 0,
                failures: 0,
                last_check: None,
                can_serve: true,
            },
        }
    }

    /// Forgets providers `live` no longer serves, so a removed and re-added provider starts
    /// afresh and the map does not grow with renames.
    pub fn prune(&self, live: &Snapshot) {
        self.change(|entries| entries.retain(|name, _| live.provider(name).is_some()));
    }

    fn read(&self) -> arc_swap::Guard<Arc<Entries>> {
        self.entries.load()
    }
}

/// One provider's state. Every request to the provider reads it and reports to it, so the
/// common case takes the lock once: a closed breaker admits without it (`closed`), and the
/// latency averages are atomics. Only the report of how a call went locks, to count it in
/// the breaker's window.
pub struct Entry {
    inner: Mutex<State>,
    /// Whether the breaker is closed: written under `inner`'s lock whenever the breaker may
    /// have changed, read without it by `admit`. A call admitted just as another thread trips
    /// the breaker is one the lock would also have let through a moment earlier.
    closed: AtomicBool,
    /// EWMA of the time to first byte of successful calls.
    latency_ms: Ewma,
    /// EWMA of the whole reply's time of complete replies.
    reply_ms: Ewma,
    name: String,
    webhooks: Webhooks,
}

struct State {
    breaker: Breaker,
    calls: u64,
    failures: u64,
    last_check: Option<CheckReport>,
}

impl Entry {
    fn new(name: &str, webhooks: Webhooks) -> Self {
        Entry {
            inner: Mutex::new(State {
                breaker: Breaker::new(Instant::now()),
                calls: 0,
                failures: 0,
                last_check: None,
            }),
            closed: AtomicBool::new(true),
            latency_ms: Ewma::default(),
            reply_ms: Ewma::default(),
            name: name.to_string(),
            webhooks,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `change` on the state under the lock, then announces a breaker that opened
    /// (from closed) or closed, once the lock is released.
    fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let (out, event) = {
            let mut st = self.lock();
            let before = st.breaker.state();
            let out = change(&mut st);
            let after = st.breaker.state();
            self.closed
                .store(after == BreakerState::Closed, Ordering::Release);
            let event = match (before, after) {
                (BreakerState::Closed, BreakerState::Open) => Some(Event::BreakerOpened {
                    provider: self.name.clone(),
                    consecutive_failures: st.breaker.consecutive_failures(),
                    error_rate: st.breaker.error_rate(Instant::now()),
                }),
                (BreakerState::Open | BreakerState::HalfOpen, BreakerState::Closed) => {
                    Some(Event::BreakerClosed {
                        provider: self.name.clone(),
                    })
                }
                _ => None,
            };
            (out, event)
        };
        if let Some(event) = event {
            tracing::info!(provider = %self.name, event = event.kind().as_str(), "circuit breaker changed");
            self.webhooks.emit(event);
        }
        out
    }

    /// A reply served by this provider ended, complete, after `total` (a stream: its whole
    /// length): the EWMA scripts read as `latency_ms`.
    pub fn reply_completed(&self, total: Duration) {
        self.reply_ms.add(total.as_secs_f64() * 1000.0);
    }

    /// Asks the breaker for one call. `Err` carries how long until it may let one through.
    pub fn admit(self: &Arc<Self>, policy: &BreakerPolicy) -> Result<Permit, Duration> {
        // A closed breaker admits every call: no lock for the common case. (The breaker
        // adopts a changed window when the call is reported, as it does here under the lock.)
        if self.closed.load(Ordering::Acquire) {
            return Ok(Permit::new(self.clone(), *policy, false));
        }
        let admitted = {
            let mut st = self.lock();
            let admitted = st.breaker.admit(policy, Instant::now());
            self.closed.store(
                st.breaker.state() == BreakerState::Closed,
                Ordering::Release,
            );
            admitted
        };
        match admitted {
            Admit::Yes => Ok(Permit::new(self.clone(), *policy, false)),
            Admit::Probe => Ok(Permit::new(self.clone(), *policy, true)),
            Admit::No(wait) => Err(wait),
        }
    }

    /// A stream that started well broke later: an error for the error rate and the breaker.
    pub fn stream_broke(&self, policy: &BreakerPolicy) {
        self.update(|st| {
            st.failures += 1;
            st.breaker.failure(policy, Instant::now());
        });
    }

    /// The result of an active health check.
    pub fn checked(&self, policy: &BreakerPolicy, ok: bool) {
        let started_failing = self.update(|st| {
            let was_failing = st.last_check.as_ref().is_some_and(|c| !c.ok);
            st.last_check = Some(CheckReport {
                ok,
                at: crate::clock::now_secs(),
            });
            if ok {
                st.breaker.check_passed(Instant::now());
            } else {
                st.breaker.failure(policy, Instant::now());
            }
            (!ok && !was_failing).then(|| st.breaker.visible_state(Instant::now()))
        });
        if let Some(breaker) = started_failing {
            self.webhooks.emit(Event::ProviderHealthCheckFailed {
                provider: self.name.clone(),
                breaker: breaker_name(breaker).to_string(),
            });
        }
    }

    fn report(&self, name: &str, now: Instant) -> ProviderHealth {
        let st = self.lock();
        let breaker = st.breaker.visible_state(now);
        ProviderHealth {
            name: name.to_string(),
            breaker,
            consecutive_failures: st.breaker.consecutive_failures(),
            error_rate: st.breaker.error_rate(now),
            latency_ewma_ms: self.latency_ms.get(),
            reply_ewma_ms: self.reply_ms.get(),
            calls: st.calls,
            failures: st.failures,
            last_check: st.last_check.clone(),
            can_serve: breaker != BreakerState::Open,
        }
    }
}

/// An exponentially weighted moving average of milliseconds, updated without a lock: the
/// `f64`'s bits in an atomic, `NONE` before the first sample.
struct Ewma(AtomicU64);

impl Ewma {
    /// A NaN's bits: no duration is NaN, so no sample can be taken for it.
    const NONE: u64 = u64::MAX;

    fn add(&self, ms: f64) {
        // `fetch_update` retries when another thread added a sample meanwhile, so none is lost.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let next = if bits == Self::NONE {
                    ms
                } else {
                    let prev = f64::from_bits(bits);
                    prev + EWMA_ALPHA * (ms - prev)
                };
                Some(next.to_bits())
            });
    }

    fn get(&self) -> Option<f64> {
        let bits = self.0.load(Ordering::Relaxed);
        (bits != Self::NONE).then(|| f64::from_bits(bits))
    }
}

impl Default for Ewma {
    fn default() -> Self {
        Ewma(AtomicU64::new(Self::NONE))
    }
}

/// A breaker state as the API and webhooks spell it.
fn breaker_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
    }
}

/// Leave to make one call; report how it went. Dropping it unreported (the request was
/// cancelled) frees a half-open probe slot instead of wedging the breaker half-open.
pub struct Permit {
    entry: Arc<Entry>,
    policy: BreakerPolicy,
    probe: bool,
    reported: bool,
}

impl Permit {
    fn new(entry: Arc<Entry>, policy: BreakerPolicy, probe: bool) -> Self {
        Permit {
            entry,
            policy,
            probe,
            reported: false,
        }
    }

    /// Served; `first_byte` feeds the latency EWMA.
    pub fn success(mut self, first_byte: Duration) {
        self.reported = true;
        let policy = self.policy;
        self.entry.latency_ms.add(first_byte.as_secs_f64() * 1000.0);
        self.entry.update(|st| {
            st.calls += 1;
            st.breaker.success(&policy, Instant::now());
        });
    }

    /// The upstream answered, but refused the request itself (a 4xx other than 429): the
    /// provider is up, so this counts as a success, without a latency sample.
    pub fn answered(mut self) {
        self.reported = true;
        let policy = self.policy;
        self.entry.update(|st| {
            st.calls += 1;
            st.breaker.success(&policy, Instant::now());
        });
    }

    /// A retryable failure: unreachable, timed out, 429 or 5xx.
    pub fn failure(mut self) {
        self.reported = true;
        let policy = self.policy;
        self.entry.update(|st| {
            st.calls += 1;
            st.failures += 1;
            st.breaker.failure(&policy, Instant::now());
        });
    }

    /// The entry this permit reports to, for watching a stream after its first event.
    pub fn entry(&self) -> &Arc<Entry> {
        &self.entry
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.entry.lock().breaker.probe_abandoned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_feed_the_breaker_and_latency() {
        let registry = Registry::new();
        let policy = BreakerPolicy {
            consecutive_failures: 2,
            cool_down: Duration::from_millis(20),
            ..BreakerPolicy::default()
        };
        let e = registry.entry("a");
        e.admit(&policy)
            .unwrap()
            .success(Duration::from_millis(100));
        e.admit(&policy)
            .unwrap()
            .success(Duration::from_millis(200));
        let ms = registry.latency_ms("a").unwrap();
        assert!((ms - 130.0).abs() < 1e-6, "{ms}");
        e.admit(&policy).unwrap().failure();
        e.admit(&policy).unwrap().failure();
        assert!(e.admit(&policy).is_err(), "open after two failures");
        std::thread::sleep(Duration::from_millis(25));
        let probe = e.admit(&policy).unwrap();
        assert!(e.admit(&policy).is_err(), "only one probe");
        drop(probe);
        let probe = e.admit(&policy).unwrap();
        probe.answered();
        assert!(e.admit(&policy).is_ok(), "closed again");
    }

    #[test]
    fn a_breaker_opened_on_one_thread_refuses_on_every_thread() {
        // `admit` reads the breaker's state without the lock while it is closed: the threads
        // that trip it and the threads that ask must agree once it has opened.
        let registry = Registry::new();
        let policy = BreakerPolicy {
            consecutive_failures: 3,
            cool_down: Duration::from_secs(60),
            ..BreakerPolicy::default()
        };
        let e = registry.entry("a");
        let failed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    // Bounded, so a breaker that never refuses fails the test, not hangs it.
                    for _ in 0..1000 {
                        let Ok(permit) = e.admit(&policy) else { break };
                        permit.failure();
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        let failed = failed.into_inner();
        // Every thread stops at the first refusal; the calls already admitted as it opened
        // may still report, so at least the threshold and at most one per thread beyond it.
        assert!((3..=3 + 4).contains(&failed), "{failed} calls failed");
        for _ in 0..4 {
            std::thread::scope(|s| {
                s.spawn(|| assert!(e.admit(&policy).is_err(), "open for every thread"));
            });
        }
        let health = registry.health("a");
        assert_eq!(health.breaker, BreakerState::Open);
        assert_eq!(health.failures, u64::from(failed));
        // A passing health check closes it, and calls go through again.
        e.checked(&policy, true);
        assert!(e.admit(&policy).is_ok(), "closed again");
    }

    #[test]
    fn latency_averages_lose_no_sample_between_threads() {
        // From 0, each sample of 100 moves the average 30 % of the way: after n samples it is
        // 100 × (1 − 0.7ⁿ), whatever order the threads' samples land in. A lost update would
        // leave it lower.
        let e = Ewma::default();
        assert_eq!(e.get(), None);
        e.add(0.0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..5 {
                        e.add(100.0);
                    }
                });
            }
        });
        let expected = 100.0 * (1.0 - 0.7f64.powi(20));
        let got = e.get().unwrap_or_default();
        assert!((got - expected).abs() < 1e-9, "{got} vs {expected}");
    }

    #[test]
    fn breakers_and_failing_checks_are_announced_once_per_change() {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let (webhooks, mut receiver) = Webhooks::channel(metrics);
        let registry = Registry::with_webhooks(webhooks);
        let policy = BreakerPolicy {
            consecutive_failures: 2,
            cool_down: Duration::from_millis(20),
            ..BreakerPolicy::default()
        };
        let e = registry.entry("up");
        e.admit(&policy).unwrap().failure();
        e.admit(&policy).unwrap().failure();
        // A failed probe re-opens it: no second `breaker.opened`.
        std::thread::sleep(Duration::from_millis(25));
        e.admit(&policy).unwrap().failure();
        std::thread::sleep(Duration::from_millis(25));
        e.admit(&policy).unwrap().success(Duration::from_millis(5));
        // Checks: the first failure is announced, the second is not (it opens the breaker,
        // which is announced); a pass closes it, and the next failure is announced again.
        e.checked(&policy, false);
        e.checked(&policy, false);
        e.checked(&policy, true);
        e.checked(&policy, false);
        let mut kinds = Vec::new();
        while let Ok(q) = receiver.rx.try_recv() {
            kinds.push(q.event);
        }
        assert_eq!(
            kinds,
            vec![
                Event::BreakerOpened {
                    provider: "up".into(),
                    consecutive_failures: 2,
                    error_rate: 1.0,
                },
                Event::BreakerClosed {
                    provider: "up".into()
                },
                Event::ProviderHealthCheckFailed {
                    provider: "up".into(),
                    breaker: "closed".into(),
                },
                Event::BreakerOpened {
                    provider: "up".into(),
                    consecutive_failures: 2,
                    error_rate: 1.0,
                },
                Event::BreakerClosed {
                    provider: "up".into()
                },
                Event::ProviderHealthCheckFailed {
                    provider: "up".into(),
                    breaker: "closed".into(),
                },
            ]
        );
    }
}
