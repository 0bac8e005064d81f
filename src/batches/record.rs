//! A batch as OpenAI shows it (`object: "batch"`, its statuses and timestamps), and the record
//! the gateway keeps of it: `<data>/batches/<id>.json`, written atomically and synced at every
//! change of status (an acknowledged create or cancel is durable when answered). Progress is not
//! here but in the batch's journal (`journal.rs`), appended as lines complete.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created; its input file is being checked against the endpoint.
    Validating,
    /// The input file did not fit the batch (`errors` says where); nothing was sent.
    Failed,
    InProgress,
    /// Every line has an answer; the output and error files are being written.
    Finalizing,
    Completed,
    /// The completion window ran out: what completed is in the output, the rest in the error
    /// file as `batch_expired`.
    Expired,
    /// Cancelled: no new line is sent; lines in flight finish.
    Cancelling,
    Cancelled,
}

impl Status {
    /// Nothing more will happen to the batch.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Failed | Status::Completed | Status::Expired | Status::Cancelled
        )
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestCounts {
    pub total: u64,
    /// Lines answered with a 2xx.
    pub completed: u64,
    /// Lines answered with an error, or that expired unsent.
    pub failed: u64,
}

/// Why a batch failed validation, OpenAI's `errors` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchErrors {
    /// Always `list`.
    pub object: String,
    pub data: Vec<BatchErrorItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchErrorItem {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    /// The input file's line (1-based).
    pub line: Option<u64>,
}

/// A batch, in OpenAI's shape. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Batch {
    pub id: String,
    /// Always `batch`.
    pub object: String,
    pub endpoint: String,
    pub errors: Option<BatchErrors>,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: Status,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: u64,
    pub in_progress_at: Option<u64>,
    pub expires_at: u64,
    pub finalizing_at: Option<u64>,
    pub completed_at: Option<u64>,
    pub failed_at: Option<u64>,
    pub expired_at: Option<u64>,
    pub cancelling_at: Option<u64>,
    pub cancelled_at: Option<u64>,
    pub request_counts: RequestCounts,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// What the gateway keeps: the batch, whose it is, and what it has cost so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub batch: Batch,
    /// The key that created it: its lines run as that key, and only it sees the batch.
    pub owner: String,
    /// The cost of its lines so far, in USD (as the request log prices them).
    #[serde(default)]
    pub cost_usd: f64,
}

pub fn new_id() -> String {
    format!("batch_{}", uuid::Uuid::new_v4().simple())
}

/// A batch id as the gateway makes them, so no id can name a path.
pub fn is_id(id: &str) -> bool {
    id.strip_prefix("batch_").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// `24h` (OpenAI's only value) and, for shorter work, `<n>h`, `<n>m` or `<n>s`: between one
/// second and seven days. The window in seconds.
pub fn completion_window_secs(window: &str) -> Option<u64> {
    if !window.is_ascii() {
        return None;
    }
    let (number, unit) = window.split_at(window.len().checked_sub(1)?);
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "h" => n.checked_mul(3600)?,
        "m" => n.checked_mul(60)?,
        "s" => n,
        _ => return None,
    };
    (1..=7 * 24 * 3600).contains(&secs).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded() {
        assert_eq!(completion_window_secs("24h"), Some(86_400));
        assert_eq!(completion_window_secs("90s"), Some(90));
        assert_eq!(completion_window_secs("5m"), Some(300));
        assert_eq!(completion_window_secs("0s"), None);
        assert_eq!(completion_window_secs("169h"), None);
        assert_eq!(completion_window_secs("1d"), None);
        assert_eq!(completion_window_secs(""), None);
        assert_eq!(completion_window_secs("h"), None);
        assert_eq!(completion_window_secs("24é"), None);
    }

    #[test]
    fn ids_cannot_name_paths() {
        assert!(is_id(&new_id()));
        assert!(!is_id("batch_../../etc"));
        assert!(!is_id("file-abc"));
    }
}
