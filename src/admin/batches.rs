//! `/admin/batches`: every key's batches (for the dashboard's Batches page), with whose they
//! are and what they have cost so far; cancelling any of them; downloading their files.

use crate::batches::record::{self, Batch};
use crate::error::ApiError;
use crate::http::callers::AdminCaller;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/admin/batches").route(web::get().to(list)))
        .service(crate::http::resource("/admin/batches/{batch_id}").route(web::get().to(get)))
        .service(
            crate::http::resource("/admin/batches/{batch_id}/cancel").route(web::post().to(cancel)),
        )
        .service(
            crate::http::resource("/admin/files/{file_id}/content")
                .route(web::get().to(file_content)),
        );
}

/// A batch, whose it is and its cost so far.
#[derive(Serialize, ToSchema)]
pub struct AdminBatch {
    #[serde(flatten)]
    pub batch: Batch,
    /// The key that created it (its lines run as that key).
    pub key_id: String,
    /// What its lines have cost so far, in USD.
    pub cost_usd: f64,
}

#[derive(Serialize, ToSchema)]
pub struct AdminBatchList {
    pub data: Vec<AdminBatch>,
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminBatchQuery {
    /// At most this many (1 to 1000; default 100).
    pub limit: Option<usize>,
    /// The batches after this id.
    pub after: Option<String>,
}

fn admin_view(r: record::BatchRecord) -> AdminBatch {
    AdminBatch {
        batch: r.batch,
        key_id: r.owner,
        cost_usd: r.cost_usd,
    }
}

/// Every key's batches, newest first.
#[utoipa::path(
    get,
    path = "/admin/batches",
    operation_id = "listAllBatches",
    tag = "batches",
    params(AdminBatchQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of batches", body = AdminBatchList),
        (status = 400, description = "A bad query parameter", body = crate::error::ErrorResponse),
        crate::openapi::responses::AdminRequired,
    )
)]
async fn list(
    _admin: AdminCaller,
    query: web::Query<AdminBatchQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = crate::proxy::batches::page_limit(query.limit, 100, 1000)?;
    let (page, has_more) = state.batches.list(None, query.after.as_deref(), limit);
    Ok(HttpResponse::Ok().json(AdminBatchList {
        data: page.into_iter().map(admin_view).collect(),
        has_more,
    }))
}

/// Any key's batch.
#[utoipa::path(
    get,
    path = "/admin/batches/{batch_id}",
    operation_id = "getAnyBatch",
    tag = "batches",
    params(("batch_id" = String, Path, description = "A batch id (`batch_...`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The batch", body = AdminBatch),
        crate::openapi::responses::AdminRequired,
        (status = 404, description = "No such batch", body = crate::error::ErrorResponse),
    )
)]
async fn get(
    _admin: AdminCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let record = crate::proxy::batches::batch_for(&state, &path, None)?;
    Ok(HttpResponse::Ok().json(admin_view(record)))
}

/// Cancels any key's batch.
#[utoipa::path(
    post,
    path = "/admin/batches/{batch_id}/cancel",
    operation_id = "cancelAnyBatch",
    tag = "batches",
    params(("batch_id" = String, Path, description = "A batch id (`batch_...`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The batch, `cancelling` (or `cancelled`)", body = Batch),
        crate::openapi::responses::AdminRequired,
        (status = 404, description = "No such batch", body = crate::error::ErrorResponse),
        (status = 409, description = "The batch has already finished", body = crate::error::ErrorResponse),
        (status = 503, description = "The change could not be written (a full disk)", body = crate::error::ErrorResponse),
    )
)]
async fn cancel(
    _admin: AdminCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::proxy::batches::cancel_as(&state, &path, None).await
}

/// Any key's file (a batch's input, output or error file).
#[utoipa::path(
    get,
    path = "/admin/files/{file_id}/content",
    operation_id = "downloadAnyFile",
    tag = "batches",
    params(("file_id" = String, Path, description = "A file id (`file-...`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The file's bytes (JSON lines)", content_type = "application/octet-stream", body = String),
        crate::openapi::responses::AdminRequired,
        (status = 404, description = "No such file", body = crate::error::ErrorResponse),
    )
)]
async fn file_content(
    _admin: AdminCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let meta = crate::proxy::files::file_for(&state, &path, None)?;
    crate::proxy::files::download(&state, &meta).await
}
