//! The built-in `mock` provider: deterministic, real usage, streaming, failure injection.

use crate::helpers::*;
use serde_json::{json, Value};

#[tokio::test]
async fn chat_echoes_the_last_user_message_with_word_usage() {
    let app = spawn_mock().await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "echo", "messages": [
                {"role": "system", "content": "you are terse"},
                {"role": "user", "content": "hello brave new world"}
            ]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-provider"], "mock");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "hello brave new world"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11})
    );
}

#[tokio::test]
async fn streams_one_word_per_chunk_with_usage_when_asked() {
    let app = spawn_mock().await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "mock/echo", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "one two three"}]}),
        )
        .await;
    let payloads = sse_payloads(res).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "one two three");
    assert!(
        chunks.len() >= 5,
        "role, 3 words, finish, usage: {}",
        chunks.len()
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 6);
}

#[tokio::test]
async fn completions_and_embeddings() {
    let app = spawn_mock().await;
    let body: Value = app
        .post("/v1/completions", ADMIN_KEY)
        .json(&json!({"model": "echo", "prompt": "say this"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["text"], "say this");
    assert_eq!(body["usage"]["total_tokens"], 4);

    let embed = |input: Value| {
        app.post("/v1/embeddings", ADMIN_KEY)
            .json(&json!({"model": "text-embedding-mock", "input": input, "dimensions": 4}))
            .send()
    };
    let a: Value = embed(json!(["alpha", "beta"]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: Value = embed(json!("alpha")).await.unwrap().json().await.unwrap();
    assert_eq!(a["data"].as_array().unwrap().len(), 2);
    assert_eq!(a["data"][0]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(
        a["data"][0]["embedding"], b["data"][0]["embedding"],
        "deterministic"
    );
    assert_ne!(a["data"][0]["embedding"], a["data"][1]["embedding"]);
}

#[tokio::test]
async fn embeddings_in_base64_decode_to_the_float_vectors() {
    let app = spawn_mock().await;
    let embed = |extra: Value| {
        let mut body = json!({"model": "text-embedding-mock", "input": ["alpha", "beta"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        app.post("/v1/embeddings", ADMIN_KEY).json(&body).send()
    };
    for dims in [json!({}), json!({"dimensions": 5})] {
        let floats: Value = embed(dims.clone()).await.unwrap().json().await.unwrap();
        let mut base64 = dims.clone();
        base64["encoding_format"] = json!("base64");
        let res = embed(base64).await.unwrap();
        assert_eq!(res.status(), 200);
        let encoded: Value = res.json().await.unwrap();
        for i in 0..2 {
            let got = decode_base64_embedding(&encoded["data"][i]["embedding"]);
            assert_eq!(
                got,
                float_embedding(&floats["data"][i]["embedding"]),
                "{dims} {i}"
            );
        }
        assert_eq!(encoded["usage"], floats["usage"]);
    }
    let explicit: Value = embed(json!({"encoding_format": "float"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        explicit["data"][0]["embedding"].as_array().unwrap().len(),
        8
    );

    let body = assert_error(
        embed(json!({"encoding_format": "binary"})).await.unwrap(),
        400,
    )
    .await;
    assert_eq!(body["error"]["param"], "encoding_format");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn failure_injection_and_fixed_replies() {
    let app = spawn(
        Spawn::default()
            .provider(
                "flaky",
                "kind: mock\nmodels: [m]\nmock:\n  fail_rate: 1.0\n  fail_status: 429\n",
            )
            .provider(
                "fixed",
                "kind: mock\nmodels: [m]\nmock:\n  reply: always this\n  chunk_delay_ms: 5\n",
            ),
    )
    .await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "flaky/m", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    let body = assert_error(res, 429).await;
    assert_eq!(body["error"]["code"], "mock_failure");
    let res = app
        .chat(ADMIN_KEY, json!({"model": "fixed/m", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    let payloads = sse_payloads(res).await;
    let text: String = payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "always this");
}
