//! The OpenAI-compatible `/v1` endpoints.

pub mod body;
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

async fn chat_completions(
    req: HttpRequest,
    caller: Caller,
    request_id: RequestId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_limited(&req, payload, state.body_limit).await?;
    let parsed: ChatRequest = body::parse_json(&bytes)?;
    forward::forward(&state, &caller.0, &request_id, RequestBody::Chat(parsed)).await
}

async fn completions(
    req: HttpRequest,
    caller: Caller,
    request_id: RequestId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_limited(&req, payload, state.body_limit).await?;
    let parsed: CompletionRequest = body::parse_json(&bytes)?;
    forward::forward(
        &state,
        &caller.0,
        &request_id,
        RequestBody::Completions(parsed),
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
    let bytes = body::read_limited(&req, payload, state.body_limit).await?;
    let parsed: EmbeddingRequest = body::parse_json(&bytes)?;
    forward::forward(
        &state,
        &caller.0,
        &request_id,
        RequestBody::Embeddings(parsed),
    )
    .await
}
