//! Every request gets an id: the client's `x-request-id` when it is sane, a fresh one otherwise.
//! It is sent back on every response, errors included, and passed upstream.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Instant;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn accept_client_id(value: &HeaderValue) -> Option<Arc<str>> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| Arc::from(s))
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(accept_client_id)
        .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().simple().to_string()));
    req.extensions_mut().insert(RequestId(id.clone()));
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_string();
    let mut res = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, value);
    }
    let status = res.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    if let Some(state) = res
        .request()
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
    {
        // The route pattern, not the path, keeps the label set small.
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        state
            .metrics
            .http(&route, method.as_str(), status, micros as f64 / 1e6);
    }
    if status >= 500 {
        tracing::warn!(request_id = %id, %method, path, status, micros, "request failed");
    } else {
        tracing::debug!(request_id = %id, %method, path, status, micros, "request");
    }
    Ok(res)
}

impl FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(Arc::from(uuid::Uuid::new_v4().simple().to_string())));
        ready(Ok(id))
    }
}
