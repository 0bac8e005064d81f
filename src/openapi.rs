//! The two OpenAPI documents (proxy: `/v1/*` and `/health*`; admin: `/admin/*` and `/metrics`),
//! served at `/openapi/{proxy,admin}.json` with Swagger UI at `/docs`.
//!
//! The documents are generated from the `#[utoipa::path]` annotations next to each handler, so a
//! handler and its description change together; `openapi/*.json` are checked-in copies that a
//! test keeps equal to what this module generates (`switchboard openapi --out openapi/`).

pub mod responses;
pub mod schemas;

use crate::error::ApiError;
use actix_web::{web, HttpResponse, ResponseError};
use bytes::Bytes;
use std::sync::OnceLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi, Url};

pub const PROXY_JSON: &str = "/openapi/proxy.json";
pub const ADMIN_JSON: &str = "/openapi/admin.json";

/// Adds the `bearer` scheme the documents' `security` sections refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "A client key: `Authorization: Bearer <key>`. Admin endpoints need a key with the \
             admin role (or `SWITCHBOARD_ADMIN_KEY`)."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "x-api-key",
                    "A client key as Anthropic's clients send it (when there is no \
                     `Authorization` header).",
                ),
            )),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard proxy API",
        description = "The OpenAI-compatible endpoints, plus Anthropic's Messages API \
            (`/v1/messages`) and OpenAI's Responses API (`/v1/responses`) to every provider. \
            Request bodies are typed only where the gateway reads them; every other field is \
            passed upstream unchanged (or translated). Errors have the body \
            `{\"error\":{\"message\",\"type\",\"param\",\"code\"}}`, except on \
            `/v1/messages*`, where they are Anthropic's `{\"type\":\"error\",\"error\":{\"type\",\"message\"}}`. An \
            upstream's own error status and body are relayed as they came; a policy script may \
            also reject a request with a status it chooses (403 or 429 in the shipped examples)."
    ),
    paths(
        crate::proxy::chat_completions,
        crate::proxy::completions,
        crate::proxy::embeddings,
        crate::proxy::messages::create,
        crate::proxy::messages::count_tokens,
        crate::proxy::responses::create,
        crate::proxy::responses::get,
        crate::proxy::responses::delete,
        crate::proxy::models::list,
        crate::proxy::models::get,
        crate::proxy::files::create,
        crate::proxy::files::list,
        crate::proxy::files::get,
        crate::proxy::files::content,
        crate::proxy::files::delete,
        crate::proxy::batches::create,
        crate::proxy::batches::list,
        crate::proxy::batches::get,
        crate::proxy::batches::cancel,
        crate::health::health,
        crate::health::live,
        crate::health::ready,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "proxy", description = "OpenAI-compatible endpoints"),
        (name = "files", description = "Files: batch inputs uploaded, batch outputs written by the gateway"),
        (name = "batches", description = "Batches: a file of requests run by the gateway through its pipeline"),
        (name = "health", description = "Liveness and readiness; no key needed"),
    )
)]
pub struct ProxyDoc;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard admin API",
        description = "Operating the gateway: keys, teams, configuration and reloads, policies, \
            providers, cache, usage, request logs, webhook deliveries and Prometheus metrics. \
            Every endpoint needs an admin key (a user key gets 403). Errors always have the body \
            `{\"error\":{\"message\",\"type\",\"param\",\"code\"}}`."
    ),
    paths(
        crate::admin::keys::list,
        crate::admin::keys::create,
        crate::admin::keys::get,
        crate::admin::keys::update,
        crate::admin::keys::revoke,
        crate::admin::keys::rotate,
        crate::admin::teams::list,
        crate::admin::teams::create,
        crate::admin::teams::get,
        crate::admin::teams::update,
        crate::admin::teams::delete,
        crate::admin::config::show,
        crate::admin::config::reload,
        crate::admin::status::status,
        crate::admin::policies::list,
        crate::admin::policies::simulate_request,
        crate::admin::policy_editor::source,
        crate::admin::policy_editor::validate,
        crate::admin::policy_editor::test,
        crate::admin::policy_editor::save,
        crate::admin::policy_editor::delete,
        crate::admin::providers::providers,
        crate::admin::providers::cache_stats,
        crate::admin::providers::purge,
        crate::admin::usage::usage,
        crate::admin::usage::logs,
        crate::admin::usage::log_entry,
        crate::admin::providers::metrics,
        crate::admin::webhooks::deliveries,
        crate::admin::batches::list,
        crate::admin::batches::get,
        crate::admin::batches::cancel,
        crate::admin::batches::file_content,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "keys", description = "Client API keys"),
        (name = "teams", description = "Teams: limits shared by their keys"),
        (name = "config", description = "Loaded configuration and reloads"),
        (name = "policies", description = "Policy scripts"),
        (name = "providers", description = "Providers, cache and metrics"),
        (name = "usage", description = "Usage, cost and request logs"),
        (name = "webhooks", description = "Alerts delivered to webhooks"),
        (name = "batches", description = "Every key's batches and their files"),
    )
)]
pub struct AdminDoc;

/// Both documents, by file stem: what the CLI writes and the server serves.
pub fn documents() -> [(&'static str, Document); 2] {
    [
        ("proxy", with_error_codes(ProxyDoc::openapi())),
        ("admin", with_error_codes(AdminDoc::openapi())),
    ]
}

/// Lists the gateway's error codes (`error_codes.rs`) in the description of `ErrorDetail.code`.
fn with_error_codes(mut doc: Document) -> Document {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    let code = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("ErrorDetail"))
        .and_then(|detail| match detail {
            RefOr::T(Schema::Object(object)) => object.properties.get_mut("code"),
            _ => None,
        });
    if let Some(RefOr::T(Schema::Object(code))) = code {
        code.description = Some(format!(
            "A stable machine-readable code. The gateway's own codes are below; an upstream's \
             error keeps the upstream's code.\n\n{}",
            crate::error_codes::markdown_table()
        ));
    }
    doc
}

/// A document as it is checked in: pretty JSON with a trailing newline.
pub fn pretty(doc: &Document) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(doc)?;
    text.push('\n');
    Ok(text)
}

/// Writes `proxy.json` and `admin.json` into `dir`, creating it if needed.
pub fn write_all(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (stem, doc) in documents() {
        let path = dir.join(format!("{stem}.json"));
        std::fs::write(&path, pretty(&doc).map_err(std::io::Error::other)?)?;
        written.push(path);
    }
    Ok(written)
}

/// `/openapi/*.json` and Swagger UI at `/docs/` (the documents need no key: they hold no secret).
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Swagger UI is given the documents' addresses only. Given the documents themselves, it
    // keeps a copy of both in every worker (the app factory runs once per worker): about 5 MB
    // per worker at idle, for pages hardly anyone opens.
    cfg.service(SwaggerUi::new("/docs/{_:.*}").config(Config::new([
        Url::new("proxy", PROXY_JSON),
        Url::new("admin", ADMIN_JSON),
    ])))
    .route(PROXY_JSON, web::get().to(|| serve_document("proxy")))
    .route(ADMIN_JSON, web::get().to(|| serve_document("admin")))
    // Swagger UI's assets are relative to `/docs/`, so the bare path has to redirect there.
    .service(web::redirect("/docs", "/docs/"));
}

/// One document as JSON, built and serialised once per process, when first asked for.
async fn serve_document(stem: &str) -> HttpResponse {
    static SERVED: OnceLock<Vec<(&'static str, Bytes)>> = OnceLock::new();
    let served = SERVED.get_or_init(|| {
        documents()
            .into_iter()
            .filter_map(|(stem, doc)| match serde_json::to_vec(&doc) {
                Ok(json) => Some((stem, Bytes::from(json))),
                Err(e) => {
                    tracing::error!(document = stem, error = %e, "could not serialise an OpenAPI document");
                    None
                }
            })
            .collect()
    });
    match served.iter().find(|(s, _)| *s == stem) {
        Some((_, json)) => HttpResponse::Ok()
            .content_type("application/json")
            .body(json.clone()),
        None => ApiError::internal("the OpenAPI document could not be built").error_response(),
    }
}
