//! How an instance hears what the others wrote: one pub/sub subscription to the fleet's
//! channel (keys or teams changed: reload them; an assignment made: remember it), and, as a
//! safety net for a message missed while disconnected, a check of the `version` hash every
//! second. A change made anywhere is seen everywhere within a second, usually at once.

use super::assignments::{RedisAssignments, MESSAGE};
use super::conn::Redis;
use super::keys::RedisKeyStore;
use super::teams::RedisTeamStore;
use futures_util::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The message that asks every instance to load the split assignments afresh (after an import).
pub const ASSIGNMENTS: &str = "assignments";

/// How often the versions are compared, and how long to wait before subscribing again.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the events update.
pub struct Listeners {
    pub keys: Weak<RedisKeyStore>,
    pub teams: Weak<RedisTeamStore>,
    pub assignments: Weak<RedisAssignments>,
}

/// Starts the subscription and the version check; both end with the store.
pub fn spawn(redis: &Arc<Redis>, listeners: Listeners) {
    let listeners = Arc::new(listeners);
    tokio::spawn(subscribe(Arc::downgrade(redis), listeners.clone()));
    tokio::spawn(check_versions(Arc::downgrade(redis), listeners));
}

async fn subscribe(redis: Weak<Redis>, listeners: Arc<Listeners>) {
    loop {
        let Some(conn) = redis.upgrade() else {
            return;
        };
        let client = conn.client.clone();
        let channel = conn.channel();
        drop(conn);
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    // Whatever was said while not subscribed is read afresh.
                    reload_all(&listeners).await;
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        if redis.strong_count() == 0 {
                            return;
                        }
                        heard(&listeners, message.get_payload_bytes()).await;
                    }
                    tracing::debug!("the redis subscription ended; subscribing again");
                }
                Err(e) => tracing::debug!(error = %e, "cannot subscribe to the fleet's channel"),
            },
            Err(e) => tracing::debug!(error = %e, "cannot open the fleet's pub/sub connection"),
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

async fn heard(listeners: &Listeners, payload: &[u8]) {
    // `keys:<version>` / `teams:<version>`: reloaded only when this instance is behind it.
    if let Some(version) = version_in(payload, b"keys:") {
        if let Some(keys) = listeners.keys.upgrade() {
            if keys.loaded_version.load(Ordering::Acquire) < version {
                reload_keys(listeners).await;
            }
        }
        return;
    }
    if let Some(version) = version_in(payload, b"teams:") {
        if let Some(teams) = listeners.teams.upgrade() {
            if teams.loaded_version.load(Ordering::Acquire) < version {
                reload_teams(listeners).await;
            }
        }
        return;
    }
    match payload {
        b"assignments" => {
            if let Some(assignments) = listeners.assignments.upgrade() {
                if let Err(e) = assignments.reload().await {
                    tracing::warn!(error = %e, "could not reload split assignments from redis");
                }
            }
        }
        [MESSAGE, rest @ ..] => {
            if let Some(assignments) = listeners.assignments.upgrade() {
                assignments.heard(rest);
            }
        }
        _ => {}
    }
}

/// The version a `<what>:<version>` message names.
fn version_in(payload: &[u8], what: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload.strip_prefix(what)?)
        .ok()?
        .parse()
        .ok()
}

async fn reload_keys(listeners: &Listeners) {
    if let Some(keys) = listeners.keys.upgrade() {
        if let Err(e) = keys.reload().await {
            tracing::warn!(error = %e, "could not reload keys from redis; kept the ones known");
        }
    }
}

async fn reload_teams(listeners: &Listeners) {
    if let Some(teams) = listeners.teams.upgrade() {
        if let Err(e) = teams.reload().await {
            tracing::warn!(error = %e, "could not reload teams from redis; kept the ones known");
        }
    }
}

async fn reload_all(listeners: &Listeners) {
    reload_keys(listeners).await;
    reload_teams(listeners).await;
    if let Some(assignments) = listeners.assignments.upgrade() {
        if let Err(e) = assignments.reload().await {
            tracing::debug!(error = %e, "could not reload split assignments from redis");
        }
    }
}

/// Every second, reloads keys or teams whose version moved since they were loaded.
async fn check_versions(redis: Weak<Redis>, listeners: Arc<Listeners>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(conn) = redis.upgrade() else {
            return;
        };
        if !conn.is_up() {
            continue;
        }
        let versions: Result<Vec<Option<u64>>, _> = conn
            .cmd(
                redis::cmd("HMGET")
                    .arg(conn.key("version"))
                    .arg("keys")
                    .arg("teams"),
            )
            .await;
        let Ok(versions) = versions else {
            continue;
        };
        let current = |i: usize| versions.get(i).copied().flatten().unwrap_or(0);
        if let Some(keys) = listeners.keys.upgrade() {
            if keys.loaded_version.load(Ordering::Acquire) != current(0) {
                reload_keys(&listeners).await;
            }
        }
        if let Some(teams) = listeners.teams.upgrade() {
            if teams.loaded_version.load(Ordering::Acquire) != current(1) {
                reload_teams(&listeners).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::version_in;

    #[test]
    fn messages_name_the_version_they_announce() {
        assert_eq!(version_in(b"keys:42", b"keys:"), Some(42));
        assert_eq!(version_in(b"teams:7", b"keys:"), None);
        assert_eq!(version_in(b"keys:", b"keys:"), None);
        assert_eq!(version_in(b"keys:x", b"keys:"), None);
    }
}
