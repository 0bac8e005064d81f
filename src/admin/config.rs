//! `/admin/config` (what is loaded, from which files, the last reload) and `/admin/reload`.

use crate::auth::AdminCaller;
use crate::config::SourceFile;
use crate::error::ApiError;
use crate::reload::{Attempt, Outcome};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use std::time::UNIX_EPOCH;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/admin/config").route(web::get().to(show)))
        .service(crate::http::resource("/admin/reload").route(web::post().to(reload)));
}

#[derive(Serialize)]
struct FileView {
    path: String,
    sha256: String,
}

fn files(list: &[SourceFile]) -> Vec<FileView> {
    list.iter()
        .map(|f| FileView {
            path: f.path.display().to_string(),
            sha256: f.sha256.clone(),
        })
        .collect()
}

#[derive(Serialize)]
struct SkippedView {
    name: String,
    reason: String,
}

#[derive(Serialize)]
struct ConfigView {
    /// Increases by one with every applied reload.
    version: u64,
    /// Unix seconds.
    loaded_at: u64,
    providers_dir: String,
    policies_dir: String,
    provider_files: Vec<FileView>,
    policy_files: Vec<FileView>,
    providers: Vec<String>,
    skipped: Vec<SkippedView>,
    /// The most recent reload attempt, failed ones included; `null` before the first.
    last_reload: Option<Attempt>,
    /// Settings read once at start: changing them needs a restart.
    restart_required_for: [&'static str; 4],
}

async fn show(_admin: AdminCaller, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.snapshot();
    HttpResponse::Ok().json(ConfigView {
        version: snapshot.version,
        loaded_at: snapshot
            .loaded_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        providers_dir: state.reloader.providers_dir().display().to_string(),
        policies_dir: state.reloader.policies_dir().display().to_string(),
        provider_files: files(&snapshot.config.files),
        policy_files: files(&snapshot.policies.files),
        providers: snapshot
            .config
            .providers
            .iter()
            .map(|p| p.name.clone())
            .collect(),
        skipped: snapshot
            .config
            .skipped
            .iter()
            .map(|s| SkippedView {
                name: s.name.clone(),
                reason: s.reason.clone(),
            })
            .collect(),
        last_reload: state.reloader.last_attempt(),
        restart_required_for: [
            "listen",
            "data",
            "providers and policies folder paths",
            "workers",
        ],
    })
}

async fn reload(_admin: AdminCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let reloader = state.reloader.clone();
    let attempt = web::block(move || reloader.reload("admin", true))
        .await
        .map_err(|_| ApiError::internal("the reload was interrupted"))?;
    let status = match attempt.outcome {
        Outcome::Applied | Outcome::Unchanged => StatusCode::OK,
        Outcome::RolledBack => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok(HttpResponse::build(status).json(attempt))
}
