//! What a webhook can be told about: each [`Event`] has a name ([`EventKind`], what a hook
//! subscribes to) and a JSON `data` object (README, "Webhooks", lists them).
//!
//! Nothing here knows where events come from, so every layer that raises one (the router,
//! reloads, budget enforcement, the key expiry check) can use this module without the
//! dispatcher's dependencies.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The name of an event, as written in `webhooks.yaml` and sent in `x-switchboard-event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A budget (of a key or a team) crossed 50, 80 or 100 % of its maximum.
    #[serde(rename = "budget.threshold")]
    BudgetThreshold,
    /// A key expires within the warning horizon (once per key and expiry).
    #[serde(rename = "key.expiring")]
    KeyExpiring,
    /// A provider's circuit breaker opened: the provider is skipped.
    #[serde(rename = "breaker.opened")]
    BreakerOpened,
    /// A provider's circuit breaker closed again: the provider serves.
    #[serde(rename = "breaker.closed")]
    BreakerClosed,
    /// A reload found errors; the running configuration stays.
    #[serde(rename = "reload.rolled_back")]
    ReloadRolledBack,
    /// A provider's active health check started failing.
    #[serde(rename = "provider.health_check_failed")]
    ProviderHealthCheckFailed,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::BudgetThreshold,
        EventKind::KeyExpiring,
        EventKind::BreakerOpened,
        EventKind::BreakerClosed,
        EventKind::ReloadRolledBack,
        EventKind::ProviderHealthCheckFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BudgetThreshold => "budget.threshold",
            EventKind::KeyExpiring => "key.expiring",
            EventKind::BreakerOpened => "breaker.opened",
            EventKind::BreakerClosed => "breaker.closed",
            EventKind::ReloadRolledBack => "reload.rolled_back",
            EventKind::ProviderHealthCheckFailed => "provider.health_check_failed",
        }
    }
}

/// One problem of a rolled-back reload, as the event carries it (the shape of
/// `/admin/config`'s `last_reload.errors`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

/// Something a webhook may be told about. Build one and hand it to
/// [`Webhooks::emit`](super::Webhooks::emit); the gateway adds the delivery id and the time.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A budget crossed `percent` (50, 80 or 100) of `max`. Emit it once per crossing: the
    /// dispatcher does not deduplicate.
    BudgetThreshold {
        /// Which budget: the limit's name, e.g. `budget_usd_month`.
        limit: String,
        /// The threshold crossed: 50, 80 or 100.
        percent: u8,
        /// Spent so far in the budget's window, in the budget's unit (USD).
        used: f64,
        /// The budget.
        max: f64,
        /// The key whose budget it is, or whose request crossed a team's budget.
        key_id: Option<String>,
        /// The team whose budget it is, or the key's team.
        team: Option<String>,
    },
    /// A live key expires within the horizon.
    KeyExpiring {
        key_id: String,
        name: String,
        /// Unix seconds.
        expires_at: u64,
        expires_in_secs: u64,
    },
    BreakerOpened {
        provider: String,
        consecutive_failures: u32,
        /// Failed share of the calls in the breaker's window, 0..1.
        error_rate: f64,
    },
    BreakerClosed {
        provider: String,
    },
    ReloadRolledBack {
        /// What asked for the reload: `watcher`, `sighup` or `admin`.
        trigger: String,
        /// The configuration version that keeps serving.
        version: u64,
        errors: Vec<Problem>,
    },
    ProviderHealthCheckFailed {
        provider: String,
        /// The breaker's state after the failed check: `closed`, `open` or `half_open`.
        breaker: String,
    },
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::BudgetThreshold { .. } => EventKind::BudgetThreshold,
            Event::KeyExpiring { .. } => EventKind::KeyExpiring,
            Event::BreakerOpened { .. } => EventKind::BreakerOpened,
            Event::BreakerClosed { .. } => EventKind::BreakerClosed,
            Event::ReloadRolledBack { .. } => EventKind::ReloadRolledBack,
            Event::ProviderHealthCheckFailed { .. } => EventKind::ProviderHealthCheckFailed,
        }
    }

    /// The `data` object of the delivery body.
    pub fn data(&self) -> Value {
        match self {
            Event::BudgetThreshold {
                limit,
                percent,
                used,
                max,
                key_id,
                team,
            } => json!({
                "limit": limit,
                "percent": percent,
                "used": used,
                "max": max,
                "key_id": key_id,
                "team": team,
            }),
            Event::KeyExpiring {
                key_id,
                name,
                expires_at,
                expires_in_secs,
            } => json!({
                "key_id": key_id,
                "name": name,
                "expires_at": expires_at,
                "expires_in_secs": expires_in_secs,
            }),
            Event::BreakerOpened {
                provider,
                consecutive_failures,
                error_rate,
            } => json!({
                "provider": provider,
                "consecutive_failures": consecutive_failures,
                "error_rate": error_rate,
            }),
            Event::BreakerClosed { provider } => json!({ "provider": provider }),
            Event::ReloadRolledBack {
                trigger,
                version,
                errors,
            } => json!({
                "trigger": trigger,
                "version": version,
                "errors": errors,
            }),
            Event::ProviderHealthCheckFailed { provider, breaker } => json!({
                "provider": provider,
                "breaker": breaker,
            }),
        }
    }

    /// The delivery body: `{"id", "event", "created_at", "data"}`, serialised once and signed
    /// as these exact bytes.
    pub fn body(&self, delivery_id: &str, created_at: u64) -> Vec<u8> {
        let body = json!({
            "id": delivery_id,
            "event": self.kind().as_str(),
            "created_at": created_at,
            "data": self.data(),
        });
        // A `Value` always serialises; an empty body would be refused by the receiver anyway.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for kind in EventKind::ALL {
            let text = serde_json::to_string(&kind).unwrap();
            assert_eq!(text, format!("\"{}\"", kind.as_str()));
            let back: EventKind = serde_json::from_str(&text).unwrap();
            assert_eq!(back, kind);
        }
    }

    #[test]
    fn a_budget_event_body_carries_its_fields() {
        let event = Event::BudgetThreshold {
            limit: "budget_usd_month".into(),
            percent: 80,
            used: 40.5,
            max: 50.0,
            key_id: Some("k1".into()),
            team: None,
        };
        let body: Value = serde_json::from_slice(&event.body("whd_1", 1_700_000_000)).unwrap();
        assert_eq!(body["id"], "whd_1");
        assert_eq!(body["event"], "budget.threshold");
        assert_eq!(body["created_at"], 1_700_000_000);
        assert_eq!(body["data"]["percent"], 80);
        assert_eq!(body["data"]["team"], Value::Null);
    }
}
