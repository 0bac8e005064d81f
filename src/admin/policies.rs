//! `/admin/policies`: the loaded scripts, and simulating a request through them.

use crate::error::ApiError;
use crate::http::callers::AdminCaller;
use crate::policy::fixtures::FixtureKey;
use crate::policy::simulate::Simulation;
use crate::proxy::body;
use crate::router;
use crate::state::AppState;
use crate::wire::{Endpoint, RequestBody};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The loaded policy scripts.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"scripts": ["10-routing.rhai", "20-limits.rhai"], "writable": true}))]
pub struct PolicyList {
    /// File names, in the order they run.
    pub scripts: Vec<String>,
    /// Whether scripts can be saved and deleted through this API (off with
    /// `--read-only-policies`).
    pub writable: bool,
}
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/admin/policies").route(web::get().to(list)))
        .service(
            crate::http::resource("/admin/policies/simulate")
                .route(web::post().to(simulate_request)),
        );
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"endpoint": "chat/completions", "request": {"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]}, "key": {"role": "user", "tags": {"team": "a"}}}))]
pub struct SimulateRequest {
    /// `chat/completions` (default), `completions` or `embeddings`.
    #[serde(default)]
    endpoint: Endpoint,
    /// The request body a client would send.
    #[schema(value_type = Object)]
    request: serde_json::Value,
    /// Simulate as this stored key.
    key_id: Option<String>,
    /// Or as a key described inline (id, name, role, tags).
    key: Option<FixtureKey>,
    /// Request headers the policies see.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The client address `req.client_ip` reports (default: none).
    #[schema(value_type = Option<String>)]
    client_ip: Option<std::net::IpAddr>,
    /// The batch `req.batch_id` reports (default: none, a live request).
    #[serde(default)]
    batch_id: Option<String>,
    /// Simulate with this unsaved script in place of the loaded one of its name (or added).
    draft: Option<super::policy_editor::Draft>,
}

#[derive(Serialize, ToSchema)]
pub struct SimulateResponse {
    #[serde(flatten)]
    simulation: Simulation,
    /// The targets a real request would try, in order (`provider/model`).
    targets: Vec<String>,
    /// Why no target would serve, when none would.
    target_error: Option<String>,
}

/// The loaded policy scripts, in run order.
#[utoipa::path(
    get,
    path = "/admin/policies",
    operation_id = "listPolicies",
    tag = "policies",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The scripts", body = PolicyList),
        crate::openapi::responses::AdminRequired,
    )
)]
async fn list(_admin: AdminCaller, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.snapshot();
    HttpResponse::Ok().json(PolicyList {
        scripts: snapshot.policies.script_names(),
        writable: !state.read_only_policies,
    })
}

/// Runs a request through the policies without calling a provider or charging a counter.
#[utoipa::path(
    post,
    path = "/admin/policies/simulate",
    operation_id = "simulatePolicies",
    tag = "policies",
    request_body(content = SimulateRequest),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What the policies decided, and the targets a real request would try", body = SimulateResponse),
        (status = 400, description = "A bad request, or a `draft` that does not compile (`code: invalid_policy`)", body = crate::error::ErrorResponse),
        crate::openapi::responses::AdminRequired,
        (status = 404, description = "No key with `key_id`", body = crate::error::ErrorResponse),
        crate::openapi::responses::TooLarge,
        crate::openapi::responses::StoreFailed,
    )
)]
async fn simulate_request(
    _admin: AdminCaller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_limited(&req, payload, state.body_limit).await?;
    let input: SimulateRequest = body::parse_json(&bytes)?;
    let request = RequestBody::from_json(input.endpoint, input.request).map_err(|e| {
        ApiError::bad_request(format!("`request` is not a valid request: {e}"))
            .with_param("request")
    })?;
    let key = match (&input.key_id, &input.key) {
        (Some(id), _) => state
            .store
            .keys
            .find(id)
            .await
            .map_err(super::store_failed)?
            .ok_or_else(|| {
                ApiError::not_found(format!("no key with id `{id}`")).with_param("key_id")
            })?,
        (None, Some(inline)) => inline.record(),
        (None, None) => FixtureKey::default().record(),
    };
    let headers = input
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect::<Vec<_>>();
    let snapshot = state.snapshot();
    // The key's team limits apply too, as they do to real requests.
    let team_limits = key
        .team
        .as_deref()
        .and_then(|id| state.store.teams.get_cached(id))
        .map(|team| team.limits.as_counters("team", &team.id, &team.name))
        .unwrap_or_default();
    let draft = super::policy_editor::with_draft(&state, &snapshot.policies, input.draft.as_ref())?;
    let mut simulation = crate::policy::simulate::simulate_with(
        draft.as_ref().unwrap_or(&snapshot.policies),
        request,
        Arc::new(key),
        headers,
        state.store.counters.clone(),
        state.store.assignments.clone(),
        crate::policy::simulate::SimulatedClient {
            providers: Some(state.providers.clone()),
            client_ip: input.client_ip,
            batch_id: input.batch_id.clone(),
        },
    )
    .await;
    simulation
        .key_limits
        .extend(crate::policy::simulate::checks(&team_limits, state.store.counters.as_ref()).await);
    let model = simulation.request["model"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (targets, target_error) =
        match router::targets::resolve(&snapshot.models, &simulation.route, &model) {
            Ok(targets) => {
                // In the order the next request would try them: a balanced pool ordered as
                // the router would now, without taking a turn.
                let order = router::attempts::planned_order(
                    &state.health,
                    &snapshot,
                    &targets,
                    &simulation.plan,
                );
                let ordered = order
                    .iter()
                    .filter_map(|i| targets.get(*i))
                    .map(|t| t.id.to_string())
                    .collect();
                (ordered, None)
            }
            Err(e) => (vec![], Some(e.message)),
        };
    Ok(HttpResponse::Ok().json(SimulateResponse {
        simulation,
        targets,
        target_error,
    }))
}
