//! `kind: openai` is passed through faithfully: requests, replies, headers.

use crate::helpers::*;
use crate::upstream::{Upstream, EMBEDDINGS_BASE64, EMBEDDINGS_FLOAT, PLAIN_BODY};
use serde_json::json;

async fn app_with_upstream(models: &[(&str, &str)]) -> (TestApp, Upstream) {
    let upstream = Upstream::start().await;
    let app = spawn(Spawn::default().provider("up", upstream.provider_yaml(models))).await;
    (app, upstream)
}

#[tokio::test]
async fn chat_reply_is_byte_for_byte_and_request_fields_pass_through() {
    let (app, upstream) = app_with_upstream(&[("smart", "plain")]).await;
    let request = json!({
        "model": "up/smart",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "ann"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}
        ],
        "temperature": 0.7,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        "response_format": {"type": "json_object"},
        "logprobs": true,
        "a_parameter_from_the_future": {"deep": [1, 2, {"x": "y"}]},
        "user": "end-user-1"
    });
    let res = app.chat(ADMIN_KEY, request.clone()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-provider"], "up");
    assert_eq!(res.headers()["x-switchboard-model"], "smart");
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.text().await.unwrap(), PLAIN_BODY);

    let got = upstream.last();
    assert_eq!(got.path, "/v1/chat/completions");
    let mut expected = request;
    expected["model"] = json!("plain");
    assert_eq!(
        got.body, expected,
        "every field but model reaches upstream unchanged"
    );
    assert_eq!(got.headers["authorization"], "Bearer sk-upstream-secret");
    assert_eq!(got.headers["x-custom"], "custom-value");
    assert_eq!(got.headers["content-type"], "application/json");
}

#[tokio::test]
async fn client_request_id_is_kept_and_sent_upstream() {
    let (app, upstream) = app_with_upstream(&[("smart", "plain")]).await;
    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .header("x-request-id", "trace-abc-123")
        .json(&json!({"model": "smart", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-abc-123");
    assert_eq!(upstream.last().headers["x-request-id"], "trace-abc-123");
}

#[tokio::test]
async fn client_credentials_are_not_forwarded_upstream() {
    let (app, upstream) = app_with_upstream(&[("smart", "plain")]).await;
    app.chat(
        ADMIN_KEY,
        json!({"model": "smart", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    let got = upstream.last();
    assert!(!got.headers.values().any(|v| v.contains(ADMIN_KEY)));
}

#[tokio::test]
async fn completions_and_embeddings_reach_their_upstream_paths() {
    let (app, upstream) =
        app_with_upstream(&[("text", "echo-text"), ("embed", "echo-embed")]).await;
    let res = app
        .post("/v1/completions", ADMIN_KEY)
        .json(&json!({"model": "text", "prompt": "say hi", "max_tokens": 5, "suffix": "!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = upstream.last();
    assert_eq!(got.path, "/v1/completions");
    assert_eq!(
        got.body,
        json!({"model": "echo-text", "prompt": "say hi", "max_tokens": 5, "suffix": "!"})
    );

    let res = app
        .post("/v1/embeddings", ADMIN_KEY)
        .json(&json!({"model": "up/embed", "input": ["a", "b"], "encoding_format": "float", "dimensions": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = upstream.last();
    assert_eq!(got.path, "/v1/embeddings");
    assert_eq!(
        got.body,
        json!({"model": "echo-embed", "input": ["a", "b"], "encoding_format": "float", "dimensions": 3})
    );
}

#[tokio::test]
async fn embeddings_encoding_format_is_left_to_the_upstream() {
    let (app, upstream) = app_with_upstream(&[("embed", "embed-base64")]).await;
    for (format, reply) in [
        (json!("base64"), EMBEDDINGS_BASE64),
        (json!("float"), EMBEDDINGS_FLOAT),
    ] {
        let request = json!({"model": "up/embed", "input": ["a"], "encoding_format": format});
        let res = app
            .post("/v1/embeddings", ADMIN_KEY)
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap(), reply, "byte for byte");
        let mut expected = request;
        expected["model"] = json!("embed-base64");
        assert_eq!(upstream.last().body, expected, "sent unchanged");
    }
    let reply: serde_json::Value = serde_json::from_str(EMBEDDINGS_BASE64).unwrap();
    assert_eq!(
        decode_base64_embedding(&reply["data"][0]["embedding"]),
        [1.0, -2.0, 0.5]
    );
}

/// Fields whose text any re-encoding would change, each as `(key, value)` exactly as sent:
/// an integer beyond 64 bits, trailing zeros, an exponent, `\u` and other escapes, nested
/// objects inside messages.
const AWKWARD: &[(&str, &str)] = &[
    (
        r#""messages""#,
        r#"[{"role": "system", "content": "say \"hi\"\n\t\u00e9 \\ \/ \ud83d\ude00"},
            {"role": "user", "content": [{"type": "text", "text": "x"}], "x_meta": {"deep": {"deeper": [1, 2.50, {"k": "\u2603"}]}}}]"#,
    ),
    (r#""seed""#, "123456789012345678901234567890"),
    (r#""temperature""#, "1.50"),
    (r#""max_tokens""#, "1e3"),
    (r#""user""#, r#""\u00e9""#),
    (
        r#""response_format""#,
        r#"{"type": "json_schema", "json_schema": {"name": "x", "schema": {"minimum": -0.0, "maximum": 1E+2}}}"#,
    ),
];

/// A chat body for `model` with the awkward fields (but `skip`) and `more`, spaced unevenly.
fn awkward_body(model: &str, skip: &[&str], more: &[(&str, &str)]) -> String {
    let fields: Vec<String> = AWKWARD
        .iter()
        .filter(|(key, _)| !skip.contains(key))
        .chain(more)
        .map(|(key, value)| format!("\n  {key} :\t{value}"))
        .collect();
    format!("{{ \"model\" : \"{model}\",{} \n}}", fields.join(" ,"))
}

async fn send_raw(app: &TestApp, body: String) -> reqwest::Response {
    app.post("/v1/chat/completions", ADMIN_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Every `(key, value)` reached upstream as sent: the value's bytes right after its key.
fn assert_arrived_as_sent(received: &str, fields: &[(&str, &str)]) {
    for (key, value) in fields {
        assert!(
            received.contains(&format!("{key}:{value}")),
            "{key}:{value} did not arrive byte for byte in\n{received}"
        );
    }
}

#[tokio::test]
async fn untouched_fields_reach_upstream_byte_for_byte() {
    let (app, upstream) = app_with_upstream(&[("smart", "plain")]).await;
    let res = send_raw(&app, awkward_body("up/smart", &[], &[])).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), PLAIN_BODY);

    let got = upstream.last();
    assert!(
        got.raw.starts_with(r#"{"model":"plain","#),
        "model is rewritten and first: {}",
        got.raw
    );
    assert_eq!(got.raw.matches("\"model\"").count(), 1, "{}", got.raw);
    assert_arrived_as_sent(&got.raw, AWKWARD);
}

#[tokio::test]
async fn a_field_a_policy_changes_is_re_encoded_and_the_others_kept() {
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("up", upstream.provider_yaml(&[("smart", "plain")]))
            .policy(
                "10-temperature.rhai",
                "fn on_request(req, ctx) { req.params.temperature = 0.2; }",
            ),
    )
    .await;
    let res = send_raw(&app, awkward_body("smart", &[], &[])).await;
    assert_eq!(res.status(), 200);

    let got = upstream.last();
    assert!(got.raw.starts_with(r#"{"model":"plain","#), "{}", got.raw);
    assert!(got.raw.contains(r#""temperature":0.2"#), "{}", got.raw);
    assert!(!got.raw.contains("1.50"), "{}", got.raw);
    let others: Vec<(&str, &str)> = AWKWARD
        .iter()
        .copied()
        .filter(|(key, _)| *key != r#""temperature""#)
        .collect();
    assert_arrived_as_sent(&got.raw, &others);
}

#[tokio::test]
async fn a_stream_gets_stream_options_added_and_the_rest_kept() {
    let (app, upstream) = app_with_upstream(&[("streamy", "stream")]).await;
    let stream = [(r#""stream""#, "true")];
    let res = send_raw(&app, awkward_body("streamy", &[], &stream)).await;
    assert_eq!(res.status(), 200);
    let payloads = sse_payloads(res).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    // The gateway's usage chunk was asked for but not forwarded to this client.
    assert!(!payloads.iter().any(|p| p.contains("prompt_tokens")));

    let got = upstream.last();
    assert!(got.raw.starts_with(r#"{"model":"stream","#), "{}", got.raw);
    assert!(
        got.raw
            .ends_with(r#","stream_options":{"include_usage":true}}"#),
        "added last: {}",
        got.raw
    );
    assert_arrived_as_sent(&got.raw, AWKWARD);
    assert_arrived_as_sent(&got.raw, &stream);
}
