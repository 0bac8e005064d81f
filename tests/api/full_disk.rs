//! A full disk, for real: the data folder on a small tmpfs, filled up and freed again.
//!
//! Mounting needs root (or CAP_SYS_ADMIN). Without it the test prints a SKIPPED line and passes,
//! except in CI (`CI=true`), where it must run.

use crate::cli::{bin, call, get, serve_with};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted on a temp folder; unmounted on drop, whatever happened.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("mnt");
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs { path, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still has a file open there: detach it now, it goes when released.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Writes into `path` until the filesystem is full, to the last byte.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in [1 << 16, 4096, 512, 1] {
        let buf = vec![0xa5u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
}

/// The value of one metric line (`name{labels} value`), 0 when absent.
fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// Polls `f` until it returns `Some`, at most `secs` seconds.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const ADMIN: &str = "sk-full-disk-admin";

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_fails_writes_honestly_and_recovers_without_a_restart() {
    let disk = match Tmpfs::mount("16m") {
        Ok(disk) => disk,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must run the full-disk test, but mounting a tmpfs failed: {e}")
        }
        Err(e) => {
            println!(
                "SKIPPED full_disk: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {e}"
            );
            return;
        }
    };
    let base = tempfile::tempdir().unwrap();
    let providers = base.path().join("providers.d");
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::write(providers.join("mock.yaml"), "kind: mock\nmodels: [echo]\n").unwrap();
    let data = disk.path.join("data");
    let start = || {
        let mut cmd = bin();
        cmd.env("SWITCHBOARD_ADMIN_KEY", ADMIN);
        serve_with(
            cmd,
            base.path(),
            &providers,
            // Bodies in the log: big entries, to fill what sled has set aside on disk.
            &[
                "--no-watch",
                "--log-bodies",
                "--data",
                data.to_str().unwrap(),
            ],
        )
    };
    let (server, addr, _) = start();
    let url = |path: &str| format!("{addr}{path}");
    let chat = |key: &str| {
        call(
            "POST",
            &url("/v1/chat/completions"),
            key,
            json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .0
    };
    let create = |name: &str| call("POST", &url("/admin/keys"), ADMIN, json!({"name": name}));
    let ready = || call("GET", &url("/health/ready"), ADMIN, Value::Null);
    let requests_of = |id: &str| -> u64 {
        let (status, body) = call(
            "GET",
            &url(&format!("/admin/keys/{id}")),
            ADMIN,
            Value::Null,
        );
        assert_eq!(status, 200, "{body}");
        body["usage"]["requests"].as_u64().unwrap()
    };

    // Some use before the disk fills up.
    let (status, body) = create("before");
    assert_eq!(status, 201, "{body}");
    let (before_id, before) = (
        body["id"].as_str().unwrap().to_string(),
        body["key"].as_str().unwrap().to_string(),
    );
    for _ in 0..3 {
        assert_eq!(chat(&before), 200);
    }
    wait_for(5, "usage before the disk fills", || {
        (requests_of(&before_id) == 3).then_some(())
    });

    // Full: a key change is refused with 503 (never a 201 that is then lost); every key
    // answered 201 before that was really written.
    let filler = disk.path.join("filler");
    fill(&filler);
    let mut acked = Vec::new();
    let refusal = (0..300)
        .find_map(|i| {
            let (status, body) = create(&format!("while-full-{i}"));
            match status {
                201 => {
                    acked.push(body["key"].as_str().unwrap().to_string());
                    None
                }
                503 => Some(body),
                other => panic!("creating a key on a full disk answered {other}: {body}"),
            }
        })
        .expect("a key change on a full disk was refused");
    assert_eq!(refusal["error"]["code"], "storage_unavailable", "{refusal}");
    assert_eq!(refusal["error"]["type"], "api_error", "{refusal}");
    assert!(refusal["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/health/ready"));
    let (status, body) = ready();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["store"], "unwritable", "{body}");
    assert!(
        body["store_error"]
            .as_str()
            .unwrap()
            .contains("no space left"),
        "{body}"
    );

    // Requests are still served (keys live in memory); their log entries and usage wait.
    for _ in 0..5 {
        assert_eq!(chat(&before), 200);
    }
    let metrics = wait_for(5, "held entries in /metrics", || {
        let m = get(&url("/metrics"), ADMIN);
        (metric(&m, "switchboard_accounting_held_entries") >= 5.0).then_some(m)
    });
    assert_eq!(metric(&metrics, "switchboard_store_writable"), 0.0);
    assert!(
        metric(
            &metrics,
            "switchboard_store_write_failures_total{what=\"keys\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "switchboard_accounting_dropped_total"),
        0.0
    );

    // Space again: the store recovers by itself, no restart.
    std::fs::remove_file(&filler).unwrap();
    let body = wait_for(20, "readiness after space returned", || {
        let (status, body) = ready();
        (status == 200).then_some(body)
    });
    assert_eq!(body["store"], "ok", "{body}");
    let metrics = wait_for(5, "held entries written", || {
        let m = get(&url("/metrics"), ADMIN);
        (metric(&m, "switchboard_accounting_held_entries") == 0.0).then_some(m)
    });
    assert_eq!(metric(&metrics, "switchboard_store_writable"), 1.0);
    assert!(metric(&metrics, "switchboard_store_reopens_total") >= 1.0);
    assert_eq!(
        requests_of(&before_id),
        8,
        "the requests served while the disk was full are counted, once"
    );
    let (status, body) = create("after");
    assert_eq!(status, 201, "{body}");
    let after = body["key"].as_str().unwrap().to_string();
    assert_eq!(chat(&after), 200);

    // Full again, with only traffic writing (request logs and usage, the probe): found out
    // all the same, and nothing is lost or counted twice, whether it failed to be written or
    // was written but not yet flushed when the store had to be reopened. A reopened sled has
    // its current 2 MiB segment on disk already and writes into it on a full disk too:
    // requests with incompressible bodies fill it. (Bodies small enough that no page of the
    // log exceeds sled's blob size: see `full_disk_with_large_values` for those.)
    fill(&filler);
    let mut served = 0;
    let big_chat = |key: &str| {
        use rand::distributions::{Alphanumeric, DistString};
        let content = Alphanumeric.sample_string(&mut rand::thread_rng(), 4 * 1024);
        call(
            "POST",
            &url("/v1/chat/completions"),
            key,
            json!({"model": "echo", "messages": [{"role": "user", "content": content}]}),
        )
        .0
    };
    wait_for(
        30,
        "readiness to see the full disk from traffic alone",
        || {
            assert_eq!(big_chat(&before), 200);
            served += 1;
            (ready().0 == 503).then_some(())
        },
    );
    for _ in 0..3 {
        assert_eq!(chat(&before), 200);
        served += 1;
    }
    std::fs::remove_file(&filler).unwrap();
    wait_for(20, "readiness after space returned again", || {
        (ready().0 == 200).then_some(())
    });
    let metrics = wait_for(5, "held entries written again", || {
        let m = get(&url("/metrics"), ADMIN);
        (metric(&m, "switchboard_accounting_held_entries") == 0.0).then_some(m)
    });
    assert!(
        metric(&metrics, "switchboard_store_reopens_total") >= 2.0,
        "{metrics}"
    );
    let expected = 8 + served;
    assert_eq!(requests_of(&before_id), expected, "counted once each");

    // A graceful stop flushes what it holds; everything is there after a start.
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut server = server;
    let exit = wait_for(30, "the gateway to stop on SIGTERM", || {
        server.0.try_wait().unwrap()
    });
    assert!(exit.success(), "stopped with {exit}");
    drop(server);

    let (_server, addr, _) = start();
    let url = |path: &str| format!("{addr}{path}");
    let chat = |key: &str| {
        call(
            "POST",
            &url("/v1/chat/completions"),
            key,
            json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .0
    };
    let (status, body) = call(
        "GET",
        &url(&format!("/admin/keys/{before_id}")),
        ADMIN,
        Value::Null,
    );
    assert_eq!(status, 200);
    assert_eq!(body["usage"]["requests"], expected, "{body}");
    let (_, logs) = call(
        "GET",
        &url(&format!("/admin/logs?key_id={before_id}&limit=500")),
        ADMIN,
        Value::Null,
    );
    let logged = logs["data"].as_array().unwrap().len() as u64;
    assert_eq!(logged, expected.min(500), "{logs}");
    assert_eq!(chat(&after), 200, "the key created after recovery was lost");
    assert_eq!(chat(&before), 200);
    for key in &acked {
        assert_eq!(chat(key), 200, "a key answered 201 on a full disk was lost");
    }
}

/// Large values (over a quarter of sled's 2 MiB segment: big logged bodies here, big cached
/// replies in general) are written by sled as separate blob files, and a blob write that fails
/// for want of space can leave sled unable to finish any later flush (see
/// `src/store/database.rs`). Whatever happens, the gateway must say so, keep answering, stop
/// on SIGTERM, and start again with every acknowledged key.
#[cfg(target_os = "linux")]
#[test]
fn full_disk_with_large_values() {
    let disk = match Tmpfs::mount("32m") {
        Ok(disk) => disk,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must run the full-disk test, but mounting a tmpfs failed: {e}")
        }
        Err(e) => {
            println!("SKIPPED full_disk_with_large_values: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {e}");
            return;
        }
    };
    let base = tempfile::tempdir().unwrap();
    let providers = base.path().join("providers.d");
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::write(providers.join("mock.yaml"), "kind: mock\nmodels: [echo]\n").unwrap();
    let data = disk.path.join("data");
    let start = || {
        let mut cmd = bin();
        cmd.env("SWITCHBOARD_ADMIN_KEY", ADMIN);
        serve_with(
            cmd,
            base.path(),
            &providers,
            &[
                "--no-watch",
                "--log-bodies",
                "--data",
                data.to_str().unwrap(),
            ],
        )
    };
    let (server, addr, _) = start();
    let url = |path: &str| format!("{addr}{path}");
    // Every call here must answer quickly: a store in trouble must not hang the gateway.
    let quick = |method: &str, path: &str, body: Value| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let res = reqwest::Client::new()
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    url(path),
                )
                .bearer_auth(ADMIN)
                .timeout(Duration::from_secs(5))
                .json(&body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path} did not answer: {e}"));
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    let big_chat = || {
        use rand::distributions::{Alphanumeric, DistString};
        let content = Alphanumeric.sample_string(&mut rand::thread_rng(), 256 * 1024);
        quick(
            "POST",
            "/v1/chat/completions",
            json!({"model": "echo", "messages": [{"role": "user", "content": content}]}),
        )
        .0
    };

    let (status, body) = quick("POST", "/admin/keys", json!({"name": "kept"}));
    assert_eq!(status, 201, "{body}");
    let kept = body["key"].as_str().unwrap().to_string();

    let filler = disk.path.join("filler");
    fill(&filler);
    wait_for(30, "readiness to see the full disk", || {
        assert_eq!(big_chat(), 200);
        (quick("GET", "/health/ready", Value::Null).0 == 503).then_some(())
    });
    std::fs::remove_file(&filler).unwrap();
    // Either it recovers by itself, or it says that it needs a restart; it keeps answering.
    let body = wait_for(30, "readiness to recover or to ask for a restart", || {
        assert_eq!(quick("GET", "/health/live", Value::Null).0, 200);
        let (status, body) = quick("GET", "/health/ready", Value::Null);
        let asks_restart = body["store_error"]
            .as_str()
            .is_some_and(|e| e.contains("restart"));
        (status == 200 || asks_restart).then_some(body)
    });
    println!("after space returned: {body}");
    let (status, _) = quick("POST", "/admin/keys", json!({"name": "maybe"}));
    assert!(status == 201 || status == 503, "{status}");

    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut server = server;
    let exit = wait_for(30, "the gateway to stop on SIGTERM", || {
        server.0.try_wait().unwrap()
    });
    assert!(exit.success(), "stopped with {exit}");
    drop(server);

    let (_server, addr, _) = start();
    let (status, _) = call(
        "POST",
        &format!("{addr}/v1/chat/completions"),
        &kept,
        json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(
        status, 200,
        "the key created before the disk filled was lost"
    );
}

/// Uploads `text` as a batch input file; the status and body.
fn upload(addr: &str, text: String) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let form = reqwest::multipart::Form::new()
            .text("purpose", "batch")
            .part(
                "file",
                reqwest::multipart::Part::bytes(text.into_bytes()).file_name("in.jsonl"),
            );
        let res = reqwest::Client::new()
            .post(format!("{addr}/v1/files"))
            .bearer_auth(ADMIN)
            .multipart(form)
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    })
}

/// A batch on a disk that fills up: the upload that cannot be kept is a 503 and leaves
/// nothing; the batch sends no new line while its answers cannot be written, holds those it
/// has, and finishes once there is room, with every line once.
#[cfg(target_os = "linux")]
#[test]
fn a_batch_waits_out_a_full_disk_and_finishes_with_every_line_once() {
    let disk = match Tmpfs::mount("16m") {
        Ok(disk) => disk,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must run the full-disk test, but mounting a tmpfs failed: {e}")
        }
        Err(e) => {
            println!("SKIPPED full_disk batch: cannot mount a tmpfs here: {e}");
            return;
        }
    };
    let base = tempfile::tempdir().unwrap();
    let providers = base.path().join("providers.d");
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::write(
        providers.join("mock.yaml"),
        "kind: mock\nmodels: [echo]\nmock: { latency_ms: 40 }\n",
    )
    .unwrap();
    let data = disk.path.join("data");
    let mut cmd = bin();
    cmd.env("SWITCHBOARD_ADMIN_KEY", ADMIN);
    let (_server, addr, _) = serve_with(
        cmd,
        base.path(),
        &providers,
        &["--no-watch", "--data", data.to_str().unwrap()],
    );
    let total = 400;
    let line = |i: usize| {
        json!({"custom_id": format!("c{i}"), "method": "POST", "url": "/v1/chat/completions",
               "body": {"model": "echo", "messages": [{"role": "user", "content": format!("line {i}")}]}})
        .to_string()
            + "\n"
    };
    let (status, file) = upload(&addr, (0..total).map(line).collect());
    assert_eq!(status, 200, "{file}");
    let (status, batch) = call(
        "POST",
        &format!("{addr}/v1/batches"),
        ADMIN,
        json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
    );
    assert_eq!(status, 200, "{batch}");
    let id = batch["id"].as_str().unwrap().to_string();
    let completed = || {
        let (_, b) = call(
            "GET",
            &format!("{addr}/v1/batches/{id}"),
            ADMIN,
            Value::Null,
        );
        (
            b["request_counts"]["completed"].as_u64().unwrap_or(0),
            b["status"].as_str().unwrap_or_default().to_string(),
        )
    };
    wait_for(30, "the batch under way", || {
        (completed().0 >= 40).then_some(())
    });

    let filler = disk.path.join("filler");
    fill(&filler);
    // The answers that arrive now cannot be written: the count stops (what was in flight is
    // held, not counted), and no line is lost.
    std::thread::sleep(Duration::from_millis(800));
    let stalled = completed();
    std::thread::sleep(Duration::from_millis(1500));
    let still = completed();
    assert_eq!(
        stalled, still,
        "the batch went on while nothing could be written"
    );
    assert!(
        still.0 < total as u64,
        "the disk filled too late to test anything"
    );
    let (status, body) = upload(&addr, line(0));
    assert_eq!(status, 503, "an upload that cannot be kept: {body}");
    assert_eq!(body["error"]["code"], "storage_unavailable");

    std::fs::remove_file(&filler).unwrap();
    let done = wait_for(60, "the batch finished after the disk had room", || {
        let (n, status) = completed();
        (status == "completed").then_some(n)
    });
    assert_eq!(done, total as u64);
    let (_, b) = call(
        "GET",
        &format!("{addr}/v1/batches/{id}"),
        ADMIN,
        Value::Null,
    );
    let output = get(
        &format!(
            "{addr}/v1/files/{}/content",
            b["output_file_id"].as_str().unwrap()
        ),
        ADMIN,
    );
    let mut ids = crate::helpers::custom_ids(&output);
    assert_eq!(ids.len(), total);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "every line once");
}
