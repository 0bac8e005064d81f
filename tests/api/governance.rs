//! Limits and budgets: keys' own limits, reservations under concurrency, refusals that name
//! their limit, rate-limit headers, and streams whose upstream reports no usage.

use crate::helpers::{
    admin_json, assert_error, clear_of_a_minute_turn, log_entry, spawn, Spawn, ADMIN_KEY,
};
use crate::upstream::Upstream;
use serde_json::{json, Value};

const MOCK: &str = "kind: mock\nmodels:\n  - echo\n  - name: priced\n    upstream: echo\n    pricing: { input: 1000.0, output: 1000.0 }\n";

fn hi(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "a b c"}], "max_tokens": 3})
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn a_keys_own_request_limit_counts_down_in_the_headers_and_names_itself_when_used_up() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    let (id, key) = app
        .create_key(json!({"name": "ci", "limits": {"rpm": 2, "tpd": 1000}}))
        .await;
    clear_of_a_minute_turn().await;
    let first = app.chat(&key, hi("echo")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&first, "x-ratelimit-remaining-requests"), "1");
    assert!(header(&first, "x-ratelimit-reset-requests").ends_with('s'));
    assert_eq!(header(&first, "x-ratelimit-limit-tokens"), "1000");
    // Right after admission: this request's estimate (9) is held.
    assert_eq!(header(&first, "x-ratelimit-remaining-tokens"), "991");
    let second = app.chat(&key, hi("echo")).await;
    assert_eq!(header(&second, "x-ratelimit-remaining-requests"), "0");
    // The first settled at its real 6 tokens: 1000 - 6 - 9.
    assert_eq!(header(&second, "x-ratelimit-remaining-tokens"), "985");

    let refused = app.chat(&key, hi("echo")).await;
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body = assert_error(refused, 429).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("request limit `key:ci rpm` of 2 per minute is used up (2 used, 0 remaining); resets in "),
        "{message}"
    );
    // The admin API shows each limit's use.
    let view = admin_json(&app, &format!("/admin/keys/{id}")).await;
    let uses: Vec<(String, u64, u64)> = view["limit_use"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["current"].as_u64().unwrap(),
                l["remaining"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        uses,
        vec![("key:ci rpm".into(), 2, 0), ("key:ci tpd".into(), 12, 988)]
    );
    // Another key is not limited by this one's limit.
    let (_, other) = app.create_key(json!({"name": "other"})).await;
    let free = app.chat(&other, hi("echo")).await;
    assert_eq!(free.status(), 200);
    assert!(free.headers().get("x-ratelimit-limit-requests").is_none());
}

#[tokio::test]
async fn max_parallel_admits_that_many_requests_in_flight_and_frees_the_slots_after() {
    let upstream = Upstream::start().await;
    let app = spawn(Spawn::default().provider(
        "up",
        upstream.provider_yaml(&[("gated", "gated"), ("plain", "plain")]),
    ))
    .await;
    let (_, key) = app
        .create_key(json!({"name": "batch", "limits": {"max_parallel": 2}}))
        .await;
    // Two streams in flight: their upstream holds them after the first chunk.
    let mut held = hi("gated");
    held["stream"] = json!(true);
    let a = app.chat(&key, held.clone()).await;
    let b = app.chat(&key, held.clone()).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let calls = (0..8).map(|_| app.chat(&key, hi("plain")));
    for res in futures_util::future::join_all(calls).await {
        let body = assert_error(res, 429).await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("`key:batch max_parallel`: 2 requests in flight"),
            "{message}"
        );
    }
    upstream.release();
    upstream.release();
    let _ = (a.bytes().await, b.bytes().await);
    // Both slots were given back when the streams ended.
    let first = app.chat(&key, hi("plain")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(app.chat(&key, hi("plain")).await.status(), 200);
}

#[tokio::test]
async fn concurrent_streams_never_take_a_token_budget_past_its_limit() {
    let app = spawn(Spawn::default().provider("mock", MOCK).policy(
        "budget.rhai",
        r#"fn on_request(req, ctx) { ctx.token_limit("shared", 100, "day"); }"#,
    ))
    .await;
    let mut body = hi("echo");
    body["stream"] = json!(true);
    let calls = (0..50).map(|_| {
        let body = body.clone();
        let app = &app;
        async move {
            let res = app.chat(ADMIN_KEY, body).await;
            let status = res.status().as_u16();
            // Read the whole stream: the request settles when it ends.
            let _ = res.bytes().await;
            status
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let served = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(served >= 1);
    // Each served stream used 6 tokens and reserved 9: what was served fits the budget.
    let simulated: Value = app
        .post("/admin/policies/simulate", ADMIN_KEY)
        .json(&json!({"request": hi("echo")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let budget = &simulated["token_limits"][0];
    assert_eq!(budget["name"], "shared");
    let used = budget["current"].as_u64().unwrap();
    assert_eq!(used, served * 6, "every served stream charged its real use");
    assert!(used <= 100, "used {used} of 100");
    assert_eq!(
        budget["reserved"], 0,
        "nothing held once every stream ended"
    );
}

#[tokio::test]
async fn a_stream_without_usage_is_charged_an_estimate_and_marked_so() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider(
                "up",
                upstream.provider_yaml(&[("quiet", "stream-no-usage")]),
            )
            .policy(
                "budget.rhai",
                r#"fn on_request(req, ctx) { ctx.token_limit("t", 1000, "day"); }"#,
            ),
    )
    .await;
    let mut body = hi("quiet");
    body["stream"] = json!(true);
    let res = app.chat(ADMIN_KEY, body).await;
    assert_eq!(res.status(), 200);
    let id = header(&res, "x-request-id").to_string();
    let _ = res.bytes().await;
    let entry = log_entry(&app, &id).await;
    assert_eq!(entry["usage_estimated"], true, "{entry}");
    // "one two three" is 13 bytes: 4 tokens; the prompt's estimate is 6.
    assert_eq!(entry["completion_tokens"], 4);
    assert_eq!(entry["total_tokens"], 10);
    let usage = admin_json(&app, "/admin/usage").await;
    assert_eq!(usage["totals"]["estimated"], 1, "{usage}");
}

#[tokio::test]
async fn a_cost_budget_refuses_what_its_estimate_would_overspend_and_never_resets_in_a_lifetime() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    // priced: $1000 per million tokens either way; a request estimates 6 + 3 = 9 tokens,
    // $0.009, and uses 6, $0.006.
    let (_, key) = app
        .create_key(json!({"name": "spender", "limits": {"budget_usd_total": 0.02}}))
        .await;
    assert_eq!(app.chat(&key, hi("priced")).await.status(), 200);
    assert_eq!(app.chat(&key, hi("priced")).await.status(), 200);
    // $0.012 used; $0.012 + $0.009 > $0.02.
    let refused = app.chat(&key, hi("priced")).await;
    assert!(
        refused.headers().get("retry-after").is_none(),
        "a lifetime budget never resets"
    );
    let body = assert_error(refused, 429).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("cost budget `key:spender budget_usd_total` of $0.02 in all: $0.012 used or reserved, $0.008 remaining, this request needs about $0.009; it never resets"),
        "{message}"
    );
    // An unpriced model costs nothing and is still served.
    assert_eq!(app.chat(&key, hi("echo")).await.status(), 200);
}

#[tokio::test]
async fn bad_limits_are_refused_with_the_field_named() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    let res = app
        .post("/admin/keys", ADMIN_KEY)
        .json(&json!({"name": "x", "limits": {"budget_usd_day": -1}}))
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 400).await;
    assert_eq!(body["error"]["param"], "limits");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("budget_usd_day"));
    let res = app
        .post("/admin/keys", ADMIN_KEY)
        .json(&json!({"name": "x", "limits": {"rps": 1}}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400).await;
}

#[tokio::test]
async fn a_hard_token_budget_ends_a_stream_before_it_passes_the_limit() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    let (id, key) = app
        .create_key(json!({"name": "capped", "limits": {"tpd": 30, "hard": true}}))
        .await;
    // 20 words, 80 bytes: the prompt is estimated at 20 + 4 tokens; with max_tokens 2 the
    // request reserves 26 of 30, so it is admitted. The mock echoes all 20 words, one a chunk.
    let words = "aaa ".repeat(20);
    let body = json!({
        "model": "echo",
        "stream": true,
        "max_tokens": 2,
        "messages": [{"role": "user", "content": words.trim_end()}]
    });
    let res = app.chat(&key, body).await;
    assert_eq!(res.status(), 200);
    let request_id = header(&res, "x-request-id").to_string();
    let payloads = crate::helpers::sse_payloads(res).await;
    let last = payloads.last().unwrap();
    assert!(last.contains("\"code\":\"budget_exceeded\""), "{last}");
    assert!(last.contains("`key:capped tpd`"), "{last}");
    assert!(
        !payloads.iter().any(|p| p == "[DONE]"),
        "no [DONE] after a cut"
    );
    let words_sent: usize = payloads
        .iter()
        .filter(|p| p.contains("\"content\":\"") && p.contains("aaa"))
        .count();
    assert!(
        (1..20).contains(&words_sent),
        "cut mid-way: {words_sent} words"
    );

    let entry = log_entry(&app, &request_id).await;
    assert_eq!(entry["status"], 429);
    assert_eq!(entry["usage_estimated"], true);
    let charged = entry["total_tokens"].as_u64().unwrap();
    assert!(charged <= 30, "charged {charged} of a hard 30");
    let view = admin_json(&app, &format!("/admin/keys/{id}")).await;
    assert_eq!(view["limit_use"][0]["current"], charged);
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_window_keeps_what_was_used() {
    let data = tempfile::tempdir().unwrap();
    let start = || spawn(Spawn::default().provider("mock", MOCK).data(data.path()));
    let app = start().await;
    let (id, key) = app
        .create_key(
            json!({"name": "kept", "limits": {"rpd": 10, "tpd": 1000, "budget_usd_month": 1.0}}),
        )
        .await;
    for _ in 0..2 {
        assert_eq!(app.chat(&key, hi("priced")).await.status(), 200);
    }
    let before = admin_json(&app, &format!("/admin/keys/{id}")).await["limit_use"].clone();
    app.stop().await;
    crate::helpers::wait_until_store_free(data.path()).await;

    let app = start().await;
    let after = admin_json(&app, &format!("/admin/keys/{id}")).await["limit_use"].clone();
    assert_eq!(before, after);
    // 2 requests, 12 tokens, $0.012: the next request counts on from there.
    let current: Vec<u64> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["current"].as_u64().unwrap())
        .collect();
    assert_eq!(current, vec![2, 12, 12_000]);
    let res = app.chat(&key, hi("priced")).await;
    assert_eq!(header(&res, "x-ratelimit-remaining-requests"), "7");
}

#[tokio::test]
async fn a_request_must_fit_its_teams_limits_as_well_as_its_keys() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    let team: Value = app
        .post("/admin/teams", ADMIN_KEY)
        .json(&json!({"name": "research", "limits": {"rpm": 3}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let team_id = team["id"].as_str().unwrap();
    // Two keys with room of their own share the team's 3 requests a minute.
    let (_, a) = app
        .create_key(json!({"name": "a", "team": team_id, "limits": {"rpm": 10}}))
        .await;
    let (_, b) = app.create_key(json!({"name": "b", "team": team_id})).await;
    clear_of_a_minute_turn().await;
    assert_eq!(app.chat(&a, hi("echo")).await.status(), 200);
    assert_eq!(app.chat(&b, hi("echo")).await.status(), 200);
    let third = app.chat(&a, hi("echo")).await;
    // The tightest request limit is the team's: 1 left of 3 (the key's has 8 of 10).
    assert_eq!(header(&third, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&third, "x-ratelimit-remaining-requests"), "0");
    let body = assert_error(app.chat(&b, hi("echo")).await, 429).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`team:research rpm` of 3 per minute"),
        "{message}"
    );
    // A key outside the team is not held back by it.
    let (_, free) = app.create_key(json!({"name": "free"})).await;
    assert_eq!(app.chat(&free, hi("echo")).await.status(), 200);
}

#[tokio::test]
async fn a_hard_cost_budget_ends_a_stream_at_what_it_can_pay_for() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    // priced: $1000 per million tokens, $0.001 a token. $0.03 pays for 30 tokens; the prompt
    // is estimated at 24 and the request reserves 26 ($0.026), so it is admitted.
    let (id, key) = app
        .create_key(
            json!({"name": "cost-capped", "limits": {"budget_usd_total": 0.03, "hard": true}}),
        )
        .await;
    let words = "aaa ".repeat(20);
    let body = json!({
        "model": "priced",
        "stream": true,
        "max_tokens": 2,
        "messages": [{"role": "user", "content": words.trim_end()}]
    });
    let res = app.chat(&key, body).await;
    assert_eq!(res.status(), 200);
    let payloads = crate::helpers::sse_payloads(res).await;
    let last = payloads.last().unwrap();
    assert!(last.contains("\"code\":\"budget_exceeded\""), "{last}");
    assert!(
        last.contains("`key:cost-capped budget_usd_total`"),
        "{last}"
    );
    let view = admin_json(&app, &format!("/admin/keys/{id}")).await;
    let spent = view["limit_use"][0]["current"].as_u64().unwrap();
    assert!(spent <= 30_000, "spent {spent} micro-USD of a hard 30,000");
    assert!(spent > 24_000, "the streamed words were charged: {spent}");
}

/// The key list reads every key's limits at once; each key still gets its own.
#[tokio::test]
async fn the_key_list_gives_each_key_its_own_limits_use() {
    let app = spawn(Spawn::default().provider("mock", MOCK)).await;
    let (a, a_key) = app
        .create_key(json!({"name": "a", "limits": {"rpd": 5}}))
        .await;
    let (b, _) = app.create_key(json!({"name": "b"})).await;
    let (c, c_key) = app
        .create_key(json!({"name": "c", "limits": {"rpm": 3, "rpd": 9}}))
        .await;
    let hi = json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]});
    clear_of_a_minute_turn().await;
    for key in [&a_key, &c_key, &c_key] {
        assert_eq!(app.chat(key, hi.clone()).await.status(), 200);
    }
    let list = admin_json(&app, "/admin/keys").await;
    let uses = |id: &str| -> Vec<(String, u64, u64)> {
        let key = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap();
        key["limit_use"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u["name"].as_str().unwrap().to_string(),
                    u["max"].as_u64().unwrap(),
                    u["current"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(uses(&a), vec![("key:a rpd".to_string(), 5, 1)]);
    assert!(uses(&b).is_empty());
    assert_eq!(
        uses(&c),
        vec![
            ("key:c rpm".to_string(), 3, 2),
            ("key:c rpd".to_string(), 9, 2)
        ]
    );
}
