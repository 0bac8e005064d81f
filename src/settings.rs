//! Process settings: where to listen, which folders to read, limits.
//!
//! Flags win over the environment (`SWITCHBOARD_*`), which wins over the settings file, which
//! wins over the defaults; clap does the layering in `main.rs` (the file through
//! `settings_file.rs`). Tests build a [`Settings`] directly.

use crate::settings_file::{SettingReport, SettingsError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything the server needs to start.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub providers_dir: PathBuf,
    pub policies_dir: PathBuf,
    /// The webhooks file (`webhooks.yaml`); absent means no webhooks.
    pub webhooks_file: PathBuf,
    /// Where the state lives: `sled` in `data_dir`, or `memory` (nothing kept).
    pub store: crate::store::StoreKind,
    pub data_dir: PathBuf,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// An admin key given from outside (`SWITCHBOARD_ADMIN_KEY`); kept only as a hash.
    pub admin_key: Option<String>,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// On a policy script failure, go on without that script instead of failing the request.
    pub policy_fail_open: bool,
    /// Refuse to write or delete policy scripts through the admin API (the dashboard's editor
    /// then only shows and simulates).
    pub read_only_policies: bool,
    /// Keep request and response bodies in the request log.
    pub log_bodies: bool,
    /// How long, and how many, request log entries are kept, and how long usage roll-ups.
    pub log_retention: crate::ledger_writer::Retention,
    /// Watch providers.d and policies for changes and reload them.
    pub watch: bool,
    /// The most responses the cache keeps.
    pub cache_max_entries: usize,
    /// sled's page cache, in bytes. Its default (1 GiB) is far more than a gateway needs.
    pub store_cache_bytes: u64,
    /// Where Redis is, with `store: redis`.
    pub redis: Option<crate::store::redis::RedisOptions>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// On SIGTERM or SIGINT, how long requests and streams in flight may take to finish
    /// before their connections are closed (then usage and logs are written either way).
    pub shutdown_grace: std::time::Duration,
    /// CORS for browser pages on other origins; `None` (the default) sends no CORS headers.
    pub cors: Option<crate::http::cors::CorsSettings>,
    /// A bearer token that reads `/metrics` and nothing else, so Prometheus needs no admin key.
    pub metrics_token: Option<String>,
    /// A second address serving only `/metrics`, without a key (e.g. `127.0.0.1:9090`).
    pub metrics_listen: Option<SocketAddr>,
    /// OpenTelemetry trace export; `None` (the default) traces nothing.
    pub otlp: Option<crate::telemetry::OtlpSettings>,
    /// Shadow copies (`ctx.mirror`) that may run at once; more are dropped and counted.
    pub mirror_concurrency: usize,
    /// Requests of batches in flight at once, over all batches and within one.
    pub batch_concurrency: usize,
    pub batch_concurrency_per_batch: usize,
    /// The largest file `/v1/files` accepts.
    pub max_file_bytes: u64,
    /// Proxies (load balancers) whose `X-Forwarded-For` names the client (`req.client_ip`).
    pub trusted_proxies: crate::http::client_ip::TrustedProxies,
    /// Where the settings came from, and how to read them again on reload (the binary's
    /// command line and settings file); `None` when built in code (tests).
    pub source: Option<Arc<SettingsSource>>,
    /// Subsystems switched off for the benchmarks' CPU breakdown only; see [`BenchOff`].
    pub bench_off: BenchOff,
}

/// Subsystems the instruction-count harness (`benches/instructions/`) switches off, one at a
/// time, to measure what each costs a request, or runs at a pace it can count. Not a setting: no flag, variable or file
/// reaches it, and the binary never sets it; a gateway without its request log or metrics is
/// not one to run.
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchOff {
    /// Request log entries and usage (one record, one queue, one writer) are dropped when
    /// the request settles, before the queue.
    pub request_log: bool,
    /// The Prometheus figures are not updated.
    pub metrics: bool,
    /// The request log's writer writes only when the gateway stops, in one batch, instead of
    /// every 100 ms: what a tick finds depends on the pace of the run (slow under valgrind),
    /// and so does what writing it costs per entry. The harness counts the writer apart.
    pub log_writer_at_stop: bool,
}

/// What a reload can change, from the settings as they are now resolved.
pub struct Resolved {
    /// Checked: `None` is CORS off.
    pub cors: Option<crate::http::cors::CorsPolicy>,
    /// The process log's filter (`info`, `warn,switchboard=debug`), checked.
    pub log_filter: String,
    /// The share of requests traced (0..=1, checked).
    pub sampling_ratio: f64,
    /// Every setting, its value and where it came from, for `GET /admin/config`.
    pub report: Vec<SettingReport>,
}

/// Reads the settings again (command line, environment, settings file), as at start.
pub type Reread = Arc<dyn Fn() -> Result<Resolved, Vec<SettingsError>> + Send + Sync>;

/// The settings' origin, kept for reloads and `GET /admin/config`.
pub struct SettingsSource {
    /// The settings file read at start, if any: reloads read it again, and the watcher
    /// watches it.
    pub file: Option<PathBuf>,
    pub reread: Reread,
    /// What the process started with.
    pub started: Vec<SettingReport>,
}

impl Settings {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8080";
    pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;
    /// Shadow copies (`ctx.mirror`) in flight at once, by default.
    pub const DEFAULT_MIRROR_CONCURRENCY: usize = 8;
    /// Batch requests in flight at once over all batches, and within one, by default.
    pub const DEFAULT_BATCH_CONCURRENCY: usize = 16;
    pub const DEFAULT_BATCH_CONCURRENCY_PER_BATCH: usize = 8;
    /// 200 MB, as OpenAI's batch input files.
    pub const DEFAULT_MAX_FILE_BYTES: u64 = 200 * 1000 * 1000;
    /// Long enough for a typical completion stream to end; the usual orchestrators wait
    /// 30 seconds after SIGTERM before they kill.
    pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;

    /// Defaults rooted in `base` (the working directory for the binary, a temp dir for tests).
    pub fn with_base(base: impl Into<PathBuf>) -> Self {
        let base = base.into();
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            providers_dir: base.join("providers.d"),
            policies_dir: base.join("policies"),
            webhooks_file: base.join("webhooks.yaml"),
            store: crate::store::StoreKind::Sled,
            data_dir: base.join("data"),
            body_limit: Self::DEFAULT_BODY_LIMIT,
            admin_key: None,
            workers: 0,
            policy_fail_open: false,
            read_only_policies: false,
            watch: true,
            log_bodies: false,
            log_retention: crate::ledger_writer::Retention::default(),
            cache_max_entries: crate::store::DEFAULT_CACHE_ENTRIES,
            store_cache_bytes: 16 * 1024 * 1024,
            redis: None,
            tls: None,
            shutdown_grace: std::time::Duration::from_secs(Self::DEFAULT_SHUTDOWN_GRACE_SECS),
            cors: None,
            metrics_token: None,
            metrics_listen: None,
            trusted_proxies: Default::default(),
            mirror_concurrency: Self::DEFAULT_MIRROR_CONCURRENCY,
            batch_concurrency: Self::DEFAULT_BATCH_CONCURRENCY,
            batch_concurrency_per_batch: Self::DEFAULT_BATCH_CONCURRENCY_PER_BATCH,
            max_file_bytes: Self::DEFAULT_MAX_FILE_BYTES,
            source: None,
            otlp: None,
            bench_off: BenchOff::default(),
        }
    }
}

impl std::fmt::Debug for Settings {
    // Hand-written so the admin key, the metrics token and the OTLP headers' values never
    // reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("providers_dir", &self.providers_dir)
            .field("policies_dir", &self.policies_dir)
            .field("webhooks_file", &self.webhooks_file)
            .field("store", &self.store)
            .field("data_dir", &self.data_dir)
            .field("redis", &self.redis)
            .field("body_limit", &self.body_limit)
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<set>"))
            .field("workers", &self.workers)
            .field("policy_fail_open", &self.policy_fail_open)
            .field("read_only_policies", &self.read_only_policies)
            .field("watch", &self.watch)
            .field("log_bodies", &self.log_bodies)
            .field("log_retention", &self.log_retention)
            .field("cache_max_entries", &self.cache_max_entries)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("cors", &self.cors)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<set>"),
            )
            .field("metrics_listen", &self.metrics_listen)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("mirror_concurrency", &self.mirror_concurrency)
            .field("batch_concurrency", &self.batch_concurrency)
            .field(
                "batch_concurrency_per_batch",
                &self.batch_concurrency_per_batch,
            )
            .field("max_file_bytes", &self.max_file_bytes)
            // `OtlpSettings`' own Debug shows header names, never their values.
            .field("otlp", &self.otlp)
            .field("bench_off", &self.bench_off)
            .finish()
    }
}
