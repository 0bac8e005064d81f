//! Hot reload: edit the files of a running server and watch the effect (or the error).

use crate::helpers::*;
use crate::upstream::Upstream;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MOCK: &str = "kind: mock\nmodels: [echo]\n";

fn providers(app: &TestApp) -> PathBuf {
    app._dir.path().join("providers.d")
}

fn policies(app: &TestApp) -> PathBuf {
    app._dir.path().join("policies")
}

async fn model_ids(app: &TestApp) -> Vec<String> {
    let list: Value = app
        .get("/v1/models", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

async fn config(app: &TestApp) -> Value {
    app.get("/admin/config", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `check` until it holds, for at most `limit`; returns how long it took.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not reached within {limit:?}");
}

#[tokio::test]
async fn a_new_provider_file_is_served_within_two_seconds() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    std::fs::write(
        providers(&app).join("extra.yaml"),
        "kind: mock\nmodels: [fresh]\n",
    )
    .unwrap();
    within(Duration::from_secs(2), || async {
        model_ids(&app).await.contains(&"extra/fresh".to_string())
    })
    .await;
    assert_eq!(
        app.chat(ADMIN_KEY, json!({"model": "fresh", "messages": []}))
            .await
            .status(),
        200
    );
    let cfg = config(&app).await;
    assert_eq!(cfg["version"], 2);
    assert_eq!(cfg["last_reload"]["outcome"], "applied");
    assert_eq!(cfg["last_reload"]["trigger"], "watcher");
    assert_eq!(cfg["provider_files"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn broken_yaml_keeps_the_old_config_and_shows_the_error_until_fixed() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    std::fs::write(
        providers(&app).join("mock.yaml"),
        "kind: mock\nmodels: [echo, echo2]\ncolour: red\n",
    )
    .unwrap();
    within(Duration::from_secs(2), || async {
        config(&app).await["last_reload"]["outcome"] == "rolled_back"
    })
    .await;
    let cfg = config(&app).await;
    let error = &cfg["last_reload"]["errors"][0];
    assert!(error["file"].as_str().unwrap().ends_with("mock.yaml"));
    assert_eq!(error["line"], 3);
    assert!(error["message"].as_str().unwrap().contains("colour"));
    assert_eq!(cfg["version"], 1);
    assert_eq!(
        model_ids(&app).await,
        vec!["mock/echo"],
        "the old config still serves"
    );
    assert_eq!(
        app.chat(ADMIN_KEY, json!({"model": "echo", "messages": []}))
            .await
            .status(),
        200
    );

    std::fs::write(
        providers(&app).join("mock.yaml"),
        "kind: mock\nmodels: [echo, echo2]\n",
    )
    .unwrap();
    within(Duration::from_secs(2), || async {
        model_ids(&app).await.len() == 2
    })
    .await;
    let cfg = config(&app).await;
    assert_eq!(cfg["last_reload"]["outcome"], "applied");
    assert_eq!(cfg["last_reload"]["errors"], json!([]));
}

async fn message(app: &TestApp) -> String {
    let res = app
        .chat(ADMIN_KEY, json!({"model": "echo", "messages": []}))
        .await;
    res.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn a_broken_script_keeps_the_old_policies_until_fixed() {
    let app = spawn(
        Spawn::default()
            .provider("mock", MOCK)
            .policy("p.rhai", r#"fn on_request(req, ctx) { ctx.set_header("x-v", "1"); ctx.tag("v", "1"); ctx.reject(418, "v1"); }"#),
    )
    .await;
    assert_eq!(message(&app).await, "v1");
    std::fs::write(
        policies(&app).join("p.rhai"),
        "fn on_request(req, ctx) {\n  ctx.reject(418, \"v2\"\n}",
    )
    .unwrap();
    within(Duration::from_secs(2), || async {
        config(&app).await["last_reload"]["outcome"] == "rolled_back"
    })
    .await;
    let cfg = config(&app).await;
    let error = &cfg["last_reload"]["errors"][0];
    assert!(
        error["file"].as_str().unwrap().ends_with("p.rhai"),
        "{error}"
    );
    assert!(error["line"].as_u64().is_some(), "{error}");
    assert_eq!(message(&app).await, "v1", "the old script still runs");

    std::fs::write(
        policies(&app).join("p.rhai"),
        r#"fn on_request(req, ctx) { ctx.reject(418, "v2"); }"#,
    )
    .unwrap();
    within(Duration::from_secs(2), || async {
        message(&app).await == "v2"
    })
    .await;
}

#[tokio::test]
async fn a_stream_started_before_a_reload_finishes_intact() {
    let app = spawn(Spawn::default().provider(
        "slow",
        "kind: mock\nmodels: [echo]\nmock:\n  chunk_delay_ms: 40\n",
    ))
    .await;
    let res = app
        .chat(ADMIN_KEY, json!({"model": "echo", "stream": true, "messages": [{"role": "user", "content": "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10"}]}))
        .await;
    let mut body = res.bytes_stream();
    let mut seen = read_until(&mut body, "w1").await;
    // Remove the provider that is streaming, and wait for the reload to apply.
    std::fs::remove_file(providers(&app).join("slow.yaml")).unwrap();
    std::fs::write(providers(&app).join("other.yaml"), MOCK).unwrap();
    within(Duration::from_secs(2), || async {
        config(&app).await["version"] == 2
    })
    .await;
    seen.push_str(&read_until(&mut body, "[DONE]").await);
    let text: String = parse_sse(&seen)
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10");
    // New requests see the new config: the removed provider's model is gone.
    let res = app
        .chat(ADMIN_KEY, json!({"model": "slow/echo", "messages": []}))
        .await;
    assert_error(res, 404).await;
}

#[tokio::test]
async fn concurrent_requests_across_ten_reloads_see_no_failure() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let client = app.client.clone();
        let url = app.url("/v1/chat/completions");
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && ok + failed < 2000 {
                let res = client
                    .post(&url)
                    .bearer_auth(ADMIN_KEY)
                    .json(&json!({"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    for i in 0..10 {
        let models = if i % 2 == 0 {
            "[echo, extra]"
        } else {
            "[echo]"
        };
        std::fs::write(
            providers(&app).join("mock.yaml"),
            format!("kind: mock\nmodels: {models}\n"),
        )
        .unwrap();
        let res = app.post("/admin/reload", ADMIN_KEY).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let attempt: Value = res.json().await.unwrap();
        assert_eq!(attempt["outcome"], "applied");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed += f;
    }
    assert!(ok > 0);
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(config(&app).await["version"].as_u64().unwrap() >= 11);
}

#[tokio::test]
async fn editors_that_write_by_rename_are_picked_up() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    let dir = providers(&app);
    std::fs::write(
        dir.join(".mock.yaml.swp"),
        "kind: mock\nmodels: [renamed]\n",
    )
    .unwrap();
    std::fs::rename(dir.join(".mock.yaml.swp"), dir.join("mock.yaml")).unwrap();
    within(Duration::from_secs(2), || async {
        model_ids(&app).await == vec!["mock/renamed"]
    })
    .await;
}

#[tokio::test]
async fn a_deleted_and_recreated_folder_is_watched_again() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    let dir = policies(&app);
    std::fs::remove_dir_all(&dir).unwrap();
    within(Duration::from_secs(2), || async {
        config(&app).await["last_reload"]["outcome"] == "rolled_back"
    })
    .await;
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("r.rhai"),
        r#"fn on_request(req, ctx) { ctx.reject(451, "recreated"); }"#,
    )
    .unwrap();
    within(Duration::from_secs(3), || async {
        app.chat(ADMIN_KEY, json!({"model": "echo", "messages": []}))
            .await
            .status()
            == 451
    })
    .await;
    // And it keeps watching the new folder.
    std::fs::write(
        dir.join("r.rhai"),
        r#"fn on_request(req, ctx) { ctx.reject(451, "again"); }"#,
    )
    .unwrap();
    within(Duration::from_secs(2), || async {
        let body: Value = app
            .chat(ADMIN_KEY, json!({"model": "echo", "messages": []}))
            .await
            .json()
            .await
            .unwrap();
        body["error"]["message"] == "again"
    })
    .await;
}

#[tokio::test]
async fn a_changed_api_key_is_used_and_a_removed_model_is_404() {
    let upstream = Upstream::start().await;
    let app = spawn(Spawn::default().provider(
        "up",
        upstream.provider_yaml(&[("plain", "plain"), ("other", "plain")]),
    ))
    .await;
    app.chat(ADMIN_KEY, json!({"model": "plain", "messages": []}))
        .await;
    assert_eq!(
        upstream.last().headers["authorization"],
        "Bearer sk-upstream-secret"
    );

    let yaml = upstream
        .provider_yaml(&[("plain", "plain")])
        .replace("sk-upstream-secret", "sk-rotated-secret");
    std::fs::write(providers(&app).join("up.yaml"), yaml).unwrap();
    within(Duration::from_secs(2), || async {
        config(&app).await["version"] == 2
    })
    .await;
    app.chat(ADMIN_KEY, json!({"model": "plain", "messages": []}))
        .await;
    assert_eq!(
        upstream.last().headers["authorization"],
        "Bearer sk-rotated-secret"
    );
    assert_error(
        app.chat(ADMIN_KEY, json!({"model": "other", "messages": []}))
            .await,
        404,
    )
    .await;
    // The admin view never shows a secret.
    let text = app
        .get("/admin/config", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("sk-rotated-secret"));
}

#[tokio::test]
async fn admin_reload_reports_errors_and_needs_an_admin_key() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    let (_, user) = app.create_key(json!({"name": "u"})).await;
    assert_error(app.post("/admin/reload", &user).send().await.unwrap(), 403).await;
    assert_error(app.get("/admin/config", &user).send().await.unwrap(), 403).await;
    std::fs::write(
        providers(&app).join("bad.yaml"),
        "kind: nonsense\nmodels: [x]\n",
    )
    .unwrap();
    let res = app.post("/admin/reload", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 422);
    let attempt: Value = res.json().await.unwrap();
    assert_eq!(attempt["outcome"], "rolled_back");
    assert!(attempt["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("nonsense"));
}

#[tokio::test]
async fn a_deleted_folder_keeps_the_last_good_config_and_an_empty_one_is_valid() {
    let app = spawn(Spawn::default().provider("mock", MOCK).policy(
        "quota.rhai",
        r#"fn on_request(req, ctx) { ctx.reject(429, "quota"); }"#,
    ))
    .await;
    let status = || async {
        app.chat(ADMIN_KEY, json!({"model": "echo", "messages": []}))
            .await
            .status()
            .as_u16()
    };
    assert_eq!(status().await, 429);

    // Deleting either folder is an error: the running configuration stays, quota included.
    for folder in ["policies", "providers.d"] {
        let dir = app._dir.path().join(folder);
        let files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        within(Duration::from_secs(3), || async {
            let cfg = config(&app).await;
            cfg["last_reload"]["outcome"] == "rolled_back"
                && cfg["last_reload"]["errors"].to_string().contains(folder)
        })
        .await;
        assert_eq!(
            status().await,
            429,
            "{folder} deleted: the quota still holds"
        );
        std::fs::create_dir_all(&dir).unwrap();
        for (path, bytes) in &files {
            std::fs::write(path, bytes).unwrap();
        }
        within(Duration::from_secs(3), || async {
            let cfg = config(&app).await;
            cfg["last_reload"]["outcome"] != "rolled_back"
        })
        .await;
    }

    // An empty policies folder is valid: no policies.
    std::fs::remove_file(policies(&app).join("quota.rhai")).unwrap();
    within(Duration::from_secs(3), || async { status().await == 200 }).await;
}
