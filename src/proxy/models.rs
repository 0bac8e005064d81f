//! `GET /v1/models` and `GET /v1/models/{id}`: the models this key may use, OpenAI's list shape.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::router::Target;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use std::time::UNIX_EPOCH;

#[derive(Serialize)]
pub struct ModelObject<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'a str,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
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
    state
        .snapshot()
        .loaded_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub async fn list(caller: Caller, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.snapshot();
    let created = created(&state);
    let data = snapshot
        .models
        .all()
        .iter()
        .filter(|t| caller.0.allows_model(&t.id, &t.model.name))
        .map(|t| object(t, created))
        .collect();
    HttpResponse::Ok().json(ModelList {
        object: "list",
        data,
    })
}

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
        .filter(|t| caller.0.allows_model(&t.id, &t.model.name))
        .ok_or_else(|| ApiError::model_not_found(&id))?;
    Ok(HttpResponse::Ok().json(object(target, created(&state))))
}
