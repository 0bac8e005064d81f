//! The process as an operator runs it: JSON logs, `switchboard healthcheck`, and a graceful
//! stop on SIGTERM.

use crate::cli::{bin, Running};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `switchboard serve` on port 0 with a `providers.d` holding `provider` (YAML), the
/// data in `data`, stderr into `stderr` (a file) or nowhere, and these extra arguments.
/// Returns the running process and its base URL.
fn start(
    mut cmd: Command,
    base: &Path,
    provider: &str,
    data: &Path,
    stderr: Option<&Path>,
    extra: &[&str],
) -> (Running, String) {
    let providers = base.join("providers.d");
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::create_dir_all(base.join("policies")).unwrap();
    std::fs::write(providers.join("mock.yaml"), provider).unwrap();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--no-watch"])
        .args(extra)
        .arg("--data")
        .arg(data)
        .arg("--providers")
        .arg(&providers)
        .arg("--policies")
        .arg(base.join("policies"))
        .stdout(Stdio::piped());
    match stderr {
        Some(file) => cmd.stderr(std::fs::File::create(file).unwrap()),
        None => cmd.stderr(Stdio::null()),
    };
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("switchboard listening on ") {
            return (running, addr.to_string());
        }
    }
    panic!("the server exited without printing its address");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `GET url` with a bearer key, as JSON.
fn get_json(url: &str, key: &str) -> serde_json::Value {
    runtime().block_on(async {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

/// Waits for `done`, failing the test after `limit`.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn json_logs_are_one_object_a_line_with_the_request_id_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "sk-json-log-admin-secret-7f3a";
    let log = dir.path().join("stderr.log");
    let mut cmd = bin();
    cmd.env("SWITCHBOARD_ADMIN_KEY", admin)
        .env("RUST_LOG", "info,switchboard::proxy::request_id=debug");
    let (_server, addr) = start(
        cmd,
        dir.path(),
        "kind: mock\nmodels: [echo]\n",
        &dir.path().join("data"),
        Some(&log),
        &["--log-format", "json"],
    );
    let request_id = runtime().block_on(async {
        let res = reqwest::Client::new()
            .post(format!("{addr}/v1/chat/completions"))
            .bearer_auth(admin)
            .json(&serde_json::json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        res.headers()["x-request-id"].to_str().unwrap().to_string()
    });
    wait_for(
        Duration::from_secs(5),
        "the request was never logged",
        || std::fs::read_to_string(&log).unwrap().contains(&request_id),
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines = 0;
    let mut request = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for key in ["timestamp", "level", "message", "target"] {
            assert!(event.get(key).is_some(), "no `{key}` in {line}");
        }
        if event["request_id"] == request_id.as_str() {
            request = Some(event);
        }
        lines += 1;
    }
    // Start-up lines (providers loaded, …) and the request's.
    assert!(lines >= 2, "{text}");
    let request = request.unwrap_or_else(|| panic!("no event with the request id: {text}"));
    assert_eq!(request["message"], "request", "{request}");
    assert_eq!(request["level"], "DEBUG", "{request}");
    assert_eq!(request["status"], 404, "{request}");
    assert_eq!(request["path"], "/v1/chat/completions", "{request}");
    assert!(
        text.contains("\"message\":\"provider loaded\"") && text.contains("\"provider\":\"mock\""),
        "an event's fields are top-level keys: {text}"
    );
    assert!(
        !text.contains(admin),
        "the admin key is never logged: {text}"
    );
}

#[test]
fn the_default_log_format_is_text() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut cmd = bin();
    cmd.env("SWITCHBOARD_ADMIN_KEY", "sk-text-admin")
        .env("RUST_LOG", "info");
    let (server, _addr) = start(
        cmd,
        dir.path(),
        "kind: mock\nmodels: [echo]\n",
        &dir.path().join("data"),
        Some(&log),
        &[],
    );
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("provider loaded"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with('{')),
        "no JSON without --log-format json: {text}"
    );
}

/// Runs `switchboard healthcheck` with these arguments.
fn healthcheck(args: &[&str]) -> std::process::Output {
    bin().arg("healthcheck").args(args).output().unwrap()
}

#[test]
fn healthcheck_exits_0_on_a_running_gateway_and_1_once_it_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(
        bin(),
        dir.path(),
        "kind: mock\nmodels: [echo]\n",
        &dir.path().join("data"),
        None,
        &[],
    );
    let live = healthcheck(&["--url", &addr]);
    assert_eq!(live.status.code(), Some(0), "{live:?}");
    assert!(String::from_utf8_lossy(&live.stdout).contains("/health/live"));
    let ready = healthcheck(&["--url", &addr, "--ready"]);
    assert_eq!(ready.status.code(), Some(0), "{ready:?}");
    assert!(String::from_utf8_lossy(&ready.stdout).contains("/health/ready"));
    drop(server);
    let gone = healthcheck(&["--url", &addr]);
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(err.starts_with("unhealthy: "), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
}

#[test]
fn healthcheck_ready_exits_1_when_readiness_is_not_200() {
    // A stand-in gateway that is alive but not ready: 503 on every request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 2048];
        let n = conn.read(&mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        conn.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
        head
    });
    let out = healthcheck(&["--url", &format!("http://{addr}"), "--ready"]);
    let head = answered.join().unwrap();
    assert!(head.starts_with("GET /health/ready "), "{head}");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("503"), "{err}");
}

/// Sends SIGTERM to the server.
fn terminate(server: &Running) {
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A mock whose streams take about 200 ms a word.
const SLOW: &str = "kind: mock\nmodels: [slow]\nmock:\n  reply: one two three four five six seven eight nine ten\n  chunk_delay_ms: 200\n";

#[cfg(unix)]
#[test]
fn sigterm_lets_a_stream_finish_refuses_new_connections_and_keeps_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = "sk-shutdown-admin";
    let mut cmd = bin();
    cmd.env("SWITCHBOARD_ADMIN_KEY", admin);
    let (mut server, addr) = start(
        cmd,
        dir.path(),
        SLOW,
        &data,
        None,
        &["--shutdown-grace-secs", "20"],
    );
    let host = addr.trim_start_matches("http://").to_string();
    let (request_id, body) = runtime().block_on(async {
        use futures_util::StreamExt;
        let res = reqwest::Client::new()
            .post(format!("{addr}/v1/chat/completions"))
            .bearer_auth(admin)
            .json(&serde_json::json!({"model": "slow", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
        let mut chunks = res.bytes_stream();
        let first = chunks.next().await.unwrap().unwrap();
        let mut body = String::from_utf8_lossy(&first).into_owned();
        // Mid-stream: the rest takes about two seconds.
        terminate(&server);
        let started = Instant::now();
        loop {
            // No new connection once the stop has begun (checked on a blocking thread, while
            // this one keeps nothing from the stream: it is buffered by the socket).
            let host = host.clone();
            let refused = tokio::task::spawn_blocking(move || {
                std::net::TcpStream::connect(host).is_err()
            })
            .await
            .unwrap();
            if refused {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "new connections are still accepted after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !body.contains("[DONE]"),
            "the stream ended before it was tested mid-way: {body}"
        );
        while let Some(chunk) = chunks.next().await {
            body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        (request_id, body)
    });
    assert!(
        body.contains("\"content\":\"ten\"") || body.contains(" ten"),
        "{body}"
    );
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let mut status = None;
    wait_for(Duration::from_secs(20), "the gateway did not exit", || {
        status = server.0.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    drop(server);

    // The request's log entry and usage were written before the exit.
    let mut cmd = bin();
    cmd.env("SWITCHBOARD_ADMIN_KEY", admin);
    let (_again, addr) = start(cmd, dir.path(), SLOW, &data, None, &[]);
    let logs = get_json(&format!("{addr}/admin/logs"), admin);
    let entry = logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["request_id"] == request_id.as_str())
        .unwrap_or_else(|| panic!("the stream's log entry was lost: {logs}"));
    assert_eq!(entry["status"], 200, "{entry}");
    let usage = get_json(&format!("{addr}/admin/usage"), admin);
    assert_eq!(usage["totals"]["requests"], 1, "{usage}");
    assert!(
        usage["totals"]["completion_tokens"].as_u64().unwrap() > 0,
        "{usage}"
    );
}

#[cfg(unix)]
#[test]
fn the_grace_period_bounds_how_long_a_stop_waits() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "sk-grace-admin";
    // About 20 seconds of stream, against a 1 second grace period.
    let provider = "kind: mock\nmodels: [slow]\nmock:\n  chunk_delay_ms: 2000\n";
    let mut cmd = bin();
    cmd.env("SWITCHBOARD_ADMIN_KEY", admin)
        .env("SWITCHBOARD_SHUTDOWN_GRACE_SECS", "1");
    let (mut server, addr) = start(
        cmd,
        dir.path(),
        provider,
        &dir.path().join("data"),
        None,
        &[],
    );
    runtime().block_on(async {
        use futures_util::StreamExt;
        let res = reqwest::Client::new()
            .post(format!("{addr}/v1/chat/completions"))
            .bearer_auth(admin)
            .json(&serde_json::json!({"model": "slow", "stream": true, "messages": [{"role": "user", "content": "a b c d e f g h i j"}]}))
            .send()
            .await
            .unwrap();
        let mut chunks = res.bytes_stream();
        chunks.next().await.unwrap().unwrap();
        terminate(&server);
        let started = Instant::now();
        let mut status = None;
        while status.is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "the stop waited past the grace period"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            status = server.0.try_wait().unwrap();
        }
        assert_eq!(status.and_then(|s| s.code()), Some(0));
    });
}
