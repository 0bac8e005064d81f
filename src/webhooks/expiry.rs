//! `key.expiring`: every [`CHECK_EVERY`] (and once at start), live keys whose `expires_at`
//! falls within [`HORIZON`] are announced, once per key and expiry date (a key given a new
//! expiry is announced again when that one nears). Once for the whole fleet and across
//! restarts: each announcement is claimed in the shared counters first (as budget alerts
//! are), and only the instance whose claim is admitted sends it. The check lists keys only
//! while a webhook wants the event.

use super::event::{Event, EventKind};
use super::handle::{WeakWebhooks, Webhooks};
use crate::snapshot::Snapshot;
use crate::store::counters::{AdmitError, CounterStore, Limit, LimitKind};
use crate::store::{KeyRecord, KeyStore};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

pub const CHECK_EVERY: Duration = Duration::from_secs(3600);
/// How far ahead an expiry is announced: a week leaves time to rotate a key.
pub const HORIZON: Duration = Duration::from_secs(7 * 86_400);

/// Starts the check; it ends with the gateway (when the key store, `webhooks` or `live` is
/// gone). It holds all three weakly: a stopped gateway's database must be released at once,
/// not at the next hourly tick.
pub fn spawn(
    keys: &Arc<dyn KeyStore>,
    counters: &Arc<dyn CounterStore>,
    webhooks: &Webhooks,
    live: &Arc<ArcSwap<Snapshot>>,
) {
    tokio::spawn(run(
        Arc::downgrade(keys),
        Arc::downgrade(counters),
        webhooks.downgrade(),
        Arc::downgrade(live),
    ));
}

/// How long an announcement's claim is kept: longer than an expiry stays within the horizon.
const CLAIM_WINDOW_SECS: u64 = 30 * 86_400;

/// Whether this instance is the one to announce `event` (its claim was admitted). A store
/// that cannot say lets it through: a duplicate alert is better than none.
async fn claim(counters: &dyn CounterStore, event: &Event) -> bool {
    let Event::KeyExpiring {
        key_id, expires_at, ..
    } = event
    else {
        return true;
    };
    let claim = Limit::new(
        format!("alerted:key.expiring:{key_id}:{expires_at}"),
        1,
        CLAIM_WINDOW_SECS,
        LimitKind::Requests,
    );
    match counters.reserve(&[(claim, 1)]).await {
        Ok(reservation) => {
            // Ends the claim's lease; the claim itself stays counted for its window.
            let _ = counters.settle(&reservation, Default::default()).await;
            true
        }
        Err(AdmitError::Over(_)) => false,
        Err(AdmitError::Store(e)) => {
            tracing::debug!(error = %e, "could not claim a key.expiring alert; sending it anyway");
            true
        }
    }
}

async fn run(
    keys: Weak<dyn KeyStore>,
    counters: Weak<dyn CounterStore>,
    webhooks: WeakWebhooks,
    live: Weak<ArcSwap<Snapshot>>,
) {
    let mut announced: HashMap<String, u64> = HashMap::new();
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (Some(hooks), Some(live)) = (webhooks.upgrade(), live.upgrade()) else {
            return;
        };
        let wanted = live
            .load()
            .webhooks
            .subscribed(EventKind::KeyExpiring)
            .next()
            .is_some();
        drop(live);
        if !wanted {
            continue;
        }
        let Some(keys) = keys.upgrade() else { return };
        match keys.list().await {
            Ok(list) => {
                let now = crate::clock::now_secs();
                let Some(counters) = counters.upgrade() else {
                    return;
                };
                for event in expiring(&list, now, HORIZON.as_secs(), &mut announced) {
                    if claim(counters.as_ref(), &event).await {
                        hooks.emit(event);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "key expiry check: cannot list keys"),
        }
    }
}

/// The events for keys expiring within `horizon_secs` of `now` not yet announced for that
/// expiry; `announced` (key id -> expiry announced) is updated, and forgets keys no longer
/// live or no longer due.
pub fn expiring(
    keys: &[KeyRecord],
    now: u64,
    horizon_secs: u64,
    announced: &mut HashMap<String, u64>,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut due = HashMap::new();
    for key in keys.iter().filter(|k| k.revoked_at.is_none()) {
        let Some(expires_at) = key.expires_at else {
            continue;
        };
        if expires_at <= now || expires_at - now > horizon_secs {
            continue;
        }
        if announced.get(&key.id) != Some(&expires_at) {
            events.push(Event::KeyExpiring {
                key_id: key.id.clone(),
                name: key.name.clone(),
                expires_at,
                expires_in_secs: expires_at - now,
            });
        }
        due.insert(key.id.clone(), expires_at);
    }
    *announced = due;
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Role;

    fn key(id: &str, expires_at: Option<u64>, revoked: bool) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            name: format!("key {id}"),
            role: Role::User,
            masked: "sk-sb-…".into(),
            created_at: 0,
            models: vec![],
            tags: Default::default(),
            revoked_at: revoked.then_some(1),
            expires_at,
            metadata: Default::default(),
            limits: Default::default(),
            team: None,
        }
    }

    #[test]
    fn announces_each_expiry_once_within_the_horizon() {
        let now = 1_000_000;
        let day = 86_400;
        let mut keys = vec![
            key("soon", Some(now + day), false),
            key("later", Some(now + 30 * day), false),
            key("never", None, false),
            key("gone", Some(now - 1), false),
            key("revoked", Some(now + day), true),
        ];
        let mut announced = HashMap::new();
        let first = expiring(&keys, now, 7 * day, &mut announced);
        assert_eq!(
            first,
            vec![Event::KeyExpiring {
                key_id: "soon".into(),
                name: "key soon".into(),
                expires_at: now + day,
                expires_in_secs: day,
            }]
        );
        assert!(
            expiring(&keys, now + 60, 7 * day, &mut announced).is_empty(),
            "once per key"
        );
        // Extended, then nearing its new date: announced again.
        keys[0].expires_at = Some(now + 2 * day);
        let again = expiring(&keys, now + 120, 7 * day, &mut announced);
        assert_eq!(again.len(), 1);
        // `later` comes within the horizon.
        let later = expiring(&keys, now + 24 * day, 7 * day, &mut announced);
        assert!(
            matches!(&later[..], [Event::KeyExpiring { key_id, .. }] if key_id == "later"),
            "{later:?}"
        );
    }
}
