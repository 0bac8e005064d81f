//! The reference for the load benchmark: the least an actix-web + reqwest pass-through proxy
//! does (no auth, no parsing, no policies, no accounting; `reference.rs`).
//! `bare_proxy LISTEN UPSTREAM_BASE`; prints `listening on http://ADDR`.

// A benchmark tool, not the gateway: it prints its results and stops at the first failure.
#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

mod reference;

use actix_web::{App, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let upstream = args.next().expect("usage: bare_proxy LISTEN UPSTREAM_BASE");
    let data = reference::Upstream::new(&upstream);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(reference::routes)
    })
    .tcp_nodelay(true)
    .backlog(4096)
    .max_connections(100_000)
    .bind(listen)?;
    println!("listening on http://{}", server.addrs()[0]);
    server.run().await
}
