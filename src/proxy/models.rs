//! `GET /v1/models` and `GET /v1/models/{id}`: the models this key may use, OpenAI's list shape.

use crate::error::ApiError;
use crate::http::callers::Caller;
use crate::router::Target;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

/// A model this key may use.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "mock/echo", "object": "model", "created": 1700000000, "owned_by": "mock"}))]
pub struct ModelObject<'a> {
    /// `provider/model`: what to send as `model`.
    pub id: &'a str,
    /// `model`
    pub object: &'static str,
    /// Unix seconds: when the configuration serving it was loaded.
    pub created: u64,
    /// The provider's name.
    pub owned_by: &'a str,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList<'a> {
    /// `list`
    pub object: &'static str,
    pub data: Vec<ModelObject<'a>>,
}

fn object(target: &Target, created: u64) -> ModelObject<'_> {
    ModelObject {
        id: &target.id,
        object: "model",
        created,
        owned_by: &target.provider,
    }
}

fn created(state: &AppState) -> u64 {
    crate::clock::unix_secs(state.snapshot().loaded_at)
}

/// Lists the models this key may use.
#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "listModels",
    tag = "proxy",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The models this key may use", body = ModelList),
        crate::openapi::responses::KeyRequired,
    )
)]
pub async fn list(caller: Caller, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.snapshot();
    let created = created(&state);
    let data = snapshot
        .models
        .all()
        .iter()
        .filter(|t| super::route::may_use(&caller.0, &snapshot.models, t))
        .map(|t| object(t, created))
        .collect();
    HttpResponse::Ok().json(ModelList {
        object: "list",
        data,
    })
}

/// One model, if this key may use it.
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    operation_id = "retrieveModel",
    tag = "proxy",
    params(("id" = String, Path, description = "A model id (`provider/model`, may contain `/`) or a bare model name", example = "mock/echo")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The model", body = ModelObject),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::KeyRequired,
        (status = 404, description = "No such model, or not one this key may use", body = crate::error::ErrorResponse),
    )
)]
pub async fn get(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let snapshot = state.snapshot();
    let target = snapshot
        .models
        .resolve(&id)
        .filter(|t| super::route::may_use(&caller.0, &snapshot.models, t))
        .ok_or_else(|| ApiError::model_not_found(&id))?;
    Ok(HttpResponse::Ok().json(object(target, created(&state))))
}
