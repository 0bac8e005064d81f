//! The `switchboard` binary itself: `check`, `keys create`, and `serve` on port 0.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub(crate) fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.env_remove("SWITCHBOARD_ADMIN_KEY")
        .env("RUST_LOG", "warn");
    cmd
}

#[test]
fn check_lists_every_error_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yaml"), "kind: mock\nmodels: [a]\n").unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "kind: mock\nmodels:\n  - name: a\n    pricing: {input: -1, output: 1}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("worse.yml"),
        "kind: openai\nbase_url: http://x/v1\nmodels: [a]\ncolour: red\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a provider").unwrap();
    let out = bin()
        .arg("check")
        .arg("--providers")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:4") && err.contains("models[0].pricing.input"),
        "{err}"
    );
    assert!(
        err.contains("worse.yml:4") && err.contains("unknown field `colour`"),
        "{err}"
    );
    assert!(err.contains("2 error(s)"), "{err}");
}

#[test]
fn check_reports_a_provider_that_cannot_be_built_as_serve_would() {
    // The file is valid, but no HTTP header can carry this key: serve would fail to start.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("up.yaml"),
        "kind: openai\nbase_url: http://127.0.0.1:9/v1\napi_key: ${SB_CHECK_TEST_KEY}\nmodels: [a]\n",
    )
    .unwrap();
    let out = bin()
        .env("SB_CHECK_TEST_KEY", "sk-line\nbreak")
        .arg("check")
        .arg("--providers")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("provider up: api_key is not a valid header value"),
        "{err}"
    );
    assert!(err.contains("1 error(s)"), "{err}");
    assert!(!err.contains("sk-line"), "the key is never shown: {err}");
}

#[test]
fn check_passes_on_the_shipped_providers() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers.d");
    let out = bin()
        .arg("check")
        .arg("--providers")
        .arg(&shipped)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok       mock"), "{text}");
}

pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `switchboard serve` on port 0 and returns it with the address it printed.
fn serve(base: &Path) -> (Running, String, Vec<String>) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers.d");
    serve_with(bin(), base, &shipped, &[])
}

/// As [`serve`], with this command, providers folder and extra arguments. The data folder is
/// `base/data` unless `extra` gives `--data`.
pub(crate) fn serve_with(
    mut cmd: Command,
    base: &Path,
    providers: &Path,
    extra: &[&str],
) -> (Running, String, Vec<String>) {
    std::fs::create_dir_all(base.join("policies")).unwrap();
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(extra);
    if !extra.contains(&"--data") {
        cmd.arg("--data").arg(base.join("data"));
    }
    cmd.arg("--providers")
        .arg(providers)
        .arg("--policies")
        .arg(base.join("policies"));
    start(cmd)
}

/// Runs `cmd` (a `serve`) until it prints its address: the server, the address, and the lines
/// printed before it.
pub(crate) fn start(mut cmd: Command) -> (Running, String, Vec<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("switchboard listening on ") {
            return (running, addr.to_string(), lines);
        }
        lines.push(line);
    }
    panic!("the server exited without printing its address: {lines:?}");
}

#[test]
fn keys_created_on_the_command_line_work_against_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "keys", "create", "--name", "cli-key", "--role", "user", "--data",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .map(|k| k.trim().to_string())
        .expect("the key is printed");

    let (_server, addr, before) = serve(dir.path());
    assert!(
        before.iter().any(|l| l.contains("created an admin key")),
        "no admin key existed yet: {before:?}"
    );
    let res = ureq_post(&format!("{addr}/v1/chat/completions"), &key);
    assert!(res.contains("\"content\":\"ping\""), "{res}");
}

#[test]
fn keys_create_refuses_a_team_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let create = |team: &str| {
        bin()
            .args([
                "keys", "create", "--name", "member", "--team", team, "--data",
            ])
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = create("team_nope");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no team has the id `team_nope`"), "{err}");

    // A team that exists (made here through the store, as the admin API would) is taken.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let team = runtime.block_on(async {
        let store = switchboard::store::Store::open(&data, 1 << 20).unwrap();
        let new = switchboard::store::teams::NewTeam {
            name: "t".into(),
            ..Default::default()
        };
        let team = store.teams.create(new).await.unwrap();
        store.flush().await.unwrap();
        team.id
    });
    let out = create(&team);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bin()
        .args(["keys", "list", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");
}

#[cfg(unix)]
#[test]
fn sighup_reloads_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let providers = dir.path().join("providers.d");
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::write(providers.join("mock.yaml"), "kind: mock\nmodels: [echo]\n").unwrap();
    // No watcher: only the signal can bring the change in.
    let admin = "sk-cli-admin";
    let mut cmd = bin();
    cmd.env("SWITCHBOARD_ADMIN_KEY", admin);
    let (server, addr, _) = serve_with(cmd, dir.path(), &providers, &["--no-watch"]);
    std::fs::write(
        providers.join("mock.yaml"),
        "kind: mock\nmodels: [echo, after-hup]\n",
    )
    .unwrap();
    let models = || get(&format!("{addr}/v1/models"), admin);
    assert!(!models().contains("after-hup"));
    let status = Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    while !models().contains("mock/after-hup") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "SIGHUP did not reload"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `GET url` with a bearer key, as text, from a test without an async runtime.
pub fn get(url: &str, key: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

/// A tiny blocking client, so this test needs no async runtime.
fn ureq_post(url: &str, key: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(key)
            .json(&serde_json::json!({"model": "echo", "messages": [{"role": "user", "content": "ping"}]}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

/// `switchboard policy test DIR`.
fn policy_test(dir: impl AsRef<std::ffi::OsStr>) -> std::process::Output {
    bin()
        .args(["policy", "test"])
        .arg(dir.as_ref())
        .output()
        .unwrap()
}

#[test]
fn policy_test_passes_on_the_shipped_fixtures() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let out = policy_test(&shipped);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" 0 failed"), "{text}");
    for fixture in ["aliases.yaml", "cache.yaml", "canary.yaml", "quotas.yaml"] {
        assert!(text.contains(fixture), "{fixture} ran: {text}");
    }
    assert!(
        text.contains("lines executed by the fixtures:\n  10-aliases.rhai: 3/3 lines executed\n"),
        "{text}"
    );
}

#[test]
fn policy_test_names_the_lines_no_fixture_ran() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tests")).unwrap();
    std::fs::write(
        dir.path().join("route.rhai"),
        "fn on_request(req, ctx) {\n    if req.model == \"a\" {\n        ctx.route([\"a/a\"]);\n    } else {\n        ctx.route([\"b/b\"]);\n        ctx.tag(\"other\", \"1\");\n    }\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tests/route.yaml"),
        "- name: a\n  request: { model: a, messages: [] }\n  expect: { route: [a/a] }\n",
    )
    .unwrap();
    let out = policy_test(dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("  route.rhai: 2/4 lines executed; not run: 5-6\n"),
        "{text}"
    );
}

#[test]
fn policy_test_passes_on_the_examples_of_the_policy_reference() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/examples");
    let out = policy_test(&examples);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for fixture in [
        "cheapest-healthy.yaml",
        "per-ip-limit.yaml",
        "affinity.yaml",
        "request-guard.yaml",
    ] {
        assert!(text.contains(fixture), "{fixture} ran: {text}");
    }
}

#[test]
fn policy_test_fails_on_a_mismatch_and_check_reports_script_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tests")).unwrap();
    std::fs::write(
        dir.path().join("route.rhai"),
        "fn on_request(req, ctx) { ctx.route(\"a/b\"); }",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tests/route.yaml"),
        "- name: wrong on purpose\n  request: { model: m, messages: [] }\n  expect: { route: [c/d] }\n",
    )
    .unwrap();
    let out = policy_test(dir.path());
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL") && text.contains("expected [\"c/d\"], got [\"a/b\"]"),
        "{text}"
    );

    std::fs::write(
        dir.path().join("broken.rhai"),
        "fn on_request(req, ctx) {\n  let = 1;\n}",
    )
    .unwrap();
    let providers = tempfile::tempdir().unwrap();
    std::fs::write(
        providers.path().join("mock.yaml"),
        "kind: mock\nmodels: [a]\n",
    )
    .unwrap();
    let out = bin()
        .arg("check")
        .arg("--providers")
        .arg(providers.path())
        .arg("--policies")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.rhai:2:"), "{err}");
}

/// `method url` with a bearer key and a JSON body; the status and the body as JSON.
pub(crate) fn call(
    method: &str,
    url: &str,
    key: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let res = reqwest::Client::new()
            .request(method, url)
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    })
}

#[test]
fn acknowledged_key_changes_survive_a_kill_right_after() {
    let dir = tempfile::tempdir().unwrap();
    let providers = dir.path().join("providers.d");
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::write(providers.join("mock.yaml"), "kind: mock\nmodels: [echo]\n").unwrap();
    let admin = "sk-cli-admin";
    let start = || {
        let mut cmd = bin();
        cmd.env("SWITCHBOARD_ADMIN_KEY", admin);
        serve_with(cmd, dir.path(), &providers, &["--no-watch"])
    };
    let chat = |addr: &str, key: &str| {
        call(
            "POST",
            &format!("{addr}/v1/chat/completions"),
            key,
            serde_json::json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .0
    };
    // Several rounds: each change is answered, then the process is killed with SIGKILL at
    // once, well inside sled's own 500 ms flush interval.
    for round in 0..3 {
        let (server, addr, _) = start();
        let create = |name: &str| {
            let (status, body) = call(
                "POST",
                &format!("{addr}/admin/keys"),
                admin,
                serde_json::json!({"name": name}),
            );
            assert_eq!(status, 201);
            (
                body["id"].as_str().unwrap().to_string(),
                body["key"].as_str().unwrap().to_string(),
            )
        };
        let (_, kept) = create("kept");
        let (revoked_id, revoked) = create("revoked");
        let (rotated_id, rotated_old) = create("rotated");
        let (status, _) = call(
            "DELETE",
            &format!("{addr}/admin/keys/{revoked_id}"),
            admin,
            serde_json::Value::Null,
        );
        assert_eq!(status, 200);
        let (status, body) = call(
            "POST",
            &format!("{addr}/admin/keys/{rotated_id}/rotate"),
            admin,
            serde_json::Value::Null,
        );
        assert_eq!(status, 200);
        let rotated_new = body["key"].as_str().unwrap().to_string();
        drop(server); // SIGKILL, no shutdown

        let (_server, addr, _) = start();
        assert_eq!(
            chat(&addr, &kept),
            200,
            "round {round}: a created key was lost"
        );
        assert_eq!(
            chat(&addr, &revoked),
            401,
            "round {round}: a revocation was undone"
        );
        assert_eq!(
            chat(&addr, &rotated_old),
            401,
            "round {round}: a rotation was undone"
        );
        assert_eq!(
            chat(&addr, &rotated_new),
            200,
            "round {round}: a rotated secret was lost"
        );
    }
}

#[test]
fn the_allocator_returns_freed_memory_promptly() {
    // jemalloc prints the options it runs with at exit when asked to; the binary must run
    // with a background purging thread and one-second decay (see main.rs).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mock.yaml"), "kind: mock\nmodels: [a]\n").unwrap();
    let out = bin()
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .arg("check")
        .arg("--providers")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stats = String::from_utf8_lossy(&out.stderr);
    for line in [
        "opt.background_thread: true",
        "opt.dirty_decay_ms: 1000",
        "opt.muzzy_decay_ms: 1000",
    ] {
        assert!(
            stats.contains(line),
            "{line} missing from jemalloc's options"
        );
    }
}

/// The bootstrap admin key a server printed on start.
fn printed_admin_key(lines: &[String]) -> String {
    let at = lines
        .iter()
        .position(|l| l.contains("created an admin key"))
        .unwrap_or_else(|| panic!("no admin key printed: {lines:?}"));
    lines[at + 1].trim().to_string()
}

#[test]
fn the_memory_store_serves_everything_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers.d");
    let args = ["--store", "memory"];
    let (server, addr, lines) = serve_with(bin(), dir.path(), &shipped, &args);
    let admin = printed_admin_key(&lines);
    let res = ureq_post(&format!("{addr}/v1/chat/completions"), &admin);
    assert!(res.contains("\"content\":\"ping\""), "{res}");
    // The request is logged and counted in usage, in memory.
    let started = std::time::Instant::now();
    while !get(&format!("{addr}/admin/logs"), &admin).contains("\"requested_model\":\"echo\"") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the request was never logged"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let keys = get(&format!("{addr}/admin/keys"), &admin);
    assert!(keys.contains("bootstrap admin"), "{keys}");
    let ready = get(&format!("{addr}/health/ready"), &admin);
    assert!(ready.contains("\"store\":\"ok\""), "{ready}");
    assert!(
        !dir.path().join("data").exists(),
        "no database is made with --store memory"
    );
    drop(server);

    // A new process starts empty: the old key is unknown, a new one is printed.
    let (_server, addr, lines) = serve_with(bin(), dir.path(), &shipped, &args);
    let again = printed_admin_key(&lines);
    assert_ne!(again, admin);
    let refused = ureq_post(&format!("{addr}/v1/chat/completions"), &admin);
    assert!(
        refused.contains("invalid_api_key") || refused.contains("401"),
        "{refused}"
    );
    assert!(get(&format!("{addr}/admin/logs"), &again).contains("\"data\":[]"));
}

/// Stops a server as an operator would, with SIGTERM (it finishes, writes what it holds and
/// flushes the store), and waits until it has exited.
#[cfg(unix)]
fn stop(mut server: Running) {
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    while server.0.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the gateway did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The value after `label` in a command's output (`id:     key_…`).
#[cfg(unix)]
fn printed(out: &std::process::Output, label: &str) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no `{label}` in {text}"))
}

fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(unix)]
#[test]
fn export_and_import_move_a_deployment_to_a_fresh_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let providers = dir.path().join("providers.d");
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::write(providers.join("mock.yaml"), "kind: mock\nmodels: [echo]\n").unwrap();
    let admin = "sk-cli-admin";
    let start = |data: &Path| {
        let mut cmd = bin();
        cmd.env("SWITCHBOARD_ADMIN_KEY", admin);
        let extra = ["--no-watch", "--data", data.to_str().unwrap()];
        serve_with(cmd, dir.path(), &providers, &extra)
    };
    let chat = |addr: &str, key: &str| {
        let body =
            serde_json::json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]});
        call("POST", &format!("{addr}/v1/chat/completions"), key, body).0
    };

    // A team (made through the store, as the admin API would: the command line makes none),
    // and a key in it with a daily request limit.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let team = runtime.block_on(async {
        let store = switchboard::store::Store::open(&old, 1 << 20).unwrap();
        let new = switchboard::store::teams::NewTeam {
            name: "movers".into(),
            ..Default::default()
        };
        let team = store.teams.create(new).await.unwrap();
        store.flush().await.unwrap();
        team.id
    });
    let out = bin()
        .args([
            "keys", "create", "--name", "mover", "--rpd", "100", "--team",
        ])
        .arg(&team)
        .arg("--data")
        .arg(&old)
        .output()
        .unwrap();
    succeeded(&out);
    let (key_id, key) = (printed(&out, "id:"), printed(&out, "key:"));

    // Traffic: one request, in usage and against the key's limit.
    let (server, addr, _) = start(&old);
    assert_eq!(chat(&addr, &key), 200);
    // While the gateway holds the folder, an export says so and writes nothing.
    let refused = dir.path().join("refused.jsonl");
    let export = |data: &Path, out: &Path| {
        bin()
            .arg("export")
            .arg("--out")
            .arg(out)
            .arg("--data")
            .arg(data)
            .output()
            .unwrap()
    };
    let out = export(&old, &refused);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another switchboard process: stop the gateway first"),
        "{err}"
    );
    assert!(!refused.exists());
    stop(server);

    let backup = dir.path().join("backup.jsonl");
    let said = succeeded(&export(&old, &backup));
    assert!(said.starts_with("exported 1 key, 1 team, "), "{said}");
    let text = std::fs::read_to_string(&backup).unwrap();
    assert!(!text.contains(&key), "an export holds no secret");
    for kind in ["key", "team", "counter", "usage_row", "key_usage"] {
        assert!(
            text.contains(&format!("{{\"kind\":\"{kind}\",")),
            "{kind}: {text}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "kept like a backup");

    let out = bin()
        .arg("import")
        .arg(&backup)
        .arg("--data")
        .arg(&new)
        .output()
        .unwrap();
    let said = succeeded(&out);
    assert!(said.starts_with("imported 1 key, 1 team, "), "{said}");
    assert!(said.contains(&new.display().to_string()), "{said}");
    // The new folder holds the same state: exported, the same file.
    let again = dir.path().join("again.jsonl");
    succeeded(&export(&new, &again));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), text);

    // The gateway on the new folder: the key works, with its team, usage and limit use.
    let (_server, addr, _) = start(&new);
    let (status, view) = call(
        "GET",
        &format!("{addr}/admin/keys/{key_id}"),
        admin,
        serde_json::Value::Null,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["team"], serde_json::json!(team));
    assert_eq!(view["usage"]["requests"], 1, "{view}");
    assert_eq!(view["limit_use"][0]["current"], 1, "{view}");
    assert_eq!(chat(&addr, &key), 200);
}

#[test]
fn import_refuses_a_bad_line_by_its_number_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("bad.jsonl");
    let import = || {
        bin()
            .arg("import")
            .arg(&file)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    };
    let team = |id: &str| {
        format!(r#"{{"kind":"team","record":{{"id":"{id}","name":"t","created_at":1}}}}"#)
    };
    std::fs::write(
        &file,
        format!("{}\n{{\"kind\":\"team\"}}\n", team("team_x")),
    )
    .unwrap();
    let out = import();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.jsonl, line 2: not a record: missing field `record`"),
        "{err}"
    );
    assert!(!data.exists(), "the store is not even opened");

    std::fs::write(&file, format!("{}\n", team("team_x"))).unwrap();
    let said = succeeded(&import());
    assert!(said.starts_with("imported 0 keys, 1 team, "), "{said}");
    // Into a store that holds something, a bad file changes nothing either.
    let bad_hash = r#"{"kind":"key","hash":"1234","record":{"id":"key_y","name":"y","role":"user","masked":"","created_at":1}}"#;
    std::fs::write(&file, format!("{}\n{bad_hash}\n", team("team_y"))).unwrap();
    let out = import();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl, line 2: a key's `hash`"), "{err}");
    let exported = dir.path().join("out.jsonl");
    let out = bin()
        .arg("export")
        .arg("--out")
        .arg(&exported)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    succeeded(&out);
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(
        text.contains("team_x") && !text.contains("team_y"),
        "{text}"
    );
}

#[test]
fn export_and_import_refuse_the_memory_store() {
    let out = bin()
        .args(["export", "--out", "-", "--store", "memory"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--store memory keeps nothing between processes"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn every_serve_flag_is_in_the_readme_settings_table() {
    // The settings file takes every flag too (settings_file.rs), so the table is its reference.
    let out = bin().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `--")).collect();
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', '=', ',']).next())
        .filter(|f| !matches!(*f, "help" | "version"))
        .collect();
    assert!(flags.len() > 30, "{help}");
    for flag in flags {
        let cell = format!("`--{flag}");
        assert!(
            rows.iter().any(|r| r.contains(&cell)),
            "--{flag} has no row in README's settings table"
        );
    }
}
