//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API.
//!
//! A request is translated into the chat form the pipeline runs on (`inbound::messages`),
//! keeping the client's bytes and `anthropic-*` headers for an Anthropic provider, which takes
//! the request as it came; the reply and every error go back in Anthropic's shapes.

use super::body::{self, chat_body, no_calls};
use super::request_id::RequestId;
use super::shape::Shape;
use super::{forward, route};
use crate::error::ApiError;
use crate::http::callers::Caller;
use crate::inbound::messages::request::to_chat;
use crate::state::AppState;
use crate::wire::{Format, Inbound};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

/// Client headers an Anthropic provider gets as they came.
const PASSED_HEADERS: [&str; 2] = ["anthropic-version", "anthropic-beta"];

/// Creates a message, streamed or whole, with any provider.
#[utoipa::path(
    post,
    path = "/v1/messages",
    operation_id = "createMessage",
    tag = "proxy",
    request_body(
        content = crate::openapi::schemas::MessagesRequest,
        description = "An Anthropic Messages request. To an Anthropic provider it is passed through as sent (the model id aside); to the others it is translated (see README, \"Anthropic Messages\")"
    ),
    params(
        ("anthropic-version" = Option<String>, Header, description = "Passed to Anthropic providers"),
        ("anthropic-beta" = Option<String>, Header, description = "Passed to Anthropic providers"),
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The message; with `stream: true`, Anthropic's server-sent events (`message_start`, `content_block_start`, `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`, `ping`; `error` on failure)",
            content(
                (crate::openapi::schemas::Message = "application/json"),
                (crate::openapi::schemas::StreamEvent = "text/event-stream"),
            )
        ),
        (status = "4XX", description = "An error in Anthropic's shape", body = crate::openapi::schemas::AnthropicError),
        (status = "5XX", description = "An error in Anthropic's shape", body = crate::openapi::schemas::AnthropicError),
    )
)]
pub async fn create(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    request_id: RequestId,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let shape = Shape::Messages;
    match run(&req, caller, &request_id, payload, &state, &shape).await {
        Ok(response) => response,
        Err(e) => shape.error(&e),
    }
}

async fn run(
    req: &HttpRequest,
    caller: Result<Caller, ApiError>,
    request_id: &RequestId,
    payload: web::Payload,
    state: &AppState,
    shape: &Shape,
) -> Result<HttpResponse, ApiError> {
    let caller = caller.map_err(no_calls)?;
    let bytes = body::read_limited(req, payload, state.body_limit)
        .await
        .map_err(no_calls)?;
    run_bytes(
        state,
        &caller.0,
        request_id,
        req.headers(),
        passed_headers(req),
        bytes,
        shape,
    )
    .await
}

/// A Messages request's bytes through the pipeline: from a client, or a batch's line.
pub async fn run_bytes(
    state: &AppState,
    caller: &std::sync::Arc<crate::store::KeyRecord>,
    request_id: &RequestId,
    headers: &actix_web::http::header::HeaderMap,
    passed: Vec<(String, String)>,
    bytes: bytes::Bytes,
    shape: &Shape,
) -> Result<HttpResponse, ApiError> {
    let value: Value = body::parse_json(&bytes).map_err(no_calls)?;
    let translated = to_chat(&value).map_err(no_calls)?;
    let body = chat_body(translated.chat, Format::Messages)
        .map_err(no_calls)?
        .with_inbound(Inbound {
            format: Format::Messages,
            native: Some(bytes),
            headers: passed,
            untranslated: translated.untranslated,
        });
    forward::forward(state, caller, request_id, headers, body, shape).await
}

fn passed_headers(req: &HttpRequest) -> Vec<(String, String)> {
    PASSED_HEADERS
        .iter()
        .filter_map(|name| {
            let value = req.headers().get(*name)?.to_str().ok()?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// Counts a Messages request's input tokens: the provider's own count when it has one
/// (Anthropic, Gemini), else the gateway's estimate (the one budgets reserve with: 4 bytes
/// a token plus 4 a message), said in `x-switchboard-token-count: exact|estimate`.
#[utoipa::path(
    post,
    path = "/v1/messages/count_tokens",
    operation_id = "countMessageTokens",
    tag = "proxy",
    request_body(content = crate::openapi::schemas::MessagesRequest, description = "A Messages request (`max_tokens` may be left out)"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "`{\"input_tokens\": N}`",
            headers(("x-switchboard-token-count" = String, description = "`exact` (the provider counted) or `estimate`")),
            body = crate::openapi::schemas::TokenCount),
        (status = "4XX", description = "An error in Anthropic's shape", body = crate::openapi::schemas::AnthropicError),
        (status = "5XX", description = "An error in Anthropic's shape", body = crate::openapi::schemas::AnthropicError),
    )
)]
pub async fn count_tokens(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match count(&req, caller, payload, &state).await {
        Ok((tokens, how)) => HttpResponse::Ok()
            .insert_header(("x-switchboard-token-count", how))
            .json(json!({ "input_tokens": tokens })),
        Err(e) => Shape::Messages.error(&e),
    }
}

async fn count(
    req: &HttpRequest,
    caller: Result<Caller, ApiError>,
    payload: web::Payload,
    state: &AppState,
) -> Result<(u64, &'static str), ApiError> {
    let caller = caller?;
    let bytes = body::read_limited(req, payload, state.body_limit).await?;
    let mut value: Value = body::parse_json(&bytes)?;
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("`model` is required").with_param("model"))?
        .to_string();
    let snapshot = state.snapshot();
    let target = snapshot
        .models
        .resolve(&model)
        .ok_or_else(|| ApiError::model_not_found(&model))?;
    if !route::may_use(&caller.0, &snapshot.models, target) {
        return Err(ApiError::forbidden(format!(
            "This key may not use the model `{model}`."
        )));
    }
    // A count needs no `max_tokens`; the translation does.
    if let Some(object) = value.as_object_mut() {
        object.entry("max_tokens").or_insert(json!(1));
    }
    let translated = to_chat(&value)?;
    let body = chat_body(translated.chat, Format::Messages)?.with_inbound(Inbound {
        format: Format::Messages,
        native: Some(bytes),
        headers: passed_headers(req),
        untranslated: translated.untranslated,
    });
    // A count is a request: the key's and its team's request limits (and in-flight limit)
    // apply, as to any other, so counting cannot be used to spend a provider's rate limit
    // without bound. It uses no tokens: its budgets are given back whole.
    let hold = super::admit::admit(
        state,
        &caller.0,
        &Default::default(),
        &body,
        0,
        std::slice::from_ref(target),
    )
    .await?;
    let counting = snapshot
        .provider(&target.provider)
        .and_then(|provider| provider.count_tokens(&body, &target.model.upstream));
    let counted = match counting {
        Some(counting) => counting
            .await
            .map(|tokens| (tokens, "exact"))
            .map_err(ApiError::from),
        None => Ok((super::estimate::prompt_tokens(&body), "estimate")),
    };
    hold.settle(super::admit::actual(0, 0.0));
    counted
}
