//! A small WebDriver client (the W3C protocol is plain JSON over HTTP) for the dashboard's
//! browser test: chromedriver + headless Chromium, both local; nothing reaches the network.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The browser and driver binaries, if both are installed.
pub fn find_browser() -> Option<(PathBuf, PathBuf)> {
    let pick = |var: &str, names: &[&str]| -> Option<PathBuf> {
        if let Ok(p) = std::env::var(var) {
            return Some(PathBuf::from(p)).filter(|p| p.exists());
        }
        names.iter().map(PathBuf::from).find(|p| p.exists())
    };
    let chromium = pick(
        "SWITCHBOARD_E2E_CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    )?;
    let driver = pick("SWITCHBOARD_E2E_CHROMEDRIVER", &["/usr/bin/chromedriver"])?;
    Some((chromium, driver))
}

pub struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Also on a failed test: end the session (chromedriver then quits Chromium) with a
        // plain blocking request, since Drop cannot await; then stop the driver.
        if !self.session.is_empty() {
            use std::io::{Read, Write};
            let addr = self.base.trim_start_matches("http://").to_string();
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    s,
                    "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.session
                );
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A Chromium that did not shut down in time outlives its driver; its profile folder
        // (ours alone) names it.
        let marker = format!("--user-data-dir={}", self._profile.path().display());
        for pid in processes_with_arg(&marker) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// Process ids whose command line has `arg` (Linux `/proc`; elsewhere none).
fn processes_with_arg(arg: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        cmd.split(|&b| b == 0)
            .any(|a| a == arg.as_bytes())
            .then_some(pid)
    })
    .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    pub async fn start(chromium: &Path, chromedriver: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let res: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {res}"))
            .to_string();
        Driver {
            child,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let ok = res.status().is_success();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        assert!(ok, "WebDriver {path}: {v}");
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Waits until `script` returns something truthy (not null/false/""/0), and returns it.
    pub async fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        let started = Instant::now();
        loop {
            let v = self.js(script, args.clone()).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let page = self
                    .js("return document.body.innerText.slice(0, 2000)", json!([]))
                    .await;
                panic!("timed out waiting for {what}; the page says:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an element matching `css` and returns its text.
    pub async fn text(&self, css: &str) -> String {
        let v = self
            .wait_for(
                css,
                "const e = document.querySelector(arguments[0]); return e ? [e.innerText] : null",
                json!([css]),
            )
            .await;
        v[0].as_str().unwrap_or_default().to_string()
    }

    async fn element(&self, css: &str) -> String {
        self.wait_for(
            css,
            // Centred, so a sticky header never covers what is clicked.
            "const e = document.querySelector(arguments[0]); \
             if (!e || e.offsetParent === null) return false; \
             e.scrollIntoView({block: 'center'}); return true",
            json!([css]),
        )
        .await;
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    /// A real click (the driver moves the pointer and clicks what is on top).
    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Clears a field and types into it with real key events.
    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await;
    }

    /// Sets a `<select>` to `value` and tells the page it changed.
    pub async fn select(&self, css: &str, value: &str) {
        self.element(css).await;
        self.js(
            "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
             s.dispatchEvent(new Event('change', {bubbles: true})); return s.value === arguments[1]",
            json!([css, value]),
        )
        .await;
    }

    /// Reloads the page (WebDriver's refresh: it returns once the page has loaded).
    pub async fn refresh(&self) {
        self.post("/refresh", json!({})).await;
    }

    /// Presses and releases one key (a WebDriver key code such as `\u{E004}` for Tab) on
    /// whatever has the focus, as a keyboard would.
    pub async fn press(&self, key: &str) {
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key},
            ]}]}),
        )
        .await;
    }

    /// A Chrome DevTools command through chromedriver (device size, colour scheme).
    pub async fn cdp(&self, cmd: &str, params: Value) {
        self.post("/goog/cdp/execute", json!({"cmd": cmd, "params": params}))
            .await;
    }

    pub async fn screenshot(&self, path: &Path) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64_decode(v.as_str().unwrap());
        std::fs::write(path, png).unwrap();
    }

    /// Browser console entries since the last call (chromedriver's log endpoint).
    pub async fn console(&self) -> Vec<Value> {
        let v = self.post("/se/log", json!({"type": "browser"})).await;
        v.as_array().cloned().unwrap_or_default()
    }

    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        self.session.clear();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (val(c) << (18 - 6 * i)));
        let pads = chunk.iter().filter(|&&c| c == b'=').count();
        let keep = chunk.len() - 1 - pads;
        for i in 0..keep {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
