//! Prometheus metrics, kept in memory and rendered as text at `GET /metrics`.
//!
//! Labels stay low-cardinality: route patterns (not paths), status classes, provider and model
//! names from the configuration.
//!
//! The per-request figures (HTTP counts and latency, upstream calls, requests in flight) are
//! kept per thread (`Shard`): a worker records into its own, behind a mutex only a reader
//! (`/metrics`, the admin API) ever contends for, so no lock or counter is shared by every
//! request of every worker. Reading merges the threads' figures. The rare events (reloads,
//! webhook deliveries, drops) share one mutex.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use thread_local::ThreadLocal;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Time-per-output-token bucket bounds, in seconds: tokens come every few milliseconds.
const TOKEN_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        self.observe_in(&BUCKETS, secs);
    }

    fn observe_in(&mut self, buckets: &[f64; BUCKETS.len()], secs: f64) {
        for (i, bound) in buckets.iter().enumerate() {
            if secs <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// An estimate of quantile `q` from the buckets (upper bound of the bucket it falls in).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q * self.count as f64).ceil() as u64;
        BUCKETS
            .iter()
            .zip(self.counts.iter())
            .find(|(_, c)| **c >= rank)
            .map(|(b, _)| *b)
            .or(Some(f64::INFINITY))
    }
}

#[derive(Default, Clone)]
struct Upstream {
    requests: u64,
    errors: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost_usd: f64,
    cache_hits: u64,
    latency: Histogram,
    /// Streams: from the request's arrival to the first content chunk.
    time_to_first_token: Histogram,
    /// Streams: from the first token to the end, per output token after the first
    /// (`TOKEN_BUCKETS`).
    time_per_output_token: Histogram,
}

impl Upstream {
    fn merge(&mut self, other: &Upstream) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost_usd += other.cost_usd;
        self.cache_hits += other.cache_hits;
        self.latency.merge(&other.latency);
        self.time_to_first_token.merge(&other.time_to_first_token);
        self.time_per_output_token
            .merge(&other.time_per_output_token);
    }
}

/// HTTP methods counted by name; others are counted as `OTHER`.
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OTHER"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One route's figures: counts by method and status class, and latency.
#[derive(Default, Clone)]
struct Route {
    counts: [[u64; CLASSES.len()]; METHODS.len()],
    latency: Histogram,
}

impl Route {
    fn merge(&mut self, other: &Route) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m += t;
            }
        }
        self.latency.merge(&other.latency);
    }
}

/// One thread's per-request figures. Looked up by `&str`, so a known route, provider or model
/// costs no allocation.
#[derive(Default)]
struct Figures {
    /// Route pattern → figures.
    http: HashMap<String, Route>,
    /// provider → model → figures.
    upstream: HashMap<String, HashMap<String, Upstream>>,
}

impl Figures {
    /// Updates a provider's and model's figures, creating them the first time.
    fn upstream(&mut self, provider: &str, model: &str, update: impl FnOnce(&mut Upstream)) {
        let models = match self.upstream.get_mut(provider) {
            Some(models) => models,
            None => self.upstream.entry(provider.to_string()).or_default(),
        };
        let figures = match models.get_mut(model) {
            Some(figures) => figures,
            None => models.entry(model.to_string()).or_default(),
        };
        update(figures);
    }
}

/// What one thread records: its figures, and its requests in flight (a request counts down on
/// the thread it started on, so a shard's count can go below zero only while another thread
/// ends what this one started; the sum is right).
#[derive(Default)]
struct Shard {
    figures: Mutex<Figures>,
    in_flight: AtomicI64,
}

impl Shard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Figures> {
        self.figures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every thread's figures merged, sorted for rendering.
#[derive(Default)]
struct Merged {
    http: BTreeMap<String, Route>,
    upstream: BTreeMap<(String, String), Upstream>,
}

#[derive(Default)]
struct Inner {
    /// outcome → count
    reloads: BTreeMap<String, u64>,
    /// Request log entries (with their usage) held in memory, not yet on disk.
    accounting_held: u64,
    /// Held entries dropped: more than the cap waited, or they could not be written on stop.
    accounting_dropped: u64,
    /// (event, outcome) -> finished webhook deliveries
    webhook_deliveries: BTreeMap<(String, &'static str), u64>,
    /// result -> webhook delivery attempts
    webhook_attempts: BTreeMap<&'static str, u64>,
    /// Events dropped because the webhook queue was full.
    webhook_events_dropped: u64,
    /// Spans that never reached the OTLP collector (queue full, export failed).
    otel_spans_dropped: u64,
}

/// A counter family over (provider, model): name, help, and how to read the value.
type Family = (&'static str, &'static str, fn(&Upstream) -> String);

pub struct Metrics {
    inner: Mutex<Inner>,
    /// The per-request figures, one shard per thread that recorded any.
    shards: ThreadLocal<Shard>,
    /// When this process's metrics began: the gateway's uptime.
    started: std::time::Instant,
    /// Per-request figures are not kept (`Settings::bench_off`, benchmarks only).
    off: bool,
    /// Events that are rare when all is well and come with every request when it is not (a
    /// client flooding past its limit, a failing script, a writer that is behind): atomics,
    /// so an overloaded gateway does not also queue its workers on `inner`'s lock.
    quota_rejections: AtomicU64,
    policy_errors: AtomicU64,
    dropped_log_entries: AtomicU64,
    mirrors_dropped: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inner: Mutex::default(),
            shards: ThreadLocal::new(),
            started: std::time::Instant::now(),
            off: false,
            quota_rejections: AtomicU64::new(0),
            policy_errors: AtomicU64::new(0),
            dropped_log_entries: AtomicU64::new(0),
            mirrors_dropped: AtomicU64::new(0),
        }
    }
}

/// Counts a request as in flight until dropped (so an error or a cancelled future counts
/// down too).
pub struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Per-provider figures for the admin API.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ProviderStats {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub cache_hits: u64,
}

fn class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Metrics that keep no per-request figures: for the benchmarks' CPU breakdown only
    /// (`Settings::bench_off`).
    pub fn per_request_off() -> Metrics {
        Metrics {
            off: true,
            ..Metrics::default()
        }
    }

    /// This thread's shard.
    fn shard(&self) -> &Shard {
        self.shards.get_or_default()
    }

    /// Every thread's figures, merged.
    fn merged(&self) -> Merged {
        let mut merged = Merged::default();
        for shard in self.shards.iter() {
            let figures = shard.lock();
            for (route, figures) in &figures.http {
                merged.http.entry(route.clone()).or_default().merge(figures);
            }
            for (provider, models) in &figures.upstream {
                for (model, u) in models {
                    merged
                        .upstream
                        .entry((provider.clone(), model.clone()))
                        .or_default()
                        .merge(u);
                }
            }
        }
        merged
    }

    /// Marks a request in flight until the guard is dropped.
    pub fn request_started(&self) -> InFlight<'_> {
        let count = &self.shard().in_flight;
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }

    /// Requests now between arrival and their response head.
    pub fn in_flight(&self) -> u64 {
        let sum: i64 = self
            .shards
            .iter()
            .map(|s| s.in_flight.load(Ordering::Relaxed))
            .sum();
        u64::try_from(sum).unwrap_or(0)
    }

    /// Time since the gateway started.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    pub fn http(&self, route: &str, method: &str, status: u16, secs: f64) {
        if self.off {
            return;
        }
        let m = METHODS[..5].iter().position(|x| *x == method).unwrap_or(5);
        let mut shard = self.shard().lock();
        let figures = match shard.http.get_mut(route) {
            Some(figures) => figures,
            None => shard.http.entry(route.to_string()).or_default(),
        };
        figures.counts[m][class(status)] += 1;
        figures.latency.observe(secs);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn upstream(
        &self,
        provider: &str,
        model: &str,
        ok: bool,
        cached: bool,
        prompt: u64,
        completion: u64,
        cost: f64,
        secs: f64,
    ) {
        if self.off {
            return;
        }
        self.shard().lock().upstream(provider, model, |u| {
            u.requests += 1;
            if !ok {
                u.errors += 1;
            }
            if cached {
                u.cache_hits += 1;
            } else {
                u.latency.observe(secs);
            }
            u.prompt_tokens += prompt;
            u.completion_tokens += completion;
            u.cost_usd += cost;
        });
    }

    /// A streamed reply's pace: time to the first token, and per output token after it.
    pub fn stream_timing(
        &self,
        provider: &str,
        model: &str,
        first_token_secs: f64,
        per_token_secs: Option<f64>,
    ) {
        if self.off {
            return;
        }
        self.shard().lock().upstream(provider, model, |u| {
            u.time_to_first_token.observe(first_token_secs);
            if let Some(secs) = per_token_secs {
                u.time_per_output_token.observe_in(&TOKEN_BUCKETS, secs);
            }
        });
    }

    pub fn otel_spans_dropped(&self, spans: u64) {
        self.lock().otel_spans_dropped += spans;
    }

    pub fn quota_rejection(&self) {
        self.quota_rejections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn policy_error(&self) {
        self.policy_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reload(&self, outcome: &str) {
        *self.lock().reloads.entry(outcome.to_string()).or_default() += 1;
    }

    pub fn dropped_log_entry(&self) {
        self.dropped_log_entries.fetch_add(1, Ordering::Relaxed);
    }

    /// A shadow copy (`ctx.mirror`) not sent: `--mirror-concurrency` copies were running.
    pub fn mirror_dropped(&self) {
        self.mirrors_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn accounting_held(&self, entries: u64) {
        self.lock().accounting_held = entries;
    }

    pub fn accounting_dropped(&self, entries: u64) {
        self.lock().accounting_dropped += entries;
    }

    /// A webhook delivery finished: `delivered` or `failed` (every attempt used, or refused).
    pub fn webhook_delivery(&self, event: &str, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        *self
            .lock()
            .webhook_deliveries
            .entry((event.to_string(), outcome))
            .or_default() += 1;
    }

    /// One webhook delivery attempt: a 2xx answer, or anything else.
    pub fn webhook_attempt(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        *self.lock().webhook_attempts.entry(result).or_default() += 1;
    }

    pub fn webhook_event_dropped(&self) {
        self.lock().webhook_events_dropped += 1;
    }

    /// Requests, errors and latency quantiles per provider, summed over its models.
    pub fn provider_stats(&self, provider: &str) -> ProviderStats {
        let mut latency = Histogram::default();
        let mut stats = ProviderStats::default();
        for shard in self.shards.iter() {
            let figures = shard.lock();
            for u in figures
                .upstream
                .get(provider)
                .into_iter()
                .flat_map(|m| m.values())
            {
                stats.requests += u.requests;
                stats.errors += u.errors;
                stats.cache_hits += u.cache_hits;
                latency.merge(&u.latency);
            }
        }
        if stats.requests > 0 {
            stats.error_rate = stats.errors as f64 / stats.requests as f64;
        }
        stats.latency_p50_ms = latency.quantile(0.5).map(|s| s * 1000.0);
        stats.latency_p95_ms = latency.quantile(0.95).map(|s| s * 1000.0);
        stats
    }

    pub fn render(&self) -> String {
        // Merged before the shared lock is taken: the two are never held together.
        let merged = self.merged();
        let inner = self.lock();
        let mut out = String::with_capacity(4096);
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");

        out.push_str("# HELP switchboard_http_requests_total HTTP requests by route pattern, method and status class.\n# TYPE switchboard_http_requests_total counter\n");
        for (route, figures) in &merged.http {
            for (m, by_class) in figures.counts.iter().enumerate() {
                for (c, n) in by_class.iter().enumerate().filter(|(_, n)| **n > 0) {
                    let _ = writeln!(
                        out,
                        "switchboard_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {n}",
                        esc(route),
                        METHODS[m],
                        CLASSES[c]
                    );
                }
            }
        }
        out.push_str("# HELP switchboard_http_request_duration_seconds Time to the response head (streams: to the first byte).\n# TYPE switchboard_http_request_duration_seconds histogram\n");
        for (route, figures) in &merged.http {
            write_histogram(
                &mut out,
                "switchboard_http_request_duration_seconds",
                &format!("route=\"{}\"", esc(route)),
                &figures.latency,
            );
        }
        let families: [Family; 6] = [
            (
                "switchboard_upstream_requests_total",
                "Upstream calls by provider and model: every attempt (retries and fallbacks included), and cache hits.",
                |u| u.requests.to_string(),
            ),
            (
                "switchboard_upstream_errors_total",
                "Upstream calls that failed (each failed attempt counts).",
                |u| u.errors.to_string(),
            ),
            (
                "switchboard_tokens_prompt_total",
                "Prompt tokens reported by upstreams.",
                |u| u.prompt_tokens.to_string(),
            ),
            (
                "switchboard_tokens_completion_total",
                "Completion tokens reported by upstreams.",
                |u| u.completion_tokens.to_string(),
            ),
            (
                "switchboard_cost_usd_total",
                "Cost in USD from providers.d pricing.",
                |u| format!("{}", u.cost_usd),
            ),
            (
                "switchboard_cache_hits_total",
                "Replies served from the cache.",
                |u| u.cache_hits.to_string(),
            ),
        ];
        for (name, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((provider, model), u) in &merged.upstream {
                let _ = writeln!(
                    out,
                    "{name}{{provider=\"{}\",model=\"{}\"}} {}",
                    esc(provider),
                    esc(model),
                    value(u)
                );
            }
        }
        out.push_str("# HELP switchboard_upstream_duration_seconds Request latency by provider and model (cache hits excluded).\n# TYPE switchboard_upstream_duration_seconds histogram\n");
        for ((provider, model), u) in &merged.upstream {
            write_histogram(
                &mut out,
                "switchboard_upstream_duration_seconds",
                &format!("provider=\"{}\",model=\"{}\"", esc(provider), esc(model)),
                &u.latency,
            );
        }
        out.push_str("# HELP switchboard_time_to_first_token_seconds Streams: from the request's arrival to the first content chunk, by provider and model.\n# TYPE switchboard_time_to_first_token_seconds histogram\n");
        for ((provider, model), u) in merged
            .upstream
            .iter()
            .filter(|(_, u)| u.time_to_first_token.count > 0)
        {
            write_histogram(
                &mut out,
                "switchboard_time_to_first_token_seconds",
                &format!("provider=\"{}\",model=\"{}\"", esc(provider), esc(model)),
                &u.time_to_first_token,
            );
        }
        out.push_str("# HELP switchboard_time_per_output_token_seconds Streams: (end - first token) / (output tokens - 1), by provider and model.\n# TYPE switchboard_time_per_output_token_seconds histogram\n");
        for ((provider, model), u) in merged
            .upstream
            .iter()
            .filter(|(_, u)| u.time_per_output_token.count > 0)
        {
            write_histogram_in(
                &mut out,
                "switchboard_time_per_output_token_seconds",
                &format!("provider=\"{}\",model=\"{}\"", esc(provider), esc(model)),
                &u.time_per_output_token,
                &TOKEN_BUCKETS,
            );
        }
        let _ = writeln!(out, "# HELP switchboard_quota_rejections_total Requests refused by a policy limit or token budget.\n# TYPE switchboard_quota_rejections_total counter\nswitchboard_quota_rejections_total {}", self.quota_rejections.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP switchboard_policy_errors_total Requests failed by a policy script error.\n# TYPE switchboard_policy_errors_total counter\nswitchboard_policy_errors_total {}", self.policy_errors.load(Ordering::Relaxed));
        out.push_str("# HELP switchboard_reloads_total Configuration reload attempts by outcome.\n# TYPE switchboard_reloads_total counter\n");
        for (outcome, n) in &inner.reloads {
            let _ = writeln!(
                out,
                "switchboard_reloads_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP switchboard_log_entries_dropped_total Request log entries dropped because the writer fell behind.\n# TYPE switchboard_log_entries_dropped_total counter\nswitchboard_log_entries_dropped_total {}", self.dropped_log_entries.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP switchboard_mirror_dropped_total Shadow copies (ctx.mirror) not sent because --mirror-concurrency copies were running.\n# TYPE switchboard_mirror_dropped_total counter\nswitchboard_mirror_dropped_total {}", self.mirrors_dropped.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP switchboard_accounting_held_entries Request log entries (with their usage) held in memory because they are not on disk yet: not written (the store cannot write) or not yet flushed.\n# TYPE switchboard_accounting_held_entries gauge\nswitchboard_accounting_held_entries {}", inner.accounting_held);
        let _ = writeln!(out, "# HELP switchboard_accounting_dropped_total Held request log entries (with their usage) dropped: beyond the cap while the store could not write, or still unwritten at shutdown.\n# TYPE switchboard_accounting_dropped_total counter\nswitchboard_accounting_dropped_total {}", inner.accounting_dropped);
        out.push_str("# HELP switchboard_webhook_deliveries_total Webhook deliveries finished, by event and outcome (delivered, or failed after its attempts).\n# TYPE switchboard_webhook_deliveries_total counter\n");
        for ((event, outcome), n) in &inner.webhook_deliveries {
            let _ = writeln!(
                out,
                "switchboard_webhook_deliveries_total{{event=\"{}\",outcome=\"{outcome}\"}} {n}",
                esc(event)
            );
        }
        out.push_str("# HELP switchboard_webhook_attempts_total Webhook delivery attempts, by result (success: a 2xx answer; failure: anything else).\n# TYPE switchboard_webhook_attempts_total counter\n");
        for (result, n) in &inner.webhook_attempts {
            let _ = writeln!(
                out,
                "switchboard_webhook_attempts_total{{result=\"{result}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP switchboard_webhook_events_dropped_total Events not delivered to webhooks because the queue was full.\n# TYPE switchboard_webhook_events_dropped_total counter\nswitchboard_webhook_events_dropped_total {}", inner.webhook_events_dropped);
        let _ = writeln!(out, "# HELP switchboard_otel_spans_dropped_total Trace spans that never reached the OTLP collector: the export queue was full, or their batch failed or timed out.\n# TYPE switchboard_otel_spans_dropped_total counter\nswitchboard_otel_spans_dropped_total {}", inner.otel_spans_dropped);
        out
    }
}

fn write_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    write_histogram_in(out, name, labels, h, &BUCKETS);
}

fn write_histogram_in(
    out: &mut String,
    name: &str,
    labels: &str,
    h: &Histogram,
    buckets: &[f64; BUCKETS.len()],
) {
    for (bound, count) in buckets.iter().zip(h.counts.iter()) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_quantiles() {
        let m = Metrics::default();
        m.http("/v1/chat/completions", "POST", 200, 0.003);
        m.http("/v1/chat/completions", "POST", 429, 0.001);
        m.upstream("mock", "echo", true, false, 3, 4, 0.5, 0.02);
        m.upstream("mock", "echo", false, false, 0, 0, 0.0, 0.2);
        let text = m.render();
        assert!(text.contains(r#"switchboard_http_requests_total{route="/v1/chat/completions",method="POST",status="2xx"} 1"#));
        assert!(text.contains(r#"switchboard_tokens_prompt_total{provider="mock",model="echo"} 3"#));
        assert!(text.contains(r#"switchboard_upstream_duration_seconds_bucket{provider="mock",model="echo",le="+Inf"} 2"#));
        let stats = m.provider_stats("mock");
        assert_eq!((stats.requests, stats.errors), (2, 1));
        assert_eq!(stats.latency_p50_ms, Some(25.0));
        assert_eq!(stats.latency_p95_ms, Some(250.0));
    }

    /// Metrics recorded by `record(metrics, i)` on four threads at once (`i`: 0 to 3).
    fn recorded_on_four_threads(record: fn(&Metrics, usize)) -> Metrics {
        let m = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let m = m.clone();
                std::thread::spawn(move || record(&m, i))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        std::sync::Arc::into_inner(m).unwrap()
    }

    #[test]
    fn the_overload_events_count_from_every_thread() {
        let m = recorded_on_four_threads(|m, _| {
            for _ in 0..1000 {
                m.quota_rejection();
                m.policy_error();
                m.dropped_log_entry();
                m.mirror_dropped();
            }
        });
        let text = m.render();
        for name in [
            "switchboard_quota_rejections_total",
            "switchboard_policy_errors_total",
            "switchboard_log_entries_dropped_total",
            "switchboard_mirror_dropped_total",
        ] {
            assert!(text.contains(&format!("\n{name} 4000\n")), "{name}: {text}");
        }
    }

    #[test]
    fn renders_stream_pace_and_dropped_spans() {
        let m = Metrics::default();
        m.stream_timing("mock", "echo", 0.2, Some(0.004));
        m.stream_timing("mock", "echo", 0.3, None);
        m.otel_spans_dropped(3);
        let text = m.render();
        assert!(text.contains(r#"switchboard_time_to_first_token_seconds_bucket{provider="mock",model="echo",le="0.25"} 1"#), "{text}");
        assert!(text.contains(
            r#"switchboard_time_to_first_token_seconds_count{provider="mock",model="echo"} 2"#
        ));
        assert!(text.contains(r#"switchboard_time_per_output_token_seconds_bucket{provider="mock",model="echo",le="0.005"} 1"#));
        assert!(text.contains(
            r#"switchboard_time_per_output_token_seconds_count{provider="mock",model="echo"} 1"#
        ));
        assert!(text.contains("switchboard_otel_spans_dropped_total 3"));
    }

    #[test]
    fn what_threads_record_apart_is_read_as_one() {
        let m = recorded_on_four_threads(|m, i| {
            for _ in 0..10 {
                m.http("/v1/chat/completions", "POST", 200, 0.003);
                m.upstream("mock", "echo", i != 0, false, 1, 2, 0.25, 0.02);
            }
            m.upstream("other", "echo", true, false, 0, 0, 0.0, 0.02);
        });
        let text = m.render();
        assert!(text.contains(r#"switchboard_http_requests_total{route="/v1/chat/completions",method="POST",status="2xx"} 40"#), "{text}");
        assert!(
            text.contains(
                r#"switchboard_tokens_completion_total{provider="mock",model="echo"} 80"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"switchboard_cost_usd_total{provider="mock",model="echo"} 10"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"switchboard_upstream_requests_total{provider="other",model="echo"} 4"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"switchboard_upstream_duration_seconds_count{provider="mock",model="echo"} 40"#
            ),
            "{text}"
        );
        let stats = m.provider_stats("mock");
        assert_eq!((stats.requests, stats.errors), (40, 10));
    }

    #[test]
    fn a_request_in_flight_counts_until_its_guard_drops_on_any_thread() {
        let m = Metrics::default();
        let here = m.request_started();
        // Started on another thread, ended here.
        let there = std::thread::scope(|s| s.spawn(|| m.request_started()).join().unwrap());
        assert_eq!(m.in_flight(), 2);
        drop(there);
        assert_eq!(m.in_flight(), 1);
        drop(here);
        assert_eq!(m.in_flight(), 0);
    }

    #[test]
    fn the_benchmarks_metrics_keep_no_per_request_figures() {
        let m = Metrics::per_request_off();
        m.http("/v1/chat/completions", "POST", 200, 0.003);
        m.upstream("mock", "echo", true, false, 3, 4, 0.5, 0.02);
        m.stream_timing("mock", "echo", 0.2, None);
        m.otel_spans_dropped(3);
        let text = m.render();
        assert!(!text.contains("switchboard_http_requests_total{"), "{text}");
        assert!(!text.contains(r#"provider="mock""#), "{text}");
        // What is not per request is still counted.
        assert!(text.contains("switchboard_otel_spans_dropped_total 3"));
    }
}
