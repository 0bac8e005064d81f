//! After the response: request log entries, usage roll-ups and upstream metrics, written by
//! one background thread in batches, so the request path only hands an entry to a channel.

use crate::metrics::Metrics;
use crate::store::logs::{LogEntry, LogStore};
use crate::store::usage::UsageStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries waiting for the writer; beyond this, new ones are dropped (and counted).
const QUEUE: usize = 16_384;
/// How often the writer takes what is queued: one record per tick is what makes logging
/// cheap, and a tenth of a second is no delay for someone reading the logs.
const TICK: Duration = Duration::from_millis(100);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How long request logs and usage roll-ups are kept; the writer prunes both every minute.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Request log entries older than this go.
    pub max_age: Duration,
    /// The oldest request log entries beyond this many go.
    pub max_entries: usize,
    /// Hourly usage rows that ended longer ago than this go (keys' all-time figures stay).
    pub usage_max_age: Duration,
}

impl Retention {
    pub const DEFAULT_USAGE_MAX_AGE_DAYS: u64 = 400;
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: Duration::from_secs(7 * 86_400),
            max_entries: 100_000,
            usage_max_age: Duration::from_secs(Self::DEFAULT_USAGE_MAX_AGE_DAYS * 86_400),
        }
    }
}

pub use crate::clock::now_ms;

/// The queue between the request path and the writer. A plain mutex-guarded vector: pushing
/// is a short uncontended lock, and unlike a channel it never wakes the writer thread, which
/// polls on its own clock. A wake-up per request cost a futex call and a context switch.
struct Queue {
    entries: Mutex<Vec<LogEntry>>,
    /// Set when the accountant drops: the writer writes what is left and stops.
    stop: AtomicBool,
}

impl Queue {
    /// The entries; a panic elsewhere while holding the lock leaves a usable vector behind.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LogEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Vec<LogEntry> {
        std::mem::take(&mut *self.lock())
    }
}

pub struct Accountant {
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Keep request and response bodies in the log.
    pub log_bodies: bool,
}

impl Accountant {
    /// Starts the writer thread; it writes what is queued every tick, and once more when the
    /// accountant drops.
    pub fn start(
        logs: Arc<dyn LogStore>,
        usage: Arc<dyn UsageStore>,
        metrics: Arc<Metrics>,
        retention: Retention,
        log_bodies: bool,
    ) -> std::io::Result<Accountant> {
        let queue = Arc::new(Queue {
            entries: Mutex::new(Vec::with_capacity(1024)),
            stop: AtomicBool::new(false),
        });
        let writer_queue = queue.clone();
        let writer_metrics = metrics.clone();
        let writer = std::thread::Builder::new()
            .name("accounting".into())
            .spawn(move || {
                let mut last_prune = Instant::now() - PRUNE_EVERY;
                loop {
                    std::thread::park_timeout(TICK);
                    let stopping = writer_queue.stop.load(Ordering::Acquire);
                    let batch = writer_queue.take();
                    if !batch.is_empty() {
                        write(&batch, logs.as_ref(), usage.as_ref(), &writer_metrics);
                    }
                    if stopping {
                        return;
                    }
                    if last_prune.elapsed() >= PRUNE_EVERY {
                        last_prune = Instant::now();
                        let max_age = retention.max_age.as_millis() as u64;
                        match logs.prune(now_ms(), max_age, retention.max_entries) {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(removed = n, "pruned request logs"),
                            Err(e) => tracing::error!(error = %e, "pruning request logs failed"),
                        }
                        let before =
                            (now_ms() / 1000).saturating_sub(retention.usage_max_age.as_secs());
                        match usage.prune(before) {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(removed = n, "pruned usage roll-ups"),
                            Err(e) => tracing::error!(error = %e, "pruning usage failed"),
                        }
                    }
                }
            })?;
        Ok(Accountant {
            queue,
            metrics,
            writer: Some(writer),
            log_bodies,
        })
    }

    /// Queues an entry; never blocks the request beyond a short lock.
    pub fn record(&self, entry: LogEntry) {
        let queued = {
            let mut q = self.queue.lock();
            let room = q.len() < QUEUE;
            if room {
                q.push(entry);
            }
            room
        };
        if !queued {
            self.metrics.dropped_log_entry();
            tracing::warn!("request log writer is behind; an entry was dropped");
        }
    }
}

impl Drop for Accountant {
    /// Writes what is still queued before the process goes.
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            self.queue.stop.store(true, Ordering::Release);
            writer.thread().unpark();
            let _ = writer.join();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::logs::LogFilter;
    use crate::store::Store;

    #[test]
    fn what_is_queued_is_written_when_the_accountant_drops() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let accountant = Accountant::start(
            store.logs.clone(),
            store.usage.clone(),
            Arc::new(Metrics::default()),
            Retention::default(),
            false,
        )
        .unwrap();
        for i in 0..3 {
            accountant.record(LogEntry {
                request_id: format!("r{i}"),
                at_ms: now_ms(),
                key_id: "k".into(),
                ..LogEntry::default()
            });
        }
        // Dropped at once: well within the writer's first tick.
        drop(accountant);
        let page = store.logs.query(&LogFilter::default(), 10, None).unwrap();
        let ids: Vec<&str> = page.data.iter().map(|e| e.request_id.as_str()).collect();
        assert_eq!(ids, vec!["r2", "r1", "r0"]);
    }

    #[test]
    fn the_writer_prunes_usage_older_than_its_retention() {
        use crate::store::usage::{Bucket, GroupBy};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let day_ms = 86_400_000;
        let at = |ms: u64| LogEntry {
            at_ms: ms,
            key_id: "k".into(),
            requested_model: "echo".into(),
            ..LogEntry::default()
        };
        let now = now_ms();
        store
            .usage
            .record(&[at(now - 3 * day_ms), at(now - day_ms / 2), at(now)])
            .unwrap();
        let rows = || {
            store
                .usage
                .query(0, now / 1000 + 3600, Bucket::Hour, &GroupBy::None)
                .unwrap()
                .len()
        };
        assert_eq!(rows(), 3);
        let accountant = Accountant::start(
            store.logs.clone(),
            store.usage.clone(),
            Arc::new(Metrics::default()),
            Retention {
                usage_max_age: Duration::from_secs(86_400),
                ..Retention::default()
            },
            false,
        )
        .unwrap();
        // The writer prunes on its first tick.
        let started = Instant::now();
        while rows() != 2 {
            assert!(started.elapsed() < Duration::from_secs(5), "never pruned");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(accountant);
        assert_eq!(
            store.usage.key_usage("k").unwrap().totals.requests,
            3,
            "a key's all-time figures stay"
        );
    }
}
