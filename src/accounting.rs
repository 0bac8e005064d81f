//! After the response: request log entries, usage roll-ups and upstream metrics, written by
//! one background thread in batches, so the request path only hands an entry to a channel.

use crate::metrics::Metrics;
use crate::store::logs::{LogEntry, LogStore};
use crate::store::usage::UsageStore;
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entries waiting for the writer; beyond this, new ones are dropped (and counted).
const QUEUE: usize = 16_384;
const BATCH: usize = 1024;
const GATHER: Duration = Duration::from_millis(100);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How long request logs are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_entries: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: Duration::from_secs(7 * 86_400),
            max_entries: 100_000,
        }
    }
}

pub use crate::clock::now_ms;

pub struct Accountant {
    tx: SyncSender<LogEntry>,
    metrics: Arc<Metrics>,
    /// Keep request and response bodies in the log.
    pub log_bodies: bool,
}

impl Accountant {
    /// Starts the writer thread; it drains what is queued and stops when the accountant drops.
    pub fn start(
        logs: Arc<dyn LogStore>,
        usage: Arc<dyn UsageStore>,
        metrics: Arc<Metrics>,
        retention: Retention,
        log_bodies: bool,
    ) -> std::io::Result<Accountant> {
        let (tx, rx) = sync_channel::<LogEntry>(QUEUE);
        let writer_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("accounting".into())
            .spawn(move || {
                let mut last_prune = Instant::now() - PRUNE_EVERY;
                loop {
                    let first = match rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(entry) => Some(entry),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    let mut batch: Vec<LogEntry> = first.into_iter().collect();
                    // Gather for a moment: one record per batch is what makes logging cheap,
                    // and a tenth of a second is no delay for someone reading the logs.
                    let gather_until = Instant::now() + GATHER;
                    while !batch.is_empty() && batch.len() < BATCH {
                        let left = gather_until.saturating_duration_since(Instant::now());
                        match rx.recv_timeout(left) {
                            Ok(entry) => batch.push(entry),
                            Err(_) => break,
                        }
                    }
                    if !batch.is_empty() {
                        write(&batch, logs.as_ref(), usage.as_ref(), &writer_metrics);
                    }
                    if last_prune.elapsed() >= PRUNE_EVERY {
                        last_prune = Instant::now();
                        let max_age = retention.max_age.as_millis() as u64;
                        match logs.prune(now_ms(), max_age, retention.max_entries) {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(removed = n, "pruned request logs"),
                            Err(e) => tracing::error!(error = %e, "pruning request logs failed"),
                        }
                    }
                }
            })?;
        Ok(Accountant {
            tx,
            metrics,
            log_bodies,
        })
    }

    /// Queues an entry; never blocks the request.
    pub fn record(&self, entry: LogEntry) {
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.dropped_log_entry();
                tracing::warn!("request log writer is behind; an entry was dropped");
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn write(batch: &[LogEntry], logs: &dyn LogStore, usage: &dyn UsageStore, metrics: &Metrics) {
    for e in batch {
        if let (Some(provider), Some(model)) = (&e.provider, &e.model) {
            metrics.upstream(
                provider,
                model,
                e.status < 400,
                e.cached,
                if e.cached { 0 } else { e.prompt_tokens },
                if e.cached { 0 } else { e.completion_tokens },
                if e.cached { 0.0 } else { e.cost_usd },
                e.latency_ms as f64 / 1000.0,
            );
        }
    }
    if let Err(e) = logs.append(batch) {
        tracing::error!(error = %e, "writing request logs failed");
    }
    if let Err(e) = usage.record(batch) {
        tracing::error!(error = %e, "writing usage failed");
    }
}

/// USD for this usage at this price (USD per million tokens).
pub fn cost(pricing: Option<crate::config::Pricing>, prompt: u64, completion: u64) -> f64 {
    match pricing {
        Some(p) => (prompt as f64 * p.input + completion as f64 * p.output) / 1_000_000.0,
        None => 0.0,
    }
}
