//! The life of a proxied request after parsing: policies, limits, cache, attempts, answer.

use super::aftermath::{Aftermath, CachePut, Completed};
use super::cache;
use super::relay::{Relay, StreamOutcome};
use super::request_id::RequestId;
use crate::error::ApiError;
use crate::policy::{Decision, PolicyEnv, Rejection, ScriptFailure};
use crate::providers::Reply;
use crate::router::{self, Target};
use crate::state::AppState;
use crate::store::logs::LogEntry;
use crate::store::{KeyRecord, OverLimit};
use crate::wire::RequestBody;
use actix_web::http::header::{HeaderMap, CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use std::sync::Arc;
use std::time::Instant;

pub const PROVIDER_HEADER: &str = "x-switchboard-provider";
pub const MODEL_HEADER: &str = "x-switchboard-model";
pub const CACHE_HEADER: &str = "x-switchboard-cache";
pub const VARIANT_HEADER: &str = "x-switchboard-variant";
pub const ATTEMPTS_HEADER: &str = "x-switchboard-attempts";

/// Request headers as policies see them: lower-case, without credentials.
pub fn script_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "authorization" | "proxy-authorization" | "cookie" | "x-api-key"
            )
        })
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

/// The headers for `req.headers`, built only when some script can read them.
fn policy_headers(
    snapshot: &crate::snapshot::Snapshot,
    headers: &HeaderMap,
) -> Vec<(String, String)> {
    if snapshot.policies.has_request_hooks() {
        script_headers(headers)
    } else {
        Vec::new()
    }
}

pub fn policy_error(failure: ScriptFailure) -> ApiError {
    tracing::error!(%failure, "policy failed the request");
    ApiError::internal(failure.to_string()).with_code("policy_error")
}

fn rejected(r: &Rejection) -> ApiError {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
    let kind = match r.status {
        429 => "rate_limit_error",
        401 => "authentication_error",
        403 => "permission_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    };
    ApiError::new(status, kind, r.message.clone()).with_code("policy_rejected")
}

fn over_limit(o: OverLimit, what: &str) -> ApiError {
    let mut err = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        format!(
            "{what} `{}` of {} is used up; try again in {} s",
            o.name, o.max, o.retry_after_secs
        ),
    )
    .with_code("rate_limit_exceeded");
    err.retry_after = Some(o.retry_after_secs);
    err
}

fn may_use(caller: &KeyRecord, requested: &str, first: &Target) -> bool {
    caller.models.is_empty()
        || caller.models.iter().any(|m| m == requested)
        || caller.allows_model(&first.id, &first.model.name)
}

/// Runs the request, and logs it when it fails before a reply exists (a reply logs itself
/// when it completes, in the aftermath).
pub async fn forward(
    state: &AppState,
    caller: &Arc<KeyRecord>,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: RequestBody,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let log = LogEntry {
        request_id: request_id.as_str().to_string(),
        at_ms: crate::accounting::now_ms(),
        key_id: caller.id.clone(),
        endpoint: body.endpoint().path().to_string(),
        requested_model: body.model().to_string(),
        stream: body.is_stream(),
        request_body: state.accountant.log_bodies.then(|| body.to_json_value()),
        ..LogEntry::default()
    };
    let result = proxy(state, caller, request_id, headers, body, started, &log).await;
    result.map_err(|failure| {
        let mut log = log;
        log.status = failure.error.status.as_u16();
        log.error = Some(failure.error.message.clone());
        log.latency_ms = started.elapsed().as_millis() as u64;
        log.attempts = failure.attempts.len() as u32;
        log.attempt_log = failure.attempts;
        state.accountant.record(log);
        failure.error
    })
}

async fn proxy(
    state: &AppState,
    caller: &Arc<KeyRecord>,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: RequestBody,
    started: Instant,
    log: &LogEntry,
) -> Result<HttpResponse, Failure> {
    let snapshot = state.snapshot();
    let requested = body.model().to_string();
    let env = PolicyEnv {
        counters: state.store.counters.clone(),
        assignments: state.store.assignments.clone(),
        simulate: false,
    };
    let (mut body, decision) = snapshot
        .policies
        .on_request(
            body,
            caller.clone(),
            policy_headers(&snapshot, headers),
            env.clone(),
        )
        .map_err(|f| {
            state.metrics.policy_error();
            policy_error(f)
        })?;
    if let Some(r) = &decision.rejection {
        return Err(rejected(r).into());
    }
    let targets = router::targets::resolve(&snapshot.models, &decision.routes, body.model())?;
    if !may_use(caller, &requested, &targets[0]) {
        return Err(
            ApiError::forbidden(format!("This key may not use the model `{requested}`."))
                .with_param("model")
                .with_code("model_not_allowed")
                .into(),
        );
    }
    state
        .store
        .counters
        .acquire(&decision.limits)
        .map_err(|o| {
            state.metrics.quota_rejection();
            over_limit(o, "request limit")
        })?;
    state
        .store
        .counters
        .check_budgets(&decision.token_limits)
        .map_err(|o| {
            state.metrics.quota_rejection();
            over_limit(o, "token budget")
        })?;

    let stream = body.is_stream();
    let client_wants_usage = body.wants_stream_usage();
    let bypass_cache = headers
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-cache") || v.contains("no-store"));
    let cache_slot = decision
        .cache_ttl
        .filter(|_| cache::cacheable(&body))
        .map(|ttl| (cache::key(&targets, &body), ttl));

    let aftermath =
        |target: &Target, cached: bool, cache_put: Option<CachePut>, attempts: u32| Aftermath {
            snapshot: snapshot.clone(),
            env: env.clone(),
            counters: state.store.counters.clone(),
            decision: decision.clone(),
            key_id: caller.id.clone(),
            provider: target.provider.to_string(),
            model: target.model.name.clone(),
            started,
            cached,
            cache_put,
            pricing: target.model.pricing,
            attempts,
            log: log.clone(),
            accountant: state.accountant.clone(),
        };

    if let Some((key, _)) = &cache_slot {
        if !bypass_cache {
            if let Some(hit) = state.store.cache.get(key, crate::store::keys::now_secs()) {
                let target = targets
                    .iter()
                    .find(|t| *t.provider == hit.provider)
                    .unwrap_or(&targets[0]);
                let mut response = HttpResponse::Ok();
                decorate(
                    &mut response,
                    &hit.provider,
                    &hit.model,
                    &decision,
                    Some("hit"),
                    0,
                );
                let after = aftermath(target, true, None, 0);
                return Ok(if stream {
                    let chunks = cache::as_chunks(&hit, client_wants_usage);
                    let events = futures_util::stream::iter(chunks.into_iter().map(Ok));
                    sse(
                        &mut response,
                        Relay::new(Box::pin(events), false, Some(stream_finish(after))),
                    )
                } else {
                    let json = cache::as_json(&hit);
                    let usage = crate::wire::usage_of(&json);
                    after.finish(Completed {
                        status: 200,
                        usage,
                        body: None,
                        payloads: vec![],
                        complete: true,
                        error: None,
                    });
                    response
                        .insert_header((CONTENT_TYPE, "application/json"))
                        .body(json)
                });
            }
        }
    }
    let cache_state = cache_slot
        .as_ref()
        .map(|_| if bypass_cache { "bypass" } else { "miss" });

    // Ask for the usage chunk even when the client did not, so streams can be accounted.
    let outcome = router::attempts::run(
        &state.health,
        &snapshot,
        &targets,
        router::attempts::Call {
            request_id: request_id.as_str(),
            body: &mut body,
            ask_stream_usage: stream && !client_wants_usage,
            decision: &decision,
        },
    )
    .await;
    let served = match outcome {
        Ok(served) => served,
        Err(failed) => {
            let attempts = router::attempts::calls(&failed.attempts);
            return Err(Failure {
                error: with_attempts(failed.error, attempts),
                attempts: attempt_log(&failed.attempts),
            });
        }
    };
    // `served.attempts` is the per-try record (target, outcome, latency, why it moved on).
    let attempts = router::attempts::calls(&served.attempts);
    let target = &served.target;
    let reply = served.reply;
    let cache_put = cache_slot.map(|(key, ttl_secs)| CachePut {
        cache: state.store.cache.clone(),
        key,
        ttl_secs,
    });
    let mut after = aftermath(target, false, cache_put, attempts);
    after.log.attempt_log = attempt_log(&served.attempts);
    let mut response = match &reply {
        Reply::Json { status, .. } => HttpResponse::build(*status),
        Reply::Stream(_) => HttpResponse::build(StatusCode::OK),
    };
    decorate(
        &mut response,
        &target.provider,
        &target.model.name,
        &decision,
        cache_state,
        attempts,
    );
    Ok(match reply {
        Reply::Json {
            status,
            body,
            usage,
        } => {
            let keep =
                (after.cache_put.is_some() || after.accountant.log_bodies).then(|| body.clone());
            after.finish(Completed {
                status: status.as_u16(),
                usage,
                body: keep,
                payloads: vec![],
                complete: true,
                error: None,
            });
            response
                .insert_header((CONTENT_TYPE, "application/json"))
                .body(body)
        }
        Reply::Stream(events) => {
            let capture = (after.cache_put.is_some() && cache::cacheable(&body))
                || after.accountant.log_bodies;
            let relay = Relay::new(events, !client_wants_usage, Some(stream_finish(after)));
            sse(&mut response, if capture { relay.capture() } else { relay })
        }
    })
}

/// A failed request, with the attempts it made for the request log.
struct Failure {
    error: ApiError,
    attempts: Vec<serde_json::Value>,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure {
            error,
            attempts: Vec::new(),
        }
    }
}

fn attempt_log(attempts: &[router::attempts::AttemptRecord]) -> Vec<serde_json::Value> {
    attempts
        .iter()
        .filter_map(|a| serde_json::to_value(a).ok())
        .collect()
}

fn with_attempts(mut e: ApiError, attempts: u32) -> ApiError {
    if attempts > 1 {
        e.message = format!("{} (after {attempts} attempts)", e.message);
    }
    e
}

fn decorate(
    response: &mut HttpResponseBuilder,
    provider: &str,
    model: &str,
    decision: &Decision,
    cache_state: Option<&str>,
    attempts: u32,
) {
    response
        .insert_header((PROVIDER_HEADER, provider))
        .insert_header((MODEL_HEADER, model))
        .insert_header((ATTEMPTS_HEADER, attempts.to_string()));
    if let Some(state) = cache_state {
        response.insert_header((CACHE_HEADER, state));
    }
    if let Some(variants) = decision.variant_header() {
        response.insert_header((VARIANT_HEADER, variants));
    }
}

fn sse(response: &mut HttpResponseBuilder, relay: Relay) -> HttpResponse {
    response
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(relay)
}

fn stream_finish(after: Aftermath) -> super::relay::OnFinish {
    Box::new(move |outcome: StreamOutcome| {
        let complete = outcome.error.is_none() && !outcome.client_gone;
        after.finish(Completed {
            status: if outcome.error.is_some() { 502 } else { 200 },
            usage: outcome.usage,
            body: None,
            payloads: outcome.payloads,
            complete,
            error: outcome.error,
        })
    })
}
