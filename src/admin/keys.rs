//! `/admin/keys`: create (the secret is shown once), list (masked), revoke.

use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::proxy::body;
use crate::state::AppState;
use crate::store::{KeyRecord, NewKey, Role, StoreError};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::resource("/admin/keys")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(crate::http::resource("/admin/keys/{id}").route(web::delete().to(revoke)));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    #[serde(default = "default_role")]
    pub role: Role,
    /// Models the key may use; empty or absent means all.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn default_role() -> Role {
    Role::User
}

/// A newly created key: the only response that ever carries the secret.
#[derive(Serialize)]
pub struct CreatedKey {
    /// The secret. Store it now: it cannot be shown again.
    pub key: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

#[derive(Serialize)]
struct KeyList {
    object: &'static str,
    data: Vec<KeyRecord>,
}

fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "key store failed");
    ApiError::internal("the key store failed; see the gateway log")
}

async fn create(
    _admin: AdminCaller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_limited(&req, payload, state.body_limit).await?;
    let new: CreateKey = body::parse_json(&bytes)?;
    let name = new.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request("`name` must be 1 to 100 characters").with_param("name"));
    }
    let keys = state.store.keys.clone();
    let new_key = NewKey {
        name,
        role: new.role,
        models: new.models,
        tags: new.tags,
    };
    // sled writes are short but blocking; keep them off the async workers.
    let (record, key) = web::block(move || keys.create(new_key))
        .await
        .map_err(|_| ApiError::internal("key creation was interrupted"))?
        .map_err(store_error)?;
    tracing::info!(key_id = %record.id, role = ?record.role, "key created");
    Ok(HttpResponse::Created().json(CreatedKey { key, record }))
}

async fn list(_admin: AdminCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys = state.store.keys.clone();
    let data = web::block(move || keys.list())
        .await
        .map_err(|_| ApiError::internal("listing keys was interrupted"))?
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(KeyList {
        object: "list",
        data,
    }))
}

async fn revoke(
    _admin: AdminCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let keys = state.store.keys.clone();
    let lookup = id.clone();
    let revoked = web::block(move || keys.revoke(&lookup))
        .await
        .map_err(|_| ApiError::internal("revoking the key was interrupted"))?
        .map_err(store_error)?;
    match revoked {
        Some(record) => {
            tracing::info!(key_id = %record.id, "key revoked");
            Ok(HttpResponse::Ok().json(record))
        }
        None => Err(ApiError::not_found(format!("no key with id `{id}`"))),
    }
}
