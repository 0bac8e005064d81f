//! What every backend must do: one suite over every trait, run below against each backend (a
//! new backend adds its own `#[tokio::test]` that opens it and calls [`keeps_the_contract`],
//! and tests that move state between it and another backend with [`round_trips`]).

use super::cache::CachedReply;
use super::counters::{Actual, AdmitError, CounterAdd, Limit, LimitKind, Use, MONTH};
use super::keys::{KeyUpdate, NewKey, Role, SECRET_PREFIX};
use super::limits::Limits;
use super::logs::{LogEntry, LogFilter};
use super::portable::{ImportCounts, Record};
use super::responses::StoredResponse;
use super::teams::{Deletion, NewTeam, TeamUpdate};
use super::usage::{Bucket, GroupBy, UNKNOWN_MODEL};
use super::{Store, StoreError, StoreKind, StoreOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The cache bound the suite's stores are opened with.
const CACHE_ENTRIES: usize = 2;

pub async fn keeps_the_contract(store: &Store) {
    keys(store).await;
    teams(store).await;
    counters(store).await;
    assignments(store).await;
    cache(store).await;
    ledger_logs_and_usage(store).await;
    responses(store).await;
    store.flush().await.unwrap();
}

async fn keys(store: &Store) {
    let keys = &store.keys;
    assert!(!keys.has_admin().await.unwrap());
    let new = NewKey {
        name: "first".into(),
        ..NewKey::default()
    };
    let (record, secret) = keys.create(new).await.unwrap();
    assert!(secret.starts_with(SECRET_PREFIX));
    assert!(
        !record.masked.contains(&secret[10..30]),
        "no secret in the record"
    );
    assert_eq!(keys.authenticate(&secret).unwrap().id, record.id);
    assert!(keys.authenticate("sk-sb-wrong").is_none());
    assert!(!keys.has_admin().await.unwrap());

    let admin = NewKey {
        name: "admin".into(),
        role: Role::Admin,
        ..NewKey::default()
    };
    let (admin, _) = keys.create(admin).await.unwrap();
    assert!(keys.has_admin().await.unwrap());
    let listed: Vec<String> = keys
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&record.id) && listed.contains(&admin.id));

    let update = KeyUpdate {
        name: Some("renamed".into()),
        models: Some(vec!["mock/echo".into()]),
        ..KeyUpdate::default()
    };
    let updated = keys.update(&record.id, update).await.unwrap().unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(
        keys.authenticate(&secret).unwrap().models,
        vec!["mock/echo"]
    );
    assert_eq!(
        keys.find(&record.id).await.unwrap().unwrap().name,
        "renamed"
    );

    let (rotated, new_secret) = keys.rotate(&record.id).await.unwrap().unwrap();
    assert_eq!(rotated.id, record.id);
    assert!(
        keys.authenticate(&secret).is_none(),
        "the old secret stops at once"
    );
    assert_eq!(keys.authenticate(&new_secret).unwrap().id, record.id);

    let revoked = keys.revoke(&record.id).await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(keys.authenticate(&new_secret).is_none());
    assert!(keys.revoke("key_missing").await.unwrap().is_none());
    assert!(
        keys.rotate(&record.id).await.unwrap().is_none(),
        "revoked stays revoked"
    );
    assert!(keys
        .update(&record.id, KeyUpdate::default())
        .await
        .unwrap()
        .is_none());
    assert!(keys.find("key_missing").await.unwrap().is_none());
}

async fn teams(store: &Store) {
    let (teams, keys) = (&store.teams, &store.keys);
    assert!(teams.list().await.unwrap().is_empty());
    let limits = Limits {
        rpm: Some(60),
        budget_usd_month: Some(10.0),
        ..Limits::default()
    };
    let new = NewTeam {
        name: "research".into(),
        limits,
        ..NewTeam::default()
    };
    let team = teams.create(new).await.unwrap();
    assert!(team.id.starts_with("team_"));
    assert_eq!(teams.get_cached(&team.id).unwrap().limits, limits);
    assert_eq!(teams.find(&team.id).await.unwrap().as_ref(), Some(&team));
    let ops = NewTeam {
        name: "ops".into(),
        ..NewTeam::default()
    };
    let other = teams.create(ops).await.unwrap();
    let listed: Vec<String> = teams
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&team.id) && listed.contains(&other.id));

    // Limits are replaced whole; the cache follows at once.
    let update = TeamUpdate {
        limits: Some(Limits {
            tpd: Some(1000),
            ..Limits::default()
        }),
        ..TeamUpdate::default()
    };
    let updated = teams.update(&team.id, update).await.unwrap().unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.limits.rpm),
        ("research", None)
    );
    assert_eq!(teams.get_cached(&team.id).unwrap().limits.tpd, Some(1000));
    let missing = teams.update("team_missing", TeamUpdate::default());
    assert!(missing.await.unwrap().is_none());
    assert!(teams.get_cached("team_missing").is_none());

    // A team with live keys is not deleted; a revoked key does not hold it back.
    let member = NewKey {
        name: "member".into(),
        team: Some(team.id.clone()),
        ..NewKey::default()
    };
    let (member, _) = keys.create(member).await.unwrap();
    assert_eq!(
        teams.delete(&team.id).await.unwrap(),
        Deletion::HasKeys(vec![member.id.clone()])
    );
    assert!(teams.get_cached(&team.id).is_some());
    keys.revoke(&member.id).await.unwrap();
    assert_eq!(
        teams.delete(&team.id).await.unwrap(),
        Deletion::Deleted(updated)
    );
    assert!(teams.get_cached(&team.id).is_none());
    assert!(teams.find(&team.id).await.unwrap().is_none());
    assert_eq!(teams.delete(&team.id).await.unwrap(), Deletion::NotFound);

    // A key that leaves its team lets it go.
    let joined = NewKey {
        name: "joined".into(),
        team: Some(other.id.clone()),
        ..NewKey::default()
    };
    let (joined, _) = keys.create(joined).await.unwrap();
    assert!(matches!(
        teams.delete(&other.id).await.unwrap(),
        Deletion::HasKeys(_)
    ));
    let leave = KeyUpdate {
        team: Some(None),
        ..KeyUpdate::default()
    };
    keys.update(&joined.id, leave).await.unwrap().unwrap();
    assert!(matches!(
        teams.delete(&other.id).await.unwrap(),
        Deletion::Deleted(_)
    ));
    assert!(teams.list().await.unwrap().is_empty());
}

fn limit(name: &str, max: u64, window_secs: u64, kind: LimitKind) -> Limit {
    Limit::new(name, max, window_secs, kind)
}

async fn counters(store: &Store) {
    let counters = &store.counters;
    let rpm = limit("rpm:k", 100, 3600, LimitKind::Requests);
    // Exactly `max` admitted, however concurrent.
    let admitted = std::sync::Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (counters, admitted, rpm) = (counters.clone(), admitted.clone(), rpm.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                if counters.reserve(&[(rpm.clone(), 1)]).await.is_ok() {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 100);
    let Err(AdmitError::Over(refused)) = counters.reserve(&[(rpm.clone(), 1)]).await else {
        panic!("the 101st is refused for its limit");
    };
    assert!(refused.retry_after_secs >= 1 && refused.retry_after_secs <= 3600);
    assert_eq!((refused.limit.name.as_str(), refused.used), ("rpm:k", 100));
    // All or nothing: a refusal charges no limit.
    let roomy = limit("roomy", 10, 60, LimitKind::Requests);
    assert!(counters
        .reserve(&[(roomy.clone(), 1), (rpm, 1)])
        .await
        .is_err());
    assert_eq!(counters.get("roomy", 60).await.unwrap(), 0);

    // Budgets: a reservation holds its estimate until settled with the real use.
    let budget = limit("tokens", 500, 3600, LimitKind::Tokens);
    let first = counters.reserve(&[(budget.clone(), 300)]).await.unwrap();
    assert_eq!(first.standing[0].remaining, 200);
    assert!(
        counters.reserve(&[(budget.clone(), 300)]).await.is_err(),
        "300 reserved + 300 > 500"
    );
    let actual = Actual {
        tokens: 100,
        micro_usd: 0,
    };
    counters.settle(&first, actual).await.unwrap();
    assert_eq!(
        counters.usage(std::slice::from_ref(&budget)).await.unwrap()[0],
        Use {
            used: 100,
            reserved: 0
        }
    );
    // Released: everything given back, request slots too.
    let held = [(roomy.clone(), 1), (budget.clone(), 50)];
    let second = counters.reserve(&held).await.unwrap();
    counters.release(&second).await.unwrap();
    assert_eq!(counters.get("roomy", 60).await.unwrap(), 0);
    assert_eq!(
        counters.usage(std::slice::from_ref(&budget)).await.unwrap()[0],
        Use {
            used: 100,
            reserved: 0
        }
    );
    // In flight: a slot taken at admission, given back at settlement.
    let parallel = limit("par", 1, 0, LimitKind::Parallel);
    let running = counters.reserve(&[(parallel.clone(), 1)]).await.unwrap();
    assert!(counters.reserve(&[(parallel.clone(), 1)]).await.is_err());
    counters.settle(&running, Actual::default()).await.unwrap();
    assert!(counters.reserve(&[(parallel, 1)]).await.is_ok());

    // Plain additions; a window of 0 never resets; windows of different lengths are
    // different counters.
    let add = |name: &str, window_secs, amount| CounterAdd {
        name: name.into(),
        window_secs,
        amount,
    };
    counters
        .add(&[add("ever", 0, 1), add("ever", 0, 2)])
        .await
        .unwrap();
    assert_eq!(counters.get("ever", 0).await.unwrap(), 3);
    assert_eq!(counters.peek("ever", 0), 3);
    assert_eq!(counters.get("ever", 60).await.unwrap(), 0);
}

async fn assignments(store: &Store) {
    let a = &store.assignments;
    assert_eq!(a.get("split", "k1"), None);
    a.set("split", "k1", "a").await.unwrap();
    a.set("split", "k2", "b").await.unwrap();
    a.set("other", "k1", "c").await.unwrap();
    assert_eq!(a.get("split", "k1").as_deref(), Some("a"));
    assert_eq!(a.get("split", "k2").as_deref(), Some("b"));
    assert_eq!(a.get("other", "k1").as_deref(), Some("c"));
    a.set("split", "k1", "b").await.unwrap();
    assert_eq!(a.get("split", "k1").as_deref(), Some("b"));
}

fn reply(expires_at: u64) -> CachedReply {
    CachedReply {
        provider: "p".into(),
        model: "m".into(),
        expires_at,
        body: Some("{}".into()),
        chunks: vec![],
    }
}

fn namespaced(namespace: &str, i: u8) -> Vec<u8> {
    let mut key = namespace.as_bytes().to_vec();
    key.push(0x1f);
    key.extend_from_slice(&[i; 32]);
    key
}

async fn cache(store: &Store) {
    let cache = &store.cache;
    // Times from now: a shared backend's entries expire by the real clock (Redis TTLs).
    let t = crate::clock::now_secs();
    let before = cache.stats().await.unwrap();
    cache.put(&[1; 32], &reply(t + 100)).await.unwrap();
    assert!(cache.get(&[1; 32], t + 50).await.unwrap().is_some());
    assert!(
        cache.get(&[1; 32], t + 100).await.unwrap().is_none(),
        "expired entries are not served"
    );
    let stats = cache.stats().await.unwrap();
    assert_eq!(
        (stats.hits, stats.misses),
        (before.hits + 1, before.misses + 1)
    );
    cache.put(&[2; 32], &reply(t + 200)).await.unwrap();
    cache.put(&[3; 32], &reply(t + 300)).await.unwrap();
    assert_eq!(
        cache.stats().await.unwrap().entries,
        CACHE_ENTRIES,
        "bounded: the earliest-expiring entry went"
    );
    assert!(cache.get(&[1; 32], t).await.unwrap().is_none());
    // Writing a key again replaces it, and its old expiry with it.
    cache.put(&[2; 32], &reply(t + 210)).await.unwrap();
    assert_eq!(
        cache.get(&[2; 32], t).await.unwrap().unwrap().expires_at,
        t + 210
    );
    assert_eq!(cache.sweep(t + 250).await.unwrap(), 1);
    assert_eq!(cache.stats().await.unwrap().entries, 1);
    assert!(cache.get(&[3; 32], t + 250).await.unwrap().is_some());
    assert_eq!(cache.purge(None).await.unwrap(), 1);
    assert_eq!(cache.stats().await.unwrap().entries, 0);

    // By namespace: a model, or a provider's every model (and not a longer provider name).
    cache
        .put(&namespaced("a/m1", 1), &reply(t + 100))
        .await
        .unwrap();
    cache
        .put(&namespaced("ab/m1", 2), &reply(t + 100))
        .await
        .unwrap();
    assert_eq!(cache.purge(Some("a/m1")).await.unwrap(), 1);
    cache
        .put(&namespaced("a/m2", 3), &reply(t + 100))
        .await
        .unwrap();
    assert_eq!(cache.purge(Some("a")).await.unwrap(), 1, "a/m2, not ab/m1");
    assert_eq!(cache.stats().await.unwrap().entries, 1);
    assert_eq!(cache.purge(None).await.unwrap(), 1);
}

fn entry(i: u64, at_s: u64, key: &str, status: u16) -> LogEntry {
    LogEntry {
        request_id: format!("req{i}"),
        client_request_id: (i == 7).then(|| "client-7".into()),
        trace_id: (i == 7).then(|| "4bf92f3577b34da6a3ce929d0e0e4736".into()),
        at_ms: at_s * 1000 + i,
        key_id: key.into(),
        team: (key == "a").then(|| "team_a".into()),
        requested_model: "echo".into(),
        provider: Some("mock".into()),
        model: Some("echo".into()),
        status,
        prompt_tokens: 2,
        completion_tokens: 3,
        total_tokens: 5,
        // Of the prompt's 2 tokens, 1 read from a provider's prompt cache, and every other
        // request writes 1 to it.
        cached_tokens: 1,
        cache_write_tokens: i % 2,
        cost_usd: 0.5,
        tags: BTreeMap::from([("team".to_string(), key.to_string())]),
        // 0, 100, … 900 ms; the odd ones are streams whose first token came after i × 10 ms.
        latency_ms: i * 100,
        stream: i % 2 == 1,
        ttft_ms: (i % 2 == 1).then_some(i * 10),
        ..LogEntry::default()
    }
}

async fn ledger_logs_and_usage(store: &Store) {
    let (ledger, logs, usage) = (&store.ledger, &store.logs, &store.usage);
    // Ten requests in the hour starting at 7200 s, in three batches.
    let entries: Vec<LogEntry> = (0..10)
        .map(|i| {
            entry(
                i,
                7200,
                if i < 5 { "a" } else { "b" },
                if i % 3 == 0 { 500 } else { 200 },
            )
        })
        .collect();
    let first = ledger.batch(entries[..3].to_vec());
    assert!(ledger.write(&first).await.unwrap());
    assert!(
        !ledger.write(&first).await.unwrap(),
        "a batch is written once"
    );
    for part in [&entries[3..4], &entries[4..]] {
        assert!(ledger.write(&ledger.batch(part.to_vec())).await.unwrap());
    }
    assert!(!ledger.write(&ledger.batch(vec![])).await.unwrap());

    // Usage: each request once.
    let a = usage.key_usage("a").await.unwrap();
    assert_eq!(
        (a.totals.requests, a.totals.errors, a.totals.total_tokens),
        (5, 2, 25)
    );
    assert_eq!(a.last_used_ms, Some(7_200_004));
    // Prompt-cache tokens are summed as prompt tokens are: 1 read each; written by 1 and 3.
    assert_eq!(
        (
            a.totals.prompt_tokens,
            a.totals.cached_tokens,
            a.totals.cache_write_tokens
        ),
        (10, 5, 2)
    );
    assert_eq!(usage.key_usage("nobody").await.unwrap().totals.requests, 0);
    let by_team = usage
        .query(0, 86_400, Bucket::Day, &"tag:team".parse().unwrap())
        .await
        .unwrap();
    let teams: Vec<(Option<String>, u64)> = by_team
        .iter()
        .map(|r| (r.group.clone(), r.totals.requests))
        .collect();
    assert_eq!(teams, vec![(Some("a".into()), 5), (Some("b".into()), 5)]);
    let by_team = usage
        .query(0, 86_400, Bucket::Day, &GroupBy::Team)
        .await
        .unwrap();
    let teams: Vec<(Option<String>, u64)> = by_team
        .iter()
        .map(|r| (r.group.clone(), r.totals.requests))
        .collect();
    assert_eq!(teams, vec![(None, 5), (Some("team_a".into()), 5)]);
    latency_history(store).await;
    let hourly = usage
        .query(0, 86_400, Bucket::Hour, &GroupBy::None)
        .await
        .unwrap();
    assert_eq!(hourly.len(), 1);
    assert_eq!((hourly[0].start, hourly[0].totals.requests), (7200, 10));
    let t = hourly[0].totals;
    assert_eq!(
        (t.prompt_tokens, t.cached_tokens, t.cache_write_tokens),
        (20, 10, 5)
    );
    let by_key: Vec<(Option<String>, u64, u64)> = usage
        .query(0, 86_400, Bucket::Day, &GroupBy::Key)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.group, r.totals.cached_tokens, r.totals.cache_write_tokens))
        .collect();
    assert_eq!(
        by_key,
        vec![(Some("a".into()), 5, 2), (Some("b".into()), 5, 3)]
    );
    assert!(usage
        .query(10_800, 86_400, Bucket::Hour, &GroupBy::None)
        .await
        .unwrap()
        .is_empty());

    // Logs: newest first, paged, filtered.
    let all = LogFilter::default();
    let page = logs.query(&all, 4, None).await.unwrap();
    let ids: Vec<&str> = page.data.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(ids, vec!["req9", "req8", "req7", "req6"]);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = logs.query(&all, 4, cursor.as_deref()).await.unwrap();
        assert!(super::logs::valid_cursor(
            page.next_cursor.as_deref().unwrap_or("00.0")
        ));
        seen.extend(page.data.into_iter().map(|e| e.request_id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..10).rev().map(|i| format!("req{i}")).collect();
    assert_eq!(seen, expected, "pages: nothing twice, nothing lost");
    let errors_of_b = LogFilter {
        status: Some("5xx".into()),
        key_id: Some("b".into()),
        ..LogFilter::default()
    };
    let ids: Vec<String> = logs
        .query(&errors_of_b, 10, None)
        .await
        .unwrap()
        .data
        .into_iter()
        .map(|e| e.request_id)
        .collect();
    assert_eq!(ids, vec!["req9", "req6"]);
    let of_team_a = LogFilter {
        team: Some("team_a".into()),
        ..LogFilter::default()
    };
    let page = logs.query(&of_team_a, 10, None).await.unwrap();
    assert_eq!(page.data.len(), 5);
    assert!(page.data.iter().all(|e| e.key_id == "a"));
    let by_id = |id: &str| LogFilter {
        request_id: Some(id.into()),
        ..LogFilter::default()
    };
    let found = logs.query(&by_id("client-7"), 10, None).await.unwrap();
    assert_eq!(found.data.len(), 1);
    assert_eq!(found.data[0].request_id, "req7");
    // Every backend keeps the trace id (and an entry without one reads as none).
    assert_eq!(
        found.data[0].trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    let of_trace = LogFilter {
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        ..LogFilter::default()
    };
    let found = logs.query(&of_trace, 10, None).await.unwrap();
    assert_eq!(found.data.len(), 1);
    assert_eq!(found.data[0].request_id, "req7");
    let req3 = logs.get("req3").await.unwrap().unwrap();
    assert_eq!(req3.status, 500);
    assert_eq!((req3.cached_tokens, req3.cache_write_tokens), (1, 1));
    assert_eq!(req3.trace_id, None);
    assert!(logs.get("req3x").await.unwrap().is_none());

    // Unknown models: one usage row, whatever names they used.
    let unknown = |i: u64, name: &str| LogEntry {
        request_id: format!("unknown{i}"),
        at_ms: 7_200_000 + i,
        key_id: "a".into(),
        requested_model: name.into(),
        status: 404,
        unknown_model: true,
        ..LogEntry::default()
    };
    let batch = ledger.batch(vec![unknown(1, "made-up-1"), unknown(2, "made-up-2")]);
    ledger.write(&batch).await.unwrap();
    let by_model = usage
        .query(0, 86_400, Bucket::Day, &"model".parse().unwrap())
        .await
        .unwrap();
    let unknown_rows: Vec<_> = by_model
        .iter()
        .filter(|r| r.group.as_deref() == Some(UNKNOWN_MODEL))
        .collect();
    assert_eq!(unknown_rows.len(), 1);
    assert_eq!(unknown_rows[0].totals.requests, 2);

    // Pruning: the log by age and count, usage by hour; keys' totals stay.
    let now = crate::clock::now_ms();
    let removed = logs.prune(now, 86_400_000, 8).await.unwrap();
    assert!(
        removed >= 4,
        "down to at most 8 entries, oldest first: {removed}"
    );
    assert!(logs.get("req0").await.unwrap().is_none());
    assert!(logs.get("unknown2").await.unwrap().is_some());
    assert_eq!(
        logs.prune(now + 2 * 86_400_000, 86_400_000, 100)
            .await
            .unwrap(),
        12 - removed
    );
    assert!(logs.query(&all, 10, None).await.unwrap().data.is_empty());
    // The hour [7200, 10800) has not ended at 10799; it has at 10800, and goes.
    assert_eq!(usage.prune(10_799).await.unwrap(), 0);
    assert!(usage.prune(10_800).await.unwrap() >= 1);
    assert!(usage
        .query(0, 86_400, Bucket::Hour, &GroupBy::None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(usage.key_usage("a").await.unwrap().totals.requests, 7);
}

/// `bytes` of text LZ4 cannot shrink much, different for every `seed`, with a character
/// beyond ASCII in each line.
pub fn varied_text(bytes: usize, seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut text = String::with_capacity(bytes + 64);
    while text.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push_str(&format!("{x:016x} é\n"));
    }
    text
}

pub fn stored_response(id: &str, created_ms: u64, turns: usize) -> StoredResponse {
    StoredResponse {
        id: id.into(),
        key_id: "key_a".into(),
        created_ms,
        conversation: (0..turns)
            .map(|i| serde_json::json!({"role": "user", "content": format!("turn {i}")}))
            .collect(),
        response: serde_json::json!({"id": id, "object": "response", "status": "completed"}),
    }
}

/// The latency histograms of the ten requests `ledger_logs_and_usage` wrote in the hour at
/// 7200 s: 0..900 ms by 100, and five streams with their first token at 10, 30, 50, 70, 90 ms.
async fn latency_history(store: &Store) {
    use super::usage::Histogram;
    let rows = store
        .usage
        .query(0, 86_400, Bucket::Hour, &GroupBy::None)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    // Buckets ≤50, ≤100, ≤250, ≤500, ≤1000 ms, …
    assert_eq!(
        row.totals.latency_hist,
        Histogram([1, 1, 1, 3, 4, 0, 0, 0, 0, 0])
    );
    assert_eq!(
        row.totals.ttft_hist,
        Histogram([3, 2, 0, 0, 0, 0, 0, 0, 0, 0])
    );
    // Interpolated in the bucket holding the rank: p50 is rank 5 of 10, 2 of the 3 in
    // (250, 500]; p95 is rank 9.5, 3.5 of the 4 in (500, 1000].
    let close = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 1e-9);
    let p = row.percentiles;
    assert!(close(p.latency_p50_ms, 250.0 + 250.0 * 2.0 / 3.0), "{p:?}");
    assert!(close(p.latency_p95_ms, 937.5), "{p:?}");
    // Time to first token: rank 2.5 of 5 in [0, 50]; rank 4.75, 1.75 of the 2 in (50, 100].
    assert!(close(p.ttft_p50_ms, 50.0 * 2.5 / 3.0), "{p:?}");
    assert!(close(p.ttft_p95_ms, 93.75), "{p:?}");
    // Grouped, each group has its own: key a made requests 0..4 (0..400 ms).
    let by_key = store
        .usage
        .query(0, 86_400, Bucket::Day, &GroupBy::Key)
        .await
        .unwrap();
    assert_eq!(by_key[0].group.as_deref(), Some("a"));
    assert_eq!(
        by_key[0].totals.latency_hist,
        Histogram([1, 1, 1, 2, 0, 0, 0, 0, 0, 0])
    );
    // A key's all-time figures keep them too.
    let b = store.usage.key_usage("b").await.unwrap();
    assert_eq!(b.totals.latency_hist.count(), 5);
    assert_eq!(b.totals.ttft_hist.count(), 3);
}

async fn responses(store: &Store) {
    let responses = &store.responses;
    assert!(responses.get("resp_missing").await.unwrap().is_none());
    assert!(!responses.delete("resp_missing").await.unwrap());

    let first = stored_response("resp_1", 1_000, 1);
    responses.put(first.clone()).await.unwrap();
    assert_eq!(
        responses.get("resp_1").await.unwrap().as_ref(),
        Some(&first)
    );
    // Replaced whole, its time with it.
    let replaced = StoredResponse {
        response: serde_json::json!({"id": "resp_1", "status": "incomplete"}),
        ..stored_response("resp_1", 3_000, 3)
    };
    responses.put(replaced.clone()).await.unwrap();
    assert_eq!(
        responses.get("resp_1").await.unwrap().as_ref(),
        Some(&replaced)
    );

    // A long conversation (1 MB and more) comes back as it went in.
    let mut large = stored_response("resp_large", 2_000, 0);
    large.conversation = (0..16)
        .map(|i| serde_json::json!({"role": "user", "content": varied_text(64 * 1024, i)}))
        .collect();
    assert!(serde_json::to_vec(&large).unwrap().len() > 1 << 20);
    responses.put(large.clone()).await.unwrap();
    assert_eq!(
        responses.get("resp_large").await.unwrap().as_ref(),
        Some(&large)
    );

    // Pruned by created_ms: those made before the time go, and the count says how many.
    responses
        .put(stored_response("resp_2", 2_500, 1))
        .await
        .unwrap();
    assert_eq!(
        responses.prune(2_000).await.unwrap(),
        0,
        "2000 is not before 2000"
    );
    assert_eq!(responses.prune(2_001).await.unwrap(), 1);
    assert!(responses.get("resp_large").await.unwrap().is_none());
    assert_eq!(
        responses.get("resp_1").await.unwrap().as_ref(),
        Some(&replaced),
        "pruned by the time it was replaced with, not its first"
    );
    assert!(responses.get("resp_2").await.unwrap().is_some());

    assert!(responses.delete("resp_2").await.unwrap());
    assert!(responses.get("resp_2").await.unwrap().is_none());
    assert!(!responses.delete("resp_2").await.unwrap());
    assert_eq!(
        responses.prune(2_600).await.unwrap(),
        0,
        "a deleted one is not pruned again"
    );
    assert_eq!(responses.prune(u64::MAX).await.unwrap(), 1);
    assert!(responses.get("resp_1").await.unwrap().is_none());
}

/// Everything an export carries arrives whole in another store: `from` is filled, exported
/// and imported into `into` (fresh), which must then answer as `from` does.
pub async fn round_trips(from: &Store, into: &Store) {
    // Fill `from`: a team, keys (one in the team, one rotated, one revoked), assignments,
    // counters (one with a reservation in flight) and usage.
    let team = NewTeam {
        name: "research".into(),
        limits: Limits {
            rpm: Some(60),
            ..Limits::default()
        },
        metadata: BTreeMap::from([("owner".to_string(), serde_json::json!("ana"))]),
    };
    let team = from.teams.create(team).await.unwrap();
    let new_key = |name: &str, role| NewKey {
        name: name.into(),
        role,
        tags: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        limits: Limits {
            rpd: Some(100),
            budget_usd_month: Some(5.0),
            ..Limits::default()
        },
        team: Some(team.id.clone()),
        ..NewKey::default()
    };
    let (member, member_secret) = from
        .keys
        .create(new_key("member", Role::User))
        .await
        .unwrap();
    let (admin, _) = from
        .keys
        .create(new_key("admin", Role::Admin))
        .await
        .unwrap();
    let (_, admin_secret) = from.keys.rotate(&admin.id).await.unwrap().unwrap();
    let (revoked, revoked_secret) = from.keys.create(new_key("gone", Role::User)).await.unwrap();
    from.keys.revoke(&revoked.id).await.unwrap();
    for (split, sticky_id, variant) in [("s", "u1", "a"), ("s", "u2", "b"), ("t", "u1", "c")] {
        from.assignments
            .set(split, sticky_id, variant)
            .await
            .unwrap();
    }
    let add = |name: &str, window_secs, amount| CounterAdd {
        name: name.into(),
        window_secs,
        amount,
    };
    let adds = [
        add("ever", 0, 3),
        add("daily", 86_400, 4),
        add("usd", MONTH, 500),
    ];
    from.counters.add(&adds).await.unwrap();
    let tokens = limit("tokens", 1000, 86_400, LimitKind::Tokens);
    let held = from
        .counters
        .reserve(&[(tokens.clone(), 300)])
        .await
        .unwrap();
    from.counters
        .settle(
            &held,
            Actual {
                tokens: 40,
                micro_usd: 0,
            },
        )
        .await
        .unwrap();
    from.counters
        .reserve(&[(tokens.clone(), 200)])
        .await
        .unwrap();
    let entries: Vec<LogEntry> = (0..6)
        .map(|i| {
            let key = if i < 4 { member.id.as_str() } else { "b" };
            entry(
                i,
                7200 + 3600 * (i % 2),
                key,
                if i == 3 { 500 } else { 200 },
            )
        })
        .collect();
    from.ledger
        .write(&from.ledger.batch(entries))
        .await
        .unwrap();

    let records = from.portable.export().await.unwrap();
    let text = serde_json::to_string(&records).unwrap();
    for secret in [&member_secret, &admin_secret, &revoked_secret] {
        assert!(!text.contains(secret.as_str()), "an export holds no secret");
    }
    let counts = into.portable.import(records.clone()).await.unwrap();
    let expected = ImportCounts {
        keys: 3,
        teams: 1,
        assignments: 3,
        counters: 4,
        usage_rows: 4,
        key_usage: 2,
    };
    assert_eq!(counts, expected);
    assert_eq!(ImportCounts::of(&records), expected);
    same_state(from, into, &member.id).await;
    assert_eq!(
        into.keys.authenticate(&member_secret).unwrap().id,
        member.id
    );
    assert_eq!(
        into.keys.authenticate(&admin_secret).unwrap().role,
        Role::Admin
    );
    assert!(into.keys.has_admin().await.unwrap());
    assert!(into.keys.authenticate(&revoked_secret).is_none());
    assert_eq!(into.teams.get_cached(&team.id).as_deref(), Some(&team));
    assert_eq!(
        into.teams.find(&team.id).await.unwrap().as_ref(),
        Some(&team)
    );
    // What requests in flight reserved ended with them.
    let tokens_use = into
        .counters
        .usage(std::slice::from_ref(&tokens))
        .await
        .unwrap()[0];
    assert_eq!(
        tokens_use,
        Use {
            used: 40,
            reserved: 0
        }
    );
    assert_eq!(
        into.portable.export().await.unwrap(),
        records,
        "the same state, the same export"
    );

    // Importing again replaces, never adds: usage is not counted twice.
    assert_eq!(
        into.portable.import(records.clone()).await.unwrap(),
        expected
    );
    same_state(from, into, &member.id).await;
    // An imported key takes back its exported secret: one rotated since stops working.
    let (_, newer) = into.keys.rotate(&member.id).await.unwrap().unwrap();
    into.portable.import(records.clone()).await.unwrap();
    assert!(into.keys.authenticate(&newer).is_none());
    assert_eq!(
        into.keys.authenticate(&member_secret).unwrap().id,
        member.id
    );

    // An invalid record fails the import before anything is written.
    let late = NewTeam {
        name: "late".into(),
        ..NewTeam::default()
    };
    let late = super::teams::new_record(late);
    let bad = vec![
        Record::Team {
            record: late.clone(),
        },
        Record::UsageRow {
            row: "not hex".into(),
            totals: Default::default(),
        },
    ];
    assert!(matches!(
        into.portable.import(bad).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(into.teams.find(&late.id).await.unwrap().is_none());
    assert_eq!(into.portable.export().await.unwrap(), records);
    into.flush().await.unwrap();
}

/// `into` answers as `from` does: keys, teams, assignments, counters, usage.
async fn same_state(from: &Store, into: &Store, key_id: &str) {
    assert_eq!(
        into.keys.list().await.unwrap(),
        from.keys.list().await.unwrap()
    );
    assert_eq!(
        into.teams.list().await.unwrap(),
        from.teams.list().await.unwrap()
    );
    for (split, sticky_id) in [("s", "u1"), ("s", "u2"), ("t", "u1"), ("t", "u2")] {
        assert_eq!(
            into.assignments.get(split, sticky_id),
            from.assignments.get(split, sticky_id)
        );
    }
    for (name, window_secs) in [
        ("ever", 0),
        ("daily", 86_400),
        ("usd", MONTH),
        ("tokens", 86_400),
    ] {
        // `get`, not `peek`: a shared backend's `peek` is what this instance last saw.
        assert_eq!(
            into.counters.get(name, window_secs).await.unwrap(),
            from.counters.get(name, window_secs).await.unwrap(),
            "{name}"
        );
    }
    for group in ["", "key", "team", "model", "tag:team"] {
        for bucket in [Bucket::Hour, Bucket::Day] {
            let group: GroupBy = group.parse().unwrap();
            let query = |store: &Store| {
                let (usage, group) = (store.usage.clone(), group.clone());
                async move {
                    let rows = usage.query(0, 86_400, bucket, &group).await.unwrap();
                    serde_json::to_value(rows).unwrap()
                }
            };
            assert_eq!(query(into).await, query(from).await);
        }
    }
    for key_id in [key_id, "b", "nobody"] {
        assert_eq!(
            into.usage.key_usage(key_id).await.unwrap(),
            from.usage.key_usage(key_id).await.unwrap()
        );
    }
}

async fn open(kind: StoreKind, dir: &std::path::Path) -> Store {
    Store::open_with(&StoreOptions {
        kind,
        dir,
        cache_bytes: 1 << 20,
        cache_max_entries: CACHE_ENTRIES,
        redis: None,
    })
    .await
    .unwrap()
}

async fn open_redis(server: &redis_server::RedisServer, prefix: &str) -> Store {
    let options = super::redis::RedisOptions {
        url: server.url(),
        prefix: prefix.into(),
        timeout: std::time::Duration::from_millis(500),
        unavailable: super::redis::Unavailable::Closed,
    };
    Store::open_with(&StoreOptions {
        kind: StoreKind::Redis,
        dir: std::path::Path::new("/nonexistent"),
        cache_bytes: 0,
        cache_max_entries: CACHE_ENTRIES,
        redis: Some(&options),
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_round_trips_into_memory() {
    let dir = tempfile::tempdir().unwrap();
    let from = open(StoreKind::Sled, dir.path()).await;
    round_trips(&from, &open(StoreKind::Memory, dir.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_round_trips_into_sled_and_the_import_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let into = open(StoreKind::Sled, dir.path()).await;
    round_trips(&open(StoreKind::Memory, dir.path()).await, &into).await;
    let before = into.portable.export().await.unwrap();
    drop(into);
    let reopened = open(StoreKind::Sled, dir.path()).await;
    assert_eq!(reopened.portable.export().await.unwrap(), before);
}

/// A deployment moved from sled to Redis, and from Redis back to sled: the same export both
/// ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_round_trips_into_redis_and_back() {
    let Some(server) = redis_server::RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sled = open(StoreKind::Sled, dir.path()).await;
    let redis = open_redis(&server, "moved:").await;
    round_trips(&sled, &redis).await;
    let back = tempfile::tempdir().unwrap();
    let sled_again = open(StoreKind::Sled, back.path()).await;
    let from_redis = redis.portable.export().await.unwrap();
    sled_again
        .portable
        .import(from_redis.clone())
        .await
        .unwrap();
    assert_eq!(sled_again.portable.export().await.unwrap(), from_redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(&StoreOptions {
        kind: StoreKind::Sled,
        dir: dir.path(),
        cache_bytes: 1 << 20,
        cache_max_entries: CACHE_ENTRIES,
        redis: None,
    })
    .await
    .unwrap();
    assert_eq!(store.backend.kind(), StoreKind::Sled);
    keeps_the_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_keeps_the_contract() {
    let store = Store::open_with(&StoreOptions {
        kind: StoreKind::Memory,
        dir: std::path::Path::new("/nonexistent"),
        cache_bytes: 0,
        cache_max_entries: CACHE_ENTRIES,
        redis: None,
    })
    .await
    .unwrap();
    assert_eq!(store.backend.kind(), StoreKind::Memory);
    keeps_the_contract(&store).await;
}

use super::redis_server;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_keeps_the_contract() {
    let Some(server) = redis_server::RedisServer::start() else {
        return;
    };
    let options = super::redis::RedisOptions {
        url: server.url(),
        prefix: "contract:".into(),
        timeout: std::time::Duration::from_millis(500),
        unavailable: super::redis::Unavailable::Closed,
    };
    let store = Store::open_with(&StoreOptions {
        kind: StoreKind::Redis,
        dir: std::path::Path::new("/nonexistent"),
        cache_bytes: 0,
        cache_max_entries: CACHE_ENTRIES,
        redis: Some(&options),
    })
    .await
    .unwrap();
    assert_eq!(store.backend.kind(), StoreKind::Redis);
    keeps_the_contract(&store).await;
}

/// Two fleets on one Redis, told apart by their prefixes, share nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_prefixes_keep_fleets_apart() {
    let Some(server) = redis_server::RedisServer::start() else {
        return;
    };
    let open = |prefix: &str| super::redis::RedisOptions {
        url: server.url(),
        prefix: prefix.into(),
        timeout: std::time::Duration::from_millis(500),
        unavailable: super::redis::Unavailable::Closed,
    };
    let (a, b) = (open("a:"), open("b:"));
    let store = |options| async move {
        Store::open_with(&StoreOptions {
            kind: StoreKind::Redis,
            dir: std::path::Path::new("/nonexistent"),
            cache_bytes: 0,
            cache_max_entries: CACHE_ENTRIES,
            redis: Some(options),
        })
        .await
        .unwrap()
    };
    let (a, b) = (store(&a).await, store(&b).await);
    let (_, secret) = a.keys.create(NewKey::default()).await.unwrap();
    assert!(a.keys.authenticate(&secret).is_some());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(b.keys.authenticate(&secret).is_none());
    assert!(b.keys.list().await.unwrap().is_empty());
    let rpm = limit("rpm", 1, 3600, LimitKind::Requests);
    assert!(a.counters.reserve(&[(rpm.clone(), 1)]).await.is_ok());
    assert!(
        b.counters.reserve(&[(rpm, 1)]).await.is_ok(),
        "b's own counter"
    );
}
