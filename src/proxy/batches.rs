//! `/v1/batches`: create, list, read and cancel batches, in OpenAI's shapes. A batch is its
//! key's (another key gets 404); its lines run as that key (`batch_runner.rs`).

use super::body::{self, no_calls};
use crate::batches::record::{self, Batch};
use crate::batches::{BatchError, NewBatch};
use crate::error::ApiError;
use crate::http::callers::Caller;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/batches`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// A file of this key's with purpose `batch`.
    pub input_file_id: String,
    /// The endpoint every line calls: `/v1/chat/completions`, `/v1/completions`,
    /// `/v1/embeddings`, `/v1/messages` or `/v1/responses`.
    pub endpoint: String,
    /// `24h` (or `<n>h`, `<n>m`, `<n>s`, from 1 s to 7 days).
    pub completion_window: String,
    /// Up to 16 pairs, kept with the batch.
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<Batch>,
    pub has_more: bool,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchQuery {
    /// At most this many (1 to 100; default 20).
    pub limit: Option<usize>,
    /// The batches after this id (the last id of the previous page).
    pub after: Option<String>,
}

pub fn error(e: BatchError) -> ApiError {
    match e {
        BatchError::NotFound => ApiError::not_found("No such batch.").with_param("batch_id"),
        BatchError::Invalid { message, param } => ApiError::bad_request(message).with_param(param),
        BatchError::Conflict(message) => ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "invalid_request_error",
            message,
        ),
        BatchError::TooMany => ApiError::new(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            e.to_string(),
        )
        .with_code(crate::error_codes::Code::RateLimitExceeded),
        BatchError::Io(e) => {
            tracing::error!(error = %e, "could not write a batch record");
            ApiError::storage_unavailable()
        }
    }
}

/// The batch, if `owner` may see it (`None`: any owner, for the admin API), or 404.
pub fn batch_for(
    state: &AppState,
    id: &str,
    owner: Option<&str>,
) -> Result<crate::batches::record::BatchRecord, ApiError> {
    record::is_id(id)
        .then(|| state.batches.get(id, owner))
        .flatten()
        .ok_or_else(|| error(BatchError::NotFound))
}

/// A list's `limit`: `default` when absent, refused outside 1..=`max`.
pub fn page_limit(given: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    let limit = given.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(
            ApiError::bad_request(format!("`limit` must be between 1 and {max}"))
                .with_param("limit"),
        );
    }
    Ok(limit)
}

fn blocked(e: actix_web::error::BlockingError) -> ApiError {
    ApiError::internal(format!("the batch could not be written: {e}"))
}

/// Creates a batch: every line of the input file, sent through the gateway as this key.
#[utoipa::path(
    post,
    path = "/v1/batches",
    operation_id = "createBatch",
    tag = "batches",
    request_body = CreateBatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The batch, `validating`; durable when answered", body = Batch),
        (status = 400, description = "A bad body, an unknown file, a file that is not a batch input, an unknown endpoint or window", body = crate::error::ErrorResponse),
        crate::openapi::responses::KeyRequired,
        (status = 413, description = "The body is larger than `--body-limit`", body = crate::error::ErrorResponse),
        (status = 429, description = "The key has 100 batches not yet finished (`rate_limit_exceeded`)", body = crate::error::ErrorResponse),
        (status = 503, description = "The batch could not be written (a full disk)", body = crate::error::ErrorResponse),
    )
)]
pub async fn create(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller.map_err(no_calls)?;
    let bytes = body::read_limited(&req, payload, state.body_limit).await?;
    let input: CreateBatch = body::parse_json(&bytes)?;
    let batches = state.batches.clone();
    let owner = caller.0.id.clone();
    let batch = web::block(move || {
        batches.create(
            &owner,
            NewBatch {
                input_file_id: input.input_file_id,
                endpoint: input.endpoint,
                completion_window: input.completion_window,
                metadata: input.metadata,
            },
        )
    })
    .await
    .map_err(blocked)?
    .map_err(error)?;
    Ok(HttpResponse::Ok().json(batch))
}

/// The key's batches, newest first.
#[utoipa::path(
    get,
    path = "/v1/batches",
    operation_id = "listBatches",
    tag = "batches",
    params(BatchQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the key's batches", body = BatchList),
        (status = 400, description = "A bad query parameter", body = crate::error::ErrorResponse),
        crate::openapi::responses::KeyRequired,
    )
)]
pub async fn list(
    caller: Result<Caller, ApiError>,
    query: web::Query<BatchQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    let limit = page_limit(query.limit, 20, 100)?;
    let (page, has_more) = state
        .batches
        .list(Some(&caller.0.id), query.after.as_deref(), limit);
    let data: Vec<Batch> = page.into_iter().map(|r| r.batch).collect();
    Ok(HttpResponse::Ok().json(BatchList {
        object: "list",
        first_id: data.first().map(|b| b.id.clone()),
        last_id: data.last().map(|b| b.id.clone()),
        data,
        has_more,
    }))
}

/// A batch of this key's.
#[utoipa::path(
    get,
    path = "/v1/batches/{batch_id}",
    operation_id = "retrieveBatch",
    tag = "batches",
    params(("batch_id" = String, Path, description = "A batch id (`batch_...`) of this key's")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The batch, with its progress", body = Batch),
        crate::openapi::responses::KeyRequired,
        (status = 404, description = "No such batch for this key", body = crate::error::ErrorResponse),
    )
)]
pub async fn get(
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    let record = batch_for(&state, &path, Some(&caller.0.id))?;
    Ok(HttpResponse::Ok().json(record.batch))
}

/// Cancels a batch: no new line is sent; lines in flight finish, and the batch is finalized
/// (`cancelled`) with what completed.
#[utoipa::path(
    post,
    path = "/v1/batches/{batch_id}/cancel",
    operation_id = "cancelBatch",
    tag = "batches",
    params(("batch_id" = String, Path, description = "A batch id (`batch_...`) of this key's")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The batch, `cancelling` (or `cancelled`); durable when answered", body = Batch),
        crate::openapi::responses::KeyRequired,
        (status = 404, description = "No such batch for this key", body = crate::error::ErrorResponse),
        (status = 409, description = "The batch has already finished", body = crate::error::ErrorResponse),
        (status = 503, description = "The change could not be written (a full disk)", body = crate::error::ErrorResponse),
    )
)]
pub async fn cancel(
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    cancel_as(&state, &path, Some(caller.0.id.clone())).await
}

/// Cancels a batch of `owner`'s (`None`: anyone's, for the admin API).
pub async fn cancel_as(
    state: &AppState,
    id: &str,
    owner: Option<String>,
) -> Result<HttpResponse, ApiError> {
    if !record::is_id(id) {
        return Err(error(BatchError::NotFound));
    }
    let batches = state.batches.clone();
    let id = id.to_string();
    let batch = web::block(move || batches.cancel(&id, owner.as_deref()))
        .await
        .map_err(blocked)?
        .map_err(error)?;
    Ok(HttpResponse::Ok().json(batch))
}
