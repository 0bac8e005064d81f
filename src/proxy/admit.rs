//! Stage 3, admit: every limit and budget the request is subject to, reserved in one step.
//!
//! Script limits (`ctx.limit`, `ctx.token_limit`, `ctx.cost_limit`) and the key's own limits
//! go into one reservation, all or nothing: request limits are charged, budgets hold the
//! request's estimate (prompt estimated from its text, completion from `max_tokens` or the
//! default; cost at the priciest target's pricing), requests in flight take a slot. The
//! returned [`Hold`] is settled with what the reply used, or, dropped on any other path (a
//! refusal later, a failed call), gives everything back.

use super::budget_alerts::BudgetAlerts;
use super::eager::run_now_or_spawn;
use super::estimate;
use crate::error::ApiError;
use crate::error_codes::Code;
use crate::policy::Decision;
use crate::router::Target;
use crate::state::AppState;
use crate::store::counters::{Actual, LimitKind, Reservation, Standing, LIFETIME, MONTH};
use crate::store::limits::micro_usd;
use crate::store::{AdmitError, CounterStore, KeyRecord, Limit, OverLimit};
use crate::wire::{RequestBody, Usage};
use actix_web::http::StatusCode;
use std::sync::Arc;

/// What an admitted request holds until it settles.
pub struct Hold {
    counters: Arc<dyn CounterStore>,
    reservation: Option<Reservation>,
    /// Told of the budgets' use once the request settles.
    alerts: Option<Arc<BudgetAlerts>>,
}

impl Hold {
    /// Holds nothing.
    pub fn none(counters: Arc<dyn CounterStore>) -> Hold {
        Hold {
            counters,
            reservation: None,
            alerts: None,
        }
    }

    /// How each limit stood after this request was admitted.
    pub fn standing(&self) -> &[Standing] {
        self.reservation
            .as_ref()
            .map(|r| r.standing.as_slice())
            .unwrap_or(&[])
    }

    /// The hard budget that leaves this request the least, as tokens in all (prompt and
    /// completion): what was left for it at admission, its own reservation included. A cost
    /// budget counts as the tokens it pays for at the served model's `pricing`, the prompt
    /// (`prompt_tokens`, estimated) at the input price and the rest at the output price; an
    /// unpriced model costs nothing and is never cut for cost.
    pub fn hard_cap(
        &self,
        prompt_tokens: u64,
        pricing: Option<crate::config::Pricing>,
    ) -> Option<(String, u64)> {
        let reservation = self.reservation.as_ref()?;
        reservation
            .held
            .iter()
            .zip(&reservation.standing)
            .filter(|((limit, _), _)| limit.hard)
            .filter_map(|((limit, amount), standing)| {
                let allowed = standing.remaining + amount;
                let tokens = match limit.kind {
                    LimitKind::Tokens => allowed,
                    LimitKind::MicroUsd => {
                        let p = pricing.filter(|p| p.output > 0.0)?;
                        // Micro-USD per token is the price per million tokens.
                        let after_prompt = allowed as f64 - prompt_tokens as f64 * p.input;
                        prompt_tokens + (after_prompt.max(0.0) / p.output) as u64
                    }
                    _ => return None,
                };
                Some((limit.label().to_string(), tokens))
            })
            .min_by_key(|(_, allowed)| *allowed)
    }

    /// Replaces the reservation with what the request used.
    pub fn settle(mut self, actual: Actual) {
        if let Some(reservation) = self.reservation.take() {
            let (counters, alerts) = (self.counters.clone(), self.alerts.take());
            run_now_or_spawn(async move {
                if let Err(e) = counters.settle(&reservation, actual).await {
                    tracing::error!(error = %e, "could not settle a request's limits");
                    return;
                }
                if let Some(alerts) = alerts {
                    // Only budgets have thresholds: request and in-flight limits are not read.
                    let budgets: Vec<Limit> = reservation
                        .held
                        .into_iter()
                        .map(|(limit, _)| limit)
                        .filter(|l| matches!(l.kind, LimitKind::Tokens | LimitKind::MicroUsd))
                        .collect();
                    if budgets.is_empty() {
                        return;
                    }
                    match counters.usage(&budgets).await {
                        Ok(usage) => {
                            alerts
                                .check_shared(
                                    counters.as_ref(),
                                    &budgets,
                                    &usage,
                                    crate::clock::now_secs(),
                                )
                                .await
                        }
                        Err(e) => tracing::debug!(error = %e, "could not read budgets for alerts"),
                    }
                }
            });
        }
    }
}

impl Drop for Hold {
    /// Not settled: the request was refused or failed, and gives everything back.
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            let counters = self.counters.clone();
            run_now_or_spawn(async move {
                if let Err(e) = counters.release(&reservation).await {
                    tracing::error!(error = %e, "could not release a request's limits");
                }
            });
        }
    }
}

pub async fn admit(
    state: &AppState,
    caller: &KeyRecord,
    decision: &Decision,
    body: &RequestBody,
    prompt: u64,
    targets: &[Target],
) -> Result<Hold, ApiError> {
    let counters = state.store.counters.clone();
    let mut limits: Vec<Limit> = Vec::new();
    limits.extend(decision.limits.iter().cloned());
    limits.extend(decision.token_limits.iter().cloned());
    limits.extend(decision.cost_limits.iter().cloned());
    limits.extend(key_limits(caller));
    // The key's team, read from memory. A team that no longer exists limits nothing: only a
    // revoked key can name one, and a revoked key never gets here.
    if let Some(team) = caller
        .team
        .as_deref()
        .and_then(|id| state.store.teams.get_cached(id))
    {
        limits.extend(team.limits.as_counters("team", &team.id, &team.name));
    }
    if limits.is_empty() {
        return Ok(Hold::none(counters));
    }
    let completion = estimate::completion_tokens(body);
    let cost = targets
        .iter()
        .filter_map(|t| t.model.pricing)
        // An estimate knows nothing of a prompt cache: the whole prompt at the input price.
        .map(|p| p.cost(&Usage::new(prompt, completion)))
        .fold(0.0, f64::max);
    let held: Vec<(Limit, u64)> = limits
        .into_iter()
        .map(|l| {
            let amount = match l.kind {
                LimitKind::Requests | LimitKind::Parallel => 1,
                LimitKind::Tokens => prompt + completion,
                LimitKind::MicroUsd => micro_usd(cost),
            };
            (l, amount)
        })
        .collect();
    match counters.reserve(&held).await {
        Ok(reservation) => Ok(Hold {
            counters,
            reservation: Some(reservation),
            alerts: Some(state.budget_alerts.clone()),
        }),
        Err(AdmitError::Over(o)) => {
            state.metrics.quota_rejection();
            Err(over_limit(o))
        }
        Err(AdmitError::Store(e)) if e.is_unreachable() => {
            // Logged once by the store when it goes away, not per request.
            tracing::debug!(error = %e, "could not check the request's limits");
            Err(ApiError::store_unavailable())
        }
        Err(AdmitError::Store(e)) => {
            tracing::error!(error = %e, "could not check the request's limits");
            Err(ApiError::storage_unavailable())
        }
    }
}

/// The key's own limits, as counters named by its id and labelled by its name.
pub fn key_limits(key: &KeyRecord) -> Vec<Limit> {
    key.limits.as_counters("key", &key.id, &key.name)
}

/// The 429 that says which limit refused, how much of it is used, and when it resets.
fn over_limit(o: OverLimit) -> ApiError {
    let label = o.limit.label();
    let message = match o.limit.kind {
        LimitKind::Parallel => format!(
            "limit `{label}`: {} requests in flight, the most allowed; try again when one finishes",
            o.used
        ),
        LimitKind::Requests => format!(
            "request limit `{label}` of {} {} is used up ({} used, 0 remaining); resets in {} s",
            o.limit.max,
            per(o.limit.window_secs),
            o.used,
            o.retry_after_secs
        ),
        LimitKind::Tokens => format!(
            "token budget `{label}` of {} {}: {} used or reserved, {} remaining, this request needs about {}; {}",
            o.limit.max,
            per(o.limit.window_secs),
            o.used,
            o.limit.max.saturating_sub(o.used),
            o.wanted,
            resets(o.retry_after_secs)
        ),
        LimitKind::MicroUsd => format!(
            "cost budget `{label}` of {} {}: {} used or reserved, {} remaining, this request needs about {}; {}",
            usd(o.limit.max),
            per(o.limit.window_secs),
            usd(o.used),
            usd(o.limit.max.saturating_sub(o.used)),
            usd(o.wanted),
            resets(o.retry_after_secs)
        ),
    };
    let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
        .with_code(Code::RateLimitExceeded);
    // A lifetime budget never resets: no retry-after would be true.
    if o.retry_after_secs > 0 {
        err.retry_after = Some(o.retry_after_secs);
    }
    err
}

fn usd(micro: u64) -> String {
    format!("${:.6}", micro as f64 / 1_000_000.0)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

fn per(window_secs: u64) -> String {
    match window_secs {
        LIFETIME => "in all".into(),
        MONTH => "per calendar month".into(),
        60 => "per minute".into(),
        3_600 => "per hour".into(),
        86_400 => "per day".into(),
        w => format!("per {w} s"),
    }
}

fn resets(secs: u64) -> String {
    if secs == 0 {
        "it never resets".into()
    } else {
        format!("resets in {secs} s")
    }
}

/// Settles a request that cost the upstream nothing (a cache hit) or what `actual` says.
pub fn actual(tokens: u64, cost_usd: f64) -> Actual {
    Actual {
        tokens,
        micro_usd: micro_usd(cost_usd),
    }
}
