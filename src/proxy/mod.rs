//! The OpenAI-compatible `/v1` endpoints.

pub mod aftermath;
pub mod body;
pub mod cache;
pub mod forward;
pub mod models;
pub mod relay;
pub mod request_id;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{ChatRequest, CompletionRequest, EmbeddingRequest, RequestBody};
use actix_web::{web, HttpRequest, HttpResponse};
use request_id::RequestId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::resource("/v1/chat/completions").route(web::post().to(chat_completions)),
    )
    .service(crate::http::resource("/v1/completions").route(web::post().to(completions)))
    .service(crate::http::resource("/v1/embeddings").route(web::post().to(embeddings)))
    .service(crate::http::resource("/v1/models").route(web::get().to(models::list)))
    // Model ids contain `/`, so the id is the whole rest of the path.
    .service(crate::http::resource("/v1/models/{id:.+}").route(web::get().to(models::get)));
}

/// Reads and parses the body as `T`, then forwards it.
async fn proxied<T: serde::de::DeserializeOwned>(
    req: HttpRequest,
    caller: Caller,
    request_id: RequestId,
    payload: web::Payload,
    state: web::Data<AppState>,
    wrap: fn(T) -> RequestBody,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_limited(&req, payload, state.body_limit).await?;
    let parsed: T = body::parse_json(&bytes)?;
    forward::forward(&state, &caller.0, &request_id, req.headers(), wrap(parsed)).await
}

async fn chat_completions(
    req: HttpRequest,
    caller: Caller,
    request_id: RequestId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxied::<ChatRequest>(req, caller, request_id, payload, state, RequestBody::Chat).await
}

async fn completions(
    req: HttpRequest,
    caller: Caller,
    request_id: RequestId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxied::<CompletionRequest>(
        req,
        caller,
        request_id,
        payload,
        state,
        RequestBody::Completions,
    )
    .await
}

async fn embeddings(
    req: HttpRequest,
    caller: Caller,
    request_id: RequestId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxied::<EmbeddingRequest>(
        req,
        caller,
        request_id,
        payload,
        state,
        RequestBody::Embeddings,
    )
    .await
}
