//! A recording HTTP server on 127.0.0.1:0 for the native-format mock upstreams: it keeps
//! every request (path, query, headers, JSON body) and answers with a handler chosen by the
//! test module that speaks the format.

use crate::helpers::{mock_server, MockServer};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use std::sync::{Arc, Mutex};

pub use crate::helpers::Received;

pub type Handler = fn(&Received) -> HttpResponse;

struct Shared {
    received: Mutex<Vec<Received>>,
    handler: Handler,
}

pub struct Recorder {
    /// `http://127.0.0.1:PORT`, without a path.
    pub origin: String,
    shared: Arc<Shared>,
    _server: MockServer,
}

impl Recorder {
    pub async fn start(handler: Handler) -> Recorder {
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            handler,
        });
        let server = mock_server(shared.clone(), handle);
        Recorder {
            origin: format!("http://{}", server.addr),
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
}

async fn handle(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let received = Received::of(&req, &body);
    shared.received.lock().unwrap().push(received.clone());
    (shared.handler)(&received)
}

/// A recorded event stream, sent in small uneven pieces so events straddle network chunks.
pub fn sse_in_pieces(text: &'static str) -> HttpResponse {
    let pieces: Vec<Result<Bytes, actix_web::Error>> = text
        .as_bytes()
        .chunks(37)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(futures_util::stream::iter(pieces))
}

pub fn json_body(status: u16, body: &'static str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(body)
}

/// The OpenAI payloads' `choices[0].delta.content`, joined.
pub fn streamed_text(payloads: &[serde_json::Value]) -> String {
    payloads
        .iter()
        .filter_map(|p| p["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// Parses every payload but `[DONE]` as JSON.
pub fn json_payloads(payloads: &[String]) -> Vec<serde_json::Value> {
    payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .map(|p| serde_json::from_str(p).unwrap())
        .collect()
}

/// A recorded fixture of a provider's wire format, from tests/fixtures/<format>/.
pub fn fixture(format: &str, name: &str) -> serde_json::Value {
    let path = format!(
        "{}/tests/fixtures/{format}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The OpenAI tool both adapters' tool-call tests use.
pub fn weather_tool() -> serde_json::Value {
    serde_json::json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
    }}])
}
