//! `/admin/providers` (what is loaded, with health), `/admin/cache` (stats, purge) and
//! `/metrics` (Prometheus text). No response here carries a secret.

use crate::config::Pricing;
use crate::error::ApiError;
use crate::http::callers::{AdminCaller, MetricsReader};
use crate::metrics::ProviderStats;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What a purge removed.
#[derive(Serialize, ToSchema)]
pub struct Purged {
    /// Entries removed.
    pub removed: usize,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/admin/providers").route(web::get().to(providers)))
        .service(
            crate::http::resource("/admin/cache")
                .route(web::get().to(cache_stats))
                .route(web::delete().to(purge)),
        )
        .service(crate::http::resource("/metrics").route(web::get().to(metrics)));
}

/// `/metrics` without a key, for the separate metrics address (`--metrics-listen`): whoever
/// can reach that address may read it, so it should be one only Prometheus can reach.
pub fn configure_open(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/metrics").route(web::get().to(open_metrics)));
}

#[derive(Serialize, ToSchema)]
pub struct ModelView {
    pub name: String,
    /// `provider/model`
    pub id: String,
    /// The model id sent upstream.
    pub upstream: String,
    pub pricing: Option<PricingView>,
}

/// USD per million tokens.
#[derive(Serialize, ToSchema)]
pub struct PricingView {
    pub input: f64,
    pub output: f64,
    /// Prompt tokens read from the provider's prompt cache; absent: priced at `input`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    /// Prompt tokens written to the provider's prompt cache; absent: priced at `input`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

impl From<Pricing> for PricingView {
    fn from(p: Pricing) -> Self {
        PricingView {
            input: p.input,
            output: p.output,
            cache_read: p.cache_read,
            cache_write: p.cache_write,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProviderView {
    name: String,
    kind: &'static str,
    /// The upstream address (never the key).
    base_url: Option<String>,
    models: Vec<ModelView>,
    /// Observed since the gateway started.
    stats: ProviderStats,
    /// Circuit breaker: `closed`, `open` or `half_open`.
    breaker: Option<crate::router::breaker::BreakerState>,
    /// Breaker, error rate, latency average and health-check details.
    health: Option<crate::router::provider_health::ProviderHealth>,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    data: Vec<ProviderView>,
    skipped: Vec<crate::config::SkippedProvider>,
}

/// The loaded providers and their models (never a key), with figures observed since start.
#[utoipa::path(
    get,
    path = "/admin/providers",
    operation_id = "listProviders",
    tag = "providers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The providers", body = ProviderList),
        crate::openapi::responses::AdminRequired,
    )
)]
async fn providers(_admin: AdminCaller, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.snapshot();
    let mut health = state.health.snapshot(&snapshot);
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
            breaker: health.iter().find(|h| h.name == p.name).map(|h| h.breaker),
            health: health
                .iter()
                .position(|h| h.name == p.name)
                .map(|i| health.swap_remove(i)),
        })
        .collect();
    let skipped = snapshot.config.skipped.clone();
    HttpResponse::Ok().json(ProviderList { data, skipped })
}

/// Response cache size and hit counts.
#[utoipa::path(
    get,
    path = "/admin/cache",
    operation_id = "getCacheStats",
    tag = "providers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cache figures", body = crate::store::cache::CacheStats),
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::StoreFailed,
    )
)]
async fn cache_stats(
    _admin: AdminCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let stats = state
        .store
        .cache
        .stats()
        .await
        .map_err(super::store_failed)?;
    Ok(HttpResponse::Ok().json(stats))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PurgeQuery {
    /// A provider (`mock`) or a model (`mock/echo`); absent: everything.
    namespace: Option<String>,
}

/// Empties the response cache, or one provider's or model's part of it.
#[utoipa::path(
    delete,
    path = "/admin/cache",
    operation_id = "purgeCache",
    tag = "providers",
    params(PurgeQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many entries were removed", body = Purged),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::StoreFailed,
    )
)]
async fn purge(
    _admin: AdminCaller,
    query: web::Query<PurgeQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let namespace = query.into_inner().namespace;
    let cache = &state.store.cache;
    let removed = cache
        .purge(namespace.as_deref())
        .await
        .map_err(super::store_failed)?;
    Ok(HttpResponse::Ok().json(Purged { removed }))
}

/// Prometheus metrics (text exposition format 0.0.4). Readable with an admin key or the
/// metrics token (`--metrics-token`); `--metrics-listen` also serves it without a key on a
/// second address.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "providers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text", content_type = "text/plain; version=0.0.4", body = String, example = json!("# TYPE switchboard_requests_total counter\nswitchboard_requests_total{endpoint=\"chat/completions\",status=\"2xx\"} 1\n")),
        crate::openapi::responses::AdminRequired,
    )
)]
async fn metrics(_reader: MetricsReader, state: web::Data<AppState>) -> HttpResponse {
    exposition(&state)
}

async fn open_metrics(state: web::Data<AppState>) -> HttpResponse {
    exposition(&state)
}

/// The Prometheus text: the counters, the store's own, and each provider's breaker.
fn exposition(state: &AppState) -> HttpResponse {
    use std::fmt::Write;
    let mut text = state.metrics.render();
    state.store.backend.render_metrics(&mut text);
    text.push_str("# HELP switchboard_breaker_state Circuit breaker per provider: 0 closed, 1 half open, 2 open.\n# TYPE switchboard_breaker_state gauge\n");
    for h in state.health.snapshot(&state.snapshot()) {
        let value = match h.breaker {
            crate::router::breaker::BreakerState::Closed => 0,
            crate::router::breaker::BreakerState::HalfOpen => 1,
            crate::router::breaker::BreakerState::Open => 2,
        };
        let _ = writeln!(
            text,
            "switchboard_breaker_state{{provider=\"{}\"}} {value}",
            h.name.replace('"', "")
        );
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}
