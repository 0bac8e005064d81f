//! Streams are forwarded chunk by chunk, end with `[DONE]`, and never look complete when cut.

use crate::helpers::*;
use crate::upstream::Upstream;
use serde_json::{json, Value};

async fn app_with_upstream() -> (TestApp, Upstream) {
    let upstream = Upstream::start().await;
    let yaml = upstream.provider_yaml(&[("streamy", "stream"), ("gated", "gated"), ("cut", "cut")]);
    let app = spawn(Spawn::default().provider("up", yaml)).await;
    (app, upstream)
}

fn contents(payloads: &[String]) -> String {
    payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn chunks_arrive_in_order_and_end_with_done() {
    let (app, upstream) = app_with_upstream().await;
    let res = app
        .chat(ADMIN_KEY, json!({"model": "streamy", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["x-switchboard-provider"], "up");
    let payloads = sse_payloads(res).await;
    assert_eq!(contents(&payloads), "one two three");
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(
        payloads.len(),
        5,
        "3 content + finish + [DONE]: {payloads:?}"
    );
    // The gateway asked for usage on the client's behalf and did not forward that chunk.
    assert_eq!(
        upstream.last().body["stream_options"]["include_usage"],
        true
    );
    assert!(!payloads.iter().any(|p| p.contains("prompt_tokens")));
}

#[tokio::test]
async fn a_client_that_asks_for_usage_gets_the_usage_chunk() {
    let (app, _upstream) = app_with_upstream().await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({
                "model": "streamy", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "x"}]
            }),
        )
        .await;
    let payloads = sse_payloads(res).await;
    let usage: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["total_tokens"], 8);
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn first_chunk_reaches_the_client_before_upstream_finishes() {
    let (app, upstream) = app_with_upstream().await;
    let res = app
        .chat(ADMIN_KEY, json!({"model": "gated", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    let mut body = res.bytes_stream();
    // The upstream holds the rest until released: seeing "first" proves nothing is buffered.
    let seen = read_until(&mut body, "first").await;
    assert!(!seen.contains("second"));
    upstream.release();
    let rest = read_until(&mut body, "[DONE]").await;
    assert!(rest.contains("second"));
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_an_error_event_and_no_done() {
    let (app, _upstream) = app_with_upstream().await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "cut", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    let payloads = sse_payloads(res).await;
    assert!(payloads[0].contains("partial"));
    let last: Value = serde_json::from_str(payloads.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("before [DONE]"),
        "{last}"
    );
    assert!(!payloads.iter().any(|p| p == "[DONE]"));
}

#[tokio::test]
async fn a_client_that_disconnects_early_leaves_the_gateway_serving() {
    let (app, upstream) = app_with_upstream().await;
    {
        let res = app
            .chat(ADMIN_KEY, json!({"model": "gated", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
            .await;
        let mut body = res.bytes_stream();
        read_until(&mut body, "first").await;
        // Dropped here, mid-stream.
    }
    upstream.release();
    for _ in 0..3 {
        let res = app
            .chat(ADMIN_KEY, json!({"model": "streamy", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
            .await;
        let payloads = sse_payloads(res).await;
        assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    }
    let res = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
