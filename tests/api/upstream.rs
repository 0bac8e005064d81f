//! A mock OpenAI-compatible upstream on 127.0.0.1:0 that records what it receives.
//!
//! Its behaviour is chosen by the `model` the gateway sends, so one upstream serves many cases:
//! - `plain`: a fixed JSON body with fields the gateway does not know;
//! - `stream`: three content chunks, a finish chunk, a usage chunk if asked, `[DONE]`;
//! - `gated`: one chunk, then waits for `release()` before the rest;
//! - `cut`: one chunk, then the body ends without `[DONE]`;
//! - `status-400`, `status-429` (retry-after 7, a rate-limit header), `status-500-text`;
//! - `echo-key`: a 401 whose message echoes the credential and a header value it was sent;
//! - `html-200`, `empty-200`: a 200 whose body is not JSON;
//! - `huge`, `huge-chunked`: a 2 MiB JSON reply, with a length or chunked;
//! - `ratelimited`, `ratelimited-stream`: `plain` / a short stream with rate-limit and
//!   processing-time headers, and one internal header that must not be relayed;
//! - `slow`: answers after 3 s;
//! - `embed-base64`: an embeddings list, base64 ([`EMBEDDINGS_BASE64`]) when the request asks
//!   for `encoding_format: base64` as OpenAI does, floats otherwise.
//!
//! Failure injection for the resilience tests:
//! - `status-503`: always 503; `fail-twice`: 503 for its first two calls, then `plain`;
//! - `rate-limited-once`: 429 with `retry-after: 0` on its first call, then `plain`;
//! - `switch`: 503 while `set_down(true)`, else `plain`;
//! - `stream-no-usage`: `stream` that never sends a usage chunk, whatever it is asked;
//! - `stall`: headers after 2 s; `delay-50`: `plain` after 50 ms;
//! - `stream-stall`: stream headers at once, the first event after 2 s;
//! - `stream-empty`: stream headers, then the body ends with no event at all;
//! - `stream-pause`: one chunk, 2 s of silence, then the rest.

use crate::helpers::{mock_server, MockServer};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

pub const PLAIN_BODY: &str = r#"{"id":"up-1","object":"chat.completion","created":1700000000,"model":"plain","system_fingerprint":"fp_x","choices":[{"index":0,"message":{"role":"assistant","content":"from upstream","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14},"vendor_extension":{"nested":[1,2.5,"x",null,true]}}"#;

/// One embedding, [1.0, -2.0, 0.5], as OpenAI encodes it for `encoding_format: base64`.
pub const EMBEDDINGS_BASE64: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AACAPwAAAMAAAAA/"}],"model":"embed-base64","usage":{"prompt_tokens":1,"total_tokens":1}}"#;
pub const EMBEDDINGS_FLOAT: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1.0,-2.0,0.5]}],"model":"embed-base64","usage":{"prompt_tokens":1,"total_tokens":1}}"#;

pub use crate::helpers::Received;

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    gate: Notify,
    down: std::sync::atomic::AtomicBool,
}

pub struct Upstream {
    pub base_url: String,
    shared: Arc<Shared>,
    _server: MockServer,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let shared = Arc::new(Shared::default());
        let server = mock_server(shared.clone(), handle);
        Upstream {
            base_url: format!("http://{}/v1", server.addr),
            shared,
            _server: server,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn last(&self) -> Received {
        self.received()
            .pop()
            .expect("the upstream received a request")
    }

    /// Lets a `gated` stream send the rest of its chunks.
    pub fn release(&self) {
        self.shared.gate.notify_one();
    }

    /// Makes `switch` fail (true) or serve (false).
    pub fn set_down(&self, down: bool) {
        self.shared
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many requests for upstream `model` arrived.
    pub fn calls(&self, model: &str) -> usize {
        self.received()
            .iter()
            .filter(|r| r.body["model"] == model)
            .count()
    }

    /// A provider file pointing at this upstream, serving `models` (name: upstream id).
    pub fn provider_yaml(&self, models: &[(&str, &str)]) -> String {
        let mut yaml = format!(
            "kind: openai\nbase_url: {}\napi_key: sk-upstream-secret\nheaders:\n  x-custom: custom-value\ntimeouts:\n  total_secs: 1\nmodels:\n",
            self.base_url
        );
        for (name, upstream) in models {
            yaml.push_str(&format!("  - name: {name}\n    upstream: {upstream}\n"));
        }
        yaml
    }
}

fn chunk(content: &str) -> String {
    format!(
        "data: {{\"id\":\"up-s\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
    )
}

const FINISH: &str = "data: {\"id\":\"up-s\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const USAGE: &str = "data: {\"id\":\"up-s\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}}\n\n";

async fn handle(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let received = Received::of(&req, &body);
    let json = received.body.clone();
    shared.received.lock().unwrap().push(received);
    let model = json["model"].as_str().unwrap_or("").to_string();
    let seen = shared
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.body["model"] == model.as_str())
        .count();
    let include_usage = json["stream_options"]["include_usage"] == true;
    let sse = |parts: Vec<String>| {
        HttpResponse::Ok()
            .content_type("text/event-stream")
            .streaming(futures_util::stream::iter(
                parts
                    .into_iter()
                    .map(|p| Ok::<_, actix_web::Error>(Bytes::from(p))),
            ))
    };
    match model.as_str() {
        "plain" => HttpResponse::Ok()
            .content_type("application/json")
            .body(PLAIN_BODY),
        "stream" => {
            let mut parts = vec![chunk("one"), chunk(" two"), chunk(" three"), FINISH.to_string()];
            if include_usage {
                parts.push(USAGE.to_string());
            }
            parts.push("data: [DONE]\n\n".to_string());
            sse(parts)
        }
        // An upstream that ignores `stream_options`: never a usage chunk.
        "stream-no-usage" => sse(vec![
            chunk("one"),
            chunk(" two"),
            chunk(" three"),
            FINISH.to_string(),
            "data: [DONE]\n\n".to_string(),
        ]),
        "gated" => {
            let shared = shared.into_inner();
            let stream = futures_util::stream::unfold(0, move |step| {
                let shared = shared.clone();
                async move {
                    let part = match step {
                        0 => chunk("first"),
                        1 => {
                            shared.gate.notified().await;
                            chunk(" second")
                        }
                        2 => FINISH.to_string(),
                        3 => "data: [DONE]\n\n".to_string(),
                        _ => return None,
                    };
                    Some((Ok::<_, actix_web::Error>(Bytes::from(part)), step + 1))
                }
            });
            HttpResponse::Ok().content_type("text/event-stream").streaming(stream)
        }
        "cut" => sse(vec![chunk("partial")]),
        "echo-key" => HttpResponse::Unauthorized().json(serde_json::json!({
            "error": {
                "message": format!(
                    "Incorrect API key provided: {} (sent with {})",
                    req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or(""),
                    req.headers().get("x-custom").and_then(|v| v.to_str().ok()).unwrap_or(""),
                ),
                "type": "invalid_request_error", "code": "invalid_api_key"
            }
        })),
        "html-200" => HttpResponse::Ok()
            .content_type("text/html")
            .body("<html><body>Gateway login</body></html>"),
        "empty-200" => HttpResponse::Ok().content_type("application/json").finish(),
        "huge" | "huge-chunked" => {
            // 2 MiB of JSON, with a declared length or chunked without one.
            let body = format!(r#"{{"id":"big","pad":"{}"}}"#, "x".repeat(2 << 20));
            if model == "huge" {
                HttpResponse::Ok().content_type("application/json").body(body)
            } else {
                let pieces: Vec<Result<Bytes, actix_web::Error>> = body
                    .into_bytes()
                    .chunks(64 * 1024)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                HttpResponse::Ok()
                    .content_type("application/json")
                    .streaming(futures_util::stream::iter(pieces))
            }
        }
        "ratelimited" | "ratelimited-stream" => {
            let mut res = HttpResponse::Ok();
            res.insert_header(("x-ratelimit-limit-requests", "100"))
                .insert_header(("x-ratelimit-remaining-requests", "99"))
                .insert_header(("x-ratelimit-reset-tokens", "6ms"))
                .insert_header(("openai-processing-ms", "42"))
                .insert_header(("x-internal-route", "rack-7"));
            if model == "ratelimited" {
                res.content_type("application/json").body(PLAIN_BODY)
            } else {
                res.content_type("text/event-stream")
                    .body(format!("{}{FINISH}data: [DONE]\n\n", chunk("hi")))
            }
        }
        "status-400" => HttpResponse::BadRequest().json(serde_json::json!({
            "error": {"message": "bad temperature from upstream", "type": "invalid_request_error", "param": "temperature", "code": "bad_temp"}
        })),
        "status-429" => HttpResponse::TooManyRequests()
            .insert_header(("retry-after", "7"))
            .insert_header(("x-ratelimit-remaining-requests", "0"))
            .json(serde_json::json!({
                "error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": "rate_limited"}
            })),
        "status-500-text" => HttpResponse::InternalServerError()
            .content_type("text/plain")
            .body("boom"),
        "status-503" => unavailable(),
        "fail-twice" if seen <= 2 => unavailable(),
        "rate-limited-once" if seen <= 1 => HttpResponse::TooManyRequests()
            .insert_header(("retry-after", "0"))
            .json(serde_json::json!({"error": {"message": "wait", "type": "rate_limit_error"}})),
        "switch" if shared.down.load(std::sync::atomic::Ordering::SeqCst) => unavailable(),
        "fail-twice" | "rate-limited-once" | "switch" => HttpResponse::Ok()
            .content_type("application/json")
            .body(PLAIN_BODY),
        "stall" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            HttpResponse::Ok().content_type("application/json").body(PLAIN_BODY)
        }
        "delay-50" => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            HttpResponse::Ok().content_type("application/json").body(PLAIN_BODY)
        }
        "stream-stall" | "stream-pause" => {
            let pause_first = model == "stream-stall";
            let stream = futures_util::stream::unfold(0, move |step| async move {
                let part = match step {
                    0 if pause_first => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        chunk("late")
                    }
                    0 => chunk("first"),
                    1 => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        chunk(" second")
                    }
                    2 => "data: [DONE]\n\n".to_string(),
                    _ => return None,
                };
                Some((Ok::<_, actix_web::Error>(Bytes::from(part)), step + 1))
            });
            HttpResponse::Ok().content_type("text/event-stream").streaming(stream)
        }
        "stream-empty" => sse(vec![]),
        "embed-base64" => HttpResponse::Ok()
            .content_type("application/json")
            .body(if json["encoding_format"] == "base64" {
                EMBEDDINGS_BASE64
            } else {
                EMBEDDINGS_FLOAT
            }),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            HttpResponse::Ok().content_type("application/json").body(PLAIN_BODY)
        }
        _ => HttpResponse::Ok().json(serde_json::json!({
            "object": "echo", "path": req.path(), "model": model,
            "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}
        })),
    }
}

fn unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(serde_json::json!({
        "error": {"message": "upstream overloaded", "type": "server_error", "code": "overloaded"}
    }))
}
