//! `/admin/providers` (what is loaded, with health), `/admin/cache` (stats, purge) and
//! `/metrics` (Prometheus text). No response here carries a secret.

use crate::auth::AdminCaller;
use crate::config::Pricing;
use crate::error::ApiError;
use crate::metrics::ProviderStats;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/admin/providers").route(web::get().to(providers)))
        .service(
            crate::http::resource("/admin/cache")
                .route(web::get().to(cache_stats))
                .route(web::delete().to(purge)),
        )
        .service(crate::http::resource("/metrics").route(web::get().to(metrics)));
}

#[derive(Serialize)]
struct ModelView {
    name: String,
    id: String,
    upstream: String,
    pricing: Option<PricingView>,
}

#[derive(Serialize)]
struct PricingView {
    input: f64,
    output: f64,
}

impl From<Pricing> for PricingView {
    fn from(p: Pricing) -> Self {
        PricingView {
            input: p.input,
            output: p.output,
        }
    }
}

#[derive(Serialize)]
struct ProviderView {
    name: String,
    kind: &'static str,
    /// The upstream address (never the key).
    base_url: Option<String>,
    models: Vec<ModelView>,
    /// Observed since the gateway started.
    stats: ProviderStats,
}

#[derive(Serialize)]
struct SkippedView {
    name: String,
    reason: String,
}

#[derive(Serialize)]
struct ProviderList {
    data: Vec<ProviderView>,
    skipped: Vec<SkippedView>,
}

async fn providers(_admin: AdminCaller, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.snapshot();
    let data = snapshot
        .config
        .providers
        .iter()
        .map(|p| ProviderView {
            name: p.name.clone(),
            kind: p.kind.as_str(),
            base_url: p.base_url.as_ref().map(|u| {
                let mut u = u.clone();
                // A URL may carry credentials in its user-info; never show them.
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.to_string()
            }),
            models: p
                .models
                .iter()
                .map(|m| ModelView {
                    name: m.name.clone(),
                    id: format!("{}/{}", p.name, m.name),
                    upstream: m.upstream.clone(),
                    pricing: m.pricing.map(PricingView::from),
                })
                .collect(),
            stats: state.metrics.provider_stats(&p.name),
        })
        .collect();
    let skipped = snapshot
        .config
        .skipped
        .iter()
        .map(|s| SkippedView {
            name: s.name.clone(),
            reason: s.reason.clone(),
        })
        .collect();
    HttpResponse::Ok().json(ProviderList { data, skipped })
}

async fn cache_stats(_admin: AdminCaller, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.store.cache.stats())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeQuery {
    /// A provider (`mock`) or a model (`mock/echo`); absent: everything.
    namespace: Option<String>,
}

async fn purge(
    _admin: AdminCaller,
    query: web::Query<PurgeQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let cache = state.store.cache.clone();
    let namespace = query.into_inner().namespace;
    let removed = web::block(move || cache.purge(namespace.as_deref()))
        .await
        .map_err(|_| ApiError::internal("the purge was interrupted"))?
        .map_err(|e| {
            tracing::error!(error = %e, "cache purge failed");
            ApiError::internal("the cache purge failed; see the gateway log")
        })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "removed": removed })))
}

async fn metrics(_admin: AdminCaller, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
