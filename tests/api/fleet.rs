//! A fleet: three gateway processes (the real binary) on one real redis-server. What one
//! instance admits, writes or caches, every other sees; limits hold for the fleet as a whole.

use crate::helpers::{assert_error, ADMIN_KEY};
use crate::redis_server::RedisServer;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One gateway process with its own folders, on the fleet's Redis.
pub struct Gateway {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const MOCK: &str = "kind: mock\nmodels: [echo]\n";

impl Gateway {
    /// Starts `switchboard serve --store redis` with `files` (path in its folder, text: policies
    /// as `policies/NAME.rhai`, `webhooks.yaml`) and extra flags, and waits until it is ready.
    pub async fn start(redis_url: &str, files: &[(&str, &str)], extra: &[&str]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        crate::helpers::write_providers(
            &root.join("providers.d"),
            &[("mock".to_string(), MOCK.to_string())],
        );
        std::fs::create_dir_all(root.join("policies")).unwrap();
        for (file, text) in files {
            std::fs::write(root.join(file), text).unwrap();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .current_dir(root)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--no-watch",
                "--workers",
                "2",
            ])
            .args(["--store", "redis", "--redis-url", redis_url])
            // The default of 100 ms is for a production Redis; on the 2-core test machine with
            // the suite running, a call can wait longer, and a 503 then fails an unrelated test
            // (it did, once). Tests of the timeout and of outages give their own.
            .args(if extra.contains(&"--redis-timeout-ms") {
                &[][..]
            } else {
                &["--redis-timeout-ms", "2000"][..]
            })
            .args(extra)
            .env("SWITCHBOARD_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let base = listening_on(&mut child, root);
        let gateway = Gateway {
            child,
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _dir: dir,
        };
        gateway.wait_ready().await;
        gateway
    }

    async fn wait_ready(&self) {
        for _ in 0..500 {
            if let Ok(r) = self.client.get(self.url("/health/ready")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gateway at {} never became ready", self.base);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn chat(&self, key: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A chat request on behalf of `user` (the `x-user` header a split can be sticky on).
    pub async fn chat_as(&self, key: &str, user: &str) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-user", user)
            .json(&hello("hi"))
            .send()
            .await
            .unwrap()
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    /// Creates a key; returns (id, secret).
    pub async fn create_key(&self, body: Value) -> (String, String) {
        let v = self
            .admin(reqwest::Method::POST, "/admin/keys", Some(body))
            .await;
        (
            v["id"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        )
    }

    /// Requests counted in `/admin/usage` (the last day); `None` while the store cannot say
    /// (the callers poll).
    pub async fn usage_requests(&self) -> Option<u64> {
        let res = self
            .client
            .get(self.url("/admin/usage"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .ok()?;
        if !res.status().is_success() {
            return None;
        }
        let v: Value = res.json().await.ok()?;
        v["totals"]["requests"].as_u64()
    }
}

/// Reads the process's stdout until it says where it listens.
fn listening_on(child: &mut Child, root: &Path) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("the gateway in {} did not start", root.display()))
}

async fn fleet(server: &RedisServer, files: &[(&str, &str)], extra: &[&str]) -> Vec<Gateway> {
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(Gateway::start(&server.url(), files, extra).await);
    }
    gateways
}

fn hello(text: &str) -> Value {
    json!({"model": "echo", "messages": [{"role": "user", "content": text}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_limit_admits_exactly_its_count_across_the_fleet() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let gateways = fleet(&server, &[], &[]).await;
    let (_, key) = gateways[0]
        .create_key(json!({"name": "fleet", "limits": {"rpd": 10}}))
        .await;
    // Seen by every instance before the burst (it is, within milliseconds).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gateways = std::sync::Arc::new(gateways);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (gateways, key) = (gateways.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            gateways[i % 3]
                .chat(&key, hello(&format!("n{i}")))
                .await
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (10, 50), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_streams_do_not_overshoot_a_token_budget() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let gateways = fleet(&server, &[], &[]).await;
    let (id, key) = gateways[0]
        .create_key(json!({"name": "budget", "limits": {"tpd": 300, "hard": true}}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gateways = std::sync::Arc::new(gateways);
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (gateways, key) = (gateways.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({
                "model": "echo",
                "stream": true,
                "max_tokens": 40,
                "messages": [{"role": "user", "content": format!("stream number {i} says hello to the fleet")}],
            });
            let res = gateways[i % 3].chat(&key, body).await;
            let status = res.status().as_u16();
            let _ = res.text().await;
            status
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            admitted += 1;
        }
    }
    assert!(admitted >= 1, "some streams fit the budget");
    assert!(admitted < 30, "not all of them do");
    // Once every stream has settled, the budget's use is what the fleet used: never past it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for g in gateways.iter() {
            let view = g
                .admin(reqwest::Method::GET, &format!("/admin/keys/{id}"), None)
                .await;
            let tpd = &view["limit_use"][0];
            let (used, reserved) = (
                tpd["current"].as_u64().unwrap(),
                tpd["reserved"].as_u64().unwrap(),
            );
            assert!(used + reserved <= 300, "{tpd}");
        }
        let view = gateways[1]
            .admin(reqwest::Method::GET, &format!("/admin/keys/{id}"), None)
            .await;
        if view["limit_use"][0]["reserved"] == 0
            && view["limit_use"][0]["current"].as_u64() > Some(0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "streams never settled: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_created_and_revoked_on_one_instance_hold_on_every_other_within_a_second() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let gateways = fleet(&server, &[], &[]).await;
    let (id, key) = gateways[0].create_key(json!({"name": "roaming"})).await;
    let created = Instant::now();
    for g in &gateways[1..] {
        while g.chat(&key, hello("hi")).await.status() != 200 {
            assert!(
                created.elapsed() < Duration::from_secs(1),
                "a new key works everywhere at once"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    gateways[0]
        .admin(reqwest::Method::DELETE, &format!("/admin/keys/{id}"), None)
        .await;
    let revoked = Instant::now();
    for g in &gateways[1..] {
        loop {
            let status = g.chat(&key, hello("hi")).await.status();
            if status == 401 {
                break;
            }
            assert_eq!(status, 200);
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "refused everywhere within a second"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // A rotated secret likewise: the old one stops, the new one works, everywhere.
    let (id2, old) = gateways[1].create_key(json!({"name": "rotating"})).await;
    let rotated = gateways[1]
        .admin(
            reqwest::Method::POST,
            &format!("/admin/keys/{id2}/rotate"),
            None,
        )
        .await;
    let new = rotated["key"].as_str().unwrap().to_string();
    let at = Instant::now();
    loop {
        let (old_status, new_status) = (
            gateways[2].chat(&old, hello("hi")).await.status(),
            gateways[2].chat(&new, hello("hi")).await.status(),
        );
        if old_status == 401 && new_status == 200 {
            break;
        }
        assert!(
            at.elapsed() < Duration::from_secs(1),
            "rotation seen within a second"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reply_cached_through_one_instance_is_a_hit_through_another_and_purged_for_all() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let gateways = fleet(
        &server,
        &[(
            "policies/10-cache.rhai",
            "fn on_request(req, ctx) { ctx.cache(600); }",
        )],
        &[],
    )
    .await;
    let (_, key) = gateways[0].create_key(json!({"name": "cache"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = gateways[0].chat(&key, hello("cache me")).await;
    assert_eq!(first.headers()["x-switchboard-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    // The entry is written after the reply; the fleet sees it once written.
    let deadline = Instant::now() + Duration::from_secs(2);
    while gateways[1]
        .admin(reqwest::Method::GET, "/admin/cache", None)
        .await["entries"]
        != 1
    {
        assert!(Instant::now() < deadline, "the entry reached redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = gateways[1].chat(&key, hello("cache me")).await;
    assert_eq!(second.headers()["x-switchboard-cache"], "hit");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["choices"], second["choices"]);
    // One purge, on any instance, empties it for the fleet.
    gateways[2]
        .admin(reqwest::Method::DELETE, "/admin/cache", None)
        .await;
    let third = gateways[0].chat(&key, hello("cache me")).await;
    assert_eq!(third.headers()["x-switchboard-cache"], "miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_keeps_its_split_variant_whichever_instance_serves_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // The first instance leans to `candidate`, the others to `control`: a caller assigned on
    // the first keeps its variant on the others only if the assignment is shared (the split's
    // own pick there would mostly say `control`).
    let split = |control: u32, candidate: u32| {
        format!(
            "fn on_request(req, ctx) {{ ctx.split(\"exp\", #{{ control: {control}, candidate: {candidate} }}, req.headers[\"x-user\"]); }}"
        )
    };
    let leaning = split(1, 99);
    let other = split(99, 1);
    let first = Gateway::start(&server.url(), &[("policies/10-split.rhai", &leaning)], &[]).await;
    let second = Gateway::start(&server.url(), &[("policies/10-split.rhai", &other)], &[]).await;
    let third = Gateway::start(&server.url(), &[("policies/10-split.rhai", &other)], &[]).await;
    let (_, key) = first.create_key(json!({"name": "split"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let variant = |res: &reqwest::Response| {
        res.headers()["x-switchboard-variant"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let mut assigned = Vec::new();
    for user in 0..20 {
        let res = first.chat_as(&key, &format!("user-{user}")).await;
        assigned.push(variant(&res));
    }
    assert!(
        assigned.iter().filter(|v| *v == "exp=candidate").count() > 15,
        "{assigned:?}"
    );
    // Assignments travel by pub/sub; give them a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for g in [&second, &third] {
        for (user, expected) in assigned.iter().enumerate() {
            let res = g.chat_as(&key, &format!("user-{user}")).await;
            assert_eq!(&variant(&res), expected, "user-{user} on {}", g.base);
        }
    }
    // A new instance loads the assignments at start.
    let fourth = Gateway::start(&server.url(), &[("policies/10-split.rhai", &other)], &[]).await;
    let res = fourth.chat_as(&key, "user-0").await;
    assert_eq!(variant(&res), assigned[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_and_logs_on_every_instance_count_the_whole_fleet() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let gateways = fleet(&server, &[], &[]).await;
    let (_, key) = gateways[0].create_key(json!({"name": "usage"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..30 {
        assert_eq!(
            gateways[i % 3].chat(&key, hello("count me")).await.status(),
            200
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for g in &gateways {
        while g.usage_requests().await != Some(30) {
            assert!(Instant::now() < deadline, "usage on {} reached 30", g.base);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let logs = g
            .admin(reqwest::Method::GET, "/admin/logs?limit=100", None)
            .await;
        assert_eq!(logs["data"].as_array().unwrap().len(), 30);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_under_load_fails_closed_fast_and_everything_resumes_when_it_returns() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    // 300 ms: short enough to show a fast refusal (each is checked under 1 s), long enough
    // that a loaded machine does not time out a healthy Redis before it is stopped.
    let gateways = fleet(&server, &[], &["--redis-timeout-ms", "300"]).await;
    let (_, limited) = gateways[0]
        .create_key(json!({"name": "limited", "limits": {"rpd": 100000}}))
        .await;
    let (_, free) = gateways[0].create_key(json!({"name": "free"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sent = 0u64;
    for i in 0..9 {
        assert_eq!(
            gateways[i % 3]
                .chat(&limited, hello("before"))
                .await
                .status(),
            200
        );
        sent += 1;
    }

    server.stop();
    let stopped = Instant::now();
    let mut refused = 0;
    while stopped.elapsed() < Duration::from_millis(1500) {
        for g in &gateways {
            // A key with limits: refused, fast, with a retry-after. A key without: served from
            // the instance's own copy of the keys.
            let at = Instant::now();
            let res = g.chat(&limited, hello("during")).await;
            assert!(
                at.elapsed() < Duration::from_millis(1000),
                "no hung request"
            );
            sent += 1;
            if res.status() == 503 {
                assert!(res.headers().contains_key("retry-after"));
                let body = assert_error(res, 503).await;
                assert_eq!(body["error"]["code"], "store_unavailable");
                refused += 1;
            } else {
                assert_eq!(res.status(), 200, "before the outage was noticed");
            }
            let at = Instant::now();
            assert_eq!(g.chat(&free, hello("during")).await.status(), 200);
            assert!(
                at.elapsed() < Duration::from_millis(1000),
                "no hung request"
            );
            sent += 1;
        }
    }
    assert!(refused > 0);
    for g in &gateways {
        let ready = g.client.get(g.url("/health/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 503, "readiness reports the store");
    }

    server.resume();
    let back = Instant::now();
    for g in &gateways {
        loop {
            let status = g.chat(&limited, hello("after")).await.status();
            sent += 1;
            if status == 200 {
                break;
            }
            assert!(
                back.elapsed() < Duration::from_secs(5),
                "reconnected with no restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // What was served or refused while Redis was away was held and written once it returned.
    let deadline = Instant::now() + Duration::from_secs(10);
    for g in &gateways {
        while g.usage_requests().await != Some(sent) {
            assert!(
                Instant::now() < deadline,
                "usage on {} reached {sent}",
                g.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_unavailable_open_requests_are_admitted_and_counted_once_it_returns() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let gateway = Gateway::start(
        &server.url(),
        &[],
        &["--redis-timeout-ms", "100", "--redis-unavailable", "open"],
    )
    .await;
    let (id, key) = gateway
        .create_key(json!({"name": "open", "limits": {"rpd": 1000}}))
        .await;
    server.stop();
    for _ in 0..5 {
        assert_eq!(gateway.chat(&key, hello("trusted")).await.status(), 200);
    }
    server.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = gateway
            .client
            .get(gateway.url(&format!("/admin/keys/{id}")))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            let view: Value = res.json().await.unwrap();
            if view["limit_use"][0]["current"] == 5 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the deferred charges were written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_budget_threshold_is_alerted_once_for_the_whole_fleet() {
    use crate::webhooks::{hook, Receiver};
    let Some(server) = RedisServer::start() else {
        return;
    };
    let receiver = Receiver::start();
    let hooks = format!(
        "webhooks:\n{}",
        hook(&receiver.url(), "[budget.threshold]", "")
    );
    let gateways = fleet(&server, &[("webhooks.yaml", &hooks)], &[]).await;
    let (_, key) = gateways[0]
        .create_key(json!({"name": "metered", "limits": {"tpd": 60}}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Each request uses 6 tokens (and reserves 9): nine of them, spread over the fleet, take
    // it to 90 %, passing 50 and 80 on whichever instances settle them.
    let body = json!({"model": "echo", "max_tokens": 3, "messages": [{"role": "user", "content": "a b c"}]});
    for i in 0..9 {
        assert_eq!(gateways[i % 3].chat(&key, body.clone()).await.status(), 200);
        // Settled after the reply: let it land before the next reservation.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.wait_for("budget.threshold").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut percents: Vec<u64> = receiver
        .inbox
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.body["event"] == "budget.threshold")
        .map(|r| r.body["data"]["percent"].as_u64().unwrap())
        .collect();
    percents.sort();
    assert_eq!(
        percents,
        vec![50, 80],
        "each threshold once, from one instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sled_deployment_exported_and_imported_into_redis_keeps_its_keys() {
    use crate::cli::bin;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let created = bin()
        .args([
            "keys", "create", "--name", "mover", "--rpd", "100", "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let secret = String::from_utf8_lossy(&created.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("sk-sb-"))
        .unwrap()
        .to_string();
    let file = dir.path().join("export.jsonl");
    let exported = bin()
        .args(["export", "--out"])
        .arg(&file)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(exported.status.success(), "{exported:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&secret), "an export holds no secret");
    let imported = bin()
        .arg("import")
        .arg(&file)
        .args(["--store", "redis", "--redis-url", &server.url()])
        .output()
        .unwrap();
    assert!(imported.status.success(), "{imported:?}");
    let said = String::from_utf8_lossy(&imported.stdout);
    assert!(said.contains("redis"), "{said}");
    assert!(!said.contains(&server.url()), "the URL is never printed");

    // Every instance of the fleet knows the key, with its limits.
    let gateways = fleet(&server, &[], &[]).await;
    for g in &gateways {
        assert_eq!(g.chat(&secret, hello("moved")).await.status(), 200);
    }
    let keys = gateways[2]
        .admin(reqwest::Method::GET, "/admin/keys", None)
        .await;
    let mover = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "mover")
        .unwrap();
    assert_eq!(mover["limits"]["rpd"], 100);
    // And back: an export from Redis holds the same key.
    let back = dir.path().join("back.jsonl");
    let exported = bin()
        .args([
            "export",
            "--store",
            "redis",
            "--redis-url",
            &server.url(),
            "--out",
        ])
        .arg(&back)
        .output()
        .unwrap();
    assert!(exported.status.success(), "{exported:?}");
    assert!(std::fs::read_to_string(&back)
        .unwrap()
        .contains("\"mover\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_response_stored_through_one_instance_continues_through_another() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let gateways = fleet(&server, &[], &[]).await;
    let post = |g: &Gateway, body: Value| {
        g.client
            .post(g.url("/v1/responses"))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
    };
    let first: Value = post(
        &gateways[0],
        json!({"model": "echo", "input": "first turn"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    // Another instance reads it from Redis once the write lands (a task after the reply).
    let mut second = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let res = post(
            &gateways[1],
            json!({"model": "echo", "input": "second", "previous_response_id": id}),
        )
        .await
        .unwrap();
        if res.status() == 200 {
            second = Some(res.json::<Value>().await.unwrap());
            break;
        }
        assert_eq!(res.status(), 404);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = second.expect("the stored response reached the other instance");
    // The stored turn went first: "first turn" twice, then "second".
    assert_eq!(second["usage"]["input_tokens"], 5, "{second}");
    // Deleted through a third instance: gone for all.
    let deleted = gateways[2]
        .client
        .delete(gateways[2].url(&format!("/v1/responses/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    for g in &gateways[..2] {
        let res = g
            .client
            .get(g.url(&format!("/v1/responses/{id}")))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_error(res, 404).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_nearing_expiry_is_announced_once_for_the_whole_fleet() {
    use crate::webhooks::{hook, Receiver};
    let Some(server) = RedisServer::start() else {
        return;
    };
    let receiver = Receiver::start();
    let hooks = format!("webhooks:\n{}", hook(&receiver.url(), "[key.expiring]", ""));
    let first = Gateway::start(&server.url(), &[("webhooks.yaml", &hooks)], &[]).await;
    let in_two_days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2 * 86_400;
    first
        .create_key(json!({"name": "soon", "expires_at": in_two_days}))
        .await;
    // Two more instances start, and each checks the keys at once: one announces.
    let _second = Gateway::start(&server.url(), &[("webhooks.yaml", &hooks)], &[]).await;
    let _third = Gateway::start(&server.url(), &[("webhooks.yaml", &hooks)], &[]).await;
    receiver.wait_for("key.expiring").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let announced = receiver
        .inbox
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.body["event"] == "key.expiring")
        .count();
    assert_eq!(announced, 1, "one announcement for the fleet");
}
