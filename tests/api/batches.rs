//! Files and batches against the real server: uploads checked line by line and owned by their
//! key, batches run through the pipeline (limits wait, cancel, expiry, validation), the output
//! and error files in OpenAI's line format, and a kill -9 in the middle of a batch.

use crate::helpers::{admin_json, spawn, Spawn, TestApp, ADMIN_KEY};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const PRICED_MOCK: &str =
    "kind: mock\nmodels:\n  - name: echo\n    pricing: { input: 1.0, output: 2.0 }\n";

fn chat_line(id: &str, model: &str) -> String {
    json!({
        "custom_id": id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": format!("hello {id}")}]}
    })
    .to_string()
}

fn lines(n: usize, model: &str) -> String {
    (0..n)
        .map(|i| chat_line(&format!("req-{i}"), model) + "\n")
        .collect()
}

async fn upload(app: &TestApp, key: &str, text: &str, purpose: &str) -> reqwest::Response {
    upload_to(&app.client, &app.base, key, text, purpose).await
}

/// Uploads `text` as a file with `purpose` to the gateway at `base`.
async fn upload_to(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    text: &str,
    purpose: &str,
) -> reqwest::Response {
    let form = reqwest::multipart::Form::new()
        .text("purpose", purpose.to_string())
        .part(
            "file",
            reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name("input.jsonl"),
        );
    client
        .post(format!("{base}/v1/files"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// Uploads `text` and starts a batch of it on `/v1/chat/completions` at `base`; its id.
async fn start_batch_at(client: &reqwest::Client, base: &str, text: &str) -> String {
    let file: Value = upload_to(client, base, ADMIN_KEY, text, "batch")
        .await
        .json()
        .await
        .unwrap();
    let created: Value = client
        .post(format!("{base}/v1/batches"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().to_string()
}

/// The batch `id` as the gateway at `base` reports it.
async fn batch_at(client: &reqwest::Client, base: &str, id: &str) -> Value {
    client
        .get(format!("{base}/v1/batches/{id}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the batch at `base` until it has completed (a restarted gateway resuming it).
async fn resumed_to_completion(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    within: Duration,
) -> Value {
    let started = Instant::now();
    loop {
        let b = batch_at(client, base, id).await;
        if b["status"] == "completed" {
            return b;
        }
        assert!(started.elapsed() < within, "the batch did not resume: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn upload_ok(app: &TestApp, key: &str, text: &str) -> String {
    let res = upload(app, key, text, "batch").await;
    assert_eq!(res.status(), 200);
    let file: Value = res.json().await.unwrap();
    file["id"].as_str().unwrap().to_string()
}

async fn create_batch(app: &TestApp, key: &str, file: &str, endpoint: &str, window: &str) -> Value {
    let res = app
        .post("/v1/batches", key)
        .json(&json!({"input_file_id": file, "endpoint": endpoint, "completion_window": window, "metadata": {"job": "test"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn batch(app: &TestApp, key: &str, id: &str) -> Value {
    get_json(app, &format!("/v1/batches/{id}"), key).await
}

/// Polls the batch until its status is final.
async fn finished(app: &TestApp, key: &str, id: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let b = batch(app, key, id).await;
        if ["completed", "failed", "cancelled", "expired"]
            .contains(&b["status"].as_str().unwrap_or(""))
        {
            return b;
        }
        assert!(started.elapsed() < within, "the batch did not finish: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn content(app: &TestApp, key: &str, file: &str) -> Vec<Value> {
    let res = app
        .get(&format!("/v1/files/{file}/content"), key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn get_json(app: &TestApp, path: &str, key: &str) -> Value {
    app.get(path, key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn user_key(app: &TestApp) -> String {
    app.create_key(json!({"name": "batcher"})).await.1
}

#[actix_web::test]
async fn files_are_checked_line_by_line_owned_by_their_key_and_deleted() {
    let app = spawn(Spawn {
        max_file_bytes: Some(64 * 1024),
        ..Spawn::default().provider("mock", PRICED_MOCK)
    })
    .await;
    let (alice, bob) = (user_key(&app).await, user_key(&app).await);
    let text = lines(3, "mock/echo");
    let res = upload(&app, &alice, &text, "batch").await;
    assert_eq!(res.status(), 200);
    let file: Value = res.json().await.unwrap();
    assert_eq!(file["object"], "file");
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["filename"], "input.jsonl");
    assert_eq!(file["bytes"], text.len());
    let id = file["id"].as_str().unwrap();

    let listed: Value = get_json(&app, "/v1/files", &alice).await;
    assert_eq!(listed["data"][0]["id"], id);
    let raw = app
        .get(&format!("/v1/files/{id}/content"), &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.text().await.unwrap(), text, "the bytes as uploaded");

    // Another key sees nothing of it.
    for path in [format!("/v1/files/{id}"), format!("/v1/files/{id}/content")] {
        let res = app.get(&path, &bob).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    let res = app
        .client
        .delete(app.url(&format!("/v1/files/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let theirs: Value = get_json(&app, "/v1/files", &bob).await;
    assert_eq!(theirs["data"], json!([]));
    let res = app
        .post("/v1/batches", &bob)
        .json(&json!({"input_file_id": id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "another key's file is no file");

    // Bad files: a 400 naming the line, and nothing kept.
    let cases = [
        (
            format!("{}\nnot json\n", chat_line("a", "mock/echo")),
            "line 2",
        ),
        (
            format!(
                "{}\n{}\n",
                chat_line("a", "mock/echo"),
                chat_line("a", "mock/echo")
            ),
            "line 2",
        ),
        (
            chat_line("a", "mock/echo").replace("/v1/chat/completions", "/v1/images/generations"),
            "line 1",
        ),
        (
            chat_line("a", "mock/echo").replace("\"messages\"", "\"nessages\""),
            "line 1",
        ),
    ];
    for (bad, line) in cases {
        let res = upload(&app, &alice, &bad, "batch").await;
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(line), "{message}");
    }
    for path in [
        "/v1/files?limit=0",
        "/v1/batches?limit=101",
        "/v1/files?order=sideways",
    ] {
        let res = app.get(path, &alice).send().await.unwrap();
        assert_eq!(res.status(), 400, "{path}");
    }
    let res = app
        .get("/admin/batches?limit=1001", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = upload(&app, &alice, &text, "fine-tune").await;
    assert_eq!(res.status(), 400);
    let res = upload(&app, &alice, &lines(1000, "mock/echo"), "batch").await;
    assert_eq!(res.status(), 413, "over --max-file-bytes");
    // An upload whose file is small but which streams an endless field besides: cut off at the
    // bound, not read to the end.
    let junk = reqwest::multipart::Form::new()
        .text("purpose", "batch")
        .text("junk", "x".repeat(200 * 1024))
        .part(
            "file",
            reqwest::multipart::Part::bytes(lines(1, "mock/echo").into_bytes())
                .file_name("a.jsonl"),
        );
    let res = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(&alice)
        .multipart(junk)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        413,
        "the whole body is bounded, not only the file"
    );
    let res = app
        .post("/v1/files", &alice)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "not multipart");
    let listed: Value = get_json(&app, "/v1/files", &alice).await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "no bad upload was kept"
    );
    let leftovers: Vec<_> = std::fs::read_dir(app._dir.path().join("data/files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let res = app
        .client
        .delete(app.url(&format!("/v1/files/{id}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["deleted"], true);
    let res = app
        .get(&format!("/v1/files/{id}"), &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[actix_web::test]
async fn a_batch_of_1000_lines_runs_through_the_pipeline_with_correct_counts_and_files() {
    let app = spawn(Spawn::default().provider("mock", PRICED_MOCK)).await;
    let key = user_key(&app).await;
    // Three lines name a model nobody serves: answered 404, into the error file.
    let mut text = lines(997, "mock/echo");
    for i in 0..3 {
        text += &(chat_line(&format!("bad-{i}"), "nobody/serves-this") + "\n");
    }
    let file = upload_ok(&app, &key, &text).await;
    let created = create_batch(&app, &key, &file, "/v1/chat/completions", "24h").await;
    assert_eq!(created["object"], "batch");
    assert_eq!(created["status"], "validating");
    assert_eq!(created["metadata"]["job"], "test");
    let id = created["id"].as_str().unwrap();
    let done = finished(&app, &key, id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["request_counts"],
        json!({"total": 1000, "completed": 997, "failed": 3})
    );
    for field in ["in_progress_at", "finalizing_at", "completed_at"] {
        assert!(done[field].as_u64().is_some(), "{field}: {done}");
    }

    let output = content(&app, &key, done["output_file_id"].as_str().unwrap()).await;
    assert_eq!(output.len(), 997);
    let mut seen = HashMap::new();
    for line in &output {
        *seen
            .entry(line["custom_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
        assert_eq!(line["response"]["status_code"], 200);
        assert_eq!(line["response"]["body"]["object"], "chat.completion");
        assert!(line["error"].is_null());
        assert!(line["id"].as_str().unwrap().starts_with("batch_req_"));
    }
    assert_eq!(seen.len(), 997);
    assert!(seen.values().all(|n| *n == 1));
    // In the input's order.
    assert_eq!(output[0]["custom_id"], "req-0");
    assert_eq!(output[996]["custom_id"], "req-996");
    let errors = content(&app, &key, done["error_file_id"].as_str().unwrap()).await;
    assert_eq!(errors.len(), 3);
    for line in &errors {
        assert!(line["custom_id"].as_str().unwrap().starts_with("bad-"));
        assert_eq!(line["response"]["status_code"], 404);
        assert_eq!(line["response"]["body"]["error"]["code"], "model_not_found");
    }

    // Each line is a request of the batch's key in the log, tagged with the batch, and priced.
    let request_id = output[5]["response"]["request_id"].as_str().unwrap();
    let entry = crate::helpers::log_entry(&app, request_id).await;
    assert_eq!(entry["tags"]["batch"], id);
    let key_id = entry["key_id"].as_str().unwrap().to_string();
    let admin = admin_json(&app, &format!("/admin/batches/{id}")).await;
    assert_eq!(admin["key_id"], key_id);
    let cost = admin["cost_usd"].as_f64().unwrap();
    // Usage is written by the accounting thread: wait until it has all 1000 requests.
    let started = Instant::now();
    let billed = loop {
        let usage = admin_json(&app, "/admin/usage?group_by=tag:batch").await;
        let rows: Vec<&Value> = usage["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["group"] == id)
            .collect();
        let requests: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
        if requests == 1000 {
            break rows
                .iter()
                .map(|r| r["cost_usd"].as_f64().unwrap())
                .sum::<f64>();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "usage never counted the batch: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(cost > 0.0, "{admin}");
    assert!(
        (cost - billed).abs() < 1e-6,
        "the batch's cost {cost} is what usage billed {billed}"
    );

    // Listed, paged, and nobody else's.
    let list: Value = get_json(&app, "/v1/batches?limit=1", &key).await;
    assert_eq!(list["data"][0]["id"], id);
    assert_eq!(list["has_more"], false);
    let other = user_key(&app).await;
    let res = app
        .get(&format!("/v1/batches/{id}"), &other)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = app
        .post(&format!("/v1/batches/{id}/cancel"), &other)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let list: Value = get_json(&app, "/v1/batches", &other).await;
    assert_eq!(list["data"], json!([]));
    let res = app
        .get(
            &format!(
                "/v1/files/{}/content",
                done["output_file_id"].as_str().unwrap()
            ),
            &other,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "the output is the batch key's");
    // The admin API reads any key's batch and files (the dashboard's Batches page).
    let output_id = done["output_file_id"].as_str().unwrap();
    let admin_copy = app
        .get(&format!("/admin/files/{output_id}/content"), ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(admin_copy.lines().count(), 997);
    for path in [
        "/admin/files/file-nope/content",
        "/admin/batches/batch_nope",
        "/admin/files/../etc/content",
    ] {
        let res = app.get(path, ADMIN_KEY).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    // A finished batch cannot be cancelled; its input cannot be deleted while it runs, but can now.
    let res = app
        .post(&format!("/v1/batches/{id}/cancel"), &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
}

#[actix_web::test]
async fn a_limit_is_respected_lines_wait_for_their_window_instead_of_failing() {
    let app = spawn(Spawn::default().provider("mock", PRICED_MOCK).policy(
        "limit.rhai",
        r#"fn on_request(req, ctx) { ctx.limit("per-key", 5, 2); }"#,
    ))
    .await;
    let key = user_key(&app).await;
    let file = upload_ok(&app, &key, &lines(15, "mock/echo")).await;
    let created = create_batch(&app, &key, &file, "/v1/chat/completions", "24h").await;
    let id = created["id"].as_str().unwrap();
    let done = finished(&app, &key, id, Duration::from_secs(60)).await;
    assert_eq!(
        done["request_counts"],
        json!({"total": 15, "completed": 15, "failed": 0}),
        "{done}"
    );
    // Answered requests per 2-second window, from the log: never more than the limit.
    let logs = admin_json(&app, "/admin/logs?status=200&limit=500").await;
    let mut per_window: HashMap<u64, u32> = HashMap::new();
    for entry in logs["data"].as_array().unwrap() {
        if entry["tags"]["batch"] == id {
            *per_window
                .entry(entry["at_ms"].as_u64().unwrap() / 2000)
                .or_insert(0) += 1;
        }
    }
    assert_eq!(per_window.values().sum::<u32>(), 15);
    assert!(per_window.values().all(|n| *n <= 5), "{per_window:?}");
    assert!(
        per_window.len() >= 3,
        "15 requests at 5 per window need three windows"
    );
}

#[actix_web::test]
async fn cancel_stops_new_lines_at_once_and_finalizes_with_what_completed() {
    let app = spawn(Spawn {
        batch_concurrency_per_batch: Some(2),
        ..Spawn::default().provider(
            "mock",
            "kind: mock\nmodels: [echo]\nmock: { latency_ms: 300 }\n",
        )
    })
    .await;
    let key = user_key(&app).await;
    let file = upload_ok(&app, &key, &lines(40, "mock/echo")).await;
    let created = create_batch(&app, &key, &file, "/v1/chat/completions", "24h").await;
    let id = created["id"].as_str().unwrap();
    // Some lines answered, most not.
    let started = Instant::now();
    while batch(&app, &key, id).await["request_counts"]["completed"]
        .as_u64()
        .unwrap_or(0)
        < 2
    {
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = app
        .post(&format!("/v1/batches/{id}/cancel"), &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cancelling: Value = res.json().await.unwrap();
    assert!(["cancelling", "cancelled"].contains(&cancelling["status"].as_str().unwrap()));
    let done = finished(&app, &key, id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "cancelled");
    assert!(done["cancelled_at"].as_u64().is_some());
    let completed = done["request_counts"]["completed"].as_u64().unwrap();
    assert!((2..40).contains(&completed), "{done}");
    let output = content(&app, &key, done["output_file_id"].as_str().unwrap()).await;
    assert_eq!(
        output.len() as u64,
        completed,
        "the output holds what completed"
    );
    // Nothing more is sent once it is cancelled: the log stops growing.
    let count = || async {
        admin_json(&app, "/admin/logs?limit=500").await["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["tags"]["batch"] == id)
            .count()
    };
    // The log is written by the accounting thread (every 100 ms).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = count().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(count().await, before);
    assert_eq!(before as u64, completed);
}

#[actix_web::test]
async fn a_batch_past_its_window_expires_with_the_rest_in_the_error_file() {
    let app = spawn(Spawn {
        batch_concurrency_per_batch: Some(1),
        ..Spawn::default().provider(
            "mock",
            "kind: mock\nmodels: [echo]\nmock: { latency_ms: 400 }\n",
        )
    })
    .await;
    let key = user_key(&app).await;
    let file = upload_ok(&app, &key, &lines(20, "mock/echo")).await;
    let created = create_batch(&app, &key, &file, "/v1/chat/completions", "2s").await;
    let id = created["id"].as_str().unwrap();
    let done = finished(&app, &key, id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "expired", "{done}");
    let counts = &done["request_counts"];
    let completed = counts["completed"].as_u64().unwrap();
    assert!((1..20).contains(&completed), "{done}");
    assert_eq!(completed + counts["failed"].as_u64().unwrap(), 20);
    let errors = content(&app, &key, done["error_file_id"].as_str().unwrap()).await;
    assert_eq!(errors.len() as u64, 20 - completed);
    assert!(errors
        .iter()
        .all(|e| e["error"]["code"] == "batch_expired" && e["response"].is_null()));
}

#[actix_web::test]
async fn a_file_that_does_not_fit_the_endpoint_fails_validation_and_sends_nothing() {
    let app = spawn(Spawn::default().provider("mock", PRICED_MOCK)).await;
    let key = user_key(&app).await;
    let file = upload_ok(&app, &key, &lines(3, "mock/echo")).await;
    let created = create_batch(&app, &key, &file, "/v1/embeddings", "24h").await;
    let id = created["id"].as_str().unwrap();
    let done = finished(&app, &key, id, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["errors"]["data"][0]["line"], 1);
    assert!(done["errors"]["data"][0]["message"]
        .as_str()
        .unwrap()
        .contains("/v1/embeddings"));
    let logs = admin_json(&app, "/admin/logs").await;
    assert_eq!(logs["data"], json!([]), "nothing was sent");
    // Bad creates.
    for (body, param) in [
        (
            json!({"input_file_id": "file-nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            "input_file_id",
        ),
        (
            json!({"input_file_id": file, "endpoint": "/v1/images", "completion_window": "24h"}),
            "endpoint",
        ),
        (
            json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "1y"}),
            "completion_window",
        ),
    ] {
        let res = app
            .post("/v1/batches", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(res.json::<Value>().await.unwrap()["error"]["param"], param);
    }
}

#[actix_web::test]
async fn live_requests_are_served_while_a_batch_waits_on_a_stalled_upstream() {
    let app = spawn(Spawn::default().provider("mock", PRICED_MOCK).provider(
        "stalled",
        "kind: mock\nmodels: [slow]\nmock: { latency_ms: 20000 }\n",
    ))
    .await;
    let key = user_key(&app).await;
    let file = upload_ok(&app, &key, &lines(50, "stalled/slow")).await;
    let created = create_batch(&app, &key, &file, "/v1/chat/completions", "24h").await;
    let id = created["id"].as_str().unwrap();
    // The batch's lines are all waiting upstream; live requests do not queue behind them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        let res = app
            .chat(
                ADMIN_KEY,
                json!({"model": "mock/echo", "messages": [{"role": "user", "content": "live"}]}),
            )
            .await;
        assert_eq!(res.status(), 200);
    }
    let res = app
        .post(&format!("/v1/batches/{id}/cancel"), &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// What the upstream of the kill -9 test received: how often each `custom_id` (the prompt).
#[derive(Default)]
struct Seen(std::sync::Mutex<HashMap<String, u32>>);

async fn counting_upstream(
    seen: actix_web::web::Data<Seen>,
    body: actix_web::web::Bytes,
) -> actix_web::HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let prompt = body["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    // A little time upstream, so the kill lands with lines in flight.
    tokio::time::sleep(Duration::from_millis(20)).await;
    *seen.0.lock().unwrap().entry(prompt.clone()).or_insert(0) += 1;
    actix_web::HttpResponse::Ok().json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("re: {prompt}")}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    }))
}

/// Starts the binary on `data` (the same folder each time) and returns it with its base URL.
fn start_binary(
    base: &std::path::Path,
    upstream: std::net::SocketAddr,
) -> (crate::cli::Running, String) {
    use std::io::BufRead;
    let providers = base.join("providers.d");
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::create_dir_all(base.join("policies")).unwrap();
    std::fs::write(
        providers.join("up.yaml"),
        format!("kind: openai\nbase_url: http://{upstream}/v1\napi_key: sk-up\nmodels: [gpt]\n"),
    )
    .unwrap();
    let mut child = crate::cli::bin()
        .env("SWITCHBOARD_ADMIN_KEY", ADMIN_KEY)
        .args(["serve", "--listen", "127.0.0.1:0", "--no-watch", "--data"])
        .arg(base.join("data"))
        .arg("--providers")
        .arg(&providers)
        .arg("--policies")
        .arg(base.join("policies"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(base.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = crate::cli::Running(child);
    for line in std::io::BufReader::new(stdout).lines() {
        if let Some(addr) = line.unwrap().strip_prefix("switchboard listening on ") {
            return (running, addr.to_string());
        }
    }
    panic!(
        "the gateway exited without printing its address: {}",
        std::fs::read_to_string(base.join("stderr")).unwrap_or_default()
    );
}

#[actix_web::test]
async fn a_kill_9_mid_batch_and_a_restart_finish_it_with_every_line_once() {
    let seen = std::sync::Arc::new(Seen::default());
    let upstream = crate::helpers::mock_server(seen.clone(), counting_upstream);
    let base = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (server, url) = start_binary(base.path(), upstream.addr);
    let total = 300;
    let id = start_batch_at(&client, &url, &lines(total, "up/gpt")).await;
    // Kill it once a good part has been answered.
    let started = Instant::now();
    while batch_at(&client, &url, &id).await["request_counts"]["completed"]
        .as_u64()
        .unwrap_or(0)
        < 40
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the batch made no progress"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(server); // SIGKILL: no shutdown, nothing flushed.
    let before_restart: u32 = seen.0.lock().unwrap().values().sum();
    assert!(
        (before_restart as usize) < total,
        "the kill came too late to test anything"
    );

    let (_server, url) = start_binary(base.path(), upstream.addr);
    let done = resumed_to_completion(&client, &url, &id, Duration::from_secs(120)).await;
    assert_eq!(
        done["request_counts"],
        json!({"total": total, "completed": total, "failed": 0})
    );
    let output = client
        .get(format!(
            "{url}/v1/files/{}/content",
            done["output_file_id"].as_str().unwrap()
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut ids = crate::helpers::custom_ids(&output);
    ids.sort();
    ids.dedup();
    assert_eq!(output.lines().count(), total, "every line once");
    assert_eq!(ids.len(), total);
    // Every line reached the upstream; only those in flight at the kill (answered upstream but
    // not yet in the journal: at most the batch's concurrency, 8) can have been sent twice.
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), total);
    let twice = seen.values().filter(|n| **n > 1).count();
    assert!(seen.values().all(|n| *n <= 2), "{seen:?}");
    assert!(
        twice <= 8,
        "{twice} lines were sent again after the restart"
    );
}

#[actix_web::test]
async fn policies_see_the_batch_and_can_route_it_apart_from_live_traffic() {
    let app = spawn(
        Spawn::default()
            .provider("mock", PRICED_MOCK)
            .provider("cheap", "kind: mock\nmodels: [echo]\n")
            .policy(
                "batch.rhai",
                r#"fn on_request(req, ctx) {
                    if req.batch_id != () { ctx.route(["cheap/echo"]); ctx.tag("seen", req.batch_id); }
                }"#,
            ),
    )
    .await;
    let key = user_key(&app).await;
    let file = upload_ok(&app, &key, &lines(3, "mock/echo")).await;
    let created = create_batch(&app, &key, &file, "/v1/chat/completions", "24h").await;
    let id = created["id"].as_str().unwrap();
    let done = finished(&app, &key, id, Duration::from_secs(30)).await;
    let output = content(&app, &key, done["output_file_id"].as_str().unwrap()).await;
    let entry =
        crate::helpers::log_entry(&app, output[0]["response"]["request_id"].as_str().unwrap())
            .await;
    assert_eq!(entry["provider"], "cheap");
    assert_eq!(entry["tags"]["seen"], id);
    assert_eq!(entry["tags"]["batch"], id);
    // A live request is no batch's.
    let res = app
        .chat(
            &key,
            json!({"model": "mock/echo", "messages": [{"role": "user", "content": "live"}]}),
        )
        .await;
    assert_eq!(res.headers()["x-switchboard-provider"], "mock");
}

#[actix_web::test]
async fn a_graceful_stop_writes_the_lines_in_flight_and_a_restart_sends_none_twice() {
    let seen = std::sync::Arc::new(Seen::default());
    let upstream = crate::helpers::mock_server(seen.clone(), counting_upstream);
    let base = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (mut server, url) = start_binary(base.path(), upstream.addr);
    let total = 200;
    let id = start_batch_at(&client, &url, &lines(total, "up/gpt")).await;
    let started = Instant::now();
    while seen.0.lock().unwrap().values().sum::<u32>() < 30 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the batch made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGTERM: the lines in flight are answered and written before the process exits.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = server.0.wait().unwrap();
    assert!(exited.success(), "{exited:?}");
    let sent_before: u32 = seen.0.lock().unwrap().values().sum();
    assert!(
        (sent_before as usize) < total,
        "the stop came too late to test anything"
    );

    let (_server, url) = start_binary(base.path(), upstream.addr);
    let done = resumed_to_completion(&client, &url, &id, Duration::from_secs(60)).await;
    assert_eq!(done["request_counts"]["completed"], total);
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), total);
    assert!(
        seen.values().all(|n| *n == 1),
        "a line was sent twice across a graceful restart"
    );
}

#[actix_web::test]
async fn messages_and_responses_lines_are_answered_in_their_own_api() {
    let app = spawn(Spawn::default().provider("mock", PRICED_MOCK)).await;
    let key = user_key(&app).await;
    for (endpoint, body, check) in [
        (
            "/v1/messages",
            json!({"model": "mock/echo", "max_tokens": 50, "messages": [{"role": "user", "content": "hi there"}]}),
            "/type",
        ),
        (
            "/v1/responses",
            json!({"model": "mock/echo", "input": "hi there"}),
            "/object",
        ),
    ] {
        let mut text: String = (0..3)
            .map(|i| json!({"custom_id": format!("m{i}"), "method": "POST", "url": endpoint, "body": body}).to_string() + "\n")
            .collect();
        // A body its API refuses (no `messages` / `input`).
        text.push_str(&json!({"custom_id": "bad", "method": "POST", "url": endpoint, "body": {"model": "mock/echo"}}).to_string());
        let file = upload_ok(&app, &key, &text).await;
        let created = create_batch(&app, &key, &file, endpoint, "24h").await;
        let done = finished(
            &app,
            &key,
            created["id"].as_str().unwrap(),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(
            done["request_counts"],
            json!({"total": 4, "completed": 3, "failed": 1}),
            "{endpoint}: {done}"
        );
        let output = content(&app, &key, done["output_file_id"].as_str().unwrap()).await;
        let expected = if endpoint == "/v1/messages" {
            "message"
        } else {
            "response"
        };
        for line in &output {
            assert_eq!(
                line["response"]["body"].pointer(check).unwrap(),
                expected,
                "{line}"
            );
        }
        let errors = content(&app, &key, done["error_file_id"].as_str().unwrap()).await;
        assert_eq!(errors[0]["custom_id"], "bad");
        assert_eq!(errors[0]["response"]["status_code"], 400);
        if endpoint == "/v1/messages" {
            // Anthropic's error shape, as a Messages client gets it.
            assert_eq!(
                errors[0]["response"]["body"]["type"], "error",
                "{}",
                errors[0]
            );
        }
    }
}

#[actix_web::test]
async fn a_key_has_at_most_100_unfinished_batches() {
    let app = spawn(Spawn {
        batch_concurrency_per_batch: Some(1),
        ..Spawn::default().provider("mock", PRICED_MOCK).provider(
            "stalled",
            "kind: mock\nmodels: [slow]\nmock: { latency_ms: 20000 }\n",
        )
    })
    .await;
    let key = user_key(&app).await;
    let file = upload_ok(&app, &key, &lines(2, "stalled/slow")).await;
    for _ in 0..100 {
        create_batch(&app, &key, &file, "/v1/chat/completions", "24h").await;
    }
    let res = app
        .post("/v1/batches", &key)
        .json(&json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limit_exceeded"
    );
    // Another key is not held back by this one's.
    let other = user_key(&app).await;
    let theirs = upload_ok(&app, &other, &lines(1, "mock/echo")).await;
    create_batch(&app, &other, &theirs, "/v1/chat/completions", "24h").await;
}
