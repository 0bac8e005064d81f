//! OpenTelemetry traces end to end: the gateway exports to an OTLP/HTTP receiver run here
//! (protobuf decoded with `opentelemetry-proto`), calls the recording mock upstream, and the
//! tests check the span tree, the attributes, `traceparent` in and out, the trace id in the
//! request log, sampling, and what a collector that is down or stalled costs.

use crate::helpers::*;
use crate::upstream::Upstream;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::telemetry::OtlpSettings;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const PROMPT: &str = "a b c secret-prompt-words";

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const INTERNAL: i32 = 1;
/// `Status.code` error.
const ERROR: i32 = 2;

/// One span as the receiver decoded it.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, Value>,
    status: i32,
    service: Option<String>,
}

impl Received {
    fn attr(&self, name: &str) -> &Value {
        self.attributes
            .get(name)
            .unwrap_or_else(|| panic!("span {} has no {name}: {:?}", self.name, self.attributes))
    }
}

#[derive(Default)]
struct Shared {
    spans: Mutex<Vec<Received>>,
    /// Answer after this long (a stalled collector).
    stall: Option<Duration>,
}

/// An OTLP/HTTP receiver on 127.0.0.1:0: `POST /v1/traces`, protobuf.
struct Collector {
    endpoint: String,
    shared: Arc<Shared>,
    _server: MockServer,
}

impl Collector {
    fn start(stall: Option<Duration>) -> Collector {
        let shared = Arc::new(Shared {
            spans: Mutex::default(),
            stall,
        });
        let server = mock_server(shared.clone(), receive);
        Collector {
            // A bare base: the gateway adds /v1/traces.
            endpoint: format!("http://{}", server.addr),
            shared,
            _server: server,
        }
    }

    fn spans(&self) -> Vec<Received> {
        self.shared.spans.lock().unwrap().clone()
    }

    /// Waits until the trace `trace_id` holds a SERVER span, then a little for its siblings
    /// (they end before it, so they are in the same or an earlier batch).
    async fn trace(&self, trace_id: &str) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let spans: Vec<Received> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if spans.iter().any(|s| s.kind == SERVER) {
                return spans;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no server span for {trace_id}; got {:?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    if let Some(stall) = shared.stall {
        tokio::time::sleep(stall).await;
    }
    assert_eq!(req.path(), "/v1/traces");
    assert_eq!(
        req.headers().get("content-type").unwrap().to_str().unwrap(),
        "application/x-protobuf"
    );
    let export = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    let mut spans = shared.spans.lock().unwrap();
    for resource in export.resource_spans {
        let service = resource.resource.as_ref().and_then(|r| {
            r.attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(Any::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
        });
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(Received {
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent: hex::encode(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .into_iter()
                        .map(|kv| {
                            (
                                kv.key,
                                kv.value.and_then(|v| v.value).map_or(Value::Null, json_of),
                            )
                        })
                        .collect(),
                    status: span.status.map_or(0, |s| s.code),
                    service: service.clone(),
                });
            }
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

fn json_of(value: Any) -> Value {
    match value {
        Any::StringValue(s) => json!(s),
        Any::IntValue(i) => json!(i),
        Any::DoubleValue(d) => json!(d),
        Any::BoolValue(b) => json!(b),
        Any::ArrayValue(a) => Value::Array(
            a.values
                .into_iter()
                .filter_map(|v| v.value)
                .map(json_of)
                .collect(),
        ),
        other => json!(format!("{other:?}")),
    }
}

/// Tracing to `endpoint`, batches every 50 ms so the tests need not wait.
fn otlp(endpoint: &str) -> OtlpSettings {
    let mut settings = OtlpSettings::new(endpoint);
    settings.batch_delay = Duration::from_millis(50);
    settings.export_timeout = Duration::from_secs(2);
    settings
}

/// Two providers on one mock upstream: `down` answers 503 (no retries), `up` answers.
fn providers(spawn: Spawn, upstream: &Upstream) -> Spawn {
    let provider = |upstream_model: &str| {
        format!(
            "kind: openai\nbase_url: {}\napi_key: sk-upstream-secret\nretry: {{ max_attempts: 1 }}\nmodels:\n  - name: m\n    upstream: {upstream_model}\n  - name: s\n    upstream: stream\n",
            upstream.base_url
        )
    };
    spawn
        .provider("down", provider("status-503"))
        .provider("up", provider("plain"))
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": PROMPT}]})
}

fn the<'a>(spans: &'a [Received], kind: i32, name: &str) -> &'a Received {
    spans
        .iter()
        .find(|s| s.kind == kind && s.name == name)
        .unwrap_or_else(|| panic!("no span {name} of kind {kind} in {spans:?}"))
}

/// The trace id and parent span id of a `traceparent`.
fn parts(traceparent: &str) -> (String, String, String) {
    let p: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(p.len(), 4, "{traceparent}");
    (p[1].to_string(), p[2].to_string(), p[3].to_string())
}

#[actix_web::test]
async fn a_request_is_a_server_span_over_its_policy_cache_and_attempt_spans() {
    let upstream = Upstream::start().await;
    let collector = Collector::start(None);
    let mut opts = providers(Spawn::default(), &upstream).policy(
        "route.rhai",
        r#"fn on_request(req, ctx) { ctx.route(["down/m", "up/m"]); ctx.cache(60); ctx.split("exp", #{ only: 1 }); }"#,
    );
    opts.otlp = Some(otlp(&collector.endpoint));
    let app = spawn(opts).await;

    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=abc")
        .json(&chat("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-attempts"], "2");
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();

    let spans = collector.trace(CLIENT_TRACE).await;
    let server = the(&spans, SERVER, "POST /v1/chat/completions");
    // A child of the client's span, in the client's trace.
    assert_eq!(server.parent, CLIENT_SPAN);
    assert_eq!(server.service.as_deref(), Some("switchboard"));
    for (name, value) in [
        ("gen_ai.operation.name", json!("chat")),
        ("gen_ai.system", json!("openai")),
        ("gen_ai.request.model", json!("m")),
        ("gen_ai.response.model", json!("plain")),
        ("gen_ai.usage.input_tokens", json!(11)),
        ("gen_ai.usage.output_tokens", json!(3)),
        ("gen_ai.response.finish_reasons", json!(["stop"])),
        ("switchboard.provider", json!("up")),
        ("switchboard.cache", json!("miss")),
        ("switchboard.variant", json!("exp=only")),
        ("switchboard.attempts", json!(2)),
        ("switchboard.request_id", json!(request_id)),
        ("http.response.status_code", json!(200)),
        ("http.route", json!("/v1/chat/completions")),
    ] {
        assert_eq!(server.attr(name), &value, "{name}");
    }
    assert!(server.attr("switchboard.cost_usd").is_number());
    let key_id = server.attr("switchboard.key_id").as_str().unwrap();
    assert!(!key_id.is_empty() && key_id != ADMIN_KEY);

    // The stages, children of the request's span.
    let policy = the(&spans, INTERNAL, "policy");
    assert_eq!(policy.parent, server.span_id);
    let cache = the(&spans, INTERNAL, "cache lookup");
    assert_eq!(cache.parent, server.span_id);
    assert_eq!(cache.attr("switchboard.cache"), "miss");

    // One CLIENT span per attempt: the 503, then the fallback that served.
    let mut attempts: Vec<&Received> = spans.iter().filter(|s| s.kind == CLIENT).collect();
    attempts.sort_by_key(|s| s.attr("switchboard.attempt").as_i64());
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let (failed, served) = (attempts[0], attempts[1]);
    assert_eq!(failed.name, "chat status-503");
    assert_eq!(failed.attr("switchboard.attempt"), 1);
    assert_eq!(failed.attr("switchboard.provider"), "down");
    assert_eq!(failed.attr("switchboard.attempt.outcome"), "status");
    assert_eq!(failed.attr("switchboard.attempt.then"), "next_target");
    assert_eq!(failed.attr("http.response.status_code"), 503);
    assert_eq!(failed.status, ERROR);
    assert_eq!(served.name, "chat plain");
    assert_eq!(served.attr("switchboard.attempt"), 2);
    assert_eq!(served.attr("switchboard.provider"), "up");
    assert_eq!(served.attr("switchboard.attempt.outcome"), "ok");
    assert_eq!(served.attr("switchboard.attempt.then"), "served");
    assert_eq!(served.attr("gen_ai.request.model"), "plain");
    assert_eq!(served.attr("gen_ai.system"), "openai");
    assert_ne!(served.status, ERROR);
    for attempt in &attempts {
        assert_eq!(attempt.parent, server.span_id);
    }

    // Each upstream call carried its attempt's span as the parent, in the client's trace,
    // and the client's tracestate.
    let calls = upstream.received();
    assert_eq!(calls.len(), 2);
    for (call, attempt) in calls.iter().zip(&attempts) {
        let (trace, parent, flags) = parts(&call.headers["traceparent"]);
        assert_eq!(trace, CLIENT_TRACE);
        assert_eq!(parent, attempt.span_id);
        assert_eq!(flags, "01");
        assert_eq!(call.headers["tracestate"], "vendor=abc");
    }

    // Never the prompt, never a key, in any span.
    for span in &spans {
        for value in span.attributes.values() {
            let text = value.to_string();
            assert!(!text.contains("secret-prompt-words"), "{span:?}");
            assert!(!text.contains(ADMIN_KEY) && !text.contains("sk-upstream-secret"));
        }
    }

    // The request log knows the trace, and finds its requests by it.
    let entry = log_entry(&app, &request_id).await;
    assert_eq!(entry["trace_id"], CLIENT_TRACE);
    let page = admin_json(&app, &format!("/admin/logs?trace_id={CLIENT_TRACE}")).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["request_id"], request_id.as_str());

    // The same request again is a cache hit: no attempt, no upstream call.
    let second = "0af7651916cd43dd8448eb211c80319c";
    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .header("traceparent", format!("00-{second}-{CLIENT_SPAN}-01"))
        .json(&chat("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-switchboard-cache"], "hit");
    let spans = collector.trace(second).await;
    let server = the(&spans, SERVER, "POST /v1/chat/completions");
    assert_eq!(server.attr("switchboard.cache"), "hit");
    assert_eq!(server.attr("switchboard.attempts"), 0);
    assert_eq!(server.attr("switchboard.cost_usd"), 0.0);
    assert_eq!(
        the(&spans, INTERNAL, "cache lookup").attr("switchboard.cache"),
        "hit"
    );
    assert!(!spans.iter().any(|s| s.kind == CLIENT));
    assert_eq!(upstream.received().len(), 2);
}

#[actix_web::test]
async fn a_failed_request_is_an_error_span_and_its_attempt_too() {
    let upstream = Upstream::start().await;
    let collector = Collector::start(None);
    let mut opts = providers(Spawn::default(), &upstream).policy(
        "route.rhai",
        r#"fn on_request(req, ctx) { if req.model == "m" { ctx.route(["down/m"]); } }"#,
    );
    opts.otlp = Some(otlp(&collector.endpoint));
    let app = spawn(opts).await;
    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&chat("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let spans = collector.trace(CLIENT_TRACE).await;
    let server = the(&spans, SERVER, "POST /v1/chat/completions");
    assert_eq!(server.status, ERROR);
    assert_eq!(server.attr("http.response.status_code"), 503);
    assert_eq!(server.attr("error.type"), "503");
    assert_eq!(server.attr("switchboard.attempts"), 1);
    let attempt = the(&spans, CLIENT, "chat status-503");
    assert_eq!(attempt.status, ERROR);
    // A 503 is worth another target; there is none left.
    assert_eq!(attempt.attr("switchboard.attempt.then"), "next_target");

    // A client's error (an unknown model) is no server error: `error.type`, status unset.
    let second = "0af7651916cd43dd8448eb211c80319c";
    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .header("traceparent", format!("00-{second}-{CLIENT_SPAN}-01"))
        .json(&chat("no-such-model", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let spans = collector.trace(second).await;
    let server = the(&spans, SERVER, "POST /v1/chat/completions");
    assert_ne!(server.status, ERROR);
    assert_eq!(server.attr("error.type"), "404");
}

#[actix_web::test]
async fn shutdown_exports_the_spans_still_queued() {
    let upstream = Upstream::start().await;
    let collector = Collector::start(None);
    let mut opts = providers(Spawn::default(), &upstream).policy(
        "route.rhai",
        r#"fn on_request(req, ctx) { ctx.route(["up/m"]); }"#,
    );
    let mut settings = otlp(&collector.endpoint);
    // No batch would leave for a minute: only the shutdown sends it.
    settings.batch_delay = Duration::from_secs(60);
    opts.otlp = Some(settings);
    let app = spawn(opts).await;
    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&chat("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        collector.spans().is_empty(),
        "nothing sent before the shutdown"
    );
    app.stop().await;
    let spans = collector.trace(CLIENT_TRACE).await;
    assert_eq!(spans.len(), 3, "{spans:?}");
}

#[actix_web::test]
async fn a_stream_span_ends_with_the_stream_and_the_pace_is_measured() {
    let upstream = Upstream::start().await;
    let collector = Collector::start(None);
    let mut opts = providers(Spawn::default(), &upstream).policy(
        "route.rhai",
        r#"fn on_request(req, ctx) { ctx.route(["up/s"]); }"#,
    );
    opts.otlp = Some(otlp(&collector.endpoint));
    let app = spawn(opts).await;

    // No traceparent: the gateway starts the trace (ratio 1).
    let res = app.chat(ADMIN_KEY, chat("s", true)).await;
    assert_eq!(res.status(), 200);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let payloads = sse_payloads(res).await;
    assert!(payloads.len() >= 4);

    let entry = log_entry(&app, &request_id).await;
    let trace_id = entry["trace_id"]
        .as_str()
        .expect("the log has the trace id");
    assert_eq!(trace_id.len(), 32);
    let spans = collector.trace(trace_id).await;
    let server = the(&spans, SERVER, "POST /v1/chat/completions");
    assert_eq!(server.parent, "", "a root span");
    assert_eq!(server.attr("gen_ai.usage.input_tokens"), 5);
    assert_eq!(server.attr("gen_ai.usage.output_tokens"), 3);
    assert_eq!(
        server.attr("gen_ai.response.finish_reasons"),
        &json!(["stop"])
    );
    assert_eq!(server.attr("gen_ai.response.model"), "stream");
    assert_eq!(server.attr("http.response.status_code"), 200);
    // Without a policy that caches, there is no cache span and no cache attribute.
    assert!(!spans.iter().any(|s| s.name == "cache lookup"));
    assert!(!server.attributes.contains_key("switchboard.cache"));
    let (trace, parent, _) = parts(&upstream.last().headers["traceparent"]);
    assert_eq!(trace, trace_id);
    assert_eq!(parent, the(&spans, CLIENT, "chat stream").span_id);

    let metrics = admin_text(&app, "/metrics").await;
    assert!(
        metrics.contains(
            r#"switchboard_time_to_first_token_seconds_count{provider="up",model="s"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics
        .contains(r#"switchboard_time_per_output_token_seconds_count{provider="up",model="s"} 1"#));
}

#[actix_web::test]
async fn sampling_ratio_zero_exports_nothing_changes_at_run_time_and_a_sampled_client_is_followed()
{
    let upstream = Upstream::start().await;
    let collector = Collector::start(None);
    let mut opts = providers(Spawn::default(), &upstream).policy(
        "route.rhai",
        r#"fn on_request(req, ctx) { ctx.route(["up/m"]); }"#,
    );
    let mut settings = otlp(&collector.endpoint);
    settings.sampling_ratio = 0.0;
    opts.otlp = Some(settings);
    let app = spawn(opts).await;

    for _ in 0..3 {
        let res = app.chat(ADMIN_KEY, chat("m", false)).await;
        assert_eq!(res.status(), 200);
        let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
        // Not traced: no trace id to look for.
        assert!(log_entry(&app, &request_id).await.get("trace_id").is_none());
        // The upstream still gets a context, marked not sampled, as W3C asks.
        let (_, _, flags) = parts(&upstream.last().headers["traceparent"]);
        assert_eq!(flags, "00");
    }
    // The ratio changes while the gateway runs: from the next request on.
    app.trace_sampling.set_sampling_ratio(1.0).unwrap();
    let res = app.chat(ADMIN_KEY, chat("m", false)).await;
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let trace_id = log_entry(&app, &request_id).await["trace_id"]
        .as_str()
        .expect("traced now")
        .to_string();
    collector.trace(&trace_id).await;
    app.trace_sampling.set_sampling_ratio(0.0).unwrap();
    collector.shared.spans.lock().unwrap().clear();

    // A client that samples decides for its trace, whatever the ratio.
    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&chat("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let spans = collector.trace(CLIENT_TRACE).await;
    assert!(spans.iter().all(|s| s.trace_id == CLIENT_TRACE));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = collector.spans();
    assert!(
        all.iter().all(|s| s.trace_id == CLIENT_TRACE),
        "only the client's trace was exported: {all:?}"
    );
}

#[actix_web::test]
async fn tracing_off_passes_the_clients_trace_headers_upstream_unchanged() {
    let upstream = Upstream::start().await;
    let opts = providers(Spawn::default(), &upstream).policy(
        "route.rhai",
        r#"fn on_request(req, ctx) { ctx.route(["up/m"]); }"#,
    );
    let app = spawn(opts).await;
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .header("traceparent", &traceparent)
        .header("tracestate", "vendor=abc")
        .json(&chat("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let call = upstream.last();
    assert_eq!(call.headers["traceparent"], traceparent);
    assert_eq!(call.headers["tracestate"], "vendor=abc");
    assert_eq!(log_entry(&app, &request_id).await["trace_id"], CLIENT_TRACE);

    // A malformed one is not passed on, and no trace header is invented.
    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .header("traceparent", "00-not-a-trace-01")
        .header("tracestate", "vendor=abc")
        .json(&chat("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let call = upstream.last();
    assert!(!call.headers.contains_key("traceparent"));
    assert!(!call.headers.contains_key("tracestate"));
}

/// A closed port: nothing listens there.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

async fn dropped_spans(app: &TestApp) -> u64 {
    let metrics = admin_text(app, "/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_otel_spans_dropped_total "))
        .expect("the dropped-spans counter")
        .parse()
        .unwrap()
}

async fn wait_for_drops(app: &TestApp) -> u64 {
    let started = Instant::now();
    loop {
        let dropped = dropped_spans(app).await;
        if dropped > 0 {
            return dropped;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no dropped span was counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests with tracing on and a collector that does not take spans: every one answers at
/// once (the export is off the request path).
async fn requests_stay_fast(app: &TestApp, n: usize) {
    for _ in 0..n {
        let started = Instant::now();
        let res = app.chat(ADMIN_KEY, chat("m", false)).await;
        assert_eq!(res.status(), 200);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a request took {:?}",
            started.elapsed()
        );
    }
}

#[actix_web::test]
async fn a_collector_that_is_down_costs_requests_nothing_and_its_spans_are_counted() {
    let upstream = Upstream::start().await;
    let mut opts = providers(Spawn::default(), &upstream).policy(
        "route.rhai",
        r#"fn on_request(req, ctx) { ctx.route(["up/m"]); }"#,
    );
    opts.otlp = Some(otlp(&closed_port()));
    let app = spawn(opts).await;
    assert_eq!(dropped_spans(&app).await, 0);
    requests_stay_fast(&app, 5).await;
    // The failed batches' spans: 5 requests of 3 spans each, once exported and refused.
    let started = Instant::now();
    while dropped_spans(&app).await < 15 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            dropped_spans(&app).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dropped_spans(&app).await, 15);
}

#[actix_web::test]
async fn a_stalled_collector_costs_requests_nothing_and_a_full_queue_drops_and_counts() {
    let upstream = Upstream::start().await;
    let collector = Collector::start(Some(Duration::from_secs(30)));
    let mut opts = providers(Spawn::default(), &upstream).policy(
        "route.rhai",
        r#"fn on_request(req, ctx) { ctx.route(["up/m"]); }"#,
    );
    let mut settings = otlp(&collector.endpoint);
    settings.max_queue = 4;
    settings.export_timeout = Duration::from_secs(30);
    opts.otlp = Some(settings);
    let app = spawn(opts).await;
    requests_stay_fast(&app, 6).await;
    // 18 spans for a queue of 4 held by an export that does not return.
    assert!(wait_for_drops(&app).await >= 10);
    assert!(collector.spans().is_empty());
}

#[actix_web::test]
async fn a_bad_sampling_ratio_or_endpoint_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = switchboard::Settings::with_base(dir.path());
    write_providers(&settings.providers_dir, &[]);
    std::fs::create_dir_all(&settings.policies_dir).unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    let mut otlp = OtlpSettings::new("http://127.0.0.1:4318");
    otlp.sampling_ratio = 1.5;
    otlp.headers = vec![("x-api-key".into(), "hunter2-secret".into())];
    settings.otlp = Some(otlp.clone());
    let Err(e) = switchboard::Application::build(settings.clone()).await else {
        panic!("a ratio of 1.5 must not start");
    };
    assert_eq!(
        e.to_string(),
        "--otlp-sampling-ratio: the trace sampling ratio must be between 0 and 1, not 1.5"
    );
    otlp.sampling_ratio = 0.5;
    otlp.endpoint = "collector:4318".into();
    settings.otlp = Some(otlp.clone());
    let Err(e) = switchboard::Application::build(settings.clone()).await else {
        panic!("an endpoint that is no URL must not start");
    };
    assert!(e.to_string().starts_with("--otlp-endpoint"), "{e}");
    // The header's value is a secret: not in Debug; nor a password in the endpoint.
    assert!(!format!("{settings:?}").contains("hunter2-secret"));
    assert!(format!("{settings:?}").contains("x-api-key"));
    otlp.endpoint = "https://user:pw-secret@collector.example.com:4318".into();
    assert_eq!(
        otlp.display_endpoint(),
        "https://collector.example.com:4318/"
    );
    assert!(!format!("{otlp:?}").contains("pw-secret"));
}

/// `switchboard serve` with `args`: its exit status and stderr (it stops before binding).
fn serve_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::cli::bin();
    cmd.current_dir(dir.path())
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"]);
    cmd.args(args);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{args:?} must not start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_command_line_checks_the_otlp_flags_and_never_shows_a_header_value() {
    let err = serve_fails(&["--otlp-sampling-ratio", "1.5"], &[]);
    assert!(
        err.contains("the trace sampling ratio must be between 0 and 1, not 1.5"),
        "{err}"
    );
    let err = serve_fails(
        &[
            "--otlp-endpoint",
            "http://127.0.0.1:4318",
            "--otlp-header",
            "bad header=hunter2-secret",
        ],
        &[],
    );
    assert!(
        err.contains("`bad header` is not a valid header name"),
        "{err}"
    );
    assert!(!err.contains("hunter2-secret"), "{err}");
    let err = serve_fails(
        &["--otlp-endpoint", "http://127.0.0.1:4318"],
        &[("SWITCHBOARD_OTLP_HEADERS", "x-api-key=ok,hunter2-secret")],
    );
    assert!(err.contains("--otlp-header must be NAME=VALUE"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
}
