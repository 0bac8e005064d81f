//! A circuit breaker's state machine, kept free of clocks and I/O so it can be tested alone:
//! every call takes `now`.
//!
//! Closed: calls go through; it opens after `consecutive_failures` failures in a row, or when
//! the failure share over the window reaches `error_rate` (once `min_calls` were made).
//! Open: calls are refused until the cool-down has passed. Half-open: exactly one probe call is
//! let through; its success closes the breaker, its failure opens it for another cool-down.

use crate::config::BreakerPolicy;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Buckets the error-rate window is split into; old buckets roll off one at a time.
const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which slice of time (window / BUCKETS since `epoch`) this bucket counts.
    slot: u64,
    calls: u32,
    failures: u32,
}

#[derive(Debug)]
pub struct Breaker {
    state: BreakerState,
    consecutive_failures: u32,
    /// Open: when the next probe may go. Half-open: whether the probe is out.
    open_until: Option<Instant>,
    probe_out: bool,
    epoch: Instant,
    /// The width of one bucket, from the policy's window.
    bucket_ms: u64,
    buckets: [Bucket; BUCKETS],
}

/// Whether a call may go ahead, and if so whether it is the half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    Probe,
    /// Refused; the breaker may let a probe through after this long.
    No(Duration),
}

impl Breaker {
    pub fn new(now: Instant) -> Self {
        Breaker {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            open_until: None,
            probe_out: false,
            epoch: now,
            bucket_ms: 0,
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The state as a reader should see it: an open breaker whose cool-down is over is
    /// reported half-open, since the next call will be let through as the probe.
    pub fn visible_state(&self, now: Instant) -> BreakerState {
        match (self.state, self.open_until) {
            (BreakerState::Open, Some(until)) if now >= until => BreakerState::HalfOpen,
            (state, _) => state,
        }
    }

    pub fn admit(&mut self, policy: &BreakerPolicy, now: Instant) -> Admit {
        self.adopt(policy, now);
        if !policy.enabled {
            return Admit::Yes;
        }
        match self.state {
            BreakerState::Closed => Admit::Yes,
            BreakerState::Open => match self.open_until {
                Some(until) if now < until => Admit::No(until - now),
                _ => {
                    self.state = BreakerState::HalfOpen;
                    self.probe_out = true;
                    Admit::Probe
                }
            },
            BreakerState::HalfOpen if self.probe_out => Admit::No(Duration::ZERO),
            BreakerState::HalfOpen => {
                self.probe_out = true;
                Admit::Probe
            }
        }
    }

    /// The probe went away without an answer (the request was cancelled): let another go.
    pub fn probe_abandoned(&mut self) {
        self.probe_out = false;
    }

    pub fn success(&mut self, policy: &BreakerPolicy, now: Instant) {
        self.adopt(policy, now);
        self.count(now, false);
        self.consecutive_failures = 0;
        if self.state != BreakerState::Closed {
            self.close(now);
        }
    }

    pub fn failure(&mut self, policy: &BreakerPolicy, now: Instant) {
        self.adopt(policy, now);
        self.count(now, true);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if !policy.enabled {
            return;
        }
        let trip = match self.state {
            BreakerState::HalfOpen => true,
            BreakerState::Open => false,
            BreakerState::Closed => {
                let (calls, failures) = self.window_counts(now);
                self.consecutive_failures >= policy.consecutive_failures
                    || (calls >= policy.min_calls
                        && f64::from(failures) >= policy.error_rate * f64::from(calls))
            }
        };
        if trip {
            self.state = BreakerState::Open;
            self.open_until = Some(now + policy.cool_down);
            self.probe_out = false;
        }
    }

    /// An active health check succeeded: an open breaker closes, as a probe success would.
    pub fn check_passed(&mut self, now: Instant) {
        self.consecutive_failures = 0;
        if self.state != BreakerState::Closed && !self.probe_out {
            self.close(now);
        }
    }

    /// The failure share over the window (0 with no calls).
    pub fn error_rate(&self, now: Instant) -> f64 {
        let (calls, failures) = self.window_counts(now);
        if calls == 0 {
            0.0
        } else {
            f64::from(failures) / f64::from(calls)
        }
    }

    fn close(&mut self, now: Instant) {
        self.state = BreakerState::Closed;
        self.open_until = None;
        self.probe_out = false;
        // Failures from before the outage must not re-open it on the first new error.
        self.buckets = [Bucket::default(); BUCKETS];
        self.epoch = now;
    }

    /// Adopts the policy's window; a changed window (after a reload) restarts the counts,
    /// since old buckets were measured in another width.
    fn adopt(&mut self, policy: &BreakerPolicy, now: Instant) {
        let width = (policy.window.as_millis() as u64 / BUCKETS as u64).max(1);
        if width != self.bucket_ms {
            self.bucket_ms = width;
            self.buckets = [Bucket::default(); BUCKETS];
            self.epoch = now;
        }
    }

    fn slot(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64 / self.bucket_ms.max(1)
    }

    fn count(&mut self, now: Instant, failed: bool) {
        let slot = self.slot(now);
        let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if bucket.slot != slot || bucket.calls == 0 {
            *bucket = Bucket {
                slot,
                calls: 0,
                failures: 0,
            };
        }
        bucket.calls += 1;
        if failed {
            bucket.failures += 1;
        }
    }

    fn window_counts(&self, now: Instant) -> (u32, u32) {
        let current = self.slot(now);
        self.buckets
            .iter()
            .filter(|b| b.calls > 0 && current.saturating_sub(b.slot) < BUCKETS as u64)
            .fold((0, 0), |(c, f), b| (c + b.calls, f + b.failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            enabled: true,
            consecutive_failures: 3,
            error_rate: 0.5,
            min_calls: 10,
            window: Duration::from_secs(10),
            cool_down: Duration::from_secs(5),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_then_half_opens_with_one_probe() {
        let p = policy();
        let t0 = Instant::now();
        let mut b = Breaker::new(t0);
        for _ in 0..2 {
            assert_eq!(b.admit(&p, t0), Admit::Yes);
            b.failure(&p, t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.success(&p, t0);
        for _ in 0..3 {
            b.failure(&p, t0);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.admit(&p, t0 + Duration::from_secs(1)),
            Admit::No(Duration::from_secs(4))
        );
        let later = t0 + Duration::from_secs(5);
        assert_eq!(b.visible_state(later), BreakerState::HalfOpen);
        assert_eq!(b.admit(&p, later), Admit::Probe);
        assert_eq!(
            b.admit(&p, later),
            Admit::No(Duration::ZERO),
            "one probe at a time"
        );
        b.success(&p, later);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(&p, later), Admit::Yes);
    }

    #[test]
    fn a_failed_probe_opens_again_and_an_abandoned_one_frees_the_slot() {
        let p = policy();
        let t0 = Instant::now();
        let mut b = Breaker::new(t0);
        for _ in 0..3 {
            b.failure(&p, t0);
        }
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(b.admit(&p, t1), Admit::Probe);
        b.probe_abandoned();
        assert_eq!(b.admit(&p, t1), Admit::Probe);
        b.failure(&p, t1);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(&p, t1), Admit::No(Duration::from_secs(5)));
    }

    #[test]
    fn opens_on_the_error_rate_over_the_window() {
        let p = policy();
        let t0 = Instant::now();
        let mut b = Breaker::new(t0);
        // Alternating: never 3 in a row, but half of 10 calls failed.
        for i in 0..10 {
            b.admit(&p, t0);
            if i % 2 == 1 {
                b.failure(&p, t0);
            } else {
                b.success(&p, t0);
            }
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!((b.error_rate(t0) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn old_calls_leave_the_window() {
        let p = policy();
        let t0 = Instant::now();
        let mut b = Breaker::new(t0);
        b.admit(&p, t0);
        for _ in 0..8 {
            b.success(&p, t0);
        }
        b.failure(&p, t0);
        assert!(b.error_rate(t0) > 0.0);
        assert_eq!(b.error_rate(t0 + Duration::from_secs(11)), 0.0);
    }

    #[test]
    fn a_disabled_breaker_never_refuses() {
        let p = BreakerPolicy {
            enabled: false,
            ..policy()
        };
        let t0 = Instant::now();
        let mut b = Breaker::new(t0);
        for _ in 0..20 {
            b.failure(&p, t0);
        }
        assert_eq!(b.admit(&p, t0), Admit::Yes);
        assert_eq!(b.consecutive_failures(), 20);
    }
}
