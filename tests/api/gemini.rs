//! `kind: gemini` against a mock that speaks the Gemini API (tests/fixtures/gemini).

use crate::gemini_upstream;
use crate::helpers::*;
use crate::recorder::{json_payloads, streamed_text, weather_tool, Recorder};
use serde_json::{json, Value};

async fn app() -> (TestApp, Recorder) {
    let upstream = gemini_upstream::start().await;
    let app =
        spawn(Spawn::default().provider("gem", gemini_upstream::provider_yaml(&upstream))).await;
    (app, upstream)
}

fn fixture(name: &str) -> Value {
    crate::recorder::fixture("gemini", name)
}

#[tokio::test]
async fn plain_chat_with_system_prompt_and_multi_turn() {
    let (app, upstream) = app().await;
    let res = app
        .chat(ADMIN_KEY, json!({
            "model": "gem/text",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": [{"type": "text", "text": "Describe"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}
            ],
            "temperature": 0.3, "top_p": 0.5, "max_tokens": 100, "stop": "###", "n": 1, "user": "u-1"
        }))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], "mQ2gZ_abc123");
    assert_eq!(body["model"], "gemini-2.0-flash");
    assert_eq!(
        body["choices"][0]["message"],
        json!({"role": "assistant", "content": "Hello! How can I help?"})
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16})
    );

    let got = upstream.last();
    assert_eq!(got.path, "/v1beta/models/text:generateContent");
    assert_eq!(got.headers["x-goog-api-key"], "gm-secret-key");
    assert!(got.query.is_empty(), "the key never goes in the URL");
    assert_eq!(got.body, fixture("request_multi_turn.json"));
}

#[tokio::test]
async fn function_call_round_trip() {
    let (app, upstream) = app().await;
    let question = json!({"role": "user", "content": "Weather in Boston?"});
    let res = app
        .chat(ADMIN_KEY, json!({"model": "gem/tools", "messages": [question], "tools": weather_tool(), "tool_choice": "auto"}))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        call["function"]["arguments"],
        r#"{"location":"Boston, MA"}"#
    );
    assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()));

    let res = app
        .chat(ADMIN_KEY, json!({"model": "gem/tools", "tools": weather_tool(), "tool_choice": "auto",
            "messages": [question, choice["message"].clone(),
                {"role": "tool", "tool_call_id": call["id"], "content": "{\"temperature\": 12, \"sky\": \"clear\"}"}]}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        upstream.last().body,
        fixture("request_function_response.json")
    );
}

#[tokio::test]
async fn streaming_text_and_usage() {
    let (app, upstream) = app().await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "gem/text", "stream": true, "stream_options": {"include_usage": true},
                                "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let payloads = sse_payloads(res).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let chunks = json_payloads(&payloads);
    assert_eq!(streamed_text(&chunks), "Hello there!");
    assert!(chunks.iter().all(|c| c["id"] == "s_1"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(
        chunks.last().unwrap()["usage"],
        json!({"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12})
    );
    let got = upstream.last();
    assert_eq!(got.path, "/v1beta/models/text:streamGenerateContent");
    assert_eq!(got.query, "alt=sse");
}

#[tokio::test]
async fn streaming_function_call() {
    let (app, _upstream) = app().await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "gem/tools", "stream": true, "tools": weather_tool(),
                                "messages": [{"role": "user", "content": "Weather?"}]}),
        )
        .await;
    let payloads = sse_payloads(res).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let chunks = json_payloads(&payloads);
    let call = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .unwrap();
    assert_eq!(call["index"], 0);
    assert_eq!(
        call["function"],
        json!({"name": "get_weather", "arguments": "{\"location\":\"Boston, MA\"}"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert!(
        !payloads.iter().any(|p| p.contains("prompt_tokens")),
        "usage not asked for"
    );
}

#[tokio::test]
async fn blocked_prompts_are_content_filtered() {
    let (app, _upstream) = app().await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "gem/blocked", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(body["usage"]["prompt_tokens"], 5);
}

#[tokio::test]
async fn upstream_error_and_error_inside_a_stream() {
    let (app, _upstream) = app().await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "gem/invalid", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    let body = assert_error(res, 400).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("temperature"));
    assert!(!body.to_string().contains("gm-secret-key"));

    let res = app
        .chat(ADMIN_KEY, json!({"model": "gem/stream-error", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    let payloads = sse_payloads(res).await;
    assert!(!payloads.iter().any(|p| p == "[DONE]"));
    let chunks = json_payloads(&payloads);
    assert_eq!(streamed_text(&chunks), "Hel");
    assert!(chunks.last().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("overloaded"));
}

#[tokio::test]
async fn embeddings_use_batch_embed_contents() {
    let (app, upstream) = app().await;
    let res = app
        .post("/v1/embeddings", ADMIN_KEY)
        .json(&json!({"model": "gem/embed", "input": ["a", "b"], "dimensions": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(
        body["data"][1],
        json!({"object": "embedding", "index": 1, "embedding": [0.5, 0.25, -0.125]})
    );
    let got = upstream.last();
    assert_eq!(got.path, "/v1beta/models/embed:batchEmbedContents");
    assert_eq!(
        got.body["requests"][0],
        json!({"model": "models/embed", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 3})
    );
}

#[tokio::test]
async fn embeddings_in_base64_decode_to_the_float_vectors() {
    let (app, upstream) = app().await;
    let embed = |format: Value| {
        app.post("/v1/embeddings", ADMIN_KEY)
            .json(&json!({"model": "gem/embed", "input": ["a", "b"], "encoding_format": format}))
            .send()
    };
    let res = embed(json!("float")).await.unwrap();
    assert_eq!(res.status(), 200);
    let floats: Value = res.json().await.unwrap();
    let res = embed(json!("base64")).await.unwrap();
    assert_eq!(res.status(), 200);
    let encoded: Value = res.json().await.unwrap();
    assert_eq!(encoded["data"].as_array().unwrap().len(), 2);
    for i in 0..2 {
        let got = decode_base64_embedding(&encoded["data"][i]["embedding"]);
        assert_eq!(got, float_embedding(&floats["data"][i]["embedding"]), "{i}");
        assert_eq!(encoded["data"][i]["index"], i);
    }
    assert_eq!(
        decode_base64_embedding(&encoded["data"][1]["embedding"]),
        [0.5, 0.25, -0.125]
    );
    let got = upstream.last();
    assert_eq!(got.path, "/v1beta/models/embed:batchEmbedContents");
    assert!(
        !got.body.to_string().contains("encoding_format"),
        "Gemini is not told: {}",
        got.body
    );

    let calls = upstream.received().len();
    let body = assert_error(embed(json!("int8")).await.unwrap(), 400).await;
    assert_eq!(body["error"]["param"], "encoding_format");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("`gem`"));
    assert_eq!(upstream.received().len(), calls, "never sent upstream");
}

#[tokio::test]
async fn unsupported_parameters_are_400s_that_never_reach_upstream() {
    let (app, upstream) = app().await;
    let body = assert_error(
        app.chat(ADMIN_KEY, json!({"model": "gem/text", "logprobs": true, "messages": [{"role": "user", "content": "x"}]})).await,
        400,
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`logprobs`") && message.contains("`gem`"),
        "{message}"
    );
    assert_eq!(
        body["error"]["param"], "logprobs",
        "param names the parameter"
    );
    let res = app
        .post("/v1/completions", ADMIN_KEY)
        .json(&json!({"model": "gem/text", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400).await;
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn with_unsupported_params_drop_they_are_left_out_and_listed() {
    let upstream = gemini_upstream::start().await;
    let yaml = gemini_upstream::provider_yaml(&upstream).replacen(
        "kind: gemini\n",
        "kind: gemini\nunsupported_params: drop\n",
        1,
    );
    let app = spawn(Spawn::default().provider("gem", yaml)).await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({
                "model": "gem/text", "messages": [{"role": "user", "content": "x"}],
                "logprobs": true, "seed": 3, "reasoning_effort": "high"
            }),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["x-switchboard-dropped-params"],
        "logprobs, reasoning_effort"
    );
    let sent = upstream.last().body;
    assert_eq!(
        sent["generationConfig"]["seed"], 3,
        "a mapped parameter still goes"
    );
    assert!(!sent.to_string().contains("logprobs") && !sent.to_string().contains("reasoning"));

    // Embeddings too.
    let res = app
        .post("/v1/embeddings", ADMIN_KEY)
        .json(&json!({"model": "gem/embed", "input": ["a", "b"], "truncate": "END"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-dropped-params"], "truncate");
    assert!(!upstream.last().body.to_string().contains("truncate"));
}
