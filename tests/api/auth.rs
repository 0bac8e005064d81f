//! Keys: 401 without a valid key, 403 for a user key on /admin, create / list / revoke.

use crate::helpers::*;
use serde_json::{json, Value};

fn hello() -> Value {
    json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn missing_malformed_and_wrong_keys_are_401() {
    let app = spawn_mock().await;
    let res = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&hello())
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 401).await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Bearer"));
    let res = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("authorization", "Basic abc")
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_error(res, 401).await;
    let res = app.chat("sk-sb-not-a-key", hello()).await;
    let body = assert_error(res, 401).await;
    assert_eq!(body["error"]["type"], "authentication_error");
    let res = app.get("/v1/models", "wrong").send().await.unwrap();
    assert_error(res, 401).await;
    let res = app.get("/admin/keys", "wrong").send().await.unwrap();
    assert_error(res, 401).await;
}

#[tokio::test]
async fn created_key_works_once_shown_and_is_masked_in_lists() {
    let app = spawn_mock().await;
    let (id, secret) = app
        .create_key(json!({"name": "ci", "tags": {"team": "search"}}))
        .await;
    assert!(secret.starts_with("sk-sb-"));
    assert_eq!(app.chat(&secret, hello()).await.status(), 200);

    let res = app.get("/admin/keys", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(!text.contains(&secret), "the secret must never be listed");
    let list: Value = serde_json::from_str(&text).unwrap();
    let entry = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert_eq!(entry["name"], "ci");
    assert_eq!(entry["role"], "user");
    assert_eq!(entry["tags"]["team"], "search");
    assert!(entry["masked"].as_str().unwrap().contains('…'));
    assert!(entry.get("key").is_none());
}

#[tokio::test]
async fn a_user_key_gets_403_on_admin_endpoints() {
    let app = spawn_mock().await;
    let (id, secret) = app.create_key(json!({"name": "user"})).await;
    let res = app.get("/admin/keys", &secret).send().await.unwrap();
    let body = assert_error(res, 403).await;
    assert_eq!(body["error"]["type"], "permission_error");
    let res = app
        .post("/admin/keys", &secret)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 403).await;
    let res = app
        .client
        .delete(app.url(&format!("/admin/keys/{id}")))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_error(res, 403).await;
}

#[tokio::test]
async fn a_revoked_key_stops_working_at_once() {
    let app = spawn_mock().await;
    let (id, secret) = app.create_key(json!({"name": "temp"})).await;
    assert_eq!(app.chat(&secret, hello()).await.status(), 200);
    let res = app
        .client
        .delete(app.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body["revoked_at"].as_u64().is_some());
    assert_error(app.chat(&secret, hello()).await, 401).await;
    let res = app
        .client
        .delete(app.url("/admin/keys/key_nope"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_error(res, 404).await;
}

#[tokio::test]
async fn an_admin_created_admin_key_can_administer() {
    let app = spawn_mock().await;
    let (_, admin2) = app
        .create_key(json!({"name": "ops", "role": "admin"}))
        .await;
    let res = app.get("/admin/keys", &admin2).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_key_limited_to_models_sees_and_uses_only_those() {
    let app = spawn_mock().await;
    let (_, secret) = app
        .create_key(json!({"name": "narrow", "models": ["mock/echo"]}))
        .await;
    assert_eq!(app.chat(&secret, hello()).await.status(), 200);
    let res = app
        .chat(
            &secret,
            json!({"model": "text-embedding-mock", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    let body = assert_error(res, 403).await;
    assert_eq!(body["error"]["code"], "model_not_allowed");
    let list: Value = app
        .get("/v1/models", &secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["mock/echo"]);
}

#[tokio::test]
async fn bad_key_requests_are_400s() {
    let app = spawn_mock().await;
    let res = app
        .post("/admin/keys", ADMIN_KEY)
        .json(&json!({"name": ""}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400).await;
    let res = app
        .post("/admin/keys", ADMIN_KEY)
        .json(&json!({"name": "x", "role": "root"}))
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 400).await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("role"),
        "{body}"
    );
    let res = app
        .post("/admin/keys", ADMIN_KEY)
        .json(&json!({"name": "x", "colour": "red"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400).await;
}

#[tokio::test]
async fn first_start_without_an_admin_key_creates_one_once() {
    let data = tempfile::tempdir().unwrap();
    let opts = || Spawn {
        admin_key: None,
        data_dir: Some(data.path().to_path_buf()),
        ..Spawn::default().provider("mock", "kind: mock\nmodels: [echo]\n")
    };
    let (app, created) = spawn_with(opts()).await;
    let admin = created.expect("an admin key is created on first start");
    assert_eq!(
        app.get("/admin/keys", &admin)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
    wait_until_store_free(data.path()).await;

    let (app, again) = spawn_with(opts()).await;
    assert_eq!(again, None, "no second admin key on a later start");
    assert_eq!(
        app.get("/admin/keys", &admin)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn an_allow_list_entry_means_what_a_request_for_that_name_means() {
    // Both providers serve `echo`; a bare `echo` goes to `first` (file order).
    let app = spawn(
        Spawn::default()
            .provider("first", "kind: mock\nmodels: [echo]\n")
            .provider("second", "kind: mock\nmodels: [echo]\n"),
    )
    .await;
    let app = &app;
    let chat = |key: String, model: &'static str| async move {
        app.chat(
            &key,
            json!({"model": model, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await
    };
    let listed = |key: String| async move {
        let list: Value = app
            .get("/v1/models", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };

    // A bare entry: the model a bare request goes to, not every provider's `echo`.
    let (_, bare) = app
        .create_key(json!({"name": "bare", "models": ["echo"]}))
        .await;
    let res = chat(bare.clone(), "echo").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchboard-provider"], "first");
    assert_eq!(chat(bare.clone(), "first/echo").await.status(), 200);
    let body = assert_error(chat(bare.clone(), "second/echo").await, 403).await;
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert_eq!(listed(bare.clone()).await, vec!["first/echo"]);
    let res = app
        .get("/v1/models/second/echo", &bare)
        .send()
        .await
        .unwrap();
    assert_error(res, 404).await;

    // A `provider/model` entry: that model only, which a bare `echo` does not reach.
    let (_, second) = app
        .create_key(json!({"name": "second", "models": ["second/echo"]}))
        .await;
    assert_eq!(chat(second.clone(), "second/echo").await.status(), 200);
    assert_error(chat(second.clone(), "echo").await, 403).await;
    assert_error(chat(second.clone(), "first/echo").await, 403).await;
    assert_eq!(listed(second).await, vec!["second/echo"]);
}
