//! `ctx` as scripts see it: the decisions being made, and the few stateful helpers (splits,
//! counters) a policy needs. Every function here is Rust, bounded and fast; scripts do no I/O.

use super::decision::{Balance, Decision, Rejection};
use super::facts::ProviderSource;
use super::library::{DataFile, Library, ScriptRegex};
use super::writes::{Assignment, StateWrites};
use crate::router::balance::Strategy;
use crate::store::counters::{LimitKind, LIFETIME, MONTH};
use crate::store::{AssignmentStore, CounterAdd, CounterStore, Limit};
use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The stores a policy may read and, outside simulation, write.
#[derive(Clone)]
pub struct PolicyEnv {
    pub counters: Arc<dyn CounterStore>,
    pub assignments: Arc<dyn AssignmentStore>,
    /// Simulation: decide, but persist no assignment and count no exposure.
    pub simulate: bool,
    /// What `ctx.provider(name)` and `ctx.providers()` read; `None`: no providers known.
    pub providers: Option<Arc<dyn ProviderSource>>,
    /// The client's address (`req.client_ip`): the peer, or with `--trusted-proxies` the first
    /// untrusted address of `X-Forwarded-For`.
    pub client_ip: Option<std::net::IpAddr>,
    /// The batch that sent the request (`req.batch_id`); `None` for a live request.
    pub batch_id: Option<Arc<str>>,
}

struct Inner {
    decision: Decision,
    env: PolicyEnv,
    /// The load's regexes and data files.
    library: Arc<Library>,
    /// Default sticky id for splits: the API key's id.
    key_id: String,
    /// The script now running, for rejections (shared with the loaded script: no copy per call).
    script: Option<Arc<str>>,
}

/// Cloning shares the decisions, so the copy a script receives is the caller's.
#[derive(Clone)]
pub struct PolicyCtx(Arc<Mutex<Inner>>);

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Raised by `ctx.reject` to end the script at once; not an error.
pub const REJECT_SIGNAL: &str = "switchboard:rejected";

fn script_err(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(message.into()),
        Position::NONE,
    ))
}

/// A named period as a window: `minute`, `hour`, `day`, `month` (calendar, UTC) or
/// `lifetime` (never resets).
fn period_secs(period: &str, what: &str) -> Res<u64> {
    match period {
        "minute" => Ok(60),
        "hour" => Ok(3_600),
        "day" => Ok(86_400),
        "month" => Ok(MONTH),
        "lifetime" => Ok(LIFETIME),
        other => Err(script_err(format!(
            "{what}: unknown period `{other}` (use minute, hour, day, month or lifetime, or seconds)"
        ))),
    }
}

fn positive(value: i64, what: &str) -> Res<u64> {
    u64::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| script_err(format!("{what} must be a positive integer, got {value}")))
}

fn strings(items: Array, what: &str) -> Res<Vec<String>> {
    items
        .into_iter()
        .map(|t| {
            t.into_immutable_string()
                .map(|s| s.to_string())
                .map_err(|ty| script_err(format!("{what} takes strings, got {ty}")))
        })
        .collect()
}

/// Seconds as an int or a float, above 0 and at most a day.
fn seconds(value: &Dynamic, what: &str) -> Res<f64> {
    let secs = value
        .as_float()
        .ok()
        .or_else(|| value.as_int().ok().map(|i| i as f64))
        .ok_or_else(|| script_err(format!("{what} takes seconds as a number")))?;
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(secs)
    } else {
        Err(script_err(format!(
            "{what}: seconds must be above 0 and at most 86400, got {secs}"
        )))
    }
}

fn to_map(entries: &BTreeMap<String, String>) -> Map {
    entries
        .iter()
        .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
        .collect()
}

impl PolicyCtx {
    /// `library`: the regexes and data files of the scripts' load.
    pub fn new(env: PolicyEnv, key_id: String, decision: Decision, library: &Arc<Library>) -> Self {
        PolicyCtx(Arc::new(Mutex::new(Inner {
            decision,
            env,
            library: library.clone(),
            key_id,
            script: None,
        })))
    }

    fn library(&self) -> Arc<Library> {
        self.lock().library.clone()
    }

    fn regex(&mut self, pattern: ImmutableString) -> Res<ScriptRegex> {
        self.library().regex(&pattern)
    }

    fn data(&mut self, name: ImmutableString) -> Res<DataFile> {
        self.library().data(&name)
    }

    /// Declares checks on the reply's text: `#{block: [...], redact: [...], hold: 64,
    /// replacement: "[redacted]"}`; each check is `"email"`, `"phone"`, `"card"`, a
    /// `ctx.regex(...)` or a `ctx.data(...)` word list. Several calls (several scripts) add up.
    fn guard_output(&mut self, spec: Map) -> Res<()> {
        use super::guard::{Check, OutputGuard, DEFAULT_HOLD, DEFAULT_REPLACEMENT, MAX_HOLD};
        let checks = |key: &str| -> Res<Vec<Check>> {
            let Some(items) = spec.get(key) else {
                return Ok(Vec::new());
            };
            let items = items.clone().into_typed_array::<Dynamic>().map_err(|_| {
                script_err(format!(
                    "ctx.guard_output: `{key}` takes an array of checks"
                ))
            })?;
            items
                .into_iter()
                .map(|item| {
                    if let Some(name) = item.clone().try_cast::<ImmutableString>() {
                        return Check::builtin(&name).ok_or_else(|| {
                            script_err(format!(
                                "ctx.guard_output: unknown check `{name}`; use \"email\", \"phone\", \"card\", ctx.regex(...) or ctx.data(...)"
                            ))
                        });
                    }
                    if let Some(r) = item.clone().try_cast::<ScriptRegex>() {
                        return Ok(Check::Pattern(r));
                    }
                    if let Some(d) = item.try_cast::<DataFile>() {
                        return Ok(Check::Words(d));
                    }
                    Err(script_err(
                        "ctx.guard_output: a check is a name, ctx.regex(...) or ctx.data(...)",
                    ))
                })
                .collect()
        };
        for key in spec.keys() {
            if !matches!(key.as_str(), "block" | "redact" | "hold" | "replacement") {
                return Err(script_err(format!(
                    "ctx.guard_output: unknown field `{key}` (block, redact, hold, replacement)"
                )));
            }
        }
        let hold = match spec.get("hold") {
            None => DEFAULT_HOLD,
            Some(h) => h
                .as_int()
                .ok()
                .and_then(|h| usize::try_from(h).ok())
                .filter(|h| *h <= MAX_HOLD)
                .ok_or_else(|| {
                    script_err(format!(
                        "ctx.guard_output: `hold` is a number of characters, 0 to {MAX_HOLD}"
                    ))
                })?,
        };
        let replacement = match spec.get("replacement") {
            None => DEFAULT_REPLACEMENT.to_string(),
            Some(r) => r
                .clone()
                .into_immutable_string()
                .map_err(|_| script_err("ctx.guard_output: `replacement` is a string"))?
                .to_string(),
        };
        let declared = OutputGuard {
            block: checks("block")?,
            redact: checks("redact")?,
            replacement,
            hold,
        };
        let mut inner = self.lock();
        let merged = match inner.decision.output_guard.take() {
            Some(existing) => {
                let mut g = (*existing.0).clone();
                g.merge(declared);
                g
            }
            None => declared,
        };
        inner.decision.output_guard = Some(super::decision::GuardRef(Arc::new(merged)));
        Ok(())
    }

    /// Sends a copy of `share` (0..1) of requests to `target` after the reply, for comparison
    /// (`proxy/mirror.rs`). The draw is made here, so a simulation shows it.
    fn mirror(&mut self, target: ImmutableString, share: Dynamic) -> Res<()> {
        let share = share
            .as_float()
            .ok()
            .or_else(|| share.as_int().ok().map(|i| i as f64))
            .filter(|s| (0.0..=1.0).contains(s))
            .ok_or_else(|| script_err("ctx.mirror: the share is a number from 0 to 1"))?;
        if target.is_empty() {
            return Err(script_err("ctx.mirror: the target is `provider/model`"));
        }
        let sampled = share > 0.0 && rand::random::<f64>() < share;
        let mut inner = self.lock();
        if sampled {
            inner
                .decision
                .tags
                .insert("shadow".to_string(), "primary".to_string());
        } else if inner.decision.tags.get("shadow").map(String::as_str) == Some("primary") {
            inner.decision.tags.remove("shadow");
        }
        inner.decision.mirror = Some(super::decision::Mirror {
            target: target.to_string(),
            share,
            sampled,
        });
        Ok(())
    }

    /// A provider's health and models' prices, or `()` for a provider not serving.
    fn provider(&mut self, name: ImmutableString) -> Dynamic {
        let source = self.lock().env.providers.clone();
        source
            .and_then(|s| s.provider(&name))
            .map_or(Dynamic::UNIT, |p| p.to_dynamic())
    }

    fn providers(&mut self) -> Array {
        let source = self.lock().env.providers.clone();
        source
            .map(|s| s.providers().iter().map(|p| p.to_dynamic()).collect())
            .unwrap_or_default()
    }

    /// `pool` ordered for `key` by rendezvous hashing: the same key puts the same member first
    /// for as long as the pool is the same, on every instance and across reloads, and when a
    /// member is skipped (its breaker open) only its keys move, each to its own second choice.
    /// No state is kept.
    fn route_affinity(&mut self, pool: Array, key: ImmutableString) -> Res<()> {
        self.route_affinity_then(pool, key, Array::new())
    }

    fn route_affinity_then(
        &mut self,
        pool: Array,
        key: ImmutableString,
        fallbacks: Array,
    ) -> Res<()> {
        let pool = strings(pool, "ctx.route_affinity")?;
        if pool.is_empty() {
            return Err(script_err("ctx.route_affinity: the pool is empty"));
        }
        let fallbacks = strings(fallbacks, "ctx.route_affinity")?;
        let ordered = affinity_order(pool, &key);
        let mut inner = self.lock();
        inner.decision.route.routes = ordered.into_iter().chain(fallbacks).collect();
        inner.decision.route.balance = None;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_script(&self, name: &Arc<str>) {
        self.lock().script = Some(name.clone());
    }

    pub fn decision(&self) -> Decision {
        self.lock().decision.clone()
    }

    /// The decisions, leaving an empty one behind: for the end of the chain, without a copy.
    pub fn take_decision(&self) -> Decision {
        std::mem::take(&mut self.lock().decision)
    }

    pub fn replace_decision(&self, decision: Decision) {
        self.lock().decision = decision;
    }

    pub fn is_rejected(&self) -> bool {
        self.lock().decision.rejection.is_some()
    }

    fn route_one(&mut self, target: ImmutableString) {
        let mut inner = self.lock();
        inner.decision.route.routes = vec![target.to_string()];
        inner.decision.route.balance = None;
    }

    fn route_many(&mut self, targets: Array) -> Res<()> {
        let routes = strings(targets, "ctx.route")?;
        let mut inner = self.lock();
        inner.decision.route.routes = routes;
        inner.decision.route.balance = None;
        Ok(())
    }

    /// `pool` are equals, tried in the strategy's order; `fallbacks` follow in order.
    fn balanced(
        &mut self,
        pool: Vec<String>,
        weights: Vec<(String, u32)>,
        strategy: &str,
        fallbacks: Array,
    ) -> Res<()> {
        let strategy = Strategy::parse(strategy).ok_or_else(|| {
            script_err(format!(
                "ctx.route_balanced: unknown strategy `{strategy}`; use \"round_robin\", \"weighted\" or \"latency\""
            ))
        })?;
        let fallbacks = strings(fallbacks, "ctx.route_balanced")?;
        let mut inner = self.lock();
        inner.decision.route.balance = Some(Balance {
            strategy,
            pool: pool.len(),
            weights,
        });
        inner.decision.route.routes = pool.into_iter().chain(fallbacks).collect();
        Ok(())
    }

    fn route_balanced(&mut self, pool: Array, strategy: ImmutableString) -> Res<()> {
        self.route_balanced_then(pool, strategy, Array::new())
    }

    fn route_balanced_then(
        &mut self,
        pool: Array,
        strategy: ImmutableString,
        fallbacks: Array,
    ) -> Res<()> {
        let pool = strings(pool, "ctx.route_balanced")?;
        self.balanced(pool, vec![], &strategy, fallbacks)
    }

    fn route_weighted(&mut self, weights: Map, strategy: ImmutableString) -> Res<()> {
        self.route_weighted_then(weights, strategy, Array::new())
    }

    /// The map form: `#{"a/m": 3, "b/m": 1}`, the pool in name order with these weights.
    fn route_weighted_then(
        &mut self,
        weights: Map,
        strategy: ImmutableString,
        fallbacks: Array,
    ) -> Res<()> {
        let mut pool = Vec::with_capacity(weights.len());
        let mut table = Vec::with_capacity(weights.len());
        for (route, weight) in &weights {
            let w = weight
                .as_int()
                .ok()
                .and_then(|w| u32::try_from(w).ok())
                .filter(|w| (1..=10_000).contains(w))
                .ok_or_else(|| {
                    script_err(format!(
                        "ctx.route_balanced: weight of `{route}` must be an integer from 1 to 10000"
                    ))
                })?;
            pool.push(route.to_string());
            table.push((route.to_string(), w));
        }
        self.balanced(pool, table, &strategy, fallbacks)
    }

    /// The first-byte timeout for this request, over the providers' own.
    fn timeout(&mut self, secs: Dynamic) -> Res<()> {
        let secs = seconds(&secs, "ctx.timeout")?;
        self.lock().decision.route.timeouts.first_byte_secs = Some(secs);
        Ok(())
    }

    /// `#{first_byte: 5, idle: 30, total: 120}`; keys left out keep their value.
    fn timeouts(&mut self, map: Map) -> Res<()> {
        let mut t = self.lock().decision.route.timeouts;
        for (key, value) in &map {
            let secs = Some(seconds(value, "ctx.timeouts")?);
            match key.as_str() {
                "first_byte" => t.first_byte_secs = secs,
                "idle" => t.idle_secs = secs,
                "total" => t.total_secs = secs,
                other => {
                    return Err(script_err(format!(
                        "ctx.timeouts: unknown key `{other}`; use first_byte, idle, total"
                    )))
                }
            }
        }
        self.lock().decision.route.timeouts = t;
        Ok(())
    }

    fn cache(&mut self, ttl_secs: i64) -> Res<()> {
        let ttl = u64::try_from(ttl_secs)
            .map_err(|_| script_err(format!("ctx.cache takes seconds >= 0, got {ttl_secs}")))?;
        // 0 turns caching off again, so a later script can undo an earlier one.
        self.lock().decision.cache_ttl = (ttl > 0).then_some(ttl);
        Ok(())
    }

    /// Adds a limit of this kind; the same name again replaces the earlier one (later
    /// scripts override).
    fn push_limit(&mut self, limit: Limit) {
        let mut inner = self.lock();
        let limits = match limit.kind {
            LimitKind::Tokens => &mut inner.decision.token_limits,
            LimitKind::MicroUsd => &mut inner.decision.cost_limits,
            _ => &mut inner.decision.limits,
        };
        limits.retain(|l| l.name != limit.name);
        limits.push(limit);
    }

    fn limit(&mut self, name: ImmutableString, max: i64, window_secs: i64) -> Res<()> {
        let window = positive(window_secs, "ctx.limit window")?;
        self.limit_in(name, max, window)
    }

    fn limit_period(
        &mut self,
        name: ImmutableString,
        max: i64,
        period: ImmutableString,
    ) -> Res<()> {
        let window = period_secs(&period, "ctx.limit")?;
        self.limit_in(name, max, window)
    }

    fn limit_in(&mut self, name: ImmutableString, max: i64, window: u64) -> Res<()> {
        let max = u64::try_from(max)
            .map_err(|_| script_err(format!("ctx.limit max must be >= 0, got {max}")))?;
        self.push_limit(Limit::new(name.as_str(), max, window, LimitKind::Requests));
        Ok(())
    }

    fn token_limit(&mut self, name: ImmutableString, max: i64, window_secs: i64) -> Res<()> {
        let window = positive(window_secs, "ctx.token_limit window")?;
        self.token_limit_in(name, max, window)
    }

    fn token_limit_period(
        &mut self,
        name: ImmutableString,
        max: i64,
        period: ImmutableString,
    ) -> Res<()> {
        let window = period_secs(&period, "ctx.token_limit")?;
        self.token_limit_in(name, max, window)
    }

    fn token_limit_in(&mut self, name: ImmutableString, max: i64, window: u64) -> Res<()> {
        self.token_budget(name, max, window, false)
    }

    fn token_budget(
        &mut self,
        name: ImmutableString,
        max: i64,
        window: u64,
        hard: bool,
    ) -> Res<()> {
        let max = u64::try_from(max)
            .map_err(|_| script_err(format!("ctx.token_limit max must be >= 0, got {max}")))?;
        let limit = Limit::new(name.as_str(), max, window, LimitKind::Tokens).hard(hard);
        self.push_limit(limit);
        Ok(())
    }

    /// A token budget that ends a stream mid-way rather than let it pass its limit.
    fn hard_token_limit(&mut self, name: ImmutableString, max: i64, window_secs: i64) -> Res<()> {
        let window = positive(window_secs, "ctx.hard_token_limit window")?;
        self.token_budget(name, max, window, true)
    }

    fn hard_token_limit_period(
        &mut self,
        name: ImmutableString,
        max: i64,
        period: ImmutableString,
    ) -> Res<()> {
        let window = period_secs(&period, "ctx.hard_token_limit")?;
        self.token_budget(name, max, window, true)
    }

    /// A cost budget in USD (counted in millionths), from the served model's pricing.
    fn cost_limit(
        &mut self,
        name: ImmutableString,
        usd: Dynamic,
        period: ImmutableString,
    ) -> Res<()> {
        self.cost_budget(name, usd, period, false)
    }

    /// A cost budget that ends a stream mid-way rather than let it pass its limit.
    fn hard_cost_limit(
        &mut self,
        name: ImmutableString,
        usd: Dynamic,
        period: ImmutableString,
    ) -> Res<()> {
        self.cost_budget(name, usd, period, true)
    }

    fn cost_budget(
        &mut self,
        name: ImmutableString,
        usd: Dynamic,
        period: ImmutableString,
        hard: bool,
    ) -> Res<()> {
        let window = period_secs(&period, "ctx.cost_limit")?;
        let usd = usd
            .as_float()
            .or_else(|_| usd.as_int().map(|i| i as f64))
            .ok()
            .filter(|u| u.is_finite() && *u >= 0.0)
            .ok_or_else(|| script_err("ctx.cost_limit takes a number of USD, 0 or more"))?;
        let max = crate::store::limits::micro_usd(usd);
        self.push_limit(Limit::new(name.as_str(), max, window, LimitKind::MicroUsd).hard(hard));
        Ok(())
    }

    fn reject(&mut self, status: i64, message: ImmutableString) -> Res<()> {
        let status = u16::try_from(status)
            .ok()
            .filter(|s| (400..=599).contains(s))
            .ok_or_else(|| {
                script_err(format!("ctx.reject status must be 400..599, got {status}"))
            })?;
        let mut inner = self.lock();
        let script = inner.script.as_deref().unwrap_or_default().to_string();
        inner.decision.rejection = Some(Rejection {
            status,
            message: message.to_string(),
            script,
        });
        Err(Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from(REJECT_SIGNAL),
            Position::NONE,
        )))
    }

    fn set_header(&mut self, name: ImmutableString, value: ImmutableString) -> Res<()> {
        let lower = name.to_ascii_lowercase();
        if actix_web::http::header::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(script_err(format!("`{name}` is not a valid header name")));
        }
        if actix_web::http::header::HeaderValue::from_str(&value).is_err() {
            return Err(script_err(format!(
                "the value for header `{name}` is not valid"
            )));
        }
        self.lock()
            .decision
            .route
            .headers
            .insert(lower, value.to_string());
        Ok(())
    }

    fn tag(&mut self, key: ImmutableString, value: ImmutableString) {
        self.lock()
            .decision
            .tags
            .insert(key.to_string(), value.to_string());
    }

    /// The count in the current window; window 0 is the all-time counter (split exposures
    /// are counted there as `exposures:<split>:<variant>`).
    fn count(&mut self, name: ImmutableString, window_secs: i64) -> Res<i64> {
        let window = u64::try_from(window_secs)
            .map_err(|_| script_err(format!("ctx.count window must be >= 0, got {window_secs}")))?;
        let inner = self.lock();
        let count = inner
            .env
            .counters
            .peek(&name, window)
            .saturating_add(inner.decision.writes.pending(&name, window));
        Ok(count.min(i64::MAX as u64) as i64)
    }

    /// Adds to a counter (for example errors per provider, from `on_response`). Simulation
    /// changes nothing.
    fn incr(&mut self, name: ImmutableString, window_secs: i64, amount: i64) -> Res<()> {
        let window = u64::try_from(window_secs)
            .map_err(|_| script_err(format!("ctx.incr window must be >= 0, got {window_secs}")))?;
        let amount = u64::try_from(amount)
            .map_err(|_| script_err(format!("ctx.incr amount must be >= 0, got {amount}")))?;
        let mut inner = self.lock();
        if !inner.env.simulate {
            inner.decision.writes.counters.push(CounterAdd {
                name: name.to_string(),
                window_secs: window,
                amount,
            });
        }
        Ok(())
    }

    fn split_default(&mut self, name: ImmutableString, weights: Map) -> Res<ImmutableString> {
        let sticky = self.lock().key_id.as_str().into();
        self.split(name, weights, sticky)
    }

    /// Sticky, deterministic weighted assignment. An existing assignment stays while its
    /// variant still has weight, whatever the other weights become.
    fn split(
        &mut self,
        name: ImmutableString,
        weights: Map,
        sticky: ImmutableString,
    ) -> Res<ImmutableString> {
        let mut table: Vec<(&str, u64)> = Vec::with_capacity(weights.len());
        for (variant, weight) in &weights {
            let w = weight
                .as_int()
                .ok()
                .and_then(|w| u64::try_from(w).ok())
                .ok_or_else(|| {
                    script_err(format!(
                        "split `{name}`: weight of `{variant}` must be an integer >= 0"
                    ))
                })?;
            table.push((variant.as_str(), w));
        }
        let total: u64 = table.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err(script_err(format!(
                "split `{name}` has no variant with weight above 0"
            )));
        }
        // One lock for the whole call: the stores have their own locks and never call back.
        let mut inner = self.lock();
        let live = |v: &str| table.iter().any(|(name, w)| *name == v && *w > 0);
        let existing = match inner.decision.writes.assigned(&name, &sticky) {
            Some(v) => Some(v.to_string()),
            None => inner.env.assignments.get(&name, &sticky),
        }
        .filter(|v| live(v));
        let simulate = inner.env.simulate;
        let writes = &mut inner.decision.writes;
        let variant = match existing {
            Some(v) => v,
            None => {
                let chosen = pick(&name, &sticky, &table, total).to_string();
                if !simulate {
                    writes.assignments.push(Assignment {
                        split: name.to_string(),
                        sticky: sticky.to_string(),
                        variant: chosen.clone(),
                    });
                }
                chosen
            }
        };
        if !simulate {
            writes.counters.push(CounterAdd {
                name: format!("exposures:{name}:{variant}"),
                window_secs: 0,
                amount: 1,
            });
        }
        inner
            .decision
            .variants
            .insert(name.to_string(), variant.clone());
        Ok(variant.into())
    }

    fn routes(&mut self) -> Array {
        self.lock()
            .decision
            .route
            .routes
            .iter()
            .map(|r| Dynamic::from(r.clone()))
            .collect()
    }

    fn cache_ttl(&mut self) -> Dynamic {
        match self.lock().decision.cache_ttl {
            Some(ttl) => Dynamic::from(ttl as i64),
            None => Dynamic::UNIT,
        }
    }

    fn variants(&mut self) -> Map {
        to_map(&self.lock().decision.variants)
    }

    fn tags(&mut self) -> Map {
        to_map(&self.lock().decision.tags)
    }

    fn headers(&mut self) -> Map {
        to_map(&self.lock().decision.route.headers)
    }

    pub fn register(engine: &mut Engine) {
        engine
            .register_type_with_name::<PolicyCtx>("Ctx")
            .register_fn("route", Self::route_one)
            .register_fn("route", Self::route_many)
            .register_fn("route_balanced", Self::route_balanced)
            .register_fn("route_balanced", Self::route_balanced_then)
            .register_fn("route_balanced", Self::route_weighted)
            .register_fn("route_balanced", Self::route_weighted_then)
            .register_fn("timeout", Self::timeout)
            .register_fn("timeouts", Self::timeouts)
            .register_fn("cache", Self::cache)
            .register_fn("limit", Self::limit)
            .register_fn("limit", Self::limit_period)
            .register_fn("token_limit", Self::token_limit)
            .register_fn("token_limit", Self::token_limit_period)
            .register_fn("hard_token_limit", Self::hard_token_limit)
            .register_fn("hard_token_limit", Self::hard_token_limit_period)
            .register_fn("cost_limit", Self::cost_limit)
            .register_fn("hard_cost_limit", Self::hard_cost_limit)
            .register_fn("reject", Self::reject)
            .register_fn("set_header", Self::set_header)
            .register_fn("tag", Self::tag)
            .register_fn("count", Self::count)
            .register_fn("incr", Self::incr)
            .register_fn("guard_output", Self::guard_output)
            .register_fn("mirror", Self::mirror)
            .register_fn("regex", Self::regex)
            .register_fn("data", Self::data)
            .register_fn("provider", Self::provider)
            .register_fn("providers", Self::providers)
            .register_fn("route_affinity", Self::route_affinity)
            .register_fn("route_affinity", Self::route_affinity_then)
            .register_fn("split", Self::split_default)
            .register_fn("split", Self::split)
            .register_get("routes", Self::routes)
            .register_get("cache_ttl", Self::cache_ttl)
            .register_get("variants", Self::variants)
            .register_get("tags", Self::tags)
            .register_get("headers", Self::headers);
    }
}

/// A point in [0, total) from the hash of (split, sticky id), mapped onto the weights in
/// variant-name order: the same inputs always give the same variant.
fn pick<'a>(split: &str, sticky: &str, table: &[(&'a str, u64)], total: u64) -> &'a str {
    let mut h = Sha256::new();
    h.update(split.as_bytes());
    h.update([0x1f]);
    h.update(sticky.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let mut point = u64::from_be_bytes(first) % total;
    for (variant, weight) in table {
        if point < *weight {
            return variant;
        }
        point -= weight;
    }
    table.last().map(|(v, _)| *v).unwrap_or_default()
}

/// Members in the order a key prefers them: highest SHA-256(key, member) first.
fn affinity_order(mut pool: Vec<String>, key: &str) -> Vec<String> {
    let score = |member: &str| {
        let digest = Sha256::new()
            .chain_update(key.as_bytes())
            .chain_update([0u8])
            .chain_update(member.as_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    };
    pool.sort_by_cached_key(|m| std::cmp::Reverse(score(m)));
    pool.dedup();
    pool
}

impl PolicyEnv {
    /// Makes the writes: the counters in one call, then each new assignment. A failure is
    /// logged and counted by the store; the request goes on with what was decided.
    pub async fn commit(&self, writes: StateWrites) {
        if self.simulate || writes.is_empty() {
            return;
        }
        if !writes.counters.is_empty() {
            if let Err(e) = self.counters.add(&writes.counters).await {
                log_failure("policy counters", &e);
            }
        }
        for a in &writes.assignments {
            if let Err(e) = self.assignments.set(&a.split, &a.sticky, &a.variant).await {
                log_failure("a split assignment", &e);
            }
        }
    }
}

fn log_failure(what: &str, e: &crate::store::StoreError) {
    // Storage failures are counted in the store's metrics and retried once it recovers.
    if e.is_storage() {
        tracing::debug!(error = %e, "could not persist {what}");
    } else {
        tracing::error!(error = %e, "could not persist {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_keeps_keys_on_their_member_and_moves_only_a_removed_members_keys() {
        let pool: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let mut counts = std::collections::HashMap::new();
        for i in 0..4000 {
            let key = format!("conv-{i}");
            let first = affinity_order(pool.clone(), &key);
            assert_eq!(first, affinity_order(pool.clone(), &key), "stable");
            *counts.entry(first[0].clone()).or_insert(0) += 1;
            // Without `b` (skipped), keys that preferred another member keep it; b's keys go
            // to their second choice.
            let without_b: Vec<String> = first.iter().filter(|m| *m != "b").cloned().collect();
            let pool_without_b: Vec<String> = pool.iter().filter(|m| *m != "b").cloned().collect();
            assert_eq!(affinity_order(pool_without_b, &key), without_b);
        }
        for member in ["a", "b", "c", "d"] {
            let n = counts[member];
            assert!((800..=1200).contains(&n), "{member}: {n} of 4000");
        }
    }

    #[test]
    fn picks_follow_weights_and_are_deterministic() {
        let table = [("a", 90), ("b", 10)];
        let mut b = 0;
        for i in 0..2000 {
            let v = pick("exp", &format!("user-{i}"), &table, 100);
            assert_eq!(v, pick("exp", &format!("user-{i}"), &table, 100));
            if v == "b" {
                b += 1;
            }
        }
        assert!(
            (120..=280).contains(&b),
            "about 10% should get b, got {b} of 2000"
        );
    }
}
