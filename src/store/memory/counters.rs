//! Counters in memory only: the same windows as the sled backend, nothing kept.

use crate::store::error::StoreError;
use crate::store::windows::{CounterWindows, ShardedWindows};

/// For `switchboard policy test`, the simulator's scratch state, `--store memory`, benches
/// and unit tests.
#[derive(Default)]
pub struct MemoryCounters {
    windows: ShardedWindows,
}

impl CounterWindows for MemoryCounters {
    fn windows(&self) -> &ShardedWindows {
        &self.windows
    }

    /// Nothing is kept anywhere: forgetting what changed is all there is to do.
    fn write_changed(&self) -> Result<(), StoreError> {
        self.windows.take_changed();
        Ok(())
    }
}
