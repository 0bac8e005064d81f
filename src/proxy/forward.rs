//! The life of a proxied request after parsing, stage by stage (see the list in `proxy/`):
//! decide, admit, route, cache lookup, dispatch, respond, settle. Each stage is its own
//! module; this file only runs them in order and logs a request that fails before a reply.

use super::failure::Failure;
use super::request_id::RequestId;
use super::settle::{Aftermath, CachePut};
use super::shape::Shape;
use super::{admit, decide, dispatch, lookup, respond, route};
use crate::error::ApiError;
use crate::error_codes::Code;
use crate::policy::PolicyEnv;
use crate::router::{self, Target};
use crate::state::AppState;
use crate::store::logs::AttemptLog;
use crate::store::logs::LogEntry;
use crate::store::KeyRecord;
use crate::telemetry::spans::attr;
use crate::telemetry::RequestTrace;
use crate::wire::RequestBody;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::HttpResponse;
use opentelemetry::KeyValue;
use std::sync::Arc;
use std::time::Instant;

/// The log tag a batch's requests carry: the batch's id.
pub const BATCH_TAG: &str = "batch";

/// Runs the request, and logs it when it fails before a reply exists (a reply logs itself
/// when it completes, in the aftermath). The reply goes back in `shape`, the client's API; an
/// error is the caller's to shape.
pub async fn forward(
    state: &AppState,
    caller: &Arc<KeyRecord>,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: RequestBody,
    shape: &Shape,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let model_too_long = body.model().len() > router::models::MAX_NAME_BYTES;
    let trace = start_trace(state, caller, request_id, headers, &body);
    let log = LogEntry {
        request_id: request_id.log_id().to_string(),
        client_request_id: request_id.client().map(str::to_string),
        trace_id: trace.trace_id().map(str::to_string),
        at_ms: crate::clock::now_ms(),
        key_id: caller.id.clone(),
        team: caller.team.clone(),
        endpoint: endpoint_of(&body).to_string(),
        format: Some(body.format().as_str().to_string()),
        requested_model: crate::error::truncated(body.model(), router::models::MAX_NAME_BYTES)
            .into_owned(),
        stream: body.is_stream(),
        // A request refused for its model name keeps no body: it never reached the policies.
        request_body: (state.accountant.log_bodies && !model_too_long)
            .then(|| body.to_json_value()),
        tags: request_id
            .batch()
            .map(|line| [(BATCH_TAG.to_string(), line.batch_id.clone())].into())
            .unwrap_or_default(),
        ..LogEntry::default()
    };
    let result = if model_too_long {
        Err(ApiError::bad_request(format!(
            "`model` is longer than {} bytes; no model has such a name",
            router::models::MAX_NAME_BYTES
        ))
        .with_param("model")
        .with_code(Code::ModelTooLong)
        .into())
    } else {
        proxy(
            state, caller, request_id, headers, body, started, &log, shape, &trace,
        )
        .await
    };
    result.map_err(|failure| {
        trace.set(|| vec![KeyValue::new(attr::ATTEMPTS, failure.calls as i64)]);
        trace.end(failure.error.status.as_u16(), Some(&failure.error.message));
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
        log.unknown_model = failure.attempts.is_none()
            && state
                .snapshot()
                .models
                .resolve(&log.requested_model)
                .is_none();
        log.attempt_log = failure.attempts;
        state.accountant.record(log);
        (*failure.error).with_header(
            HeaderName::from_static(respond::ATTEMPTS_HEADER),
            HeaderValue::from(failure.calls),
        )
    })
}

/// The request's SERVER span (`POST /v1/chat/completions`), or with tracing off, the
/// client's trace headers to pass on. Nothing from the prompt goes in: the model asked for,
/// the key's id, the request id.
fn start_trace(
    state: &AppState,
    caller: &KeyRecord,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: &RequestBody,
) -> RequestTrace {
    let route = || format!("/v1/{}", endpoint_of(body));
    state.telemetry.request(
        headers,
        || format!("POST {}", route()),
        || {
            vec![
                KeyValue::new(attr::HTTP_METHOD, "POST"),
                KeyValue::new(attr::HTTP_ROUTE, route()),
                KeyValue::new(
                    attr::OPERATION,
                    crate::telemetry::spans::operation(body.endpoint().path()),
                ),
                KeyValue::new(
                    attr::REQUEST_MODEL,
                    crate::error::truncated(body.model(), router::models::MAX_NAME_BYTES)
                        .into_owned(),
                ),
                KeyValue::new(attr::KEY_ID, caller.id.clone()),
                KeyValue::new(attr::REQUEST_ID, request_id.log_id().to_string()),
            ]
        },
    )
}

/// Who served, on the request's span: the provider, its `gen_ai.system`, the upstream model.
fn served_by(trace: &RequestTrace, snapshot: &crate::snapshot::Snapshot, target: &Target) {
    trace.set(|| {
        let kind = snapshot
            .config
            .providers
            .iter()
            .find(|p| *p.name == *target.provider)
            .map_or("", |p| p.kind.as_str());
        vec![
            KeyValue::new(attr::PROVIDER, target.provider.to_string()),
            KeyValue::new(attr::SYSTEM, crate::telemetry::gen_ai_system(kind)),
            KeyValue::new(attr::RESPONSE_MODEL, target.model.upstream.to_string()),
        ]
    });
}

/// The endpoint a request came in on, as the log names it (below `/v1/`).
fn endpoint_of(body: &RequestBody) -> &'static str {
    match body.format() {
        crate::wire::Format::Messages => "messages",
        crate::wire::Format::Responses => "responses",
        _ => body.endpoint().path(),
    }
}

/// The stages, in order. A stage that ends the request returns a `Failure`.
#[allow(clippy::too_many_arguments)] // the request's parts, each used by a different stage
async fn proxy(
    state: &AppState,
    caller: &Arc<KeyRecord>,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: RequestBody,
    started: Instant,
    log: &LogEntry,
    shape: &Shape,
    trace: &RequestTrace,
) -> Result<HttpResponse, Failure> {
    let snapshot = state.snapshot();
    let requested = body.model().to_string();
    let env = PolicyEnv {
        counters: state.store.counters.clone(),
        assignments: state.store.assignments.clone(),
        simulate: false,
        providers: Some(state.providers.clone()),
        client_ip: request_id
            .peer()
            .map(|peer| crate::http::client_ip::client_ip(peer, headers, &state.trusted_proxies)),
        batch_id: request_id
            .batch()
            .map(|line| Arc::from(line.batch_id.as_str())),
    };
    // 1. decide: bounds, then the policies.
    let mut policy_span = trace.stage("policy");
    let decided = decide::decide(
        state,
        &snapshot,
        caller,
        request_id,
        headers,
        body,
        env.clone(),
    )
    .await;
    if let (Err(failure), true) = (&decided, policy_span.is_recording()) {
        policy_span.fail(failure.error.message.clone());
    }
    policy_span.end();
    let (mut body, mut decision) = decided?;
    if let Some(line) = request_id.batch() {
        // The gateway's own tag: a script cannot make a live request look like a batch's.
        decision
            .tags
            .insert(BATCH_TAG.into(), line.batch_id.clone());
    }
    if decision.output_guard.is_some() {
        // The guard reads the reply in the chat form: no provider passes this one through.
        body.forget_native();
    }
    // The request as the policies left it, for a copy to a candidate (`ctx.mirror`).
    let mirror_body = decision
        .mirror
        .as_ref()
        .filter(|m| m.sampled)
        .map(|_| body.clone());
    trace.set(|| {
        decision
            .variant_header()
            .map(|variants| vec![KeyValue::new(attr::VARIANT, variants)])
            .unwrap_or_default()
    });
    // 2. route: the targets, each held against the key's allow-list.
    let targets = route::route(&snapshot.models, caller, &decision, &body, &requested)?;
    // 3. admit: every limit and budget reserved at once; dropped unsettled, all given back.
    // The prompt's estimate: what budgets reserve, and the usage of a reply that reports none.
    let prompt_estimate = super::estimate::prompt_tokens(&body);
    let hold = admit::admit(state, caller, &decision, &body, prompt_estimate, &targets).await?;
    let may_use = |target: &Target| route::may_use(caller, &snapshot.models, target);

    let stream = body.is_stream();
    let client_wants_usage = body.wants_stream_usage();
    let standing = hold.standing().to_vec();
    let settle = |hold: admit::Hold,
                  target: &Target,
                  cached: bool,
                  cache_put: Option<CachePut>,
                  attempts: u32| Aftermath {
        snapshot: snapshot.clone(),
        env: env.clone(),
        hold,
        prompt_estimate,
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
        usage_estimated: false,
        metrics: state.metrics.clone(),
        trace: trace.clone(),
        mirror: None,
        health: None,
        batch: request_id.batch().cloned(),
    };

    // 4. cache lookup: a hit is answered here, settled like any reply. Its span only when a
    // policy caches this request: otherwise there is nothing to look up.
    let cache_span = decision.cache_ttl.map(|_| trace.stage("cache lookup"));
    let cached = lookup::lookup(state, &decision, &targets, &body, headers).await;
    if let Some(label) = cached.label {
        trace.set(|| vec![KeyValue::new(attr::CACHE, label)]);
    }
    if let Some(mut span) = cache_span {
        span.set(|| vec![KeyValue::new(attr::CACHE, cached.label.unwrap_or("none"))]);
        span.end();
    }
    if let Some(hit) = &cached.hit {
        let target = targets
            .iter()
            .find(|t| *t.provider == hit.provider)
            .unwrap_or(&targets[0]);
        served_by(trace, &snapshot, target);
        let served = respond::Served {
            provider: &hit.provider,
            model: &hit.model,
            decision: &decision,
            cache_label: cached.label,
            attempts: 0,
            standing: &standing,
            request_id: request_id.log_id(),
        };
        let after = settle(hold, target, true, None, 0);
        return Ok(respond::from_cache(
            hit,
            served,
            stream,
            client_wants_usage,
            after,
            shape,
        ));
    }

    // 5. dispatch: the attempts. The usage chunk is asked for even when the client did not,
    // so streams can be accounted.
    let served = dispatch::dispatch(
        state,
        &snapshot,
        request_id,
        &targets,
        &mut body,
        &decision,
        stream && !client_wants_usage,
        &may_use,
        trace,
    )
    .await?;
    served_by(trace, &snapshot, &served.target);

    // 6. respond, with 7. settle run when the reply is complete.
    let attempts = router::attempts::calls(&served.attempts);
    let target = &served.target;
    let cache_put = cached.slot.map(|(key, ttl_secs)| CachePut {
        cache: state.store.cache.clone(),
        key,
        ttl_secs,
    });
    let mut after = settle(hold, target, false, cache_put, attempts);
    after.health = Some(served.health);
    after.log.attempt_log = AttemptLog::of(&served.attempts);
    after.mirror = mirror_body.map(|body| super::mirror::MirrorJob {
        target: decision
            .mirror
            .as_ref()
            .map(|m| m.target.clone())
            .unwrap_or_default(),
        body,
        mirrors: state.mirrors.clone(),
    });
    let capture = respond::Capture {
        // A mirrored reply is kept to compare the copy's text with.
        wanted: after.cache_put.is_some() || after.accountant.log_bodies || after.mirror.is_some(),
        limit: super::bounds::capture_limit(&snapshot, &target.provider),
    };
    let headers = respond::Served {
        provider: &target.provider,
        model: &target.model.name,
        decision: &decision,
        cache_label: cached.label,
        attempts,
        standing: &standing,
        request_id: request_id.log_id(),
    };
    // An Anthropic provider took a Messages client's request as it came: its reply is in the
    // client's API already.
    // Only a Messages client's request can be; the provider lookup is for those alone.
    let native = body.inbound().is_some()
        && snapshot
            .config
            .providers
            .iter()
            .find(|p| *p.name == *target.provider)
            .is_some_and(|p| {
                crate::providers::anthropic::passthrough::served_natively(p.kind, &body)
            });
    Ok(respond::from_upstream(
        served.reply,
        headers,
        client_wants_usage,
        capture,
        after,
        shape,
        native,
    ))
}
