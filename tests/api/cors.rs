//! CORS: real preflights and actual requests, from allowed and refused origins, and CORS off.

use crate::helpers::{spawn, Spawn, ADMIN_KEY};
use serde_json::json;
use switchboard::http::cors::{CorsError, CorsSettings};
use switchboard::{Application, Settings, StartError};

const APP: &str = "https://app.example.com";
const OTHER: &str = "https://evil.example.net";

fn mock() -> Spawn {
    Spawn::default().provider("mock", "kind: mock\nmodels: [echo]\n")
}

async fn with_cors(settings: CorsSettings) -> crate::helpers::TestApp {
    spawn(Spawn {
        cors: Some(settings),
        ..mock()
    })
    .await
}

async fn preflight(app: &crate::helpers::TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url("/v1/chat/completions"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, x-stainless-os",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_without_a_key() {
    let app = with_cors(CorsSettings::for_origins([APP])).await;
    let res = preflight(&app, APP).await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
    let methods = header(&res, "access-control-allow-methods").unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let headers = header(&res, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in ["authorization", "content-type", "x-stainless-os"] {
        assert!(headers.contains(h), "{headers}");
    }
    assert_eq!(header(&res, "access-control-max-age"), Some("600"));
    assert_eq!(header(&res, "access-control-allow-credentials"), None);

    // Answered in front of everything: even the request-id layer, the first one a request
    // meets, never saw it.
    assert_eq!(header(&res, "x-request-id"), None);
}

#[tokio::test]
async fn a_preflight_from_a_refused_origin_gets_no_cors_headers() {
    let app = with_cors(CorsSettings::for_origins([APP])).await;
    let res = preflight(&app, OTHER).await;
    assert!(!res.status().is_success(), "{}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    assert_eq!(header(&res, "access-control-allow-methods"), None);
}

#[tokio::test]
async fn an_actual_request_from_an_allowed_origin_can_read_the_gateway_headers() {
    let app = with_cors(CorsSettings::for_origins([APP, "http://localhost:5173"])).await;
    let res = app
        .post("/v1/chat/completions", ADMIN_KEY)
        .header("origin", APP)
        .json(&json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
    let exposed = header(&res, "access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "x-request-id",
        "x-switchboard-provider",
        "x-switchboard-model",
        "x-ratelimit-remaining-requests",
        "retry-after",
    ] {
        assert!(exposed.contains(h), "{h} not in {exposed}");
    }
    // The headers it exposes are really there.
    assert_eq!(header(&res, "x-switchboard-provider"), Some("mock"));
    assert!(header(&res, "x-request-id").is_some());

    // An error answer is readable by the page too.
    let res = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("origin", "http://localhost:5173")
        .json(&json!({"model": "echo", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        Some("http://localhost:5173")
    );
}

#[tokio::test]
async fn an_actual_request_from_a_refused_origin_gets_no_cors_headers() {
    let app = with_cors(CorsSettings::for_origins([APP])).await;
    let res = app
        .get("/v1/models", ADMIN_KEY)
        .header("origin", OTHER)
        .send()
        .await
        .unwrap();
    // Served as without CORS (clients that are not browsers keep working); the browser keeps
    // the answer from the page.
    assert_eq!(res.status(), 200);
    // Without `access-control-allow-origin` the page can read nothing (actix-cors still lists
    // the exposed headers, which grant nothing on their own).
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    assert_eq!(header(&res, "access-control-allow-credentials"), None);
}

#[tokio::test]
async fn any_origin_gets_a_wildcard_and_credentials_name_the_origin() {
    let app = with_cors(CorsSettings::for_origins(["*"])).await;
    let res = app
        .get("/v1/models", ADMIN_KEY)
        .header("origin", OTHER)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));

    let mut settings = CorsSettings::for_origins([APP]);
    settings.credentials = true;
    settings.max_age_secs = 60;
    let app = with_cors(settings).await;
    let res = preflight(&app, APP).await;
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
    assert_eq!(
        header(&res, "access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(header(&res, "access-control-max-age"), Some("60"));
}

#[tokio::test]
async fn cors_off_sends_no_cors_headers() {
    let app = spawn(mock()).await;
    let res = app
        .get("/v1/models", ADMIN_KEY)
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    assert_eq!(header(&res, "access-control-expose-headers"), None);
    let res = preflight(&app, APP).await;
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    assert_eq!(header(&res, "access-control-allow-methods"), None);
}

#[tokio::test]
async fn a_wildcard_with_credentials_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::with_base(dir.path());
    settings.listen = "127.0.0.1:0".parse().unwrap();
    let mut cors = CorsSettings::for_origins(["*"]);
    cors.credentials = true;
    settings.cors = Some(cors);
    match Application::build(settings).await {
        Err(StartError::Cors(CorsError::WildcardWithCredentials)) => {}
        Err(other) => panic!("another error: {other}"),
        Ok(_) => panic!("the gateway started with `*` and credentials"),
    }
    // Refused before anything was written.
    assert!(!dir.path().join("data").exists());
}
