//! `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`: OpenAI's Responses API.
//!
//! A request is translated into the chat form the pipeline runs on (`inbound::responses`),
//! after the conversation of its `previous_response_id` (a response this key stored); the reply
//! goes back as a response object or the API's typed events, and is stored unless the request
//! said `store: false` (`proxy/stored.rs`, kept as long as request logs).

use super::body::{chat_body, no_calls};
use super::request_id::RequestId;
use super::shape::{Shape, Turn};
use super::{body, forward};
use crate::error::ApiError;
use crate::error_codes::Code;
use crate::http::callers::Caller;
use crate::inbound::responses::reply::{self, Meta};
use crate::inbound::responses::request::to_chat;
use crate::state::AppState;
use crate::store::StoreError;
use crate::wire::{Format, Inbound};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::sync::Arc;

/// Creates a response, streamed or whole, with any provider.
#[utoipa::path(
    post,
    path = "/v1/responses",
    operation_id = "createResponse",
    tag = "proxy",
    request_body(content = crate::openapi::schemas::ResponsesRequest, description = "An OpenAI Responses request (see README, \"OpenAI Responses\", for what is translated)"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The response; with `stream: true`, the typed server-sent events (`response.created`, `response.output_item.added`, `response.output_text.delta`, `response.function_call_arguments.delta`, `response.completed`, `response.failed`, ...)",
            content(
                (crate::openapi::schemas::ResponseObject = "application/json"),
                (crate::openapi::schemas::StreamEvent = "text/event-stream"),
            )
        ),
        crate::openapi::responses::KeyRequired,
        crate::openapi::responses::ProxyErrors,
    )
)]
pub async fn create(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    request_id: RequestId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller.map_err(no_calls)?;
    let bytes = body::read_limited(&req, payload, state.body_limit)
        .await
        .map_err(no_calls)?;
    run_bytes(&state, &caller.0, &request_id, req.headers(), bytes).await
}

/// A Responses request's bytes through the pipeline: from a client, or a batch's line.
pub async fn run_bytes(
    state: &AppState,
    caller: &Arc<crate::store::KeyRecord>,
    request_id: &RequestId,
    headers: &actix_web::http::header::HeaderMap,
    bytes: bytes::Bytes,
) -> Result<HttpResponse, ApiError> {
    let value: Value = body::parse_json(&bytes).map_err(no_calls)?;
    let mut history = Vec::new();
    if let Some(previous) = value.get("previous_response_id") {
        let id = previous.as_str().ok_or_else(|| {
            no_calls(
                ApiError::bad_request("`previous_response_id` must be a string")
                    .with_param("previous_response_id"),
            )
        })?;
        let stored = state
            .responses
            .get(id, &caller.id)
            .await
            .map_err(store_error)
            .map_err(no_calls)?
            .ok_or_else(|| no_calls(missing(id).with_param("previous_response_id")))?;
        history = stored.conversation;
        history.extend(reply::output_items(&stored.response));
    }
    let translated = to_chat(&value, &history).map_err(no_calls)?;
    history.extend(translated.input_items);
    let turn = Turn {
        meta: Meta {
            id: reply::new_id(),
            created_at: crate::clock::now_ms() / 1000,
            request: value.clone(),
        },
        conversation: history,
        key_id: caller.id.clone(),
        store: value.get("store").and_then(Value::as_bool).unwrap_or(true),
        saved: state.responses.clone(),
    };
    let body = chat_body(translated.chat, Format::Responses)
        .and_then(|body| within_body_limit(body, state.body_limit))
        .map_err(no_calls)?
        .with_inbound(Inbound {
            format: Format::Responses,
            native: None,
            headers: Vec::new(),
            untranslated: translated.untranslated,
        });
    let shape = Shape::Responses(Arc::new(turn));
    forward::forward(state, caller, request_id, headers, body, &shape).await
}

/// A conversation continued through `previous_response_id` is bounded like a chat client's
/// whole conversation: its chat form must fit in `--body-limit`, so stored turns cannot grow
/// a request (or what is stored with its response) without end.
fn within_body_limit(
    body: crate::wire::RequestBody,
    limit: usize,
) -> Result<crate::wire::RequestBody, ApiError> {
    let size = body.original_len().unwrap_or(0);
    if size > limit {
        let mut e = ApiError::payload_too_large(limit).with_param("previous_response_id");
        e.message = format!(
            "the conversation (the stored turns of `previous_response_id` and this input) is \
             larger than the limit of {limit} bytes; start a new conversation"
        );
        return Err(e);
    }
    Ok(body)
}

/// A stored response, as it was returned.
#[utoipa::path(
    get,
    path = "/v1/responses/{id}",
    operation_id = "getResponse",
    tag = "proxy",
    params(("id" = String, Path, description = "A response id (`resp_...`) made with this key")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The response", body = crate::openapi::schemas::ResponseObject),
        crate::openapi::responses::KeyRequired,
        (status = 404, description = "No such response for this key (or it has expired)", body = crate::error::ErrorResponse),
    )
)]
pub async fn get(
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    let stored = state
        .responses
        .get(&id, &caller.0.id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| missing(&id))?;
    Ok(HttpResponse::Ok().json(stored.response))
}

/// Deletes a stored response.
#[utoipa::path(
    delete,
    path = "/v1/responses/{id}",
    operation_id = "deleteResponse",
    tag = "proxy",
    params(("id" = String, Path, description = "A response id (`resp_...`) made with this key")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted", body = crate::openapi::schemas::DeletedResponse),
        crate::openapi::responses::KeyRequired,
        (status = 404, description = "No such response for this key (or it has expired)", body = crate::error::ErrorResponse),
    )
)]
pub async fn delete(
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    if !state
        .responses
        .delete(&id, &caller.0.id)
        .await
        .map_err(store_error)?
    {
        return Err(missing(&id));
    }
    Ok(HttpResponse::Ok().json(json!({"id": id.as_str(), "object": "response", "deleted": true})))
}

/// OpenAI's 404 for a response that is unknown, expired or another key's (which are told
/// apart from each other for no one).
fn missing(id: &str) -> ApiError {
    let shown = crate::error::truncated(id, 100);
    ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("Response with id '{shown}' not found."),
    )
    .with_code(Code::ResponseNotFound)
}

fn store_error(e: StoreError) -> ApiError {
    tracing::warn!(error = %e, "stored responses could not be read");
    if e.is_unreachable() {
        ApiError::store_unavailable()
    } else {
        ApiError::storage_unavailable()
    }
}
