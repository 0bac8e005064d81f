//! What the policies change in the store while they run: counter additions (`ctx.incr`, split
//! exposures) and new split assignments.
//!
//! Scripts run synchronously and the store is async (one round trip to a shared backend), so
//! a script's writes are collected in its decision and written in one go once the hook has
//! run ([`PolicyEnv::commit`]); what a script reads in the meantime (`ctx.count`, a split's
//! assignment) includes its own pending writes. Simulation writes nothing.

use super::ctx::PolicyEnv;
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

impl PolicyEnv {
    /// Makes the writes: the counters in one call, then each new assignment. A failure is
    /// logged and counted by the store; the request goes on with what was decided.
    pub async fn commit(&self, writes: StateWrites) {
        if self.simulate || writes.is_empty() {
            return;
        }
        if !writes.counters.is_empty() {
            if let Err(e) = self.counters.add(&writes.counters).await {
                log_failure("policy counters", &e);
            }
        }
        for a in &writes.assignments {
            if let Err(e) = self.assignments.set(&a.split, &a.sticky, &a.variant).await {
                log_failure("a split assignment", &e);
            }
        }
    }
}

fn log_failure(what: &str, e: &crate::store::StoreError) {
    // Storage failures are counted in the store's metrics and retried once it recovers.
    if e.is_storage() {
        tracing::debug!(error = %e, "could not persist {what}");
    } else {
        tracing::error!(error = %e, "could not persist {what}");
    }
}
