//! Webhooks end to end: signed deliveries reach a receiver on 127.0.0.1, a receiver that is
//! down gets retries while requests go on as before, and a bad `webhooks.yaml` is refused by
//! reload (the running webhooks stay) and by `switchboard check`.

use crate::helpers::*;
use crate::upstream::Upstream;
use actix_web::{web, HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec-test-0123456789abcdef";
const MOCK: &str = "kind: mock\nmodels: [echo]\n";

/// A receiver that records every delivery and answers 204.
#[derive(Default)]
pub(crate) struct Inbox {
    pub(crate) received: Mutex<Vec<Received>>,
}

async fn receive(req: HttpRequest, body: web::Bytes, inbox: web::Data<Inbox>) -> HttpResponse {
    inbox
        .received
        .lock()
        .unwrap()
        .push(Received::of(&req, &body));
    HttpResponse::NoContent().finish()
}

pub(crate) struct Receiver {
    pub(crate) inbox: Arc<Inbox>,
    server: MockServer,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        let inbox = Arc::new(Inbox::default());
        let server = mock_server(inbox.clone(), receive);
        Receiver { inbox, server }
    }

    /// The receiver's URL, with a query that must never be shown.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/hooks?token=query-secret", self.server.addr)
    }

    /// Waits for a delivery of `event`; returns it.
    pub(crate) async fn wait_for(&self, event: &str) -> Received {
        let started = Instant::now();
        loop {
            let found = self
                .inbox
                .received
                .lock()
                .unwrap()
                .iter()
                .find(|r| r.body["event"] == event)
                .cloned();
            if let Some(r) = found {
                return r;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no {event} delivery arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub(crate) fn hook(url: &str, events: &str, extra: &str) -> String {
    format!("  - url: {url}\n    secret: {SECRET}\n    events: {events}\n{extra}")
}

/// Checks a delivery as the README tells a receiver to: the HMAC-SHA256 of `<t>.<body>` with
/// the shared secret, a timestamp close to now, and headers that agree with the body.
fn assert_signed(r: &Received) {
    let header = &r.headers["x-switchboard-signature"];
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("malformed signature header {header}"));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", r.raw).as_bytes());
    assert_eq!(hex::encode(mac.finalize().into_bytes()), v1, "{header}");
    let now = switchboard::clock::now_secs();
    let t: u64 = t.parse().unwrap();
    assert!(now.abs_diff(t) <= 300, "t={t} is not recent (now {now})");
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["x-switchboard-event"], r.body["event"]);
    assert_eq!(r.headers["x-switchboard-delivery"], r.body["id"]);
    assert!(r.body["created_at"].is_u64(), "{}", r.body);
    // The crate's own check agrees, and refuses the same signature over another body.
    let verify = |body: &[u8]| {
        switchboard::webhooks::sign::verify(header, SECRET.as_bytes(), body, now, 300)
    };
    assert_eq!(verify(r.raw.as_bytes()), Ok(()));
    assert!(verify(b"{}").is_err());
}

fn webhooks_file(app: &TestApp) -> PathBuf {
    app._dir.path().join("webhooks.yaml")
}

fn providers_dir(app: &TestApp) -> PathBuf {
    app._dir.path().join("providers.d")
}

async fn deliveries(app: &TestApp) -> Vec<Value> {
    admin_json(app, "/admin/webhooks/deliveries").await["data"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_rolled_back_reload_and_an_opening_breaker_are_delivered_signed() {
    let receiver = Receiver::start();
    let upstream = Upstream::start().await;
    let app = spawn(
        Spawn::default()
            .provider(
                "up",
                format!(
                    "kind: openai\nbase_url: {}\napi_key: sk-upstream\nretry: {{ max_attempts: 1 }}\nbreaker: {{ consecutive_failures: 2, cool_down_secs: 60 }}\nmodels:\n  - name: m\n    upstream: status-503\n",
                    upstream.base_url
                ),
            )
            .provider("mock", MOCK)
            .webhooks(format!(
                "webhooks:\n{}",
                hook(&receiver.url(), "[reload.rolled_back, breaker.opened]", "")
            )),
    )
    .await;

    // A broken provider file: the reload is refused, and that is announced.
    std::fs::write(
        providers_dir(&app).join("bad.yaml"),
        "kind: mock\nmodels: [a]\ncolour: red\n",
    )
    .unwrap();
    let res = app.post("/admin/reload", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 422);
    let rolled_back = receiver.wait_for("reload.rolled_back").await;
    assert_signed(&rolled_back);
    assert_eq!(rolled_back.path, "/hooks");
    let data = &rolled_back.body["data"];
    assert_eq!(data["version"], 1, "{data}");
    assert!(
        data["errors"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("bad.yaml")
            && data["errors"][0]["line"] == 3,
        "{data}"
    );
    std::fs::remove_file(providers_dir(&app).join("bad.yaml")).unwrap();

    // Two failures open `up`'s breaker: announced once, with the provider named.
    for _ in 0..3 {
        let res = app
            .chat(ADMIN_KEY, json!({"model": "up/m", "messages": []}))
            .await;
        assert_eq!(res.status(), 503);
    }
    let opened = receiver.wait_for("breaker.opened").await;
    assert_signed(&opened);
    assert_eq!(opened.body["data"]["provider"], "up");
    assert_eq!(opened.body["data"]["consecutive_failures"], 2);
    assert_ne!(opened.body["id"], rolled_back.body["id"]);

    // Both are listed as delivered at the first attempt; the URL without its query, and no
    // secret anywhere in the admin API. The row is marked once the receiver's answer is back at
    // the sender, which can be just after the receiver saw the body: wait for it to settle.
    let started = Instant::now();
    let opened_row = loop {
        let list = deliveries(&app).await;
        let row = list
            .iter()
            .find(|d| d["id"] == opened.body["id"])
            .unwrap_or_else(|| panic!("{list:?}"))
            .clone();
        if row["status"] != "pending" {
            break row;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still pending: {row}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(opened_row["event"], "breaker.opened");
    assert_eq!(opened_row["status"], "delivered");
    assert_eq!(opened_row["attempts"], 1);
    assert_eq!(opened_row["response_status"], 204);
    assert_eq!(
        opened_row["url"],
        format!("http://{}/hooks?…", receiver.server.addr)
    );
    for path in ["/admin/webhooks/deliveries", "/admin/config"] {
        let text = app
            .get(path, ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !text.contains(SECRET) && !text.contains("query-secret"),
            "{path}: {text}"
        );
    }
    let metrics = admin_text(&app, "/metrics").await;
    assert!(
        metrics.contains(
            r#"switchboard_webhook_deliveries_total{event="breaker.opened",outcome="delivered"} 1"#
        ),
        "{metrics}"
    );
    // Only the events the hook asked for: `breaker.closed` and others never came.
    let received = receiver.inbox.received.lock().unwrap().clone();
    assert!(
        received
            .iter()
            .all(|r| r.body["event"] == "reload.rolled_back" || r.body["event"] == "breaker.opened"),
        "{received:?}"
    );
}

/// A listener that accepts connections and never answers; counts them.
async fn black_hole() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_retries_while_requests_keep_their_latency() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (silent, accepted) = black_hole().await;
    let app = spawn(Spawn::default().provider("mock", MOCK).webhooks(format!(
        "webhooks:\n{}{}",
        hook(
            &format!("http://{refused}/refused"),
            "['*']",
            "    max_attempts: 3\n"
        ),
        hook(
            &format!("http://{silent}/silent"),
            "[reload.rolled_back]",
            "    timeout_secs: 2\n    max_attempts: 2\n"
        ),
    )))
    .await;
    std::fs::write(providers_dir(&app).join("bad.yaml"), "kind: nope\n").unwrap();
    let res = app.post("/admin/reload", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 422);

    // While both receivers fail (one refuses at once, one holds each attempt for its 2 s
    // timeout), requests are answered as usual: none waits for a delivery. The bound is
    // generous; a request stuck behind a delivery would take the 2 s timeout.
    let started = Instant::now();
    let row = |list: &[Value], path: &str| -> Option<Value> {
        list.iter()
            .find(|d| d["url"].as_str().unwrap().ends_with(path))
            .cloned()
    };
    let (refused_row, silent_row) = loop {
        for _ in 0..5 {
            let sent = Instant::now();
            let res = app
                .chat(
                    ADMIN_KEY,
                    json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
                )
                .await;
            assert_eq!(res.status(), 200);
            assert!(
                sent.elapsed() < Duration::from_secs(1),
                "a request took {:?} while a webhook receiver was down",
                sent.elapsed()
            );
        }
        let list = deliveries(&app).await;
        if let (Some(r), Some(s)) = (row(&list, "/refused"), row(&list, "/silent")) {
            if r["status"] == "failed" && s["attempts"].as_u64() >= Some(2) {
                break (r, s);
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no retries seen: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused_row["event"], "reload.rolled_back");
    assert_eq!(refused_row["attempts"], 3);
    assert_eq!(refused_row["max_attempts"], 3);
    assert_eq!(refused_row["last_error"], "cannot connect to the receiver");
    assert!(refused_row["response_status"].is_null());
    assert!(
        silent_row["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no answer within")),
        "{silent_row}"
    );
    assert!(
        accepted.load(Ordering::SeqCst) >= 2,
        "the silent receiver saw the retry"
    );
    let metrics = admin_text(&app, "/metrics").await;
    assert!(
        metrics.contains(
            r#"switchboard_webhook_deliveries_total{event="reload.rolled_back",outcome="failed"}"#
        ) && metrics.contains(r#"switchboard_webhook_attempts_total{result="failure"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_bad_webhooks_file_is_refused_and_the_running_webhooks_stay() {
    let receiver = Receiver::start();
    let app = spawn(Spawn::default().provider("mock", MOCK).webhooks(format!(
        "webhooks:\n{}",
        hook(&receiver.url(), "[reload.rolled_back]", "")
    )))
    .await;
    let before = admin_json(&app, "/admin/config").await["webhooks"].clone();
    assert_eq!(before["hooks"].as_array().unwrap().len(), 1, "{before}");

    let bad = format!(
        "webhooks:\n{}    retries: 3\n",
        hook(&receiver.url(), "[reload.rolled_back]", "")
    );
    std::fs::write(webhooks_file(&app), &bad).unwrap();
    let res = app.post("/admin/reload", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 422);
    let attempt: Value = res.json().await.unwrap();
    let error = &attempt["errors"][0];
    assert!(
        error["file"].as_str().unwrap().ends_with("webhooks.yaml")
            && error["line"] == 5
            && error["message"]
                .as_str()
                .unwrap()
                .contains("unknown field `retries`"),
        "{attempt}"
    );
    // The running webhooks stay, and they hear of the rollback.
    assert_eq!(admin_json(&app, "/admin/config").await["webhooks"], before);
    let rolled_back = receiver.wait_for("reload.rolled_back").await;
    assert_signed(&rolled_back);
    assert!(
        rolled_back.body["data"]["errors"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("webhooks.yaml"),
        "{}",
        rolled_back.body
    );

    // `switchboard check` refuses the same file, naming the line.
    let check = |webhooks: &std::path::Path| {
        crate::cli::bin()
            .arg("check")
            .arg("--providers")
            .arg(providers_dir(&app))
            .arg("--policies")
            .arg(app._dir.path().join("policies"))
            .arg("--webhooks")
            .arg(webhooks)
            .output()
            .unwrap()
    };
    let out = check(&webhooks_file(&app));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("webhooks.yaml:5") && err.contains("unknown field `retries`"),
        "{err}"
    );
    assert!(!err.contains(SECRET), "{err}");

    // Fixed, the file is picked up by the watcher like the folders are; check accepts it.
    std::fs::write(
        webhooks_file(&app),
        format!(
            "webhooks:\n{}",
            hook(&receiver.url(), "[reload.rolled_back, breaker.closed]", "")
        ),
    )
    .unwrap();
    let started = Instant::now();
    loop {
        let hooks = admin_json(&app, "/admin/config").await["webhooks"]["hooks"].clone();
        if hooks[0]["events"] == json!(["reload.rolled_back", "breaker.closed"]) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the fixed file was never loaded: {hooks}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = check(&webhooks_file(&app));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "ok       webhook http://{}/hooks?… (reload.rolled_back, breaker.closed)",
            receiver.server.addr
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_budget_crossing_its_thresholds_is_delivered_once_each() {
    let receiver = Receiver::start();
    let app = spawn(Spawn::default().provider("mock", MOCK).webhooks(format!(
        "webhooks:\n{}",
        hook(&receiver.url(), "[budget.threshold]", "")
    )))
    .await;
    let (id, key) = app
        .create_key(json!({"name": "metered", "limits": {"tpd": 20}}))
        .await;
    // Each request uses 6 tokens ("a b c" echoed) and reserves 2 + 4 + 3 = 9.
    let body = json!({"model": "echo", "max_tokens": 3, "messages": [{"role": "user", "content": "a b c"}]});
    for _ in 0..2 {
        assert_eq!(app.chat(&key, body.clone()).await.status(), 200);
    }
    // 12 of 20: 60 %, past 50 once.
    let r = receiver.wait_for("budget.threshold").await;
    assert_signed(&r);
    let data = &r.body["data"];
    assert_eq!(data["limit"], "key:metered tpd");
    assert_eq!(data["percent"], 50);
    assert_eq!(data["used"], 12.0);
    assert_eq!(data["max"], 20.0);
    assert_eq!(data["key_id"], id.as_str());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let crossings = |app_inbox: &Inbox| {
        app_inbox
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.body["event"] == "budget.threshold")
            .count()
    };
    assert_eq!(crossings(&receiver.inbox), 1, "50 % is told once");
}
