//! Fixed-window counters for quotas, token budgets and exposure counts.
//!
//! Admission is exact under concurrency: a limit of N admits exactly N per window, all limits
//! of a request checked and charged in one step (one lock in process, one server-side operation
//! for a shared backend).

use super::error::StoreError;

/// One limit to check: at most `max` per `window_secs`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Limit {
    pub name: String,
    pub max: u64,
    pub window_secs: u64,
}

/// A refused admission: which limit, and when its window resets.
#[derive(Debug, Clone, PartialEq)]
pub struct OverLimit {
    pub name: String,
    pub max: u64,
    pub retry_after_secs: u64,
}

/// Why a request was not admitted: a limit is used up, or the store could not say.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error("limit `{}` of {} is used up", .0.name, .0.max)]
    Over(OverLimit),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An amount to add to a counter. `window_secs` 0 is the all-time counter, never reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterAdd {
    pub name: String,
    pub window_secs: u64,
    pub amount: u64,
}

/// Counters. Each call is one round trip to a shared backend (all its limits or additions at
/// once); `peek` is none.
#[async_trait::async_trait]
pub trait CounterStore: Send + Sync {
    /// Admits one event against every limit, all or nothing.
    async fn acquire(&self, limits: &[Limit]) -> Result<(), AdmitError>;
    /// Fails if any budget is already spent (count >= max), without charging.
    async fn check_budgets(&self, limits: &[Limit]) -> Result<(), AdmitError>;
    /// Adds each amount to its counter (token settlement, exposures, `ctx.incr`).
    async fn add(&self, adds: &[CounterAdd]) -> Result<(), StoreError>;
    /// The current count in the current window.
    async fn get(&self, name: &str, window_secs: u64) -> Result<u64, StoreError>;
    /// The count as this process knows it, without waiting: what policies read while they
    /// run (scripts are synchronous). Exact for the in-process backends.
    fn peek(&self, name: &str, window_secs: u64) -> u64;
}
