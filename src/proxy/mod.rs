//! The OpenAI-compatible `/v1` endpoints, and the pipeline every proxied request runs.
//!
//! A handler reads the body within `--body-limit` and parses it (`body.rs`), keeping the
//! client's bytes so untouched fields go upstream as sent; then `forward.rs` runs the stages
//! in this order, each a module with one job. What a stage reads, and what it adds:
//!
//! 0. **request id** (`request_id.rs`, middleware): the client's sane `x-request-id` or a fresh
//!    one, plus the gateway's own log id. Adds: `RequestId`.
//! 1. **decide** (`decide.rs`): reads the body, the key, the headers (without credentials).
//!    Checks the per-request bounds (`bounds.rs`), then runs the policies' `on_request`.
//!    Adds: the rewritten body and a `Decision` (route plan, cache TTL, limits, budgets,
//!    variants, upstream headers, tags); a rejection or a script error ends the request.
//! 2. **route** (`route.rs`): reads the route plan, the model table, the key's allow-list.
//!    Adds: the ordered targets; a 404 when none resolves, a 403 when the key may use none.
//! 3. **admit** (`admit.rs`, estimates in `wire/estimate.rs`): reads the decision's limits and
//!    budgets, the key's own limits, the body and the targets' pricing. Reserves all of them
//!    in one step. Adds: a `Hold` (settled in stage 7 with real usage, or given back whole if
//!    the request fails on the way) and each limit's standing for the rate-limit headers; or
//!    a 429 that names the limit.
//! 4. **cache lookup** (`lookup.rs`, keys and replay in `cache.rs`): reads the decision's
//!    cache TTL and the client's `Cache-Control`. Adds: the cache slot and label; a hit is
//!    answered at once (stage 6) and settled (stage 7) without calling upstream.
//! 5. **dispatch** (`dispatch.rs`, the loop in `router::attempts`): reads the targets and the
//!    route plan; skips targets the key may not use or whose breaker is open; retries and
//!    falls back. Counts every call against its provider. Adds: the reply and its attempt
//!    records, or the last error.
//! 6. **respond** (`respond.rs`, streams through `relay.rs`): reads the reply. Adds the
//!    headers (provider, model, attempts, cache, variants, the tightest limits'
//!    `x-ratelimit-*`, or the upstream's when no limit of the gateway's applied) and
//!    sends the JSON, or relays the stream event by event.
//! 7. **settle** (`settle.rs`): when the JSON is built or the stream ends, however it ends:
//!    the hold settled with real usage (estimated from the streamed text when a stream
//!    reports none), the cache written, `on_response` policies, the
//!    request log entry and usage (queued for the accounting thread).
//!
//! A stage that ends the request returns a `Failure` (`failure.rs`): the client's error, the
//! attempts made and a detail for the request log, which `forward.rs` records.
//!
//! Tracing (`telemetry/`): `forward.rs` starts the request's SERVER span (a child of the
//! client's `traceparent`) before stage 1, wraps stage 1 and, when a policy caches, stage 4 in
//! spans of their own; `router::attempts` makes a CLIENT span per upstream call and sends its
//! context upstream; the span ends in stage 7 (or with the `Failure`), with usage and cost.
//! With tracing off all of it is empty values.

pub mod admit;
pub mod batch_runner;
pub mod batches;
pub mod body;
pub mod bounds;
pub mod budget_alerts;
pub mod cache;
pub mod decide;
pub mod dispatch;
mod eager;
pub use crate::wire::estimate;
pub mod failure;
pub mod files;
pub mod forward;
pub mod guarded;
pub mod lookup;
pub mod messages;
pub mod mirror;
pub mod models;
pub mod native;
pub mod relay;
pub mod request_id;
pub mod respond;
pub mod responses;
pub mod route;
pub mod settle;
pub mod shape;
pub mod stored;

use crate::error::ApiError;
use crate::http::callers::Caller;
use crate::state::AppState;
use crate::wire::{ChatRequest, CompletionRequest, EmbeddingRequest, RequestBody, Typed};
use actix_web::{web, HttpRequest, HttpResponse};
use request_id::RequestId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::resource("/v1/chat/completions").route(web::post().to(chat_completions)),
    )
    .service(crate::http::resource("/v1/completions").route(web::post().to(completions)))
    .service(crate::http::resource("/v1/embeddings").route(web::post().to(embeddings)))
    .service(crate::http::resource("/v1/messages").route(web::post().to(messages::create)))
    .service(
        crate::http::resource("/v1/messages/count_tokens")
            .route(web::post().to(messages::count_tokens)),
    )
    .service(crate::http::resource("/v1/responses").route(web::post().to(responses::create)))
    .service(
        crate::http::resource("/v1/responses/{id}")
            .route(web::get().to(responses::get))
            .route(web::delete().to(responses::delete)),
    )
    .service(
        crate::http::resource("/v1/files")
            .route(web::post().to(files::create))
            .route(web::get().to(files::list)),
    )
    .service(
        crate::http::resource("/v1/files/{file_id}")
            .route(web::get().to(files::get))
            .route(web::delete().to(files::delete)),
    )
    .service(
        crate::http::resource("/v1/files/{file_id}/content").route(web::get().to(files::content)),
    )
    .service(
        crate::http::resource("/v1/batches")
            .route(web::post().to(batches::create))
            .route(web::get().to(batches::list)),
    )
    .service(crate::http::resource("/v1/batches/{batch_id}").route(web::get().to(batches::get)))
    .service(
        crate::http::resource("/v1/batches/{batch_id}/cancel")
            .route(web::post().to(batches::cancel)),
    )
    .service(crate::http::resource("/v1/models").route(web::get().to(models::list)))
    // Model ids contain `/`, so the id is the whole rest of the path.
    .service(crate::http::resource("/v1/models/{id:.+}").route(web::get().to(models::get)));
}

/// Reads and parses the body as `T`, then forwards it. The body keeps the client's bytes, so
/// the fields the gateway leaves alone go upstream exactly as they came. A request refused
/// before forwarding (no key, a bad body) still says it made no upstream call, like every
/// proxied response.
async fn proxied<T: serde::de::DeserializeOwned>(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    request_id: RequestId,
    payload: web::Payload,
    state: web::Data<AppState>,
    wrap: fn(T) -> Typed,
) -> Result<HttpResponse, ApiError> {
    let caller = caller.map_err(body::no_calls)?;
    let bytes = body::read_limited(&req, payload, state.body_limit)
        .await
        .map_err(body::no_calls)?;
    let parsed: T = body::parse_json(&bytes).map_err(body::no_calls)?;
    let body = RequestBody::with_original(wrap(parsed), bytes);
    forward::forward(
        &state,
        &caller.0,
        &request_id,
        req.headers(),
        body,
        &shape::Shape::OpenAi,
    )
    .await
}

/// Creates a chat completion, streamed or whole.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    operation_id = "createChatCompletion",
    tag = "proxy",
    request_body(
        content = ChatRequest,
        description = "Typed fields are listed; any other OpenAI field is accepted and passed upstream unchanged"
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events of `chat.completion.chunk` objects ending in `data: [DONE]`",
            headers(
                ("x-request-id" = String, description = "The client's `x-request-id` if it sent one (the log's `client_request_id`), else the gateway's id for the request (the log's `request_id`)"),
                ("x-switchboard-provider" = String, description = "The provider that answered"),
                ("x-switchboard-model" = String, description = "The model that answered"),
            ),
            content(
                (crate::openapi::schemas::ChatCompletion = "application/json"),
                (crate::openapi::schemas::StreamEvent = "text/event-stream"),
            )
        ),
        crate::openapi::responses::KeyRequired,
        crate::openapi::responses::ProxyErrors,
    )
)]
async fn chat_completions(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    request_id: RequestId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxied::<ChatRequest>(req, caller, request_id, payload, state, Typed::Chat).await
}

/// Creates a legacy text completion.
#[utoipa::path(
    post,
    path = "/v1/completions",
    operation_id = "createCompletion",
    tag = "proxy",
    request_body(
        content = CompletionRequest,
        description = "Typed fields are listed; any other OpenAI field is accepted and passed upstream unchanged"
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events of `text_completion` objects ending in `data: [DONE]`",
            content(
                (crate::openapi::schemas::Completion = "application/json"),
                (crate::openapi::schemas::StreamEvent = "text/event-stream"),
            )
        ),
        crate::openapi::responses::KeyRequired,
        crate::openapi::responses::ProxyErrors,
    )
)]
async fn completions(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    request_id: RequestId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxied::<CompletionRequest>(req, caller, request_id, payload, state, Typed::Completions).await
}

/// Creates embeddings.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    operation_id = "createEmbedding",
    tag = "proxy",
    request_body(
        content = EmbeddingRequest,
        description = "Typed fields are listed; any other OpenAI field is accepted and passed upstream unchanged"
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The embeddings", body = crate::openapi::schemas::EmbeddingList),
        crate::openapi::responses::KeyRequired,
        crate::openapi::responses::ProxyErrors,
    )
)]
async fn embeddings(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    request_id: RequestId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxied::<EmbeddingRequest>(req, caller, request_id, payload, state, Typed::Embeddings).await
}
