//! Every error path gives the OpenAI error shape with the right status.

use crate::helpers::*;
use crate::upstream::Upstream;
use serde_json::json;

#[tokio::test]
async fn malformed_json_and_wrong_types_are_400s_that_say_what_is_wrong() {
    let app = spawn_mock().await;
    let send = |body: &'static str| {
        app.post("/v1/chat/completions", ADMIN_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let body = assert_error(send("{\"model\": ").await.unwrap(), 400).await;
    assert_eq!(body["error"]["code"], "invalid_json");
    let body = assert_error(send("{\"model\": 5, \"messages\": []}").await.unwrap(), 400).await;
    assert_eq!(body["error"]["param"], "model");
    let body = assert_error(send("{\"model\": \"echo\"}").await.unwrap(), 400).await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("messages"));
    let body = assert_error(
        send("{\"model\": \"echo\", \"messages\": [{\"content\": \"no role\"}]}")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0]"),
        "{body}"
    );
    let body = assert_error(send("").await.unwrap(), 400).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("empty"));
    let body = assert_error(
        send("{\"model\":\"echo\",\"messages\":[],\"stream\":\"yes\"}")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(body["error"]["param"], "stream");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn(Spawn {
        body_limit: 1024,
        ..Spawn::default().provider("mock", "kind: mock\nmodels: [echo]\n")
    })
    .await;
    let big = "x".repeat(2000);
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "echo", "messages": [{"role": "user", "content": big}]}),
        )
        .await;
    let body = assert_error(res, 413).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("1024"));
    // Chunked, without a content-length, is caught too.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(vec![b' '; 4096])]);
    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_error(res, 413).await;
}

#[tokio::test]
async fn upstream_errors_keep_their_status_and_message() {
    let upstream = Upstream::start().await;
    let yaml = upstream.provider_yaml(&[
        ("bad", "status-400"),
        ("busy", "status-429"),
        ("boom", "status-500-text"),
    ]);
    let app = spawn(Spawn::default().provider("up", yaml)).await;
    let msg = json!([{"role": "user", "content": "x"}]);

    let body = assert_error(
        app.chat(ADMIN_KEY, json!({"model": "bad", "messages": msg}))
            .await,
        400,
    )
    .await;
    assert_eq!(body["error"]["message"], "bad temperature from upstream");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "bad_temp");

    let res = app
        .chat(ADMIN_KEY, json!({"model": "busy", "messages": msg}))
        .await;
    assert_eq!(res.headers()["retry-after"], "7");
    let body = assert_error(res, 429).await;
    assert_eq!(body["error"]["message"], "slow down");

    let body = assert_error(
        app.chat(ADMIN_KEY, json!({"model": "boom", "messages": msg}))
            .await,
        500,
    )
    .await;
    // A 500 is retried (twice by default) before it reaches the client, who is told so.
    assert_eq!(body["error"]["message"], "boom (after 3 attempts)");

    // A streaming request that fails before its first byte gets a plain error response.
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "bad", "stream": true, "messages": msg}),
        )
        .await;
    assert_error(res, 400).await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_and_a_slow_one_504() {
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider(
                "gone",
                format!("kind: openai\nbase_url: http://{closed}/v1\nmodels: [m]\n"),
            )
            .provider("up", upstream.provider_yaml(&[("slow", "slow")])),
    )
    .await;
    let msg = json!([{"role": "user", "content": "x"}]);
    let body = assert_error(
        app.chat(ADMIN_KEY, json!({"model": "gone/m", "messages": msg}))
            .await,
        502,
    )
    .await;
    assert!(body["error"]["message"].as_str().unwrap().contains("gone"));
    assert!(!body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&closed.to_string()));

    let started = std::time::Instant::now();
    let body = assert_error(
        app.chat(ADMIN_KEY, json!({"model": "slow", "messages": msg}))
            .await,
        504,
    )
    .await;
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2900),
        "the 1 s timeout applied"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_get_the_error_shape() {
    let app = spawn_mock().await;
    let res = app.get("/v1/nope", ADMIN_KEY).send().await.unwrap();
    assert_error(res, 404).await;
    let res = app
        .get("/v1/chat/completions", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_error(res, 405).await;
}

#[tokio::test]
async fn secrets_never_appear_in_error_bodies() {
    let upstream = Upstream::start().await;
    let yaml = upstream.provider_yaml(&[("bad", "status-400"), ("boom", "status-500-text")]);
    let app = spawn(Spawn::default().provider("up", yaml)).await;
    for model in ["bad", "boom", "nope"] {
        let res = app
            .chat(ADMIN_KEY, json!({"model": model, "messages": []}))
            .await;
        let text = res.text().await.unwrap();
        assert!(
            !text.contains("sk-upstream-secret") && !text.contains(ADMIN_KEY),
            "{text}"
        );
    }
}

#[tokio::test]
async fn an_upstream_that_echoes_its_credentials_has_them_redacted_everywhere() {
    let upstream = Upstream::start().await;
    let yaml = upstream.provider_yaml(&[("leaky", "echo-key")]);
    let app = spawn(Spawn::default().provider("up", yaml)).await;
    for stream in [false, true] {
        let res = app
            .chat(
                ADMIN_KEY,
                json!({"model": "leaky", "stream": stream, "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
        let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = assert_error(res, 401).await;
        let message = body["error"]["message"].as_str().unwrap();
        assert_eq!(
            message,
            "Incorrect API key provided: Bearer [redacted] (sent with [redacted])"
        );
        let entry = log_entry(&app, &request_id).await.to_string();
        assert!(
            !entry.contains("sk-upstream-secret") && !entry.contains("custom-value"),
            "{entry}"
        );
        assert!(entry.contains("[redacted]"), "{entry}");
    }
    // The upstream really was sent the secret it echoed.
    assert_eq!(
        upstream.last().headers["authorization"],
        "Bearer sk-upstream-secret"
    );
}

#[tokio::test]
async fn a_200_that_is_not_json_is_a_502_retried_and_never_cached() {
    let upstream = Upstream::start().await;
    // The breaker stays on, opening later than these twelve failures in a row.
    let yaml = upstream
        .provider_yaml(&[("html", "html-200"), ("empty", "empty-200")])
        .replacen(
            "kind: openai\n",
            "kind: openai\nbreaker: { consecutive_failures: 20 }\n",
            1,
        );
    let app = spawn(
        Spawn::default()
            .provider("up", yaml)
            .provider("mock", "kind: mock\nmodels: [echo]\n")
            .policy(
                "r.rhai",
                r#"fn on_request(req, ctx) {
                    ctx.cache(60);
                    if req.model == "fallback" { ctx.route(["up/html", "mock/echo"]); }
                }"#,
            ),
    )
    .await;
    let msg = json!([{"role": "user", "content": "x"}]);
    for (model, upstream_model) in [("html", "html-200"), ("empty", "empty-200")] {
        for round in 1..=2 {
            let res = app
                .chat(ADMIN_KEY, json!({"model": model, "messages": msg}))
                .await;
            assert_eq!(res.headers()["x-switchboard-attempts"], "3", "retried");
            let body = assert_error(res, 502).await;
            assert_eq!(body["error"]["code"], "bad_upstream_response");
            assert_eq!(
                upstream.calls(upstream_model),
                3 * round,
                "{model}: the failure was not cached"
            );
        }
    }
    // Each was a failure for the breaker.
    let up = admin_provider(&app, "up").await;
    assert_eq!(up["health"]["consecutive_failures"], 12, "{up}");

    // A fallback serves when there is one.
    let res = app
        .chat(ADMIN_KEY, json!({"model": "fallback", "messages": msg}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-provider"], "mock");
}

#[tokio::test]
async fn a_reply_over_max_response_bytes_is_a_502_without_being_read_whole() {
    let upstream = Upstream::start().await;
    let yaml = upstream
        .provider_yaml(&[
            ("huge", "huge"),
            ("huge-chunked", "huge-chunked"),
            ("plain", "plain"),
        ])
        .replacen(
            "kind: openai\n",
            "kind: openai\nmax_response_bytes: 1048576\n",
            1,
        );
    let app = spawn(Spawn::default().provider("up", yaml)).await;
    let msg = json!([{"role": "user", "content": "x"}]);
    for model in ["huge", "huge-chunked"] {
        let res = app
            .chat(ADMIN_KEY, json!({"model": model, "messages": msg}))
            .await;
        assert_eq!(res.headers()["x-switchboard-attempts"], "1", "not retried");
        let body = assert_error(res, 502).await;
        assert_eq!(body["error"]["code"], "upstream_response_too_large");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1048576"));
    }
    let res = app
        .chat(ADMIN_KEY, json!({"model": "plain", "messages": msg}))
        .await;
    assert_eq!(res.status(), 200, "smaller replies pass");
}

#[tokio::test]
async fn every_proxied_error_says_how_many_upstream_calls_it_made() {
    let upstream = Upstream::start().await;
    let yaml = upstream.provider_yaml(&[("bad", "status-400"), ("boom", "status-500-text")]);
    let app = spawn(Spawn::default().provider("up", yaml)).await;
    let attempts = |res: &reqwest::Response| {
        res.headers()
            .get("x-switchboard-attempts")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let msg = json!([{"role": "user", "content": "x"}]);

    // Refused before any call: no key, a bad body, an unknown model.
    let res = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&json!({"model": "bad", "messages": msg}))
        .send()
        .await
        .unwrap();
    assert_eq!(attempts(&res).as_deref(), Some("0"));
    assert_error(res, 401).await;
    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(attempts(&res).as_deref(), Some("0"));
    assert_error(res, 400).await;
    let res = app
        .chat(ADMIN_KEY, json!({"model": "nowhere", "messages": msg}))
        .await;
    assert_eq!(attempts(&res).as_deref(), Some("0"));
    assert_error(res, 404).await;

    // An upstream 4xx is one call; a 5xx is retried twice by default.
    let res = app
        .chat(ADMIN_KEY, json!({"model": "bad", "messages": msg}))
        .await;
    assert_eq!(attempts(&res).as_deref(), Some("1"));
    let body = assert_error(res, 400).await;
    assert_eq!(
        body["error"]["param"], "temperature",
        "the upstream's param is kept"
    );
    let res = app
        .chat(ADMIN_KEY, json!({"model": "boom", "messages": msg}))
        .await;
    assert_eq!(attempts(&res).as_deref(), Some("3"));
    assert_error(res, 500).await;
}

#[tokio::test]
async fn upstream_rate_limit_headers_are_relayed() {
    let upstream = Upstream::start().await;
    let yaml = upstream.provider_yaml(&[
        ("limited", "ratelimited"),
        ("limited-stream", "ratelimited-stream"),
        ("busy", "status-429"),
    ]);
    let app = spawn(Spawn::default().provider("up", yaml)).await;
    let msg = json!([{"role": "user", "content": "x"}]);
    let relayed = [
        ("x-ratelimit-limit-requests", "100"),
        ("x-ratelimit-remaining-requests", "99"),
        ("x-ratelimit-reset-tokens", "6ms"),
        ("openai-processing-ms", "42"),
    ];
    for body in [
        json!({"model": "limited", "messages": msg}),
        json!({"model": "limited-stream", "stream": true, "messages": msg}),
    ] {
        let res = app.chat(ADMIN_KEY, body.clone()).await;
        assert_eq!(res.status(), 200, "{body}");
        for (name, value) in relayed {
            assert_eq!(res.headers()[name], value, "{name} for {body}");
        }
        assert!(
            !res.headers().contains_key("x-internal-route"),
            "only rate-limit and timing headers are relayed"
        );
        assert_eq!(res.headers()["x-switchboard-provider"], "up");
        let _ = res.text().await;
    }

    // On an upstream error too, with the gateway's own retry-after.
    let res = app
        .chat(ADMIN_KEY, json!({"model": "busy", "messages": msg}))
        .await;
    assert_eq!(res.headers()["x-ratelimit-remaining-requests"], "0");
    assert_eq!(res.headers()["retry-after"], "7");
    assert_eq!(res.headers().get_all("retry-after").iter().count(), 1);
    assert_error(res, 429).await;
}

#[tokio::test]
async fn error_bodies_repeat_only_the_start_of_long_input() {
    let app = spawn_mock().await;
    let long = "m".repeat(16 * 1024);
    // An unknown model: the 404 names it, but only its first 256 bytes.
    let res = app
        .get(&format!("/v1/models/{long}"), ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 404).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() < 400, "{} bytes", message.len());
    assert!(
        message.contains(&format!("`{}…`", "m".repeat(256))),
        "{message}"
    );
    // Any other echoed value: the message is capped at 2 KiB, and says it was cut.
    let res = app
        .get(&format!("/admin/logs/{long}"), ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 404).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() <= 2048 + 3, "{} bytes", message.len());
    assert!(message.ends_with('…'), "{message}");
}

#[tokio::test]
async fn a_model_name_over_256_bytes_is_a_400_and_logged_cut_short() {
    let app = spawn_mock().await;
    let name = "m".repeat(1 << 20);
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": name, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let text = res.text().await.unwrap();
    assert!(text.len() < 1024, "{} bytes", text.len());
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["param"], "model");
    assert_eq!(body["error"]["code"], "model_too_long");
    let entry = log_entry(&app, &request_id).await;
    assert_eq!(entry["status"], 400);
    let logged = entry["requested_model"].as_str().unwrap();
    assert_eq!(logged, format!("{}…", "m".repeat(256)));

    // 256 bytes is still a name: an unknown one, a 404 that repeats it whole.
    let name = "m".repeat(256);
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": name, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let body = assert_error(res, 404).await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&format!("`{name}`")));
}
