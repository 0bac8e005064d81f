//! Counters in memory only: the same windows as the sled backend, nothing kept.

use crate::store::error::StoreError;
use crate::store::windows::{CounterWindows, Windows};
use std::sync::{Mutex, MutexGuard};

/// For `switchboard policy test`, the simulator's scratch state, `--store memory`, benches
/// and unit tests.
pub struct MemoryCounters {
    inner: Mutex<Windows>,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        MemoryCounters {
            inner: Mutex::new(Windows::default()),
        }
    }
}

impl CounterWindows for MemoryCounters {
    fn windows(&self) -> MutexGuard<'_, Windows> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Nothing is kept anywhere: forgetting what changed is all there is to do.
    fn write_changed(&self) -> Result<(), StoreError> {
        self.windows().dirty.clear();
        Ok(())
    }
}
