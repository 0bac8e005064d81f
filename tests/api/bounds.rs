//! Bounds per request: a small request can never make the gateway do unbounded work. Each
//! bound is a fast 400 naming it, checked before any provider is called, or (for what the
//! mock provider builds and what a stream's capture keeps) a documented cap.

use crate::helpers::*;
use crate::upstream::Upstream;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A refusal must come back at once: it is decided from the parsed request alone.
const FAST: Duration = Duration::from_secs(5);

async fn post(app: &TestApp, path: &str, body: &Value) -> (reqwest::Response, Duration) {
    let started = Instant::now();
    let res = app.post(path, ADMIN_KEY).json(body).send().await.unwrap();
    (res, started.elapsed())
}

/// Asserts a fast 400 `invalid_request_error` with `param` and `code`, whose message names
/// `bound`, refused before any upstream call.
async fn assert_refused(
    (res, took): (reqwest::Response, Duration),
    param: &str,
    code: &str,
    bound: &str,
) {
    assert!(took < FAST, "the refusal took {took:?}");
    assert_eq!(res.headers()["x-switchboard-attempts"], "0");
    let body = assert_error(res, 400).await;
    let err = &body["error"];
    assert_eq!(err["type"], "invalid_request_error", "{body}");
    assert_eq!(err["param"], param, "{body}");
    assert_eq!(err["code"], code, "{body}");
    assert!(
        err["message"].as_str().unwrap().contains(bound),
        "the message names the bound {bound}: {body}"
    );
}

/// The mock, an openai-kind upstream and a gemini-kind upstream, all serving embeddings.
async fn embedding_kinds() -> (TestApp, Upstream, crate::recorder::Recorder) {
    let openai = Upstream::start().await;
    let gemini = crate::gemini_upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider("mock", "kind: mock\nmodels: [echo, text-embedding-mock]\n")
            .provider("up", openai.provider_yaml(&[("embed", "embed-base64")]))
            .provider("gm", crate::gemini_upstream::provider_yaml(&gemini)),
    )
    .await;
    (app, openai, gemini)
}

const EMBEDDING_MODELS: [&str; 3] = ["mock/text-embedding-mock", "up/embed", "gm/embed"];

#[tokio::test]
async fn more_than_2048_embedding_inputs_are_a_fast_400_on_every_kind() {
    let (app, openai, gemini) = embedding_kinds().await;
    for model in EMBEDDING_MODELS {
        for input in [json!(vec![""; 2049]), json!(vec![[1, 2]; 2049])] {
            let body = json!({"model": model, "input": input});
            assert_refused(
                post(&app, "/v1/embeddings", &body).await,
                "input",
                "too_many_inputs",
                "2048",
            )
            .await;
        }
    }
    assert!(openai.received().is_empty(), "no upstream was called");
    assert!(gemini.received().is_empty(), "no upstream was called");

    // The security review's request: 24 KB of 8,000 empty strings at 4096 dimensions.
    let hostile =
        json!({"model": "text-embedding-mock", "input": vec![""; 8000], "dimensions": 4096});
    assert!(serde_json::to_vec(&hostile).unwrap().len() < 25_000);
    assert_refused(
        post(&app, "/v1/embeddings", &hostile).await,
        "input",
        "too_many_inputs",
        "2048",
    )
    .await;

    // At the bound it is served; one token array is one input, however long.
    let (res, _) = post(
        &app,
        "/v1/embeddings",
        &json!({"model": "text-embedding-mock", "input": vec![""; 2048]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2048);
    let tokens: Vec<u32> = (0..5000).collect();
    let (res, _) = post(
        &app,
        "/v1/embeddings",
        &json!({"model": "text-embedding-mock", "input": tokens}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn dimensions_above_8192_are_a_fast_400_on_every_kind() {
    let (app, openai, gemini) = embedding_kinds().await;
    for model in EMBEDDING_MODELS {
        for dimensions in [json!(8193), json!(1u64 << 40), json!(1e300)] {
            let body = json!({"model": model, "input": "x", "dimensions": dimensions});
            assert_refused(
                post(&app, "/v1/embeddings", &body).await,
                "dimensions",
                "dimensions_too_large",
                "8192",
            )
            .await;
        }
    }
    assert!(openai.received().is_empty(), "no upstream was called");
    assert!(gemini.received().is_empty(), "no upstream was called");

    // 8192 itself is honoured.
    let (res, _) = post(
        &app,
        "/v1/embeddings",
        &json!({"model": "text-embedding-mock", "input": "x", "dimensions": 8192}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 8192);
}

#[tokio::test]
async fn the_mock_builds_at_most_a_million_embedding_values() {
    let app = spawn_mock().await;
    // 129 inputs × 8192 dimensions is over 2^20 values: refused before anything is built.
    let over = json!({"model": "text-embedding-mock", "input": vec!["x"; 129], "dimensions": 8192});
    let (res, took) = post(&app, "/v1/embeddings", &over).await;
    assert!(took < FAST, "the refusal took {took:?}");
    let body = assert_error(res, 400).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], "dimensions");
    assert_eq!(body["error"]["code"], "too_many_embedding_values");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("1048576"), "{message}");
    // The worst request the gateway lets through (2048 × 8192) is refused the same way.
    let worst =
        json!({"model": "text-embedding-mock", "input": vec!["x"; 2048], "dimensions": 8192});
    let (res, took) = post(&app, "/v1/embeddings", &worst).await;
    assert!(took < FAST, "the refusal took {took:?}");
    assert_error(res, 400).await;

    // Exactly 2^20 values are served.
    let at = json!({"model": "text-embedding-mock", "input": vec!["x"; 128], "dimensions": 8192, "encoding_format": "base64"});
    let (res, _) = post(&app, "/v1/embeddings", &at).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 128);
    assert_eq!(
        decode_base64_embedding(&body["data"][127]["embedding"]).len(),
        8192
    );
}

/// The mock echoes at most this much text.
const MAX_ECHO: usize = 1 << 20;

/// `assert_eq!` for megabyte strings, without printing them.
fn assert_same(got: &str, expected: &str) {
    assert!(
        got == expected,
        "{} bytes, expected {}; they differ from byte {}",
        got.len(),
        expected.len(),
        got.bytes()
            .zip(expected.bytes())
            .take_while(|(a, b)| a == b)
            .count()
    );
}

fn streamed_text(payloads: &[String], field: &str) -> (String, Vec<String>) {
    let chunks: Vec<Value> = payloads
        .iter()
        .filter_map(|p| serde_json::from_str(p).ok())
        .collect();
    let text = chunks
        .iter()
        .filter_map(|c| match field {
            "delta" => c["choices"][0]["delta"]["content"].as_str(),
            _ => c["choices"][0]["text"].as_str(),
        })
        .collect();
    let finish = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(String::from))
        .collect();
    (text, finish)
}

#[tokio::test]
async fn the_mock_echoes_at_most_1_mib_and_says_it_stopped_for_length() {
    let app = spawn_mock().await;
    // 3 MB of 100-byte words with two-byte letters, so the cut at 1 MiB falls inside a letter
    // and must step back to a character boundary; few words keep the streams short.
    let word = format!("x{} ", "é".repeat(49));
    let long = word.repeat(30_000);
    let mut end = MAX_ECHO;
    while !long.is_char_boundary(end) {
        end -= 1;
    }
    let expected = long[..end].trim_end().to_string();
    let chat = json!({"model": "echo", "messages": [{"role": "user", "content": long}]});
    let (res, _) = post(&app, "/v1/chat/completions", &chat).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert_same(content, &expected);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(
        body["usage"]["completion_tokens"],
        content.split_whitespace().count()
    );

    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let (res, _) = post(&app, "/v1/chat/completions", &streamed).await;
    let (text, finish) = streamed_text(&sse_payloads(res).await, "delta");
    assert_same(&text, &expected);
    assert_eq!(finish, ["length"]);

    let completion = json!({"model": "echo", "prompt": long, "stream": true});
    let (res, _) = post(&app, "/v1/completions", &completion).await;
    let (text, finish) = streamed_text(&sse_payloads(res).await, "text");
    assert_same(&text, &expected);
    assert_eq!(finish, ["length"]);
}

/// The process's resident memory, from /proc/self/status (the gateway runs in this process).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

#[tokio::test]
async fn a_long_mock_stream_is_produced_lazily_in_bounded_memory() {
    const WORDS: usize = 200_000;
    let app = spawn_mock().await;
    let chat = json!({"model": "echo", "stream": true,
        "messages": [{"role": "user", "content": "a ".repeat(WORDS)}]});
    let before = rss_bytes();
    let started = Instant::now();
    let res = app.chat(ADMIN_KEY, chat).await;
    assert_eq!(res.status(), 200);
    let mut peak = rss_bytes();
    let mut body = res.bytes_stream();
    let (mut newlines, mut pieces) = (0usize, 0usize);
    while let Some(piece) = body.next().await {
        let piece = piece.unwrap();
        // Every event ends in a blank line and JSON payloads hold no raw newline, so two
        // newlines are one event; counting them needs no buffering across pieces.
        newlines += piece.iter().filter(|b| **b == b'\n').count();
        pieces += 1;
        if pieces % 256 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    peak = peak.max(rss_bytes());
    // The role chunk, one chunk per word, the finish chunk and [DONE].
    assert_eq!(newlines / 2, WORDS + 3);
    let growth = peak.saturating_sub(before);
    eprintln!(
        "{WORDS} chunks in {:?}; RSS {} MB before, peak growth {} MB",
        started.elapsed(),
        before >> 20,
        growth >> 20
    );
    // Generous on purpose: RSS is the whole test process, where other tests run at the same
    // time, and allocators keep freed memory. Building every payload up front, as the mock
    // once did, grows it by about a gigabyte for this stream; a lazy stream holds one
    // payload at a time (plus the 400 KB request and echoed text).
    assert!(growth < 200 << 20, "RSS grew by {} MB", growth >> 20);
}

#[tokio::test]
async fn a_stream_over_max_response_bytes_reaches_the_client_whole_but_is_not_kept() {
    let app = spawn(Spawn {
        log_bodies: true,
        ..Spawn::default()
            .provider(
                "mock",
                "kind: mock\nmodels: [echo]\nmax_response_bytes: 4096\n",
            )
            .policy("cache.rhai", "fn on_request(req, ctx) { ctx.cache(60); }")
    })
    .await;
    let stream = |text: &str| json!({"model": "echo", "stream": true, "messages": [{"role": "user", "content": text}]});

    // Under the bound: captured, cached and logged as before.
    let short = stream("short reply");
    let res = app.chat(ADMIN_KEY, short.clone()).await;
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let _ = res.text().await.unwrap();
    assert!(log_entry(&app, &id).await["response_body"].is_string());
    let res = app.chat(ADMIN_KEY, short).await;
    assert_eq!(res.headers()["x-switchboard-cache"], "hit");

    // Over it (300 chunks of about 200 bytes): the client gets every chunk and [DONE], but
    // capture stops at 4096 bytes, so the reply is neither cached nor kept in the log.
    let words: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
    let long = stream(&words.join(" "));
    let res = app.chat(ADMIN_KEY, long.clone()).await;
    assert_eq!(res.headers()["x-switchboard-cache"], "miss");
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let payloads = sse_payloads(res).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let (text, finish) = streamed_text(&payloads, "delta");
    assert_eq!(text, words.join(" "));
    assert_eq!(finish, ["stop"]);
    // The log entry is written after the cache would have been: once it is there, the
    // reply was either stored or never will be.
    let entry = log_entry(&app, &id).await;
    assert_eq!(entry["status"], 200);
    assert!(entry.get("response_body").is_none(), "{entry}");
    let res = app.chat(ADMIN_KEY, long).await;
    assert_eq!(res.headers()["x-switchboard-cache"], "miss", "not cached");
}
