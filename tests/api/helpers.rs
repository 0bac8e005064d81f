//! Spawning the gateway for a test: temp folders, port 0, a known admin key.

use actix_web::dev::ServerHandle;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use switchboard::{Application, Settings};

pub const ADMIN_KEY: &str = "sk-test-admin-key";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// Holds the temp folders (providers.d, policies, data) for the server's lifetime.
    pub _dir: tempfile::TempDir,
    handle: ServerHandle,
    /// `http://ADDR` of the `/metrics`-only listener, with `Spawn::metrics_listen`.
    pub metrics_base: Option<String>,
    /// The running server's trace sampling ratio (`AppState::trace_sampling`).
    pub trace_sampling: switchboard::telemetry::SamplingRatio,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Stop accepting and let workers exit; the runtime may already be going away.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { handle.stop(false).await });
        }
    }
}

/// Options for a test server.
pub struct Spawn {
    pub providers: Vec<(String, String)>,
    pub admin_key: Option<String>,
    pub body_limit: usize,
    pub data_dir: Option<PathBuf>,
    /// Policy scripts: (file name, text).
    pub policies: Vec<(String, String)>,
    pub policy_fail_open: bool,
    pub read_only_policies: bool,
    pub log_bodies: bool,
    /// `webhooks.yaml`, if any.
    pub webhooks: Option<String>,
    pub cors: Option<switchboard::http::cors::CorsSettings>,
    pub metrics_token: Option<String>,
    /// Serve `/metrics` without a key on a second port-0 listener.
    pub metrics_listen: bool,
    /// `--trusted-proxies`.
    pub trusted_proxies: Vec<String>,
    /// `--mirror-concurrency` (default when `None`).
    pub mirror_concurrency: Option<usize>,
    /// Export traces (`tests/api/otel.rs` runs the receiver).
    pub otlp: Option<switchboard::telemetry::OtlpSettings>,
    /// `--batch-concurrency-per-batch` and `--max-file-bytes` (defaults when `None`).
    pub batch_concurrency_per_batch: Option<usize>,
    pub max_file_bytes: Option<u64>,
}

impl Default for Spawn {
    fn default() -> Self {
        Spawn {
            providers: vec![],
            admin_key: Some(ADMIN_KEY.to_string()),
            body_limit: Settings::DEFAULT_BODY_LIMIT,
            data_dir: None,
            policies: vec![],
            policy_fail_open: false,
            read_only_policies: false,
            log_bodies: false,
            webhooks: None,
            cors: None,
            metrics_token: None,
            metrics_listen: false,
            trusted_proxies: vec![],
            mirror_concurrency: None,
            otlp: None,
            batch_concurrency_per_batch: None,
            max_file_bytes: None,
        }
    }
}

impl Spawn {
    pub fn provider(mut self, name: &str, yaml: impl Into<String>) -> Self {
        self.providers.push((name.to_string(), yaml.into()));
        self
    }

    pub fn policy(mut self, file: &str, script: impl Into<String>) -> Self {
        self.policies.push((file.to_string(), script.into()));
        self
    }

    pub fn webhooks(mut self, yaml: impl Into<String>) -> Self {
        self.webhooks = Some(yaml.into());
        self
    }

    pub fn data(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }
}

pub fn write_providers(dir: &Path, providers: &[(String, String)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, yaml) in providers {
        std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
    }
}

/// Starts a gateway; returns it and the admin key created at boot, if one was.
pub async fn spawn_with(opts: Spawn) -> (TestApp, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::with_base(dir.path());
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin_key = opts.admin_key;
    settings.body_limit = opts.body_limit;
    settings.workers = 1;
    if let Some(data) = opts.data_dir {
        settings.data_dir = data;
    }
    write_providers(&settings.providers_dir, &opts.providers);
    std::fs::create_dir_all(&settings.policies_dir).unwrap();
    for (file, script) in &opts.policies {
        std::fs::write(settings.policies_dir.join(file), script).unwrap();
    }
    settings.policy_fail_open = opts.policy_fail_open;
    settings.read_only_policies = opts.read_only_policies;
    settings.log_bodies = opts.log_bodies;
    settings.cors = opts.cors;
    settings.metrics_token = opts.metrics_token;
    settings.trusted_proxies =
        switchboard::http::client_ip::TrustedProxies::parse(&opts.trusted_proxies).unwrap();
    if let Some(n) = opts.mirror_concurrency {
        settings.mirror_concurrency = n;
    }
    settings.otlp = opts.otlp;
    if let Some(n) = opts.batch_concurrency_per_batch {
        settings.batch_concurrency_per_batch = n;
    }
    if let Some(n) = opts.max_file_bytes {
        settings.max_file_bytes = n;
    }
    if opts.metrics_listen {
        settings.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    }
    if let Some(yaml) = &opts.webhooks {
        std::fs::write(&settings.webhooks_file, yaml).unwrap();
    }

    let mut app = Application::build(settings).await.expect("the app builds");
    let new_admin = app.take_new_admin_key();
    let base = format!("http://{}", app.addr());
    let metrics_base = app.metrics_addr().map(|a| format!("http://{a}"));
    let trace_sampling = app.trace_sampling();
    let handle = app.handle();
    tokio::spawn(app.run());
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;
    (
        TestApp {
            base,
            client,
            _dir: dir,
            handle,
            metrics_base,
            trace_sampling,
        },
        new_admin,
    )
}

pub async fn spawn(opts: Spawn) -> TestApp {
    spawn_with(opts).await.0
}

/// The gateway with only the built-in mock provider.
pub async fn spawn_mock() -> TestApp {
    spawn(Spawn::default().provider("mock", "kind: mock\nmodels: [echo, text-embedding-mock]\n"))
        .await
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/health/ready")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("server at {base} never became ready");
}

impl TestApp {
    /// Stops the server and waits until it has.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn post(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(key)
    }

    pub fn get(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(key)
    }

    pub async fn chat(&self, key: &str, body: serde_json::Value) -> reqwest::Response {
        self.post("/v1/chat/completions", key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a key through the admin API; returns (id, secret).
    pub async fn create_key(&self, body: serde_json::Value) -> (String, String) {
        let res = self
            .post("/admin/keys", ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let v: serde_json::Value = res.json().await.unwrap();
        (
            v["id"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        )
    }
}

/// Asserts an OpenAI-shaped error body and returns it.
pub async fn assert_error(res: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "unexpected status");
    assert!(res.headers().contains_key("x-request-id"));
    let body: serde_json::Value = res.json().await.expect("error body is JSON");
    let err = &body["error"];
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(err["type"].is_string(), "{body}");
    assert!(
        err.get("param").is_some() && err.get("code").is_some(),
        "{body}"
    );
    body
}

/// Reads an SSE response into its `data:` payloads, in order.
pub async fn sse_payloads(res: reqwest::Response) -> Vec<String> {
    let text = res.text().await.unwrap();
    parse_sse(&text)
}

pub fn parse_sse(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// Reads from a streaming response until `needle` has been seen; returns what was read.
pub async fn read_until(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    needle: &str,
) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        match tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("stream ended or stalled before {needle:?}: {other:?}; read {seen:?}"),
        }
    }
    seen
}

/// Waits, if the minute turns within the next 15 s, until it has turned. Request windows are
/// epoch-aligned, so a test that fills a per-minute limit and expects the next request refused
/// would see it pass if the minute turned between them (it has: once in a full run). Call it
/// just before the requests that must share one window.
pub async fn clear_of_a_minute_turn() {
    clear_of_a_window_turn(60).await;
}

/// [`clear_of_a_minute_turn`] for a window of `window_secs` (an hour: 3600).
pub async fn clear_of_a_window_turn(window_secs: u64) {
    let window_ms = window_secs * 1000;
    let into_window = switchboard::clock::now_ms() % window_ms;
    if into_window > window_ms.saturating_sub(15_000) {
        tokio::time::sleep(std::time::Duration::from_millis(
            window_ms - into_window + 100,
        ))
        .await;
    }
}

/// Waits until no server holds the database in `dir` (its lock is released on shutdown).
pub async fn wait_until_store_free(dir: &Path) {
    for _ in 0..200 {
        if switchboard::store::Store::open(dir, 1 << 20).is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the data folder stayed locked");
}

/// One request as a mock upstream saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: String,
    pub headers: std::collections::HashMap<String, String>,
    pub body: serde_json::Value,
    /// The body as it arrived (lossy UTF-8), for checks on the exact bytes.
    pub raw: String,
}

impl Received {
    pub fn of(req: &actix_web::HttpRequest, body: &[u8]) -> Received {
        Received {
            path: req.path().to_string(),
            query: req.query_string().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
            raw: String::from_utf8_lossy(body).into_owned(),
        }
    }
}

/// A mock upstream on 127.0.0.1:0: `handler` answers every path, with `data` shared to it.
/// Stopped when dropped.
pub struct MockServer {
    pub addr: std::net::SocketAddr,
    handle: ServerHandle,
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { handle.stop(false).await });
        }
    }
}

pub fn mock_server<T, F, Args>(data: std::sync::Arc<T>, handler: F) -> MockServer
where
    T: Send + Sync + 'static,
    F: actix_web::Handler<Args> + Clone + Send + 'static,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let data = actix_web::web::Data::from(data);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .default_service(actix_web::web::to(handler.clone()))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    MockServer { addr, handle }
}

/// The request log entry for `request_id`, waiting for the background writer to store it.
pub async fn log_entry(app: &TestApp, request_id: &str) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let res = app
            .get(&format!("/admin/logs/{request_id}"), ADMIN_KEY)
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            return res.json().await.unwrap();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "request {request_id} was never logged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `GET path` with the admin key, as JSON.
pub async fn admin_json(app: &TestApp, path: &str) -> serde_json::Value {
    let res = app.get(path, ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// An embedding sent as `encoding_format: base64`, decoded as OpenAI's SDKs do: standard
/// base64 (padding required) of float32 little-endian values.
pub fn decode_base64_embedding(value: &serde_json::Value) -> Vec<f32> {
    use base64::Engine as _;
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a base64 string: {value}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("standard base64 with padding");
    assert_eq!(bytes.len() % 4, 0, "whole float32 values: {text}");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A float embedding at float32, the precision a base64 one carries.
pub fn float_embedding(value: &serde_json::Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array of floats: {value}"))
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}

/// `GET path` with the admin key, as text (e.g. `/metrics`).
pub async fn admin_text(app: &TestApp, path: &str) -> String {
    let res = app.get(path, ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.text().await.unwrap()
}

/// One provider's entry in `/admin/providers`.
pub async fn admin_provider(app: &TestApp, name: &str) -> serde_json::Value {
    let list = admin_json(app, "/admin/providers").await;
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no provider {name} in {list}"))
        .clone()
}

/// Waits until the response cache holds `n` entries: a reply is stored just after it is sent,
/// off the request's thread.
pub async fn cached_entries(app: &TestApp, n: u64) {
    let started = std::time::Instant::now();
    while admin_json(app, "/admin/cache").await["entries"] != n {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the cache never held {n} entries"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits until the request answered by `res` is settled (its log entry is written last, after
/// the cache write and the `on_response` hooks).
pub async fn settled(app: &TestApp, res: &reqwest::Response) {
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let started = std::time::Instant::now();
    loop {
        let entries = admin_json(app, &format!("/admin/logs?request_id={id}")).await;
        if entries["data"].as_array().is_some_and(|d| !d.is_empty()) {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "request {id} was never settled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The `custom_id` of every line of a batch's output (or error) file, in file order.
pub fn custom_ids(jsonl: &str) -> Vec<String> {
    jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["custom_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}
