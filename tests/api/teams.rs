//! `/admin/teams`: the team lifecycle, keys joining only teams that exist, a team with live
//! keys kept from deletion, and usage and logs by team.

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    req.bearer_auth(ADMIN_KEY).send().await.unwrap()
}

async fn ok_json(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    res.json().await.unwrap()
}

async fn create_team(app: &TestApp, body: Value) -> Value {
    ok_json(
        send(app.client.post(app.url("/admin/teams")).json(&body)).await,
        201,
    )
    .await
}

async fn patch(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    send(app.client.patch(app.url(path)).json(&body)).await
}

async fn delete(app: &TestApp, path: &str) -> reqwest::Response {
    send(app.client.delete(app.url(path))).await
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    send(app.client.get(app.url(path))).await
}

#[tokio::test]
async fn teams_are_created_listed_updated_and_deleted() {
    let app = spawn_mock().await;
    let team = create_team(
        &app,
        json!({"name": " research ", "limits": {"rpm": 60, "budget_usd_month": 25.5}, "metadata": {"owner": "ana"}}),
    )
    .await;
    let id = team["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("team_"), "{team}");
    assert_eq!(team["name"], "research", "trimmed");
    assert_eq!(team["limits"], json!({"rpm": 60, "budget_usd_month": 25.5}));
    assert_eq!(team["metadata"]["owner"], "ana");
    assert!(team["created_at"].as_u64().unwrap() > 0);

    let other = create_team(&app, json!({"name": "ops"})).await;
    assert_eq!(other["limits"], json!({}));
    let list = ok_json(get(&app, "/admin/teams").await, 200).await;
    assert_eq!(list["object"], "list");
    let mut names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // Oldest first, by the second: both were made within one, so their order is the ids'.
    names.sort();
    assert_eq!(names, vec!["ops", "research"]);
    let one = ok_json(get(&app, &format!("/admin/teams/{id}")).await, 200).await;
    assert_eq!(one["name"], "research");
    assert_eq!(one["keys"], json!([]));

    // Limits are replaced whole; other fields stay.
    let path = format!("/admin/teams/{id}");
    let updated = ok_json(
        patch(&app, &path, json!({"limits": {"tpd": 1000000}})).await,
        200,
    )
    .await;
    assert_eq!(updated["limits"], json!({"tpd": 1000000}));
    assert_eq!(updated["metadata"]["owner"], "ana");
    let renamed = ok_json(patch(&app, &path, json!({"name": "r&d"})).await, 200).await;
    assert_eq!(renamed["limits"], json!({"tpd": 1000000}));

    // Refused: bad limits, names and fields, and what does not exist.
    let body = assert_error(
        patch(&app, &path, json!({"limits": {"budget_usd_day": -1}})).await,
        400,
    )
    .await;
    assert_eq!(body["error"]["param"], "limits");
    let body = assert_error(
        send(
            app.client
                .post(app.url("/admin/teams"))
                .json(&json!({"name": "  "})),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(body["error"]["param"], "name");
    let body = assert_error(
        send(
            app.client
                .post(app.url("/admin/teams"))
                .json(&json!({"name": "x", "limits": {"rpx": 1}})),
        )
        .await,
        400,
    )
    .await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("rpx"),
        "{body}"
    );
    assert_error(
        patch(&app, "/admin/teams/team_missing", json!({"name": "x"})).await,
        404,
    )
    .await;
    assert_error(get(&app, "/admin/teams/team_missing").await, 404).await;
    assert_error(delete(&app, "/admin/teams/team_missing").await, 404).await;

    // A user key may not see or change teams.
    let (_, user) = app.create_key(json!({"name": "user"})).await;
    let res = app.get("/admin/teams", &user).send().await.unwrap();
    assert_error(res, 403).await;

    let deleted = ok_json(delete(&app, &path).await, 200).await;
    assert_eq!(deleted["id"], id.as_str());
    assert_error(get(&app, &path).await, 404).await;
    let list = ok_json(get(&app, "/admin/teams").await, 200).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn keys_join_only_teams_that_exist_and_a_team_with_keys_is_not_deleted() {
    let app = spawn_mock().await;
    let team = create_team(&app, json!({"name": "search"})).await;
    let team_id = team["id"].as_str().unwrap().to_string();

    let res = send(
        app.client
            .post(app.url("/admin/keys"))
            .json(&json!({"name": "k", "team": "team_nope"})),
    )
    .await;
    let body = assert_error(res, 400).await;
    assert_eq!(body["error"]["param"], "team");
    assert_eq!(body["error"]["code"], "unknown_team");
    let keys = ok_json(get(&app, "/admin/keys").await, 200).await;
    assert!(
        keys["data"].as_array().unwrap().is_empty(),
        "nothing was created"
    );

    let (key_id, secret) = app
        .create_key(json!({"name": "member", "team": &team_id, "limits": {"rpm": 5}}))
        .await;
    let key = ok_json(get(&app, &format!("/admin/keys/{key_id}")).await, 200).await;
    assert_eq!(key["team"], team_id.as_str());
    let (other_id, _) = app.create_key(json!({"name": "loner"})).await;
    let res = patch(
        &app,
        &format!("/admin/keys/{other_id}"),
        json!({"team": "team_nope"}),
    )
    .await;
    let body = assert_error(res, 400).await;
    assert_eq!(body["error"]["code"], "unknown_team");
    let view = ok_json(get(&app, &format!("/admin/teams/{team_id}")).await, 200).await;
    assert_eq!(view["keys"], json!([&key_id]));

    // Deleting the team would lift its limits from its key: refused, naming the key.
    let team_path = format!("/admin/teams/{team_id}");
    let body = assert_error(delete(&app, &team_path).await, 409).await;
    assert_eq!(body["error"]["code"], "team_has_keys");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&key_id),
        "{body}"
    );
    ok_json(get(&app, &team_path).await, 200).await;
    let hello = json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(app.chat(&secret, hello.clone()).await.status(), 200);

    // Out of the team, the key keeps working and the team can go.
    let key_path = format!("/admin/keys/{key_id}");
    let left = ok_json(patch(&app, &key_path, json!({"team": null})).await, 200).await;
    assert!(left.get("team").is_none(), "{left}");
    assert_eq!(left["limits"], json!({"rpm": 5}));
    ok_json(delete(&app, &team_path).await, 200).await;
    assert_eq!(app.chat(&secret, hello).await.status(), 200);
    let res = patch(&app, &key_path, json!({"team": &team_id})).await;
    assert_error(res, 400).await;
}

#[tokio::test]
async fn a_revoked_key_does_not_hold_its_team() {
    let app = spawn_mock().await;
    let team = create_team(&app, json!({"name": "gone"})).await;
    let team_id = team["id"].as_str().unwrap();
    let (key_id, _) = app.create_key(json!({"name": "k", "team": team_id})).await;
    ok_json(delete(&app, &format!("/admin/keys/{key_id}")).await, 200).await;
    let view = ok_json(get(&app, &format!("/admin/teams/{team_id}")).await, 200).await;
    assert_eq!(view["keys"], json!([]));
    ok_json(delete(&app, &format!("/admin/teams/{team_id}")).await, 200).await;
    // The revoked key keeps the id on record.
    let key = ok_json(get(&app, &format!("/admin/keys/{key_id}")).await, 200).await;
    assert_eq!(key["team"], team_id);
}

/// Waits until the log holds `n` entries (the writer batches in the background).
async fn logged(app: &TestApp, n: usize) {
    let started = Instant::now();
    loop {
        let page = ok_json(get(app, "/admin/logs?limit=500").await, 200).await;
        if page["data"].as_array().unwrap().len() >= n {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn usage_and_logs_are_grouped_and_filtered_by_team() {
    let app = spawn_mock().await;
    let team = create_team(&app, json!({"name": "search"})).await;
    let team_id = team["id"].as_str().unwrap();
    let (member_id, member) = app
        .create_key(json!({"name": "member", "team": team_id}))
        .await;
    let (_, loner) = app.create_key(json!({"name": "loner"})).await;
    let hello = json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]});
    for key in [&member, &member, &loner] {
        assert_eq!(app.chat(key, hello.clone()).await.status(), 200);
    }
    logged(&app, 3).await;

    let page = ok_json(get(&app, &format!("/admin/logs?team={team_id}")).await, 200).await;
    let entries = page["data"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries {
        assert_eq!(e["key_id"], member_id.as_str());
        assert_eq!(e["team"], team_id);
    }
    let page = ok_json(get(&app, "/admin/logs?team=team_other").await, 200).await;
    assert!(page["data"].as_array().unwrap().is_empty());

    let usage = ok_json(
        get(&app, "/admin/usage?group_by=team&bucket=day").await,
        200,
    )
    .await;
    let mut rows: Vec<(Value, u64)> = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["group"].clone(), r["requests"].as_u64().unwrap()))
        .collect();
    rows.sort_by_key(|(g, _)| g.to_string());
    assert_eq!(rows, vec![(json!(team_id), 2), (Value::Null, 1)]);
}

#[tokio::test]
async fn teams_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let opts = || Spawn::default().data(data.path());
    let app = spawn(opts()).await;
    let team = create_team(&app, json!({"name": "kept", "limits": {"rpd": 10}})).await;
    app.stop().await;
    wait_until_store_free(data.path()).await;

    let app = spawn(opts()).await;
    let path = format!("/admin/teams/{}", team["id"].as_str().unwrap());
    let again = ok_json(get(&app, &path).await, 200).await;
    assert_eq!(again["limits"], json!({"rpd": 10}));
    assert_eq!(again["name"], "kept");
}
