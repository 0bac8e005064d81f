//! `GET /admin/webhooks/deliveries`: the recent webhook deliveries (kept in memory), with
//! their status and attempts. URLs are shown without credentials or query; secrets never.

use crate::http::callers::AdminCaller;
use crate::state::AppState;
use crate::webhooks::deliveries::Delivery;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::resource("/admin/webhooks/deliveries").route(web::get().to(deliveries)),
    );
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first; the last 200 deliveries since the gateway started.
    data: Vec<Delivery>,
}

/// Recent webhook deliveries: one per event and receiver, with status and attempts.
#[utoipa::path(
    get,
    path = "/admin/webhooks/deliveries",
    operation_id = "listWebhookDeliveries",
    tag = "webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The recent deliveries, newest first", body = DeliveryList),
        crate::openapi::responses::AdminRequired,
    )
)]
async fn deliveries(_admin: AdminCaller, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(DeliveryList {
        data: state.webhooks.deliveries(),
    })
}
