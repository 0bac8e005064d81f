//! Budgets crossing 50, 80 and 100 % of their limit: found when a request settles, each
//! threshold reported once per budget and window, however many requests cross it together.

use crate::store::counters::{AdmitError, CounterStore, Limit, LimitKind, Use};
use crate::store::windows::window_start;
use std::collections::HashMap;
use std::sync::Mutex;

/// The thresholds reported, in percent of a budget's limit.
pub const THRESHOLDS: [u8; 3] = [50, 80, 100];

/// How many budget windows are remembered before those of past windows are forgotten.
const REMEMBERED: usize = 10_000;

/// A budget that reached a threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    pub limit: Limit,
    pub percent: u8,
    /// Used (settled) when it was found.
    pub used: u64,
}

/// Where crossings go (a log line, a webhook).
pub type Sink = Box<dyn Fn(&Crossing) + Send + Sync>;

pub struct BudgetAlerts {
    /// (counter name, window length, window start) → the highest threshold reported.
    sent: Mutex<HashMap<(String, u64, u64), u8>>,
    sink: Sink,
}

impl BudgetAlerts {
    pub fn new(sink: Sink) -> BudgetAlerts {
        BudgetAlerts {
            sent: Mutex::new(HashMap::new()),
            sink,
        }
    }

    /// Reports each threshold the budgets among `limits` have newly reached, `usage` giving
    /// their use in the same order.
    pub fn check(&self, limits: &[Limit], usage: &[Use], now: u64) {
        for crossing in self.crossings(limits, usage, now) {
            (self.sink)(&crossing);
        }
    }

    /// As [`BudgetAlerts::check`], once for the whole fleet: each crossing is claimed in the
    /// shared counters (a one-per-window limit named after it) and only the instance whose
    /// claim is admitted reports it. A store that cannot say lets it through: a duplicate
    /// alert is better than none.
    pub async fn check_shared(
        &self,
        counters: &dyn CounterStore,
        limits: &[Limit],
        usage: &[Use],
        now: u64,
    ) {
        for crossing in self.crossings(limits, usage, now) {
            let claim = Limit::new(
                format!("alerted:{}:{}", crossing.limit.name, crossing.percent),
                1,
                crossing.limit.window_secs,
                LimitKind::Requests,
            );
            match counters.reserve(&[(claim, 1)]).await {
                Ok(reservation) => {
                    // Ends the claim's lease; the claim itself stays counted for the window.
                    let _ = counters.settle(&reservation, Default::default()).await;
                }
                Err(AdmitError::Over(_)) => continue,
                Err(AdmitError::Store(e)) => {
                    tracing::debug!(error = %e, "could not claim a budget alert; sending it anyway");
                }
            }
            (self.sink)(&crossing);
        }
    }

    fn crossings(&self, limits: &[Limit], usage: &[Use], now: u64) -> Vec<Crossing> {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if sent.len() > REMEMBERED {
            sent.retain(|(_, window, start), _| window_start(now, *window) == *start);
        }
        let mut found = Vec::new();
        for (limit, u) in limits.iter().zip(usage) {
            if !matches!(limit.kind, LimitKind::Tokens | LimitKind::MicroUsd) || limit.max == 0 {
                continue;
            }
            let percent = u.used.saturating_mul(100) / limit.max;
            let key = (
                limit.name.clone(),
                limit.window_secs,
                window_start(now, limit.window_secs),
            );
            let reported = sent.get(&key).copied().unwrap_or(0);
            let Some(highest) = THRESHOLDS
                .iter()
                .copied()
                .filter(|t| u64::from(*t) <= percent && *t > reported)
                .max()
            else {
                continue;
            };
            sent.insert(key, highest);
            found.extend(
                THRESHOLDS
                    .iter()
                    .filter(|t| **t > reported && **t <= highest)
                    .map(|t| Crossing {
                        limit: limit.clone(),
                        percent: *t,
                        used: u.used,
                    }),
            );
        }
        found
    }
}

/// The sink used when no webhook is set up: a log line per crossing.
pub fn log_sink() -> Sink {
    Box::new(|c: &Crossing| {
        tracing::info!(
            budget = c.limit.label(),
            percent = c.percent,
            used = c.used,
            max = c.limit.max,
            "budget threshold reached"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn each_threshold_is_reported_once_per_window() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let alerts = BudgetAlerts::new(Box::new(move |c: &Crossing| {
            sink_seen.lock().unwrap().push(c.percent)
        }));
        let budget = Limit::new("t", 100, 60, LimitKind::Tokens);
        let rpm = Limit::new("r", 1, 60, LimitKind::Requests);
        let at = |used: u64| Use { used, reserved: 0 };
        alerts.check(&[budget.clone(), rpm.clone()], &[at(40), at(1)], 600);
        assert!(
            seen.lock().unwrap().is_empty(),
            "40 % and request limits: nothing"
        );
        alerts.check(std::slice::from_ref(&budget), &[at(85)], 601);
        assert_eq!(*seen.lock().unwrap(), vec![50, 80], "both crossed at once");
        alerts.check(std::slice::from_ref(&budget), &[at(90)], 602);
        alerts.check(std::slice::from_ref(&budget), &[at(100)], 603);
        alerts.check(std::slice::from_ref(&budget), &[at(120)], 604);
        assert_eq!(*seen.lock().unwrap(), vec![50, 80, 100]);
        // The next window starts over.
        alerts.check(&[budget], &[at(60)], 660);
        assert_eq!(*seen.lock().unwrap(), vec![50, 80, 100, 50]);
    }
}
