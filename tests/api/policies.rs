//! Policies end to end: routing and fallbacks, rewrites, cache, splits, quotas, safety.

use crate::helpers::*;
use crate::upstream::Upstream;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MOCK: &str = "kind: mock\nmodels: [echo]\n";

fn hi(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "a b c"}]})
}

fn calls(upstream: &Upstream, model: &str) -> usize {
    upstream
        .received()
        .iter()
        .filter(|r| r.body["model"] == model)
        .count()
}

#[tokio::test]
async fn routes_fall_back_past_failing_and_unknown_targets() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("up", upstream.provider_yaml(&[("broken", "status-500-text"), ("good", "plain")]))
            .provider("mock", MOCK)
            .policy("10-route.rhai", r#"
                fn on_request(req, ctx) {
                    if req.model == "smart" { ctx.route(["nowhere/none", "up/broken", "mock/echo"]); }
                    if req.model == "strict" { ctx.route(["up/good"]); }
                }"#),
    )
    .await;
    let res = app.chat(ADMIN_KEY, hi("smart")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-provider"], "mock");
    // The primary is tried first, and retried twice (the default) before the fallback serves.
    assert_eq!(res.headers()["x-switchboard-attempts"], "4");
    assert_eq!(
        calls(&upstream, "status-500-text"),
        3,
        "the primary was tried first"
    );

    let res = app.chat(ADMIN_KEY, hi("strict")).await;
    assert_eq!(res.headers()["x-switchboard-provider"], "up");
    assert_eq!(res.headers()["x-switchboard-model"], "good");
}

#[tokio::test]
async fn a_non_retryable_upstream_error_does_not_fall_back() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("up", upstream.provider_yaml(&[("bad", "status-400")]))
            .provider("mock", MOCK)
            .policy(
                "r.rhai",
                r#"fn on_request(req, ctx) { ctx.route(["up/bad", "mock/echo"]); }"#,
            ),
    )
    .await;
    let body = assert_error(app.chat(ADMIN_KEY, hi("anything")).await, 400).await;
    assert_eq!(body["error"]["message"], "bad temperature from upstream");
}

#[tokio::test]
async fn requests_are_rewritten_and_headers_sent_upstream() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("up", upstream.provider_yaml(&[("plain", "plain")]))
            .policy(
                "10-rewrite.rhai",
                r#"
                fn on_request(req, ctx) {
                    req.params.temperature = 0.2;
                    req.params.seed = 7;
                    req.model = "up/plain";
                    ctx.set_header("X-Team", "search");
                    ctx.tag("team", "search");
                }"#,
            )
            .policy(
                "20-sees-earlier.rhai",
                r#"
                fn on_request(req, ctx) {
                    // Later scripts see what earlier ones did.
                    if req.params.temperature == 0.2 && ctx.headers["x-team"] == "search" {
                        ctx.set_header("x-checked", "yes");
                    }
                }"#,
            ),
    )
    .await;
    let res = app
        .chat(ADMIN_KEY, json!({"model": "alias", "temperature": 1.5, "top_p": 0.9, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(res.status(), 200);
    let got = upstream.last();
    assert_eq!(got.body["model"], "plain");
    assert_eq!(got.body["temperature"], 0.2);
    assert_eq!(got.body["seed"], 7);
    assert_eq!(got.body["top_p"], 0.9, "untouched fields stay");
    assert_eq!(got.headers["x-team"], "search");
    assert_eq!(got.headers["x-checked"], "yes");
}

#[tokio::test]
async fn cache_serves_hits_without_upstream_as_json_and_as_sse() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider(
                "up",
                upstream.provider_yaml(&[("plain", "plain"), ("streamy", "stream")]),
            )
            .policy("cache.rhai", "fn on_request(req, ctx) { ctx.cache(60); }"),
    )
    .await;
    let req = hi("plain");
    let first = app.chat(ADMIN_KEY, req.clone()).await;
    assert_eq!(first.headers()["x-switchboard-cache"], "miss");
    let first_body = first.text().await.unwrap();
    cached_entries(&app, 1).await;
    let second = app.chat(ADMIN_KEY, req.clone()).await;
    assert_eq!(second.headers()["x-switchboard-cache"], "hit");
    assert_eq!(second.headers()["x-switchboard-provider"], "up");
    assert_eq!(
        second.text().await.unwrap(),
        first_body,
        "a hit replays the stored body"
    );
    assert_eq!(
        calls(&upstream, "plain"),
        1,
        "the hit did not reach upstream"
    );

    // The same request, streamed: replayed from the JSON entry as SSE.
    let mut streamed = req.clone();
    streamed["stream"] = json!(true);
    let res = app.chat(ADMIN_KEY, streamed).await;
    assert_eq!(res.headers()["x-switchboard-cache"], "hit");
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let payloads = sse_payloads(res).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let text: String = payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "from upstream");
    assert_eq!(calls(&upstream, "plain"), 1);

    // Cache-Control: no-cache skips the lookup and refreshes the entry.
    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .header("cache-control", "no-cache")
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-switchboard-cache"], "refresh");
    assert_eq!(calls(&upstream, "plain"), 2);
}

/// Polls until `req` is answered from the cache (the store happens after the reply).
async fn becomes_a_hit(app: &TestApp, req: &Value) -> bool {
    for _ in 0..50 {
        let res = app.chat(ADMIN_KEY, req.clone()).await;
        if res.headers()["x-switchboard-cache"] == "hit" {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn no_store_neither_reads_nor_writes_the_cache_and_no_cache_refreshes_it() {
    let app = spawn(
        Spawn::default()
            .provider("mock", MOCK)
            .policy("cache.rhai", "fn on_request(req, ctx) { ctx.cache(60); }"),
    )
    .await;
    let send = |req: Value, control: &'static str| {
        app.post("/v1/chat/completions", ADMIN_KEY)
            .header("cache-control", control)
            .json(&req)
            .send()
    };

    // `no-store` (also among other directives, in any case) leaves nothing behind.
    let private = hi("echo-private");
    let private = json!({"model": "echo", "messages": private["messages"], "seed": 1});
    for control in ["no-store", "max-age=0, No-Store"] {
        let res = send(private.clone(), control).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-switchboard-cache"], "bypass");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = app.chat(ADMIN_KEY, private.clone()).await;
    assert_eq!(
        res.headers()["x-switchboard-cache"],
        "miss",
        "a no-store reply was not stored"
    );

    // A cached entry is not read under `no-store` either.
    assert!(becomes_a_hit(&app, &private).await);
    let res = send(private.clone(), "no-store").await.unwrap();
    assert_eq!(res.headers()["x-switchboard-cache"], "bypass");

    // `no-cache` skips the read but stores the fresh reply.
    let fresh =
        json!({"model": "echo", "messages": [{"role": "user", "content": "fresh"}], "seed": 2});
    let res = send(fresh.clone(), "no-cache").await.unwrap();
    assert_eq!(res.headers()["x-switchboard-cache"], "refresh");
    assert!(
        becomes_a_hit(&app, &fresh).await,
        "the no-cache reply was stored"
    );
}

#[tokio::test]
async fn routing_never_reaches_a_model_the_key_may_not_use() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("up", upstream.provider_yaml(&[("premium", "plain"), ("flaky", "status-503")]))
            .provider("mock", MOCK)
            .policy("10-route.rhai", r#"
                fn on_request(req, ctx) {
                    if req.model == "fallback" { ctx.route(["mock/echo", "up/premium"]); }
                    if req.model == "primary" { ctx.route(["up/premium", "mock/echo"]); }
                    if req.model == "flaky" { ctx.route(["up/flaky", "mock/echo"]); }
                    if req.model == "pool" { ctx.route_balanced(["up/premium", "mock/echo"], "round_robin"); }
                    if req.model == "split" { ctx.route(["up/premium"]); }
                }"#),
    )
    .await;
    let (_, echo_only) = app
        .create_key(json!({"name": "echo-only", "models": ["mock/echo"]}))
        .await;
    let (_, flaky_only) = app
        .create_key(json!({"name": "flaky-only", "models": ["up/flaky"]}))
        .await;

    // A forbidden primary is skipped, recorded, and never called.
    let res = app.chat(&echo_only, hi("primary")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-provider"], "mock");
    assert_eq!(res.headers()["x-switchboard-attempts"], "1");
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let entry = log_entry(&app, &request_id).await;
    let outcomes: Vec<&str> = entry["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["not_allowed", "ok"]);

    // Balanced pool members the key may not use are never chosen.
    for _ in 0..4 {
        let res = app.chat(&echo_only, hi("pool")).await;
        assert_eq!(res.headers()["x-switchboard-provider"], "mock");
    }

    // A failing allowed target does not fall back to a forbidden one.
    let res = app.chat(&flaky_only, hi("flaky")).await;
    assert_eq!(res.headers()["x-switchboard-attempts"], "3");
    assert_error(res, 503).await;

    // Nothing allowed at all: 403, nothing called.
    let body = assert_error(app.chat(&echo_only, hi("split")).await, 403).await;
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert_eq!(
        calls(&upstream, "plain"),
        0,
        "no forbidden target was called"
    );

    // The admin key (no allow-list) still falls back as routed.
    let res = app.chat(ADMIN_KEY, hi("flaky")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-provider"], "mock");
}

#[tokio::test]
async fn a_streamed_miss_is_stored_and_replayed() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("up", upstream.provider_yaml(&[("streamy", "stream")]))
            .policy("cache.rhai", "fn on_request(req, ctx) { ctx.cache(60); }"),
    )
    .await;
    let req =
        json!({"model": "streamy", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let miss = sse_payloads(app.chat(ADMIN_KEY, req.clone()).await).await;
    // The store happens when the stream ends; poll for the hit rather than sleeping.
    let mut hit = None;
    for _ in 0..100 {
        let res = app.chat(ADMIN_KEY, req.clone()).await;
        if res.headers()["x-switchboard-cache"] == "hit" {
            hit = Some(sse_payloads(res).await);
            break;
        }
        let _ = res.text().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hit = hit.expect("the streamed reply was cached");
    assert_eq!(
        hit, miss,
        "the replay is the same events, usage chunk still withheld"
    );
    let upstream_calls = calls(&upstream, "stream");

    // A plain client gets the stream assembled into one JSON reply, usage included.
    let mut plain = req.clone();
    plain["stream"] = json!(false);
    let res = app.chat(ADMIN_KEY, plain).await;
    assert_eq!(res.headers()["x-switchboard-cache"], "hit");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "one two three");
    assert_eq!(body["usage"]["total_tokens"], 8);
    assert_eq!(calls(&upstream, "stream"), upstream_calls);
}

const SPLIT: &str = r#"
fn on_request(req, ctx) {
    let v = ctx.split("exp", WEIGHTS);
    ctx.set_header("x-exposures", "" + ctx.count("exposures:exp:" + v, 0));
}"#;

#[tokio::test]
async fn splits_are_sticky_across_restarts_and_weight_changes() {
    let data = tempfile::tempdir().unwrap();
    let start = |weights: &str| {
        spawn(
            Spawn::default()
                .provider("mock", MOCK)
                .policy("split.rhai", SPLIT.replace("WEIGHTS", weights))
                .data(data.path()),
        )
    };
    let app = start("#{ a: 50, b: 50 }").await;
    // Keys until both variants have been drawn (each draw is 50/50; 64 keys bound the loop).
    let mut keys: Vec<(String, String)> = Vec::new();
    for i in 0..64 {
        let (_, secret) = app.create_key(json!({"name": format!("k{i}")})).await;
        let res = app.chat(&secret, hi("echo")).await;
        let variant = res.headers()["x-switchboard-variant"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(variant == "exp=a" || variant == "exp=b", "{variant}");
        // The same key again: the same variant.
        let again = app.chat(&secret, hi("echo")).await;
        assert_eq!(again.headers()["x-switchboard-variant"], variant.as_str());
        keys.push((secret, variant));
        let both = keys.iter().any(|(_, v)| v == "exp=a") && keys.iter().any(|(_, v)| v == "exp=b");
        if both && keys.len() >= 4 {
            break;
        }
    }
    assert!(
        keys.iter().any(|(_, v)| v == "exp=a") && keys.iter().any(|(_, v)| v == "exp=b"),
        "both variants drawn: {keys:?}"
    );
    app.stop().await;
    wait_until_store_free(data.path()).await;

    // New weights after a restart: nobody moves.
    let app = start("#{ a: 1, b: 99 }").await;
    for (secret, variant) in &keys {
        let res = app.chat(secret, hi("echo")).await;
        assert_eq!(res.headers()["x-switchboard-variant"], variant.as_str());
    }
    app.stop().await;
    wait_until_store_free(data.path()).await;

    // A removed variant: its keys are reassigned, and stay put after that.
    let app = start("#{ b: 1, c: 1 }").await;
    for (secret, variant) in &keys {
        let res = app.chat(secret, hi("echo")).await;
        let now = res.headers()["x-switchboard-variant"]
            .to_str()
            .unwrap()
            .to_string();
        if variant == "exp=b" {
            assert_eq!(now, "exp=b");
        } else {
            assert!(now == "exp=b" || now == "exp=c", "{now}");
        }
    }
}

#[tokio::test]
async fn exposures_are_counted_per_variant() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("up", upstream.provider_yaml(&[("plain", "plain")]))
            .policy("split.rhai", SPLIT.replace("WEIGHTS", "#{ only: 1 }")),
    )
    .await;
    for expected in 1..=3 {
        app.chat(ADMIN_KEY, hi("plain")).await;
        assert_eq!(upstream.last().headers["x-exposures"], expected.to_string());
    }
}

#[tokio::test]
async fn a_limit_of_n_admits_exactly_n_under_concurrency_and_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let start = || {
        spawn(
            Spawn::default()
                .provider("mock", MOCK)
                .policy(
                    "limit.rhai",
                    r#"fn on_request(req, ctx) { ctx.limit("rpm:" + req.key.id, 5, 3600); }"#,
                )
                .data(data.path()),
        )
    };
    let app = start().await;
    clear_of_a_window_turn(3600).await;
    let requests = (0..20).map(|_| app.chat(ADMIN_KEY, hi("echo")));
    let responses = futures_util::future::join_all(requests).await;
    let ok = responses.iter().filter(|r| r.status() == 200).count();
    assert_eq!(ok, 5, "exactly the limit is admitted");
    let refused = responses.into_iter().find(|r| r.status() == 429).unwrap();
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry));
    let body = assert_error(refused, 429).await;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    app.stop().await;
    wait_until_store_free(data.path()).await;

    let app = start().await;
    assert_error(app.chat(ADMIN_KEY, hi("echo")).await, 429).await;
}

#[tokio::test]
async fn token_budgets_settle_from_real_usage_streams_included() {
    let app = spawn(Spawn::default().provider("mock", MOCK).policy(
        "tokens.rhai",
        r#"fn on_request(req, ctx) { ctx.token_limit("day", 20, 86400); }"#,
    ))
    .await;
    // Each request reserves its estimate: "a b c" is 2 tokens + 4 for the message, and
    // max_tokens 3: 9 tokens. The mock uses 3 prompt + 3 completion = 6.
    let hi = |model: &str| {
        let mut body = hi(model);
        body["max_tokens"] = json!(3);
        body
    };
    // Streamed, without asking for usage: settled from the usage chunk all the same.
    let mut streamed = hi("echo");
    streamed["stream"] = json!(true);
    let payloads = sse_payloads(app.chat(ADMIN_KEY, streamed).await).await;
    assert!(
        !payloads.iter().any(|p| p.contains("total_tokens")),
        "usage chunk withheld"
    );
    // 6 used + 9 reserved <= 20: admitted; it brings the total to 12.
    assert_eq!(app.chat(ADMIN_KEY, hi("echo")).await.status(), 200);
    // 12 + 9 > 20: refused (had the stream been charged nothing, 6 + 9 would fit).
    let body = assert_error(app.chat(ADMIN_KEY, hi("echo")).await, 429).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("token budget `day` of 20 per day: 12 used or reserved, 8 remaining, this request needs about 9"), "{message}");
}

#[tokio::test]
async fn on_response_sees_the_reply_and_can_count() {
    let app = spawn(Spawn::default().provider("mock", MOCK).policy(
        "seen.rhai",
        r#"
        fn on_request(req, ctx) {
            let seen = ctx.count("seen", 3600);
            if seen >= 6 { ctx.reject(429, "seen " + seen); }
        }
        fn on_response(res, ctx) {
            if res.status == 200 && res.provider == "mock" && !res.cached {
                ctx.incr("seen", 3600, res.usage.total_tokens);
            }
        }"#,
    ))
    .await;
    let first = app.chat(ADMIN_KEY, hi("echo")).await;
    assert_eq!(first.status(), 200);
    settled(&app, &first).await;
    let body = assert_error(app.chat(ADMIN_KEY, hi("echo")).await, 429).await;
    assert_eq!(body["error"]["message"], "seen 6");
    assert_eq!(body["error"]["code"], "policy_rejected");
}

#[tokio::test]
async fn a_rejection_ends_the_chain() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("up", upstream.provider_yaml(&[("plain", "plain")]))
            .policy("10-reject.rhai", r#"fn on_request(req, ctx) { if req.user == "banned" { ctx.reject(403, "you are banned"); } ctx.tag("after", "reject"); }"#)
            .policy("20-never.rhai", r#"fn on_request(req, ctx) { throw "must not run after a rejection"; }"#),
    )
    .await;
    let res = app
        .chat(ADMIN_KEY, json!({"model": "plain", "user": "banned", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    let body = assert_error(res, 403).await;
    assert_eq!(body["error"]["message"], "you are banned");
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn runaway_and_broken_scripts_fail_closed_and_only_the_log_names_the_script() {
    let app = spawn(
        Spawn::default()
            .provider("mock", MOCK)
            .policy("10-loop.rhai", "fn on_request(req, ctx) {\n    if req.model == \"loop\" {\n        loop { }\n    }\n}")
            .policy("20-broken.rhai", "fn on_request(req, ctx) {\n    if req.model == \"broken\" {\n        let x = no_such_function(1);\n    }\n}"),
    )
    .await;
    let started = Instant::now();
    let res = app.chat(ADMIN_KEY, hi("loop")).await;
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = assert_error(res, 500).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the loop was stopped"
    );
    // The client learns that a policy failed and which request to quote, nothing about the
    // operator's scripts.
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&request_id), "{message}");
    assert!(
        !message.contains("rhai") && !message.contains("line") && !message.contains("on_request"),
        "{message}"
    );
    assert_eq!(body["error"]["code"], "policy_error");
    // The request log has the details; rhai gives no position for an overrun, so the hook's
    // own line is named.
    let entry = log_entry(&app, &request_id).await;
    let logged = entry["error"].as_str().unwrap();
    assert!(
        logged.contains("10-loop.rhai")
            && logged.contains("line 1")
            && logged.contains("on_request"),
        "{logged}"
    );

    let res = app.chat(ADMIN_KEY, hi("broken")).await;
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = assert_error(res, 500).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains("no_such_function"), "{message}");
    let entry = log_entry(&app, &request_id).await;
    let logged = entry["error"].as_str().unwrap();
    assert!(
        logged.contains("20-broken.rhai")
            && logged.contains("line 3")
            && logged.contains("no_such_function"),
        "{logged}"
    );

    // The gateway is unharmed.
    assert_eq!(app.chat(ADMIN_KEY, hi("echo")).await.status(), 200);
}

#[tokio::test]
async fn fail_open_skips_a_failing_script() {
    let app = spawn(Spawn {
        policy_fail_open: true,
        ..Spawn::default().provider("mock", MOCK).policy(
            "10-broken.rhai",
            r#"fn on_request(req, ctx) { ctx.reject_typo(1); }"#,
        )
    })
    .await;
    assert_eq!(app.chat(ADMIN_KEY, hi("echo")).await.status(), 200);
}

#[tokio::test]
async fn a_script_that_does_not_compile_stops_the_start_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = switchboard::Settings::with_base(dir.path());
    settings.listen = "127.0.0.1:0".parse().unwrap();
    write_providers(&settings.providers_dir, &[("mock".into(), MOCK.into())]);
    std::fs::create_dir_all(&settings.policies_dir).unwrap();
    std::fs::write(
        settings.policies_dir.join("bad.rhai"),
        "fn on_request(req, ctx) {\n    let x = ;\n}",
    )
    .unwrap();
    let err = match switchboard::Application::build(settings).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a broken script must not start"),
    };
    assert!(err.contains("bad.rhai:2:"), "{err}");
}

#[tokio::test]
async fn simulate_matches_real_requests_and_charges_nothing() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("up", upstream.provider_yaml(&[("plain", "plain")]))
            .provider("mock", MOCK)
            .policy(
                "p.rhai",
                r#"
                fn on_request(req, ctx) {
                    ctx.limit("once", 1, 3600);
                    if req.model == "smart" { ctx.route(["nowhere/x", "up/plain", "mock/echo"]); }
                    let v = ctx.split("exp", #{ a: 1 });
                    ctx.cache(30);
                    ctx.tag("who", req.key.name);
                    req.params.temperature = 0;
                }"#,
            ),
    )
    .await;
    let simulate = || async {
        let res = app
            .post("/admin/policies/simulate", ADMIN_KEY)
            .json(&json!({"request": hi("smart"), "key": {"id": "key_sim", "name": "sim"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    };
    for _ in 0..3 {
        let sim = simulate().await;
        assert_eq!(sim["route"], json!(["nowhere/x", "up/plain", "mock/echo"]));
        assert_eq!(sim["targets"], json!(["up/plain", "mock/echo"]));
        assert_eq!(sim["cache_ttl"], 30);
        assert_eq!(sim["variants"], json!({"exp": "a"}));
        assert_eq!(sim["tags"], json!({"who": "sim"}));
        assert_eq!(sim["request"]["temperature"], 0);
        assert_eq!(sim["limits"][0]["would_pass"], true);
        assert_eq!(sim["limits"][0]["current"], 0, "simulation charges nothing");
    }
    assert!(
        upstream.received().is_empty(),
        "simulation calls no provider"
    );

    // The real request does what the simulation said.
    let res = app.chat(ADMIN_KEY, hi("smart")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-provider"], "up");
    assert_eq!(res.headers()["x-switchboard-variant"], "exp=a");
    assert_eq!(upstream.last().body["temperature"], 0);
    let sim = simulate().await;
    assert_eq!(sim["limits"][0]["current"], 1);
    assert_eq!(sim["limits"][0]["would_pass"], false);
    assert_error(app.chat(ADMIN_KEY, hi("smart")).await, 429).await;

    // A user key may not simulate.
    let (_, user) = app.create_key(json!({"name": "u"})).await;
    let res = app
        .post("/admin/policies/simulate", &user)
        .json(&json!({"request": hi("x")}))
        .send()
        .await
        .unwrap();
    assert_error(res, 403).await;
}

#[tokio::test]
async fn a_request_refused_or_failed_gives_its_slot_back() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("mock", "kind: mock\nmodels: [echo, other]\n")
            .provider("up", upstream.provider_yaml(&[("broken", "status-503")]))
            .policy(
                "limit.rhai",
                r#"fn on_request(req, ctx) { ctx.limit("rpm:" + req.key.id, 2, 3600); }"#,
            ),
    )
    .await;
    let (_, key) = app
        .create_key(json!({"name": "k", "models": ["mock/echo", "up/broken"]}))
        .await;
    clear_of_a_window_turn(3600).await;
    assert_error(app.chat(&key, hi("no-such-model")).await, 404).await;
    assert_error(app.chat(&key, hi("other")).await, 403).await;
    let failed = app.chat(&key, hi("broken")).await;
    assert!(failed.status().is_server_error(), "{}", failed.status());
    // None of those used a slot of the limit of 2: two served requests still fit.
    assert_eq!(app.chat(&key, hi("echo")).await.status(), 200);
    assert_eq!(app.chat(&key, hi("echo")).await.status(), 200);
    let body = assert_error(app.chat(&key, hi("echo")).await, 429).await;
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("request limit `rpm:key_"), "{message}");
    assert!(message.contains("2 used, 0 remaining"), "{message}");
}
