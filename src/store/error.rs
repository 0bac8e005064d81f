//! What can go wrong in a store, and what was being written when it did.

/// What can go wrong in a store, whatever the backend: the variants say what it means for
/// the caller (retry later, the data is bad, someone else holds the folder), not which
/// library failed. A backend maps its own errors in (`From<sled::Error>` below).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the data folder {0} is in use by another switchboard process (is the gateway running? use the admin API instead)")]
    Locked(String),
    /// The disk or the connection failed (a full disk, an I/O error): the same call may work
    /// later.
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// The store cannot take the call now: it is being reopened after a write failure.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A shared store (Redis) did not answer in time or cannot be reached: the same call may
    /// work once it is back.
    #[error("the shared store is unreachable: {0}")]
    Unreachable(String),
    /// Any other failure of the backend.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// What the caller gave the store cannot be stored as it is (an imported record that is
    /// not valid): the same call fails again.
    #[error("invalid record: {0}")]
    Invalid(String),
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        match e {
            ::sled::Error::Io(io) => StoreError::Io(io),
            ::sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
            other => StoreError::Backend(other.to_string()),
        }
    }
}

impl StoreError {
    /// A failure of the disk or the database file, not of the data: a full disk, an I/O
    /// error, a store being reopened. The same call may work later.
    pub fn is_storage(&self) -> bool {
        matches!(
            self,
            StoreError::Io(_) | StoreError::Unavailable(_) | StoreError::Unreachable(_)
        )
    }

    /// A shared store that did not answer: `store_unavailable` to clients.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Unreachable(_))
    }
}

/// What a failed write was writing, the `what` label of `switchboard_store_write_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// A key change (create, update, rotate, revoke).
    Keys,
    /// A team change (create, update, delete).
    Teams,
    /// Request log entries and their usage roll-ups.
    Accounting,
    /// Quota, budget and exposure counters.
    Counters,
    /// A reply for the response cache.
    Cache,
    /// A sticky A/B assignment.
    Assignments,
    /// A stored Responses API response (a put, a delete or the retention's prune).
    Responses,
    /// The periodic write probe.
    Probe,
}

/// Failed writes counted by what was written: `switchboard_store_write_failures_total`.
#[derive(Debug, Default)]
pub struct WriteFailures([std::sync::atomic::AtomicU64; What::ALL.len()]);

impl WriteFailures {
    pub fn count(&self, what: What) {
        if let Some(i) = What::ALL.iter().position(|w| *w == what) {
            self.0[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The counts in Prometheus text.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str("# HELP switchboard_store_write_failures_total Store writes that failed, by what was written.\n# TYPE switchboard_store_write_failures_total counter\n");
        for (what, n) in What::ALL.iter().zip(&self.0) {
            let _ = writeln!(
                out,
                "switchboard_store_write_failures_total{{what=\"{}\"}} {}",
                what.name(),
                n.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    }
}

impl What {
    pub const ALL: [What; 8] = [
        What::Keys,
        What::Teams,
        What::Accounting,
        What::Counters,
        What::Cache,
        What::Assignments,
        What::Responses,
        What::Probe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            What::Keys => "keys",
            What::Teams => "teams",
            What::Accounting => "accounting",
            What::Counters => "counters",
            What::Cache => "cache",
            What::Assignments => "assignments",
            What::Responses => "responses",
            What::Probe => "probe",
        }
    }
}
