//! A fast OpenAI-shaped upstream for the load benchmark (not a test fixture: it answers at
//! once and does as little as possible). `mock_upstream [ADDR]`, default 127.0.0.1:0; prints
//! `listening on http://ADDR`.
//!
//! The model name picks the behaviour: `bench-delay50` (any name with `delay50`) answers after
//! 50 ms; a body with
//! `"stream":true` gets 20 SSE chunks 20 ms apart, then a usage chunk and `[DONE]`.

// A benchmark tool, not the gateway: it prints its results and stops at the first failure.
#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use actix_web::{web, App, HttpResponse, HttpServer};
use bytes::Bytes;
use std::time::Duration;

const REPLY: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a short benchmark reply."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#;
const CHUNK: &str = "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"},\"finish_reason\":null}]}\n\n";
const USAGE: &str = "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":20,\"total_tokens\":32}}\n\ndata: [DONE]\n\n";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn chat(body: Bytes) -> HttpResponse {
    if contains(&body, b"delay50") {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if contains(&body, b"\"stream\":true") {
        let chunks = futures_util::stream::unfold(0u32, |i| async move {
            match i {
                0..=19 => {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Some((
                        Ok::<_, actix_web::Error>(Bytes::from_static(CHUNK.as_bytes())),
                        i + 1,
                    ))
                }
                20 => Some((Ok(Bytes::from_static(USAGE.as_bytes())), i + 1)),
                _ => None,
            }
        });
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .streaming(chunks);
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(REPLY)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let server = HttpServer::new(|| App::new().route("/v1/chat/completions", web::post().to(chat)))
        .tcp_nodelay(true)
        .backlog(4096)
        .max_connections(100_000)
        .bind(addr)?;
    println!("listening on http://{}", server.addrs()[0]);
    server.run().await
}
