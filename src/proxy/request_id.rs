//! Every request gets the gateway's own id, unique, under which the request log keeps it. A
//! client may send its own `x-request-id` (kept when it is sane): that one is echoed on the
//! response and passed upstream, and logged beside the gateway's id, never instead of it, so a
//! client cannot choose the id of another request's log entry. Without one, the gateway's id
//! is echoed and passed upstream.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Instant;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// A request a batch sends (`batch_runner.rs`): which batch, for the log's `batch` tag, and
/// what the request cost, set when it is settled, for the batch's running total.
#[derive(Debug)]
pub struct BatchLine {
    pub batch_id: String,
    /// USD as `f64` bits; written once, when the request is settled.
    cost: std::sync::atomic::AtomicU64,
}

impl BatchLine {
    pub fn new(batch_id: String) -> Self {
        BatchLine {
            batch_id,
            cost: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn set_cost(&self, usd: f64) {
        self.cost
            .store(usd.to_bits(), std::sync::atomic::Ordering::Release);
    }

    pub fn cost_usd(&self) -> f64 {
        f64::from_bits(self.cost.load(std::sync::atomic::Ordering::Acquire))
    }
}

#[derive(Clone)]
pub struct RequestId {
    /// The gateway's own id: unique, the request log entry's `request_id`.
    own: Arc<str>,
    /// The client's `x-request-id`, when it sent a sane one.
    client: Option<Arc<str>>,
    /// The TCP peer's address.
    peer: Option<std::net::IpAddr>,
    /// Set on a request a batch sends.
    batch: Option<Arc<BatchLine>>,
}

impl RequestId {
    fn new(client: Option<Arc<str>>, peer: Option<std::net::IpAddr>) -> Self {
        RequestId {
            own: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
            client,
            peer,
            batch: None,
        }
    }

    /// The id of a request a batch sends: no client, no peer.
    pub fn for_batch(line: Arc<BatchLine>) -> Self {
        RequestId {
            batch: Some(line),
            ..RequestId::new(None, None)
        }
    }

    /// The batch this request belongs to, if a batch sent it.
    pub fn batch(&self) -> Option<&Arc<BatchLine>> {
        self.batch.as_ref()
    }

    /// The address the connection came from (a proxy's, behind one).
    pub fn peer(&self) -> Option<std::net::IpAddr> {
        self.peer
    }

    /// The id the request goes by outside the gateway: echoed in `x-request-id` and sent
    /// upstream. The client's, when it sent one; otherwise the gateway's own.
    pub fn as_str(&self) -> &str {
        self.client.as_deref().unwrap_or(&self.own)
    }

    /// The gateway's own id, unique per request: what the request log is keyed by.
    pub fn log_id(&self) -> &str {
        &self.own
    }

    /// The client's `x-request-id`, if it sent one.
    pub fn client(&self) -> Option<&str> {
        self.client.as_deref()
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
    let rid = RequestId::new(
        req.headers().get(&HEADER).and_then(accept_client_id),
        req.peer_addr().map(|a| a.ip()),
    );
    req.extensions_mut().insert(rid.clone());
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_string();
    // Held across the handler: `/admin/status` reports how many requests are being served.
    let metrics = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .map(|s| s.metrics.clone());
    let in_flight = metrics.as_ref().map(|m| m.request_started());
    let mut res = next.call(req).await?;
    drop(in_flight);
    if let Ok(value) = HeaderValue::from_str(rid.as_str()) {
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
    let (id, client_id) = (rid.log_id(), rid.client());
    if status >= 500 {
        tracing::warn!(request_id = id, client_request_id = client_id, %method, path, status, micros, "request failed");
    } else {
        tracing::debug!(request_id = id, client_request_id = client_id, %method, path, status, micros, "request");
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
            .unwrap_or_else(|| RequestId::new(None, req.peer_addr().map(|a| a.ip())));
        ready(Ok(id))
    }
}
