//! Fixed-window counters for request limits, token and cost budgets, requests in flight and
//! exposure counts.
//!
//! A request is admitted with a [`Reservation`]: every limit it is subject to is checked and
//! charged in one step, all or nothing (one lock in process, one server-side operation for a
//! shared backend). Request limits are charged at once; budgets hold the request's estimate as
//! *reserved* until the reply says what it really used ([`CounterStore::settle`]); a request
//! that is refused later or fails gives everything back ([`CounterStore::release`]).

use super::error::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// The window of a calendar month (UTC, resetting on the 1st), as `window_secs`.
pub const MONTH: u64 = u64::MAX;
/// The window that never resets, as `window_secs`.
pub const LIFETIME: u64 = 0;

/// What a limit counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Requests admitted in the window.
    #[default]
    Requests,
    /// Prompt and completion tokens.
    Tokens,
    /// Cost in millionths of a USD.
    MicroUsd,
    /// Requests in flight at once (no window).
    Parallel,
}

/// One limit: at most `max` per `window_secs` (0: ever; [`MONTH`]: per calendar month).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Limit {
    /// The counter's name.
    pub name: String,
    pub max: u64,
    pub window_secs: u64,
    pub kind: LimitKind,
    /// How the limit is named to clients (`key:ci rpm`); the counter's name when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A hard token budget: a stream is ended mid-way rather than take it past its limit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hard: bool,
}

impl Limit {
    pub fn new(name: impl Into<String>, max: u64, window_secs: u64, kind: LimitKind) -> Limit {
        Limit {
            name: name.into(),
            max,
            window_secs,
            kind,
            label: None,
            hard: false,
        }
    }

    /// Marks a token budget hard (see [`Limit::hard`]).
    pub fn hard(mut self, hard: bool) -> Limit {
        self.hard = hard;
        self
    }

    pub fn labelled(mut self, label: impl Into<String>) -> Limit {
        self.label = Some(label.into());
        self
    }

    /// The name clients see.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }
}

/// A refused admission: which limit, how much of it is in use, and when its window resets.
#[derive(Debug, Clone, PartialEq)]
pub struct OverLimit {
    pub limit: Limit,
    /// Used plus reserved when the request was refused.
    pub used: u64,
    /// What the request asked for against it.
    pub wanted: u64,
    /// Seconds to the window's end (0: never, for lifetime and in-flight limits).
    pub retry_after_secs: u64,
}

/// Why a request was not admitted: a limit is used up, or the store could not say.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error("limit `{}` of {} is used up", .0.limit.label(), .0.limit.max)]
    Over(OverLimit),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a limit stood right after a request was admitted: for the rate-limit headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub limit: Limit,
    /// What is left after this request's reservation.
    pub remaining: u64,
    /// Seconds to the window's end (0: never).
    pub reset_secs: u64,
}

/// What a request holds: each limit with the amount charged or reserved against it (1 for a
/// request or an in-flight slot, the estimate for a budget), and when.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reservation {
    pub held: Vec<(Limit, u64)>,
    /// Unix seconds of the admission: settling or releasing in a later window undoes nothing
    /// there (the window it was charged in is gone).
    pub at: u64,
    /// Each limit's standing after admission, in the order of `held`.
    pub standing: Vec<Standing>,
    /// A shared backend's record of what the request holds, given back by the fleet if this
    /// gateway never settles it (see `store/redis/counters.rs`).
    pub lease: Option<String>,
    /// Admitted without the store (it could not be reached and unavailability is set to
    /// `open`): charged when it is back.
    pub deferred: bool,
}

/// What a request really used, to replace its reservation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actual {
    pub tokens: u64,
    pub micro_usd: u64,
}

/// An amount to add to a counter. `window_secs` 0 is the all-time counter, never reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterAdd {
    pub name: String,
    pub window_secs: u64,
    pub amount: u64,
}

/// How much of a limit is in use, for reports (simulate, the admin API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Use {
    pub used: u64,
    pub reserved: u64,
}

/// Counters. Each call is one round trip to a shared backend (all of a request's limits at
/// once); `peek` and `usage` are answered from memory.
#[async_trait::async_trait]
pub trait CounterStore: Send + Sync {
    /// Admits one request against every limit with its amount, all or nothing.
    async fn reserve(&self, limits: &[(Limit, u64)]) -> Result<Reservation, AdmitError>;
    /// Replaces a reservation with what the request used: budgets charged with `actual`,
    /// reserved amounts and in-flight slots given back; request slots stay used.
    async fn settle(&self, reservation: &Reservation, actual: Actual) -> Result<(), StoreError>;
    /// Gives back everything a reservation holds, its request slots included.
    async fn release(&self, reservation: &Reservation) -> Result<(), StoreError>;
    /// Adds each amount to its counter (exposures, `ctx.incr`).
    async fn add(&self, adds: &[CounterAdd]) -> Result<(), StoreError>;
    /// The current count in the current window.
    async fn get(&self, name: &str, window_secs: u64) -> Result<u64, StoreError>;
    /// The count as this process knows it, without waiting: what policies read while they
    /// run (scripts are synchronous). Exact for the in-process backends.
    fn peek(&self, name: &str, window_secs: u64) -> u64;
    /// Each limit's use now (one round trip to a shared backend).
    async fn usage(&self, limits: &[Limit]) -> Result<Vec<Use>, StoreError>;
}

/// How a limit stands now, for reports (simulate, the admin API, the dashboard).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LimitCheck {
    /// The limit as clients see it named (`key:ci rpm`, or the script's counter name).
    pub name: String,
    pub kind: LimitKind,
    /// Tokens, requests, requests in flight, or millionths of a USD, per `kind`.
    pub max: u64,
    /// 0: never resets; 18446744073709551615: a calendar month (UTC).
    pub window_secs: u64,
    /// Used in the current window (for `parallel`: in flight now).
    pub current: u64,
    /// Held by requests in flight, not yet settled.
    pub reserved: u64,
    pub remaining: u64,
    /// Whether a request would pass this limit now (budgets: whether anything is left; a real
    /// request also needs its estimate to fit).
    pub would_pass: bool,
}

impl LimitCheck {
    /// How each limit stands now (one round trip to a shared backend).
    pub async fn read(
        limits: &[Limit],
        counters: &dyn CounterStore,
    ) -> Result<Vec<LimitCheck>, StoreError> {
        Ok(LimitCheck::of(limits, &counters.usage(limits).await?))
    }

    /// Each limit with its use, as [`CounterStore::usage`] gives them.
    pub fn of(limits: &[Limit], usage: &[Use]) -> Vec<LimitCheck> {
        limits
            .iter()
            .zip(usage)
            .map(|(l, u)| {
                let taken = u.used.saturating_add(u.reserved);
                LimitCheck {
                    name: l.label().to_string(),
                    kind: l.kind,
                    max: l.max,
                    window_secs: l.window_secs,
                    current: u.used,
                    reserved: u.reserved,
                    remaining: l.max.saturating_sub(taken),
                    would_pass: taken < l.max,
                }
            })
            .collect()
    }
}
