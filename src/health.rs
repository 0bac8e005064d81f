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

/// Ready to serve: a configuration is loaded, the store answers, and some provider can serve
/// (its breaker is not open). With no provider configured at all, readiness is the store's.
#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "healthReady",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "Ready to serve: a configuration is loaded and the store answers.", body = crate::openapi::schemas::Readiness),
        (status = 503, description = "Not ready: the store does not answer, or no configured provider can serve (every breaker open)", body = crate::openapi::schemas::Readiness),
    )
)]
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.snapshot();
    let store_ok = state.store.is_healthy();
    let providers = state.health.snapshot(&snapshot);
    let can_serve = providers.is_empty() || providers.iter().any(|p| p.can_serve);
    let ok = store_ok && can_serve;
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "config_version": snapshot.version,
        "store": if store_ok { "ok" } else { "unavailable" },
        "providers": providers
            .iter()
            .map(|p| json!({"name": p.name, "breaker": p.breaker, "can_serve": p.can_serve}))
            .collect::<Vec<_>>(),
    });
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
        (status = 503, description = "Degraded: the store does not answer", body = crate::openapi::schemas::Health),
    )
)]
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.snapshot();
    let store_ok = state.store.is_healthy();
    let body = json!({
        "status": if store_ok { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "config_version": snapshot.version,
        "providers": snapshot.providers.len(),
        "models": snapshot.models.all().len(),
        "store": if store_ok { "ok" } else { "unavailable" },
    });
    if store_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
