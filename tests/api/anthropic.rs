//! `kind: anthropic` against a mock that speaks the Messages API (tests/fixtures/anthropic).

use crate::anthropic_upstream;
use crate::helpers::*;
use crate::recorder::{json_payloads, streamed_text, weather_tool, Recorder};
use serde_json::{json, Value};

async fn app() -> (TestApp, Recorder) {
    let upstream = anthropic_upstream::start().await;
    let app =
        spawn(Spawn::default().provider("claude", anthropic_upstream::provider_yaml(&upstream)))
            .await;
    (app, upstream)
}

fn fixture(name: &str) -> Value {
    crate::recorder::fixture("anthropic", name)
}

#[tokio::test]
async fn plain_chat_with_system_prompt_multi_turn_and_image() {
    let (app, upstream) = app().await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({
                "model": "claude/text",
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "system", "content": "Answer in English."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
                    ]}
                ],
                "temperature": 0.3, "stop": "###", "user": "end-user-7", "n": 1
            }),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-provider"], "claude");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["id"], "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(
        body["choices"][0]["message"],
        json!({"role": "assistant", "content": "Hello! How can I help you today?"})
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 21, "completion_tokens": 12, "total_tokens": 33})
    );

    let got = upstream.last();
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(got.headers["x-api-key"], "sk-ant-secret");
    assert_eq!(got.headers["anthropic-version"], "2023-06-01");
    assert!(!got.headers.contains_key("authorization"));
    assert_eq!(got.body, fixture("request_multi_turn.json"));
}

#[tokio::test]
async fn tool_call_round_trip() {
    let (app, upstream) = app().await;
    let question = json!({"role": "user", "content": "Weather in San Francisco?"});
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "claude/tools", "messages": [question], "tools": weather_tool(),
                   "tool_choice": "auto", "max_tokens": 256}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        args,
        json!({"location": "San Francisco, CA", "unit": "celsius"})
    );

    // The client answers the call; the whole exchange goes back upstream in Anthropic's shape.
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "claude/tools", "tools": weather_tool(), "tool_choice": "auto", "max_tokens": 256,
                   "messages": [question, choice["message"].clone(),
                       {"role": "tool", "tool_call_id": call["id"], "content": "15 degrees, fog"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(upstream.last().body, fixture("request_tool_result.json"));
}

#[tokio::test]
async fn streaming_text_with_and_without_usage() {
    let (app, upstream) = app().await;
    let res = app
        .chat(ADMIN_KEY, json!({"model": "claude/text", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let payloads = sse_payloads(res).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let chunks = json_payloads(&payloads);
    assert_eq!(streamed_text(&chunks), "Hello there!");
    assert!(chunks
        .iter()
        .all(|c| c["id"] == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
            && c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(
        !payloads.iter().any(|p| p.contains("prompt_tokens")),
        "usage not asked for"
    );
    assert_eq!(upstream.last().body["stream"], true);
    assert!(upstream.last().body.get("stream_options").is_none());

    let res = app
        .chat(ADMIN_KEY, json!({"model": "claude/text", "stream": true, "stream_options": {"include_usage": true},
                                "messages": [{"role": "user", "content": "Hi"}]}))
        .await;
    let chunks = json_payloads(&sse_payloads(res).await);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40})
    );
}

#[tokio::test]
async fn streaming_tool_call() {
    let (app, _upstream) = app().await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "claude/tools", "stream": true, "tools": weather_tool(),
                                "messages": [{"role": "user", "content": "Weather?"}]}),
        )
        .await;
    let payloads = sse_payloads(res).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let chunks = json_payloads(&payloads);
    assert_eq!(streamed_text(&chunks), "Checking.");
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(deltas[0]["id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert!(deltas.iter().all(|d| d["index"] == 0));
    let arguments: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, r#"{"location": "San Francisco, CA"}"#);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn upstream_errors_become_openai_errors() {
    let (app, _upstream) = app().await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "claude/rate-limited", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(res.headers()["retry-after"], "9");
    let body = assert_error(res, 429).await;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("rate limit"));

    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "claude/overloaded", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    let body = assert_error(res, 503).await;
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert!(!body.to_string().contains("sk-ant-secret"));
}

#[tokio::test]
async fn an_error_event_ends_the_stream_with_an_error_not_done() {
    let (app, _upstream) = app().await;
    let res = app
        .chat(ADMIN_KEY, json!({"model": "claude/stream-error", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    let payloads = sse_payloads(res).await;
    assert!(!payloads.iter().any(|p| p == "[DONE]"));
    let chunks = json_payloads(&payloads);
    assert_eq!(streamed_text(&chunks), "Hel");
    let last = chunks.last().unwrap();
    assert_eq!(last["error"]["message"], "Overloaded");
    assert_eq!(last["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn unsupported_parameters_and_endpoints_are_400s_that_never_reach_upstream() {
    let (app, upstream) = app().await;
    for (key, value) in [("logprobs", json!(true)), ("n", json!(3))] {
        let mut request =
            json!({"model": "claude/text", "messages": [{"role": "user", "content": "x"}]});
        request[key] = value;
        let body = assert_error(app.chat(ADMIN_KEY, request).await, 400).await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{key}`")) && message.contains("`claude`"),
            "{message}"
        );
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], key, "param names the parameter");
    }
    let res = app
        .post("/v1/embeddings", ADMIN_KEY)
        .json(&json!({"model": "claude/text", "input": "x"}))
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 400).await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`claude`"));
    let res = app
        .post("/v1/completions", ADMIN_KEY)
        .json(&json!({"model": "claude/text", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400).await;
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn policy_headers_reach_the_anthropic_upstream() {
    let upstream = anthropic_upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("claude", anthropic_upstream::provider_yaml(&upstream))
            .policy(
                "h.rhai",
                r#"fn on_request(req, ctx) { ctx.set_header("x-team", "search"); }"#,
            ),
    )
    .await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "claude/text", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(upstream.last().headers["x-team"], "search");
}

#[tokio::test]
async fn with_unsupported_params_drop_they_are_left_out_and_listed() {
    let upstream = anthropic_upstream::start().await;
    let yaml = anthropic_upstream::provider_yaml(&upstream).replacen(
        "kind: anthropic\n",
        "kind: anthropic\nunsupported_params: drop\n",
        1,
    );
    let app = spawn(Spawn::default().provider("claude", yaml)).await;
    for stream in [false, true] {
        let res = app
            .chat(
                ADMIN_KEY,
                json!({
                    "model": "claude/text", "stream": stream,
                    "messages": [{"role": "user", "content": "x"}],
                    "seed": 7, "temperature": 0.2, "reasoning_effort": "low",
                    "logprobs": true, "presence_penalty": 0.5
                }),
            )
            .await;
        assert_eq!(res.status(), 200, "stream: {stream}");
        assert_eq!(
            res.headers()["x-switchboard-dropped-params"],
            "seed, reasoning_effort, logprobs, presence_penalty"
        );
        let _ = res.text().await;
        let sent = upstream.last().body;
        for dropped in ["seed", "reasoning_effort", "logprobs", "presence_penalty"] {
            assert!(
                sent.get(dropped).is_none(),
                "{dropped} was left out: {sent}"
            );
        }
        assert_eq!(sent["temperature"], 0.2, "mapped parameters still go");
    }
    // Nothing dropped, no header.
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "claude/text", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(!res.headers().contains_key("x-switchboard-dropped-params"));
}
