//! `/admin/config` (what is loaded, from which files, the last reload) and `/admin/reload`.
//! Webhooks are listed without their secrets, their URLs without credentials or query.

use crate::config::{SkippedProvider, SourceFile};
use crate::error::ApiError;
use crate::http::callers::AdminCaller;
use crate::reload::{Attempt, Outcome};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/admin/config").route(web::get().to(show)))
        .service(crate::http::resource("/admin/reload").route(web::post().to(reload)));
}

#[derive(Serialize, ToSchema)]
pub struct FileView {
    pub path: String,
    pub sha256: String,
}

fn files(list: &[SourceFile]) -> Vec<FileView> {
    list.iter()
        .map(|f| FileView {
            path: f.path.display().to_string(),
            sha256: f.sha256.clone(),
        })
        .collect()
}

/// One webhook as loaded (never its secret).
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    /// Without credentials, query or fragment.
    url: String,
    events: Vec<String>,
    timeout_secs: f64,
    max_attempts: u32,
}

#[derive(Serialize, ToSchema)]
pub struct WebhooksView {
    /// The webhooks file's path (it need not exist).
    file: String,
    /// The loaded file's hash; `null` when there is no file.
    sha256: Option<String>,
    hooks: Vec<WebhookView>,
}

fn webhooks(path: &std::path::Path, config: &crate::webhooks::WebhookConfig) -> WebhooksView {
    WebhooksView {
        file: path.display().to_string(),
        sha256: config.file.as_ref().map(|f| f.sha256.clone()),
        hooks: config
            .hooks
            .iter()
            .map(|h| WebhookView {
                url: h.display_url(),
                events: h.events.iter().map(|e| e.as_str().to_string()).collect(),
                timeout_secs: h.timeout.as_secs_f64(),
                max_attempts: h.max_attempts,
            })
            .collect(),
    }
}

#[derive(Serialize, ToSchema)]
pub struct ConfigView {
    /// Increases by one with every applied reload.
    version: u64,
    /// Unix seconds.
    loaded_at: u64,
    providers_dir: String,
    policies_dir: String,
    provider_files: Vec<FileView>,
    policy_files: Vec<FileView>,
    providers: Vec<String>,
    skipped: Vec<SkippedProvider>,
    webhooks: WebhooksView,
    /// The most recent reload attempt, failed ones included; `null` before the first.
    last_reload: Option<Attempt>,
    /// The settings file read at start (`--config`, `SWITCHBOARD_CONFIG` or `switchboard.yaml`);
    /// `null` when there is none.
    settings_file: Option<String>,
    /// Every setting: its value (secrets as `"<set>"`), where it came from, whether a reload
    /// applies it, and whether the settings file changed it since start (a restart applies it).
    settings: Vec<crate::settings_file::SettingReport>,
    /// The settings a reload cannot change: changing them needs a restart.
    restart_required_for: Vec<String>,
}

/// What is loaded, from which files, and the last reload attempt.
#[utoipa::path(
    get,
    path = "/admin/config",
    operation_id = "getConfig",
    tag = "config",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The loaded configuration", body = ConfigView),
        crate::openapi::responses::AdminRequired,
    )
)]
async fn show(_admin: AdminCaller, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.snapshot();
    let settings = state.reloader.settings();
    HttpResponse::Ok().json(ConfigView {
        version: snapshot.version,
        loaded_at: crate::clock::unix_secs(snapshot.loaded_at),
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
        skipped: snapshot.config.skipped.clone(),
        webhooks: webhooks(state.reloader.webhooks_file(), &snapshot.webhooks),
        last_reload: state.reloader.last_attempt(),
        settings_file: state
            .reloader
            .settings_file()
            .map(|p| p.display().to_string()),
        restart_required_for: if settings.is_empty() {
            // Built in code (no command line to report): the settings that matter most.
            [
                "listen",
                "store",
                "data",
                "providers",
                "policies",
                "webhooks",
                "workers",
            ]
            .map(String::from)
            .to_vec()
        } else {
            settings
                .iter()
                .filter(|s| !s.reloadable)
                .map(|s| s.name.clone())
                .collect()
        },
        settings,
    })
}

/// Reloads providers.d, policies and the webhooks file now; a bad file leaves the running
/// configuration in place.
#[utoipa::path(
    post,
    path = "/admin/reload",
    operation_id = "reload",
    tag = "config",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Applied, or unchanged", body = Attempt),
        crate::openapi::responses::AdminRequired,
        (status = 422, description = "Rolled back: `errors` lists every problem; the running configuration stays", body = Attempt),
        (status = 500, description = "The reload was interrupted", body = crate::error::ErrorResponse),
    )
)]
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
