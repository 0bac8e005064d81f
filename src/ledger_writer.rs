//! After the response: request log entries, usage roll-ups and upstream metrics, written by
//! one background thread in batches, so the request path only hands an entry to a channel.
//!
//! A batch that cannot be written (a full disk) is not dropped: it stays in memory and is tried
//! again on a later tick, and so is a batch written but not yet flushed when the store had to
//! be reopened (the reopen keeps only what reached the disk; a batch that did reach it is
//! found there and not counted twice, see [`crate::store::ledger`]). At most [`HELD`] entries
//! wait this way; beyond that the oldest go, and are counted.

use crate::metrics::Metrics;
use crate::store::logs::LogEntry;
use crate::store::{LedgerBatch, Store, What};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thread_local::ThreadLocal;

/// Entries waiting for the writer, per thread that queues them; beyond this, that thread's new
/// ones are dropped (and counted).
const QUEUE: usize = 16_384;
/// Entries the writer holds when they cannot be written (or not yet confirmed on disk);
/// beyond this the oldest are dropped, and counted in `switchboard_accounting_dropped_total`.
pub const HELD: usize = 65_536;
/// How often the writer takes what is queued: one record per tick is what makes logging
/// cheap, and a tenth of a second is no delay for someone reading the logs.
const TICK: Duration = Duration::from_millis(100);
/// How often what was written is flushed to disk (and so no longer held in memory).
const CONFIRM_EVERY: Duration = Duration::from_millis(500);
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// At most one "writer is behind" warning this often: a writer that is behind drops entries
/// at the rate requests arrive, and a log line for each would add work (and a lock on
/// stderr) to every request of an overloaded gateway. The metric counts each one.
const DROP_WARNING_EVERY_MS: u64 = 10_000;

/// How long request logs, stored responses and usage roll-ups are kept; the writer prunes
/// them every minute.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Request log entries, and stored responses, older than this go.
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

use crate::clock::now_ms;

/// The queue between the request path and the writer: a vector per thread that queues
/// (`ThreadLocal`), so a worker pushes under a lock only the writer's tick ever contends for,
/// never another worker's. Unlike a channel it never wakes the writer thread, which polls on
/// its own clock: a wake-up per request cost a futex call and a context switch.
struct Queue {
    entries: ThreadLocal<Mutex<Vec<LogEntry>>>,
    /// Set when the accountant stops: the writer writes what is left and stops.
    stop: AtomicBool,
}

/// A queue's vector; a panic elsewhere while holding the lock leaves a usable vector behind.
fn lock(entries: &Mutex<Vec<LogEntry>>) -> std::sync::MutexGuard<'_, Vec<LogEntry>> {
    entries.lock().unwrap_or_else(|p| p.into_inner())
}

impl Queue {
    /// This thread's vector.
    fn mine(&self) -> std::sync::MutexGuard<'_, Vec<LogEntry>> {
        lock(self.entries.get_or_default())
    }

    /// Every thread's entries, oldest first (each thread's are in order already; the merge
    /// puts the threads' together by arrival).
    fn take(&self) -> Vec<LogEntry> {
        let mut all = Vec::new();
        for entries in self.entries.iter() {
            let mut entries = lock(entries);
            if all.is_empty() {
                std::mem::swap(&mut all, &mut *entries);
            } else {
                all.append(&mut entries);
            }
        }
        all.sort_by_key(|e| e.at_ms);
        all
    }
}

pub struct Accountant {
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Keep request and response bodies in the log.
    pub log_bodies: bool,
    /// Entries are dropped, not queued (`Settings::bench_off`, benchmarks only).
    discard: bool,
    drop_warning: Throttle,
}

/// Lets a thing happen at most once per interval, from any thread, without a lock.
struct Throttle {
    /// When it last happened, in unix ms (0: never).
    last_ms: AtomicU64,
    every_ms: u64,
}

impl Throttle {
    fn new(every_ms: u64) -> Self {
        Throttle {
            last_ms: AtomicU64::new(0),
            every_ms,
        }
    }

    /// Whether it may happen at `now_ms`; if so, it counts as having happened. Of threads
    /// asking at once, one is told yes.
    fn due(&self, now_ms: u64) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        (last == 0 || now_ms.saturating_sub(last) >= self.every_ms)
            && self
                .last_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl Accountant {
    /// Starts the writer thread; it writes what is queued every tick, and once more when the
    /// accountant stops.
    pub fn start(
        store: Store,
        metrics: Arc<Metrics>,
        retention: Retention,
        log_bodies: bool,
    ) -> std::io::Result<Accountant> {
        Self::start_ticking(store, metrics, retention, log_bodies, TICK)
    }

    /// [`Accountant::start`] with the writer's tick given: a tick longer than the run makes it
    /// write only when it stops, in one batch (`Settings::bench_off`, benchmarks only).
    pub fn start_ticking(
        store: Store,
        metrics: Arc<Metrics>,
        retention: Retention,
        log_bodies: bool,
        tick: Duration,
    ) -> std::io::Result<Accountant> {
        let queue = Arc::new(Queue {
            entries: ThreadLocal::new(),
            stop: AtomicBool::new(false),
        });
        let writer_queue = queue.clone();
        let mut w = Writer::new(store, metrics.clone())?;
        let writer = std::thread::Builder::new()
            .name("accounting".into())
            .spawn(move || {
                let mut last_prune = Instant::now() - PRUNE_EVERY;
                loop {
                    std::thread::park_timeout(tick);
                    let stopping = writer_queue.stop.load(Ordering::Acquire);
                    w.hold(writer_queue.take());
                    w.write();
                    if stopping {
                        w.finish();
                        return;
                    }
                    w.confirm(false);
                    // Only with nothing held: a record pruned now is never written again.
                    if last_prune.elapsed() >= PRUNE_EVERY && w.held() == 0 {
                        last_prune = Instant::now();
                        w.prune(retention);
                    }
                }
            })?;
        Ok(Accountant {
            queue,
            metrics,
            writer: Mutex::new(Some(writer)),
            log_bodies,
            discard: false,
            drop_warning: Throttle::new(DROP_WARNING_EVERY_MS),
        })
    }

    /// Drops every entry instead of queueing it: for the benchmarks' CPU breakdown only
    /// (`Settings::bench_off`), never for a gateway that serves.
    pub fn discarding(mut self) -> Accountant {
        self.discard = true;
        self
    }

    /// Queues an entry; never blocks the request beyond a short lock.
    pub fn record(&self, entry: LogEntry) {
        if self.discard {
            return;
        }
        let queued = {
            let mut q = self.queue.mine();
            let room = q.len() < QUEUE;
            if room {
                q.push(entry);
            }
            room
        };
        if !queued {
            self.metrics.dropped_log_entry();
            if self.drop_warning.due(crate::clock::now_ms()) {
                tracing::warn!(
                    "request log writer is behind; entries are being dropped (each is counted in switchboard_log_entries_dropped_total; this warning repeats at most every 10 s)"
                );
            }
        }
    }

    /// Writes what is queued or held, flushes it to disk, and stops the writer. For a graceful
    /// stop; dropping the accountant does the same.
    pub fn stop(&self) {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = writer {
            self.queue.stop.store(true, Ordering::Release);
            writer.thread().unpark();
            let _ = writer.join();
        }
    }
}

impl Drop for Accountant {
    /// Writes what is still queued before the process goes.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer thread's state: batches not written yet, and batches written but not yet known
/// to be on disk. Both oldest first; every written batch is older than every pending one.
struct Writer {
    store: Store,
    metrics: Arc<Metrics>,
    pending: VecDeque<LedgerBatch>,
    written: VecDeque<LedgerBatch>,
    /// The store generation `written` went to; a reopen since means they may be gone.
    written_generation: u64,
    last_confirm: Instant,
    /// Runs the store's async calls on this thread: the writer is the only one waiting on
    /// them, and a batch written in place needs no hop to another thread.
    runtime: tokio::runtime::Runtime,
}

impl Writer {
    fn new(store: Store, metrics: Arc<Metrics>) -> std::io::Result<Writer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Writer {
            runtime,
            store,
            metrics,
            pending: VecDeque::new(),
            written: VecDeque::new(),
            written_generation: 0,
            last_confirm: Instant::now(),
        })
    }

    /// Entries held, pending or written but not confirmed.
    fn held(&self) -> usize {
        self.pending
            .iter()
            .chain(self.written.iter())
            .map(|b| b.entries.len())
            .sum()
    }

    /// Takes new entries as a batch (and counts them in the metrics), then drops the oldest
    /// batches while more than [`HELD`] entries are held.
    fn hold(&mut self, entries: Vec<LogEntry>) {
        if !entries.is_empty() {
            for e in &entries {
                if let (Some(provider), Some(model)) = (&e.provider, &e.model) {
                    self.metrics.upstream(
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
            self.pending.push_back(self.store.ledger.batch(entries));
        }
        let mut held = self.held();
        let mut dropped = 0;
        while held > HELD {
            let Some(oldest) = self
                .written
                .pop_front()
                .or_else(|| self.pending.pop_front())
            else {
                break;
            };
            held -= oldest.entries.len();
            dropped += oldest.entries.len();
        }
        if dropped > 0 {
            self.metrics.accounting_dropped(dropped as u64);
            tracing::error!(
                dropped,
                held = HELD,
                "request log entries and usage that could not be written were dropped: too many held"
            );
        }
        self.metrics.accounting_held(held as u64);
    }

    /// Writes pending batches, oldest first, until one fails (it is tried again next tick).
    fn write(&mut self) {
        // A reopen keeps only what reached the disk: what was written before it is written
        // again (a batch that is there is found and skipped).
        if !self.written.is_empty() && self.store.backend.generation() != self.written_generation {
            while let Some(batch) = self.written.pop_back() {
                self.pending.push_front(batch);
            }
        }
        // While the store cannot write, batches wait instead of failing every tick; the
        // store's probe notices when it can write again.
        if self.pending.is_empty() || self.store.backend.write_fault().is_some() {
            return;
        }
        while let Some(batch) = self.pending.front() {
            let generation = self.store.backend.generation();
            match self.runtime.block_on(self.store.ledger.write(batch)) {
                Ok(_) => {
                    if self.written.is_empty() {
                        self.written_generation = generation;
                    }
                    if let Some(batch) = self.pending.pop_front() {
                        self.written.push_back(batch);
                    }
                }
                Err(e) => {
                    self.store.backend.report(What::Accounting, &e);
                    tracing::debug!(error = %e, "writing request logs and usage failed; kept for the next tick");
                    break;
                }
            }
        }
        self.metrics.accounting_held(self.held() as u64);
    }

    /// Flushes what was written, every [`CONFIRM_EVERY`] (or now, with `now`), and lets go of
    /// it once it is on disk.
    fn confirm(&mut self, now: bool) {
        if self.written.is_empty() || (!now && self.last_confirm.elapsed() < CONFIRM_EVERY) {
            return;
        }
        // A flush cannot work before the store has recovered (see `write`).
        if !now && self.store.backend.write_fault().is_some() {
            return;
        }
        self.last_confirm = Instant::now();
        let generation = self.store.backend.generation();
        match self.runtime.block_on(self.store.backend.sync()) {
            Ok(()) if generation == self.written_generation => {
                self.written.clear();
                self.metrics.accounting_held(self.held() as u64);
            }
            // Flushed a newer database: what was written went to the old one.
            Ok(()) => {}
            Err(e) => self.store.backend.report(What::Accounting, &e),
        }
    }

    /// On stop: write and flush what is held; if the store cannot write, try once to recover
    /// it (the disk may have room again) and write again. What still cannot be written is lost,
    /// and said so.
    fn finish(&mut self) {
        self.confirm(true);
        if self.held() > 0 && self.store.backend.check() {
            self.write();
            self.confirm(true);
        }
        let lost = self.held();
        if lost > 0 {
            self.metrics.accounting_dropped(lost as u64);
            tracing::error!(
                entries = lost,
                reason = self.store.backend.write_fault().unwrap_or_default(),
                "request log entries and usage could not be written before stopping; they are lost"
            );
        }
    }

    fn prune(&mut self, retention: Retention) {
        if self.store.backend.write_fault().is_some() {
            return;
        }
        let max_age = retention.max_age.as_millis() as u64;
        let logs = self
            .store
            .logs
            .prune(now_ms(), max_age, retention.max_entries);
        match self.runtime.block_on(logs) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "pruned request logs"),
            Err(e) => {
                self.store.backend.report(What::Accounting, &e);
                tracing::debug!(error = %e, "pruning request logs failed");
            }
        }
        // Stored responses (`previous_response_id`) are kept as long as the request logs.
        let responses = self.store.responses.prune(now_ms().saturating_sub(max_age));
        match self.runtime.block_on(responses) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "pruned stored responses"),
            Err(e) => {
                self.store.backend.report(What::Responses, &e);
                tracing::debug!(error = %e, "pruning stored responses failed");
            }
        }
        let before = (now_ms() / 1000).saturating_sub(retention.usage_max_age.as_secs());
        match self.runtime.block_on(self.store.usage.prune(before)) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "pruned usage roll-ups"),
            Err(e) => {
                self.store.backend.report(What::Accounting, &e);
                tracing::debug!(error = %e, "pruning usage failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::logs::LogFilter;
    use crate::store::Store;

    /// Waits for a store call from a plain test thread.
    fn wait<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A store in a temp folder (kept while the folder lives) and an accountant writing to it.
    fn started() -> (tempfile::TempDir, Store, Accountant) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let accountant = Accountant::start(
            store.clone(),
            Arc::new(Metrics::default()),
            Retention::default(),
            false,
        )
        .unwrap();
        (dir, store, accountant)
    }

    #[test]
    fn the_drop_warning_comes_at_most_once_per_interval_whatever_the_threads() {
        let throttle = Throttle::new(10_000);
        assert!(throttle.due(1_000_000), "the first time");
        assert!(!throttle.due(1_000_001));
        assert!(!throttle.due(1_009_999));
        assert!(throttle.due(1_010_000), "once the interval has passed");
        assert!(!throttle.due(1_010_000));
        // Eight threads asking a thousand times each at the same moment: one yes.
        let throttle = Arc::new(Throttle::new(10_000));
        let yes: usize = (0..8)
            .map(|_| {
                let throttle = throttle.clone();
                std::thread::spawn(move || (0..1000).filter(|_| throttle.due(5_000_000)).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(yes, 1);
    }

    #[test]
    fn what_is_queued_is_written_when_the_accountant_drops() {
        let (_dir, store, accountant) = started();
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
        let page = wait(store.logs.query(&LogFilter::default(), 10, None)).unwrap();
        let ids: Vec<&str> = page.data.iter().map(|e| e.request_id.as_str()).collect();
        assert_eq!(ids, vec!["r2", "r1", "r0"]);
    }

    #[test]
    fn entries_queued_on_several_threads_are_all_written_in_arrival_order() {
        let (_dir, store, accountant) = started();
        let base = now_ms();
        // Thread t queues the requests that arrived at base + t, + t + 4, + t + 8, ...
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let accountant = &accountant;
                s.spawn(move || {
                    for i in 0..10u64 {
                        let at = t + 4 * i;
                        accountant.record(LogEntry {
                            request_id: format!("r{at}"),
                            at_ms: base + at,
                            key_id: "k".into(),
                            ..LogEntry::default()
                        });
                    }
                });
            }
        });
        drop(accountant);
        let page = wait(store.logs.query(&LogFilter::default(), 100, None)).unwrap();
        let ids: Vec<String> = page.data.iter().map(|e| e.request_id.clone()).collect();
        let newest_first: Vec<String> = (0..40).rev().map(|at| format!("r{at}")).collect();
        assert_eq!(ids, newest_first);
    }

    fn entries(n: usize, key: &str) -> Vec<LogEntry> {
        (0..n)
            .map(|i| LogEntry {
                request_id: format!("{key}{i}"),
                at_ms: now_ms(),
                key_id: key.into(),
                ..LogEntry::default()
            })
            .collect()
    }

    fn disk_full() -> crate::store::StoreError {
        crate::store::StoreError::Io(std::io::Error::new(std::io::ErrorKind::StorageFull, "test"))
    }

    #[test]
    fn held_while_the_store_cannot_write_and_written_once_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let metrics = Arc::new(Metrics::default());
        let mut w = Writer::new(store.clone(), metrics.clone()).unwrap();
        store.backend.report(What::Probe, &disk_full());
        w.hold(entries(3, "a"));
        w.write();
        assert_eq!(w.held(), 3, "not written while the store cannot write");
        assert_eq!(wait(store.usage.key_usage("a")).unwrap().totals.requests, 0);
        assert!(metrics
            .render()
            .contains("switchboard_accounting_held_entries 3"));

        assert!(
            store.backend.check(),
            "the probe finds the store writing again"
        );
        w.write();
        w.confirm(true);
        assert_eq!(w.held(), 0);
        assert_eq!(wait(store.usage.key_usage("a")).unwrap().totals.requests, 3);
    }

    #[test]
    fn written_again_after_a_reopen_but_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut w = Writer::new(store.clone(), Arc::new(Metrics::default())).unwrap();
        w.hold(entries(2, "b"));
        w.write();
        assert_eq!(w.held(), 2, "written, not yet confirmed");
        store.backend.sled_database().unwrap().reopen().unwrap();
        w.write();
        w.confirm(true);
        assert_eq!(w.held(), 0);
        assert_eq!(wait(store.usage.key_usage("b")).unwrap().totals.requests, 2);
        let page = wait(store.logs.query(&LogFilter::default(), 10, None)).unwrap();
        assert_eq!(page.data.len(), 2);
    }

    #[test]
    fn beyond_the_cap_the_oldest_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let metrics = Arc::new(Metrics::default());
        let mut w = Writer::new(store.clone(), metrics.clone()).unwrap();
        store.backend.report(What::Probe, &disk_full());
        w.hold(entries(HELD - 10, "old"));
        w.hold(entries(5, "mid"));
        assert_eq!(w.held(), HELD - 5);
        w.hold(entries(20, "new"));
        assert_eq!(w.held(), 25, "the oldest batch went whole");
        let text = metrics.render();
        assert!(
            text.contains(&format!(
                "switchboard_accounting_dropped_total {}",
                HELD - 10
            )),
            "{text}"
        );
        assert!(store.backend.check());
        w.write();
        assert_eq!(
            wait(store.usage.key_usage("old")).unwrap().totals.requests,
            0
        );
        assert_eq!(
            wait(store.usage.key_usage("new")).unwrap().totals.requests,
            20
        );
    }

    #[test]
    fn the_writer_prunes_stored_responses_older_than_the_logs_max_age() {
        use crate::store::responses::StoredResponse;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let (now, day_ms) = (now_ms(), 86_400_000);
        let stored = |id: &str, created_ms: u64| StoredResponse {
            id: id.into(),
            key_id: "k".into(),
            created_ms,
            conversation: vec![serde_json::json!({"role": "user", "content": "hi"})],
            response: serde_json::json!({"id": id}),
        };
        wait(store.responses.put(stored("resp_old", now - 2 * day_ms))).unwrap();
        wait(store.responses.put(stored("resp_new", now - day_ms / 2))).unwrap();
        let mut w = Writer::new(store.clone(), Arc::new(Metrics::default())).unwrap();
        w.prune(Retention {
            max_age: Duration::from_secs(86_400),
            // Far longer: only the logs' max age may decide.
            usage_max_age: Duration::from_secs(30 * 86_400),
            ..Retention::default()
        });
        assert!(wait(store.responses.get("resp_old")).unwrap().is_none());
        assert!(wait(store.responses.get("resp_new")).unwrap().is_some());
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
        let batch = store
            .ledger
            .batch(vec![at(now - 3 * day_ms), at(now - day_ms / 2), at(now)]);
        wait(store.ledger.write(&batch)).unwrap();
        let rows = || {
            wait(
                store
                    .usage
                    .query(0, now / 1000 + 3600, Bucket::Hour, &GroupBy::None),
            )
            .unwrap()
            .len()
        };
        assert_eq!(rows(), 3);
        let accountant = Accountant::start(
            store.clone(),
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
            wait(store.usage.key_usage("k")).unwrap().totals.requests,
            3,
            "a key's all-time figures stay"
        );
    }
}
