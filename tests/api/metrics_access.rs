//! Who may read `/metrics`: an admin key, the metrics token (and only for `/metrics`), or
//! anyone on the separate metrics address.

use crate::helpers::{spawn, Spawn, ADMIN_KEY};

const TOKEN: &str = "prom-scrape-token-1234";

fn mock() -> Spawn {
    Spawn::default().provider("mock", "kind: mock\nmodels: [echo]\n")
}

#[tokio::test]
async fn the_metrics_token_reads_metrics_and_nothing_else() {
    let app = spawn(Spawn {
        metrics_token: Some(TOKEN.into()),
        ..mock()
    })
    .await;
    let res = app.get("/metrics", TOKEN).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("switchboard_breaker_state"));

    // The admin key still works.
    let res = app.get("/metrics", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // A wrong token, or none, does not.
    let res = app
        .get("/metrics", "prom-scrape-token-1235")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 401);

    // The token is not a key: the admin API and the proxy refuse it.
    for path in ["/admin/keys", "/admin/providers", "/v1/models"] {
        let res = app.get(path, TOKEN).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
    }
}

#[tokio::test]
async fn without_a_metrics_token_a_user_key_cannot_read_metrics() {
    let app = spawn(mock()).await;
    let (_, user) = app.create_key(serde_json::json!({"name": "u"})).await;
    let res = app.get("/metrics", &user).send().await.unwrap();
    assert_eq!(res.status(), 403);
    // An empty bearer never matches an unset token.
    let res = app
        .client
        .get(app.url("/metrics"))
        .header("authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn the_metrics_listener_serves_metrics_without_a_key_and_nothing_else() {
    let app = spawn(Spawn {
        metrics_listen: true,
        ..mock()
    })
    .await;
    let metrics = app.metrics_base.clone().expect("a metrics address");
    assert_ne!(metrics, app.base);

    let res = app
        .client
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("switchboard_breaker_state"));

    // Only /metrics is there.
    for path in ["/admin/keys", "/v1/models", "/health/live"] {
        let res = app
            .client
            .get(format!("{metrics}{path}"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }

    // The main address still wants the admin key.
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = app.get("/metrics", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn the_metrics_listener_stops_with_the_gateway() {
    let app = spawn(Spawn {
        metrics_listen: true,
        ..mock()
    })
    .await;
    let metrics = app.metrics_base.clone().unwrap();
    let client = reqwest::Client::new();
    app.stop().await;
    let mut refused = false;
    for _ in 0..100 {
        if client
            .get(format!("{metrics}/metrics"))
            .send()
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused, "the metrics address still answers after the stop");
}
