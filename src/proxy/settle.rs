//! Stage 7, settle: what happens once a reply is complete (a JSON reply built, a stream
//! ended, however it ended): token budgets charged with real usage, the cache written,
//! `on_response` policies, the request log entry and usage.
//!
//! Only the budget charge happens on the request's own thread, since the next request must
//! see it. The rest runs as a task of its own whenever it has real work (a cache write, or
//! `on_response` scripts, which run on the blocking pool), so a request's latency never
//! includes it; without either, what is left is a queue push, done in place.

use super::admit::{self, Hold};
use crate::ledger_writer::Accountant;
use crate::policy::{Decision, PolicyEnv};
use crate::snapshot::Snapshot;
use crate::store::logs::LogEntry;
use crate::store::{CachedReply, ResponseCache};
use crate::telemetry::spans::attr;
use crate::telemetry::RequestTrace;
use crate::wire::Usage;
use bytes::Bytes;
use opentelemetry::KeyValue;
use rhai::{Dynamic, Map};
use std::sync::Arc;
use std::time::Instant;

/// Where to store the reply, if the policies asked for caching.
pub struct CachePut {
    pub cache: Arc<dyn ResponseCache>,
    pub key: Vec<u8>,
    pub ttl_secs: u64,
}

pub struct Aftermath {
    pub snapshot: Arc<Snapshot>,
    pub env: PolicyEnv,
    /// The request's limits, held since admission.
    pub hold: Hold,
    /// The prompt's estimated tokens, for a reply that reports no usage.
    pub prompt_estimate: u64,
    pub decision: Decision,
    pub key_id: String,
    pub provider: String,
    pub model: String,
    pub started: Instant,
    pub cached: bool,
    pub cache_put: Option<CachePut>,
    pub pricing: Option<crate::config::Pricing>,
    pub attempts: u32,
    /// The log entry begun when the request arrived; completed and queued here.
    pub log: LogEntry,
    pub accountant: Arc<Accountant>,
    /// Set when finished: the usage is an estimate (the reply reported none).
    pub usage_estimated: bool,
    /// For a stream's pace (time to first token, per output token).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The request's span, ended here with its usage and cost.
    pub trace: RequestTrace,
    /// A copy to send to a candidate once the reply is complete (`ctx.mirror`).
    pub mirror: Option<super::mirror::MirrorJob>,
    /// Where a complete reply's time is recorded for its provider (`ctx.provider`'s
    /// `latency_ms`); none for a cache hit.
    pub health: Option<Arc<crate::router::provider_health::Entry>>,
    /// A batch's request: told its cost when settled.
    pub batch: Option<Arc<super::request_id::BatchLine>>,
}

/// How the reply ended.
pub struct Completed {
    pub status: u16,
    pub usage: Option<Usage>,
    /// Bytes of text in the reply, counted when it reported no usage.
    pub text_bytes: usize,
    /// The JSON body, or the stream's payloads; only needed when caching or logging bodies.
    /// A stream whose payloads outgrew the relay's capture bound has neither.
    pub body: Option<Bytes>,
    pub payloads: Vec<Bytes>,
    /// False when a stream broke or the client left: such a reply is never cached.
    pub complete: bool,
    /// Why a stream broke.
    pub error: Option<String>,
    /// A stream's first content chunk.
    pub first_token: Option<Instant>,
    /// The choices' `finish_reason`s, read only when the request's span records.
    pub finish_reasons: Vec<String>,
}

impl Completed {
    /// A reply that did not reach the client as it came (refused by a guard, untranslatable):
    /// what it used still counts.
    pub fn failed(status: u16, usage: Option<Usage>, error: String) -> Completed {
        Completed {
            status,
            usage,
            text_bytes: 0,
            body: None,
            payloads: vec![],
            complete: false,
            error: Some(error),
            first_token: None,
            finish_reasons: Vec::new(),
        }
    }
}

impl Aftermath {
    pub fn finish(mut self, done: Completed) {
        let (usage, estimated) = self.usage_of(&done);
        // Budgets are charged with what the upstream used; a cache hit used nothing upstream.
        let cost = self.pricing.map_or(0.0, |p| p.cost(&usage));
        if let Some(batch) = &self.batch {
            batch.set_cost(if self.cached { 0.0 } else { cost });
        }
        let hold = std::mem::replace(&mut self.hold, Hold::none(self.env.counters.clone()));
        if self.cached {
            hold.settle(admit::actual(0, 0.0));
        } else {
            hold.settle(admit::actual(usage.total_tokens, cost));
        }
        self.usage_estimated = estimated;
        self.observe(&done, &usage, cost);
        if let Some(health) = &self.health {
            if !self.cached && done.complete && (200..300).contains(&done.status) {
                health.reply_completed(self.started.elapsed());
            }
        }
        // The request's latency ends here, whenever the rest runs.
        let latency_ms = self.started.elapsed().as_millis() as u64;
        let heavy = self.cache_put.is_some() || self.snapshot.policies.has_response_hooks();
        if !heavy {
            // What is left is a queue push: done in place.
            let decision = self.decision.clone();
            return self.record(done, usage, latency_ms, decision);
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.complete(done, usage, latency_ms));
            }
            // Outside a runtime (a test driving a reply by hand): run it here.
            Err(_) => match tokio::runtime::Builder::new_current_thread().build() {
                Ok(runtime) => runtime.block_on(self.complete(done, usage, latency_ms)),
                Err(e) => tracing::error!(error = %e, "could not settle a reply"),
            },
        }
    }

    /// A stream's pace in the metrics, and the request's span ended with what it used.
    fn observe(&self, done: &Completed, usage: &Usage, cost: f64) {
        if let (false, Some(first)) = (self.cached, done.first_token) {
            let to_first = first.saturating_duration_since(self.started).as_secs_f64();
            // The first token's interval is the time to it; the rest share what followed.
            let per_token = (!self.usage_estimated && usage.completion_tokens > 1)
                .then(|| first.elapsed().as_secs_f64() / (usage.completion_tokens - 1) as f64);
            self.metrics
                .stream_timing(&self.provider, &self.model, to_first, per_token);
        }
        self.trace.set(|| {
            let mut attributes = vec![
                KeyValue::new(attr::INPUT_TOKENS, usage.prompt_tokens as i64),
                KeyValue::new(attr::OUTPUT_TOKENS, usage.completion_tokens as i64),
                KeyValue::new(attr::COST_USD, if self.cached { 0.0 } else { cost }),
                KeyValue::new(attr::ATTEMPTS, self.attempts as i64),
            ];
            if self.usage_estimated {
                attributes.push(KeyValue::new(attr::USAGE_ESTIMATED, true));
            }
            if !done.finish_reasons.is_empty() {
                let reasons: Vec<opentelemetry::StringValue> = done
                    .finish_reasons
                    .iter()
                    .map(|r| r.clone().into())
                    .collect();
                attributes.push(KeyValue::new(
                    attr::FINISH_REASONS,
                    opentelemetry::Value::Array(reasons.into()),
                ));
            }
            attributes
        });
        let error = match (&done.error, done.complete) {
            (Some(e), _) => Some(e.as_str()),
            (None, false) => Some("the client disconnected before the end"),
            (None, true) => None,
        };
        self.trace.end(done.status, error);
    }

    /// Everything after the budget charge, off the request: cache write, `on_response` (on
    /// the blocking pool: scripts are CPU work), what the hooks counted, the log entry.
    async fn complete(self, done: Completed, usage: Usage, latency_ms: u64) {
        if let Some(put) = &self.cache_put {
            let kept = done.body.is_some() || !done.payloads.is_empty();
            if done.complete && done.status == 200 && kept {
                self.store(put, &done).await;
            }
        }
        let mut decision = if self.snapshot.policies.has_response_hooks() {
            let res = self.response_map(&done, usage, latency_ms);
            let (snapshot, env, key_id) =
                (self.snapshot.clone(), self.env.clone(), self.key_id.clone());
            let decision = self.decision.clone();
            let ran = tokio::task::spawn_blocking(move || {
                snapshot.policies.on_response(res, decision, env, key_id)
            })
            .await;
            match ran {
                Ok(decision) => decision,
                Err(e) => {
                    tracing::error!(error = %e, "on_response did not finish");
                    self.decision.clone()
                }
            }
        } else {
            self.decision.clone()
        };
        self.env.commit(std::mem::take(&mut decision.writes)).await;
        self.record(done, usage, latency_ms, decision);
    }

    /// Completes the log entry begun when the request arrived and queues it.
    fn record(self, done: Completed, usage: Usage, latency_ms: u64, decision: Decision) {
        let mut log = self.log;
        log.provider = Some(self.provider);
        log.model = Some(self.model);
        log.status = done.status;
        log.latency_ms = latency_ms;
        log.ttft_ms = done
            .first_token
            .filter(|_| !self.cached)
            .map(|first| first.saturating_duration_since(self.started).as_millis() as u64);
        log.prompt_tokens = usage.prompt_tokens;
        log.completion_tokens = usage.completion_tokens;
        log.total_tokens = usage.total_tokens;
        log.cached_tokens = usage.cached_tokens();
        log.cache_write_tokens = usage.cache_write_tokens();
        log.cost_usd = self.pricing.map_or(0.0, |p| p.cost(&usage));
        log.cached = self.cached;
        log.usage_estimated = self.usage_estimated;
        log.attempts = self.attempts;
        log.variants = decision.variants;
        log.tags = decision.tags;
        if !done.complete {
            log.error = Some(
                done.error
                    .unwrap_or_else(|| "the client disconnected before the end".into()),
            );
        }
        if let Some(job) = self.mirror {
            // Only a complete reply from the provider is worth comparing with.
            if done.complete && !self.cached && (200..300).contains(&done.status) {
                let (text, finish_reason) =
                    super::mirror::reply_text(done.body.as_ref(), &done.payloads);
                let primary = super::mirror::Primary {
                    request_id: log.request_id.clone(),
                    key_id: log.key_id.clone(),
                    team: log.team.clone(),
                    endpoint: log.endpoint.clone(),
                    format: log.format.clone(),
                    latency_ms,
                    usage,
                    cost_usd: log.cost_usd,
                    finish_reason,
                    text,
                };
                super::mirror::spawn(job, primary, self.snapshot.clone(), self.accountant.clone());
            }
        }
        if self.accountant.log_bodies {
            let reply = match (&done.body, done.payloads.is_empty()) {
                (Some(body), _) => Some(String::from_utf8_lossy(body).into_owned()),
                (None, false) => Some(crate::wire::chunks::assemble_payloads(&done.payloads)),
                (None, true) => None,
            };
            // The log keeps what the client was given: redacted text stays redacted here.
            log.response_body = match &decision.output_guard {
                Some(guard) => reply.map(|text| guarded_for_log(&guard.0, text)),
                None => reply,
            };
        }
        self.accountant.record(log);
    }

    async fn store(&self, put: &CachePut, done: &Completed) {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let entry = CachedReply {
            provider: self.provider.clone(),
            model: self.model.clone(),
            expires_at: crate::clock::now_secs() + put.ttl_secs,
            body: done.body.as_ref().map(text),
            chunks: done.payloads.iter().map(text).collect(),
        };
        match put.cache.put(&put.key, &entry).await {
            Ok(()) => {}
            // Counted in the store's metrics; readiness says why the store cannot write.
            Err(e) if e.is_storage() => {
                tracing::debug!(error = %e, "could not store a reply in the cache")
            }
            Err(e) => tracing::error!(error = %e, "could not store a reply in the cache"),
        }
    }

    /// What the reply used: the upstream's figures, or, when it reported none for a reply
    /// that produced text, an estimate (the prompt's, and the text's at 4 bytes a token).
    /// Nothing is taken as 0 because it was unknown.
    fn usage_of(&self, done: &Completed) -> (Usage, bool) {
        match done.usage {
            Some(usage) => (usage, false),
            // A reply that produced text was charged for it, even one ended for a budget.
            None if !self.cached && (done.status < 400 || done.text_bytes > 0) => {
                let completion = super::estimate::text_tokens(done.text_bytes);
                let usage = Usage::new(self.prompt_estimate, completion);
                (usage, true)
            }
            None => (Usage::default(), false),
        }
    }

    fn response_map(&self, done: &Completed, usage: Usage, latency_ms: u64) -> Map {
        let mut usage_map = Map::new();
        usage_map.insert("prompt_tokens".into(), (usage.prompt_tokens as i64).into());
        usage_map.insert(
            "completion_tokens".into(),
            (usage.completion_tokens as i64).into(),
        );
        usage_map.insert("total_tokens".into(), (usage.total_tokens as i64).into());
        usage_map.insert(
            "cached_tokens".into(),
            (usage.cached_tokens() as i64).into(),
        );
        usage_map.insert(
            "cache_write_tokens".into(),
            (usage.cache_write_tokens() as i64).into(),
        );
        let variants: Map = self
            .decision
            .variants
            .iter()
            .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
            .collect();
        let mut res = Map::new();
        res.insert("status".into(), (done.status as i64).into());
        res.insert("provider".into(), Dynamic::from(self.provider.clone()));
        res.insert("model".into(), Dynamic::from(self.model.clone()));
        res.insert("usage".into(), usage_map.into());
        res.insert("latency_ms".into(), (latency_ms as i64).into());
        res.insert("cached".into(), self.cached.into());
        res.insert("complete".into(), done.complete.into());
        res.insert(
            "variant".into(),
            self.decision
                .variant_header()
                .map(Dynamic::from)
                .unwrap_or(Dynamic::UNIT),
        );
        res.insert("variants".into(), variants.into());
        res
    }
}

/// A logged reply with the request's output guard applied, as the client got it; a blocked
/// reply is logged as blocked, without its text.
fn guarded_for_log(guard: &crate::policy::guard::OutputGuard, reply: String) -> String {
    match super::guarded::guard_json(guard, Bytes::from(reply)) {
        Ok(body) => String::from_utf8_lossy(&body).into_owned(),
        Err(blocked) => format!("({blocked})"),
    }
}
