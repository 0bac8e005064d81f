//! Output guardrails (`ctx.guard_output`) on real replies: JSON redacted or refused, streams
//! held back so blocked or redacted text never reaches the client, in OpenAI's and Anthropic's
//! APIs, from the upstream and from the cache.

use crate::helpers::{log_entry, parse_sse, spawn, Spawn, TestApp, ADMIN_KEY};
use serde_json::json;

const GUARD: &str = r#"fn on_request(req, ctx) {
    ctx.guard_output(#{
        block: [ctx.data("blocked.txt")],
        redact: ["email", "card", ctx.regex("sk-[A-Za-z0-9]{8,}")],
        hold: 32,
    });
    if req.params.temperature == 0 { ctx.cache(60); }
}"#;

async fn guarded() -> TestApp {
    let app = spawn(Spawn {
        log_bodies: true,
        ..Spawn::default()
            .provider("mock", "kind: mock\nmodels: [echo]\n")
            .policy("guard.rhai", GUARD)
    })
    .await;
    let cfg = crate::helpers::admin_json(&app, "/admin/config").await;
    let data = std::path::Path::new(cfg["policies_dir"].as_str().unwrap()).join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("blocked.txt"), "project nightingale\n").unwrap();
    let res = app.post("/admin/reload", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    app
}

fn ask(text: &str, stream: bool) -> serde_json::Value {
    json!({"model": "mock/echo", "stream": stream, "messages": [{"role": "user", "content": text}]})
}

/// The text a client reads from an OpenAI stream, and whether it ended with `[DONE]`.
fn streamed_text(body: &str) -> (String, bool, Vec<serde_json::Value>) {
    let mut text = String::new();
    let mut done = false;
    let mut errors = Vec::new();
    for payload in parse_sse(body) {
        if payload == "[DONE]" {
            done = true;
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        if v.get("error").is_some() {
            errors.push(v);
            continue;
        }
        for choice in v["choices"].as_array().unwrap() {
            if let Some(t) = choice["delta"]["content"].as_str() {
                text.push_str(t);
            }
        }
    }
    (text, done, errors)
}

const SECRET_TEXT: &str =
    "Reach ann@example.com or pay with 4111 1111 1111 1111 using key sk-abcdefghijkl today, thanks";
const REDACTED: &str = "Reach [redacted] or pay with [redacted] using key [redacted] today, thanks";

#[actix_web::test]
async fn a_json_reply_is_redacted_or_refused() {
    let app = guarded().await;
    let res = app.chat(ADMIN_KEY, ask(SECRET_TEXT, false)).await;
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], REDACTED);
    // The request log (--log-bodies) keeps the reply as the client got it.
    let logged = log_entry(&app, &id).await["response_body"].clone();
    let logged = logged.as_str().unwrap();
    assert!(
        logged.contains(REDACTED) && !logged.contains("4111"),
        "{logged}"
    );

    let res = app
        .chat(ADMIN_KEY, ask("all about Project Nightingale here", false))
        .await;
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = crate::helpers::assert_error(res, 422).await;
    assert_eq!(body["error"]["code"], "content_blocked");
    assert!(!body.to_string().to_lowercase().contains("nightingale"));
    let entry = log_entry(&app, &id).await;
    assert_eq!(entry["status"], 422, "{entry}");
    let logged = entry["response_body"].as_str().unwrap();
    assert!(!logged.to_lowercase().contains("nightingale"), "{logged}");
    assert!(logged.contains("blocked"), "{logged}");
}

#[actix_web::test]
async fn a_stream_is_released_only_once_checked() {
    let app = guarded().await;
    let res = app.chat(ADMIN_KEY, ask(SECRET_TEXT, true)).await;
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let raw = res.text().await.unwrap();
    let (text, done, errors) = streamed_text(&raw);
    assert!(done && errors.is_empty(), "{raw}");
    assert_eq!(text.trim(), REDACTED);
    let logged = log_entry(&app, &id).await["response_body"].clone();
    assert!(!logged.to_string().contains("4111"), "{logged}");
    for secret in ["ann@", "4111", "sk-abc"] {
        assert!(!raw.contains(secret), "{secret} reached the client: {raw}");
    }

    // A blocked phrase ends the stream before any of it goes out, with no [DONE].
    let long = format!(
        "{} and then Project Nightingale is {}",
        "one two three four five six seven eight nine ten eleven twelve".repeat(3),
        "the rest of the reply".repeat(5)
    );
    let res = app.chat(ADMIN_KEY, ask(&long, true)).await;
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let raw = res.text().await.unwrap();
    let (text, done, errors) = streamed_text(&raw);
    assert!(!done, "a blocked stream must not look complete: {raw}");
    assert_eq!(errors.len(), 1, "{raw}");
    assert_eq!(errors[0]["error"]["code"], "content_blocked");
    assert!(
        text.starts_with(" one two") || text.starts_with("one two"),
        "text before it went out: {text:?}"
    );
    assert!(!raw.to_lowercase().contains("nightingale"), "{raw}");
    assert!(!raw.contains("Project"), "no part of the phrase: {raw}");
    let entry = log_entry(&app, &id).await;
    assert_eq!(entry["status"], 422, "{entry}");
}

#[actix_web::test]
async fn anthropic_clients_and_cache_hits_are_guarded_too() {
    let app = guarded().await;
    // Anthropic Messages, streamed: the text deltas are redacted.
    let res = app
        .post("/v1/messages", ADMIN_KEY)
        .json(
            &json!({"model": "mock/echo", "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": SECRET_TEXT}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let raw = res.text().await.unwrap();
    let mut text = String::new();
    // Anthropic's events: `event: NAME` then `data: {...}`.
    for payload in raw
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
    {
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        if v["type"] == "content_block_delta" {
            text.push_str(v["delta"]["text"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(text.trim(), REDACTED, "{raw}");
    assert!(raw.contains("message_stop"));
    for secret in ["ann@", "4111", "sk-abc"] {
        assert!(!raw.contains(secret), "{secret}: {raw}");
    }
    // Blocked, as JSON: Anthropic's error body.
    let res = app
        .post("/v1/messages", ADMIN_KEY)
        .json(&json!({"model": "mock/echo", "max_tokens": 100,
            "messages": [{"role": "user", "content": "project nightingale"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");

    // A cached reply is stored as the provider sent it and guarded on every replay.
    let cached = json!({"model": "mock/echo", "temperature": 0,
        "messages": [{"role": "user", "content": SECRET_TEXT}]});
    for round in 0..2 {
        let res = app.chat(ADMIN_KEY, cached.clone()).await;
        assert_eq!(res.status(), 200);
        if round == 1 {
            assert_eq!(res.headers()["x-switchboard-cache"], "hit");
        }
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"], REDACTED,
            "round {round}"
        );
        crate::helpers::cached_entries(&app, 1).await;
    }
    let mut streamed = cached.clone();
    streamed["stream"] = json!(true);
    let res = app.chat(ADMIN_KEY, streamed).await;
    assert_eq!(res.headers()["x-switchboard-cache"], "hit");
    let raw = res.text().await.unwrap();
    assert!(!raw.contains("4111"), "{raw}");
    assert_eq!(streamed_text(&raw).0.trim(), REDACTED);
}

#[actix_web::test]
async fn a_bad_guard_declaration_is_a_policy_error() {
    let app = spawn(
        Spawn::default()
            .provider("mock", "kind: mock\nmodels: [echo]\n")
            .policy(
                "guard.rhai",
                r#"fn on_request(req, ctx) { ctx.guard_output(#{ redact: ["ssn"] }); }"#,
            ),
    )
    .await;
    let res = app.chat(ADMIN_KEY, ask("hi", false)).await;
    let body = crate::helpers::assert_error(res, 500).await;
    assert_eq!(body["error"]["code"], "policy_error");
}
