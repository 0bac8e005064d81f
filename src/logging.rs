//! The process log (stderr): human-readable text, or one JSON object a line for a log
//! collector (`--log-format json`). `--log-level` (or `RUST_LOG`) chooses what is logged either
//! way, and can change on reload ([`set_filter`]).
//!
//! In JSON, an event's fields sit beside `timestamp`, `level`, `message` and `target`, not
//! nested, so a collector can index `request_id` and the rest without a path. What is logged is
//! the same in both formats: keys and secrets are never event fields.

use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, `target` and the event's
    /// fields (`request_id` where the event has one).
    Json,
}

/// The filter when neither `--log-level` nor `RUST_LOG` says.
pub const DEFAULT_FILTER: &str = "info";

/// Changes the installed subscriber's filter.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Why a log filter cannot be used, or applied.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("`{directives}` is not a log filter: {reason}")]
    Parse { directives: String, reason: String },
    #[error("cannot change the log filter: {0}")]
    Reload(String),
}

/// The filter, or why it cannot be used.
pub fn check_filter(directives: &str) -> Result<EnvFilter, FilterError> {
    EnvFilter::builder()
        .with_regex(false)
        .parse(directives)
        .map_err(|e| FilterError::Parse {
            directives: directives.to_string(),
            reason: e.to_string(),
        })
}

/// The filter to start with: `--log-level`, else `RUST_LOG`, else `info`.
pub fn start_filter(log_level: Option<&str>) -> String {
    log_level
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_FILTER.to_string())
}

/// Installs the process-wide subscriber, writing to stderr. Called once, at start; a second
/// call (a subscriber already set) changes nothing. A filter that cannot be parsed falls back to
/// `info` (the caller has checked it with [`check_filter`] where it came from a setting).
pub fn init(format: LogFormat, filter: &str) {
    let filter = check_filter(filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // `try_init`: only fails when a subscriber is already installed, which is harmless.
    let installed = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(
                fmt.json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .try_init(),
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Applies a new filter to the process log from now on. Without an installed subscriber (a test
/// building the server in process) there is nothing to change.
pub fn set_filter(directives: &str) -> Result<(), FilterError> {
    let filter = check_filter(directives)?;
    match FILTER.get() {
        Some(handle) => handle
            .reload(filter)
            .map_err(|e| FilterError::Reload(e.to_string())),
        None => Ok(()),
    }
}
