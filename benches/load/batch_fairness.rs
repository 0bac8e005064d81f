//! Does a running batch slow live traffic down? `batch_fairness URL KEY [ROUNDS] [SECS]`
//! against a gateway serving the benchmark's `bench-fast` model: each round drives live chat
//! requests on 64 connections for SECS seconds with no batch running, then uploads a batch of
//! 20,000 `bench-fast` lines, starts it, drives the same live load while it runs, and cancels
//! it. Prints, per round and as medians, the live requests/s and p50/p99 latency without and
//! with the batch, and how many batch lines were answered during the live load and in the
//! second after it (the batch's own pace once live traffic stops). One JSON line at the end.
//!
//! Closed-loop like oha (which the other load rounds use): each connection sends its next
//! request when the last answer arrived; only 200s count.

// A benchmark tool, not the gateway: it prints its results and stops at the first failure.
#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use serde_json::{json, Value};
use std::time::{Duration, Instant};

const LIVE: &str =
    r#"{"model":"bench-fast","messages":[{"role":"user","content":"Hello, how are you today?"}]}"#;
const CONNECTIONS: usize = 64;
const BATCH_LINES: usize = 20_000;

struct Live {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3
}

async fn live(url: &str, key: &str, secs: u64) -> Live {
    let until = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (url, key) = (format!("{url}/v1/chat/completions"), key.to_string());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut times = Vec::new();
                while Instant::now() < until {
                    let started = Instant::now();
                    let res = client
                        .post(&url)
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(LIVE)
                        .send()
                        .await
                        .unwrap();
                    let ok = res.status() == 200;
                    let _ = res.bytes().await;
                    if ok {
                        times.push(started.elapsed());
                    }
                }
                times
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    Live {
        rps: all.len() as f64 / secs as f64,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
    }
}

async fn start_batch(client: &reqwest::Client, url: &str, key: &str) -> String {
    let text: String = (0..BATCH_LINES)
        .map(|i| {
            format!("{{\"custom_id\":\"b{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{LIVE}}}\n")
        })
        .collect();
    let form = reqwest::multipart::Form::new()
        .text("purpose", "batch")
        .part(
            "file",
            reqwest::multipart::Part::bytes(text.into_bytes()).file_name("bench.jsonl"),
        );
    let file: Value = client
        .post(format!("{url}/v1/files"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let batch: Value = client
        .post(format!("{url}/v1/batches"))
        .bearer_auth(key)
        .json(&json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    batch["id"].as_str().unwrap().to_string()
}

async fn answered(client: &reqwest::Client, url: &str, key: &str, id: &str) -> u64 {
    let b: Value = client
        .get(format!("{url}/v1/batches/{id}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    b["request_counts"]["completed"].as_u64().unwrap_or(0)
        + b["request_counts"]["failed"].as_u64().unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, key) = (&args[1], &args[2]);
    let rounds: usize = args.get(3).map_or(3, |r| r.parse().unwrap());
    let secs: u64 = args.get(4).map_or(8, |s| s.parse().unwrap());
    let client = reqwest::Client::new();
    // Warm-up: pools and first allocations.
    live(url, key, 2).await;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let (mut during, mut after) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let alone = live(url, key, secs).await;
        let id = start_batch(&client, url, key).await;
        // Let it start (validation, first lines) before the live load begins.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = answered(&client, url, key, &id).await;
        let shared = live(url, key, secs).await;
        let at_end = answered(&client, url, key, &id).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let a_second_later = answered(&client, url, key, &id).await;
        client
            .post(format!("{url}/v1/batches/{id}/cancel"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        println!(
            "round {round}: live alone {:.0} req/s p50 {:.3} ms p99 {:.3} ms | with a batch {:.0} req/s p50 {:.3} ms p99 {:.3} ms | batch lines: {} during the live load ({} s), {} in the second after",
            alone.rps, alone.p50_ms, alone.p99_ms, shared.rps, shared.p50_ms, shared.p99_ms,
            at_end - before, secs, a_second_later - at_end
        );
        during.push((at_end - before) as f64);
        after.push((a_second_later - at_end) as f64);
        without.push(alone);
        with.push(shared);
        // The cancelled batch's lines in flight finish before the next round.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let m = |v: &[Live], f: fn(&Live) -> f64| median(v.iter().map(f).collect());
    let result = json!({
        "without_batch": {"rps": m(&without, |l| l.rps), "p50_ms": m(&without, |l| l.p50_ms), "p99_ms": m(&without, |l| l.p99_ms)},
        "with_batch": {"rps": m(&with, |l| l.rps), "p50_ms": m(&with, |l| l.p50_ms), "p99_ms": m(&with, |l| l.p99_ms)},
        "batch_lines_during_live_load": median(during),
        "batch_lines_in_the_second_after": median(after),
    });
    println!("{result}");
}
