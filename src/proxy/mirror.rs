//! Shadow traffic (`ctx.mirror(target, share)`): a copy of a sampled request goes to a
//! candidate model after the real reply has been served, and what the candidate did is logged
//! beside what the primary did, for comparison.
//!
//! The copy never delays the client (it starts once the reply is complete), never counts
//! against the caller's limits or budgets (it skips admission), and is bounded: at most
//! `--mirror-concurrency` copies run at once, and one that finds no room is dropped and counted
//! (`switchboard_mirror_dropped_total`). It is sent without streaming, whatever the client
//! asked. Its request log entry is tagged `shadow: candidate` and `shadow_of: <primary id>`
//! (the primary's is tagged `shadow: primary`), so `GET /admin/usage?group_by=shadow` compares
//! the two, and carries a `shadow` comparison: latency, tokens, cost, finish reason and whether
//! the text was identical.

use crate::ledger_writer::Accountant;
use crate::providers::{Reply, UpstreamCall};
use crate::snapshot::Snapshot;
use crate::store::logs::{LogEntry, ShadowComparison};
use crate::wire::{RequestBody, Usage};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// The most of a candidate's reply read (a stream's text included).
const MAX_REPLY_BYTES: usize = 4 << 20;

/// The room for copies in flight, shared by every request.
pub struct Mirrors {
    permits: Arc<Semaphore>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Mirrors {
    pub fn new(concurrency: usize, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Mirrors {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            metrics,
        }
    }
}

/// A request to copy, kept from before it was sent.
pub struct MirrorJob {
    pub target: String,
    pub body: RequestBody,
    pub mirrors: Arc<Mirrors>,
}

/// What the primary did, for the comparison.
pub struct Primary {
    pub request_id: String,
    pub key_id: String,
    pub team: Option<String>,
    pub endpoint: String,
    pub format: Option<String>,
    pub latency_ms: u64,
    pub usage: Usage,
    pub cost_usd: f64,
    pub finish_reason: Option<String>,
    /// The reply's text, when it was kept (the relay captures it for a mirrored request).
    pub text: Option<String>,
}

/// The text and finish reason of a reply: a JSON body, or a stream's payloads.
pub fn reply_text(body: Option<&Bytes>, payloads: &[Bytes]) -> (Option<String>, Option<String>) {
    let reply: Option<Value> = match body {
        Some(b) => serde_json::from_slice(b).ok(),
        None if !payloads.is_empty() => {
            serde_json::from_str(&crate::wire::chunks::assemble_payloads(payloads)).ok()
        }
        None => None,
    };
    let Some(reply) = reply else {
        return (None, None);
    };
    let choice = &reply["choices"][0];
    let text = choice["message"]["content"]
        .as_str()
        .or_else(|| choice["text"].as_str())
        .map(str::to_string);
    let finish = choice["finish_reason"].as_str().map(str::to_string);
    (text, finish)
}

/// Starts the copy, if there is room; returns at once.
pub fn spawn(
    job: MirrorJob,
    primary: Primary,
    snapshot: Arc<Snapshot>,
    accountant: Arc<Accountant>,
) {
    let Ok(permit) = job.mirrors.permits.clone().try_acquire_owned() else {
        job.mirrors.metrics.mirror_dropped();
        tracing::debug!(target = %job.target, "a mirrored request was dropped: no room");
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let entry = run(&job, &primary, &snapshot).await;
        accountant.record(entry);
        drop(permit);
    });
}

/// Sends the copy and builds its log entry (an error is a logged failure, never a panic).
async fn run(job: &MirrorJob, primary: &Primary, snapshot: &Snapshot) -> LogEntry {
    let mut entry = LogEntry {
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        at_ms: crate::clock::now_ms(),
        key_id: primary.key_id.clone(),
        team: primary.team.clone(),
        endpoint: primary.endpoint.clone(),
        format: primary.format.clone(),
        requested_model: job.target.clone(),
        ..LogEntry::default()
    };
    entry.tags.insert("shadow".into(), "candidate".into());
    entry
        .tags
        .insert("shadow_of".into(), primary.request_id.clone());
    let started = Instant::now();
    let outcome = call(job, snapshot).await;
    entry.latency_ms = started.elapsed().as_millis() as u64;
    let (usage, text, finish) = match outcome {
        Ok((target, status, usage, text, finish, pricing)) => {
            entry.provider = Some(target.0);
            entry.model = Some(target.1);
            entry.status = status;
            entry.cost_usd = pricing.map_or(0.0, |p| p.cost(&usage));
            (usage, text, finish)
        }
        Err(e) => {
            entry.status = 502;
            entry.error = Some(e.to_string());
            (Usage::default(), None, None)
        }
    };
    entry.prompt_tokens = usage.prompt_tokens;
    entry.completion_tokens = usage.completion_tokens;
    entry.total_tokens = usage.total_tokens;
    entry.shadow = Some(ShadowComparison {
        of: primary.request_id.clone(),
        primary_latency_ms: primary.latency_ms,
        primary_prompt_tokens: primary.usage.prompt_tokens,
        primary_completion_tokens: primary.usage.completion_tokens,
        primary_cost_usd: primary.cost_usd,
        primary_finish_reason: primary.finish_reason.clone(),
        finish_reason: finish,
        identical: match (&primary.text, &text) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        },
    });
    entry
}

type Called = (
    (String, String),
    u16,
    Usage,
    Option<String>,
    Option<String>,
    Option<crate::config::Pricing>,
);

/// Why a copy got no reply to compare.
#[derive(Debug, thiserror::Error)]
enum MirrorError {
    /// The target names no model served (the router's own message).
    #[error("{0}")]
    Route(String),
    #[error("provider `{0}` is not serving")]
    NotServing(String),
    #[error(transparent)]
    Upstream(#[from] crate::providers::ProviderError),
    #[error("the candidate's reply was too long to compare")]
    TooLong,
}

async fn call(job: &MirrorJob, snapshot: &Snapshot) -> Result<Called, MirrorError> {
    let requested = job.body.model().to_string();
    let targets = crate::router::targets::resolve(
        &snapshot.models,
        std::slice::from_ref(&job.target),
        &requested,
    )
    .map_err(|e| MirrorError::Route(e.message.clone()))?;
    let target = targets
        .first()
        .ok_or_else(|| MirrorError::Route(format!("`{}` names no model served", job.target)))?;
    let provider = snapshot
        .providers
        .get(target.provider.as_ref())
        .ok_or_else(|| MirrorError::NotServing(target.provider.to_string()))?;
    let mut body = job.body.clone();
    body.set_stream(false);
    // In its chat form: a copy's reply is read as a chat completion.
    body.forget_native();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let headers = std::collections::BTreeMap::new();
    let reply = provider
        .call(UpstreamCall {
            request_id: &request_id,
            body: &body,
            upstream_model: &target.model.upstream,
            headers: &headers,
            trace_headers: &[],
        })
        .await?;
    let names = (target.provider.to_string(), target.model.name.clone());
    match reply {
        Reply::Json {
            status,
            body,
            usage,
            ..
        } => {
            let (text, finish) = reply_text(Some(&body), &[]);
            Ok((
                names,
                status.as_u16(),
                usage.unwrap_or_default(),
                text,
                finish,
                target.model.pricing,
            ))
        }
        Reply::Stream(mut events, _) => {
            // A provider that streams anyway: read it whole, within a bound.
            let mut payloads = Vec::new();
            let mut read = 0;
            while let Some(item) = events.next().await {
                let payload = item?;
                read += payload.len();
                if read > MAX_REPLY_BYTES {
                    return Err(MirrorError::TooLong);
                }
                payloads.push(payload);
            }
            let (text, finish) = reply_text(None, &payloads);
            let usage = payloads
                .iter()
                .rev()
                .find_map(|p| serde_json::from_slice::<Value>(p).ok())
                .map(|v| crate::wire::usage_of_value(&v))
                .unwrap_or_default();
            Ok((names, 200, usage, text, finish, target.model.pricing))
        }
    }
}
