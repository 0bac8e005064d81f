//! `/admin/usage` (usage and cost over time, grouped) and `/admin/logs` (the request log).
//! Both read off the async workers: a large scan never stalls the proxy.

use super::store_failed;
use crate::error::ApiError;
use crate::http::callers::AdminCaller;
use crate::state::AppState;
use crate::store::logs::LogFilter;
use crate::store::usage::{Bucket, GroupBy, Percentiles, Totals, UnknownGroup, UsageRow};
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/admin/usage").route(web::get().to(usage)))
        .service(crate::http::resource("/admin/logs").route(web::get().to(logs)))
        .service(crate::http::resource("/admin/logs/{request_id}").route(web::get().to(log_entry)));
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Unix seconds; default: 24 hours ago.
    since: Option<u64>,
    /// Unix seconds, exclusive; default: now.
    until: Option<u64>,
    /// `hour` (default) or `day`.
    bucket: Option<Bucket>,
    /// `key`, `team`, `provider`, `model`, `variant`, `shadow` (the requests a policy mirrored
    /// and their copies: `tag:shadow`), `tag:<name>`; default: no grouping.
    group_by: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UsageReport {
    since: u64,
    until: u64,
    bucket: Bucket,
    group_by: Option<String>,
    data: Vec<UsageRow>,
    totals: TotalsView,
}

/// The range's totals, with latency percentiles over all of it.
#[derive(Serialize, ToSchema)]
pub struct TotalsView {
    #[serde(flatten)]
    totals: Totals,
    #[serde(flatten)]
    percentiles: Percentiles,
}

/// Usage and cost per hour or day, optionally grouped, with totals.
#[utoipa::path(
    get,
    path = "/admin/usage",
    operation_id = "getUsage",
    tag = "usage",
    params(UsageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report", body = UsageReport),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::StoreFailed,
    )
)]
async fn usage(
    _admin: AdminCaller,
    query: web::Query<UsageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let now = crate::store::keys::now_secs();
    let until = q.until.unwrap_or(now + 1);
    let since = q.since.unwrap_or(until.saturating_sub(86_400));
    if since >= until {
        return Err(ApiError::bad_request("`since` must be before `until`").with_param("since"));
    }
    let bucket = q.bucket.unwrap_or(Bucket::Hour);
    let group: GroupBy = q
        .group_by
        .as_deref()
        .unwrap_or("none")
        .parse()
        .map_err(|e: UnknownGroup| ApiError::bad_request(e.to_string()).with_param("group_by"))?;
    let usage = &state.store.usage;
    let data = usage
        .query(since, until, bucket, &group)
        .await
        .map_err(store_failed)?;
    let mut totals = Totals::default();
    for row in &data {
        totals.add(&row.totals);
    }
    Ok(HttpResponse::Ok().json(UsageReport {
        since,
        until,
        bucket,
        group_by: q.group_by,
        data,
        totals: TotalsView {
            totals,
            percentiles: Percentiles::of(&totals),
        },
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// The gateway's id of a request, or an `x-request-id` a client sent (several requests
    /// may have sent the same one).
    request_id: Option<String>,
    /// A W3C trace id (32 hex digits): the entries of the requests in that trace.
    trace_id: Option<String>,
    key_id: Option<String>,
    /// The id of the team the key belonged to when the request was made.
    team: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    /// `429` or a class such as `5xx`.
    status: Option<String>,
    /// Unix seconds, inclusive.
    since: Option<u64>,
    /// Unix seconds, exclusive.
    until: Option<u64>,
    /// At most 500; default 50.
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The request log, newest first, filtered and paged.
#[utoipa::path(
    get,
    path = "/admin/logs",
    operation_id = "listLogs",
    tag = "usage",
    params(LogQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of entries", body = crate::store::logs::LogPage),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::StoreFailed,
    )
)]
async fn logs(
    _admin: AdminCaller,
    query: web::Query<LogQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be from 1 to 500").with_param("limit"));
    }
    if q.cursor
        .as_deref()
        .is_some_and(|c| !crate::store::logs::valid_cursor(c))
    {
        return Err(
            ApiError::bad_request("`cursor` is not one this API gave out").with_param("cursor"),
        );
    }
    let filter = LogFilter {
        request_id: q.request_id,
        trace_id: q.trace_id,
        key_id: q.key_id,
        team: q.team,
        model: q.model,
        provider: q.provider,
        status: q.status,
        // Saturating: a far-future `until` (found by schemathesis) overflowed and panicked.
        since_ms: q.since.map(|s| s.saturating_mul(1000)),
        until_ms: q.until.map(|u| u.saturating_mul(1000)),
    };
    let logs = &state.store.logs;
    let page = logs
        .query(&filter, limit, q.cursor.as_deref())
        .await
        .map_err(store_failed)?;
    Ok(HttpResponse::Ok().json(page))
}

/// One logged request by the gateway's id for it.
#[utoipa::path(
    get,
    path = "/admin/logs/{request_id}",
    operation_id = "getLog",
    tag = "usage",
    params(("request_id" = String, Path, description = "The entry's `request_id`: the gateway's own id, unique, which is the `x-request-id` response header unless the client sent its own (find those with `GET /admin/logs?request_id=`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The entry", body = crate::store::logs::LogEntry),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::NotFound,
        crate::openapi::responses::StoreFailed,
    )
)]
async fn log_entry(
    _admin: AdminCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let logs = &state.store.logs;
    logs.get(&id)
        .await
        .map_err(store_failed)?
        .map(|e| HttpResponse::Ok().json(e))
        .ok_or_else(|| ApiError::not_found(format!("no logged request with id `{id}`")))
}
