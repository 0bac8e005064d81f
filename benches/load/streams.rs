//! Stream measurements the load tool cannot make. `streams URL KEY ttfb N` sends N streaming
//! chats one after another and prints the time to the first byte (p50, p99, in µs; each
//! stream is dropped after its first chunk);
//! `streams URL KEY concurrent N` opens N streams at once and prints how many completed, how
//! many stalled (no chunk for over 2 s) and how many failed. Output is one JSON line.

// A benchmark tool, not the gateway: it prints its results and stops at the first failure.
#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use futures_util::StreamExt;
use std::time::{Duration, Instant};

const BODY: &str = r#"{"model":"bench-stream","stream":true,"messages":[{"role":"user","content":"Say twenty words."}]}"#;

fn percentile(sorted: &[u128], q: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

async fn one(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    first_only: bool,
) -> Result<(Duration, bool), String> {
    let started = Instant::now();
    let res = client
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("status {}", res.status()));
    }
    let mut body = res.bytes_stream();
    let mut ttfb = None;
    let mut stalled = false;
    let mut text = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(2), body.next()).await {
            Ok(Some(Ok(chunk))) => {
                let first = *ttfb.get_or_insert_with(|| started.elapsed());
                if first_only {
                    return Ok((first, false));
                }
                text.extend_from_slice(&chunk);
            }
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => break,
            Err(_) => {
                stalled = true;
                break;
            }
        }
    }
    if !stalled && !text.ends_with(b"data: [DONE]\n\n") {
        return Err("stream ended without [DONE]".into());
    }
    Ok((ttfb.unwrap_or_default(), stalled))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: streams URL KEY ttfb|concurrent N");
        std::process::exit(2);
    }
    let (url, key, mode) = (args[1].clone(), args[2].clone(), args[3].as_str());
    let n: usize = args[4].parse().expect("N");
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("client");
    match mode {
        "ttfb" => {
            let mut times = Vec::with_capacity(n);
            let mut errors = 0;
            for _ in 0..n {
                match one(&client, &url, &key, true).await {
                    Ok((t, _)) => times.push(t.as_micros()),
                    Err(_) => errors += 1,
                }
            }
            times.sort_unstable();
            println!(
                "{{\"ttfb_p50_us\":{},\"ttfb_p99_us\":{},\"errors\":{errors}}}",
                percentile(&times, 0.5),
                percentile(&times, 0.99)
            );
        }
        "concurrent" => {
            let started = Instant::now();
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let (client, url, key) = (client.clone(), url.clone(), key.clone());
                    tokio::spawn(async move { one(&client, &url, &key, false).await })
                })
                .collect();
            let (mut ok, mut stalled, mut failed) = (0, 0, 0);
            for t in tasks {
                match t.await {
                    Ok(Ok((_, false))) => ok += 1,
                    Ok(Ok((_, true))) => stalled += 1,
                    _ => failed += 1,
                }
            }
            println!(
                "{{\"completed\":{ok},\"stalled\":{stalled},\"failed\":{failed},\"seconds\":{:.2}}}",
                started.elapsed().as_secs_f64()
            );
        }
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
}
