//! `kind: azure`: the OpenAI wire format at Azure's deployment URLs with `api-key`.

use crate::helpers::*;
use crate::recorder::{json_body, json_payloads, streamed_text, Received, Recorder};
use actix_web::HttpResponse;
use serde_json::{json, Value};

const COMPLETION: &str = r#"{"id":"chatcmpl-az","object":"chat.completion","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"from azure"},"finish_reason":"stop","content_filter_results":{}}],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}"#;
const STREAM: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[]}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"az\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

const EMBEDDINGS: &str = crate::upstream::EMBEDDINGS_BASE64;

fn answer(req: &Received) -> HttpResponse {
    if req.path.contains("/deployments/missing/") {
        return json_body(
            404,
            r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#,
        );
    }
    if req.path.ends_with("/embeddings") && req.body["encoding_format"] == "base64" {
        return json_body(200, EMBEDDINGS);
    }
    if req.body["stream"] == true {
        crate::recorder::sse_in_pieces(STREAM)
    } else {
        json_body(200, COMPLETION)
    }
}

async fn app() -> (TestApp, Recorder) {
    let upstream = Recorder::start(answer).await;
    let yaml = format!(
        "kind: azure\nbase_url: {}\napi_key: az-secret\napi_version: 2024-10-21\nmodels:\n  - name: gpt-4o\n    upstream: my-gpt4o-deployment\n  - missing\n  - name: embed\n    upstream: my-embedding-deployment\n",
        upstream.origin
    );
    let app = spawn(Spawn::default().provider("az", yaml)).await;
    (app, upstream)
}

#[tokio::test]
async fn chat_goes_to_the_deployment_with_api_key_and_comes_back_untouched() {
    let (app, upstream) = app().await;
    let request = json!({"model": "az/gpt-4o", "messages": [{"role": "user", "content": "hi"}], "logprobs": true});
    let res = app.chat(ADMIN_KEY, request).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), COMPLETION);
    let got = upstream.last();
    assert_eq!(
        got.path,
        "/openai/deployments/my-gpt4o-deployment/chat/completions"
    );
    assert_eq!(got.query, "api-version=2024-10-21");
    assert_eq!(got.headers["api-key"], "az-secret");
    assert!(!got.headers.contains_key("authorization"));
    assert_eq!(
        got.body["logprobs"], true,
        "the OpenAI format passes through"
    );
}

#[tokio::test]
async fn streams_and_errors_pass_through() {
    let (app, upstream) = app().await;
    let res = app
        .chat(ADMIN_KEY, json!({"model": "az/gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    let payloads = sse_payloads(res).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&json_payloads(&payloads)), "az");
    assert_eq!(
        upstream.last().body["stream_options"]["include_usage"],
        true
    );

    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "az/missing", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let body: Value = assert_error(res, 404).await;
    assert_eq!(body["error"]["code"], "DeploymentNotFound");
}

#[tokio::test]
async fn embeddings_keep_encoding_format_for_the_deployment_to_encode() {
    let (app, upstream) = app().await;
    let res = app
        .post("/v1/embeddings", ADMIN_KEY)
        .json(&json!({"model": "az/embed", "input": "hi", "encoding_format": "base64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), EMBEDDINGS);
    let got = upstream.last();
    assert_eq!(
        got.path,
        "/openai/deployments/my-embedding-deployment/embeddings"
    );
    assert_eq!(got.body["encoding_format"], "base64");
}
