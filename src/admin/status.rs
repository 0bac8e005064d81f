//! `/admin/status`: the gateway at a glance for the dashboard's status panel: version and
//! build, uptime, the store and its health, the config version and last reload, providers
//! serving / skipped / with an open breaker, requests in flight. Read from state the other
//! endpoints already expose; nothing here is secret.

use crate::health::StoreState;
use crate::http::callers::AdminCaller;
use crate::reload::Attempt;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/admin/status").route(web::get().to(status)));
}

/// How the running binary was built.
#[derive(Serialize, ToSchema)]
pub struct BuildView {
    /// `debug` or `release`.
    profile: &'static str,
    /// The target's architecture and OS, e.g. `x86_64-linux`.
    target: String,
}

/// The store backend and whether it answers and writes.
#[derive(Serialize, ToSchema)]
pub struct StoreView {
    /// `sled`, `memory` or `redis`.
    backend: &'static str,
    /// `ok`, `unavailable` (no answer to a read) or `unwritable` (its last write failed).
    health: &'static str,
    /// Why it cannot write, when `health` is `unwritable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The loaded configuration's version and the last reload attempt.
#[derive(Serialize, ToSchema)]
pub struct ConfigStatus {
    /// 1 at start, +1 per applied reload.
    version: u64,
    /// Unix seconds.
    loaded_at: u64,
    /// The most recent reload attempt, failed ones included; `null` before the first.
    last_reload: Option<Attempt>,
}

/// Providers by state.
#[derive(Serialize, ToSchema)]
pub struct ProvidersStatus {
    /// Loaded and able to serve (breaker closed or half-open).
    serving: Vec<String>,
    /// Not loaded: their file was invalid or named a missing key.
    skipped: Vec<String>,
    /// Loaded, but skipped by routing until their breaker lets a probe through.
    open_breaker: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StatusView {
    /// The gateway's version.
    version: &'static str,
    build: BuildView,
    /// Seconds since this gateway started.
    uptime_secs: u64,
    store: StoreView,
    config: ConfigStatus,
    providers: ProvidersStatus,
    /// Requests this gateway is serving now (until their response head; a stream's body may
    /// still be flowing after), this one included.
    requests_in_flight: u64,
}

/// The gateway at a glance: version, uptime, store, config, providers, requests in flight.
#[utoipa::path(
    get,
    path = "/admin/status",
    operation_id = "getStatus",
    tag = "config",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The gateway's status", body = StatusView),
        crate::openapi::responses::AdminRequired,
    )
)]
async fn status(_admin: AdminCaller, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.snapshot();
    let store = StoreState::of(&state);
    let health = state.health.snapshot(&snapshot);
    let (serving, open): (Vec<_>, Vec<_>) = health.iter().partition(|p| p.can_serve);
    HttpResponse::Ok().json(StatusView {
        version: env!("CARGO_PKG_VERSION"),
        build: BuildView {
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            target: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        },
        uptime_secs: state.metrics.uptime().as_secs(),
        store: StoreView {
            backend: state.store.backend.kind().name(),
            health: store.name(),
            error: match store {
                StoreState::Unwritable(why) => Some(why),
                _ => None,
            },
        },
        config: ConfigStatus {
            version: snapshot.version,
            loaded_at: crate::clock::unix_secs(snapshot.loaded_at),
            last_reload: state.reloader.last_attempt(),
        },
        providers: ProvidersStatus {
            serving: serving.iter().map(|p| p.name.clone()).collect(),
            skipped: snapshot
                .config
                .skipped
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            // A provider cannot serve only while its breaker is open.
            open_breaker: open.iter().map(|p| p.name.clone()).collect(),
        },
        requests_in_flight: state.metrics.in_flight(),
    })
}
