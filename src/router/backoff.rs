//! How long to wait before retrying a target, if at all: exponential backoff with full jitter
//! (a uniform pick in [0, min(max, base * 2^n)]), so clients that failed together do not
//! retry together; a 429's `retry-after` is honoured when it is short enough to wait for.

use crate::config::RetryPolicy;
use crate::providers::ProviderError;
use std::time::Duration;

/// The ceiling of the `retry`-th backoff (0 for the first retry), before jitter.
pub fn ceiling(policy: &RetryPolicy, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
    policy
        .base_delay
        .checked_mul(factor)
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay)
}

/// Full jitter: `unit` in [0, 1) scales the ceiling.
pub fn jittered(policy: &RetryPolicy, retry: u32, unit: f64) -> Duration {
    ceiling(policy, retry).mul_f64(unit.clamp(0.0, 1.0))
}

/// The wait before the next try of a target after `error`, or `None` to move on: the tries
/// are used up, the wait would pass the time budget, or the upstream asked for a longer
/// pause than is worth waiting for.
pub fn next_delay(
    policy: &RetryPolicy,
    tries_done: u32,
    spent: Duration,
    budget: Duration,
    error: &ProviderError,
    unit: f64,
) -> Option<Duration> {
    if tries_done >= policy.max_attempts {
        return None;
    }
    let mut delay = jittered(policy, tries_done.saturating_sub(1), unit);
    if let ProviderError::Status {
        retry_after: Some(secs),
        ..
    } = error
    {
        let asked = Duration::from_secs(*secs);
        if asked > policy.max_retry_after {
            return None;
        }
        delay = delay.max(asked);
    }
    (spent + delay < budget).then_some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            max_total: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(2),
        }
    }

    fn status(retry_after: Option<u64>) -> ProviderError {
        ProviderError::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: String::new(),
            kind: None,
            code: None,
            retry_after,
            param: None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let p = policy();
        let ms: Vec<u128> = (0..5).map(|n| ceiling(&p, n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 350, 350, 350]);
        assert_eq!(ceiling(&p, 1000), p.max_delay, "no overflow");
    }

    #[test]
    fn jitter_stays_within_zero_and_the_ceiling() {
        let p = policy();
        assert_eq!(jittered(&p, 1, 0.0), Duration::ZERO);
        assert_eq!(jittered(&p, 1, 0.5), Duration::from_millis(100));
        assert!(jittered(&p, 1, 0.999_999) <= Duration::from_millis(200));
    }

    #[test]
    fn tries_and_budget_bound_the_retries() {
        let p = policy();
        let e = ProviderError::Unreachable(String::new());
        let budget = p.max_total;
        assert!(next_delay(&p, 1, Duration::ZERO, budget, &e, 0.5).is_some());
        assert!(next_delay(&p, 3, Duration::ZERO, budget, &e, 0.5).is_some());
        assert_eq!(next_delay(&p, 4, Duration::ZERO, budget, &e, 0.5), None);
        // 150 ms of wait would end past a 1 s budget with 900 ms spent.
        let spent = Duration::from_millis(900);
        assert_eq!(
            next_delay(&p, 2, spent, Duration::from_secs(1), &e, 0.75),
            None
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = policy();
        let budget = p.max_total;
        assert_eq!(
            next_delay(&p, 1, Duration::ZERO, budget, &status(Some(1)), 0.0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            next_delay(&p, 1, Duration::ZERO, budget, &status(Some(7)), 0.0),
            None,
            "too long to wait: move on"
        );
        assert_eq!(
            next_delay(&p, 1, Duration::ZERO, budget, &status(None), 0.0),
            Some(Duration::ZERO)
        );
    }
}
