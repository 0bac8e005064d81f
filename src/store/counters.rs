//! Fixed-window counters for quotas, token budgets and exposure counts.
//!
//! Counts live in memory behind one short mutex, so admission is exact under concurrency (a
//! limit of N admits exactly N per window) and costs no I/O. A background thread writes changed
//! counters to sled every few hundred milliseconds and on shutdown; on start they are loaded
//! back, so limits survive a restart (a crash can lose at most the last interval's counts).

use super::{Database, StoreError, What};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One limit to check: at most `max` per `window_secs`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Limit {
    pub name: String,
    pub max: u64,
    pub window_secs: u64,
}

/// A refused admission: which limit, and when its window resets.
#[derive(Debug, Clone, PartialEq)]
pub struct OverLimit {
    pub name: String,
    pub max: u64,
    pub retry_after_secs: u64,
}

pub trait CounterStore: Send + Sync {
    /// Admits one event against every limit, all or nothing.
    fn acquire(&self, limits: &[Limit]) -> Result<(), OverLimit>;
    /// Fails if any budget is already spent (count >= max), without charging.
    fn check_budgets(&self, limits: &[Limit]) -> Result<(), OverLimit>;
    /// Adds `amount` to a counter (token settlement, exposures). `window_secs` 0 never resets.
    fn add(&self, name: &str, window_secs: u64, amount: u64);
    /// The current count in the current window.
    fn get(&self, name: &str, window_secs: u64) -> u64;
    /// Writes changed counters to disk now.
    fn persist(&self) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    count: u64,
}

struct Inner {
    windows: HashMap<String, Window>,
    dirty: HashSet<String>,
}

pub struct SledCounters {
    /// The tree `counters`: name ++ 0x1f ++ window → window start and count (8 + 8 bytes).
    db: Arc<Database>,
    inner: Mutex<Inner>,
}

use crate::clock::now_secs;

fn key(name: &str, window_secs: u64) -> String {
    format!("{name}\u{1f}{window_secs}")
}

fn window_start(now: u64, window_secs: u64) -> u64 {
    if window_secs == 0 {
        0
    } else {
        now - now % window_secs
    }
}

impl SledCounters {
    pub fn open(db: &Arc<Database>) -> Result<Arc<Self>, StoreError> {
        let mut windows = HashMap::new();
        for entry in db.trees()?.counters.iter() {
            let (k, v) = entry?;
            if v.len() == 16 {
                let start = u64::from_be_bytes(v[..8].try_into().unwrap_or([0; 8]));
                let count = u64::from_be_bytes(v[8..].try_into().unwrap_or([0; 8]));
                windows.insert(
                    String::from_utf8_lossy(&k).into_owned(),
                    Window { start, count },
                );
            }
        }
        let counters = Arc::new(SledCounters {
            db: db.clone(),
            inner: Mutex::new(Inner {
                windows,
                dirty: HashSet::new(),
            }),
        });
        // What is in memory is newer than anything on disk: after a reopen (which lost what
        // was not flushed), all of it is written again.
        let weak = Arc::downgrade(&counters);
        db.on_reopen(move || {
            if let Some(c) = weak.upgrade() {
                let mut inner = c.lock();
                let all: Vec<String> = inner.windows.keys().cloned().collect();
                inner.dirty.extend(all);
            }
            Ok(())
        });
        // The writer holds a weak reference, so it ends when the store is dropped.
        let weak = Arc::downgrade(&counters);
        std::thread::Builder::new()
            .name("counter-writer".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250));
                match weak.upgrade() {
                    // While the store cannot write, changes wait in memory (marked dirty)
                    // instead of failing every 250 ms; the probe notices when it can again.
                    Some(c) if c.db.fault().is_some() => {}
                    Some(c) => {
                        if let Err(e) = c.persist() {
                            tracing::debug!(error = %e, "could not persist counters");
                        }
                    }
                    None => return,
                }
            })
            .map_err(StoreError::from)?;
        Ok(counters)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// The live count of a counter: 0 when it has none yet or its window has passed.
    fn count(&mut self, k: &str, window_secs: u64, now: u64) -> u64 {
        let start = window_start(now, window_secs);
        match self.windows.get_mut(k) {
            Some(w) if w.start == start => w.count,
            Some(w) => {
                *w = Window { start, count: 0 };
                0
            }
            None => 0,
        }
    }

    /// Adds to a counter, starting a new window if the old one has passed. Looks up by `&str`
    /// first: only a counter seen for the first time costs an owned key.
    fn charge(&mut self, k: &str, window_secs: u64, now: u64, amount: u64) {
        let start = window_start(now, window_secs);
        match self.windows.get_mut(k) {
            Some(w) => {
                if w.start != start {
                    *w = Window { start, count: 0 };
                }
                w.count = w.count.saturating_add(amount);
            }
            None => {
                self.windows.insert(
                    k.to_string(),
                    Window {
                        start,
                        count: amount,
                    },
                );
            }
        }
        if !self.dirty.contains(k) {
            self.dirty.insert(k.to_string());
        }
    }
}

fn over(limit: &Limit, now: u64) -> OverLimit {
    let retry_after_secs = if limit.window_secs == 0 {
        0
    } else {
        (window_start(now, limit.window_secs) + limit.window_secs)
            .saturating_sub(now)
            .max(1)
    };
    OverLimit {
        name: limit.name.clone(),
        max: limit.max,
        retry_after_secs,
    }
}

impl Inner {
    fn new() -> Self {
        Inner {
            windows: HashMap::new(),
            dirty: HashSet::new(),
        }
    }

    fn acquire(&mut self, limits: &[Limit], now: u64) -> Result<(), OverLimit> {
        if limits.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = limits.iter().map(|l| key(&l.name, l.window_secs)).collect();
        for (limit, k) in limits.iter().zip(&keys) {
            if self.count(k, limit.window_secs, now) >= limit.max {
                return Err(over(limit, now));
            }
        }
        for (limit, k) in limits.iter().zip(&keys) {
            self.charge(k, limit.window_secs, now, 1);
        }
        Ok(())
    }

    fn check_budgets(&mut self, limits: &[Limit], now: u64) -> Result<(), OverLimit> {
        for limit in limits {
            let k = key(&limit.name, limit.window_secs);
            if self.count(&k, limit.window_secs, now) >= limit.max {
                return Err(over(limit, now));
            }
        }
        Ok(())
    }
}

/// A counter backend that keeps the windows in memory (exact, one lock) and only differs in
/// how changed windows are written: every such backend gets `CounterStore` from this.
trait CounterWindows: Send + Sync {
    fn windows(&self) -> MutexGuard<'_, Inner>;
    /// Writes the windows marked changed, if the backend keeps them anywhere.
    fn write_changed(&self) -> Result<(), StoreError>;
}

impl<T: CounterWindows> CounterStore for T {
    fn acquire(&self, limits: &[Limit]) -> Result<(), OverLimit> {
        self.windows().acquire(limits, now_secs())
    }

    fn check_budgets(&self, limits: &[Limit]) -> Result<(), OverLimit> {
        self.windows().check_budgets(limits, now_secs())
    }

    fn add(&self, name: &str, window_secs: u64, amount: u64) {
        let k = key(name, window_secs);
        self.windows().charge(&k, window_secs, now_secs(), amount);
    }

    fn get(&self, name: &str, window_secs: u64) -> u64 {
        let k = key(name, window_secs);
        self.windows().count(&k, window_secs, now_secs())
    }

    fn persist(&self) -> Result<(), StoreError> {
        self.write_changed()
    }
}

impl CounterWindows for SledCounters {
    fn windows(&self) -> MutexGuard<'_, Inner> {
        self.lock()
    }

    fn write_changed(&self) -> Result<(), StoreError> {
        // While the store cannot write, changes wait in memory, marked dirty.
        self.db.writable()?;
        let (dirty, batch) = {
            let mut inner = self.lock();
            if inner.dirty.is_empty() {
                return Ok(());
            }
            let dirty: Vec<String> = inner.dirty.drain().collect();
            let mut batch = sled::Batch::default();
            for k in &dirty {
                if let Some(w) = inner.windows.get(k) {
                    let mut v = [0u8; 16];
                    v[..8].copy_from_slice(&w.start.to_be_bytes());
                    v[8..].copy_from_slice(&w.count.to_be_bytes());
                    batch.insert(k.as_bytes(), &v);
                }
            }
            (dirty, batch)
        };
        let applied = self
            .db
            .trees()
            .and_then(|t| t.counters.apply_batch(batch).map_err(StoreError::from));
        if let Err(e) = applied {
            // Not written: still dirty, for the next try.
            self.lock().dirty.extend(dirty);
            self.db.report(What::Counters, &e);
            return Err(e);
        }
        Ok(())
    }
}

/// Counters in memory only: the same semantics as [`SledCounters`], nothing kept. For
/// `switchboard policy test`, the simulator's scratch state, benches and unit tests.
pub struct MemoryCounters {
    inner: Mutex<Inner>,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        MemoryCounters {
            inner: Mutex::new(Inner::new()),
        }
    }
}

impl CounterWindows for MemoryCounters {
    fn windows(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Nothing is kept anywhere: forgetting what changed is all there is to do.
    fn write_changed(&self) -> Result<(), StoreError> {
        self.windows().dirty.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: u64) -> Limit {
        Limit {
            name: "rpm:k".into(),
            max,
            window_secs: 3600,
        }
    }

    /// What every counter backend must do; each backend runs it below.
    fn keeps_the_contract(counters: &dyn CounterStore) {
        // Exactly `max` admitted, however concurrent.
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        if counters.acquire(&[limit(100)]).is_ok() {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 100);
        let refused = counters.acquire(&[limit(100)]).unwrap_err();
        assert!(refused.retry_after_secs >= 1 && refused.retry_after_secs <= 3600);
        // All or nothing: a refusal charges no limit.
        let roomy = Limit {
            name: "roomy".into(),
            max: 10,
            window_secs: 60,
        };
        assert!(counters.acquire(&[roomy.clone(), limit(100)]).is_err());
        assert_eq!(counters.get("roomy", 60), 0, "nothing charged on refusal");
        // Budgets: checked without charging, refused once spent.
        let budget = Limit {
            name: "tokens".into(),
            max: 500,
            window_secs: 3600,
        };
        counters
            .check_budgets(std::slice::from_ref(&budget))
            .unwrap();
        assert_eq!(counters.get("tokens", 3600), 0);
        counters.add("tokens", 3600, 500);
        assert_eq!(counters.get("tokens", 3600), 500);
        assert!(counters.check_budgets(&[budget]).is_err());
        // A window of 0 never resets; windows of different lengths are different counters.
        counters.add("ever", 0, 3);
        assert_eq!(counters.get("ever", 0), 3);
        assert_eq!(counters.get("ever", 60), 0);
        counters.persist().unwrap();
    }

    #[test]
    fn sled_counters_keep_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        keeps_the_contract(SledCounters::open(&db).unwrap().as_ref());
    }

    #[test]
    fn memory_counters_keep_the_contract() {
        keeps_the_contract(&MemoryCounters::default());
    }

    #[test]
    fn all_or_nothing_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::open(dir.path(), 1 << 20).unwrap();
            let counters = SledCounters::open(&db).unwrap();
            let tight = Limit {
                name: "tight".into(),
                max: 1,
                window_secs: 3600,
            };
            counters.acquire(&[limit(10), tight.clone()]).unwrap();
            assert!(counters.acquire(&[limit(10), tight]).is_err());
            assert_eq!(counters.get("rpm:k", 3600), 1, "nothing charged on refusal");
            counters.add("tokens", 3600, 500);
            counters.persist().unwrap();
            db.flush().unwrap();
        }
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        let counters = SledCounters::open(&db).unwrap();
        assert_eq!(counters.get("rpm:k", 3600), 1);
        assert_eq!(counters.get("tokens", 3600), 500);
        let budget = Limit {
            name: "tokens".into(),
            max: 500,
            window_secs: 3600,
        };
        assert!(counters.check_budgets(&[budget]).is_err());
    }

    #[test]
    fn windows_restart_and_only_charges_mark_dirty() {
        let mut inner = Inner {
            windows: HashMap::new(),
            dirty: HashSet::new(),
        };
        let k = key("rpm:k", 60);
        assert_eq!(inner.count(&k, 60, 120), 0);
        assert!(inner.windows.is_empty(), "reading creates nothing");
        inner.charge(&k, 60, 120, 2);
        inner.charge(&k, 60, 179, 3);
        assert_eq!(inner.count(&k, 60, 179), 5, "same window adds up");
        assert_eq!(inner.count(&k, 60, 180), 0, "the next window starts empty");
        inner.charge(&k, 60, 181, 1);
        assert_eq!(inner.count(&k, 60, 181), 1);
        assert_eq!(inner.dirty.len(), 1);
        let forever = key("exposures:s:a", 0);
        inner.charge(&forever, 0, 10, 1);
        assert_eq!(
            inner.count(&forever, 0, 1_000_000),
            1,
            "window 0 never resets"
        );
    }
}
