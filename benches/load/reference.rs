//! The reference proxy's application: the least an actix-web + reqwest pass-through proxy does
//! (no auth, no parsing, no policies, no accounting). Shared by `bare_proxy` (its own process,
//! for the load benchmark) and the instruction harness (`--reference`, in the harness's
//! process), so both measure the same code.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt;

pub struct Upstream {
    client: reqwest::Client,
    url: String,
}

impl Upstream {
    /// The upstream at `base` (`http://host:port`, with or without `/v1`'s parent's slash):
    /// requests go to `{base}/chat/completions`.
    pub fn new(base: &str) -> web::Data<Upstream> {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            .build()
            .expect("client");
        web::Data::new(Upstream {
            client,
            url: format!("{}/chat/completions", base.trim_end_matches('/')),
        })
    }
}

/// The one route: `POST /v1/chat/completions`, streamed through.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/chat/completions", web::post().to(forward));
}

async fn forward(_req: HttpRequest, body: Bytes, up: web::Data<Upstream>) -> HttpResponse {
    match up
        .client
        .post(&up.url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(res) => {
            let status = actix_web::http::StatusCode::from_u16(res.status().as_u16())
                .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
            let content_type = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            HttpResponse::build(status)
                .content_type(content_type)
                .streaming(
                    res.bytes_stream()
                        .map(|c| c.map_err(actix_web::error::ErrorBadGateway)),
                )
        }
        Err(_) => HttpResponse::BadGateway().finish(),
    }
}
