//! What scripts see, in real requests: provider health and prices (`ctx.provider`), the
//! client's address (`req.client_ip`, with and without trusted proxies), the request's text
//! and token estimate, regexes and data files, and affinity that holds across a reload.

use crate::helpers::{log_entry, spawn, spawn_with, Spawn, TestApp, ADMIN_KEY};
use serde_json::json;
use std::collections::HashMap;

const DEAD: &str = "kind: openai\nbase_url: http://127.0.0.1:9/v1\napi_key: sk-x\nmodels: [m]\nretry: { max_attempts: 1 }\nbreaker: { consecutive_failures: 2, cool_down_secs: 600 }\n";
const PRICED: &str =
    "kind: mock\nmodels:\n  - echo\n  - name: cheap\n    upstream: echo\n    pricing: { input: 0.5, output: 1.5 }\n";

async fn tags_of(app: &TestApp, res: reqwest::Response) -> serde_json::Value {
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let _ = res.text().await;
    log_entry(app, &id).await["tags"].clone()
}

fn hi(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi there"}]})
}

#[actix_web::test]
async fn scripts_see_provider_health_and_prices_as_the_router_does() {
    let app = spawn(
        Spawn::default()
            .provider("mock", PRICED)
            .provider("dead", DEAD)
            .policy(
                "facts.rhai",
                r#"fn on_request(req, ctx) {
                    if req.model != "mock/echo" { return; }
                    let mock = ctx.provider("mock");
                    ctx.tag("price", mock.models["cheap"].input.to_string());
                    ctx.tag("unpriced", (mock.models["echo"] == ()).to_string());
                    ctx.tag("kind", mock.kind);
                    let dead = ctx.provider("dead");
                    ctx.tag("dead_healthy", dead.healthy.to_string());
                    ctx.tag("dead_breaker", dead.breaker);
                    ctx.tag("dead_failures", dead.failures.to_string());
                    let names = "";
                    for p in ctx.providers() { names += p.name + ";"; }
                    ctx.tag("names", names);
                    ctx.tag("unknown", (ctx.provider("nope") == ()).to_string());
                    ctx.tag("measured", (mock.latency_ms != () && mock.ttft_ms != ()).to_string());
                }"#,
            ),
    )
    .await;
    let tags = tags_of(&app, app.chat(ADMIN_KEY, hi("mock/echo")).await).await;
    assert_eq!(tags["price"], "0.5");
    assert_eq!(tags["unpriced"], "true");
    assert_eq!(tags["kind"], "mock");
    assert_eq!(tags["dead_healthy"], "true");
    assert_eq!(tags["dead_breaker"], "closed");
    assert_eq!(tags["names"], "dead;mock;", "in name order");
    assert_eq!(tags["unknown"], "true");
    assert_eq!(tags["measured"], "false", "no call yet");

    // Two failures open the dead provider's breaker; the next script sees it.
    for _ in 0..2 {
        let res = app.chat(ADMIN_KEY, hi("dead/m")).await;
        assert!(res.status().is_server_error());
    }
    let tags = tags_of(&app, app.chat(ADMIN_KEY, hi("mock/echo")).await).await;
    assert_eq!(tags["dead_healthy"], "false", "{tags}");
    assert_eq!(tags["dead_breaker"], "open");
    assert_eq!(tags["dead_failures"], "2");
    assert_eq!(
        tags["measured"], "true",
        "the first reply's time and first byte: {tags}"
    );
}

// A day's window: windows are epoch-aligned, so a minute's could roll over between the
// requests the test expects to share one (it did, once, at a minute's turn).
const CLIENT_IP_POLICY: &str = r#"fn on_request(req, ctx) {
    ctx.tag("ip", req.client_ip);
    ctx.limit("ip:" + req.client_ip, 2, "day");
}"#;

async fn from(app: &TestApp, forwarded: Option<&str>) -> reqwest::Response {
    let mut req = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .json(&hi("mock/echo"));
    if let Some(f) = forwarded {
        req = req.header("x-forwarded-for", f);
    }
    req.send().await.unwrap()
}

#[actix_web::test]
async fn client_ip_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
    // Not trusted: a client cannot choose its address (or escape its per-IP limit).
    let app = spawn(
        Spawn::default()
            .provider("mock", "kind: mock\nmodels: [echo]\n")
            .policy("ip.rhai", CLIENT_IP_POLICY),
    )
    .await;
    let tags = tags_of(&app, from(&app, Some("203.0.113.9")).await).await;
    assert_eq!(tags["ip"], "127.0.0.1");
    let _ = from(&app, Some("203.0.113.10")).await;
    assert_eq!(
        from(&app, Some("203.0.113.11")).await.status(),
        429,
        "a forged X-Forwarded-For does not escape the per-IP limit"
    );

    // Behind a trusted proxy (here, loopback): the first untrusted address from the right.
    let (app, _) = spawn_with(Spawn {
        trusted_proxies: vec!["127.0.0.0/8".into(), "10.0.0.0/8".into()],
        ..Spawn::default()
            .provider("mock", "kind: mock\nmodels: [echo]\n")
            .policy("ip.rhai", CLIENT_IP_POLICY)
    })
    .await;
    let tags = tags_of(
        &app,
        from(&app, Some("6.6.6.6, 198.51.100.4, 10.0.0.2")).await,
    )
    .await;
    assert_eq!(
        tags["ip"], "198.51.100.4",
        "the client's claim (6.6.6.6) is not believed"
    );
    let tags = tags_of(&app, from(&app, Some("198.51.100.5")).await).await;
    assert_eq!(tags["ip"], "198.51.100.5");
    // Each client address has its own limit.
    assert_eq!(from(&app, Some("198.51.100.4")).await.status(), 200);
    assert_eq!(from(&app, Some("198.51.100.4")).await.status(), 429);
    assert_eq!(from(&app, Some("198.51.100.6")).await.status(), 200);
}

#[actix_web::test]
async fn text_tokens_regexes_and_data_files_work_in_every_inbound_api() {
    let app = spawn(
        Spawn::default()
            .provider("mock", "kind: mock\nmodels: [echo]\n")
            .policy(
                "guard.rhai",
                r#"fn on_request(req, ctx) {
                    let text = req.text();
                    let hit = ctx.data("blocked.txt").find_in(text);
                    if hit != () { ctx.reject(400, "blocked: " + hit); }
                    ctx.tag("user_text", req.text("user"));
                    ctx.tag("tokens", req.estimated_tokens.to_string());
                    let card = ctx.regex("\\b\\d{4}[ -]?\\d{4}[ -]?\\d{4}[ -]?\\d{4}\\b");
                    if card.is_match(text) { ctx.tag("card", card.replace(text, "[card]")); }
                    ctx.tag("region", ctx.data("regions.json").get(req.key.id) ?? "none");
                }"#,
            ),
    )
    .await;
    // The data folder, written after the start and picked up by a reload.
    let policies = app_policies_dir(&app).await;
    std::fs::create_dir_all(policies.join("data")).unwrap();
    std::fs::write(policies.join("data/blocked.txt"), "# terms\nnightingale\n").unwrap();
    std::fs::write(
        policies.join("data/regions.json"),
        r#"{"key_elsewhere": "eu"}"#,
    )
    .unwrap();
    let res = app.post("/admin/reload", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "mock/echo", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "pay with 4111 1111 1111 1111"}]}),
        )
        .await;
    let tags = tags_of(&app, res).await;
    assert_eq!(tags["user_text"], "pay with 4111 1111 1111 1111");
    assert_eq!(tags["card"], "be brief\npay with [card]");
    assert_eq!(
        tags["tokens"], "17",
        "4 + 2 (system) and 4 + 7 (user), as budgets estimate"
    );
    assert_eq!(tags["region"], "none");

    // The Anthropic Messages API: the same text, the same block.
    let res = app
        .post("/v1/messages", ADMIN_KEY)
        .json(&json!({"model": "mock/echo", "max_tokens": 10, "system": "sys",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "About NIGHTINGALE."}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("blocked: nightingale"));

    // Responses API and legacy completions: text is found there too.
    let res = app
        .post("/v1/responses", ADMIN_KEY)
        .json(&json!({"model": "mock/echo", "input": "nightingale?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = app
        .post("/v1/completions", ADMIN_KEY)
        .json(&json!({"model": "mock/echo", "prompt": ["fine", "Nightingale"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // A bad data file is a load error like a bad script: the reload is refused, whole.
    std::fs::write(policies.join("data/regions.json"), "{not json").unwrap();
    let res = app.post("/admin/reload", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 422);
    let attempt: serde_json::Value = res.json().await.unwrap();
    assert!(
        attempt["errors"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("regions.json"),
        "{attempt}"
    );
}

/// The policies folder of a running test gateway, from `GET /admin/config`.
async fn app_policies_dir(app: &TestApp) -> std::path::PathBuf {
    let cfg = crate::helpers::admin_json(app, "/admin/config").await;
    std::path::PathBuf::from(cfg["policies_dir"].as_str().unwrap())
}

#[actix_web::test]
async fn affinity_keeps_each_conversation_on_one_member_across_a_reload() {
    let app = spawn(
        Spawn::default()
            .provider("one", "kind: mock\nmodels: [echo]\n")
            .provider("two", "kind: mock\nmodels: [echo]\n")
            .provider("three", "kind: mock\nmodels: [echo]\n")
            .policy(
                "affinity.rhai",
                r#"fn on_request(req, ctx) {
                    ctx.route_affinity(["one/echo", "two/echo", "three/echo"], req.headers["x-conversation-id"]);
                }"#,
            ),
    )
    .await;
    async fn served(app: &TestApp, conversation: &str) -> String {
        let res = app
            .post("/v1/chat/completions", ADMIN_KEY)
            .header("x-conversation-id", conversation)
            .json(&hi("echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.headers()["x-switchboard-provider"]
            .to_str()
            .unwrap()
            .to_string()
    }
    let mut first: HashMap<String, String> = HashMap::new();
    for i in 0..24 {
        let c = format!("conversation-{i}");
        first.insert(c.clone(), served(&app, &c).await);
    }
    let members: std::collections::HashSet<&String> = first.values().collect();
    assert_eq!(
        members.len(),
        3,
        "conversations spread over the pool: {first:?}"
    );
    for (c, p) in &first {
        assert_eq!(&served(&app, c).await, p, "{c} stays");
    }
    // A reload (a new policy file beside it) changes nothing for them.
    let policies = app_policies_dir(&app).await;
    std::fs::write(
        policies.join("99-tag.rhai"),
        "fn on_request(req, ctx) { ctx.tag(\"after\", \"reload\"); }",
    )
    .unwrap();
    let res = app.post("/admin/reload", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 200);
    for (c, p) in &first {
        assert_eq!(&served(&app, c).await, p, "{c} stays across the reload");
    }
}

#[actix_web::test]
async fn simulate_orders_a_balanced_pool_as_the_next_request_would_without_taking_its_turn() {
    let app = spawn(
        Spawn::default()
            .provider("a", "kind: mock\nmodels: [echo]\n")
            .provider("b", "kind: mock\nmodels: [echo]\n")
            .policy(
                "balance.rhai",
                r#"fn on_request(req, ctx) {
                    ctx.route_balanced(["a/echo", "b/echo"], "round_robin", ["a/echo"]);
                    ctx.timeout(7);
                }"#,
            ),
    )
    .await;
    async fn simulated(app: &TestApp) -> serde_json::Value {
        app.post("/admin/policies/simulate", ADMIN_KEY)
            .json(&json!({"request": hi("echo")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
    let first = simulated(&app).await;
    assert_eq!(first["balance"]["strategy"], "round_robin", "{first}");
    assert_eq!(first["balance"]["pool"], 2);
    assert_eq!(first["timeouts"]["first_byte_secs"], 7.0);
    let next = first["targets"][0].as_str().unwrap().to_string();
    assert_eq!(
        simulated(&app).await["targets"][0],
        next.as_str(),
        "a simulation takes no turn"
    );
    let res = app.chat(ADMIN_KEY, hi("echo")).await;
    let served = res.headers()["x-switchboard-provider"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        format!("{served}/echo"),
        next,
        "the simulation named the next request's pick"
    );
    let after = simulated(&app).await;
    assert_ne!(
        after["targets"][0],
        next.as_str(),
        "the real request took its turn: {after}"
    );
}
