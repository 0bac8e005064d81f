//! `/health`, `/health/live`, `/health/ready`: no key needed, cheap enough to poll.

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready));
}

/// Alive and answering.
#[utoipa::path(
    get,
    path = "/health/live",
    operation_id = "healthLive",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "Alive and answering.", body = crate::openapi::schemas::Liveness),
    )
)]
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready to serve: a configuration is loaded, the store answers and writes, and some provider
/// can serve (its breaker is not open). With no provider configured at all, readiness is the
/// store's.
#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "healthReady",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "Ready to serve: a configuration is loaded and the store answers and writes.", body = crate::openapi::schemas::Readiness),
        (status = 503, description = "Not ready: the store does not answer or cannot write (`store_error` says why), or no configured provider can serve (every breaker open)", body = crate::openapi::schemas::Readiness),
    )
)]
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.snapshot();
    let store = StoreState::of(&state);
    let providers = state.health.snapshot(&snapshot);
    let can_serve = providers.is_empty() || providers.iter().any(|p| p.can_serve);
    let ok = store.ok() && can_serve;
    let mut body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "config_version": snapshot.version,
        "store": store.name(),
        "providers": providers
            .iter()
            .map(|p| json!({"name": p.name, "breaker": p.breaker, "can_serve": p.can_serve}))
            .collect::<Vec<_>>(),
    });
    if let StoreState::Unwritable(why) = &store {
        body["store_error"] = json!(why);
    }
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// A summary: status, version, providers and models served.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "A summary: status, version, providers and models served.", body = crate::openapi::schemas::Health),
        (status = 503, description = "Degraded: the store does not answer or cannot write", body = crate::openapi::schemas::Health),
    )
)]
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.snapshot();
    let store = StoreState::of(&state);
    let mut body = json!({
        "status": if store.ok() { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "config_version": snapshot.version,
        "providers": snapshot.providers.len(),
        "models": snapshot.models.all().len(),
        "store": store.name(),
    });
    if let StoreState::Unwritable(why) = &store {
        body["store_error"] = json!(why);
    }
    if store.ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// The store as the health endpoints report it.
pub(crate) enum StoreState {
    Ok,
    /// It does not answer a read.
    Unavailable,
    /// It reads, but its last write or probe failed (why: a full disk, an I/O error).
    Unwritable(String),
}

impl StoreState {
    pub(crate) fn of(state: &AppState) -> StoreState {
        // Without a read while it cannot write: a stuck sled may block a read.
        if let Some(why) = state.store.backend.write_fault() {
            return StoreState::Unwritable(why);
        }
        if state.store.backend.is_healthy() {
            StoreState::Ok
        } else {
            StoreState::Unavailable
        }
    }

    pub(crate) fn ok(&self) -> bool {
        matches!(self, StoreState::Ok)
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            StoreState::Ok => "ok",
            StoreState::Unavailable => "unavailable",
            StoreState::Unwritable(_) => "unwritable",
        }
    }
}
