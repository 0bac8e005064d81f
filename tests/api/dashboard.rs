//! `/dashboard`: the page and its assets are served from the binary with the right types.

use crate::helpers::spawn_mock;

#[tokio::test]
async fn dashboard_serves_html_with_a_csp_and_no_key() {
    let app = spawn_mock().await;
    for path in ["/dashboard", "/dashboard/"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let headers = res.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = res.text().await.unwrap();
        assert!(
            body.contains("<title>Switchboard dashboard</title>"),
            "{body}"
        );
        assert!(body.contains("/dashboard/assets/app.js"), "{body}");
        // No inline script or style: the CSP would block them.
        assert!(
            !body.contains("<script>") && !body.contains("style="),
            "{body}"
        );
    }
}

#[tokio::test]
async fn assets_have_their_content_types() {
    let app = spawn_mock().await;
    for (name, ty) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("ui.js", "text/javascript; charset=utf-8"),
        ("charts.js", "text/javascript; charset=utf-8"),
        ("pages.js", "text/javascript; charset=utf-8"),
        ("limits.js", "text/javascript; charset=utf-8"),
        ("teams.js", "text/javascript; charset=utf-8"),
        ("editor.js", "text/javascript; charset=utf-8"),
        ("highlight.js", "text/javascript; charset=utf-8"),
        ("csv.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let res = app
            .client
            .get(app.url(&format!("/dashboard/assets/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{name}");
        assert_eq!(res.headers()["content-type"], ty, "{name}");
        assert!(res.headers().contains_key("content-security-policy"));
        assert!(!res.text().await.unwrap().is_empty(), "{name}");
    }
    let head = app
        .client
        .head(app.url("/dashboard/assets/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
}

#[tokio::test]
async fn unknown_assets_are_404() {
    let app = spawn_mock().await;
    for path in [
        "/dashboard/assets/nope.js",
        "/dashboard/assets/..%2Fmod.rs",
        "/dashboard/assets/",
        "/dashboard/nope",
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn the_dashboard_uses_only_the_admin_api() {
    // Every path the scripts fetch is a public API path.
    let app = spawn_mock().await;
    let mut paths = vec![];
    for name in ["app.js", "pages.js", "teams.js", "api.js", "editor.js"] {
        let js = app
            .client
            .get(app.url(&format!("/dashboard/assets/{name}")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for part in js
            .split(['\'', '`'])
            .filter(|p| p.starts_with('/') && p.len() > 1 && !p.contains(char::is_whitespace))
        {
            if part.starts_with("/admin") || part.starts_with("/v1") {
                paths.push(part.to_string());
            } else {
                assert!(part.starts_with("/dashboard"), "{name} fetches {part}");
            }
        }
    }
    assert!(
        paths.iter().any(|p| p.starts_with("/admin/usage")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p == "/v1/chat/completions"),
        "{paths:?}"
    );
    assert!(paths.iter().any(|p| p == "/admin/teams"), "{paths:?}");
    assert!(
        paths.iter().any(|p| p == "/admin/policies/validate"),
        "{paths:?}"
    );
}
