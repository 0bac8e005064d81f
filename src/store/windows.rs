//! Counter windows held in memory behind one short mutex: exact under concurrency and free of
//! I/O. The in-process backends (sled, memory) share this and differ only in how changed
//! windows are written.

use super::counters::{AdmitError, CounterAdd, CounterStore, Limit, OverLimit};
use super::error::StoreError;
use std::collections::{HashMap, HashSet};
use std::sync::MutexGuard;

#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: u64,
    pub count: u64,
}

#[derive(Default)]
pub struct Windows {
    pub(super) windows: HashMap<String, Window>,
    /// Counters changed since they were last written.
    pub(super) dirty: HashSet<String>,
}

use crate::clock::now_secs;

pub fn key(name: &str, window_secs: u64) -> String {
    format!("{name}\u{1f}{window_secs}")
}

fn window_start(now: u64, window_secs: u64) -> u64 {
    if window_secs == 0 {
        0
    } else {
        now - now % window_secs
    }
}

impl Windows {
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

impl Windows {
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
pub trait CounterWindows: Send + Sync {
    fn windows(&self) -> MutexGuard<'_, Windows>;
    /// Writes the windows marked changed, if the backend keeps them anywhere.
    fn write_changed(&self) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl<T: CounterWindows> CounterStore for T {
    async fn acquire(&self, limits: &[Limit]) -> Result<(), AdmitError> {
        self.windows()
            .acquire(limits, now_secs())
            .map_err(AdmitError::Over)
    }

    async fn check_budgets(&self, limits: &[Limit]) -> Result<(), AdmitError> {
        self.windows()
            .check_budgets(limits, now_secs())
            .map_err(AdmitError::Over)
    }

    async fn add(&self, adds: &[CounterAdd]) -> Result<(), StoreError> {
        let now = now_secs();
        let mut windows = self.windows();
        for add in adds {
            let k = key(&add.name, add.window_secs);
            windows.charge(&k, add.window_secs, now, add.amount);
        }
        Ok(())
    }

    async fn get(&self, name: &str, window_secs: u64) -> Result<u64, StoreError> {
        Ok(self.peek(name, window_secs))
    }

    fn peek(&self, name: &str, window_secs: u64) -> u64 {
        let k = key(name, window_secs);
        self.windows().count(&k, window_secs, now_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_restart_and_only_charges_mark_dirty() {
        let mut inner = Windows {
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
