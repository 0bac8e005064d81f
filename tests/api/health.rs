//! Health endpoints need no key.

use crate::helpers::*;
use serde_json::Value;

#[tokio::test]
async fn health_live_and_ready() {
    let app = spawn_mock().await;
    for path in ["/health", "/health/live", "/health/ready"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    let health: Value = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["providers"], 1);
    assert_eq!(health["models"], 2);
    let ready: Value = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["config_version"], 1);
}
