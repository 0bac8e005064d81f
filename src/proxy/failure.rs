//! A request that ends before a reply exists: the client's error, and what the request log
//! records about it (the attempts made, and a detail the client is not shown).

use crate::error::ApiError;
use crate::store::logs::AttemptLog;

pub struct Failure {
    /// Boxed: a `Failure` travels in the `Result` of every stage, and most requests succeed.
    pub error: Box<ApiError>,
    /// The attempt log (target, outcome, latency, what happened next), for the request log.
    pub attempts: Option<AttemptLog>,
    /// Upstream calls made, for `x-switchboard-attempts` and the log.
    pub calls: u32,
    /// What the request log records instead of the client's message, when that says less.
    pub detail: Option<String>,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure {
            error: Box::new(error),
            attempts: None,
            calls: 0,
            detail: None,
        }
    }
}
