//! The load benchmark's client when `oha` is not installed (this machine has no network to
//! install it): `load_client URL KEY BODY CONNS SECS` posts BODY to URL on CONNS keep-alive
//! connections for SECS seconds, each sending its next request when the last answer arrived
//! (closed loop, as oha does), and prints the figures `run.sh` reads from oha, in oha's JSON
//! shape: `summary.requestsPerSec`, `latencyPercentiles.p50`/`p99` (seconds),
//! `statusCodeDistribution`, `errorDistribution`. Requests cut off when the time is up are not
//! counted, as oha does.

// A benchmark tool, not the gateway: it prints its results and stops at the first failure.
#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Tally {
    times: Vec<Duration>,
    statuses: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize].as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key, body, conns, secs] = args.as_slice() else {
        panic!("usage: load_client URL KEY BODY CONNS SECS");
    };
    let conns: usize = conns.parse().expect("CONNS");
    let secs: f64 = secs.parse().expect("SECS");
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (url, key, body) = (url.clone(), key.clone(), body.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                let mut tally = Tally::default();
                loop {
                    let sent = Instant::now();
                    let left = until.saturating_duration_since(sent);
                    if left.is_zero() {
                        break;
                    }
                    let call = async {
                        let res = client
                            .post(&url)
                            .bearer_auth(&key)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await?;
                        let status = res.status().as_u16();
                        res.bytes().await?;
                        Ok::<u16, reqwest::Error>(status)
                    };
                    match tokio::time::timeout(left, call).await {
                        Err(_) => break, // cut off at the end: not counted
                        Ok(Ok(status)) => {
                            tally.times.push(sent.elapsed());
                            *tally.statuses.entry(status.to_string()).or_default() += 1;
                        }
                        Ok(Err(e)) => *tally.errors.entry(e.to_string()).or_default() += 1,
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.unwrap();
        all.times.extend(t.times);
        for (k, v) in t.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
        for (k, v) in t.errors {
            *all.errors.entry(k).or_default() += v;
        }
    }
    all.times.sort();
    let elapsed = started.elapsed().as_secs_f64().max(secs);
    println!(
        "{}",
        json!({
            "summary": {"requestsPerSec": all.times.len() as f64 / elapsed},
            "latencyPercentiles": {"p50": percentile(&all.times, 0.5), "p99": percentile(&all.times, 0.99)},
            "statusCodeDistribution": all.statuses,
            "errorDistribution": all.errors,
        })
    );
}
