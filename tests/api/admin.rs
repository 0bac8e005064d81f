//! The admin API: usage and logs that match what happened, keys, providers, cache, metrics.

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PRICED: &str = "kind: mock\nmodels:\n  - echo\n  - name: priced\n    upstream: echo\n    pricing: { input: 2.0, output: 4.0 }\n";

async fn get_json(app: &TestApp, path: &str) -> Value {
    let res = app.get(path, ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// Waits until the log holds `n` entries (the writer batches in the background).
async fn logged(app: &TestApp, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let page = get_json(app, "/admin/logs?limit=500").await;
        let data = page["data"].as_array().unwrap().clone();
        if data.len() >= n {
            assert_eq!(data.len(), n, "no more entries than requests");
            return data;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "only {} of {n} entries logged",
            data.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn usage_and_logs_match_what_the_upstream_reported() {
    let app = spawn(
        Spawn::default()
            .provider("mock", PRICED)
            .policy("t.rhai", r#"fn on_request(req, ctx) { ctx.tag("team", "search"); if req.params.temperature == 0 { ctx.cache(60); } }"#),
    )
    .await;
    let (key_id, secret) = app.create_key(json!({"name": "batch"})).await;
    let (mut prompt, mut completion) = (0u64, 0u64);
    for i in 0..6 {
        let content = "word ".repeat(i + 1);
        let res = app
            .chat(
                &secret,
                json!({"model": "priced", "messages": [{"role": "user", "content": content}]}),
            )
            .await;
        let body: Value = res.json().await.unwrap();
        prompt += body["usage"]["prompt_tokens"].as_u64().unwrap();
        completion += body["usage"]["completion_tokens"].as_u64().unwrap();
    }
    // Streamed, with usage asked for so the test can see what upstream reported.
    for i in 0..3 {
        let content = "stream ".repeat(i + 2);
        let res = app
            .chat(
                &secret,
                json!({"model": "priced", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": content}]}),
            )
            .await;
        let payloads = sse_payloads(res).await;
        let usage: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
        prompt += usage["usage"]["prompt_tokens"].as_u64().unwrap();
        completion += usage["usage"]["completion_tokens"].as_u64().unwrap();
    }
    // A miss and a hit: the hit is a request, but no tokens or cost.
    let cached = json!({"model": "priced", "temperature": 0, "messages": [{"role": "user", "content": "same again"}]});
    let body: Value = app
        .chat(&secret, cached.clone())
        .await
        .json()
        .await
        .unwrap();
    prompt += body["usage"]["prompt_tokens"].as_u64().unwrap();
    completion += body["usage"]["completion_tokens"].as_u64().unwrap();
    // The reply is stored just after it is sent.
    cached_entries(&app, 1).await;
    assert_eq!(
        app.chat(&secret, cached).await.headers()["x-switchboard-cache"],
        "hit"
    );
    // A failure: logged as an error, no tokens.
    assert_error(
        app.chat(&secret, json!({"model": "nope", "messages": []}))
            .await,
        404,
    )
    .await;

    let entries = logged(&app, 12).await;
    let failed = entries.iter().find(|e| e["status"] == 404).unwrap();
    assert_eq!(failed["requested_model"], "nope");
    assert!(failed["error"].as_str().unwrap().contains("nope"));
    let streamed = entries.iter().filter(|e| e["stream"] == true).count();
    assert_eq!(streamed, 3);
    assert!(entries.iter().all(|e| e["key_id"] == key_id.as_str()));
    assert!(
        entries.iter().all(|e| e.get("request_body").is_none()),
        "bodies are off by default"
    );

    let usage = get_json(&app, "/admin/usage?group_by=model").await;
    let totals = &usage["totals"];
    assert_eq!(totals["requests"], 12);
    assert_eq!(totals["errors"], 1);
    assert_eq!(totals["cached"], 1);
    assert_eq!(totals["prompt_tokens"], prompt);
    assert_eq!(totals["completion_tokens"], completion);
    let expected_cost = (prompt as f64 * 2.0 + completion as f64 * 4.0) / 1e6;
    assert!((totals["cost_usd"].as_f64().unwrap() - expected_cost).abs() < 1e-12);
    let groups: Vec<&str> = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["group"].as_str().unwrap_or("-"))
        .collect();
    assert!(
        groups.contains(&"mock/priced") && groups.contains(&"(unknown)"),
        "{groups:?}"
    );

    let by_team = get_json(&app, "/admin/usage?group_by=tag:team&bucket=day").await;
    let rows = by_team["data"].as_array().unwrap();
    let search = rows.iter().find(|r| r["group"] == "search").unwrap();
    assert_eq!(
        search["requests"], 11,
        "the 404 never reached the policy that tags"
    );
    assert!(rows
        .iter()
        .any(|r| r["group"].is_null() && r["requests"] == 1));

    // The key shows its use.
    let key = get_json(&app, &format!("/admin/keys/{key_id}")).await;
    assert_eq!(key["usage"]["requests"], 12);
    assert!(key["usage"]["last_used_ms"].as_u64().unwrap() > 0);
    assert!(key.get("key").is_none());
}

#[tokio::test]
async fn logs_filter_and_page() {
    let app = spawn(Spawn::default().provider("mock", PRICED)).await;
    for i in 0..5 {
        let model = if i % 2 == 0 { "echo" } else { "priced" };
        app.chat(
            ADMIN_KEY,
            json!({"model": model, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    }
    assert_error(
        app.chat(ADMIN_KEY, json!({"model": "missing", "messages": []}))
            .await,
        404,
    )
    .await;
    logged(&app, 6).await;

    let page = get_json(&app, "/admin/logs?limit=4").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 4);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = get_json(&app, &format!("/admin/logs?limit=4&cursor={cursor}")).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    assert!(rest["next_cursor"].is_null());
    let newest = page["data"][0]["at_ms"].as_u64().unwrap();
    let oldest = rest["data"][1]["at_ms"].as_u64().unwrap();
    assert!(newest >= oldest, "newest first");

    let errors = get_json(&app, "/admin/logs?status=4xx").await;
    assert_eq!(errors["data"].as_array().unwrap().len(), 1);
    let priced = get_json(&app, "/admin/logs?model=mock/priced").await;
    assert_eq!(priced["data"].as_array().unwrap().len(), 2);
    let by_provider = get_json(&app, "/admin/logs?provider=mock&key_id=env-admin").await;
    assert_eq!(by_provider["data"].as_array().unwrap().len(), 5);

    let id = page["data"][0]["request_id"].as_str().unwrap();
    let one = get_json(&app, &format!("/admin/logs/{id}")).await;
    assert_eq!(one["request_id"], id);
    assert_error(
        app.get("/admin/logs/nope", ADMIN_KEY).send().await.unwrap(),
        404,
    )
    .await;
    assert_error(
        app.get("/admin/logs?limit=0", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_error(
        app.get("/admin/logs?limit=abc", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_error(
        app.get("/admin/usage?group_by=colour", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
}

#[tokio::test]
async fn bodies_are_logged_only_when_turned_on() {
    let app = spawn(Spawn {
        log_bodies: true,
        ..Spawn::default().provider("mock", PRICED)
    })
    .await;
    app.chat(
        ADMIN_KEY,
        json!({"model": "echo", "messages": [{"role": "user", "content": "keep me"}]}),
    )
    .await;
    let res = app
        .chat(ADMIN_KEY, json!({"model": "echo", "stream": true, "messages": [{"role": "user", "content": "streamed words"}]}))
        .await;
    sse_payloads(res).await;
    let entries = logged(&app, 2).await;
    let plain = entries.iter().find(|e| e["stream"] == false).unwrap();
    assert_eq!(plain["request_body"]["messages"][0]["content"], "keep me");
    assert!(plain["response_body"].as_str().unwrap().contains("keep me"));
    let streamed = entries.iter().find(|e| e["stream"] == true).unwrap();
    let assembled: Value =
        serde_json::from_str(streamed["response_body"].as_str().unwrap()).unwrap();
    assert_eq!(
        assembled["choices"][0]["message"]["content"],
        "streamed words"
    );
}

#[tokio::test]
async fn keys_update_rotate_and_expire() {
    let app = spawn(Spawn::default().provider("mock", PRICED)).await;
    let (id, secret) = app
        .create_key(json!({"name": "svc", "metadata": {"owner": "ops", "ticket": 42}, "tags": {"team": "a"}}))
        .await;
    let hello = json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]});

    let res = app
        .client
        .patch(app.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "svc2", "models": ["mock/priced"], "tags": {"team": "b"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let record: Value = res.json().await.unwrap();
    assert_eq!(record["name"], "svc2");
    assert_eq!(record["metadata"]["ticket"], 42, "untouched fields stay");
    assert_error(app.chat(&secret, hello.clone()).await, 403).await;

    let res = app
        .post(&format!("/admin/keys/{id}/rotate"), ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await.unwrap();
    let new_secret = rotated["key"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["id"], id.as_str());
    assert_error(app.chat(&secret, hello.clone()).await, 401).await;
    let priced = json!({"model": "priced", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(app.chat(new_secret, priced.clone()).await.status(), 200);

    let past = switchboard::store::keys::now_secs() - 1;
    let res = app
        .client
        .patch(app.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"expires_at": past}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = assert_error(app.chat(new_secret, priced.clone()).await, 401).await;
    assert_eq!(body["error"]["code"], "expired_api_key");
    let res = app
        .client
        .patch(app.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"expires_at": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.chat(new_secret, priced).await.status(), 200);

    let res = app
        .client
        .patch(app.url("/admin/keys/key_missing"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 404).await;
    let res = app
        .client
        .patch(app.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400).await;
}

#[tokio::test]
async fn providers_show_models_and_stats_without_secrets() {
    let upstream = crate::upstream::Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("mock", PRICED)
            .provider("up", upstream.provider_yaml(&[("plain", "plain")]))
            .provider("off", "kind: mock\nenabled: false\nmodels: [x]\n"),
    )
    .await;
    app.chat(ADMIN_KEY, json!({"model": "plain", "messages": []}))
        .await;
    let started = Instant::now();
    let list = loop {
        let list = get_json(&app, "/admin/providers").await;
        let up = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "up")
            .unwrap()
            .clone();
        if up["stats"]["requests"] == 1 {
            break list;
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let text = list.to_string();
    assert!(!text.contains("sk-upstream-secret") && !text.contains("custom-value"));
    let mock = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mock")
        .unwrap();
    assert_eq!(mock["models"][1]["pricing"]["output"], 4.0);
    assert_eq!(list["skipped"][0]["name"], "off");
    assert_eq!(mock["breaker"], "closed");
    assert_eq!(mock["health"]["can_serve"], true);
}

#[tokio::test]
async fn cache_stats_and_purge_by_namespace() {
    let app = spawn(
        Spawn::default()
            .provider("mock", PRICED)
            .policy("c.rhai", "fn on_request(req, ctx) { ctx.cache(60); }"),
    )
    .await;
    for (n, model) in [(1, "echo"), (2, "priced")] {
        app.chat(
            ADMIN_KEY,
            json!({"model": model, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        cached_entries(&app, n).await;
        app.chat(
            ADMIN_KEY,
            json!({"model": model, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    }
    let stats = get_json(&app, "/admin/cache").await;
    assert_eq!(stats["entries"], 2);
    assert_eq!(stats["hits"], 2);
    let res = app
        .client
        .delete(app.url("/admin/cache?namespace=mock/echo"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["removed"], 1);
    let res = app
        .client
        .delete(app.url("/admin/cache"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["removed"], 1);
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "priced", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(res.headers()["x-switchboard-cache"], "miss");
}

#[tokio::test]
async fn metrics_count_requests_tokens_and_rejections() {
    let app = spawn(Spawn::default().provider("mock", PRICED).policy(
        "l.rhai",
        r#"fn on_request(req, ctx) { ctx.limit("one", 1, 3600); }"#,
    ))
    .await;
    app.chat(
        ADMIN_KEY,
        json!({"model": "priced", "messages": [{"role": "user", "content": "a b"}]}),
    )
    .await;
    assert_error(
        app.chat(ADMIN_KEY, json!({"model": "priced", "messages": []}))
            .await,
        429,
    )
    .await;
    let started = Instant::now();
    loop {
        let res = app.get("/metrics", ADMIN_KEY).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        if text.contains(r#"switchboard_tokens_prompt_total{provider="mock",model="priced"} 2"#) {
            assert!(
                text.contains("switchboard_quota_rejections_total 1"),
                "{text}"
            );
            assert!(text.contains(r#"switchboard_http_requests_total{route="/v1/chat/completions",method="POST",status="4xx"} 1"#), "{text}");
            assert!(text.contains("switchboard_upstream_duration_seconds_bucket"));
            assert!(
                text.contains(r#"switchboard_breaker_state{provider="mock"} 0"#),
                "{text}"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, user) = app.create_key(json!({"name": "u"})).await;
    assert_error(app.get("/metrics", &user).send().await.unwrap(), 403).await;
}

/// Found by the schemathesis run: a far-future `until` overflowed (`* 1000`) and the worker
/// panicked, dropping the connection.
#[tokio::test]
async fn log_query_with_a_huge_time_is_not_a_crash() {
    let app = spawn_mock().await;
    for query in ["until=9223372036854775808", "since=18446744073709551615"] {
        let res = app
            .get(&format!("/admin/logs?{query}"), ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{query}");
    }
}

#[tokio::test]
async fn usage_counts_requests_for_unknown_models_under_one_name() {
    let app = spawn(Spawn::default().provider("mock", PRICED).policy(
        "l.rhai",
        r#"fn on_request(req, ctx) { ctx.limit("all", 1, 3600); }"#,
    ))
    .await;
    let chat = |model: String| {
        app.chat(
            ADMIN_KEY,
            json!({"model": model, "messages": [{"role": "user", "content": "x"}]}),
        )
    };
    for i in 0..3 {
        assert_error(chat(format!("made-up-{i}")).await, 404).await;
    }
    // The 404s used no slot of the limit of 1: the first served request has it.
    assert_eq!(chat("echo".into()).await.status(), 200);
    // Over the limit, an unknown name is still a 404 (looked up first), not a row of its own.
    assert_error(chat("made-up-3".into()).await, 404).await;
    assert_error(chat("priced".into()).await, 429).await;

    let entries = logged(&app, 6).await;
    assert!(entries.iter().any(|e| e["requested_model"] == "made-up-3"));
    let usage = get_json(&app, "/admin/usage?group_by=model").await;
    let mut groups: Vec<(String, u64, u64)> = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["group"].as_str().unwrap().to_string(),
                r["requests"].as_u64().unwrap(),
                r["errors"].as_u64().unwrap(),
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        vec![
            ("(unknown)".to_string(), 4, 4),
            ("mock/echo".to_string(), 1, 0),
            // A served model's name is kept when a limit refused it.
            ("priced".to_string(), 1, 1),
        ]
    );
}

#[tokio::test]
async fn a_client_chosen_request_id_never_shadows_another_log_entry() {
    let app = spawn(Spawn::default().provider("mock", PRICED)).await;
    let (a_id, a) = app.create_key(json!({"name": "a"})).await;
    let (b_id, b) = app.create_key(json!({"name": "b"})).await;
    let hi = json!({"model": "echo", "messages": [{"role": "user", "content": "x"}]});
    // A's request, no id of its own: the gateway's id is the header and the log id.
    let res = app.chat(&a, hi.clone()).await;
    let a_request = res.headers()["x-request-id"].to_str().unwrap().to_string();
    // B sends A's id as its own x-request-id, twice: it is echoed, and logged beside B's ids.
    for _ in 0..2 {
        let res = app
            .post("/v1/chat/completions", &b)
            .header("x-request-id", &a_request)
            .json(&hi)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-request-id"], a_request.as_str());
    }
    let entries = logged(&app, 3).await;
    let mut ids: Vec<&str> = entries
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "every entry has its own id");

    let one = get_json(&app, &format!("/admin/logs/{a_request}")).await;
    assert_eq!(one["key_id"], a_id.as_str(), "still A's entry");
    assert!(one.get("client_request_id").is_none());

    let found = get_json(&app, &format!("/admin/logs?request_id={a_request}")).await;
    let found = found["data"].as_array().unwrap();
    assert_eq!(
        found.len(),
        3,
        "the gateway's id and the client's, both searchable"
    );
    for e in found.iter().filter(|e| e["key_id"] == b_id.as_str()) {
        assert_eq!(e["client_request_id"], a_request.as_str());
        assert_ne!(e["request_id"], a_request.as_str());
    }
}

#[tokio::test]
async fn status_reports_version_store_config_providers_and_requests_in_flight() {
    let app = spawn(
        Spawn::default()
            .provider("mock", PRICED)
            .provider("off", "kind: mock\nenabled: false\nmodels: [x]\n"),
    )
    .await;
    let status = get_json(&app, "/admin/status").await;
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["build"]["profile"], "debug");
    assert!(status["uptime_secs"].is_u64(), "{status}");
    assert_eq!(status["store"]["backend"], "sled");
    assert_eq!(status["store"]["health"], "ok");
    assert!(status["store"].get("error").is_none(), "{status}");
    assert_eq!(status["config"]["version"], 1);
    let before = status["config"]["last_reload"].clone();
    assert_eq!(status["providers"]["serving"], json!(["mock"]));
    assert_eq!(status["providers"]["skipped"], json!(["off"]));
    assert_eq!(status["providers"]["open_breaker"], json!([]));
    // The status request itself is in flight while it is answered.
    assert_eq!(status["requests_in_flight"], 1);

    let res = app.post("/admin/reload", ADMIN_KEY).send().await.unwrap();
    assert!(res.status().is_success());
    let status = get_json(&app, "/admin/status").await;
    let last = &status["config"]["last_reload"];
    assert_ne!(*last, before);
    assert!(
        ["applied", "unchanged"].contains(&last["outcome"].as_str().unwrap()),
        "{last}"
    );
    assert_eq!(last["version"], status["config"]["version"]);

    let (_, user) = app.create_key(json!({"name": "u"})).await;
    let res = app.get("/admin/status", &user).send().await.unwrap();
    assert_error(res, 403).await;
}
