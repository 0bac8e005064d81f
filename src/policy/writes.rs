//! What the policies change in the store while they run: counter additions (`ctx.incr`, split
//! exposures) and new split assignments.
//!
//! Scripts run synchronously and the store is async (one round trip to a shared backend), so
//! a script's writes are collected in its decision and written in one go once the hook has
//! run (`PolicyEnv::commit`); what a script reads in the meantime (`ctx.count`, a split's
//! assignment) includes its own pending writes. Simulation writes nothing.

use crate::store::CounterAdd;

/// Writes a hook collected, not yet made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateWrites {
    pub counters: Vec<CounterAdd>,
    pub assignments: Vec<Assignment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub split: String,
    pub sticky: String,
    pub variant: String,
}

impl StateWrites {
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.assignments.is_empty()
    }

    /// What this hook has added to a counter so far.
    pub fn pending(&self, name: &str, window_secs: u64) -> u64 {
        self.counters
            .iter()
            .filter(|a| a.name == name && a.window_secs == window_secs)
            .fold(0u64, |sum, a| sum.saturating_add(a.amount))
    }

    /// The variant this hook assigned to (split, sticky id), if it did.
    pub fn assigned(&self, split: &str, sticky: &str) -> Option<&str> {
        self.assignments
            .iter()
            .rev()
            .find(|a| a.split == split && a.sticky == sticky)
            .map(|a| a.variant.as_str())
    }
}
