//! The OpenAPI documents: checked-in copies equal the generated ones, they are served, Swagger
//! UI is served, and every route the server registers is documented with the right methods.

use crate::helpers::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

const REGENERATE: &str = "run `cargo run -- openapi --out openapi/` and commit the result";

#[test]
fn checked_in_documents_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi");
    for (stem, doc) in switchboard::openapi::documents() {
        let path = dir.join(format!("{stem}.json"));
        let generated = switchboard::openapi::pretty(&doc).unwrap();
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} differs from what the code generates; {REGENERATE}",
            path.display()
        );
    }
}

#[tokio::test]
async fn documents_and_swagger_ui_are_served_without_a_key() {
    let app = spawn_mock().await;
    for (stem, doc) in switchboard::openapi::documents() {
        let res = app
            .client
            .get(app.url(&format!("/openapi/{stem}.json")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{stem}");
        let served: Value = res.json().await.unwrap();
        assert_eq!(served, serde_json::to_value(&doc).unwrap(), "{stem}");
    }
    // `/docs` redirects to `/docs/`, which is Swagger UI listing both documents.
    for path in ["/docs", "/docs/"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let html = res.text().await.unwrap();
        assert!(html.contains("swagger-ui"), "{path}: {html}");
    }
    let init = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        init.contains("/openapi/proxy.json") && init.contains("/openapi/admin.json"),
        "{init}"
    );
}

#[tokio::test]
async fn responses_are_never_sniffed_and_the_docs_cannot_be_framed() {
    let app = spawn_mock().await;
    let docs = app.client.get(app.url("/docs/")).send().await.unwrap();
    let csp = docs.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(docs.headers()["x-frame-options"], "DENY");
    assert_eq!(docs.headers()["x-content-type-options"], "nosniff");
    for res in [
        app.get("/v1/models", ADMIN_KEY).send().await.unwrap(),
        app.client.get(app.url("/v1/nowhere")).send().await.unwrap(),
        app.client
            .get(app.url("/openapi/proxy.json"))
            .send()
            .await
            .unwrap(),
        app.client.get(app.url("/health")).send().await.unwrap(),
    ] {
        assert_eq!(
            res.headers()["x-content-type-options"],
            "nosniff",
            "{}",
            res.url()
        );
    }
    // The dashboard keeps its own, stricter policy.
    let dashboard = app.client.get(app.url("/dashboard")).send().await.unwrap();
    let csp = dashboard.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
}

/// Route paths as the source registers them (`resource("...")`, `.route("...")`), so a new
/// route is caught here without anyone remembering to list it.
fn registered_paths() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("health.rs")];
    for dir in ["proxy", "admin"] {
        for entry in std::fs::read_dir(src.join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    let mut paths = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for marker in ["resource(\"", "route(\""] {
            for piece in text.split(marker).skip(1) {
                let Some(path) = piece.split('"').next() else {
                    continue;
                };
                if ["/v1", "/admin", "/health", "/metrics"]
                    .iter()
                    .any(|p| path.starts_with(p))
                {
                    paths.insert(path.to_string());
                }
            }
        }
    }
    paths
}

/// `{id:.+}` -> `{id}`: actix's pattern as OpenAPI writes it.
fn openapi_path(actix: &str) -> String {
    let mut out = String::new();
    let (mut in_param, mut in_regex) = (false, false);
    for c in actix.chars() {
        match c {
            '{' => in_param = true,
            '}' => (in_param, in_regex) = (false, false),
            ':' if in_param => in_regex = true,
            _ => {}
        }
        if !in_regex {
            out.push(c);
        }
    }
    out
}

/// A concrete URL for a documented path: parameters get a harmless value.
fn sample(path: &str) -> String {
    path.replace("{id}", "no-such-id")
        .replace("{request_id}", "no-such-request")
}

#[tokio::test]
async fn every_registered_route_and_method_is_documented() {
    let mut documented: BTreeSet<(String, String)> = BTreeSet::new();
    for (_, doc) in switchboard::openapi::documents() {
        let doc = serde_json::to_value(&doc).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let documented_paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();
    let registered: BTreeSet<String> = registered_paths().iter().map(|p| openapi_path(p)).collect();
    assert!(
        registered.len() >= 20,
        "found too few routes: {registered:?}"
    );
    assert_eq!(
        registered, documented_paths,
        "routes the server registers vs paths the documents describe"
    );

    // Which methods each path answers, asked of the running server: an unrouted method is a
    // 405 (`method_not_allowed`) or the catch-all 404; anything else means a handler ran.
    let app = spawn_mock().await;
    let mut routed = BTreeSet::new();
    for path in &registered {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let res = app
                .client
                .request(method.parse().unwrap(), app.url(&sample(path)))
                .bearer_auth(ADMIN_KEY)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let message = body["error"]["message"].as_str().unwrap_or_default();
            let unrouted =
                status == 405 || (status == 404 && message.starts_with("no such endpoint"));
            if !unrouted {
                routed.insert((method.to_string(), path.clone()));
            }
        }
    }
    assert_eq!(
        routed, documented,
        "methods the server answers vs methods documented"
    );
}
