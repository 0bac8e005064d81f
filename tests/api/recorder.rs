//! A recording HTTP server on 127.0.0.1:0 for the native-format mock upstreams: it keeps
//! every request (path, query, headers, JSON body) and answers with a handler chosen by the
//! test module that speaks the format.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
}

pub type Handler = fn(&Received) -> HttpResponse;

struct Shared {
    received: Mutex<Vec<Received>>,
    handler: Handler,
}

pub struct Recorder {
    /// `http://127.0.0.1:PORT`, without a path.
    pub origin: String,
    shared: Arc<Shared>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { handle.stop(false).await });
        }
    }
}

impl Recorder {
    pub async fn start(handler: Handler) -> Recorder {
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            handler,
        });
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(handle))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Recorder {
            origin: format!("http://{addr}"),
            shared,
            handle,
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
    let received = Received {
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    };
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
