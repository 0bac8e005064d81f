//! Wall-clock time as the stores and APIs record it: unix seconds and milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds of `at` (0 for a time before the epoch, which a sane clock never gives).
pub fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn now_secs() -> u64 {
    unix_secs(SystemTime::now())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
