//! `/admin/teams`: create, list and get (with the live keys that belong to each), update,
//! delete. A team's limits apply to its keys together, beside each key's own.

use super::fields::{valid_limits, valid_name};
use super::store_failed;
use crate::error::{ApiError, Code};
use crate::http::callers::AdminCaller;
use crate::proxy::body;
use crate::state::AppState;
use crate::store::counters::LimitCheck;
use crate::store::teams::{live_members, Deletion, NewTeam, TeamRecord, TeamUpdate};
use crate::store::CounterStore;
use crate::store::{KeyRecord, Limits};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::resource("/admin/teams")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        crate::http::resource("/admin/teams/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    );
}

/// Serialises changes of team membership in this process: a key joining a team (created or
/// updated with a `team`) and a team being deleted. The key handlers check that the team exists
/// and write the key while holding it, and a deletion checks the team's keys and deletes it
/// while holding it, so a key never ends up in a team deleted in between. Admin writes are
/// rare and short, so one lock for every team is enough.
static MEMBERSHIP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Holds team membership still; see [`MEMBERSHIP`].
pub(crate) async fn membership() -> tokio::sync::MutexGuard<'static, ()> {
    MEMBERSHIP.lock().await
}

/// `Ok` when a team has this id; the 400 a key's `team` gets otherwise.
pub(crate) async fn existing_team(state: &AppState, id: &str) -> Result<(), ApiError> {
    match state.store.teams.find(id).await.map_err(store_failed)? {
        Some(_) => Ok(()),
        None => Err(ApiError::bad_request(format!(
            "no team has the id `{}` (see GET /admin/teams)",
            crate::error::truncated(id, 100)
        ))
        .with_param("team")
        .with_code(Code::UnknownTeam)),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "research", "limits": {"rpm": 600, "budget_usd_month": 500.0}, "metadata": {"owner": "ana"}}))]
pub struct CreateTeam {
    pub name: String,
    /// Limits and budgets the team's keys share (see README, "Teams").
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Only the fields given change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"limits": {"rpm": 1200, "tpd": 5_000_000}}))]
pub struct PatchTeam {
    pub name: Option<String>,
    /// Replaces the team's limits whole (`{}` removes them all).
    pub limits: Option<Limits>,
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
}

/// A team with the live keys that belong to it.
#[derive(Serialize, ToSchema)]
pub struct TeamView {
    #[serde(flatten)]
    pub record: TeamRecord,
    /// The ids of the team's live (not revoked) keys, oldest first.
    pub keys: Vec<String>,
    /// Each of the team's `limits` as it stands now: used, reserved by requests in flight,
    /// remaining.
    pub limit_use: Vec<LimitCheck>,
}

#[derive(Serialize, ToSchema)]
pub struct TeamList {
    /// `list`
    pub object: &'static str,
    pub data: Vec<TeamView>,
}

fn no_team(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no team with id `{}`",
        crate::error::truncated(id, 100)
    ))
}

/// Every key, to find each team's members in.
async fn all_keys(state: &AppState) -> Result<Vec<KeyRecord>, ApiError> {
    state.store.keys.list().await.map_err(store_failed)
}

async fn view(
    record: TeamRecord,
    keys: &[KeyRecord],
    counters: &dyn CounterStore,
) -> Result<TeamView, ApiError> {
    let members = live_members(keys, &record.id);
    let limits = record.limits.as_counters("team", &record.id, &record.name);
    let limit_use = LimitCheck::read(&limits, counters)
        .await
        .map_err(store_failed)?;
    Ok(TeamView {
        record,
        keys: members,
        limit_use,
    })
}

/// Creates a team.
#[utoipa::path(
    post,
    path = "/admin/teams",
    operation_id = "createTeam",
    tag = "teams",
    request_body(content = CreateTeam),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The team", body = TeamRecord),
        crate::openapi::responses::BadRequest,
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
    let new: CreateTeam = body::parse_json(&bytes)?;
    let new_team = NewTeam {
        name: valid_name(&new.name)?,
        limits: valid_limits(new.limits)?,
        metadata: new.metadata,
    };
    let record = state
        .store
        .teams
        .create(new_team)
        .await
        .map_err(store_failed)?;
    tracing::info!(team_id = %record.id, "team created");
    Ok(HttpResponse::Created().json(record))
}

/// Lists teams, oldest first, each with its live keys.
#[utoipa::path(
    get,
    path = "/admin/teams",
    operation_id = "listTeams",
    tag = "teams",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every team", body = TeamList),
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::StoreFailed,
    )
)]
async fn list(_admin: AdminCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let teams = state.store.teams.list().await.map_err(store_failed)?;
    let keys = all_keys(&state).await?;
    let mut data = Vec::with_capacity(teams.len());
    for team in teams {
        data.push(view(team, &keys, state.store.counters.as_ref()).await?);
    }
    Ok(HttpResponse::Ok().json(TeamList {
        object: "list",
        data,
    }))
}

/// One team with its live keys.
#[utoipa::path(
    get,
    path = "/admin/teams/{id}",
    operation_id = "getTeam",
    tag = "teams",
    params(("id" = String, Path, description = "The team's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The team", body = TeamView),
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
    let Some(record) = state.store.teams.find(&id).await.map_err(store_failed)? else {
        return Err(no_team(&id));
    };
    let keys = all_keys(&state).await?;
    Ok(HttpResponse::Ok().json(view(record, &keys, state.store.counters.as_ref()).await?))
}

/// Changes a team's name, limits or metadata; new limits apply to its keys' next requests.
#[utoipa::path(
    patch,
    path = "/admin/teams/{id}",
    operation_id = "updateTeam",
    tag = "teams",
    params(("id" = String, Path, description = "The team's id")),
    request_body(content = PatchTeam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The team as updated", body = TeamRecord),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::NotFound,
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
    let patch: PatchTeam = body::parse_json(&bytes)?;
    let update = TeamUpdate {
        name: patch.name.as_deref().map(valid_name).transpose()?,
        limits: patch.limits.map(valid_limits).transpose()?,
        metadata: patch.metadata,
    };
    let teams = &state.store.teams;
    let record = teams.update(&id, update).await.map_err(store_failed)?;
    let record = record.ok_or_else(|| no_team(&id))?;
    tracing::info!(team_id = %record.id, "team updated");
    Ok(HttpResponse::Ok().json(record))
}

/// Deletes a team that no live key belongs to.
///
/// A team with live keys is refused with a 409 (`code`: `team_has_keys`) naming them: deleting
/// it would lift its limits and budgets from those keys at once, which an operator should
/// decide key by key (move each to another team, take it out with `"team": null`, or revoke
/// it). Revoked keys keep the deleted team's id on record.
#[utoipa::path(
    delete,
    path = "/admin/teams/{id}",
    operation_id = "deleteTeam",
    tag = "teams",
    params(("id" = String, Path, description = "The team's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The deleted team", body = TeamRecord),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::NotFound,
        (status = 409, description = "Live keys still belong to the team (`code`: `team_has_keys`); the message names them", body = crate::error::ErrorResponse),
        crate::openapi::responses::StoreFailed,
    )
)]
async fn delete(
    _admin: AdminCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let deleted = {
        let _membership = membership().await;
        state.store.teams.delete(&id).await.map_err(store_failed)?
    };
    match deleted {
        Deletion::Deleted(record) => {
            tracing::info!(team_id = %record.id, "team deleted");
            Ok(HttpResponse::Ok().json(record))
        }
        Deletion::NotFound => Err(no_team(&id)),
        Deletion::HasKeys(keys) => Err(has_keys(&id, &keys)),
    }
}

/// The 409 for a team that live keys still belong to; names the first few.
fn has_keys(id: &str, keys: &[String]) -> ApiError {
    const NAMED: usize = 10;
    let mut named = keys
        .iter()
        .take(NAMED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > NAMED {
        named.push_str(&format!(" and {} more", keys.len() - NAMED));
    }
    ApiError::new(
        StatusCode::CONFLICT,
        "invalid_request_error",
        format!(
            "{} live key(s) still belong to team `{id}`: {named}. Move them to another team, \
             take them out (PATCH /admin/keys/{{id}} with \"team\": null) or revoke them first: \
             deleting the team would lift its limits from them.",
            keys.len()
        ),
    )
    .with_code(Code::TeamHasKeys)
}
