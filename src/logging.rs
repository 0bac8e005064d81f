//! The process log (stderr): human-readable text, or one JSON object a line for a log
//! collector (`--log-format json`). `RUST_LOG` chooses what is logged either way.
//!
//! In JSON, an event's fields sit beside `timestamp`, `level`, `message` and `target`, not
//! nested, so a collector can index `request_id` and the rest without a path. What is logged is
//! the same in both formats: keys and secrets are never event fields.

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

/// Installs the process-wide subscriber, writing to stderr. Called once, at start; a second
/// call (a subscriber already set) changes nothing.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init`: only fails when a subscriber is already installed, which is harmless.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}
