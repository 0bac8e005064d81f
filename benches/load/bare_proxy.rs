//! The reference for the load benchmark: the least an actix-web + reqwest pass-through proxy
//! does (no auth, no parsing, no policies, no accounting). `bare_proxy LISTEN UPSTREAM_BASE`;
//! prints `listening on http://ADDR`.

// A benchmark tool, not the gateway: it prints its results and stops at the first failure.
#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::StreamExt;

struct Upstream {
    client: reqwest::Client,
    url: String,
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

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let upstream = args.next().expect("usage: bare_proxy LISTEN UPSTREAM_BASE");
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .build()
        .expect("client");
    let data = web::Data::new(Upstream {
        client,
        url: format!("{}/chat/completions", upstream.trim_end_matches('/')),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/v1/chat/completions", web::post().to(forward))
    })
    .tcp_nodelay(true)
    .backlog(4096)
    .max_connections(100_000)
    .bind(listen)?;
    println!("listening on http://{}", server.addrs()[0]);
    server.run().await
}
