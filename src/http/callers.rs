//! The callers of a route, as actix extractors: `Caller` is any live key; `AdminCaller`
//! additionally requires the admin role (403 if not); `MetricsReader` is an admin key or the
//! metrics token.

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{KeyRecord, Role};
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use std::future::{ready, Ready};
use std::sync::Arc;

fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("application state is missing"))
}

/// Any authenticated key.
pub struct Caller(pub Arc<KeyRecord>);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            state(req)
                .and_then(|s| s.auth.authenticate(req))
                .map(Caller),
        )
    }
}

/// An authenticated key with the admin role.
pub struct AdminCaller(pub Arc<KeyRecord>);

impl FromRequest for AdminCaller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            state(req)
                .and_then(|s| s.auth.authenticate(req))
                .and_then(|key| match key.role {
                    Role::Admin => Ok(AdminCaller(key)),
                    Role::User => Err(ApiError::forbidden(
                        "This endpoint needs an admin key; the key you sent is a user key.",
                    )),
                }),
        )
    }
}

/// Who may read `/metrics`: the metrics token (`--metrics-token`), or an admin key.
pub struct MetricsReader;

impl FromRequest for MetricsReader {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        match state(req) {
            Ok(s) if s.auth.is_metrics_token(req) => ready(Ok(MetricsReader)),
            Ok(_) => {
                let admin = AdminCaller::from_request(req, payload).into_inner();
                ready(admin.map(|_| MetricsReader))
            }
            Err(e) => ready(Err(e)),
        }
    }
}
