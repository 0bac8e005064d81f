//! The instruction-count harness: drives N chat requests through the real request path in one
//! process, for `valgrind --tool=callgrind` to count (see `benches/instructions/check.sh`).
//!
//! `instructions REQUESTS [--policies DIR|none] [--only SCRIPT] [--off log,metrics] [--direct]
//! [--reference] [--workers N] [--load CONNS SECS]`
//!
//! The gateway is built with the same app factory as `main.rs` and the tests
//! (`Application::build`, one worker, sled in a temp folder, accounting and request logs on),
//! against an upstream on 127.0.0.1 served by a thread of this process. The client is a plain
//! blocking socket with one keep-alive connection, and the upstream answers canned bytes, so
//! what they cost per request is small and constant; `--direct` sends the same requests
//! straight to the upstream to measure it. Warm-up requests go first (connection pools, the
//! key's first lookup, first allocations); the N measured requests are framed by two marker
//! functions that `check.sh` gives callgrind (`--zero-before`, `--dump-before`), so start-up
//! and shutdown are not counted, nor the spin of a thread waiting for another's lazy start
//! (tens of millions of instructions, more or fewer from run to run, under valgrind).
//!
//! The request log's writer (a thread that takes what is queued every 100 ms) is set to write
//! only when the gateway stops, in one batch, after the window: what a tick finds depends on
//! the run's pace, slow under valgrind, and writing costs per entry more or less with it
//! (±2 % of a request's count from run to run). `check.sh` counts the writer apart, from the
//! shutdown of a run of N and of 2N requests.
//!
//! `--load CONNS SECS` (with `--workers N`) is a timed run instead: CONNS client threads on
//! their own connections for SECS seconds, printing requests per second (benches/load/
//! workers.sh: throughput with one worker and with two).
//!
//! `--reference` sends the same requests through the load benchmark's reference proxy
//! (`benches/load/reference.rs`, the bare actix-web + reqwest pass-through) served in this
//! process with one worker, so the gateway's count and the reference's are taken the same way.
//!
//! `--policies none` runs no policies (the default is the shipped `policies/`); `--only S`
//! keeps one shipped script (`20-cache.rhai`), for its cost alone; `--off` switches
//! subsystems off through `Settings::bench_off` (a benchmark-only switch, not a setting).

// A benchmark tool, not the gateway: it stops at the first failure.
#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

#[path = "../load/reference.rs"]
mod reference;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use switchboard::{Application, Settings};

/// The binary's allocator, so the figures are the gateway's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const KEY: &str = "sk-bench-admin";
/// The load benchmark's request (benches/load/run.sh).
const BODY: &str =
    r#"{"model":"bench-fast","messages":[{"role":"user","content":"Hello, how are you today?"}]}"#;
/// The load benchmark's mock upstream's reply (benches/load/mock_upstream.rs).
const REPLY: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a short benchmark reply."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#;
const WARMUP: usize = 20;

struct Args {
    requests: usize,
    policies: Option<PathBuf>,
    only: Option<String>,
    off_log: bool,
    off_metrics: bool,
    direct: bool,
    reference: bool,
    workers: usize,
    /// `--load CONNS SECS`: a timed throughput run instead of a counted one.
    load: Option<(usize, u64)>,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        requests: it.next().and_then(|n| n.parse().ok()).expect(
            "usage: instructions REQUESTS [--policies DIR|none] [--only SCRIPT] [--off log,metrics] [--direct] [--reference] [--workers N] [--load CONNS SECS]",
        ),
        policies: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")),
        only: None,
        off_log: false,
        off_metrics: false,
        direct: false,
        reference: false,
        workers: 1,
        load: None,
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--policies" => {
                let dir = it.next().expect("--policies DIR|none");
                a.policies = (dir != "none").then(|| PathBuf::from(dir));
            }
            "--only" => a.only = Some(it.next().expect("--only SCRIPT")),
            "--off" => {
                for part in it.next().expect("--off log,metrics").split(',') {
                    match part {
                        "log" => a.off_log = true,
                        "metrics" => a.off_metrics = true,
                        "" => {}
                        other => panic!("--off: unknown subsystem {other} (log, metrics)"),
                    }
                }
            }
            "--direct" => a.direct = true,
            "--reference" => a.reference = true,
            "--workers" => a.workers = it.next().and_then(|n| n.parse().ok()).expect("--workers N"),
            "--load" => {
                let conns = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--load CONNS SECS");
                let secs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--load CONNS SECS");
                a.load = Some((conns, secs));
            }
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// Reads one HTTP/1.1 message (head and body, by content-length or chunked) from `r`; returns
/// the head's first line and the body. Enough for the two ends of this harness, no more.
fn read_message(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut first = String::new();
    if r.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.trim().eq_ignore_ascii_case("chunked");
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some((first, body))
}

/// A connection's two halves, for writing and for reading messages, with Nagle off.
fn halves(conn: TcpStream) -> (TcpStream, BufReader<TcpStream>) {
    conn.set_nodelay(true).unwrap();
    (conn.try_clone().unwrap(), BufReader::new(conn))
}

/// The chat request every client sends, as bytes on the wire.
fn chat_request(host: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
}

/// The upstream: a thread per connection, answering every request with [`REPLY`].
fn upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let (mut w, mut r) = halves(conn);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{REPLY}",
                    REPLY.len()
                );
                while read_message(&mut r).is_some() {
                    if w.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Called once the warm-up requests are answered: `check.sh` runs callgrind with
/// `--zero-before` on it, so every thread's count starts here, after start-up.
#[inline(never)]
fn callgrind_window_start(n: usize) {
    // A side effect, so the call stays, and bodies unlike each other, so the linker does not
    // fold the two markers into one function.
    MARKER.store(n, Ordering::SeqCst);
}

/// Called once the measured requests are answered: `check.sh` runs callgrind with
/// `--dump-before` on it, so the count ends here, before shutdown.
#[inline(never)]
fn callgrind_window_end(n: usize) {
    MARKER.fetch_add(n, Ordering::SeqCst);
}

static MARKER: AtomicUsize = AtomicUsize::new(0);

/// Sends `warmup` then `n` chat requests on one keep-alive connection; every reply must be a
/// 200. The `n` are between the two window markers above.
fn drive(addr: &str, warmup: usize, n: usize) {
    let host = addr.trim_start_matches("http://");
    let (mut w, mut r) = halves(TcpStream::connect(host).unwrap());
    let request = chat_request(host);
    let mut send = |i: usize, must_succeed: bool| {
        w.write_all(request.as_bytes()).unwrap();
        let (status, body) = read_message(&mut r).expect("a reply");
        if !status.starts_with("HTTP/1.1 200") {
            let why = format!("request {i}: {status} {}", String::from_utf8_lossy(&body));
            // Under valgrind a script can overrun its 50 ms time budget (wall time: the first
            // counter's first write, or a busy machine descheduling the process). Warm-up is
            // outside the window, so it may fail; a measured request failing spoils the count,
            // and exit code 3 tells check.sh to run again.
            eprintln!("{why}");
            if must_succeed {
                std::process::exit(3);
            }
        }
    };
    (0..warmup).for_each(|i| send(i, false));
    callgrind_window_start(n);
    (0..n).for_each(|i| send(i, true));
    callgrind_window_end(n);
}

/// `conns` client threads, each on its own keep-alive connection, for `secs` seconds after a
/// second of warm-up; returns the requests per second answered.
fn load(addr: &str, conns: usize, secs: u64) -> f64 {
    let host = addr.trim_start_matches("http://").to_string();
    let request = chat_request(&host);
    let start = std::time::Instant::now();
    let (from, until) = (
        start + std::time::Duration::from_secs(1),
        start + std::time::Duration::from_secs(1 + secs),
    );
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (host, request) = (host.clone(), request.clone());
            std::thread::spawn(move || {
                let (mut w, mut r) = halves(TcpStream::connect(&host).unwrap());
                let mut counted = 0u64;
                loop {
                    let now = std::time::Instant::now();
                    if now >= until {
                        return counted;
                    }
                    w.write_all(request.as_bytes()).unwrap();
                    let (status, _) = read_message(&mut r).expect("a reply");
                    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
                    if now >= from {
                        counted += 1;
                    }
                }
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / secs as f64
}

#[actix_web::main]
async fn main() {
    let a = args();
    // sled builds its global metrics lazily, and a thread that finds another one building
    // them spins until it is done: under valgrind, whose threads take turns, that spin is
    // tens of millions of instructions, more or fewer from run to run. Built here, while
    // this is the only thread, nothing spins.
    drop(
        sled::Config::new()
            .temporary(true)
            .open()
            .expect("a temporary sled"),
    );
    let up = upstream();
    if a.direct {
        tokio::task::spawn_blocking(move || drive(&up, WARMUP, a.requests))
            .await
            .unwrap();
        println!("direct: {} requests", a.requests);
        return;
    }
    if a.reference {
        let data = reference::Upstream::new(&format!("{up}/v1"));
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .configure(reference::routes)
        })
        .workers(a.workers)
        .bind("127.0.0.1:0")
        .unwrap();
        let base = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        let served = tokio::spawn(server);
        let requests = a.requests;
        tokio::task::spawn_blocking(move || drive(&base, WARMUP, requests))
            .await
            .unwrap();
        handle.stop(true).await;
        served.await.unwrap().unwrap();
        println!("reference: {requests} requests");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::with_base(dir.path());
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin_key = Some(KEY.into());
    settings.workers = a.workers;
    settings.watch = false;
    settings.bench_off.request_log = a.off_log;
    settings.bench_off.metrics = a.off_metrics;
    // Counted runs: the request log's writer writes once, when the gateway stops (after the
    // window); what it costs per entry is counted from that batch (check.sh, `writer`), the
    // same at any pace. Timed runs keep its 100 ms tick, as the gateway runs.
    settings.bench_off.log_writer_at_stop = a.load.is_none();
    std::fs::create_dir_all(&settings.providers_dir).unwrap();
    std::fs::write(
        settings.providers_dir.join("bench.yaml"),
        format!("kind: openai\nbase_url: {up}/v1\nmodels:\n  - {{ name: bench-fast, pricing: {{ input: 1.0, output: 2.0 }} }}\n"),
    )
    .unwrap();
    std::fs::create_dir_all(&settings.policies_dir).unwrap();
    if let Some(shipped) = &a.policies {
        for entry in std::fs::read_dir(shipped).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let wanted = a.only.as_ref().is_none_or(|only| *only == name);
            if path.extension().is_some_and(|e| e == "rhai") && wanted {
                std::fs::copy(&path, settings.policies_dir.join(&name)).unwrap();
            }
        }
    }
    let app = Application::build(settings).await.expect("the app builds");
    let base = format!("http://{}", app.addr());
    let handle = app.handle();
    let served = tokio::spawn(app.run());
    let requests = a.requests;
    match a.load {
        None => tokio::task::spawn_blocking(move || drive(&base, WARMUP, requests))
            .await
            .unwrap(),
        Some((conns, secs)) => {
            let rate = tokio::task::spawn_blocking(move || load(&base, conns, secs))
                .await
                .unwrap();
            println!(
                "{} workers, {conns} connections: {rate:.0} req/s",
                a.workers
            );
        }
    }
    handle.stop(true).await;
    served.await.unwrap().unwrap();
    if a.load.is_none() {
        println!("switchboard: {requests} requests");
    }
}
