//! Bounds per request: a small request can never make the gateway do unbounded work. Each
//! bound is a fast 400 naming it, checked before any provider is called, or (for what the
//! mock provider builds and what a stream's capture keeps) a documented cap.

use crate::helpers::*;
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
