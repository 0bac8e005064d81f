//! `/admin/keys`: create (the secret is shown once), list and get (masked, with last use and
//! usage totals), update, rotate, revoke.

use super::fields::{present, valid_limits, valid_name};
use super::store_failed;
use super::teams::{existing_team, membership};
use crate::error::ApiError;
use crate::http::callers::AdminCaller;
use crate::proxy::body;
use crate::state::AppState;
use crate::store::counters::LimitCheck;
use crate::store::keys::KeyUpdate;
use crate::store::usage::KeyUsage;
use crate::store::{CounterStore, KeyRecord, Limits, NewKey, Role};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::resource("/admin/keys")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        crate::http::resource("/admin/keys/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(revoke)),
    )
    .service(crate::http::resource("/admin/keys/{id}/rotate").route(web::post().to(rotate)));
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "team-a", "role": "user", "models": ["mock/echo"], "tags": {"team": "a"}}))]
pub struct CreateKey {
    pub name: String,
    #[serde(default)]
    pub role: Role,
    /// Models the key may use; empty or absent means all. Each entry (`provider/model` or a
    /// bare name) allows the model a request naming it goes to: a bare name, the first
    /// provider (in file order) that serves it.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Unix seconds after which the key stops working.
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Limits and budgets enforced without a script (see README, "Limits and budgets").
    #[serde(default)]
    pub limits: Limits,
    /// The id of the team the key belongs to (`GET /admin/teams`); an unknown id is a 400
    /// (`code`: `unknown_team`).
    pub team: Option<String>,
}

/// Only the fields given change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"models": ["mock/echo", "mock/echo-priced"], "expires_at": null}))]
pub struct PatchKey {
    pub name: Option<String>,
    pub models: Option<Vec<String>>,
    pub tags: Option<BTreeMap<String, String>>,
    /// A time in unix seconds, or `null` to remove the expiry.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub expires_at: Option<Option<u64>>,
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
    /// Replaces the key's limits whole (`{}` removes them all).
    pub limits: Option<Limits>,
    /// A team id (an unknown one is a 400, `code`: `unknown_team`), or `null` to take the key
    /// out of its team.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub team: Option<Option<String>>,
}

/// A newly created or rotated key: the only responses that ever carry the secret.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// The secret. Store it now: it cannot be shown again.
    pub key: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// A key as listed: no secret, with its use.
#[derive(Serialize, ToSchema)]
pub struct KeyView {
    #[serde(flatten)]
    pub record: KeyRecord,
    pub usage: KeyUsage,
    /// Each of the key's `limits` as it stands now: used, reserved by requests in flight,
    /// remaining.
    pub limit_use: Vec<LimitCheck>,
}

impl KeyView {
    async fn of(
        record: KeyRecord,
        usage: KeyUsage,
        counters: &dyn CounterStore,
    ) -> Result<KeyView, ApiError> {
        let limits = record.limits.as_counters("key", &record.id, &record.name);
        let limit_use = LimitCheck::read(&limits, counters)
            .await
            .map_err(store_failed)?;
        Ok(KeyView {
            record,
            usage,
            limit_use,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    /// `list`
    pub object: &'static str,
    pub data: Vec<KeyView>,
}

fn no_key(id: &str) -> ApiError {
    ApiError::not_found(format!("no active key with id `{id}`"))
}

/// Creates a key; the answer is the only time its secret is shown.
#[utoipa::path(
    post,
    path = "/admin/keys",
    operation_id = "createKey",
    tag = "keys",
    request_body(content = CreateKey),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The key, with its secret", body = CreatedKey),
        (status = 400, description = "Invalid body; `param` names the field (`code`: `unknown_team` for a team that does not exist)", body = crate::error::ErrorResponse),
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::TooLarge,
        crate::openapi::responses::StoreFailed,
    )
)]
async fn create(
    _admin: AdminCaller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_limited(&req, payload, state.body_limit).await?;
    let new: CreateKey = body::parse_json(&bytes)?;
    let new_key = NewKey {
        name: valid_name(&new.name)?,
        role: new.role,
        models: new.models,
        tags: new.tags,
        expires_at: new.expires_at,
        metadata: new.metadata,
        limits: valid_limits(new.limits)?,
        team: new.team,
    };
    // Held until the key is written: its team is not deleted in between.
    let _membership = membership().await;
    if let Some(team) = &new_key.team {
        existing_team(&state, team).await?;
    }
    let keys = &state.store.keys;
    let (record, key) = keys.create(new_key).await.map_err(store_failed)?;
    tracing::info!(key_id = %record.id, role = ?record.role, "key created");
    Ok(HttpResponse::Created().json(CreatedKey { key, record }))
}

/// Lists keys (masked), revoked ones included, with their usage.
#[utoipa::path(
    get,
    path = "/admin/keys",
    operation_id = "listKeys",
    tag = "keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every key", body = KeyList),
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::StoreFailed,
    )
)]
async fn list(_admin: AdminCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let store = &state.store;
    let keys = store.keys.list().await.map_err(store_failed)?;
    // Every key's limits read at once: one round trip to a shared store, not one per key.
    let limits: Vec<Vec<crate::store::Limit>> = keys
        .iter()
        .map(|k| k.limits.as_counters("key", &k.id, &k.name))
        .collect();
    let all: Vec<crate::store::Limit> = limits.iter().flatten().cloned().collect();
    let mut checks = LimitCheck::read(&all, store.counters.as_ref())
        .await
        .map_err(store_failed)?
        .into_iter();
    let mut data = Vec::with_capacity(keys.len());
    for (record, of_key) in keys.into_iter().zip(&limits) {
        let usage = store
            .usage
            .key_usage(&record.id)
            .await
            .map_err(store_failed)?;
        data.push(KeyView {
            record,
            usage,
            limit_use: checks.by_ref().take(of_key.len()).collect(),
        });
    }
    Ok(HttpResponse::Ok().json(KeyList {
        object: "list",
        data,
    }))
}

/// One key (masked) with its usage.
#[utoipa::path(
    get,
    path = "/admin/keys/{id}",
    operation_id = "getKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The key", body = KeyView),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::NotFound,
        crate::openapi::responses::StoreFailed,
    )
)]
async fn get(
    _admin: AdminCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let store = &state.store;
    let Some(record) = store.keys.find(&id).await.map_err(store_failed)? else {
        return Err(ApiError::not_found(format!("no key with id `{id}`")));
    };
    let usage = store
        .usage
        .key_usage(&record.id)
        .await
        .map_err(store_failed)?;
    Ok(HttpResponse::Ok().json(KeyView::of(record, usage, store.counters.as_ref()).await?))
}

/// Changes a key's name, models, tags, expiry, metadata, limits or team.
#[utoipa::path(
    patch,
    path = "/admin/keys/{id}",
    operation_id = "updateKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    request_body(content = PatchKey),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The key as updated", body = KeyRecord),
        (status = 400, description = "Invalid path or body; `param` names the field (`code`: `unknown_team` for a team that does not exist)", body = crate::error::ErrorResponse),
        crate::openapi::responses::AdminRequired,
        (status = 404, description = "No active key with this id", body = crate::error::ErrorResponse),
        crate::openapi::responses::TooLarge,
        crate::openapi::responses::StoreFailed,
    )
)]
async fn update(
    _admin: AdminCaller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let bytes = body::read_limited(&req, payload, state.body_limit).await?;
    let patch: PatchKey = body::parse_json(&bytes)?;
    let update = KeyUpdate {
        name: patch.name.as_deref().map(valid_name).transpose()?,
        models: patch.models,
        tags: patch.tags,
        expires_at: patch.expires_at,
        metadata: patch.metadata,
        limits: patch.limits.map(valid_limits).transpose()?,
        team: patch.team,
    };
    // Held until the key is written: a team it joins is not deleted in between.
    let _membership = membership().await;
    if let Some(Some(team)) = &update.team {
        existing_team(&state, team).await?;
    }
    let keys = &state.store.keys;
    let record = keys.update(&id, update).await.map_err(store_failed)?;
    let record = record.ok_or_else(|| no_key(&id))?;
    tracing::info!(key_id = %record.id, "key updated");
    Ok(HttpResponse::Ok().json(record))
}

/// Replaces a key's secret; the old secret stops working at once.
#[utoipa::path(
    post,
    path = "/admin/keys/{id}/rotate",
    operation_id = "rotateKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The key with its new secret", body = CreatedKey),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        (status = 404, description = "No active key with this id", body = crate::error::ErrorResponse),
        crate::openapi::responses::StoreFailed,
    )
)]
async fn rotate(
    _admin: AdminCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let rotated = state.store.keys.rotate(&id).await.map_err(store_failed)?;
    let (record, key) = rotated.ok_or_else(|| no_key(&id))?;
    tracing::info!(key_id = %record.id, "key rotated");
    Ok(HttpResponse::Ok().json(CreatedKey { key, record }))
}

/// Revokes a key; it stays listed, with `revoked_at`.
#[utoipa::path(
    delete,
    path = "/admin/keys/{id}",
    operation_id = "revokeKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The revoked key", body = KeyRecord),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::NotFound,
        crate::openapi::responses::StoreFailed,
    )
)]
async fn revoke(
    _admin: AdminCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    match state.store.keys.revoke(&id).await.map_err(store_failed)? {
        Some(record) => {
            tracing::info!(key_id = %record.id, "key revoked");
            Ok(HttpResponse::Ok().json(record))
        }
        None => Err(ApiError::not_found(format!("no key with id `{id}`"))),
    }
}
