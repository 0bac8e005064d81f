//! The dashboard in a real headless Chromium against a real gateway with the mock provider:
//! sign in, watch the overview move, create and revoke a key, make a team and put a key in it,
//! simulate, stream a chat, open a log row, on a desktop and a phone-sized screen, in light and
//! dark mode, with no console errors. Screenshots go to `target/e2e-screenshots/`.
//!
//! Skipped (with a message) when Chromium or chromedriver is not installed; with
//! `SWITCHBOARD_E2E=1` (as CI sets it) a missing browser is a failure instead.

use crate::helpers::{admin_json, spawn, Spawn, TestApp, ADMIN_KEY};
use crate::webdriver::{find_browser, Driver};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn screenshots_dir() -> PathBuf {
    let dir = std::env::var_os("SWITCHBOARD_E2E_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("../e2e-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap_or(dir)
}

async fn gateway() -> TestApp {
    let mut opts = Spawn::default().provider(
        "mock",
        "kind: mock\nmodels:\n  - echo\n  - name: echo-priced\n    upstream: echo\n    \
         pricing: { input: 0.5, output: 1.5 }\n  - name: echo-cheap\n    upstream: echo\n    \
         pricing: { input: 0.1, output: 0.2 }\n  - name: echo-dear\n    upstream: echo\n    \
         pricing: { input: 3, output: 15 }\nmock:\n  chunk_delay_ms: 40\n",
    );
    opts.log_bodies = true;
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rhai") {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            opts = opts.policy(&name, std::fs::read_to_string(&path).unwrap());
        }
    }
    spawn(opts).await
}

async fn chat(app: &TestApp, key: &str, model: &str, text: &str) -> reqwest::Response {
    app.chat(
        key,
        json!({"model": model, "messages": [{"role": "user", "content": text}]}),
    )
    .await
}

/// Console entries that are errors (or warnings about CSP and the like), as text.
async fn console_problems(d: &Driver) -> Vec<String> {
    d.console()
        .await
        .into_iter()
        .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Drains the console, which may hold only the browser's own lines for expected HTTP errors.
async fn expect_only_http_errors(d: &Driver, status: &str) {
    let problems = console_problems(d).await;
    let unexpected: Vec<_> = problems
        .iter()
        .filter(|m| !(m.contains("Failed to load resource") && m.contains(status)))
        .collect();
    assert!(unexpected.is_empty(), "console: {unexpected:#?}");
}

async fn shot(d: &Driver, dir: &Path, name: &str) {
    // Let the page settle (fonts, layout) before the picture.
    d.js(
        "return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
        json!([]),
    )
    .await;
    d.screenshot(&dir.join(format!("{name}.png"))).await;
    // No JavaScript leftovers in what the page says.
    let text = d.js("return document.body.innerText", json!([])).await;
    let text = text.as_str().unwrap_or_default();
    for bad in ["undefined", "NaN", "[object Object]"] {
        assert!(!text.contains(bad), "{name} shows {bad}:\n{text}");
    }
    assert!(
        !text.lines().any(|l| l.trim() == "null"),
        "{name} shows null:\n{text}"
    );
}

async fn goto_page(d: &Driver, page: &str, ready: &str) {
    d.js(
        "location.hash = '#/' + arguments[0]; return true",
        json!([page]),
    )
    .await;
    d.wait_for(
        page,
        "return document.getElementById('main').dataset.page === arguments[0] && \
         !!document.querySelector(arguments[1])",
        json!([page, ready]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    let required = std::env::var("SWITCHBOARD_E2E").is_ok_and(|v| v == "1");
    let Some((chromium, chromedriver)) = find_browser() else {
        assert!(
            !required,
            "SWITCHBOARD_E2E=1 but chromium / chromedriver are not installed \
             (apt-get install -y chromium chromium-driver)"
        );
        eprintln!(
            "SKIPPED dashboard_in_a_real_browser: chromium and chromedriver are not installed \
             (apt-get install -y chromium chromium-driver to run it)"
        );
        return;
    };
    let started = Instant::now();
    let dir = screenshots_dir();
    let app = gateway().await;
    let d = Driver::start(&chromium, &chromedriver).await;

    // Sign in; first make sure console errors do reach the test.
    d.goto(&app.url("/dashboard")).await;
    d.js("console.error('e2e probe'); return true", json!([]))
        .await;
    let probe = console_problems(&d).await;
    assert!(
        probe.iter().any(|m| m.contains("e2e probe")),
        "the browser console is not being read: {probe:?}"
    );
    // A wrong key is refused with a message (the browser logs the 401 itself).
    d.fill("#signin-key", "sk-not-a-key").await;
    d.click("#signin-submit").await;
    d.wait_for(
        "the refusal",
        "return document.getElementById('signin-error').innerText.includes('not valid')",
        json!([]),
    )
    .await;
    expect_only_http_errors(&d, "401").await;
    d.fill("#signin-key", ADMIN_KEY).await;
    d.click("#signin-submit").await;
    let before = d.text("#stat-requests .value").await;
    assert_eq!(before, "0");
    shot(&d, &dir, "01-overview-empty").await;

    // The overview moves after requests (auto-refresh, no reload).
    for text in ["one two three", "four five"] {
        assert_eq!(chat(&app, ADMIN_KEY, "mock/echo", text).await.status(), 200);
    }
    assert_eq!(
        chat(&app, ADMIN_KEY, "mock/echo-priced", "six seven eight")
            .await
            .status(),
        200
    );
    assert_eq!(chat(&app, ADMIN_KEY, "mock/nope", "x").await.status(), 404);
    d.wait_for(
        "the overview to count the requests",
        "const e = document.querySelector('#stat-requests .value'); return e && e.innerText !== '0'",
        json!([]),
    )
    .await;
    let latency = d
        .wait_for(
            "latency history in the chart",
            "const c = document.querySelector('#latency-chart figure svg'); \
             return c ? document.getElementById('latency-chart').innerText : null",
            json!([]),
        )
        .await;
    assert!(latency.as_str().unwrap().contains("p95"), "{latency}");
    latency_history(&d, &app).await;
    status_panel(&d, &app).await;
    keyboard(&d).await;
    let tokens = d.text("#stat-tokens .value").await;
    assert_ne!(tokens, "0");
    let top = d.text("#top-providers").await;
    assert!(top.contains("mock") && top.contains("most used"), "{top}");
    shot(&d, &dir, "02-overview").await;

    // Providers.
    goto_page(&d, "providers", ".provider").await;
    let provider = d.text(".provider").await;
    assert!(provider.contains("mock/echo-priced"), "{provider}");
    shot(&d, &dir, "03-providers").await;
    // The API reports each provider's breaker; a healthy one is closed.
    assert!(provider.contains("breaker: closed"), "{provider}");

    // An open breaker is shown too: rewrite the reply in the page to have one, and look again.
    d.js(
        "const real = window.fetch; window.__realFetch = real; \
         window.fetch = async (url, opts) => { \
           const res = await real(url, opts); \
           if (String(url) !== '/admin/providers') return res; \
           const body = await res.json(); \
           body.data.forEach(p => { p.breaker = { state: 'open', until: 0 }; }); \
           return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } }); \
         }; return true",
        json!([]),
    )
    .await;
    goto_page(&d, "overview", "#stat-requests").await;
    goto_page(&d, "providers", ".provider").await;
    let breaker = d.text(".provider").await;
    assert!(breaker.contains("breaker: open"), "{breaker}");
    d.js("window.fetch = window.__realFetch; return true", json!([]))
        .await;

    // Create a key: the secret is shown once and works; revoke it after a confirmation.
    goto_page(&d, "keys", "#key-create").await;
    d.fill("#key-name", "e2e-bot").await;
    // `echo-priced`, not `echo`: the shipped canary sends one key in ten (by its random id)
    // from `echo` to `echo-priced`, which a key allowed only `echo` may not use (a 403).
    d.fill("#key-models", "mock/echo-priced").await;
    d.fill("#key-tags", "team=e2e").await;
    d.click("#key-create-submit").await;
    let secret = d.text("#secret-value").await;
    assert!(secret.starts_with("sk-"), "{secret}");
    shot(&d, &dir, "04-key-created").await;
    d.click("#secret-done").await;
    assert_eq!(
        chat(&app, &secret, "mock/echo-priced", "hi").await.status(),
        200
    );
    let row = d
        .wait_for(
            "the new key in the list",
            "const r = [...document.querySelectorAll('.key-row')].find(r => r.innerText.includes('e2e-bot')); \
             return r ? r.querySelector('[data-action=revoke]').dataset.id : null",
            json!([]),
        )
        .await;
    let key_id = row.as_str().unwrap().to_string();
    shot(&d, &dir, "05-keys").await;
    // Edit its models (PATCH), then rotate it: the old secret stops, the new one works.
    d.click(&format!("[data-action=edit][data-id='{key_id}']"))
        .await;
    d.fill("#edit-models", "mock/echo, mock/echo-priced").await;
    d.click("#edit-save").await;
    d.wait_for(
        "the edited models in the list",
        "const r = document.querySelector(`.key-${arguments[0]}`); \
         return r && r.querySelectorAll('.pill-list code').length === 2",
        json!([key_id]),
    )
    .await;
    d.click(&format!("[data-action=rotate][data-id='{key_id}']"))
        .await;
    d.click("#confirm-ok").await;
    let rotated = d.text("#secret-value").await;
    assert!(rotated.starts_with("sk-") && rotated != secret, "{rotated}");
    d.click("#secret-done").await;
    assert_eq!(chat(&app, &secret, "mock/echo", "hi").await.status(), 401);
    assert_eq!(
        chat(&app, &rotated, "mock/echo-priced", "hi")
            .await
            .status(),
        200
    );
    let secret = rotated;
    d.click(&format!("[data-action=revoke][data-id='{key_id}']"))
        .await;
    d.text("#confirm-ok").await;
    shot(&d, &dir, "06-revoke-confirm").await;
    d.click("#confirm-ok").await;
    d.wait_for(
        "the revoked key to leave the list",
        "return !document.querySelector(`[data-action=revoke][data-id='${arguments[0]}']`)",
        json!([key_id]),
    )
    .await;
    assert_eq!(chat(&app, &secret, "mock/echo", "hi").await.status(), 401);

    // Teams: one with limits, a key in it (with limits of its own), which keeps the team from
    // being deleted; the team's limits edited.
    goto_page(&d, "teams", "#team-create").await;
    d.fill("#team-name", "e2e-team").await;
    d.fill("#team-rpm", "600").await;
    d.fill("#team-budget-usd-month", "25").await;
    d.click("#team-create-submit").await;
    let team_id = d
        .wait_for(
            "the new team in the list",
            "const r = [...document.querySelectorAll('.team-row')].find(r => r.innerText.includes('e2e-team')); \
             return r ? r.querySelector('[data-action=delete-team]').dataset.id : null",
            json!([]),
        )
        .await;
    let team_id = team_id.as_str().unwrap().to_string();
    let row = d.text(&format!(".team-{team_id}")).await;
    assert!(
        row.contains("600 req/min") && row.contains("$25.00/month"),
        "{row}"
    );
    goto_page(&d, "keys", "#key-create").await;
    d.fill("#key-name", "e2e-member").await;
    d.select("#key-team", &team_id).await;
    d.click("#key-limits summary").await;
    d.fill("#key-tpd", "100000").await;
    d.click("#key-create-submit").await;
    let member = d.text("#secret-value").await;
    d.click("#secret-done").await;
    let row = d
        .wait_for(
            "the member key in the list",
            "const r = [...document.querySelectorAll('.key-row')].find(r => r.innerText.includes('e2e-member')); \
             return r ? r.innerText : null",
            json!([]),
        )
        .await;
    let row = row.as_str().unwrap();
    assert!(
        row.contains("e2e-team")
            && (row.contains("100,000 tok/day") || row.contains("100000 tok/day")),
        "{row}"
    );
    assert_eq!(
        chat(&app, &member, "mock/echo-priced", "from a team")
            .await
            .status(),
        200
    );
    goto_page(&d, "teams", ".team-row").await;
    let row = d.text(&format!(".team-{team_id}")).await;
    assert!(row.contains("e2e-member"), "{row}");
    // The team's limits as they stand: the member's request used one of its 600 a minute.
    assert!(row.contains("team:e2e-team rpm: 1 of 600"), "{row}");
    shot(&d, &dir, "05b-teams").await;
    d.click(&format!("[data-action=delete-team][data-id='{team_id}']"))
        .await;
    d.click("#confirm-ok").await;
    d.wait_for(
        "the refusal to delete a team with keys",
        "const t = document.getElementById('toast'); return !t.hidden && t.innerText.includes('still has keys')",
        json!([]),
    )
    .await;
    expect_only_http_errors(&d, "409").await;
    d.click(&format!("[data-action=edit-team][data-id='{team_id}']"))
        .await;
    d.fill("#edit-team-rpm", "900").await;
    d.click("#edit-team-save").await;
    d.wait_for(
        "the edited limits in the list",
        "const r = document.querySelector(`.team-${arguments[0]}`); return r && r.innerText.includes('900 req/min')",
        json!([team_id]),
    )
    .await;

    // Usage, grouped by model.
    goto_page(&d, "usage", "#usage-load").await;
    d.select("#usage-group", "model").await;
    d.click("#usage-load").await;
    let usage = d.text("#usage-table table").await;
    assert!(usage.contains("echo-priced"), "{usage}");
    // Export CSV: catch the file the page hands to the browser instead of saving it.
    d.js(
        "const make = URL.createObjectURL; \
         URL.createObjectURL = (blob) => { blob.text().then(t => { window.__csv = t; }); return make(blob); }; \
         const click = HTMLAnchorElement.prototype.click; \
         HTMLAnchorElement.prototype.click = function () { if (!this.download) click.call(this); }; \
         return true",
        json!([]),
    )
    .await;
    d.click("#usage-export").await;
    let csv = d
        .wait_for("the CSV", "return window.__csv || null", json!([]))
        .await;
    let csv = csv.as_str().unwrap();
    assert!(
        csv.starts_with("bucket_start,bucket_start_iso,model,requests,errors,cached,"),
        "{csv}"
    );
    assert!(csv.contains(",mock/echo-priced,"), "{csv}");
    shot(&d, &dir, "07-usage").await;
    // And by team, named.
    d.select("#usage-group", "team").await;
    d.click("#usage-load").await;
    d.wait_for(
        "usage by team",
        "const t = document.querySelector('#usage-table table'); return t && t.innerText.includes('e2e-team')",
        json!([]),
    )
    .await;

    // Policies: config status and a simulation.
    goto_page(&d, "policies", "#sim-run").await;
    let status = d.text("#config-status").await;
    assert!(status.contains("Version"), "{status}");
    d.select("#sim-model", "mock/echo").await;
    d.click("#sim-run").await;
    let targets = d.text("#sim-targets").await;
    assert!(targets.contains("mock/echo"), "{targets}");
    let decisions = d.text("#sim-decisions").await;
    assert!(decisions.contains("echo-canary="), "{decisions}");
    shot(&d, &dir, "08-policies").await;
    simulate_state_survives_a_reload(&d).await;

    // A broken script: the reload is rolled back and its errors are shown; fixed, it applies.
    let broken = app._dir.path().join("policies/50-broken.rhai");
    std::fs::write(&broken, "fn on_request(req, ctx) {\n  let x = ;\n}\n").unwrap();
    d.click("#reload").await;
    d.wait_for(
        "the reload errors",
        "const s = document.getElementById('config-status'); \
         return s && s.innerText.includes('50-broken.rhai') && s.innerText.includes('rolled back')",
        json!([]),
    )
    .await;
    shot(&d, &dir, "08b-reload-errors").await;
    expect_only_http_errors(&d, "422").await;
    std::fs::remove_file(&broken).unwrap();
    d.click("#reload").await;
    d.wait_for(
        "a clean reload",
        "const s = document.getElementById('config-status'); \
         return s && !s.innerText.includes('50-broken.rhai') && \
         ['applied', 'unchanged'].includes(document.getElementById('reload-outcome')?.innerText)",
        json!([]),
    )
    .await;

    policy_editor(&d, &app, &dir).await;

    // Playground: a streamed chat, rendered while it arrives.
    goto_page(&d, "playground", "#pg-send").await;
    d.select("#pg-model", "mock/echo-priced").await;
    let prompt = "alpha beta gamma delta epsilon zeta eta theta iota kappa";
    d.fill("#pg-prompt", prompt).await;
    d.click("#pg-send").await;
    let partial = d
        .wait_for(
            "the first words of the stream",
            "const o = document.getElementById('pg-output'); \
             return o.innerText.length > 0 && o.dataset.done !== 'true' ? o.innerText : null",
            json!([]),
        )
        .await;
    assert!(
        prompt.starts_with(partial.as_str().unwrap().trim()),
        "{partial}"
    );
    d.wait_for(
        "the stream to finish",
        "return document.getElementById('pg-output').dataset.done === 'true'",
        json!([]),
    )
    .await;
    assert_eq!(d.text("#pg-output").await.trim(), prompt);
    assert!(d.text("#pg-provider").await.contains("mock"));
    let tokens = d.text("#pg-tokens").await;
    assert!(tokens.contains("= 20"), "{tokens}");
    let cost = d.text("#pg-cost").await;
    assert!(cost.starts_with('$'), "{cost}");
    shot(&d, &dir, "09-playground").await;
    d.click("#pg-compare").await;
    let tokens = d
        .js(
            "return document.getElementById('pg-tokens').innerText.match(/\\d+/g).map(Number)",
            json!([]),
        )
        .await;
    cost_rows(
        &d,
        &app,
        tokens[0].as_u64().unwrap(),
        tokens[1].as_u64().unwrap(),
        "mock/echo-priced",
    )
    .await;
    shot(&d, &dir, "09b-cost-compare").await;
    d.click("#cost-close").await;
    playground_state_survives_a_reload(&d, prompt).await;

    // Logs: the newest row opens its details, bodies included.
    goto_page(&d, "logs", ".log-row").await;
    shot(&d, &dir, "10-logs").await;
    d.select("#logs-status", "4xx").await;
    d.click("#logs-apply").await;
    let only_404 = d
        .wait_for(
            "only the 404 in the filtered log",
            "const rows = [...document.querySelectorAll('.log-row')]; \
             return rows.length > 0 && rows.every(r => r.innerText.includes('404')) ? rows.length : 0",
            json!([]),
        )
        .await;
    assert_eq!(only_404, json!(1));
    d.select("#logs-status", "").await;
    d.click("#logs-apply").await;
    d.wait_for(
        "the whole log again",
        "return document.querySelectorAll('.log-row').length > 1",
        json!([]),
    )
    .await;
    d.click(".log-row").await;
    let detail = d.text("#log-detail").await;
    assert!(
        detail.contains("Attempts") && detail.contains("Request body"),
        "{detail}"
    );
    shot(&d, &dir, "11-log-detail").await;
    // The cost of this entry's tokens on every priced model.
    let title = d.text("#modal-title").await;
    let id = title.rsplit(' ').next().unwrap().to_string();
    let entry = admin_json(&app, &format!("/admin/logs/{id}")).await;
    d.click("#log-compare").await;
    let served = format!(
        "{}/{}",
        entry["provider"].as_str().unwrap(),
        entry["model"].as_str().unwrap()
    );
    cost_rows(
        &d,
        &app,
        entry["prompt_tokens"].as_u64().unwrap(),
        entry["completion_tokens"].as_u64().unwrap(),
        &served,
    )
    .await;
    d.click("#cost-close").await;
    logs_filter_survives_a_reload(&d).await;
    themes(&d).await;
    chinese(&d, &dir).await;

    let problems = console_problems(&d).await;
    assert!(problems.is_empty(), "console: {problems:#?}");

    // A phone in dark mode.
    d.cdp(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    )
    .await;
    d.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    )
    .await;
    let dark: Value = d
        .js(
            "return matchMedia('(prefers-color-scheme: dark)').matches",
            json!([]),
        )
        .await;
    assert_eq!(dark, json!(true));
    for (page, ready) in PAGES {
        goto_page(&d, page, ready).await;
        // Nothing wider than the screen: tables scroll inside their own box.
        let overflow = d
            .js(
                "return document.documentElement.scrollWidth - window.innerWidth",
                json!([]),
            )
            .await;
        assert!(
            overflow.as_i64().unwrap_or(0) <= 0,
            "{page} is wider than a phone by {overflow}px"
        );
        shot(&d, &dir, &format!("20-phone-dark-{page}")).await;
    }
    // The system is dark now: "light" overrides it, "system" follows it again.
    let background = "return getComputedStyle(document.body).backgroundColor";
    assert_eq!(d.js(background, json!([])).await, json!("rgb(18, 21, 26)"));
    d.select("#theme-select", "light").await;
    assert_eq!(
        d.js(background, json!([])).await,
        json!("rgb(246, 247, 249)")
    );
    d.select("#theme-select", "system").await;
    assert_eq!(d.js(background, json!([])).await, json!("rgb(18, 21, 26)"));

    // Sign out: back to the sign-in form, the key gone from the session.
    d.click("#signout").await;
    d.text("#signin-error").await;
    let kept = d
        .js(
            "return sessionStorage.getItem('switchboard.adminKey')",
            json!([]),
        )
        .await;
    assert_eq!(kept, Value::Null);

    let problems = console_problems(&d).await;
    assert!(problems.is_empty(), "console: {problems:#?}");

    // Swagger UI works under its Content-Security-Policy: the operations of the proxy document
    // render, and the browser reports no violation.
    d.goto(&app.url("/docs/")).await;
    d.wait_for(
        "Swagger UI's operations",
        "return document.querySelectorAll('.opblock').length > 0",
        json!([]),
    )
    .await;
    shot(&d, &dir, "30-docs").await;
    let problems = console_problems(&d).await;
    assert!(problems.is_empty(), "console on /docs: {problems:#?}");

    read_only_editor(&d).await;
    batches_page(&d, &dir).await;
    d.quit().await;
    eprintln!(
        "dashboard e2e passed in {:.1}s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
}

/// The policy editor: a new script, a broken draft (its error and line shown), a good draft
/// simulated and tested, saved (the file written, a real request routed by it), then deleted.
async fn policy_editor(d: &Driver, app: &TestApp, dir: &Path) {
    d.wait_for(
        "the first script's source",
        "const t = document.getElementById('editor-source'); \
         return t && t.value.includes('fn on_request') && \
         document.querySelectorAll('#editor-gutter div').length === t.value.split('\\n').length",
        json!([]),
    )
    .await;
    // The highlighted copy under the textarea says the same text, coloured.
    let shade = d
        .js(
            "const t = document.getElementById('editor-source'), p = document.getElementById('editor-highlight'); \
             return [p.textContent === t.value + '\\n ', [...p.querySelectorAll('.tok-kw')].some(s => s.textContent === 'fn'), \
             p.getBoundingClientRect().top === t.getBoundingClientRect().top]",
            json!([]),
        )
        .await;
    assert_eq!(shade, json!([true, true, true]));
    d.click("#editor-new").await;
    d.fill("#editor-new-name", "60-e2e").await;
    d.click("#editor-new-ok").await;
    d.wait_for(
        "the new script's draft",
        "return document.getElementById('editor-status').innerText.includes('60-e2e.rhai (new')",
        json!([]),
    )
    .await;

    d.fill(
        "#editor-source",
        "fn on_request(req, ctx) {\n    let = 1;\n}\n",
    )
    .await;
    d.click("#editor-validate").await;
    let errors = d.text("#editor-errors").await;
    assert!(errors.contains("line 2"), "{errors}");
    let marked = d
        .js(
            "return [...document.querySelectorAll('#editor-gutter div.err')].map(e => e.innerText)",
            json!([]),
        )
        .await;
    assert_eq!(marked, json!(["2"]), "the gutter marks the line");
    d.click("#editor-errors button.link").await;
    let selected = d
        .js(
            "const t = document.getElementById('editor-source'); \
             return t.value.slice(t.selectionStart, t.selectionEnd)",
            json!([]),
        )
        .await;
    assert_eq!(selected, "    let = 1;", "the error's line is selected");
    shot(d, dir, "08c-editor-error").await;

    let draft = "fn on_request(req, ctx) {\n    if req.model == \"e2e-draft\" {\n        ctx.route([\"mock/echo-priced\"]);\n    }\n}\n";
    d.fill("#editor-source", draft).await;
    d.click("#editor-validate").await;
    let valid = d.text("#editor-valid").await;
    assert!(valid.contains("compiles"), "{valid}");

    // The simulator runs the saved scripts with the draft in place.
    d.js(
        "document.getElementById('sim-request').value = JSON.stringify({model: 'e2e-draft', \
         messages: [{role: 'user', content: 'hi'}]}); return true",
        json!([]),
    )
    .await;
    d.click("#sim-run").await;
    d.wait_for(
        "a simulation with the draft",
        "const t = document.getElementById('sim-targets'); \
         return !!document.getElementById('sim-with-draft') && t && t.innerText.includes('mock/echo-priced')",
        json!([]),
    )
    .await;

    // The shipped fixtures, run with the draft added.
    let tests = app._dir.path().join("policies/tests");
    std::fs::create_dir_all(&tests).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/tests");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tests.join(path.file_name().unwrap())).unwrap();
    }
    d.click("#editor-test").await;
    let fixtures = d.text("#editor-fixtures").await;
    assert!(fixtures.contains("Fixtures with this draft"), "{fixtures}");
    assert!(fixtures.contains("aliases.yaml"), "{fixtures}");
    assert!(fixtures.contains(" 0 failed"), "{fixtures}");
    assert!(
        fixtures.contains("60-e2e.rhai: 1/2 lines executed; not run: 3"),
        "{fixtures}"
    );
    let missed = d
        .js(
            "return [...document.querySelectorAll('#editor-gutter div.miss')].map(e => e.innerText)",
            json!([]),
        )
        .await;
    assert_eq!(missed, json!(["3"]), "no fixture asks for e2e-draft");
    shot(d, dir, "08d-editor-fixtures").await;

    d.click("#editor-save").await;
    d.click("#confirm-ok").await;
    let saved = d.text("#editor-saved").await;
    assert!(
        saved.contains("`60-e2e.rhai` saved; the gateway reloaded"),
        "{saved}"
    );
    let file = app._dir.path().join("policies/60-e2e.rhai");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), draft);
    let res = chat(app, ADMIN_KEY, "e2e-draft", "hi").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-model"], "echo-priced");
    d.wait_for(
        "the new script in the list",
        "return !!document.querySelector('#policy-scripts [data-script=\"60-e2e.rhai\"]')",
        json!([]),
    )
    .await;

    d.click("#editor-delete").await;
    d.click("#confirm-ok").await;
    d.wait_for(
        "the script gone",
        "return ![...document.querySelectorAll('#editor-script option')].some(o => o.value === '60-e2e.rhai') && \
         !document.querySelector('#policy-scripts [data-script=\"60-e2e.rhai\"]')",
        json!([]),
    )
    .await;
    assert!(!file.exists());
    let problems = console_problems(d).await;
    assert!(problems.is_empty(), "console: {problems:#?}");
}

/// With `--read-only-policies` the editor shows, validates and tests, but offers no Save,
/// Delete or New script.
async fn read_only_editor(d: &Driver) {
    let app = spawn(Spawn {
        read_only_policies: true,
        ..Spawn::default()
            .provider("mock", "kind: mock\nmodels: [echo]\n")
            .policy(
                "10-route.rhai",
                "fn on_request(req, ctx) {\n    ctx.route([\"mock/echo\"]);\n}\n",
            )
    })
    .await;
    d.goto(&app.url("/dashboard")).await;
    d.fill("#signin-key", ADMIN_KEY).await;
    d.click("#signin-submit").await;
    d.text("#stat-requests .value").await;
    goto_page(d, "policies", "#editor-validate").await;
    let note = d.text("#editor-read-only").await;
    assert!(note.contains("--read-only-policies"), "{note}");
    let offered = d
        .js(
            "return ['editor-save', 'editor-delete', 'editor-new'].filter(id => document.getElementById(id))",
            json!([]),
        )
        .await;
    assert_eq!(offered, json!([]), "no write buttons when read-only");
    d.click("#editor-validate").await;
    let valid = d.text("#editor-valid").await;
    assert!(valid.contains("10-route.rhai compiles"), "{valid}");
    let problems = console_problems(d).await;
    assert!(problems.is_empty(), "console (read-only): {problems:#?}");
}

/// Uploads a batch input of `n` chat lines for `model` and creates the batch, as the admin key.
async fn start_batch(app: &TestApp, n: usize, model: &str) -> String {
    let text: String = (0..n)
        .map(|i| {
            json!({"custom_id": format!("r{i}"), "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": model, "messages": [{"role": "user", "content": format!("line {i}")}]}})
            .to_string()
                + "\n"
        })
        .collect();
    let form = reqwest::multipart::Form::new()
        .text("purpose", "batch")
        .part(
            "file",
            reqwest::multipart::Part::bytes(text.into_bytes()).file_name("in.jsonl"),
        );
    let file: Value = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(ADMIN_KEY)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let batch: Value = app
        .post("/v1/batches", ADMIN_KEY)
        .json(&json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    batch["id"].as_str().unwrap().to_string()
}

/// The Batches page: a finished batch with its progress, cost and output file, a running one
/// cancelled from the page.
async fn batches_page(d: &Driver, dir: &Path) {
    let app = spawn(
        Spawn::default()
            .provider(
                "mock",
                "kind: mock\nmodels:\n  - name: echo\n    pricing: { input: 0.5, output: 1.5 }\n",
            )
            .provider(
                "slow",
                "kind: mock\nmodels: [slow]\nmock: { latency_ms: 30000 }\n",
            ),
    )
    .await;
    let done = start_batch(&app, 5, "mock/echo").await;
    let running = start_batch(&app, 20, "slow/slow").await;
    d.goto(&app.url("/dashboard")).await;
    d.fill("#signin-key", ADMIN_KEY).await;
    d.click("#signin-submit").await;
    d.text("#stat-requests .value").await;
    goto_page(d, "batches", "#batches-list table").await;
    // The finished one: 5 of 5, a cost, its output file offered.
    let row = d
        .wait_for(
            "the finished batch",
            "const row = [...document.querySelectorAll('#batches-list tr')].find(r => r.innerText.includes(arguments[0])); \
             return row && row.innerText.includes('completed') && row.querySelector('[data-file]') ? row.innerText : null",
            json!([done]),
        )
        .await;
    let row = row.as_str().unwrap_or_default();
    assert!(row.contains("5 / 5") && row.contains('$'), "{row}");
    shot(d, dir, "12-batches").await;
    // The running one is cancelled from the page.
    d.click(&format!("[data-cancel='{running}']")).await;
    d.click("#confirm-ok").await;
    d.wait_for(
        "the batch cancelled",
        "const row = [...document.querySelectorAll('#batches-list tr')].find(r => r.innerText.includes(arguments[0])); \
         return row && /cancell(ing|ed)/.test(row.innerText)",
        json!([running]),
    )
    .await;
    let batch: Value = app
        .get(&format!("/admin/batches/{running}"), ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ["cancelling", "cancelled"].contains(&batch["status"].as_str().unwrap_or_default()),
        "{batch}"
    );
    let problems = console_problems(d).await;
    assert!(problems.is_empty(), "console (batches): {problems:#?}");
}

const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";
const ESCAPE: &str = "\u{E00C}";

/// The pages, with an element each shows once loaded.
const PAGES: [(&str, &str); 9] = [
    ("overview", "#stat-requests"),
    ("providers", ".provider"),
    ("keys", "#key-create"),
    ("teams", ".team-row"),
    ("usage", "#usage-table table"),
    ("playground", "#pg-send"),
    ("logs", ".log-row"),
    ("batches", "#batches-list"),
    // Last: what follows the loops over the pages goes on from the Policies page.
    ("policies", "#sim-run"),
];

/// Reloads the page and waits for `page` to show `ready` again.
async fn reload(d: &Driver, page: &str, ready: &str) {
    d.js("window.__beforeReload = true; return true", json!([]))
        .await;
    d.refresh().await;
    d.wait_for(
        "the reloaded page",
        "return !window.__beforeReload && document.getElementById('main')?.dataset.page === arguments[0] \
         && !!document.querySelector(arguments[1])",
        json!([page, ready]),
    )
    .await;
}

/// `ms()` of ui.js, for comparing the page with the API.
fn ms_text(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v > 0.0 && v < 10.0 {
        format!("{} ms", (v * 10.0).round() / 10.0)
    } else {
        format!("{} ms", v.round())
    }
}

/// The overview's latency comes from the usage roll-ups' histograms: its p50 is the API's for
/// the range, and the chart has a row per bucket in its table.
async fn latency_history(d: &Driver, app: &TestApp) {
    let usage = admin_json(app, "/admin/usage?bucket=hour").await;
    let rows = usage["data"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["latency_hist"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_u64() > Some(0))),
        "{usage}"
    );
    let p50 = usage["totals"]["latency_p50_ms"]
        .as_f64()
        .expect("a p50 after traffic");
    d.wait_for(
        "the overview's p50 to be the API's",
        "return document.querySelector('#stat-p50 .value')?.innerText === arguments[0]",
        json!([ms_text(p50)]),
    )
    .await;
    let table_rows = d
        .js(
            "return document.querySelectorAll('#latency-chart details table tbody tr').length",
            json!([]),
        )
        .await;
    assert!(table_rows.as_u64().unwrap() >= 24, "{table_rows}");
}

/// The status panel shows what `GET /admin/status` says.
async fn status_panel(d: &Driver, app: &TestApp) {
    let status = admin_json(app, "/admin/status").await;
    let version = d.text("#status-version").await;
    assert!(
        version.starts_with(status["version"].as_str().unwrap()),
        "{version}"
    );
    let store = d.text("#status-store").await;
    assert!(
        store.contains("sled") && store.contains("healthy"),
        "{store}"
    );
    assert_eq!(
        d.text("#status-config").await,
        status["config"]["version"].to_string()
    );
    assert_eq!(status["providers"]["serving"], json!(["mock"]));
    let serving = d.text("#status-serving").await;
    assert!(
        serving.starts_with('1') && serving.contains("mock"),
        "{serving}"
    );
    assert!(d.text("#status-open").await.starts_with('0'));
    let in_flight: u64 = d.text("#status-in-flight").await.parse().unwrap();
    assert!(in_flight >= 1, "the panel's own request was in flight");
    let uptime = d.text("#status-uptime").await;
    assert!(uptime.ends_with(" s") || uptime.contains("min"), "{uptime}");
}

/// Keyboard only: the skip link, then into the page, with the focus visible.
async fn keyboard(d: &Driver) {
    let active = "return document.activeElement.id || document.activeElement.tagName";
    // From the top of the page: the body focused (as after a load), nothing in it yet.
    d.js(
        "window.scrollTo(0, 0); document.body.tabIndex = -1; document.body.focus(); \
         document.body.removeAttribute('tabindex'); return true",
        json!([]),
    )
    .await;
    d.press(TAB).await;
    assert_eq!(d.js(active, json!([])).await, json!("skip-link"));
    d.press(ENTER).await;
    assert_eq!(d.js(active, json!([])).await, json!("main"));
    d.press(TAB).await;
    let focused = d
        .js(
            "const e = document.activeElement; \
             return [e.closest('#main') !== null, getComputedStyle(e).outlineStyle]",
            json!([]),
        )
        .await;
    assert_eq!(focused[0], json!(true), "{focused}");
    assert_ne!(focused[1], json!("none"), "the focus is not visible");
}

/// The dialog's rows: every priced model of `GET /admin/providers`, cheapest first, each costing
/// its price of `prompt` and `completion` tokens; `current` marked when it is priced.
async fn cost_rows(d: &Driver, app: &TestApp, prompt: u64, completion: u64, current: &str) {
    let rows = d
        .wait_for(
            "the cost comparison",
            "const r = [...document.querySelectorAll('#cost-compare .cost')]; \
             return r.length ? r.map(e => [e.dataset.model, Number(e.dataset.usd), e.innerText, \
               e.closest('tr').classList.contains('current')]) : null",
            json!([]),
        )
        .await;
    let providers = admin_json(app, "/admin/providers").await;
    let mut expected: Vec<(String, f64)> = providers["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["models"].as_array().unwrap().iter())
        .filter(|m| m["pricing"].is_object())
        .map(|m| {
            let price = |side: &str| m["pricing"][side].as_f64().unwrap();
            let cost = (prompt as f64 * price("input") + completion as f64 * price("output")) / 1e6;
            (m["id"].as_str().unwrap().to_string(), cost)
        })
        .collect();
    expected.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    assert!(
        expected.len() >= 3 && prompt + completion > 0,
        "{expected:?}"
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), expected.len(), "{rows:?}");
    for (row, (model, cost)) in rows.iter().zip(&expected) {
        assert_eq!(row[0], json!(model), "{rows:?}");
        let shown = row[1].as_f64().unwrap();
        assert!((shown - cost).abs() < 1e-12, "{model}: {shown} != {cost}");
        assert!(row[2].as_str().unwrap().starts_with('$'), "{row}");
    }
    let marked: Vec<&Value> = rows.iter().filter(|r| r[3] == json!(true)).collect();
    if expected.iter().any(|(m, _)| m == current) {
        assert_eq!(marked.len(), 1, "{rows:?}");
        assert_eq!(marked[0][0], json!(current));
    } else {
        assert!(marked.is_empty(), "{rows:?}");
    }
}

/// What was typed in the playground comes back after a reload; Reset forgets it.
async fn playground_state_survives_a_reload(d: &Driver, prompt: &str) {
    let values = "return ['pg-model', 'pg-system', 'pg-prompt'].map(id => document.getElementById(id).value)";
    d.fill("#pg-system", "be brief").await;
    reload(d, "playground", "#pg-send").await;
    assert_eq!(
        d.js(values, json!([])).await,
        json!(["mock/echo-priced", "be brief", prompt])
    );
    d.click("#playground-reset").await;
    let after = d.js(values, json!([])).await;
    assert_eq!(after[1], json!(""));
    assert_ne!(after[2], json!(prompt));
    reload(d, "playground", "#pg-send").await;
    assert_eq!(d.js(values, json!([])).await, after);
}

/// The log filter comes back after a reload, and applies; Reset shows the whole log again.
async fn logs_filter_survives_a_reload(d: &Driver) {
    let only_4xx = "const rows = [...document.querySelectorAll('.log-row')]; \
         return rows.length > 0 && rows.every(r => r.innerText.includes('404')) ? rows.length : 0";
    d.select("#logs-status", "4xx").await;
    d.click("#logs-apply").await;
    d.wait_for("the filtered log", only_4xx, json!([])).await;
    reload(d, "logs", ".log-row").await;
    assert_eq!(
        d.js(
            "return document.getElementById('logs-status').value",
            json!([])
        )
        .await,
        json!("4xx")
    );
    d.wait_for("the filtered log after the reload", only_4xx, json!([]))
        .await;
    d.click("#logs-filter-reset").await;
    d.wait_for(
        "the whole log after the reset",
        "return document.getElementById('logs-status').value === '' && \
         document.querySelectorAll('.log-row').length > 1",
        json!([]),
    )
    .await;
    // A dialog by keyboard: Enter opens it, Tab stays inside, Escape closes it and the focus
    // goes back to the row.
    d.js(
        "document.querySelector('.log-row').focus(); return true",
        json!([]),
    )
    .await;
    d.press(ENTER).await;
    d.text("#log-detail").await;
    assert_eq!(
        d.js("return document.activeElement.id", json!([])).await,
        json!("log-close")
    );
    d.press(TAB).await;
    assert_eq!(
        d.js("return document.activeElement.id", json!([])).await,
        json!("log-compare")
    );
    d.press(ESCAPE).await;
    assert_eq!(
        d.js(
            "return document.getElementById('modal').hidden && \
             document.activeElement.classList.contains('log-row')",
            json!([])
        )
        .await,
        json!(true)
    );
}

/// The theme switch: dark and light override the system's, are remembered, and "system"
/// follows it again.
async fn themes(d: &Driver) {
    let look = "return [document.documentElement.dataset.theme || 'system', \
                getComputedStyle(document.body).backgroundColor]";
    d.select("#theme-select", "dark").await;
    assert_eq!(
        d.js(look, json!([])).await,
        json!(["dark", "rgb(18, 21, 26)"])
    );
    reload(d, "logs", ".log-row").await;
    assert_eq!(
        d.js(look, json!([])).await,
        json!(["dark", "rgb(18, 21, 26)"])
    );
    assert_eq!(
        d.js(
            "return document.getElementById('theme-select').value",
            json!([])
        )
        .await,
        json!("dark")
    );
    d.select("#theme-select", "light").await;
    assert_eq!(
        d.js(look, json!([])).await,
        json!(["light", "rgb(246, 247, 249)"])
    );
    d.select("#theme-select", "system").await;
    assert_eq!(
        d.js(look, json!([])).await,
        json!(["system", "rgb(246, 247, 249)"])
    );
}

/// Text of the page, in Chinese, that is still English: a text node or attribute equal to an
/// English catalog entry that Chinese translates, or three English words in a row (a sentence
/// no catalog entry produced). Code, paths and what the operator typed are left out.
const UNTRANSLATED: &str = "\
return Promise.all([import('/dashboard/assets/lang-en.js'), import('/dashboard/assets/lang-zh.js')]).then(([{ en }, { zh }]) => { \
  const english = new Set(Object.keys(en).filter(k => zh[k] !== en[k]).map(k => en[k])); \
  const skip = (el) => !el || el.closest('code, pre, .mono, script, style, textarea, [hidden], .code-editor, #lang-select'); \
  const bad = []; \
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT); \
  for (let n = walk.nextNode(); n; n = walk.nextNode()) { \
    const text = n.nodeValue.trim(); \
    if (!text || skip(n.parentElement)) continue; \
    if (english.has(text) || /[A-Za-z]{2,} [a-z]{2,} [a-z]{2,}/.test(text)) bad.push(text); \
  } \
  for (const el of document.querySelectorAll('[placeholder], [aria-label], [title]')) { \
    if (skip(el)) continue; \
    for (const a of ['placeholder', 'aria-label', 'title']) if (english.has(el.getAttribute(a))) bad.push(`${a}=${el.getAttribute(a)}`); \
  } \
  if (english.has(document.title.split(' · ')[0])) bad.push(`title=${document.title}`); \
  return bad; \
})";

/// Controls without a label (an enclosing <label>, `aria-label`, or `label[for]`).
const UNLABELED: &str = "\
return [...document.querySelectorAll('input, select, textarea')] \
  .filter(e => e.type !== 'hidden' && !e.closest('[hidden]') && !e.closest('label') && !e.getAttribute('aria-label') \
    && !(e.id && document.querySelector(`label[for='${e.id}']`))) \
  .map(e => e.id || e.outerHTML.slice(0, 80))";

/// Chooses `lang` in the header and waits for the page to be in it (`locale` on <html>, the
/// Overview link reading `overview`).
async fn switch_language(d: &Driver, lang: &str, locale: &str, overview: &str) {
    d.select("#lang-select", lang).await;
    d.wait_for(
        "the language switch",
        "return document.documentElement.lang === arguments[0] && \
         document.querySelector('#nav [data-page=overview]').innerText === arguments[1]",
        json!([locale, overview]),
    )
    .await;
}

/// Every page in Chinese: screenshots, no English left, every control labelled, every chart
/// with its table; numbers and dates in the Chinese locale. Then back to English.
async fn chinese(d: &Driver, dir: &Path) {
    switch_language(d, "zh", "zh-CN", "概览").await;
    for (page, ready) in PAGES {
        goto_page(d, page, ready).await;
        shot(d, dir, &format!("40-zh-{page}")).await;
        let bad = d.js(UNTRANSLATED, json!([])).await;
        assert_eq!(bad, json!([]), "{page} in Chinese still shows English");
        let unlabeled = d.js(UNLABELED, json!([])).await;
        assert_eq!(unlabeled, json!([]), "{page} has controls without a label");
        let bare_charts = d
            .js(
                "return [...document.querySelectorAll('svg.chart')] \
                 .filter(s => !s.closest('figure')?.querySelector('details table')).length",
                json!([]),
            )
            .await;
        assert_eq!(bare_charts, json!(0), "{page}: a chart without its table");
    }
    // The language is remembered, and dates are written the Chinese way.
    reload(d, "policies", "#sim-run").await;
    let loaded = d.text("#config-status").await;
    assert!(
        loaded.contains("版本") && (loaded.contains('年') || loaded.contains('/')),
        "{loaded}"
    );
    let title = d.js("return document.title", json!([])).await;
    assert_eq!(title, json!("策略 · Switchboard"));
    switch_language(d, "en", "en-US", "Overview").await;
    // The same pages in English, for the record.
    for (page, ready) in PAGES {
        goto_page(d, page, ready).await;
        shot(d, dir, &format!("41-en-{page}")).await;
        let unlabeled = d.js(UNLABELED, json!([])).await;
        assert_eq!(unlabeled, json!([]), "{page} has controls without a label");
    }
}

/// The simulate form comes back after a reload, the request it built included; Reset puts
/// the defaults back.
async fn simulate_state_survives_a_reload(d: &Driver) {
    let values = "return ['sim-model', 'sim-message', 'sim-request'].map(id => document.getElementById(id).value)";
    d.fill("#sim-message", "kept across a reload").await;
    // The request is rebuilt on change (typing fires input; leaving the field, change).
    d.js(
        "document.getElementById('sim-message').dispatchEvent(new Event('change', {bubbles: true})); return true",
        json!([]),
    )
    .await;
    let typed = d.js(values, json!([])).await;
    assert!(
        typed[2].as_str().unwrap().contains("kept across a reload"),
        "{typed}"
    );
    reload(d, "policies", "#sim-run").await;
    assert_eq!(d.js(values, json!([])).await, typed);
    d.click("#simulate-reset").await;
    let reset = d.js(values, json!([])).await;
    assert_eq!(reset[1], json!("Hello!"));
    assert!(reset[2].as_str().unwrap().contains("Hello!"), "{reset}");
}
