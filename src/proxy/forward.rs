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
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
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

/// A failed script: the client learns only that a policy failed and the request id to quote;
/// the script's name, line and message go to the log and the request log entry, since they
/// describe the operator's configuration, not the client's request.
fn policy_error(failure: ScriptFailure, request_id: &RequestId) -> Failure {
    let request_id = request_id.log_id();
    tracing::error!(request_id, %failure, "policy failed the request");
    Failure {
        error: ApiError::internal(format!(
            "A policy of this gateway failed on the request; the operator can find the cause \
             in the request log under request id {request_id}."
        ))
        .with_code("policy_error"),
        attempts: Vec::new(),
        calls: 0,
        detail: Some(format!("policy error: {failure}")),
    }
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

/// Whether the key may be served by this target. Every target is checked before it is called
/// (fallbacks, pool members and split routes too), so routing can never reach a model the
/// key may not use. The key's entries are names, resolved as requests are.
pub fn may_use(caller: &KeyRecord, models: &router::ModelIndex, target: &Target) -> bool {
    caller.allows_model(&target.id, |name| models.resolve(name).map(|t| &*t.id))
}

/// What the client's `Cache-Control` asks of the response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheControl {
    /// Read and write as the policies decided.
    Normal,
    /// `no-cache`: do not answer from the cache, but store the fresh reply.
    Refresh,
    /// `no-store`: neither read nor write.
    NoStore,
}

fn cache_control(headers: &HeaderMap) -> CacheControl {
    let mut control = CacheControl::Normal;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            // A directive may carry an argument (`no-cache="field"`); its name is what counts.
            let name = directive.split('=').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("no-store") {
                return CacheControl::NoStore;
            }
            if name.eq_ignore_ascii_case("no-cache") {
                control = CacheControl::Refresh;
            }
        }
    }
    control
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
    let model_too_long = body.model().len() > router::models::MAX_NAME_BYTES;
    let log = LogEntry {
        request_id: request_id.log_id().to_string(),
        client_request_id: request_id.client().map(str::to_string),
        at_ms: crate::accounting::now_ms(),
        key_id: caller.id.clone(),
        endpoint: body.endpoint().path().to_string(),
        requested_model: crate::error::truncated(body.model(), router::models::MAX_NAME_BYTES)
            .into_owned(),
        stream: body.is_stream(),
        // A request refused for its model name keeps no body: it never reached the policies.
        request_body: (state.accountant.log_bodies && !model_too_long)
            .then(|| body.to_json_value()),
        ..LogEntry::default()
    };
    let result = if model_too_long {
        Err(ApiError::bad_request(format!(
            "`model` is longer than {} bytes; no model has such a name",
            router::models::MAX_NAME_BYTES
        ))
        .with_param("model")
        .with_code("model_too_long")
        .into())
    } else {
        proxy(state, caller, request_id, headers, body, started, &log).await
    };
    result.map_err(|failure| {
        let mut log = log;
        log.status = failure.error.status.as_u16();
        log.error = Some(
            failure
                .detail
                .unwrap_or_else(|| failure.error.message.clone()),
        );
        log.latency_ms = started.elapsed().as_millis() as u64;
        log.attempts = failure.calls;
        // A name that is no served model, refused before any target: counted as `(unknown)`.
        log.unknown_model = failure.attempts.is_empty()
            && state
                .snapshot()
                .models
                .resolve(&log.requested_model)
                .is_none();
        log.attempt_log = failure.attempts;
        state.accountant.record(log);
        failure.error.with_header(
            HeaderName::from_static(ATTEMPTS_HEADER),
            HeaderValue::from(failure.calls),
        )
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
    super::bounds::check(&body)?;
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
            policy_error(f, request_id)
        })?;
    if let Some(r) = &decision.rejection {
        return Err(rejected(r).into());
    }
    // Limits first: every request a key makes uses its slot, a 404 or a 403 as much as a 200.
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
    let targets = router::targets::resolve(&snapshot.models, &decision.route.routes, body.model())?;
    let may_use = |target: &Target| may_use(caller, &snapshot.models, target);
    if !targets.iter().any(may_use) {
        return Err(Failure {
            error: ApiError::forbidden(format!("This key may not use the model `{requested}`."))
                .with_param("model")
                .with_code("model_not_allowed"),
            attempts: attempt_log(
                &targets
                    .iter()
                    .map(router::attempts::not_allowed)
                    .collect::<Vec<_>>(),
            ),
            calls: 0,
            detail: None,
        });
    }

    let stream = body.is_stream();
    let client_wants_usage = body.wants_stream_usage();
    let control = cache_control(headers);
    let cache_slot = decision
        .cache_ttl
        .filter(|_| cache::cacheable(&body) && control != CacheControl::NoStore)
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
        if control == CacheControl::Normal {
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
    let cache_state = match control {
        _ if decision.cache_ttl.is_none() => None,
        CacheControl::NoStore => Some("bypass"),
        CacheControl::Refresh => cache_slot.as_ref().map(|_| "refresh"),
        CacheControl::Normal => cache_slot.as_ref().map(|_| "miss"),
    };

    // Ask for the usage chunk even when the client did not, so streams can be accounted.
    let outcome = router::attempts::run(
        &state.health,
        &snapshot,
        &targets,
        router::attempts::Call {
            request_id: request_id.as_str(),
            body: &mut body,
            ask_stream_usage: stream && !client_wants_usage,
            plan: &decision.route,
            may_use: &may_use,
        },
    )
    .await;
    let served = match outcome {
        Ok(served) => served,
        Err(failed) => {
            let attempts = router::attempts::calls(&failed.attempts);
            count_attempts(state, &failed.attempts);
            return Err(Failure {
                error: with_attempts(failed.error, attempts),
                attempts: attempt_log(&failed.attempts),
                calls: attempts,
                detail: None,
            });
        }
    };
    count_attempts(state, &served.attempts);
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
    let (mut response, relayed) = match &reply {
        Reply::Json {
            status, headers, ..
        } => (HttpResponse::build(*status), headers),
        Reply::Stream(_, headers) => (HttpResponse::build(StatusCode::OK), headers),
    };
    // The upstream's rate-limit headers first, so the gateway's own headers win on a clash.
    for (name, value) in relayed {
        response.insert_header((name.clone(), value.clone()));
    }
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
            ..
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
        Reply::Stream(events, _) => {
            let capture = (after.cache_put.is_some() && cache::cacheable(&body))
                || after.accountant.log_bodies;
            let relay = Relay::new(events, !client_wants_usage, Some(stream_finish(after)));
            let relay = if capture {
                relay.capture(super::bounds::capture_limit(&snapshot, &target.provider))
            } else {
                relay
            };
            sse(&mut response, relay)
        }
    })
}

/// A failed request, with the attempts it made for the request log.
struct Failure {
    error: ApiError,
    attempts: Vec<serde_json::Value>,
    /// Upstream calls made, for `x-switchboard-attempts` and the log.
    calls: u32,
    /// What the request log records instead of the client's message, when that says less.
    detail: Option<String>,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure {
            error,
            attempts: Vec::new(),
            calls: 0,
            detail: None,
        }
    }
}

/// Counts every upstream call that did not serve the reply against the provider it went to.
/// The one that served is counted with its usage when the request is accounted.
fn count_attempts(state: &AppState, records: &[router::attempts::AttemptRecord]) {
    use router::attempts::{AttemptOutcome, Then};
    for r in records
        .iter()
        .filter(|r| r.called() && r.then != Then::Served)
    {
        let model = r
            .target
            .strip_prefix(&*r.provider)
            .and_then(|m| m.strip_prefix('/'))
            .unwrap_or(&r.target);
        let ok = matches!(r.outcome, AttemptOutcome::Ok { status } if status < 400);
        state.metrics.upstream(
            &r.provider,
            model,
            ok,
            false,
            0,
            0,
            0.0,
            r.latency_ms as f64 / 1000.0,
        );
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
