//! The validated resilience settings of one provider: retries, breaker, health check, weight.
//! Defaults live here so the README, the validator and the router agree on one set.

use super::raw::{RawBreaker, RawHealthCheck, RawRetry, Seconds};
use std::time::Duration;

/// Retrying one target before falling back to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries of one target, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Time on one target, retries included; also capped by the provider's total timeout.
    pub max_total: Duration,
    /// The longest `retry-after` worth waiting for; a longer one moves on at once.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_total: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(5),
        }
    }
}

/// When the circuit breaker opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    pub enabled: bool,
    pub consecutive_failures: u32,
    pub error_rate: f64,
    pub min_calls: u32,
    pub window: Duration,
    pub cool_down: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            enabled: true,
            consecutive_failures: 5,
            error_rate: 0.5,
            min_calls: 20,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
        }
    }
}

/// An active probe: `GET {base_url}/{path}` every `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub interval: Duration,
    pub path: String,
}

impl HealthCheck {
    /// Used when `health_check:` is given without `interval_secs`.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
    /// Used when `health_check:` is given without `path`.
    pub const DEFAULT_PATH: &'static str = "models";
}

/// A resilience block whose fields do not fit together; the validator adds file, line and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResilienceError {
    #[error("base_delay_ms ({base_ms}) must not exceed max_delay_ms ({max_ms})")]
    DelayOrder { base_ms: u128, max_ms: u128 },
    #[error("path {path:?} must be a path relative to base_url")]
    NotRelative { path: String },
}

fn secs(s: Option<Seconds>, default: Duration) -> Duration {
    s.map(|s| Duration::from_secs_f64(s.0)).unwrap_or(default)
}

impl RetryPolicy {
    pub fn from_raw(raw: &RawRetry) -> Result<Self, ResilienceError> {
        let d = RetryPolicy::default();
        let policy = RetryPolicy {
            max_attempts: raw.max_attempts.unwrap_or(d.max_attempts),
            base_delay: raw
                .base_delay_ms
                .map(Duration::from_millis)
                .unwrap_or(d.base_delay),
            max_delay: raw
                .max_delay_ms
                .map(Duration::from_millis)
                .unwrap_or(d.max_delay),
            max_total: secs(raw.max_total_secs, d.max_total),
            max_retry_after: secs(raw.max_retry_after_secs, d.max_retry_after),
        };
        if policy.base_delay > policy.max_delay {
            return Err(ResilienceError::DelayOrder {
                base_ms: policy.base_delay.as_millis(),
                max_ms: policy.max_delay.as_millis(),
            });
        }
        Ok(policy)
    }
}

impl BreakerPolicy {
    pub fn from_raw(raw: &RawBreaker) -> Self {
        let d = BreakerPolicy::default();
        BreakerPolicy {
            enabled: raw.enabled.unwrap_or(d.enabled),
            consecutive_failures: raw.consecutive_failures.unwrap_or(d.consecutive_failures),
            error_rate: raw.error_rate.unwrap_or(d.error_rate),
            min_calls: raw.min_calls.unwrap_or(d.min_calls),
            window: secs(raw.window_secs, d.window),
            cool_down: secs(raw.cool_down_secs, d.cool_down),
        }
    }
}

impl HealthCheck {
    pub fn from_raw(raw: &RawHealthCheck) -> Result<Self, ResilienceError> {
        let path = raw
            .path
            .clone()
            .unwrap_or_else(|| HealthCheck::DEFAULT_PATH.to_string());
        let path = path.trim_start_matches('/').to_string();
        // A query is allowed: Azure needs `openai/models?api-version=...`.
        if path.contains("://") || path.contains('#') {
            return Err(ResilienceError::NotRelative { path });
        }
        Ok(HealthCheck {
            interval: secs(raw.interval_secs, HealthCheck::DEFAULT_INTERVAL),
            path,
        })
    }
}
