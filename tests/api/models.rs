//! `/v1/models` and model resolution.

use crate::helpers::*;
use serde_json::{json, Value};

async fn app() -> TestApp {
    spawn(
        Spawn::default()
            .provider("alpha", "kind: mock\nmodels: [shared, only-alpha]\n")
            .provider("beta", "kind: mock\nmodels: [shared, vendor/slashed]\n")
            .provider("off", "kind: mock\nenabled: false\nmodels: [hidden]\n"),
    )
    .await
}

#[tokio::test]
async fn lists_every_enabled_model_with_its_provider() {
    let app = app().await;
    let res = app.get("/v1/models", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<(&str, &str)> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model");
            assert!(m["created"].as_u64().unwrap() > 0);
            (m["id"].as_str().unwrap(), m["owned_by"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            ("alpha/shared", "alpha"),
            ("alpha/only-alpha", "alpha"),
            ("beta/shared", "beta"),
            ("beta/vendor/slashed", "beta"),
        ]
    );
}

#[tokio::test]
async fn retrieves_one_model_by_qualified_or_bare_id() {
    let app = app().await;
    let one: Value = app
        .get("/v1/models/beta/vendor/slashed", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], "beta/vendor/slashed");
    let bare: Value = app
        .get("/v1/models/only-alpha", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bare["id"], "alpha/only-alpha");
    let res = app
        .get("/v1/models/hidden", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 404).await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("hidden"));
}

#[tokio::test]
async fn bare_names_resolve_to_the_first_provider_and_qualified_names_choose() {
    let app = app().await;
    let msg = json!([{"role": "user", "content": "hi"}]);
    for (model, provider) in [
        ("shared", "alpha"),
        ("alpha/shared", "alpha"),
        ("beta/shared", "beta"),
        ("vendor/slashed", "beta"),
        ("beta/vendor/slashed", "beta"),
    ] {
        let res = app
            .chat(ADMIN_KEY, json!({"model": model, "messages": msg}))
            .await;
        assert_eq!(res.status(), 200, "{model}");
        assert_eq!(res.headers()["x-switchboard-provider"], provider, "{model}");
    }
}

#[tokio::test]
async fn an_unknown_model_is_a_404_that_names_it() {
    let app = app().await;
    let res = app
        .chat(
            ADMIN_KEY,
            json!({"model": "gpt-nonexistent", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    let body = assert_error(res, 404).await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt-nonexistent"));
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(body["error"]["param"], "model");
    // A disabled provider's models are unknown too.
    let res = app
        .chat(ADMIN_KEY, json!({"model": "off/hidden", "messages": []}))
        .await;
    assert_error(res, 404).await;
}
