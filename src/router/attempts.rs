//! The attempt loop: from the ordered targets to one reply, with balancing, breakers,
//! first-byte timeouts, retries with backoff, and fallback; every try is recorded.
//!
//! A stream is committed only once its first event has arrived: until then a failure can
//! still be retried or passed to the next target, since the client has seen nothing.

use super::backoff;
use super::plan::{RoutePlan, TimeoutOverrides};
use super::provider_health::{Entry, Registry};
use super::stream_guard::{self, Limits};
use super::{targets, Target};
use crate::config::{ProviderConfig, Timeouts};
use crate::error::ApiError;
use crate::error_codes::Code;
use crate::providers::{Provider, ProviderError, Reply, UpstreamCall};
use crate::snapshot::Snapshot;
use crate::telemetry::spans::attr;
use crate::telemetry::RequestTrace;
use crate::wire::RequestBody;
use actix_web::http::StatusCode;
use futures_util::StreamExt;
use opentelemetry::KeyValue;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One try of one target (or a target skipped because its breaker was open).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttemptRecord {
    /// `provider/model`.
    pub target: Arc<str>,
    pub provider: Arc<str>,
    pub outcome: AttemptOutcome,
    /// From the call to the reply's first byte (or to the failure).
    pub latency_ms: u64,
    /// What the loop did next.
    pub then: Then,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The reply started (a stream's first event arrived).
    Ok {
        status: u16,
    },
    /// The upstream answered with an error status.
    Status {
        status: u16,
    },
    /// No response headers, or no first stream event, within the first-byte timeout.
    FirstByteTimeout,
    /// Another timeout (connect, read, total) from the HTTP client.
    Timeout,
    Unreachable,
    /// A malformed or broken response before the first event.
    Protocol,
    /// Not called: the provider's circuit breaker is open.
    BreakerOpen,
    /// Not called: the caller's key may not use this target's model.
    NotAllowed,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Then {
    /// This attempt's reply went to the client.
    Served,
    /// The same target was tried again after a backoff.
    Retried,
    /// The target's retries (or time budget) were spent, or it was skipped: next target.
    NextTarget,
    /// A failure that no other target would fix (a 4xx): returned to the client.
    Stopped,
}

impl AttemptOutcome {
    /// The outcome's name, as the request log spells its `kind`.
    pub fn label(&self) -> &'static str {
        match self {
            AttemptOutcome::Ok { .. } => "ok",
            AttemptOutcome::Status { .. } => "status",
            AttemptOutcome::FirstByteTimeout => "first_byte_timeout",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::Unreachable => "unreachable",
            AttemptOutcome::Protocol => "protocol",
            AttemptOutcome::BreakerOpen => "breaker_open",
            AttemptOutcome::NotAllowed => "not_allowed",
        }
    }
}

impl Then {
    pub fn label(&self) -> &'static str {
        match self {
            Then::Served => "served",
            Then::Retried => "retried",
            Then::NextTarget => "next_target",
            Then::Stopped => "stopped",
        }
    }
}

impl AttemptRecord {
    /// Whether this attempt called the upstream (skips do not count in the header).
    pub fn called(&self) -> bool {
        !matches!(
            self.outcome,
            AttemptOutcome::BreakerOpen | AttemptOutcome::NotAllowed
        )
    }
}

/// The number of upstream calls, for `x-switchboard-attempts`.
pub fn calls(records: &[AttemptRecord]) -> u32 {
    records.iter().filter(|r| r.called()).count() as u32
}

pub struct Served {
    pub reply: Reply,
    pub target: Target,
    pub attempts: Vec<AttemptRecord>,
    /// The serving provider's health, told when the reply is complete (no second lookup).
    pub health: Arc<Entry>,
}

pub struct Failed {
    pub error: ApiError,
    pub attempts: Vec<AttemptRecord>,
}

/// What a request brings to the loop.
pub struct Call<'a> {
    pub request_id: &'a str,
    pub body: &'a mut RequestBody,
    /// Ask providers that support it for a usage chunk the client did not ask for.
    pub ask_stream_usage: bool,
    /// The routes, balancing, timeouts and headers the policies chose.
    pub plan: &'a RoutePlan,
    /// Whether the caller's key may use a target; one it may not is skipped, never called.
    pub may_use: &'a (dyn Fn(&Target) -> bool + Sync),
    /// The request's trace: a CLIENT span per call, whose context goes upstream.
    pub trace: &'a RequestTrace,
}

/// Failures worth another try: the upstream, not the request, is at fault.
pub fn retryable(e: &ProviderError) -> bool {
    match e {
        ProviderError::Unreachable(_) | ProviderError::Timeout(_) | ProviderError::Protocol(_) => {
            true
        }
        // The same request would get the same reply: trying again only costs more.
        ProviderError::TooLarge(_) => false,
        // 501 and 505 say the request can never work there; other 5xx (529 overloaded,
        // a proxy's 520..) are the upstream's passing trouble, like 500/502/503/504.
        ProviderError::Status { status, .. } => {
            *status == StatusCode::TOO_MANY_REQUESTS
                || (status.is_server_error() && !matches!(status.as_u16(), 501 | 505))
        }
    }
}

/// Tries `targets` for `call` until one serves, a non-retryable error, or none is left.
pub async fn run(
    health: &Registry,
    snapshot: &Snapshot,
    targets: &[Target],
    call: Call<'_>,
) -> Result<Served, Failed> {
    let Call {
        request_id,
        body,
        ask_stream_usage,
        plan,
        may_use,
        trace,
    } = call;
    let operation = crate::telemetry::spans::operation(body.endpoint().path());
    let mut records: Vec<AttemptRecord> = Vec::with_capacity(targets.len() + 2);
    let mut last_error: Option<ProviderError> = None;
    let mut shortest_wait: Option<Duration> = None;

    for index in order(health, snapshot, targets, plan) {
        let target = &targets[index];
        if !may_use(target) {
            records.push(not_allowed(target));
            continue;
        }
        let (Some(provider), Some(config)) = (
            snapshot.provider(&target.provider),
            provider_config(snapshot, &target.provider),
        ) else {
            continue;
        };
        if ask_stream_usage && provider.asks_stream_usage() && !body.wants_stream_usage() {
            body.request_stream_usage();
        }
        let limits = effective(&config.timeouts, &plan.timeouts);
        let budget = config.retry.max_total.min(limits.total);
        let entry = health.entry(&target.provider);
        let on_target = Instant::now();
        let mut tries = 0u32;
        loop {
            let permit = match entry.admit(&config.breaker) {
                Ok(permit) => permit,
                Err(wait) => {
                    shortest_wait = Some(shortest_wait.map_or(wait, |w| w.min(wait)));
                    records.push(record(
                        target,
                        AttemptOutcome::BreakerOpen,
                        Duration::ZERO,
                        Then::NextTarget,
                    ));
                    break;
                }
            };
            tries += 1;
            let started = Instant::now();
            let number = calls(&records) + 1;
            let span = trace.attempt(
                || format!("{operation} {}", target.model.upstream),
                || {
                    vec![
                        KeyValue::new(attr::OPERATION, operation),
                        KeyValue::new(
                            attr::SYSTEM,
                            crate::telemetry::gen_ai_system(config.kind.as_str()),
                        ),
                        KeyValue::new(attr::REQUEST_MODEL, target.model.upstream.to_string()),
                        KeyValue::new(attr::PROVIDER, target.provider.to_string()),
                        KeyValue::new(attr::ATTEMPT, number as i64),
                    ]
                },
            );
            let upstream = UpstreamCall {
                request_id,
                body,
                upstream_model: &target.model.upstream,
                headers: &plan.headers,
                trace_headers: &span.headers,
            };
            let result = first_byte(
                provider.as_ref(),
                &target.provider,
                upstream,
                limits.first_byte.min(limits.total),
            )
            .await;
            match result {
                Ok(reply) => {
                    let latency = started.elapsed();
                    let status = status_of(&reply);
                    end_attempt(span.span, AttemptOutcome::Ok { status }, Then::Served, None);
                    records.push(record(
                        target,
                        AttemptOutcome::Ok { status },
                        latency,
                        Then::Served,
                    ));
                    let entry = permit.entry().clone();
                    permit.success(latency);
                    let reply = guard(reply, target, &limits, started, entry.clone(), config);
                    return Ok(Served {
                        reply,
                        target: target.clone(),
                        attempts: records,
                        health: entry,
                    });
                }
                Err((e, outcome)) if !retryable(&e) => {
                    end_attempt(span.span, outcome, Then::Stopped, Some(&e));
                    permit.answered();
                    records.push(record(target, outcome, started.elapsed(), Then::Stopped));
                    return Err(Failed {
                        error: e.into(),
                        attempts: records,
                    });
                }
                Err((e, outcome)) => {
                    permit.failure();
                    let latency = started.elapsed();
                    let delay = backoff::next_delay(
                        &config.retry,
                        tries,
                        on_target.elapsed(),
                        budget,
                        &e,
                        rand::random::<f64>(),
                    );
                    let then = if delay.is_some() {
                        Then::Retried
                    } else {
                        Then::NextTarget
                    };
                    end_attempt(span.span, outcome, then, Some(&e));
                    records.push(record(target, outcome, latency, then));
                    tracing::warn!(request_id, target = %target.id, error = %e, then = ?then, "attempt failed");
                    last_error = Some(e);
                    match delay {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => break,
                    }
                }
            }
        }
    }
    let error = match last_error {
        Some(e) => e.into(),
        None if shortest_wait.is_some() => {
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "every provider for this model is failing and temporarily skipped (circuit open)",
            )
            .with_code(Code::CircuitOpen);
            err.retry_after = shortest_wait.map(|w| w.as_secs().max(1));
            err
        }
        None => ApiError::internal("no provider is available for this model"),
    };
    Err(Failed {
        error,
        attempts: records,
    })
}

fn status_of(reply: &Reply) -> u16 {
    match reply {
        Reply::Json { status, .. } => status.as_u16(),
        Reply::Stream(..) => 200,
    }
}

/// Ends an attempt's span with what became of the call and what the loop did next.
fn end_attempt(
    mut span: crate::telemetry::StageSpan,
    outcome: AttemptOutcome,
    then: Then,
    error: Option<&ProviderError>,
) {
    if span.is_recording() {
        let status = match outcome {
            AttemptOutcome::Ok { status } | AttemptOutcome::Status { status } => Some(status),
            _ => None,
        };
        span.set(|| {
            let mut attributes = vec![
                KeyValue::new(attr::ATTEMPT_OUTCOME, outcome.label()),
                KeyValue::new(attr::ATTEMPT_THEN, then.label()),
            ];
            if let Some(status) = status {
                attributes.push(KeyValue::new(attr::HTTP_STATUS, status as i64));
            }
            if error.is_some() {
                attributes.push(KeyValue::new(
                    attr::ERROR_TYPE,
                    status.map_or_else(|| outcome.label().to_string(), |s| s.to_string()),
                ));
            }
            attributes
        });
        // The provider error's message is the one a client may see: no secrets in it.
        if let Some(e) = error {
            span.fail(e.to_string());
        }
    }
    span.end();
}

/// The targets' indices in the order to try them: the balanced pool (if any) in its
/// strategy's order, then the rest as listed.
/// The order the next request with this plan would try `targets` in (balancing applied),
/// without taking a turn of the pool: what a simulation reports.
pub fn planned_order(
    health: &Registry,
    snapshot: &Snapshot,
    targets: &[Target],
    plan: &RoutePlan,
) -> Vec<usize> {
    order_with(health, snapshot, targets, plan, false)
}

fn order(
    health: &Registry,
    snapshot: &Snapshot,
    targets: &[Target],
    plan: &RoutePlan,
) -> Vec<usize> {
    order_with(health, snapshot, targets, plan, true)
}

fn order_with(
    health: &Registry,
    snapshot: &Snapshot,
    targets: &[Target],
    plan: &RoutePlan,
    advance: bool,
) -> Vec<usize> {
    let Some(balance) = &plan.balance else {
        return (0..targets.len()).collect();
    };
    let pool_routes = &plan.routes[..balance.pool.min(plan.routes.len())];
    // Resolution drops duplicates and unknown names, keeping order, so the pool's targets are
    // the first ones of `targets`.
    let pool = targets::resolve(&snapshot.models, pool_routes, "")
        .map(|t| t.len())
        .unwrap_or(0)
        .min(targets.len());
    let members: Vec<&str> = targets[..pool].iter().map(|t| &*t.id).collect();
    let weights: Vec<u32> = targets[..pool]
        .iter()
        .map(|t| {
            balance
                .weights
                .iter()
                .find(|(route, _)| snapshot.models.resolve(route).is_some_and(|r| r.id == t.id))
                .map(|(_, w)| *w)
                .or_else(|| provider_config(snapshot, &t.provider).map(|c| c.weight))
                .unwrap_or(1)
        })
        .collect();
    let latency = |i: usize| health.latency_ms(&targets[i].provider);
    let pools = health.pools();
    let mut ordered = if advance {
        pools.order(balance.strategy, &members, &weights, latency)
    } else {
        pools.peek_order(balance.strategy, &members, &weights, latency)
    };
    ordered.extend(pool..targets.len());
    ordered
}

fn provider_config<'s>(snapshot: &'s Snapshot, name: &str) -> Option<&'s ProviderConfig> {
    snapshot.config.providers.iter().find(|p| p.name == name)
}

/// The provider's timeouts with the route's overrides. Idle and total can be shortened but
/// not lengthened past the provider's HTTP client, which enforces its own as a backstop.
struct Effective {
    first_byte: Duration,
    idle: Duration,
    total: Duration,
}

fn effective(provider: &Timeouts, route: &TimeoutOverrides) -> Effective {
    let secs = |s: Option<f64>, d: Duration| s.map(Duration::from_secs_f64).unwrap_or(d);
    Effective {
        first_byte: secs(route.first_byte_secs, provider.first_byte),
        idle: secs(route.idle_secs, provider.read),
        total: secs(route.total_secs, provider.total),
    }
}

/// One call, up to its first byte: a JSON reply whole, or a stream's first event (peeked and
/// put back), within `limit`.
async fn first_byte(
    provider: &dyn Provider,
    name: &str,
    call: UpstreamCall<'_>,
    limit: Duration,
) -> Result<Reply, (ProviderError, AttemptOutcome)> {
    let attempt = async {
        match provider.call(call).await? {
            Reply::Stream(mut events, headers) => match events.next().await {
                Some(Err(e)) => Err(e),
                Some(Ok(first)) => Ok(Reply::Stream(
                    futures_util::stream::once(async move { Ok(first) })
                        .chain(events)
                        .boxed(),
                    headers,
                )),
                None => Ok(Reply::Stream(events, headers)),
            },
            json => Ok(json),
        }
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => {
            let outcome = outcome_of(&e);
            Err((e, outcome))
        }
        Err(_) => Err((
            ProviderError::Timeout(format!(
                "provider `{name}` sent nothing within {:.1} s",
                limit.as_secs_f64()
            )),
            AttemptOutcome::FirstByteTimeout,
        )),
    }
}

/// A stream goes to the client wrapped in its idle and total timeouts.
fn guard(
    reply: Reply,
    target: &Target,
    limits: &Effective,
    started: Instant,
    entry: Arc<Entry>,
    config: &ProviderConfig,
) -> Reply {
    match reply {
        Reply::Stream(events, headers) => Reply::Stream(
            stream_guard::watch(
                events,
                Limits {
                    provider: target.provider.clone(),
                    idle: limits.idle,
                    deadline: started + limits.total,
                },
                entry,
                config.breaker,
            ),
            headers,
        ),
        json => json,
    }
}

fn outcome_of(e: &ProviderError) -> AttemptOutcome {
    match e {
        ProviderError::Status { status, .. } => AttemptOutcome::Status {
            status: status.as_u16(),
        },
        ProviderError::Timeout(_) => AttemptOutcome::Timeout,
        ProviderError::Unreachable(_) => AttemptOutcome::Unreachable,
        ProviderError::Protocol(_) | ProviderError::TooLarge(_) => AttemptOutcome::Protocol,
    }
}

/// The record of a target skipped because the caller's key may not use it.
pub fn not_allowed(target: &Target) -> AttemptRecord {
    record(
        target,
        AttemptOutcome::NotAllowed,
        Duration::ZERO,
        Then::NextTarget,
    )
}

fn record(
    target: &Target,
    outcome: AttemptOutcome,
    latency: Duration,
    then: Then,
) -> AttemptRecord {
    AttemptRecord {
        target: target.id.clone(),
        provider: target.provider.clone(),
        outcome,
        latency_ms: latency.as_millis() as u64,
        then,
    }
}
