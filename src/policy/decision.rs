//! What the policies decided for one request.

use crate::router::balance::Strategy;
use crate::store::Limit;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    /// Ordered targets: primary, then fallbacks. Empty: the core's model resolution applies.
    pub routes: Vec<String>,
    /// Cache replies for this many seconds; `None`: no caching.
    pub cache_ttl: Option<u64>,
    /// Split name → variant, in the order the splits ran.
    pub variants: BTreeMap<String, String>,
    /// Request limits, checked and charged before the call.
    pub limits: Vec<Limit>,
    /// Token budgets, checked before the call and charged with real usage after it.
    pub token_limits: Vec<Limit>,
    pub rejection: Option<Rejection>,
    /// Headers to send upstream.
    pub headers: BTreeMap<String, String>,
    /// Labels recorded with usage and logs.
    pub tags: BTreeMap<String, String>,
    /// The first routes form one rank, ordered per request by a strategy.
    pub balance: Option<Balance>,
    /// Per-route timeouts, over the providers' own.
    pub timeouts: TimeoutOverrides,
}

/// `ctx.route_balanced`: the first `pool` routes are equals, tried in the strategy's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Balance {
    pub strategy: Strategy,
    pub pool: usize,
    /// Weights per route from the policy; empty: the providers' `weight`.
    pub weights: Vec<(String, u32)>,
}

/// `ctx.timeout` / `ctx.timeouts`: seconds, each `None` to keep the provider's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TimeoutOverrides {
    pub first_byte_secs: Option<f64>,
    pub idle_secs: Option<f64>,
    pub total_secs: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Rejection {
    pub status: u16,
    pub message: String,
    /// The script that rejected.
    pub script: String,
}

impl Decision {
    /// `name=variant` pairs for the `x-switchboard-variant` header.
    pub fn variant_header(&self) -> Option<String> {
        if self.variants.is_empty() {
            return None;
        }
        Some(
            self.variants
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}
