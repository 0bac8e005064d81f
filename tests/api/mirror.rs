//! Shadow traffic (`ctx.mirror`): a copy goes to the candidate after the reply, never delaying
//! it or counting against the caller's limits, bounded in concurrency, and compared in the log
//! and in usage.

use crate::helpers::{
    admin_json, clear_of_a_minute_turn, log_entry, spawn, Spawn, TestApp, ADMIN_KEY,
};
use serde_json::json;
use std::time::{Duration, Instant};

fn mirrored(concurrency: Option<usize>) -> Spawn {
    Spawn {
        mirror_concurrency: concurrency,
        ..Spawn::default()
            .provider("mock", "kind: mock\nmodels: [echo]\n")
            // The candidate is slow, and priced.
            .provider(
                "cand",
                "kind: mock\nmodels:\n  - name: echo\n    pricing: { input: 1.0, output: 2.0 }\nmock: { latency_ms: 1500 }\n",
            )
            .policy(
                "mirror.rhai",
                r#"fn on_request(req, ctx) {
                    ctx.limit("per-key", 2, "minute");
                    if req.model == "mock/echo" { ctx.mirror("cand/echo", 1.0); }
                }"#,
            )
    }
}

fn hi() -> serde_json::Value {
    json!({"model": "mock/echo", "messages": [{"role": "user", "content": "compare me please"}]})
}

/// The candidate's log entries, waiting for `n` of them.
async fn shadows(app: &TestApp, n: usize) -> Vec<serde_json::Value> {
    let started = Instant::now();
    loop {
        let page = admin_json(app, "/admin/logs?provider=cand").await;
        let entries = page["data"].as_array().cloned().unwrap_or_default();
        if entries.len() >= n {
            return entries;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{n} shadow entries never came: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_copy_goes_to_the_candidate_after_the_reply_and_is_compared() {
    let app = spawn(mirrored(None)).await;
    // The limit of 2 is per minute: the three requests below must share one.
    clear_of_a_minute_turn().await;
    let started = Instant::now();
    let res = app.chat(ADMIN_KEY, hi()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-provider"], "mock");
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let _ = res.text().await;
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "the client never waits for the 1.5 s candidate: {:?}",
        started.elapsed()
    );

    let primary = log_entry(&app, &id).await;
    assert_eq!(primary["tags"]["shadow"], "primary");
    let shadow = &shadows(&app, 1).await[0];
    assert_eq!(shadow["tags"]["shadow"], "candidate", "{shadow}");
    assert_eq!(shadow["tags"]["shadow_of"], id.as_str());
    assert_eq!(shadow["model"], "echo");
    assert_eq!(shadow["status"], 200);
    assert!(shadow["latency_ms"].as_u64().unwrap() >= 1500);
    assert!(shadow["cost_usd"].as_f64().unwrap() > 0.0);
    let cmp = &shadow["shadow"];
    assert_eq!(cmp["of"], id.as_str());
    assert_eq!(cmp["identical"], true, "both echo the same text: {shadow}");
    assert_eq!(cmp["finish_reason"], "stop");
    assert_eq!(cmp["primary_finish_reason"], "stop");
    assert_eq!(
        cmp["primary_completion_tokens"],
        primary["completion_tokens"]
    );
    assert!(cmp["primary_latency_ms"].as_u64().unwrap() < 1000);

    // The copies did not count against the key's limit of 2: the second request passes.
    let second = app.chat(ADMIN_KEY, hi()).await;
    let status = second.status();
    assert_eq!(status, 200, "{}", second.text().await.unwrap_or_default());
    let third = app.chat(ADMIN_KEY, hi()).await;
    let status = third.status();
    assert_eq!(status, 429, "{}", third.text().await.unwrap_or_default());

    // Usage compares the primaries and their copies.
    shadows(&app, 2).await;
    let report = admin_json(&app, "/admin/usage?group_by=shadow&bucket=day").await;
    let groups: Vec<&str> = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["group"].as_str())
        .collect();
    assert!(
        groups.contains(&"primary") && groups.contains(&"candidate"),
        "{report}"
    );
}

#[actix_web::test]
async fn copies_beyond_the_concurrency_are_dropped_and_counted() {
    let app = spawn(Spawn {
        policies: vec![(
            "mirror.rhai".into(),
            r#"fn on_request(req, ctx) { ctx.mirror("cand/echo", 1.0); }"#.into(),
        )],
        ..mirrored(Some(1))
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.chat(ADMIN_KEY, hi()).await.status(), 200);
    }
    let metrics = app
        .get("/metrics", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchboard_mirror_dropped_total 2"),
        "one copy runs (1.5 s), the other two find no room: {metrics}"
    );
    assert_eq!(shadows(&app, 1).await.len(), 1);
}

#[actix_web::test]
async fn a_share_of_zero_copies_nothing_and_simulate_shows_the_decision() {
    let app = spawn(Spawn {
        policies: vec![(
            "mirror.rhai".into(),
            r#"fn on_request(req, ctx) { ctx.mirror("cand/echo", 0.0); }"#.into(),
        )],
        ..mirrored(None)
    })
    .await;
    let res = app.chat(ADMIN_KEY, hi()).await;
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(res.status(), 200);
    let entry = log_entry(&app, &id).await;
    assert!(entry["tags"].get("shadow").is_none(), "{entry}");
    let sim: serde_json::Value = app
        .post("/admin/policies/simulate", ADMIN_KEY)
        .json(&json!({"request": hi()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        sim["mirror"],
        json!({"target": "cand/echo", "share": 0.0, "sampled": false}),
        "{sim}"
    );
}

#[actix_web::test]
async fn a_streamed_primary_is_compared_with_its_copy() {
    let app = spawn(Spawn {
        policies: vec![(
            "mirror.rhai".into(),
            r#"fn on_request(req, ctx) { ctx.mirror("cand/echo", 1.0); }"#.into(),
        )],
        ..mirrored(None)
    })
    .await;
    let mut body = hi();
    body["stream"] = json!(true);
    let res = app.chat(ADMIN_KEY, body).await;
    assert_eq!(res.status(), 200);
    let raw = res.text().await.unwrap();
    assert!(raw.contains("[DONE]"));
    let shadow = &shadows(&app, 1).await[0];
    assert_eq!(shadow["shadow"]["identical"], true, "{shadow}");
    assert_eq!(shadow["stream"], false, "the copy is sent whole");
}
