//! Running the policies for a request without calling a provider or charging a counter.
//! The admin simulate endpoint and `switchboard policy test` both use this, and it shares its
//! decision code with real requests, so all three agree.

use super::{Decision, PolicyEnv, PolicySet, Rejection, RoutePlan};
use crate::store::counters::LimitCheck;
use crate::store::{AssignmentStore, CounterStore, KeyRecord, Limit};
use crate::wire::RequestBody;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Simulation {
    /// The policies' route list (empty: the requested model is resolved as usual).
    pub route: Vec<String>,
    pub cache_ttl: Option<u64>,
    pub variants: BTreeMap<String, String>,
    /// The scripts' request limits (`ctx.limit`).
    pub limits: Vec<LimitCheck>,
    /// The scripts' token budgets (`ctx.token_limit`).
    pub token_limits: Vec<LimitCheck>,
    /// The scripts' cost budgets (`ctx.cost_limit`).
    pub cost_limits: Vec<LimitCheck>,
    /// The key's own limits (and its team's), enforced without a script.
    pub key_limits: Vec<LimitCheck>,
    pub rejection: Option<Rejection>,
    pub headers: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// The request as it would go upstream (before the model is replaced by the target's id).
    pub request: serde_json::Value,
    /// A script failure, as a real request would report it.
    pub error: Option<String>,
    /// `ctx.route_balanced`: the strategy, how many routes form the pool, the policy's weights
    /// (which member goes first is decided per request, as it would be).
    #[schema(value_type = Option<Object>)]
    pub balance: Option<serde_json::Value>,
    /// `ctx.timeout(s)`: the overrides, seconds (`null`: the provider's own); `null` for a
    /// script failure.
    #[schema(value_type = Value)]
    pub timeouts: serde_json::Value,
    /// `ctx.guard_output`: the checks (by name), the hold-back and the replacement.
    #[schema(value_type = Option<Object>)]
    pub output_guard: Option<serde_json::Value>,
    /// The route as the router gets it (for the endpoint to order the targets as a request
    /// would).
    #[serde(skip)]
    #[schema(ignore)]
    pub plan: RoutePlan,
    /// `ctx.mirror`: the candidate, the share, and whether this request was drawn.
    pub mirror: Option<super::decision::Mirror>,
    /// The guard itself, for fixtures that check a sample reply against it.
    #[serde(skip)]
    #[schema(ignore)]
    pub guard: Option<super::decision::GuardRef>,
}

/// A guard as a simulation shows it.
fn guard_summary(guard: &super::guard::OutputGuard) -> serde_json::Value {
    let names = |checks: &[super::guard::Check]| -> Vec<String> {
        checks.iter().map(super::guard::Check::name).collect()
    };
    serde_json::json!({
        "block": names(&guard.block),
        "redact": names(&guard.redact),
        "hold": guard.hold,
        "replacement": guard.replacement,
    })
}

/// Each limit as it stands; a store that cannot say reports none in use (and says why in the
/// log).
pub async fn checks(limits: &[Limit], counters: &dyn CounterStore) -> Vec<LimitCheck> {
    match LimitCheck::read(limits, counters).await {
        Ok(checks) => checks,
        Err(e) => {
            tracing::warn!(error = %e, "could not read limits' use for a simulation");
            LimitCheck::of(limits, &vec![Default::default(); limits.len()])
        }
    }
}

/// What a simulated request runs with besides its body, key and headers.
#[derive(Clone, Default)]
pub struct SimulatedClient {
    /// Provider health and pricing (`ctx.provider`): the live gateway's, or a fixture's.
    pub providers: Option<Arc<dyn super::facts::ProviderSource>>,
    /// `req.client_ip`.
    pub client_ip: Option<std::net::IpAddr>,
    /// `req.batch_id`.
    pub batch_id: Option<String>,
}

pub async fn simulate(
    policies: &PolicySet,
    body: RequestBody,
    key: Arc<KeyRecord>,
    headers: Vec<(String, String)>,
    counters: Arc<dyn CounterStore>,
    assignments: Arc<dyn AssignmentStore>,
) -> Simulation {
    simulate_with(
        policies,
        body,
        key,
        headers,
        counters,
        assignments,
        SimulatedClient::default(),
    )
    .await
}

/// As [`simulate`], with provider facts and a client address.
pub async fn simulate_with(
    policies: &PolicySet,
    body: RequestBody,
    key: Arc<KeyRecord>,
    headers: Vec<(String, String)>,
    counters: Arc<dyn CounterStore>,
    assignments: Arc<dyn AssignmentStore>,
    client: SimulatedClient,
) -> Simulation {
    let SimulatedClient {
        providers,
        client_ip,
        batch_id,
    } = client;
    let env = PolicyEnv {
        counters: counters.clone(),
        assignments,
        simulate: true,
        providers,
        client_ip,
        batch_id: batch_id.map(Arc::from),
    };
    let original = body.to_json_value();
    let owned = key.limits.as_counters("key", &key.id, &key.name);
    match policies.on_request(body, key, headers, env) {
        Ok((body, decision)) => {
            let plan = decision.route.clone();
            let Decision {
                route:
                    RoutePlan {
                        routes,
                        headers,
                        balance,
                        timeouts,
                    },
                cache_ttl,
                variants,
                limits,
                token_limits,
                cost_limits,
                rejection,
                tags,
                // Simulation writes nothing, so it collects nothing to write.
                writes: _,
                output_guard,
                mirror,
            } = decision;
            Simulation {
                route: routes,
                cache_ttl,
                variants,
                limits: checks(&limits, counters.as_ref()).await,
                token_limits: checks(&token_limits, counters.as_ref()).await,
                cost_limits: checks(&cost_limits, counters.as_ref()).await,
                key_limits: checks(&owned, counters.as_ref()).await,
                rejection,
                headers,
                tags,
                request: body.to_json_value(),
                error: None,
                balance: balance.and_then(|b| serde_json::to_value(b).ok()),
                timeouts: serde_json::to_value(timeouts).unwrap_or_default(),
                output_guard: output_guard.as_ref().map(|g| guard_summary(&g.0)),
                guard: output_guard,
                mirror,
                plan,
            }
        }
        Err(failure) => Simulation {
            route: vec![],
            cache_ttl: None,
            variants: BTreeMap::new(),
            limits: vec![],
            token_limits: vec![],
            cost_limits: vec![],
            key_limits: vec![],
            rejection: None,
            headers: BTreeMap::new(),
            tags: BTreeMap::new(),
            request: original,
            error: Some(failure.to_string()),
            balance: None,
            timeouts: serde_json::Value::Null,
            output_guard: None,
            guard: None,
            mirror: None,
            plan: RoutePlan::default(),
        },
    }
}
