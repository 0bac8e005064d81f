//! Resilience end to end: retries and their bounds, fallback (streams too, until the first
//! byte), first-byte and idle timeouts, circuit breakers, health checks, balancing.

use crate::helpers::*;
use crate::upstream::Upstream;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MOCK: &str = "kind: mock\nmodels: [echo]\n";

/// A provider on `upstream` serving `models` (name: upstream id), with extra YAML lines.
fn provider(upstream: &Upstream, models: &[(&str, &str)], extra: &str) -> String {
    let mut yaml = format!(
        "kind: openai\nbase_url: {}\napi_key: sk-upstream-secret\n{extra}\nmodels:\n",
        upstream.base_url
    );
    for (name, id) in models {
        yaml.push_str(&format!("  - name: {name}\n    upstream: {id}\n"));
    }
    yaml
}

/// Fast retries so the suite stays quick.
const FAST_RETRY: &str = "retry: { max_attempts: 3, base_delay_ms: 10, max_delay_ms: 40 }";

fn route(targets: &str) -> String {
    format!("fn on_request(req, ctx) {{ ctx.route({targets}); }}")
}

fn hi(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "a b c"}]})
}

fn hi_stream(model: &str) -> Value {
    json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "a b c"}]})
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()[name].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_failing_primary_falls_back_to_a_healthy_target_after_bounded_retries() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider(
                "up",
                provider(&upstream, &[("bad", "status-503")], FAST_RETRY),
            )
            .provider("mock", MOCK)
            .policy("r.rhai", route(r#"["up/bad", "mock/echo"]"#)),
    )
    .await;
    let started = Instant::now();
    let res = app.chat(ADMIN_KEY, hi("x")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-switchboard-provider"), "mock");
    assert_eq!(header(&res, "x-switchboard-attempts"), "4");
    assert_eq!(
        upstream.calls("status-503"),
        3,
        "max_attempts bounds the tries"
    );
    assert!(started.elapsed() < Duration::from_millis(800));

    // Every attempt is in the request log: target, outcome, latency, what happened next.
    let log = loop {
        let page: Value = app
            .get("/admin/logs", ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(entry) = page["data"].as_array().and_then(|d| d.first()).cloned() {
            break entry;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the request was never logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(log["attempts"], 4);
    let tries = log["attempt_log"].as_array().unwrap();
    assert_eq!(tries.len(), 4);
    assert_eq!(tries[0]["target"], "up/bad");
    assert_eq!(tries[0]["then"], "retried");
    assert_eq!(tries[2]["then"], "next_target");
    assert_eq!(tries[3]["target"], "mock/echo");
    assert_eq!(tries[3]["then"], "served");
    assert!(tries[0]["latency_ms"].is_number());

    // The provider fallen back from shows its three failed calls, in the admin API and in
    // the metrics; the one that served shows its one call.
    let up = admin_provider(&app, "up").await["stats"].clone();
    let mock = admin_provider(&app, "mock").await["stats"].clone();
    assert_eq!(up["requests"], 3);
    assert_eq!(up["errors"], 3);
    assert_eq!(up["error_rate"], 1.0);
    assert_eq!(mock["requests"], 1);
    assert_eq!(mock["errors"], 0);
    let metrics = admin_text(&app, "/metrics").await;
    for line in [
        r#"switchboard_upstream_requests_total{provider="up",model="bad"} 3"#,
        r#"switchboard_upstream_errors_total{provider="up",model="bad"} 3"#,
        r#"switchboard_upstream_requests_total{provider="mock",model="echo"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn retries_stop_at_the_limit_and_recover_a_flaky_upstream() {
    let upstream = Upstream::start().await;
    let app = spawn(Spawn::default().provider(
        "up",
        provider(
            &upstream,
            &[
                ("bad", "status-503"),
                ("flaky", "fail-twice"),
                ("busy", "status-429"),
                ("limited", "rate-limited-once"),
                ("nope", "status-400"),
            ],
            // Retries alone: `bad` and `flaky` fail five times in a row, which would open the
            // breaker (on by default) before `flaky`'s third try.
            &format!("{FAST_RETRY}\nbreaker: {{ enabled: false }}"),
        ),
    ))
    .await;
    // Always failing: exactly max_attempts calls, then the upstream's error.
    let started = Instant::now();
    let body = assert_error(app.chat(ADMIN_KEY, hi("bad")).await, 503).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("after 3 attempts"),
        "{body}"
    );
    assert_eq!(upstream.calls("status-503"), 3);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "backoff is bounded"
    );

    // Failing twice, then fine: served on the third try.
    let res = app.chat(ADMIN_KEY, hi("flaky")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-switchboard-attempts"), "3");

    // A 429 whose retry-after is short enough is waited for and retried.
    let res = app.chat(ADMIN_KEY, hi("limited")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(upstream.calls("rate-limited-once"), 2);

    // One that asks for longer than the cap (7 s > 5 s) is not retried at all.
    let started = Instant::now();
    let res = app.chat(ADMIN_KEY, hi("busy")).await;
    assert_eq!(res.headers()["retry-after"], "7");
    assert_error(res, 429).await;
    assert_eq!(upstream.calls("status-429"), 1);
    assert!(started.elapsed() < Duration::from_secs(1));

    // A 400 is the request's fault: never retried.
    assert_error(app.chat(ADMIN_KEY, hi("nope")).await, 400).await;
    assert_eq!(upstream.calls("status-400"), 1);
}

#[tokio::test]
async fn a_closed_port_falls_back() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = spawn(
        Spawn::default()
            .provider(
                "gone",
                format!("kind: openai\nbase_url: http://{closed}/v1\n{FAST_RETRY}\nmodels: [m]\n"),
            )
            .provider("mock", MOCK)
            .policy("r.rhai", route(r#"["gone/m", "mock/echo"]"#)),
    )
    .await;
    let res = app.chat(ADMIN_KEY, hi("x")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-switchboard-provider"), "mock");
    assert_eq!(header(&res, "x-switchboard-attempts"), "4");
}

#[tokio::test]
async fn a_first_byte_timeout_is_a_504_or_falls_back() {
    let upstream = Upstream::start().await;
    let extra = "timeouts: { first_byte_secs: 0.2 }\nretry: { max_attempts: 1 }";
    let app = spawn(
        Spawn::default()
            .provider("up", provider(&upstream, &[("stall", "stall"), ("stall2", "stall")], extra))
            .provider("mock", MOCK)
            .policy(
                "r.rhai",
                r#"fn on_request(req, ctx) { if req.model == "fallback" { ctx.route(["up/stall", "mock/echo"]); } }"#,
            ),
    )
    .await;
    let started = Instant::now();
    let body = assert_error(app.chat(ADMIN_KEY, hi("stall")).await, 504).await;
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "gave up at 0.2 s, not 2 s"
    );

    let started = Instant::now();
    let res = app.chat(ADMIN_KEY, hi("fallback")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-switchboard-provider"), "mock");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn a_policy_can_set_the_first_byte_timeout_per_route() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider(
                "up",
                provider(
                    &upstream,
                    &[("stall", "stall")],
                    "retry: { max_attempts: 1 }",
                ),
            )
            .policy("t.rhai", "fn on_request(req, ctx) { ctx.timeout(0.2); }"),
    )
    .await;
    let started = Instant::now();
    assert_error(app.chat(ADMIN_KEY, hi("stall")).await, 504).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_byte_fails_over() {
    let upstream = Upstream::start().await;
    let extra = "timeouts: { first_byte_secs: 0.2 }\nretry: { max_attempts: 1 }";
    let app = spawn(
        Spawn::default()
            .provider(
                "up",
                provider(
                    &upstream,
                    &[("empty", "stream-empty"), ("stall", "stream-stall")],
                    extra,
                ),
            )
            .provider("mock", MOCK)
            .policy(
                "r.rhai",
                r#"fn on_request(req, ctx) { ctx.route(["up/" + req.model, "mock/echo"]); }"#,
            ),
    )
    .await;
    for model in ["empty", "stall"] {
        let started = Instant::now();
        let res = app.chat(ADMIN_KEY, hi_stream(model)).await;
        assert_eq!(res.status(), 200, "{model}");
        assert_eq!(header(&res, "x-switchboard-provider"), "mock", "{model}");
        assert_eq!(header(&res, "x-switchboard-attempts"), "2", "{model}");
        let payloads = sse_payloads(res).await;
        assert_eq!(
            payloads.last().map(String::as_str),
            Some("[DONE]"),
            "{model}"
        );
        assert!(
            !payloads.iter().any(|p| p.contains("\"error\"")),
            "{model}: {payloads:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(1500), "{model}");
    }
}

#[tokio::test]
async fn after_the_first_byte_a_broken_stream_ends_with_an_error_event() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider(
                "up",
                provider(
                    &upstream,
                    &[("cut", "cut"), ("pause", "stream-pause")],
                    FAST_RETRY,
                ),
            )
            .provider("mock", MOCK)
            .policy(
                "r.rhai",
                r#"fn on_request(req, ctx) {
                    ctx.route(["up/" + req.model, "mock/echo"]);
                    ctx.timeouts(#{ idle: 0.2 });
                }"#,
            ),
    )
    .await;
    for (model, says) in [("cut", "before [DONE]"), ("pause", "went silent")] {
        let started = Instant::now();
        let res = app.chat(ADMIN_KEY, hi_stream(model)).await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(&res, "x-switchboard-provider"),
            "up",
            "no failover after the first byte"
        );
        let payloads = sse_payloads(res).await;
        assert!(!payloads.iter().any(|p| p == "[DONE]"), "{payloads:?}");
        let last: Value = serde_json::from_str(payloads.last().unwrap()).unwrap();
        assert!(
            last["error"]["message"].as_str().unwrap().contains(says),
            "{last}"
        );
        assert!(started.elapsed() < Duration::from_millis(1500), "{model}");
    }
    assert_eq!(
        upstream.calls("cut"),
        1,
        "a stream that started is not retried"
    );
}

#[tokio::test]
async fn the_breaker_opens_skips_the_provider_and_closes_after_recovery() {
    let upstream = Upstream::start().await;
    let extra =
        "retry: { max_attempts: 1 }\nbreaker: { consecutive_failures: 2, cool_down_secs: 0.5 }";
    let app = spawn(
        Spawn::default()
            .provider("up", provider(&upstream, &[("m", "switch")], extra))
            .provider("mock", MOCK)
            .policy("r.rhai", route(r#"["up/m", "mock/echo"]"#)),
    )
    .await;
    upstream.set_down(true);
    for _ in 0..2 {
        let res = app.chat(ADMIN_KEY, hi("x")).await;
        assert_eq!(header(&res, "x-switchboard-provider"), "mock");
    }
    assert_eq!(upstream.calls("switch"), 2);
    // Open: the failing upstream is no longer called; the fallback serves at once.
    for _ in 0..3 {
        let res = app.chat(ADMIN_KEY, hi("x")).await;
        assert_eq!(header(&res, "x-switchboard-provider"), "mock");
        assert_eq!(header(&res, "x-switchboard-attempts"), "1");
    }
    assert_eq!(upstream.calls("switch"), 2, "skipped while open");
    let status = admin_json(&app, "/admin/status").await;
    assert_eq!(status["providers"]["open_breaker"], json!(["up"]));
    assert_eq!(status["providers"]["serving"], json!(["mock"]));
    // A reload keeps what was learnt: still open, still skipped.
    let res = app.post("/admin/reload", ADMIN_KEY).send().await.unwrap();
    assert!(res.status().is_success());
    let res = app.chat(ADMIN_KEY, hi("x")).await;
    assert_eq!(header(&res, "x-switchboard-provider"), "mock");
    assert_eq!(
        upstream.calls("switch"),
        2,
        "the breaker survived the reload"
    );
    let ready: Value = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let up = ready["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "up")
        .unwrap()
        .clone();
    assert_ne!(up["breaker"], "closed", "{ready}");

    // Recovered: after the cool-down one probe goes through, succeeds, and closes it.
    upstream.set_down(false);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let res = app.chat(ADMIN_KEY, hi("x")).await;
        if header(&res, "x-switchboard-provider") == "up" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the breaker never let a probe through"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for _ in 0..3 {
        let res = app.chat(ADMIN_KEY, hi("x")).await;
        assert_eq!(header(&res, "x-switchboard-provider"), "up");
    }
}

#[tokio::test]
async fn with_every_breaker_open_the_error_is_fast_and_clear() {
    let upstream = Upstream::start().await;
    let extra =
        "retry: { max_attempts: 1 }\nbreaker: { consecutive_failures: 1, cool_down_secs: 60 }";
    let app =
        spawn(Spawn::default().provider("up", provider(&upstream, &[("m", "status-503")], extra)))
            .await;
    assert_error(app.chat(ADMIN_KEY, hi("m")).await, 503).await;
    let res = app.chat(ADMIN_KEY, hi("m")).await;
    assert!(res.headers().contains_key("retry-after"));
    let body = assert_error(res, 503).await;
    assert_eq!(body["error"]["code"], "circuit_open");
    assert_eq!(upstream.calls("status-503"), 1);
    // Nothing can serve: not ready.
    let res = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
}

#[tokio::test]
async fn failing_health_checks_open_the_breaker_without_traffic() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider(
                "gone",
                format!("kind: openai\nbase_url: http://{closed}/v1\nhealth_check: {{ interval_secs: 0.05 }}\nbreaker: {{ consecutive_failures: 2 }}\nmodels: [m]\n"),
            )
            .provider("up", provider(&upstream, &[("m", "plain")], "health_check: { interval_secs: 0.05, path: models }")),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let ready: Value = app
            .client
            .get(app.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let state = |name: &str| {
            ready["providers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap()["breaker"]
                .clone()
        };
        if state("gone") == "open" {
            assert_eq!(state("up"), "closed");
            assert_eq!(ready["status"], "ready", "one provider can still serve");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health checks never opened the breaker: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        upstream.received().iter().any(|r| r.path == "/v1/models"),
        "probed at base_url/models"
    );
}

async fn providers_served(app: &TestApp, n: usize) -> Vec<String> {
    let mut served = Vec::with_capacity(n);
    for _ in 0..n {
        let res = app.chat(ADMIN_KEY, hi("x")).await;
        assert_eq!(res.status(), 200);
        served.push(header(&res, "x-switchboard-provider"));
    }
    served
}

#[tokio::test]
async fn weighted_balancing_splits_by_provider_weight_and_by_policy_weight() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("a", provider(&upstream, &[("m", "plain")], "weight: 3"))
            .provider("b", provider(&upstream, &[("m", "plain")], "weight: 1"))
            .policy(
                "r.rhai",
                r#"fn on_request(req, ctx) {
                    if req.model == "flip" { ctx.route_balanced(#{"a/m": 1, "b/m": 3}, "weighted"); }
                    else { ctx.route_balanced(["a/m", "b/m"], "weighted"); }
                }"#,
            ),
    )
    .await;
    let served = providers_served(&app, 40).await;
    let a = served.iter().filter(|p| *p == "a").count();
    assert!((27..=33).contains(&a), "about 3 in 4 to a, got {a} of 40");

    let mut b = 0;
    for _ in 0..20 {
        let res = app.chat(ADMIN_KEY, hi("flip")).await;
        if header(&res, "x-switchboard-provider") == "b" {
            b += 1;
        }
    }
    assert!((13..=17).contains(&b), "about 3 in 4 to b, got {b} of 20");
}

#[tokio::test]
async fn round_robin_alternates_and_latency_prefers_the_faster_upstream() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("fast", provider(&upstream, &[("m", "plain")], ""))
            .provider("slow", provider(&upstream, &[("m", "delay-50")], ""))
            .policy(
                "r.rhai",
                r#"fn on_request(req, ctx) {
                    if req.model == "rr" { ctx.route_balanced(["slow/m", "fast/m"], "round_robin"); }
                    else { ctx.route_balanced(["slow/m", "fast/m"], "latency", ["fast/m"]); }
                }"#,
            ),
    )
    .await;
    let mut served = Vec::new();
    for _ in 0..4 {
        let res = app.chat(ADMIN_KEY, hi("rr")).await;
        served.push(header(&res, "x-switchboard-provider"));
    }
    assert_eq!(served, ["slow", "fast", "slow", "fast"]);

    let served = providers_served(&app, 12).await;
    let fast = served.iter().filter(|p| *p == "fast").count();
    assert!(fast >= 11, "the faster upstream is preferred: {served:?}");
}

#[tokio::test]
async fn bad_balancing_and_timeout_calls_are_script_errors() {
    let app = spawn(Spawn::default().provider("mock", MOCK).policy(
        "r.rhai",
        r#"fn on_request(req, ctx) {
                    if req.model == "a" { ctx.route_balanced(["mock/echo"], "random"); }
                    if req.model == "b" { ctx.timeout(0); }
                    if req.model == "c" { ctx.timeouts(#{ forever: 1 }); }
                }"#,
    ))
    .await;
    for (model, says) in [
        ("a", "unknown strategy"),
        ("b", "above 0"),
        ("c", "unknown key"),
    ] {
        let res = app.chat(ADMIN_KEY, hi(model)).await;
        let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = assert_error(res, 500).await;
        assert_eq!(body["error"]["code"], "policy_error");
        // What was wrong is for the operator: in the request log, not the client's error.
        let entry = log_entry(&app, &request_id).await;
        assert!(entry["error"].as_str().unwrap().contains(says), "{entry}");
    }
}

/// Where a redirected call would land: counts what reaches it.
#[derive(Default)]
struct Landed(std::sync::atomic::AtomicUsize);

async fn land(landed: actix_web::web::Data<Landed>) -> actix_web::HttpResponse {
    landed.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    actix_web::HttpResponse::Ok().body("{}")
}

async fn redirect(target: actix_web::web::Data<String>) -> actix_web::HttpResponse {
    actix_web::HttpResponse::TemporaryRedirect()
        .insert_header(("location", target.get_ref().clone()))
        .finish()
}

/// A provider that answers with a redirect is a failing provider: the gateway does not follow
/// it (the request and the provider's key would go wherever `Location` points), answers 502,
/// and the redirect's target never hears of the request.
#[actix_web::test]
async fn an_upstream_redirect_is_not_followed() {
    let landed = std::sync::Arc::new(Landed::default());
    let target = crate::helpers::mock_server(landed.clone(), land);
    let redirector = crate::helpers::mock_server(
        std::sync::Arc::new(format!("http://{}/v1/chat/completions", target.addr)),
        redirect,
    );
    let app = crate::helpers::spawn(crate::helpers::Spawn::default().provider(
        "moved",
        format!(
            "kind: openai\nbase_url: http://{}/v1\napi_key: sk-upstream-secret\nmodels: [gpt]\n",
            redirector.addr
        ),
    ))
    .await;
    let res = app
        .chat(
            crate::helpers::ADMIN_KEY,
            serde_json::json!({"model": "moved/gpt", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let body = crate::helpers::assert_error(res, 502).await;
    assert_eq!(body["error"]["code"], "bad_upstream_response", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("redirect"),
        "{body}"
    );
    assert!(!body.to_string().contains("sk-upstream-secret"));
    assert_eq!(
        landed.0.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}
