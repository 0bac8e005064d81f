//! Stage 7, settle: what happens once a reply is complete (a JSON reply built, a stream
//! ended, however it ended): token budgets charged with real usage, the cache written,
//! `on_response` policies, the request log entry and usage.
//!
//! Only the budget charge happens on the request's own thread, since the next request must
//! see it. The rest leaves the actix worker (a blocking-pool thread) whenever it has real
//! work (a cache write or `on_response` scripts), so a request's latency never includes it;
//! without either, what is left is a queue push, done in place.

use crate::accounting::{self, Accountant};
use crate::policy::{Decision, PolicyEnv};
use crate::snapshot::Snapshot;
use crate::store::logs::LogEntry;
use crate::store::{CachedReply, CounterStore, ResponseCache};
use crate::wire::Usage;
use bytes::Bytes;
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
    pub counters: Arc<dyn CounterStore>,
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
}

/// How the reply ended.
pub struct Completed {
    pub status: u16,
    pub usage: Option<Usage>,
    /// The JSON body, or the stream's payloads; only needed when caching or logging bodies.
    /// A stream whose payloads outgrew the relay's capture bound has neither.
    pub body: Option<Bytes>,
    pub payloads: Vec<Bytes>,
    /// False when a stream broke or the client left: such a reply is never cached.
    pub complete: bool,
    /// Why a stream broke.
    pub error: Option<String>,
}

impl Aftermath {
    pub fn finish(self, done: Completed) {
        let usage = done.usage.unwrap_or_default();
        // Token budgets are charged with what the upstream really reported; cache hits cost
        // the upstream nothing and are not charged.
        if !self.cached && usage.total_tokens > 0 {
            for limit in &self.decision.token_limits {
                self.counters
                    .add(&limit.name, limit.window_secs, usage.total_tokens);
            }
        }
        // The request's latency ends here, whenever the rest runs.
        let latency_ms = self.started.elapsed().as_millis() as u64;
        let heavy = self.cache_put.is_some() || self.snapshot.policies.has_response_hooks();
        if heavy {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn_blocking(move || self.complete(done, usage, latency_ms));
                return;
            }
        }
        self.complete(done, usage, latency_ms);
    }

    /// Everything after the budget charge: cache write, `on_response`, the log entry.
    fn complete(self, done: Completed, usage: Usage, latency_ms: u64) {
        if let Some(put) = &self.cache_put {
            let kept = done.body.is_some() || !done.payloads.is_empty();
            if done.complete && done.status == 200 && kept {
                self.store(put, &done);
            }
        }
        let res = self.response_map(&done, usage, latency_ms);
        let decision =
            self.snapshot
                .policies
                .on_response(res, self.decision, self.env, self.key_id);
        let mut log = self.log;
        log.provider = Some(self.provider);
        log.model = Some(self.model);
        log.status = done.status;
        log.latency_ms = latency_ms;
        log.prompt_tokens = usage.prompt_tokens;
        log.completion_tokens = usage.completion_tokens;
        log.total_tokens = usage.total_tokens;
        log.cost_usd = accounting::cost(self.pricing, usage.prompt_tokens, usage.completion_tokens);
        log.cached = self.cached;
        log.attempts = self.attempts;
        log.variants = decision.variants;
        log.tags = decision.tags;
        if !done.complete {
            log.error = Some(
                done.error
                    .unwrap_or_else(|| "the client disconnected before the end".into()),
            );
        }
        if self.accountant.log_bodies {
            log.response_body = match (&done.body, done.payloads.is_empty()) {
                (Some(body), _) => Some(String::from_utf8_lossy(body).into_owned()),
                (None, false) => Some(crate::wire::chunks::assemble_payloads(&done.payloads)),
                (None, true) => None,
            };
        }
        self.accountant.record(log);
    }

    fn store(&self, put: &CachePut, done: &Completed) {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let entry = CachedReply {
            provider: self.provider.clone(),
            model: self.model.clone(),
            expires_at: crate::store::keys::now_secs() + put.ttl_secs,
            body: done.body.as_ref().map(text),
            chunks: done.payloads.iter().map(text).collect(),
        };
        match put.cache.put(&put.key, &entry) {
            Ok(()) => {}
            // Counted in the store's metrics; readiness says why the store cannot write.
            Err(e) if e.is_storage() => {
                tracing::debug!(error = %e, "could not store a reply in the cache")
            }
            Err(e) => tracing::error!(error = %e, "could not store a reply in the cache"),
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
