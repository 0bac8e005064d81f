//! The policy editor's admin API: reading a script, checking, simulating and testing a draft,
//! saving and deleting scripts (and the reload after), and `--read-only-policies`.

use crate::helpers::*;
use serde_json::{json, Value};
use std::path::PathBuf;

const MOCK: &str = "kind: mock\nmodels: [echo, other]\n";
const ROUTE_ECHO: &str =
    "fn on_request(req, ctx) {\n    if req.model == \"smart\" { ctx.route([\"mock/echo\"]); }\n}\n";
const ROUTE_OTHER: &str =
    "fn on_request(req, ctx) {\n    if req.model == \"smart\" { ctx.route([\"mock/other\"]); }\n}\n";
/// Line 2 does not parse.
const BROKEN: &str = "fn on_request(req, ctx) {\n    let = 1;\n}\n";
const FIXTURE: &str = "- name: smart goes to echo\n  request: { model: smart, messages: [{ role: user, content: hi }] }\n  expect:\n    route: [mock/echo]\n";

fn smart() -> Value {
    json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
}

async fn editor_app(read_only: bool) -> TestApp {
    let app = spawn(Spawn {
        read_only_policies: read_only,
        ..Spawn::default()
            .provider("mock", MOCK)
            .policy("10-route.rhai", ROUTE_ECHO)
    })
    .await;
    let tests = policies_dir(&app).join("tests");
    std::fs::create_dir_all(&tests).unwrap();
    std::fs::write(tests.join("route.yaml"), FIXTURE).unwrap();
    app
}

fn policies_dir(app: &TestApp) -> PathBuf {
    app._dir.path().join("policies")
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.bearer_auth(ADMIN_KEY).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn put(app: &TestApp, name: &str, source: &str) -> (u16, Value) {
    send(
        app.client
            .put(app.url(&format!("/admin/policies/{name}")))
            .json(&json!({"source": source})),
    )
    .await
}

async fn delete(app: &TestApp, name: &str) -> (u16, Value) {
    send(
        app.client
            .delete(app.url(&format!("/admin/policies/{name}"))),
    )
    .await
}

#[tokio::test]
async fn a_scripts_source_is_read_as_loaded_and_paths_are_refused() {
    let app = editor_app(false).await;
    let body = admin_json(&app, "/admin/policies/10-route.rhai/source").await;
    assert_eq!(body, json!({"name": "10-route.rhai", "source": ROUTE_ECHO}));
    let list = admin_json(&app, "/admin/policies").await;
    assert_eq!(list["writable"], true);

    let res = app
        .get("/admin/policies/20-none.rhai/source", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_error(res, 404).await;
    for bad in [
        "..%2Fsecret.rhai",
        ".hidden.rhai",
        "notes.txt",
        "a%2Fb.rhai",
    ] {
        let res = app
            .get(&format!("/admin/policies/{bad}/source"), ADMIN_KEY)
            .send()
            .await
            .unwrap();
        let body = assert_error(res, 400).await;
        assert_eq!(body["error"]["param"], "name", "{bad}: {body}");
        let (status, _) = put(&app, bad, ROUTE_ECHO).await;
        assert_eq!(status, 400, "{bad}");
        let (status, _) = delete(&app, bad).await;
        assert_eq!(status, 400, "{bad}");
    }
    assert!(!app._dir.path().join("secret.rhai").exists());
    let res = app
        .get("/admin/policies/10-route.rhai/source", "sk-nobody")
        .send()
        .await
        .unwrap();
    assert_error(res, 401).await;
}

#[tokio::test]
async fn a_draft_is_validated_with_line_and_column_and_nothing_changes() {
    let app = editor_app(false).await;
    let validate = |source: &'static str| {
        send(
            app.client
                .post(app.url("/admin/policies/validate"))
                .json(&json!({"name": "10-route.rhai", "source": source})),
        )
    };
    let (status, body) = validate(BROKEN).await;
    assert_eq!(status, 200);
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(body["errors"][0]["line"], 2, "{body}");
    assert!(body["errors"][0]["column"].as_u64().is_some(), "{body}");
    assert!(body["errors"][0]["message"].is_string());

    let (_, body) = validate("let x = 1;").await;
    assert_eq!(body["valid"], false);
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("on_request"));

    let (_, body) = validate(ROUTE_OTHER).await;
    assert_eq!(body, json!({"valid": true, "errors": []}));
    let on_disk = std::fs::read_to_string(policies_dir(&app).join("10-route.rhai")).unwrap();
    assert_eq!(on_disk, ROUTE_ECHO, "validating writes nothing");
    let res = app.chat(ADMIN_KEY, smart()).await;
    assert_eq!(res.headers()["x-switchboard-model"], "echo");
}

#[tokio::test]
async fn simulating_a_draft_uses_it_instead_of_the_saved_script() {
    let app = editor_app(false).await;
    let simulate = |draft: Option<Value>| {
        let mut body = json!({"request": smart()});
        if let Some(draft) = draft {
            body["draft"] = draft;
        }
        send(
            app.client
                .post(app.url("/admin/policies/simulate"))
                .json(&body),
        )
    };
    let (status, saved) = simulate(None).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["route"], json!(["mock/echo"]));
    assert_eq!(saved["targets"], json!(["mock/echo"]));

    let (status, draft) = simulate(Some(
        json!({"name": "10-route.rhai", "source": ROUTE_OTHER}),
    ))
    .await;
    assert_eq!(status, 200, "{draft}");
    assert_eq!(draft["route"], json!(["mock/other"]));
    assert_eq!(draft["targets"], json!(["mock/other"]));

    // A new script runs in file-name order with the loaded ones: 20 routes after 10.
    let (_, added) = simulate(Some(json!({"name": "20-more.rhai", "source": ROUTE_OTHER}))).await;
    assert_eq!(added["route"], json!(["mock/other"]));

    let (status, broken) = simulate(Some(json!({"name": "10-route.rhai", "source": BROKEN}))).await;
    assert_eq!(status, 400);
    assert_eq!(broken["error"]["code"], "invalid_policy");
    assert_eq!(broken["error"]["param"], "draft.source");
    assert!(
        broken["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{broken}"
    );
    let (_, again) = simulate(None).await;
    assert_eq!(
        again["route"],
        json!(["mock/echo"]),
        "the saved set is unchanged"
    );
}

#[tokio::test]
async fn fixtures_run_against_the_loaded_scripts_or_a_draft() {
    let app = editor_app(false).await;
    let test = |body: Value| send(app.client.post(app.url("/admin/policies/test")).json(&body));
    let (status, report) = test(json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["passed"].as_u64(), report["failed"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        report["cases"][0],
        json!({"file": "route.yaml", "name": "smart goes to echo", "passed": true, "problems": []})
    );
    assert_eq!(
        report["coverage"],
        json!([{"script": "10-route.rhai", "lines": 1, "executed": 1, "not_run": []}])
    );

    let (status, report) =
        test(json!({"draft": {"name": "10-route.rhai", "source": ROUTE_OTHER}})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["failed"], 1, "{report}");
    assert_eq!(report["cases"][0]["passed"], false);
    let problem = report["cases"][0]["problems"][0].as_str().unwrap();
    assert!(
        problem.starts_with("route: expected") && problem.contains("mock/other"),
        "{problem}"
    );
    // A new script that no case reaches: its lines are reported as not run.
    let (_, report) = test(json!({"draft": {"name": "20-new.rhai", "source": "fn on_request(req, ctx) {\n    if req.model == \"never\" {\n        ctx.tag(\"x\", \"1\");\n    }\n}\n"}})).await;
    assert_eq!(report["passed"], 1, "{report}");
    assert_eq!(report["coverage"][1]["script"], "20-new.rhai");
    assert_eq!(report["coverage"][1]["not_run"], json!([3]), "{report}");

    let (status, body) = test(json!({"draft": {"name": "10-route.rhai", "source": BROKEN}})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_policy");
    let (status, body) =
        test(json!({"draft": {"name": "../10-route.rhai", "source": ROUTE_OTHER}})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "draft.name");

    std::fs::write(policies_dir(&app).join("tests/bad.yaml"), "- name: [").unwrap();
    let (status, body) = test(json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("bad.yaml"));
}

#[tokio::test]
async fn saving_writes_the_file_and_the_gateway_routes_by_it() {
    let app = editor_app(false).await;
    let dir = policies_dir(&app);
    let (status, body) = put(&app, "10-route.rhai", ROUTE_OTHER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], true, "{body}");
    assert_eq!(body["reload"]["outcome"], "applied");
    assert_eq!(
        std::fs::read_to_string(dir.join("10-route.rhai")).unwrap(),
        ROUTE_OTHER
    );
    let res = app.chat(ADMIN_KEY, smart()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-model"], "other");
    let source = admin_json(&app, "/admin/policies/10-route.rhai/source").await;
    assert_eq!(source["source"], ROUTE_OTHER);

    // Only the script is left in the folder: the temporary file was renamed over it.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["10-route.rhai", "tests"]);

    // A new name creates a script; it runs after 10 and routes to echo again.
    let (status, body) = put(&app, "20-new.rhai", ROUTE_ECHO).await;
    assert_eq!((status, &body["applied"]), (200, &json!(true)), "{body}");
    let list = admin_json(&app, "/admin/policies").await;
    assert_eq!(list["scripts"], json!(["10-route.rhai", "20-new.rhai"]));
    let res = app.chat(ADMIN_KEY, smart()).await;
    assert_eq!(res.headers()["x-switchboard-model"], "echo");
}

#[tokio::test]
async fn a_draft_that_does_not_compile_writes_nothing() {
    let app = editor_app(false).await;
    let (status, body) = put(&app, "10-route.rhai", BROKEN).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_policy");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("line 2"));
    let (status, _) = put(&app, "30-broken.rhai", BROKEN).await;
    assert_eq!(status, 400);
    let dir = policies_dir(&app);
    assert_eq!(
        std::fs::read_to_string(dir.join("10-route.rhai")).unwrap(),
        ROUTE_ECHO
    );
    assert!(!dir.join("30-broken.rhai").exists());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "no temporary file"
    );
}

#[tokio::test]
async fn deleting_removes_the_file_and_the_script() {
    let app = editor_app(false).await;
    let (status, body) = delete(&app, "10-route.rhai").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], true);
    assert!(!policies_dir(&app).join("10-route.rhai").exists());
    let list = admin_json(&app, "/admin/policies").await;
    assert_eq!(list["scripts"], json!([]));
    let res = app.chat(ADMIN_KEY, smart()).await;
    assert_error(res, 404).await;
    let (status, body) = delete(&app, "10-route.rhai").await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_save_says_when_the_reload_rolls_back_for_another_file() {
    let app = editor_app(false).await;
    std::fs::write(policies_dir(&app).join("50-bad.rhai"), BROKEN).unwrap();
    let (status, body) = put(&app, "10-route.rhai", ROUTE_OTHER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], false, "{body}");
    assert_eq!(body["reload"]["outcome"], "rolled_back");
    assert!(body["reload"]["errors"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("50-bad.rhai"));
    assert!(body["message"].as_str().unwrap().contains("rolled back"));
    let res = app.chat(ADMIN_KEY, smart()).await;
    assert_eq!(
        res.headers()["x-switchboard-model"],
        "echo",
        "the previous configuration keeps serving"
    );
}

#[tokio::test]
async fn read_only_policies_refuse_writes_but_still_simulate() {
    let app = editor_app(true).await;
    let list = admin_json(&app, "/admin/policies").await;
    assert_eq!(list["writable"], false);
    for res in [
        app.client
            .put(app.url("/admin/policies/10-route.rhai"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"source": ROUTE_OTHER}))
            .send()
            .await
            .unwrap(),
        app.client
            .delete(app.url("/admin/policies/10-route.rhai"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap(),
    ] {
        let body = assert_error(res, 403).await;
        assert_eq!(body["error"]["code"], "policies_read_only");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--read-only-policies"));
    }
    assert_eq!(
        std::fs::read_to_string(policies_dir(&app).join("10-route.rhai")).unwrap(),
        ROUTE_ECHO
    );
    let (status, body) = send(
        app.client
            .post(app.url("/admin/policies/validate"))
            .json(&json!({"name": "10-route.rhai", "source": ROUTE_OTHER})),
    )
    .await;
    assert_eq!((status, &body["valid"]), (200, &json!(true)));
}
