//! What the router needs to know from the policies about one request: the routes in order, the
//! balanced pool at their head, timeout overrides and extra upstream headers. The policies
//! fill it in (`policy::Decision` holds one); the router never sees the rest of a decision.

use super::balance::Strategy;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RoutePlan {
    /// Ordered targets: primary, then fallbacks. Empty: the core's model resolution applies.
    pub routes: Vec<String>,
    /// The first routes form one rank, ordered per request by a strategy.
    pub balance: Option<Balance>,
    /// Per-route timeouts, over the providers' own.
    pub timeouts: TimeoutOverrides,
    /// Headers to send upstream.
    pub headers: BTreeMap<String, String>,
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
