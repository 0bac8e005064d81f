//! Limits and budgets set on a key or a team, without a script: what the admit stage turns
//! into counters beside the ones policies declare.

use super::counters::{Limit, LimitKind, LIFETIME, MONTH};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every field is optional; an absent one does not limit. Token limits count prompt and
/// completion tokens; USD budgets use the models' `pricing`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"rpm": 60, "tpd": 1_000_000, "max_parallel": 4, "budget_usd_month": 250.0}))]
pub struct Limits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Requests per day (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpd: Option<u64>,
    /// Tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Tokens per day (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpd: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u64>,
    /// USD per day (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd_day: Option<f64>,
    /// USD per calendar month (UTC, resetting on the 1st).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd_month: Option<f64>,
    /// USD over the key's or team's lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd_total: Option<f64>,
    /// The token and cost budgets are hard: a stream whose completion would take one past
    /// its limit is ended with an in-band `budget_exceeded` error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hard: bool,
}

/// A limit that cannot be enforced as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`limits.{field}` {problem}")]
pub struct InvalidLimit {
    pub field: &'static str,
    pub problem: &'static str,
}

impl Limits {
    /// These limits as counters for an owner (a key or a team): counter
    /// `<what>:<id>:<field>`, labelled `<what>:<name> <field>` for clients.
    pub fn as_counters(&self, what: &str, id: &str, name: &str) -> Vec<Limit> {
        let usd = |v: Option<f64>| v.map(micro_usd);
        let fields = [
            ("rpm", self.rpm, 60, LimitKind::Requests),
            ("rpd", self.rpd, 86_400, LimitKind::Requests),
            ("tpm", self.tpm, 60, LimitKind::Tokens),
            ("tpd", self.tpd, 86_400, LimitKind::Tokens),
            ("max_parallel", self.max_parallel, 0, LimitKind::Parallel),
            (
                "budget_usd_day",
                usd(self.budget_usd_day),
                86_400,
                LimitKind::MicroUsd,
            ),
            (
                "budget_usd_month",
                usd(self.budget_usd_month),
                MONTH,
                LimitKind::MicroUsd,
            ),
            (
                "budget_usd_total",
                usd(self.budget_usd_total),
                LIFETIME,
                LimitKind::MicroUsd,
            ),
        ];
        fields
            .into_iter()
            .filter_map(|(field, max, window, kind)| {
                // The maximum first: the name is formatted only for a limit that is set (a
                // key without limits cost eight formatted names per request before).
                let max = max?;
                Some(
                    Limit::new(format!("{what}:{id}:{field}"), max, window, kind)
                        .labelled(format!("{what}:{name} {field}"))
                        .hard(self.hard && matches!(kind, LimitKind::Tokens | LimitKind::MicroUsd)),
                )
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Refuses budgets that are negative or not numbers (a budget of 0 refuses everything,
    /// which is allowed: it stops a key without revoking it).
    pub fn validate(&self) -> Result<(), InvalidLimit> {
        for (field, value) in [
            ("budget_usd_day", self.budget_usd_day),
            ("budget_usd_month", self.budget_usd_month),
            ("budget_usd_total", self.budget_usd_total),
        ] {
            if let Some(v) = value {
                if !v.is_finite() || v < 0.0 {
                    return Err(InvalidLimit {
                        field,
                        problem: "must be a number of USD, 0 or more",
                    });
                }
            }
        }
        Ok(())
    }
}

/// USD as millionths, the unit cost counters count in (rounded to the nearest).
pub fn micro_usd(usd: f64) -> u64 {
    (usd * 1_000_000.0).round().max(0.0) as u64
}
