//! Messages and Responses clients through the one pipeline: keys, policies, limits and budgets
//! apply to them as to chat clients; errors come back in each client's own shape; Anthropic
//! providers get a Messages request as it came; stored responses continue conversations and
//! belong to the key that made them.

use crate::anthropic_upstream;
use crate::helpers::{admin_json, clear_of_a_minute_turn, spawn, Spawn, ADMIN_KEY};
use serde_json::{json, Value};

const MOCK: &str = "kind: mock\nmodels: [echo]\n";

fn messages_body(text: &str) -> Value {
    json!({"model": "mock/echo", "max_tokens": 50, "messages": [{"role": "user", "content": text}]})
}

fn responses_body(text: &str) -> Value {
    json!({"model": "mock/echo", "input": text})
}

fn chat_body(text: &str) -> Value {
    json!({"model": "mock/echo", "messages": [{"role": "user", "content": text}]})
}

/// A Responses request made with the admin key, its JSON reply.
async fn respond(app: &crate::helpers::TestApp, body: Value) -> Value {
    app.post("/v1/responses", ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The same question in each API: (path, body).
fn each_api(text: &str) -> [(&'static str, Value); 3] {
    [
        ("/v1/chat/completions", chat_body(text)),
        ("/v1/messages", messages_body(text)),
        ("/v1/responses", responses_body(text)),
    ]
}

#[tokio::test]
async fn messages_clients_authenticate_with_x_api_key_and_get_anthropic_errors() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    let ok = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", ADMIN_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&messages_body("hello there"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let message: Value = ok.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["text"], "hello there");

    let cases = [
        (None, messages_body("x"), 401, "authentication_error"),
        (
            Some("sk-wrong"),
            messages_body("x"),
            401,
            "authentication_error",
        ),
        (
            Some(ADMIN_KEY),
            json!({"model": "mock/echo", "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
        (
            Some(ADMIN_KEY),
            json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not_found_error",
        ),
    ];
    for (key, body, status, kind) in cases {
        let mut req = app.client.post(app.url("/v1/messages")).json(&body);
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), status, "{body}");
        assert_eq!(res.headers()["x-switchboard-attempts"], "0");
        let error: Value = res.json().await.unwrap();
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["error"]["type"], kind, "{error}");
        assert!(error["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(error.get("param").is_none());
    }
}

#[tokio::test]
async fn a_policy_a_limit_and_a_budget_apply_the_same_whatever_the_api() {
    let policy = r#"
fn on_request(req, ctx) {
    let last = req.messages[req.messages.len() - 1].content;
    if last.contains("forbidden") { ctx.reject(403, "not that"); }
    ctx.tag("format", req.format);
}
"#;
    let app = spawn(
        Spawn::default()
            .provider("mock", MOCK)
            .policy("10-guard.rhai", policy),
    )
    .await;
    // The policy sees every API's request in the chat form and refuses each the same way.
    for (path, body) in each_api("a forbidden thing") {
        let res = app.post(path, ADMIN_KEY).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 403, "{path}");
        let error: Value = res.json().await.unwrap();
        if path == "/v1/messages" {
            assert_eq!(error["error"]["type"], "permission_error");
        }
        assert_eq!(error["error"]["message"], "not that", "{path}");
    }
    // One request limit counts requests of every API.
    let (_, key) = app
        .create_key(json!({"name": "mixed", "limits": {"rpm": 3}}))
        .await;
    clear_of_a_minute_turn().await;
    for (path, body) in each_api("hello") {
        let res = app.post(path, &key).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert!(res.headers().contains_key("x-ratelimit-remaining-requests"));
    }
    for (path, body) in each_api("hello") {
        let res = app.post(path, &key).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 429, "{path}");
        assert!(res.headers().contains_key("retry-after"));
        let error: Value = res.json().await.unwrap();
        // Both shapes keep the type at `error.type`; Anthropic's says `type: error` above it.
        assert_eq!(
            error["error"]["type"], "rate_limit_error",
            "{path}: {error}"
        );
        assert_eq!(
            error["type"] == "error",
            path == "/v1/messages",
            "{path}: {error}"
        );
    }
    // A token budget is charged by each API's requests alike: three requests of two words,
    // echoed, are 4 tokens each with the mock (2 prompt + 2 completion).
    let (key_id, key) = app
        .create_key(json!({"name": "budget", "limits": {"tpd": 100000}}))
        .await;
    for (path, body) in each_api("hello world") {
        let res = app.post(path, &key).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let _ = res.bytes().await;
    }
    let view = admin_json(&app, &format!("/admin/keys/{key_id}")).await;
    let used = view["limit_use"][0]["current"].as_u64().unwrap();
    assert_eq!(used, 12, "{view}");
    // The log names each request's API.
    let mut formats = Vec::new();
    for _ in 0..100 {
        let logs = admin_json(&app, "/admin/logs?limit=50").await;
        formats = logs["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["key_id"] == key_id.as_str())
            .map(|e| e["format"].as_str().unwrap_or("").to_string())
            .collect();
        if formats.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    formats.sort();
    assert_eq!(formats, ["chat_completions", "messages", "responses"]);
}

#[tokio::test]
async fn an_anthropic_provider_gets_a_messages_request_byte_for_byte_with_its_headers() {
    let upstream = anthropic_upstream::start().await;
    let app =
        spawn(Spawn::default().provider("claude", anthropic_upstream::provider_yaml(&upstream)))
            .await;
    // Odd but valid JSON a translation would not keep: number forms, escapes, key order,
    // thinking, cache_control, a field no one knows yet.
    let sent = r#"{"max_tokens":100,"temperature":5e-1,"model":"claude/text","thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":[{"type":"text","text":"caf\u00e9","cache_control":{"type":"ephemeral"}}]}],"future":[1,2.50]}"#;
    let res = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", ADMIN_KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14")
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let reply = res.text().await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap(),
        serde_json::from_str::<Value>(anthropic_upstream::MESSAGE_TEXT).unwrap(),
        "the reply comes back as Anthropic sent it"
    );
    let got = upstream.last();
    assert_eq!(
        got.raw,
        sent.replace(r#""model":"claude/text","#, "")
            .replacen('{', r#"{"model":"text","#, 1),
        "only the model id changed"
    );
    assert_eq!(got.headers["anthropic-version"], "2023-06-01");
    assert_eq!(
        got.headers["anthropic-beta"],
        "interleaved-thinking-2025-05-14"
    );
    assert_eq!(
        got.headers["x-api-key"], "sk-ant-secret",
        "the provider's own key"
    );
}

#[tokio::test]
async fn count_tokens_is_the_providers_count_or_the_gateways_estimate() {
    let upstream = anthropic_upstream::start().await;
    let gemini = crate::gemini_upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("claude", anthropic_upstream::provider_yaml(&upstream))
            .provider("gem", crate::gemini_upstream::provider_yaml(&gemini))
            .provider("mock", MOCK),
    )
    .await;
    let count = |model: &str| {
        app.client
            .post(app.url("/v1/messages/count_tokens"))
            .header("x-api-key", ADMIN_KEY)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "one two three four"}]}))
            .send()
    };
    let exact = count("claude/text").await.unwrap();
    assert_eq!(exact.status(), 200);
    assert_eq!(exact.headers()["x-switchboard-token-count"], "exact");
    let body: Value = exact.json().await.unwrap();
    assert_eq!(body["input_tokens"], 17, "the upstream's count");
    assert!(upstream.last().path.ends_with("/messages/count_tokens"));
    assert_eq!(upstream.last().body["model"], "text");

    let gemini_count = count("gem/text").await.unwrap();
    assert_eq!(gemini_count.headers()["x-switchboard-token-count"], "exact");
    let body: Value = gemini_count.json().await.unwrap();
    assert_eq!(body["input_tokens"], 23, "Gemini's countTokens");
    let sent = gemini.last();
    assert!(
        sent.path.ends_with("/models/text:countTokens"),
        "{}",
        sent.path
    );
    assert_eq!(sent.body["generateContentRequest"]["model"], "models/text");
    assert_eq!(
        sent.body["generateContentRequest"]["contents"][0]["parts"][0]["text"],
        "one two three four"
    );

    let estimate = count("mock/echo").await.unwrap();
    assert_eq!(estimate.headers()["x-switchboard-token-count"], "estimate");
    let body: Value = estimate.json().await.unwrap();
    // 18 bytes of text at 4 a token, rounded up, plus 4 for the message.
    assert_eq!(body["input_tokens"], 9);

    let unknown = count("nope").await.unwrap();
    assert_eq!(unknown.status(), 404);
    let error: Value = unknown.json().await.unwrap();
    assert_eq!(error["error"]["type"], "not_found_error");

    // A count is a request: a key's request limit applies (in Anthropic's error shape), and
    // its token budget is not charged.
    let (_, limited) = app
        .create_key(json!({"name": "counter", "limits": {"rpm": 2, "tpd": 5}}))
        .await;
    let count_as = |key: &str| {
        app.client
            .post(app.url("/v1/messages/count_tokens"))
            .header("x-api-key", key)
            .json(&json!({"model": "claude/text", "messages": [{"role": "user", "content": "one two three four"}]}))
            .send()
    };
    clear_of_a_minute_turn().await;
    for _ in 0..2 {
        assert_eq!(count_as(&limited).await.unwrap().status(), 200);
    }
    let refused = count_as(&limited).await.unwrap();
    assert_eq!(refused.status(), 429);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error", "{error}");
    let calls = upstream.received().len();
    assert_eq!(count_as(&limited).await.unwrap().status(), 429);
    assert_eq!(
        upstream.received().len(),
        calls,
        "a refused count reaches no provider"
    );
}

#[tokio::test]
async fn stored_responses_continue_conversations_and_belong_to_their_key() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    let first = respond(
        &app,
        json!({"model": "mock/echo", "input": "first turn", "instructions": "Be brief."}),
    )
    .await;
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["output"][0]["content"][0]["text"], "first turn");
    assert_eq!(first["instructions"], "Be brief.");

    // The mock echoes the last user message and counts every prompt word: the stored turn
    // ("first turn", and the reply "first turn") is sent before the new input.
    let second = respond(
        &app,
        json!({"model": "mock/echo", "input": "second", "previous_response_id": id}),
    )
    .await;
    assert_eq!(second["output"][0]["content"][0]["text"], "second");
    assert_eq!(second["previous_response_id"], id.as_str());
    assert_eq!(second["usage"]["input_tokens"], 5, "{second}");

    let got: Value = app
        .get(&format!("/v1/responses/{id}"), ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, first);

    // Another key: as if it did not exist.
    let (_, other) = app.create_key(json!({"name": "other"})).await;
    for res in [
        app.get(&format!("/v1/responses/{id}"), &other)
            .send()
            .await
            .unwrap(),
        app.post("/v1/responses", &other)
            .json(&json!({"model": "mock/echo", "input": "x", "previous_response_id": id}))
            .send()
            .await
            .unwrap(),
        app.client
            .delete(app.url(&format!("/v1/responses/{id}")))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(res.status(), 404);
        let error: Value = res.json().await.unwrap();
        assert_eq!(error["error"]["code"], "response_not_found");
    }
    // `store: false` keeps nothing.
    let unstored = respond(
        &app,
        json!({"model": "mock/echo", "input": "x", "store": false}),
    )
    .await;
    let res = app
        .get(
            &format!("/v1/responses/{}", unstored["id"].as_str().unwrap()),
            ADMIN_KEY,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // Deleted by its key: gone.
    let deleted = app
        .client
        .delete(app.url(&format!("/v1/responses/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let res = app
        .get(&format!("/v1/responses/{id}"), ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn a_cached_reply_is_replayed_in_the_api_it_is_asked_in() {
    let app = spawn(Spawn::default().provider("mock", MOCK).policy(
        "10-cache.rhai",
        "fn on_request(req, ctx) { ctx.cache(60); }",
    ))
    .await;
    let first = app.chat(ADMIN_KEY, chat_body("cache me")).await;
    assert_eq!(first.headers()["x-switchboard-cache"], "miss");
    let _ = first.bytes().await;
    crate::helpers::cached_entries(&app, 1).await;
    let res = app
        .post("/v1/responses", ADMIN_KEY)
        .json(&responses_body("cache me"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-switchboard-cache"], "hit");
    let response: Value = res.json().await.unwrap();
    assert_eq!(response["output"][0]["content"][0]["text"], "cache me");
    let res = app
        .post("/v1/messages", ADMIN_KEY)
        .json(&json!({"model": "mock/echo", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "cache me"}]}))
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    assert!(text.starts_with("event: message_start"), "{text}");
    let streamed: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed, "cache me", "{text}");
    assert!(
        text.trim_end()
            .ends_with(r#"data: {"type":"message_stop"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_conversation_continued_by_id_is_bounded_like_a_whole_body() {
    let app = spawn(Spawn {
        body_limit: 4096,
        ..Spawn::default().provider("mock", MOCK)
    })
    .await;
    let words = "word ".repeat(150); // 750 bytes, echoed back: 1.5 KB a turn
    let mut previous: Option<String> = None;
    let mut refused = None;
    for turn in 0..6 {
        let mut body = json!({"model": "mock/echo", "input": words});
        if let Some(id) = &previous {
            body["previous_response_id"] = json!(id);
        }
        let res = app
            .post("/v1/responses", ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        if res.status() == 413 {
            refused = Some((turn, res.json::<Value>().await.unwrap()));
            break;
        }
        assert_eq!(res.status(), 200, "turn {turn}");
        let response: Value = res.json().await.unwrap();
        previous = Some(response["id"].as_str().unwrap().to_string());
    }
    let (turn, error) = refused.expect("the conversation outgrew the body limit");
    assert!(
        turn >= 2,
        "each request alone is well within the limit (turn {turn})"
    );
    assert_eq!(error["error"]["code"], "payload_too_large");
    assert_eq!(error["error"]["param"], "previous_response_id");
    // A new conversation still works.
    let res = app
        .post("/v1/responses", ADMIN_KEY)
        .json(&json!({"model": "mock/echo", "input": words}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// A Messages history with a thinking block: what the chat form cannot carry.
fn with_thinking(model: &str) -> Value {
    json!({
        "model": model, "max_tokens": 50,
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
                {"type": "text", "text": "ok"}
            ]},
            {"role": "user", "content": "second"}
        ]
    })
}

#[tokio::test]
async fn what_the_chat_form_cannot_carry_is_refused_or_dropped_as_the_provider_says() {
    let upstream = anthropic_upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("strict", "kind: mock\nmodels: [echo]\n")
            .provider(
                "lenient",
                "kind: mock\nunsupported_params: drop\nmodels: [echo]\n",
            )
            .provider("claude", anthropic_upstream::provider_yaml(&upstream)),
    )
    .await;
    let send = |body: Value| {
        app.client
            .post(app.url("/v1/messages"))
            .header("x-api-key", ADMIN_KEY)
            .json(&body)
            .send()
    };
    let refused = send(with_thinking("strict/echo")).await.unwrap();
    assert_eq!(refused.status(), 400);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("messages[1].content[0]") && message.contains("strict"),
        "{message}"
    );

    let dropped = send(with_thinking("lenient/echo")).await.unwrap();
    assert_eq!(dropped.status(), 200);
    assert_eq!(
        dropped.headers()["x-switchboard-dropped-params"],
        "messages[1].content[0]"
    );
    let message: Value = dropped.json().await.unwrap();
    assert_eq!(message["content"][0]["text"], "second");

    // Anthropic takes it as it came: the thinking block and its signature arrive.
    let passed = send(with_thinking("claude/text")).await.unwrap();
    assert_eq!(passed.status(), 200);
    assert_eq!(
        upstream.last().body["messages"][1]["content"][0]["signature"],
        "c2ln"
    );
}

#[tokio::test]
async fn a_messages_request_a_policy_changed_goes_to_anthropic_translated() {
    let upstream = anthropic_upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("claude", anthropic_upstream::provider_yaml(&upstream))
            .policy(
                "10-cool.rhai",
                r#"fn on_request(req, ctx) { if req.format == "messages" { req.params.temperature = 0.1; } }"#,
            ),
    )
    .await;
    let res = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", ADMIN_KEY)
        .header("anthropic-beta", "some-beta")
        .json(
            &json!({"model": "claude/text", "max_tokens": 50, "top_k": 5,
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let message: Value = res.json().await.unwrap();
    assert_eq!(message["type"], "message", "{message}");
    let sent = upstream.last();
    assert_eq!(sent.body["temperature"], 0.1, "the policy's change arrived");
    assert_eq!(
        sent.body["top_k"], 5,
        "the client's own field, through the chat form"
    );
    assert_eq!(sent.headers["anthropic-beta"], "some-beta");
}

#[tokio::test]
async fn hostile_bodies_get_a_clear_400_in_each_api() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    let bodies = [
        ("/v1/messages", json!([1, 2])),
        (
            "/v1/messages",
            json!({"model": "mock/echo", "max_tokens": 5, "messages": "hi"}),
        ),
        (
            "/v1/messages",
            json!({"model": "mock/echo", "max_tokens": -1, "messages": [{"role": "user", "content": "x"}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "mock/echo", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "mock/echo", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]}),
        ),
        ("/v1/responses", json!("just a string")),
        ("/v1/responses", json!({"model": "mock/echo"})),
        (
            "/v1/responses",
            json!({"model": "mock/echo", "input": [{"type": "mystery"}]}),
        ),
        (
            "/v1/responses",
            json!({"model": "mock/echo", "input": "x", "tools": [{"type": "web_search"}]}),
        ),
        (
            "/v1/responses",
            json!({"model": "mock/echo", "input": "x", "previous_response_id": 7}),
        ),
        (
            "/v1/responses",
            json!({"model": "mock/echo", "input": "x", "background": true}),
        ),
    ];
    for (path, body) in bodies {
        let res = app.post(path, ADMIN_KEY).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 400, "{path} {body}");
        assert_eq!(
            res.headers()["x-switchboard-attempts"],
            "0",
            "{path} {body}"
        );
        let error: Value = res.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "{path} {body}: {error}");
    }
    // Nothing was logged as served, and the gateway still answers.
    let ok = app
        .post("/v1/messages", ADMIN_KEY)
        .json(&messages_body("still here"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_stream_that_breaks_ends_with_each_apis_error_event_never_as_complete() {
    let anthropic = anthropic_upstream::start().await;
    let gemini = crate::gemini_upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("claude", anthropic_upstream::provider_yaml(&anthropic))
            .provider("gem", crate::gemini_upstream::provider_yaml(&gemini)),
    )
    .await;
    let stream = |path: &'static str, model: &str| {
        let body = if path == "/v1/messages" {
            json!({"model": model, "max_tokens": 50, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]})
        } else {
            json!({"model": model, "stream": true, "input": "hi"})
        };
        app.post(path, ADMIN_KEY).json(&body).send()
    };
    for (path, model) in [
        ("/v1/messages", "claude/stream-error"), // passed through: Anthropic's own error event
        ("/v1/messages", "gem/stream-error"),    // translated
        ("/v1/responses", "claude/stream-error"),
        ("/v1/responses", "gem/stream-error"),
    ] {
        let res = stream(path, model).await.unwrap();
        assert_eq!(res.status(), 200, "{path} {model}");
        let text = res.text().await.unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        let last = *names.last().unwrap();
        if path == "/v1/messages" {
            assert_eq!(last, "error", "{model}: {names:?}");
            assert!(!names.contains(&"message_stop"), "{model}: {names:?}");
            assert!(text.contains("overloaded"), "{model}: {text}");
        } else {
            assert_eq!(last, "response.failed", "{model}: {names:?}");
            assert!(!names.contains(&"response.completed"), "{model}: {names:?}");
        }
        assert!(
            text.contains("Hel"),
            "the text before the break was sent: {text}"
        );
    }
}
