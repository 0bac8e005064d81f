//! `/admin/keys`: create (the secret is shown once), list and get (masked, with last use and
//! usage totals), update, rotate, revoke.

use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::proxy::body;
use crate::state::AppState;
use crate::store::keys::KeyUpdate;
use crate::store::usage::KeyUsage;
use crate::store::{KeyRecord, NewKey, Role, StoreError};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    #[serde(default)]
    pub role: Role,
    /// Models the key may use; empty or absent means all.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Unix seconds after which the key stops working.
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchKey {
    pub name: Option<String>,
    pub models: Option<Vec<String>>,
    pub tags: Option<BTreeMap<String, String>>,
    /// A time in unix seconds, or `null` to remove the expiry.
    #[serde(default, deserialize_with = "present")]
    pub expires_at: Option<Option<u64>>,
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
}

/// Tells `"expires_at": null` (remove) from an absent field (keep).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

/// A newly created or rotated key: the only responses that ever carry the secret.
#[derive(Serialize)]
pub struct CreatedKey {
    /// The secret. Store it now: it cannot be shown again.
    pub key: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// A key as listed: no secret, with its use.
#[derive(Serialize)]
pub struct KeyView {
    #[serde(flatten)]
    pub record: KeyRecord,
    pub usage: KeyUsage,
}

#[derive(Serialize)]
struct KeyList {
    object: &'static str,
    data: Vec<KeyView>,
}

fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "key store failed");
    ApiError::internal("the key store failed; see the gateway log")
}

fn valid_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request("`name` must be 1 to 100 characters").with_param("name"));
    }
    Ok(name.to_string())
}

fn no_key(id: &str) -> ApiError {
    ApiError::not_found(format!("no active key with id `{id}`"))
}

/// Runs a blocking store call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(f)
        .await
        .map_err(|_| ApiError::internal("the key store call was interrupted"))?
        .map_err(store_error)
}

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
    };
    let keys = state.store.keys.clone();
    let (record, key) = blocking(move || keys.create(new_key)).await?;
    tracing::info!(key_id = %record.id, role = ?record.role, "key created");
    Ok(HttpResponse::Created().json(CreatedKey { key, record }))
}

async fn list(_admin: AdminCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys = state.store.keys.clone();
    let usage = state.store.usage.clone();
    let data = blocking(move || {
        keys.list()?
            .into_iter()
            .map(|record| {
                let usage = usage.key_usage(&record.id)?;
                Ok(KeyView { record, usage })
            })
            .collect::<Result<Vec<_>, StoreError>>()
    })
    .await?;
    Ok(HttpResponse::Ok().json(KeyList {
        object: "list",
        data,
    }))
}

async fn get(
    _admin: AdminCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (keys, usage, lookup) = (
        state.store.keys.clone(),
        state.store.usage.clone(),
        id.clone(),
    );
    let view = blocking(move || {
        let Some(record) = keys.find(&lookup)? else {
            return Ok(None);
        };
        let usage = usage.key_usage(&record.id)?;
        Ok(Some(KeyView { record, usage }))
    })
    .await?;
    view.map(|v| HttpResponse::Ok().json(v))
        .ok_or_else(|| ApiError::not_found(format!("no key with id `{id}`")))
}

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
    };
    let (keys, lookup) = (state.store.keys.clone(), id.clone());
    let record = blocking(move || keys.update(&lookup, update)).await?;
    let record = record.ok_or_else(|| no_key(&id))?;
    tracing::info!(key_id = %record.id, "key updated");
    Ok(HttpResponse::Ok().json(record))
}

async fn rotate(
    _admin: AdminCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (keys, lookup) = (state.store.keys.clone(), id.clone());
    let rotated = blocking(move || keys.rotate(&lookup)).await?;
    let (record, key) = rotated.ok_or_else(|| no_key(&id))?;
    tracing::info!(key_id = %record.id, "key rotated");
    Ok(HttpResponse::Ok().json(CreatedKey { key, record }))
}

async fn revoke(
    _admin: AdminCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (keys, lookup) = (state.store.keys.clone(), id.clone());
    match blocking(move || keys.revoke(&lookup)).await? {
        Some(record) => {
            tracing::info!(key_id = %record.id, "key revoked");
            Ok(HttpResponse::Ok().json(record))
        }
        None => Err(ApiError::not_found(format!("no key with id `{id}`"))),
    }
}
