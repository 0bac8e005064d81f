//! What the policies decided for one request.

pub use crate::router::plan::{Balance, RoutePlan, TimeoutOverrides};
use crate::store::Limit;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    /// Where the request goes and how: what the router reads.
    #[serde(flatten)]
    pub route: RoutePlan,
    /// Cache replies for this many seconds; `None`: no caching.
    pub cache_ttl: Option<u64>,
    /// Split name → variant, in the order the splits ran.
    pub variants: BTreeMap<String, String>,
    /// Request limits, checked and charged before the call.
    pub limits: Vec<Limit>,
    /// Token budgets: the request's estimate reserved before the call, its real usage
    /// charged after it.
    pub token_limits: Vec<Limit>,
    /// Cost budgets in millionths of a USD, reserved and charged as token budgets are.
    pub cost_limits: Vec<Limit>,
    pub rejection: Option<Rejection>,
    /// Labels recorded with usage and logs.
    pub tags: BTreeMap<String, String>,
    /// Counter additions and split assignments the hooks made, written once they ran.
    #[serde(skip)]
    pub writes: super::writes::StateWrites,
    /// Checks on the reply's text before the client sees it (`ctx.guard_output`).
    #[serde(skip)]
    pub output_guard: Option<GuardRef>,
    /// A copy of the request for a candidate model (`ctx.mirror`).
    pub mirror: Option<Mirror>,
}

/// `ctx.mirror(target, share)`, and whether this request was drawn.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Mirror {
    pub target: String,
    /// The share of requests copied, 0..1.
    pub share: f64,
    /// This request is copied.
    pub sampled: bool,
}

/// The output guard a request carries; equal only to itself (a decision is compared in tests).
#[derive(Clone)]
pub struct GuardRef(pub std::sync::Arc<super::guard::OutputGuard>);

impl PartialEq for GuardRef {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for GuardRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputGuard")
            .field("block", &self.0.block.len())
            .field("redact", &self.0.redact.len())
            .field("hold", &self.0.hold)
            .finish()
    }
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
