//! Prompt caching across every path: what each kind of upstream reports as read from or
//! written to its prompt cache reaches the client's usage, the request log, `res.usage` in
//! `on_response`, the usage roll-ups, and the cost at the model's `cache_read` and
//! `cache_write` prices.

use crate::helpers::*;
use crate::recorder::{json_body, sse_in_pieces, Received, Recorder};
use actix_web::HttpResponse;
use serde_json::{json, Value};

/// OpenAI's shape: 2000 prompt tokens, 1500 of them read from the cache.
const OPENAI_CACHED: &str = r#"{"id":"chatcmpl-c","object":"chat.completion","created":1700000000,"model":"gpt-x","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2000,"completion_tokens":100,"total_tokens":2100,"prompt_tokens_details":{"cached_tokens":1500,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;
/// Some OpenAI-compatible servers write `null` for a count they do not have.
const OPENAI_NULL: &str = r#"{"id":"chatcmpl-n","object":"chat.completion","created":1700000000,"model":"gpt-x","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2000,"completion_tokens":100,"total_tokens":2100,"prompt_tokens_details":{"cached_tokens":null}}}"#;
/// A stream whose usage chunk says 1000 of 1200 prompt tokens were cached.
const OPENAI_STREAM: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"ok\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":10,\"total_tokens\":1210,\"prompt_tokens_details\":{\"cached_tokens\":1000}}}\n\ndata: [DONE]\n\n";

fn openai(req: &Received) -> HttpResponse {
    match (req.body["model"].as_str(), req.body["stream"] == true) {
        (_, true) => sse_in_pieces(OPENAI_STREAM),
        (Some("nulls"), false) => json_body(200, OPENAI_NULL),
        _ => json_body(200, OPENAI_CACHED),
    }
}

/// Anthropic's shape: 3 uncached input tokens, 900 read from the cache, 100 written to it.
const ANTHROPIC_CACHED: &str = r#"{"id":"msg_c","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":4,"cache_creation_input_tokens":100,"cache_read_input_tokens":900}}"#;
const ANTHROPIC_STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_s\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"stop_reason\":null,\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":900,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn anthropic(req: &Received) -> HttpResponse {
    if req.body["stream"] == true {
        sse_in_pieces(ANTHROPIC_STREAM)
    } else {
        json_body(200, ANTHROPIC_CACHED)
    }
}

/// Tags each reply with what `on_response` saw of the prompt cache.
const SEES_THE_CACHE: &str = r#"
fn on_response(res, ctx) {
    ctx.tag("seen", "" + res.usage.cached_tokens + "/" + res.usage.cache_write_tokens + "/" + res.usage.prompt_tokens);
}"#;

fn chat(model: &str, stream: bool) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn assert_usd(got: &Value, expected: f64) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {got}"));
    assert!((got - expected).abs() < 1e-12, "{got} != {expected}");
}

/// Sends `body` with `key`, reads the whole reply, and returns it with its log entry.
async fn send(app: &TestApp, key: &str, body: Value) -> (String, Value) {
    let res = app.chat(key, body).await;
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let text = res.text().await.unwrap();
    (text, log_entry(app, &id).await)
}

#[tokio::test]
async fn openai_cached_tokens_reach_usage_logs_scripts_and_cost() {
    let upstream = Recorder::start(openai).await;
    let yaml = format!(
        "kind: openai\nbase_url: {}/v1\nmodels:\n  - name: gpt\n    pricing: {{ input: 2, output: 8, cache_read: 0.5 }}\n  - name: nulls\n    pricing: {{ input: 2, output: 8, cache_read: 0.5 }}\n",
        upstream.origin
    );
    let app = spawn(
        Spawn::default()
            .provider("oa", yaml)
            .policy("seen.rhai", SEES_THE_CACHE),
    )
    .await;
    let (key_id, key) = app.create_key(json!({"name": "cacher"})).await;

    // A JSON reply comes back byte for byte, details and all.
    let (text, entry) = send(&app, &key, chat("oa/gpt", false)).await;
    assert_eq!(text, OPENAI_CACHED);
    assert_eq!(
        (
            &entry["prompt_tokens"],
            &entry["cached_tokens"],
            &entry["cache_write_tokens"]
        ),
        (&json!(2000), &json!(1500), &json!(0)),
        "{entry}"
    );
    // 500 uncached at $2/M, 1500 cached at $0.50/M, 100 out at $8/M.
    assert_usd(
        &entry["cost_usd"],
        (500.0 * 2.0 + 1500.0 * 0.5 + 100.0 * 8.0) / 1e6,
    );
    assert_eq!(entry["tags"]["seen"], "1500/0/2000", "{entry}");

    // A stream: read off its usage chunk, which the client gets as sent.
    let (text, entry) = send(&app, &key, chat("oa/gpt", true)).await;
    assert!(
        text.contains(r#""prompt_tokens_details":{"cached_tokens":1000}"#),
        "{text}"
    );
    assert_eq!(entry["cached_tokens"], 1000, "{entry}");
    assert_usd(
        &entry["cost_usd"],
        (200.0 * 2.0 + 1000.0 * 0.5 + 10.0 * 8.0) / 1e6,
    );
    assert_eq!(entry["tags"]["seen"], "1000/0/1200", "{entry}");

    // `null` is no caching: the whole prompt at the input price.
    let (_, entry) = send(&app, &key, chat("oa/nulls", false)).await;
    assert_eq!(entry["cached_tokens"], 0, "{entry}");
    assert_usd(&entry["cost_usd"], (2000.0 * 2.0 + 100.0 * 8.0) / 1e6);
    assert_eq!(entry["tags"]["seen"], "0/0/2000", "{entry}");

    let usage = admin_json(&app, "/admin/usage").await;
    let totals = &usage["totals"];
    assert_eq!(
        (
            &totals["prompt_tokens"],
            &totals["cached_tokens"],
            &totals["cache_write_tokens"]
        ),
        (&json!(5200), &json!(2500), &json!(0)),
        "{usage}"
    );
    let by_model = admin_json(&app, "/admin/usage?group_by=model").await;
    let cached: Vec<(Value, Value)> = by_model["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["group"].clone(), r["cached_tokens"].clone()))
        .collect();
    assert_eq!(
        cached,
        vec![
            (json!("oa/gpt"), json!(2500)),
            (json!("oa/nulls"), json!(0))
        ]
    );
    // The key's all-time figures too.
    let record = admin_json(&app, &format!("/admin/keys/{key_id}")).await;
    assert_eq!(
        (
            &record["usage"]["requests"],
            &record["usage"]["cached_tokens"]
        ),
        (&json!(3), &json!(2500)),
        "{record}"
    );
}

#[tokio::test]
async fn anthropic_cache_reads_and_writes_reach_usage_logs_and_cost() {
    let upstream = Recorder::start(anthropic).await;
    let yaml = format!(
        "kind: anthropic\nbase_url: {}/v1\napi_key: sk-ant-secret\nmodels:\n  - name: claude\n    pricing: {{ input: 3, output: 15, cache_read: 0.3, cache_write: 3.75 }}\n",
        upstream.origin
    );
    let app = spawn(
        Spawn::default()
            .provider("an", yaml)
            .policy("seen.rhai", SEES_THE_CACHE),
    )
    .await;
    let details = json!({"cached_tokens": 900, "cache_write_tokens": 100});
    // 3 at $3/M, 900 read at $0.30/M, 100 written at $3.75/M, 4 out at $15/M.
    let cost = (3.0 * 3.0 + 900.0 * 0.3 + 100.0 * 3.75 + 4.0 * 15.0) / 1e6;

    let (text, entry) = send(&app, ADMIN_KEY, chat("an/claude", false)).await;
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 1003, "completion_tokens": 4, "total_tokens": 1007,
               "prompt_tokens_details": details})
    );
    assert_eq!(
        (&entry["cached_tokens"], &entry["cache_write_tokens"]),
        (&json!(900), &json!(100)),
        "{entry}"
    );
    assert_usd(&entry["cost_usd"], cost);
    assert_eq!(entry["tags"]["seen"], "900/100/1003", "{entry}");

    let (text, entry) = send(&app, ADMIN_KEY, chat("an/claude", true)).await;
    let usage_chunk = parse_sse(&text)
        .into_iter()
        .filter(|p| p != "[DONE]")
        .map(|p| serde_json::from_str::<Value>(&p).unwrap())
        .find(|c| !c["usage"].is_null())
        .unwrap_or_else(|| panic!("no usage chunk: {text}"));
    assert_eq!(usage_chunk["usage"]["prompt_tokens_details"], details);
    assert_eq!(
        (&entry["cached_tokens"], &entry["cache_write_tokens"]),
        (&json!(900), &json!(100)),
        "{entry}"
    );
    assert_usd(&entry["cost_usd"], cost);

    let usage = admin_json(&app, "/admin/usage").await;
    let totals = &usage["totals"];
    assert_eq!(
        (
            &totals["prompt_tokens"],
            &totals["cached_tokens"],
            &totals["cache_write_tokens"]
        ),
        (&json!(2006), &json!(1800), &json!(200)),
        "{usage}"
    );
    assert_usd(&totals["cost_usd"], 2.0 * cost);
    // The prices are shown with the model.
    let provider = admin_provider(&app, "an").await;
    assert_eq!(
        provider["models"][0]["pricing"],
        json!({"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75})
    );
}
