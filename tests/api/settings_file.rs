//! The settings file against the real binary: precedence (flag > environment > file >
//! default), what `GET /admin/config` reports, reloads that apply CORS and mark the settings
//! that need a restart, and bad files refused with the file, line and key.

use crate::cli::{bin, call, Running};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ADMIN: &str = "sk-settings-admin";
const APP: &str = "https://app.example.com";

/// A working directory with a mock provider, an empty policies folder, and this settings file
/// as `switchboard.yaml` (found there without `--config`).
fn workdir(settings: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("providers.d")).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("providers.d/mock.yaml"),
        "kind: mock\nmodels: [echo]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("switchboard.yaml"), settings).unwrap();
    dir
}

/// Runs the gateway in `dir` with `cmd`'s extra flags and environment; the address it printed.
fn start(mut cmd: Command, dir: &Path) -> (Running, String) {
    cmd.current_dir(dir).env("SWITCHBOARD_ADMIN_KEY", ADMIN);
    let (running, addr, _) = crate::cli::start(cmd);
    (running, addr)
}

fn config(addr: &str) -> serde_json::Value {
    let (status, body) = call(
        "GET",
        &format!("{addr}/admin/config"),
        ADMIN,
        serde_json::Value::Null,
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn setting(config: &serde_json::Value, name: &str) -> serde_json::Value {
    config["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no setting {name}: {config}"))
        .clone()
}

/// The `access-control-allow-origin` a preflight from `APP` gets, if any.
fn preflight(addr: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let res = reqwest::Client::new()
            .request(
                reqwest::Method::OPTIONS,
                format!("{addr}/v1/chat/completions"),
            )
            .header("origin", APP)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        res.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string())
    })
}

fn chat_of_size(addr: &str, bytes: usize) -> u16 {
    let padding = "x".repeat(bytes);
    call(
        "POST",
        &format!("{addr}/v1/chat/completions"),
        ADMIN,
        serde_json::json!({"model": "echo", "messages": [{"role": "user", "content": padding}]}),
    )
    .0
}

const BASE: &str = "listen: 127.0.0.1:0\nproviders: providers.d\npolicies: policies\ndata: data\n";

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = workdir(&format!(
        "# the gateway's settings\n{BASE}body_limit: 2048\nworkers: 1\ncors_origin:\n  - {APP}\ncors_max_age: 60\nmetrics_token: sk-metrics-from-the-file\nlog_bodies: true\notlp_endpoint: https://me:otlp-pass@127.0.0.1:9/v1/traces\n"
    ));
    let mut cmd = bin();
    cmd.env("SWITCHBOARD_BODY_LIMIT", "8192")
        .env("SWITCHBOARD_WORKERS", "2")
        .args(["--workers", "1", "--cors-max-age", "99"]);
    let (_server, addr) = start(cmd, dir.path());

    let cfg = config(&addr);
    assert_eq!(cfg["settings_file"], "switchboard.yaml");
    let body_limit = setting(&cfg, "body_limit");
    assert_eq!(
        body_limit["value"], "8192",
        "the environment wins over the file"
    );
    assert_eq!(body_limit["source"], "environment");
    assert_eq!(body_limit["env"], "SWITCHBOARD_BODY_LIMIT");
    assert_eq!(body_limit["flag"], "--body-limit");
    assert_eq!(body_limit["reloadable"], false);
    let workers = setting(&cfg, "workers");
    assert_eq!(
        (workers["value"].clone(), workers["source"].clone()),
        ("1".into(), "flag".into())
    );
    assert_eq!(setting(&cfg, "cors_max_age")["value"], "99");
    let origin = setting(&cfg, "cors_origin");
    assert_eq!(origin["value"], serde_json::json!([APP]));
    assert_eq!(origin["source"], "file");
    assert_eq!(origin["reloadable"], true);
    assert_eq!(setting(&cfg, "log_bodies")["value"], true);
    assert_eq!(setting(&cfg, "shutdown_grace_secs")["source"], "default");
    assert_eq!(setting(&cfg, "tls_cert")["source"], "unset");
    let token = setting(&cfg, "metrics_token");
    assert_eq!(
        (token["value"].clone(), token["source"].clone()),
        ("<set>".into(), "file".into())
    );
    assert!(!cfg.to_string().contains("sk-metrics-from-the-file"));
    assert_eq!(
        setting(&cfg, "otlp_endpoint")["value"],
        "https://127.0.0.1:9/v1/traces",
        "a URL's password never reaches an admin response"
    );
    assert!(!cfg.to_string().contains("otlp-pass"));
    assert!(cfg["restart_required_for"]
        .as_array()
        .unwrap()
        .contains(&"body_limit".into()));

    // The values are the ones in force, not only reported.
    assert_eq!(chat_of_size(&addr, 4000), 200, "8192 from the environment");
    assert_eq!(chat_of_size(&addr, 9000), 413);
    assert_eq!(preflight(&addr).as_deref(), Some(APP));
    let metrics = crate::cli::get(&format!("{addr}/metrics"), "sk-metrics-from-the-file");
    assert!(metrics.contains("switchboard_"), "{metrics}");
}

#[test]
fn a_reload_applies_cors_and_marks_what_needs_a_restart() {
    let dir = workdir(&format!("{BASE}body_limit: 4096\n"));
    let (_server, addr) = start(bin(), dir.path());
    assert_eq!(preflight(&addr), None, "CORS is off");

    // The watcher sees the edit; CORS applies, the body limit waits for a restart.
    std::fs::write(
        dir.path().join("switchboard.yaml"),
        format!("{BASE}body_limit: 100000\ncors_origin: [{APP}]\nlog_level: debug\notlp_sampling_ratio: 0.25\n"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while preflight(&addr).is_none() {
        assert!(Instant::now() < deadline, "the watcher never applied CORS");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The folders are relative to the working directory too, and watched as well.
    std::fs::write(
        dir.path().join("providers.d/mock.yaml"),
        "kind: mock\nmodels: [echo, echo-two]\n",
    )
    .unwrap();
    while !crate::cli::get(&format!("{addr}/v1/models"), ADMIN).contains("echo-two") {
        assert!(
            Instant::now() < deadline,
            "the watcher never reloaded providers.d"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cfg = config(&addr);
    let body_limit = setting(&cfg, "body_limit");
    assert_eq!(body_limit["value"], "100000");
    assert_eq!(body_limit["restart_pending"], true, "{body_limit}");
    assert_eq!(
        chat_of_size(&addr, 8000),
        413,
        "the running limit is still 4096"
    );
    let origin = setting(&cfg, "cors_origin");
    assert_eq!(origin["restart_pending"], false);
    assert_eq!(setting(&cfg, "log_level")["value"], "debug");
    let ratio = setting(&cfg, "otlp_sampling_ratio");
    assert_eq!(
        (ratio["value"].clone(), ratio["reloadable"].clone()),
        ("0.25".into(), true.into())
    );
    assert_eq!(cfg["last_reload"]["outcome"], "applied");

    // A bad edit is refused whole, naming the file, line and key; what runs stays.
    std::fs::write(
        dir.path().join("switchboard.yaml"),
        format!("{BASE}cors_origin: [{APP}]\ncors_orign: [https://other.example]\n"),
    )
    .unwrap();
    let (status, attempt) = call(
        "POST",
        &format!("{addr}/admin/reload"),
        ADMIN,
        serde_json::Value::Null,
    );
    assert_eq!(status, 422, "{attempt}");
    let error = &attempt["errors"][0];
    assert_eq!(error["file"], "switchboard.yaml", "{attempt}");
    assert_eq!(error["line"], 6);
    assert_eq!(error["field"], "cors_orign");
    assert!(
        error["message"].as_str().unwrap().contains("cors_origin"),
        "a suggestion: {error}"
    );
    assert_eq!(preflight(&addr).as_deref(), Some(APP));

    // Removing the origins turns CORS off again.
    std::fs::write(dir.path().join("switchboard.yaml"), BASE).unwrap();
    let (status, attempt) = call(
        "POST",
        &format!("{addr}/admin/reload"),
        ADMIN,
        serde_json::Value::Null,
    );
    assert_eq!(status, 200, "{attempt}");
    assert_eq!(preflight(&addr), None);
}

#[test]
fn a_bad_settings_file_stops_the_start_and_fails_check_naming_line_and_key() {
    let dir = workdir(&format!(
        "{BASE}body_limit: lots\nredis_url: 42\nbogus_setting: 1\ncors_origin: [{APP}/]\nmetrics_token: [sk-secret-token, again]\n"
    ));
    let out = bin()
        .current_dir(dir.path())
        .env("SWITCHBOARD_ADMIN_KEY", ADMIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("switchboard.yaml:5: body_limit: invalid value 'lots'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("switchboard.yaml:7: bogus_setting: unknown setting"),
        "{stderr}"
    );
    assert!(
        stderr.contains("switchboard.yaml:9: metrics_token: takes one value"),
        "{stderr}"
    );
    assert!(!stderr.contains("sk-secret-token"), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "a refused start leaves no trace"
    );

    let out = bin().current_dir(dir.path()).arg("check").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "the file is read before check runs"
    );

    // Only the CORS origin wrong: a value the flag's parser accepts but CORS refuses.
    std::fs::write(
        dir.path().join("switchboard.yaml"),
        format!("{BASE}cors_origin: [{APP}/]\n"),
    )
    .unwrap();
    let out = bin().current_dir(dir.path()).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("switchboard.yaml:5: cors_origin: CORS: "),
        "{stderr}"
    );
}

#[test]
fn check_reads_the_file_named_by_flag_or_environment() {
    let dir = workdir("");
    std::fs::remove_file(dir.path().join("switchboard.yaml")).unwrap();
    std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
    std::fs::rename(
        dir.path().join("providers.d"),
        dir.path().join("elsewhere/providers"),
    )
    .unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(
        &file,
        "providers: elsewhere/providers\npolicies: policies\n",
    )
    .unwrap();

    // Without the file, the default folder is missing.
    let out = bin().current_dir(dir.path()).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1));

    let out = bin()
        .current_dir(dir.path())
        .args(["check", "--config", "gateway.yaml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("ok       settings gateway.yaml"),
        "{stdout}"
    );
    assert!(stdout.contains("ok       mock"), "{stdout}");

    let out = bin()
        .current_dir(dir.path())
        .arg("check")
        .env("SWITCHBOARD_CONFIG", &file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));

    let out = bin()
        .current_dir(dir.path())
        .args(["check", "--config", "missing.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing.yaml: no such settings file"),
        "{stderr}"
    );
}
