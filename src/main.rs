//! The `switchboard` command line. Only argument handling lives here; the work is in the library.

// Printing results (keys, check reports, the listen address) is this binary's job.
#![allow(clippy::print_stdout)]

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard::backup::{self, BackupError};
use switchboard::http::client_ip::TrustedProxies;
use switchboard::http::cors::{CorsPolicy, CorsSettings};
use switchboard::logging::{self, LogFormat};
use switchboard::settings_file::{self, SettingsError, SettingsFile};
use switchboard::store::{
    ImportCounts, Limits, NewKey, Role, Store, StoreError, StoreKind, StoreOptions,
};
use switchboard::{healthcheck, load, policy, Application, Settings};

/// jemalloc: the request path allocates many small, short-lived objects across worker threads;
/// glibc's allocator both costs more per call there and holds on to more memory afterwards.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` runs (hence a static, not code). By default it keeps
/// freed pages for ten seconds and purges them only when some thread allocates again, so after
/// a burst of large replies an idle gateway held about 1 GB for a long time. A background
/// thread now purges, and freed pages go back to the system after one second.
// The one `unsafe_code` exception: jemalloc reads its options from this exported symbol.
#[allow(non_upper_case_globals, unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &u8 =
    &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0"[0];

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "A policy-scripted, OpenAI-compatible LLM gateway"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// The settings file (YAML: every flag below, named with `_` for `-`). Default:
    /// `switchboard.yaml` in the working directory, if present. Flags and the environment win
    /// over it.
    #[arg(long, env = "SWITCHBOARD_CONFIG", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve(Box<ServeArgs>),
    /// Validate providers.d, policies and the webhooks file, and exit 1 listing every error.
    Check(FolderArgs),
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Write the OpenAPI documents (proxy.json, admin.json) into a folder.
    Openapi {
        /// The folder to write into (created if missing).
        #[arg(long, default_value = "openapi")]
        out: PathBuf,
    },
    /// Manage client API keys in the data folder (while the gateway is stopped).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Ask a running gateway whether it is alive (`/health/live`) or ready (`--ready`): exit
    /// 0 when it answers 200, 1 otherwise. For container health checks.
    Healthcheck(HealthcheckArgs),
    /// Write what the store holds (keys as hashes, teams, assignments, counters, usage) to a
    /// file of JSON lines, for a backup or another store (while the gateway is stopped).
    Export(ExportArgs),
    /// Write an export into the store, replacing what has the same identity (while the
    /// gateway is stopped). The whole file is checked first: a bad line writes nothing.
    Import(ImportArgs),
}

/// Where the state lives: every command that opens the store takes these.
#[derive(Args, Clone)]
struct StoreArgs {
    /// Where keys, counters, budgets, the cache, assignments, usage and logs live: `sled` (a
    /// database in `--data`), `redis` (shared by a fleet: `--redis-url`) or `memory` (nothing
    /// survives a restart: for trying things out).
    #[arg(long, env = "SWITCHBOARD_STORE", value_enum, default_value = "sled")]
    store: StoreKind,
    /// Folder for the database (keys, counters, cache, usage, logs).
    #[arg(long, env = "SWITCHBOARD_DATA", default_value = "data")]
    data: PathBuf,
    #[command(flatten)]
    redis: RedisArgs,
}

impl StoreArgs {
    /// The settings `serve` opens the store with (in `Application::build`).
    fn fill(&self, settings: &mut Settings) {
        settings.store = self.store;
        settings.data_dir = self.data.clone();
        settings.redis = self.redis.options();
    }

    /// The store, for messages (never the Redis URL: it may hold a password).
    fn describe(&self) -> String {
        match self.store {
            StoreKind::Sled => format!("the sled database in {}", self.data.display()),
            StoreKind::Redis => format!("redis (prefix `{}`)", self.redis.redis_prefix),
            StoreKind::Memory => "memory".to_string(),
        }
    }
}

/// How much memory sled's page cache may take in a command that opens the store.
const CLI_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Opens the store the arguments name: every command but `serve` (which opens it in
/// `Application::build`, from the settings [`StoreArgs::fill`] gives it) opens it here.
async fn open_store(args: &StoreArgs) -> Result<Store, StoreError> {
    let redis = args.redis.options();
    Store::open_with(&StoreOptions {
        kind: args.store,
        dir: &args.data,
        cache_bytes: CLI_CACHE_BYTES,
        cache_max_entries: switchboard::store::DEFAULT_CACHE_ENTRIES,
        redis: redis.as_ref(),
    })
    .await
}

#[derive(Args)]
struct HealthcheckArgs {
    /// The gateway's base URL; without a scheme, `https://` when `--tls-cert` is set (also by
    /// `SWITCHBOARD_TLS_CERT` or the settings file, as for the gateway), `http://` otherwise.
    #[arg(long, default_value = "127.0.0.1:8080")]
    url: String,
    /// The gateway's certificate: only whether it is set is used, to choose the scheme.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", hide_env_values = true)]
    tls_cert: Option<PathBuf>,
    /// Check `/health/ready` (store and providers usable) instead of `/health/live`.
    #[arg(long)]
    ready: bool,
}

#[derive(Args)]
struct ExportArgs {
    /// The file to write (`-`: standard output). Written whole or not at all, readable by its
    /// owner only: it holds key hashes and usage.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct ImportArgs {
    /// An export (`-`: standard input).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Clone)]
struct FolderArgs {
    /// Folder of provider YAML files.
    #[arg(long, env = "SWITCHBOARD_PROVIDERS", default_value = "providers.d")]
    providers: PathBuf,
    /// Folder of Rhai policy scripts.
    #[arg(long, env = "SWITCHBOARD_POLICIES", default_value = "policies")]
    policies: PathBuf,
    /// Webhooks file (alerts); absent means no webhooks.
    #[arg(long, env = "SWITCHBOARD_WEBHOOKS", default_value = "webhooks.yaml")]
    webhooks: PathBuf,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = Settings::DEFAULT_LISTEN)]
    listen: SocketAddr,
    #[command(flatten)]
    folders: FolderArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "SWITCHBOARD_BODY_LIMIT", default_value_t = Settings::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
    /// Serve HTTPS: the certificate chain (PEM, leaf first). Needs --tls-key.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Serve HTTPS: the certificate's private key (PEM). Needs --tls-cert.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "SWITCHBOARD_WORKERS", default_value_t = 0)]
    workers: usize,
    /// On a policy script error, skip that script instead of failing the request with a 500.
    #[arg(long, env = "SWITCHBOARD_POLICY_FAIL_OPEN")]
    policy_fail_open: bool,
    /// Refuse to write or delete policy scripts through the admin API and the dashboard's
    /// editor (reading, validating, simulating and testing drafts still work).
    #[arg(long, env = "SWITCHBOARD_READ_ONLY_POLICIES")]
    read_only_policies: bool,
    /// Do not watch providers.d and policies for changes (SIGHUP and POST /admin/reload still work).
    #[arg(long, env = "SWITCHBOARD_NO_WATCH")]
    no_watch: bool,
    /// Keep request and response bodies in the request log (off: metadata only).
    #[arg(long, env = "SWITCHBOARD_LOG_BODIES")]
    log_bodies: bool,
    /// Days of request logs (and stored Responses API responses) to keep.
    #[arg(long, env = "SWITCHBOARD_LOG_MAX_AGE_DAYS", default_value_t = 7)]
    log_max_age_days: u64,
    /// The most request log entries to keep.
    #[arg(long, env = "SWITCHBOARD_LOG_MAX_ENTRIES", default_value_t = 100_000)]
    log_max_entries: usize,
    /// Days of hourly usage roll-ups to keep (keys' all-time figures are kept regardless).
    #[arg(long, env = "SWITCHBOARD_USAGE_MAX_AGE_DAYS", default_value_t = switchboard::ledger_writer::Retention::DEFAULT_USAGE_MAX_AGE_DAYS)]
    usage_max_age_days: u64,
    /// The most responses the cache keeps.
    #[arg(long, env = "SWITCHBOARD_CACHE_MAX_ENTRIES", default_value_t = switchboard::store::DEFAULT_CACHE_ENTRIES)]
    cache_max_entries: usize,
    /// What the process log shows: `info`, `debug`, or a filter such as
    /// `warn,switchboard=debug` (default: `RUST_LOG`, else `info`). Applies on reload.
    #[arg(long, env = "SWITCHBOARD_LOG_LEVEL")]
    log_level: Option<String>,
    /// How the process log (stderr) is written: `text`, or `json` (one object a line).
    #[arg(
        long,
        env = "SWITCHBOARD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// On SIGTERM or SIGINT, seconds that requests and streams in flight get to finish.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE_SECS", default_value_t = Settings::DEFAULT_SHUTDOWN_GRACE_SECS)]
    shutdown_grace_secs: u64,
    #[command(flatten)]
    cors: CorsArgs,
    /// A bearer token that reads /metrics and nothing else (Prometheus needs no admin key).
    /// Never logged.
    #[arg(long, env = "SWITCHBOARD_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Shadow copies of requests (a policy's `ctx.mirror`) that may run at once; one that finds
    /// no room is dropped and counted.
    #[arg(long, env = "SWITCHBOARD_MIRROR_CONCURRENCY", default_value_t = Settings::DEFAULT_MIRROR_CONCURRENCY)]
    mirror_concurrency: usize,
    /// Requests of batches (`/v1/batches`) in flight at once, over all batches.
    #[arg(long, env = "SWITCHBOARD_BATCH_CONCURRENCY", default_value_t = Settings::DEFAULT_BATCH_CONCURRENCY)]
    batch_concurrency: usize,
    /// Requests of one batch in flight at once.
    #[arg(long, env = "SWITCHBOARD_BATCH_CONCURRENCY_PER_BATCH", default_value_t = Settings::DEFAULT_BATCH_CONCURRENCY_PER_BATCH)]
    batch_concurrency_per_batch: usize,
    /// The largest file `/v1/files` accepts, in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_FILE_BYTES", default_value_t = Settings::DEFAULT_MAX_FILE_BYTES)]
    max_file_bytes: u64,
    /// Proxies (load balancers) trusted to say whom they forward for in X-Forwarded-For:
    /// addresses or networks (`10.0.0.0/8`); repeat, or separate with commas. Scripts see the
    /// client's address as `req.client_ip`.
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
    /// Also serve /metrics, without a key, on this address (e.g. 127.0.0.1:9090); keep it one
    /// only Prometheus can reach.
    #[arg(long, env = "SWITCHBOARD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    otlp: OtlpArgs,
}

/// OpenTelemetry traces: off unless `--otlp-endpoint` is given.
#[derive(Args, Clone)]
struct OtlpArgs {
    /// Export traces (OTLP over HTTP/protobuf) to this collector: a base URL
    /// (`http://localhost:4318`, to which /v1/traces is added) or the full traces URL.
    #[arg(long, env = "SWITCHBOARD_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// The share of requests traced (0 to 1) when a client's sampled traceparent did not
    /// decide. Can change at run time.
    #[arg(long, env = "SWITCHBOARD_OTLP_SAMPLING_RATIO", default_value_t = 1.0)]
    otlp_sampling_ratio: f64,
    /// A header sent with every export, NAME=VALUE (repeatable; the environment variable is a
    /// comma-separated list). Values are secrets: never logged.
    #[arg(
        long = "otlp-header",
        env = "SWITCHBOARD_OTLP_HEADERS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    otlp_headers: Vec<String>,
    /// The `service.name` the spans carry.
    #[arg(long, env = "SWITCHBOARD_OTLP_SERVICE_NAME", default_value = switchboard::telemetry::OtlpSettings::DEFAULT_SERVICE_NAME)]
    otlp_service_name: String,
}

impl OtlpArgs {
    /// The settings, or the first thing wrong (a header's value never shown). The ratio is
    /// checked even without an endpoint: a typo should not wait for tracing to be turned on.
    fn settings(
        &self,
    ) -> Result<Option<switchboard::telemetry::OtlpSettings>, switchboard::telemetry::TelemetryError>
    {
        use switchboard::telemetry::{sampler, OtlpSettings};
        sampler::check(self.otlp_sampling_ratio)?;
        let Some(endpoint) = &self.otlp_endpoint else {
            return Ok(None);
        };
        let mut settings = OtlpSettings::new(endpoint.clone());
        settings.sampling_ratio = self.otlp_sampling_ratio;
        settings.service_name = self.otlp_service_name.clone();
        settings.headers = self
            .otlp_headers
            .iter()
            .filter(|h| !h.trim().is_empty())
            .map(|h| OtlpSettings::parse_header(h))
            .collect::<Result<_, _>>()?;
        settings.check()?;
        Ok(Some(settings))
    }
}

/// CORS for browser pages on other origins: off unless `--cors-origin` is given.
#[derive(Args, Clone)]
struct CorsArgs {
    /// An origin allowed to call the gateway from a browser (`https://app.example.com`), or
    /// `*` for any; repeat, or separate with commas. None: CORS off.
    #[arg(
        long = "cors-origin",
        env = "SWITCHBOARD_CORS_ORIGINS",
        value_delimiter = ','
    )]
    origins: Vec<String>,
    /// Methods allowed cross-origin.
    #[arg(long, env = "SWITCHBOARD_CORS_METHODS", value_delimiter = ',', default_values_t = owned(CorsSettings::DEFAULT_METHODS))]
    cors_methods: Vec<String>,
    /// Request headers allowed (`*`: whichever a preflight asks for).
    #[arg(long, env = "SWITCHBOARD_CORS_HEADERS", value_delimiter = ',', default_values_t = owned(CorsSettings::DEFAULT_HEADERS))]
    cors_headers: Vec<String>,
    /// Response headers a page may read.
    #[arg(long, env = "SWITCHBOARD_CORS_EXPOSE_HEADERS", value_delimiter = ',', default_values_t = owned(CorsSettings::DEFAULT_EXPOSE_HEADERS))]
    cors_expose_headers: Vec<String>,
    /// Let pages send credentials (cookies, HTTP auth); not with origin `*`.
    #[arg(long, env = "SWITCHBOARD_CORS_CREDENTIALS")]
    cors_credentials: bool,
    /// How long a browser may cache a preflight answer, in seconds.
    #[arg(long, env = "SWITCHBOARD_CORS_MAX_AGE", default_value_t = CorsSettings::DEFAULT_MAX_AGE_SECS)]
    cors_max_age: usize,
}

impl CorsArgs {
    /// `None` when no origin is given: CORS is off.
    fn settings(&self) -> Option<CorsSettings> {
        let origins: Vec<String> = self
            .origins
            .iter()
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect();
        (!origins.is_empty()).then(|| CorsSettings {
            origins,
            methods: self.cors_methods.clone(),
            headers: self.cors_headers.clone(),
            expose_headers: self.cors_expose_headers.clone(),
            credentials: self.cors_credentials,
            max_age_secs: self.cors_max_age,
        })
    }
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Where Redis is, for `--store redis`.
#[derive(Args, Clone)]
struct RedisArgs {
    /// `redis://[:password@]host:port[/db]` or `rediss://` for TLS. Never logged.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Put before every Redis key, so several fleets can share one Redis.
    #[arg(long, env = "SWITCHBOARD_REDIS_PREFIX", default_value = switchboard::store::redis::RedisOptions::DEFAULT_PREFIX)]
    redis_prefix: String,
    /// The most a Redis call may take, in milliseconds.
    #[arg(long, env = "SWITCHBOARD_REDIS_TIMEOUT_MS", default_value_t = switchboard::store::redis::RedisOptions::DEFAULT_TIMEOUT_MS)]
    redis_timeout_ms: u64,
    /// While Redis cannot be reached: `closed` refuses requests that have limits (503
    /// `store_unavailable`), `open` admits them and charges their limits once it is back.
    #[arg(
        long,
        env = "SWITCHBOARD_REDIS_UNAVAILABLE",
        value_enum,
        default_value = "closed"
    )]
    redis_unavailable: switchboard::store::redis::Unavailable,
}

impl RedisArgs {
    /// No Redis: for commands that only open the data folder.
    fn none() -> RedisArgs {
        RedisArgs {
            redis_url: None,
            redis_prefix: switchboard::store::redis::RedisOptions::DEFAULT_PREFIX.into(),
            redis_timeout_ms: switchboard::store::redis::RedisOptions::DEFAULT_TIMEOUT_MS,
            redis_unavailable: switchboard::store::redis::Unavailable::Closed,
        }
    }

    fn options(&self) -> Option<switchboard::store::redis::RedisOptions> {
        Some(switchboard::store::redis::RedisOptions {
            url: self.redis_url.clone()?,
            prefix: self.redis_prefix.clone(),
            timeout: std::time::Duration::from_millis(self.redis_timeout_ms.max(1)),
            unavailable: self.redis_unavailable,
        })
    }
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run the fixtures in DIR/tests/*.yaml against the scripts in DIR; exit 1 on a mismatch.
    Test {
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "user")]
        role: Role,
        /// A model the key may use; repeat for several (default: all).
        #[arg(long = "model")]
        models: Vec<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// The team the key belongs to (a team id; it must exist).
        #[arg(long)]
        team: Option<String>,
        #[arg(long, env = "SWITCHBOARD_DATA", default_value = "data")]
        data: PathBuf,
    },
    /// List keys (masked).
    List {
        #[arg(long, env = "SWITCHBOARD_DATA", default_value = "data")]
        data: PathBuf,
    },
    /// Revoke a key by id.
    Revoke {
        id: String,
        #[arg(long, env = "SWITCHBOARD_DATA", default_value = "data")]
        data: PathBuf,
    },
}

fn main() -> ExitCode {
    // Before the flags are parsed: `.env` may set their variables.
    if let Err(code) = load_dotenv() {
        return code;
    }
    let argv: Vec<OsString> = std::env::args_os().collect();
    let resolved = match resolve(&argv) {
        Ok(r) => r,
        Err(Refused::Clap(e)) => e.exit(),
        Err(Refused::File(errors)) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let ResolvedCli { cli, origin } = resolved;
    // The log format and filter are settings of `serve`; the other commands log little, as text.
    let (format, level) = match &cli.command {
        None => (cli.serve.log_format, cli.serve.log_level.as_deref()),
        Some(Command::Serve(args)) => (args.log_format, args.log_level.as_deref()),
        Some(_) => (LogFormat::Text, None),
    };
    logging::init(format, &logging::start_filter(level));
    match cli.command {
        None => serve(cli.serve, &origin, argv),
        Some(Command::Serve(args)) => serve(*args, &origin, argv),
        Some(Command::Check(args)) => check(args, origin.file),
        Some(Command::Healthcheck(args)) => health_check(&args),
        Some(Command::Keys { command }) => keys(command),
        Some(Command::Export(args)) => export(&args),
        Some(Command::Import(args)) => import(&args),
        Some(Command::Openapi { out }) => openapi(&out),
        Some(Command::Policy {
            command: PolicyCommand::Test { dir },
        }) => policy_test(&dir),
    }
}

/// Reads `.env` in the working directory into the environment, if there is one, before the
/// flags are parsed (so `SWITCHBOARD_*` and the providers' `*_API_KEY`s can live there, as in
/// the usual compose setups). A variable already set wins. A file that cannot be read or
/// parsed stops the process with the line at fault; its values are never printed.
fn load_dotenv() -> Result<(), ExitCode> {
    match dotenvy::from_path(".env") {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(dotenvy::Error::LineParse(line, at)) => {
            // The parse error quotes the line, which may hold a secret: say only where.
            eprintln!(
                "error: .env: line {} cannot be read as NAME=value (at its character {})",
                line_number(".env", &line),
                at + 1
            );
            Err(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("error: .env: {}", dotenv_reason(&e));
            Err(ExitCode::from(2))
        }
    }
}

/// The 1-based number of the line of `path` that reads `line` (0 if it cannot be found).
fn line_number(path: &str, line: &str) -> usize {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    text.find(line.trim_end())
        .map(|at| text[..at].matches('\n').count() + 1)
        .unwrap_or(0)
}

/// Why `.env` could not be used, without any of its values.
fn dotenv_reason(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::Io(io) => io.to_string(),
        dotenvy::Error::EnvVar(_) => "a variable is not valid unicode".to_string(),
        _ => "it cannot be read".to_string(),
    }
}

/// The command line resolved with the settings file.
struct ResolvedCli {
    cli: Cli,
    origin: Origin,
}

/// Where the settings came from.
struct Origin {
    /// The settings file read, if any.
    file: Option<PathBuf>,
    /// The settings it gave (names as in the file).
    from_file: Vec<String>,
    /// clap's matches of the final command line, for the settings report.
    matches: clap::ArgMatches,
}

enum Refused {
    /// A bad command line (or `--help`, `--version`): clap prints and exits.
    Clap(clap::Error),
    File(Vec<SettingsError>),
}

/// Parses the command line, reads the settings file it (or `SWITCHBOARD_CONFIG`, or the
/// default) names, and parses again with the file's values for what neither a flag nor the
/// environment set: flag > environment > file > default.
fn resolve(argv: &[OsString]) -> Result<ResolvedCli, Refused> {
    let command = Cli::command();
    let first = command
        .clone()
        .try_get_matches_from(argv)
        .map_err(Refused::Clap)?;
    let named = leaf_matches(&first)
        .get_one::<PathBuf>("config")
        .or_else(|| first.get_one::<PathBuf>("config"))
        .cloned();
    let file = settings_file::locate(named.as_deref()).map_err(|e| Refused::File(vec![e]))?;
    let (argv, from_file) = match &file {
        Some(path) => SettingsFile::read(path, &command)
            .map_err(Refused::File)?
            .arguments_for(argv, &command, &first),
        None => (argv.to_vec(), Vec::new()),
    };
    let matches = command
        .clone()
        .try_get_matches_from(&argv)
        .map_err(Refused::Clap)?;
    let cli = Cli::from_arg_matches(&matches).map_err(Refused::Clap)?;
    Ok(ResolvedCli {
        cli,
        origin: Origin {
            file,
            from_file,
            matches,
        },
    })
}

/// The matches of the subcommand that runs.
fn leaf_matches(matches: &clap::ArgMatches) -> &clap::ArgMatches {
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    m
}

/// What a reload can change, checked, and the report of every `serve` setting. Errors in a
/// setting the file gave name the file's line.
fn resolved_settings(
    resolved: &Origin,
    args: &ServeArgs,
) -> Result<switchboard::settings::Resolved, Vec<SettingsError>> {
    let at = |key: &str, message: String| {
        let from_file = resolved.from_file.iter().any(|k| k == key);
        let file = resolved.file.as_ref().filter(|_| from_file);
        SettingsError {
            file: file
                .cloned()
                .unwrap_or_else(|| PathBuf::from("(command line)")),
            line: file.and_then(|f| {
                SettingsFile::read(f, &Cli::command())
                    .ok()
                    .and_then(|s| s.line_of(key))
            }),
            column: None,
            field: Some(key.to_string()),
            message,
        }
    };
    let mut errors = Vec::new();
    let cors = match args
        .cors
        .settings()
        .as_ref()
        .map(CorsPolicy::new)
        .transpose()
    {
        Ok(c) => c,
        Err(e) => {
            // The origins are what is usually wrong; say where they were set.
            let key = resolved
                .from_file
                .iter()
                .find(|k| k.starts_with("cors_"))
                .map_or("cors_origin", String::as_str);
            errors.push(at(key, e.to_string()));
            None
        }
    };
    if let Err(e) = TrustedProxies::parse(&args.trusted_proxies) {
        errors.push(at("trusted_proxies", e.to_string()));
    }
    // Every OTLP setting, checked as `serve` checks it; the ratio is what a reload applies.
    if let Err(e) = args.otlp.settings() {
        let key = if switchboard::telemetry::sampler::check(args.otlp.otlp_sampling_ratio).is_err()
        {
            "otlp_sampling_ratio"
        } else {
            "otlp_endpoint"
        };
        errors.push(at(key, e.to_string()));
    }
    let log_filter = logging::start_filter(args.log_level.as_deref());
    if let Err(e) = logging::check_filter(&log_filter) {
        errors.push(at("log_level", e.to_string()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // The serve flags are the top-level ones (`serve` repeats them).
    let serve_matches = match resolved.matches.subcommand() {
        Some(("serve", m)) => m,
        _ => &resolved.matches,
    };
    Ok(switchboard::settings::Resolved {
        cors,
        log_filter,
        sampling_ratio: args.otlp.otlp_sampling_ratio,
        report: settings_file::report(&Cli::command(), serve_matches, &resolved.from_file),
    })
}

/// The `serve` arguments of a resolved command line.
fn serve_args(cli: &Cli) -> Option<&ServeArgs> {
    match &cli.command {
        None => Some(&cli.serve),
        Some(Command::Serve(args)) => Some(args),
        Some(_) => None,
    }
}

/// Reads the command line, environment and settings file again, as `serve` did at start (for
/// reloads).
fn reread(argv: Vec<OsString>) -> switchboard::settings::Reread {
    std::sync::Arc::new(move || {
        let resolved = match resolve(&argv) {
            Ok(r) => r,
            Err(Refused::File(errors)) => return Err(errors),
            Err(Refused::Clap(e)) => {
                return Err(vec![SettingsError {
                    file: PathBuf::from("(command line)"),
                    line: None,
                    column: None,
                    field: None,
                    message: e.to_string(),
                }])
            }
        };
        match serve_args(&resolved.cli) {
            Some(args) => resolved_settings(&resolved.origin, args),
            None => Err(Vec::new()),
        }
    })
}

fn serve(args: ServeArgs, origin: &Origin, argv: Vec<OsString>) -> ExitCode {
    // A bad CORS, log, proxy or OTLP setting stops the start; a reload reads `argv` again.
    let reread = reread(argv);
    let started = match resolved_settings(origin, &args) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let mut settings = Settings::with_base(".");
    settings.source = Some(std::sync::Arc::new(switchboard::settings::SettingsSource {
        file: origin.file.clone(),
        reread,
        started: started.report,
    }));
    settings.listen = args.listen;
    settings.providers_dir = args.folders.providers;
    settings.policies_dir = args.folders.policies;
    settings.webhooks_file = args.folders.webhooks;
    args.store.fill(&mut settings);
    settings.body_limit = args.body_limit;
    settings.workers = args.workers;
    settings.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(switchboard::tls::TlsFiles { cert, key }),
        _ => None,
    };
    settings.policy_fail_open = args.policy_fail_open;
    settings.read_only_policies = args.read_only_policies;
    settings.watch = !args.no_watch;
    settings.log_bodies = args.log_bodies;
    settings.log_retention = switchboard::ledger_writer::Retention {
        max_age: std::time::Duration::from_secs(args.log_max_age_days.saturating_mul(86_400)),
        max_entries: args.log_max_entries,
        usage_max_age: std::time::Duration::from_secs(
            args.usage_max_age_days.saturating_mul(86_400),
        ),
    };
    settings.cache_max_entries = args.cache_max_entries;
    settings.admin_key = std::env::var("SWITCHBOARD_ADMIN_KEY").ok();
    settings.shutdown_grace = std::time::Duration::from_secs(args.shutdown_grace_secs);
    settings.cors = args.cors.settings();
    settings.metrics_token = args.metrics_token;
    settings.metrics_listen = args.metrics_listen;
    settings.mirror_concurrency = args.mirror_concurrency;
    settings.batch_concurrency = args.batch_concurrency;
    settings.batch_concurrency_per_batch = args.batch_concurrency_per_batch;
    settings.max_file_bytes = args.max_file_bytes;
    settings.trusted_proxies = match TrustedProxies::parse(&args.trusted_proxies) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --trusted-proxies: {e}");
            return ExitCode::from(2);
        }
    };
    settings.otlp = match args.otlp.settings() {
        Ok(otlp) => otlp,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut app = match Application::build(settings).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(secret) = app.take_new_admin_key() {
            println!("created an admin key (shown only this once; store it now):\n  {secret}");
        }
        // The listening line last: a supervisor (or a test) may stop reading there.
        if let Some(addr) = app.metrics_addr() {
            println!("metrics (no key) on http://{addr}/metrics");
        }
        println!("switchboard listening on {}://{}", app.scheme(), app.addr());
        match app.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn health_check(args: &HealthcheckArgs) -> ExitCode {
    match healthcheck::check(&args.url, args.ready, args.tls_cert.is_some()) {
        Ok(url) => {
            println!("ok: {url}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // The causes say why (connection refused, timed out), not only that it failed.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            // (A cause already shown by the message above it is not repeated.)
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.ends_with(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = cause.source();
            }
            eprintln!("unhealthy: {message}");
            ExitCode::FAILURE
        }
    }
}

fn openapi(out: &std::path::Path) -> ExitCode {
    match switchboard::openapi::write_all(out) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write to {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

fn check(args: FolderArgs, file: Option<PathBuf>) -> ExitCode {
    // The settings file is checked as `serve` would read it (its CORS and log settings too).
    if let Some(path) = &file {
        let mut argv: Vec<OsString> = vec!["switchboard".into(), "--config".into()];
        argv.push(path.clone().into_os_string());
        match reread(argv)() {
            Ok(_) => println!("ok       settings {}", path.display()),
            Err(errors) => {
                for e in &errors {
                    eprintln!("error: {e}");
                }
                eprintln!("{} error(s)", errors.len());
                return ExitCode::FAILURE;
            }
        }
    }
    // As the server loads at start, with the default limits and failing closed.
    let sources = load::Sources::new(
        args.providers.clone(),
        args.policies.clone(),
        args.webhooks.clone(),
        Settings::DEFAULT_BODY_LIMIT,
        false,
    );
    let loaded = sources.read();
    // What is valid is listed even when the other folder is not.
    if let Ok(config) = &loaded.config {
        for p in &config.providers {
            println!(
                "ok       {} ({}, {} models)",
                p.name,
                p.kind.as_str(),
                p.models.len()
            );
        }
        for s in &config.skipped {
            println!("skipped  {}: {}", s.name, s.reason);
        }
    }
    if let Ok(set) = &loaded.policies {
        for name in set.script_names() {
            println!("ok       policy {name}");
        }
    }
    if let Ok(hooks) = &loaded.webhooks {
        for hook in &hooks.hooks {
            let events: Vec<&str> = hook.events.iter().map(|e| e.as_str()).collect();
            println!(
                "ok       webhook {} ({})",
                hook.display_url(),
                events.join(", ")
            );
        }
    }
    let errors: Vec<String> = match loaded.build(1, None) {
        Ok(_) => Vec::new(),
        Err(load::LoadFailure::Invalid {
            config,
            policies,
            webhooks,
        }) => config
            .iter()
            .map(ToString::to_string)
            .chain(policies.iter().map(ToString::to_string))
            .chain(webhooks.iter().map(ToString::to_string))
            .collect(),
        Err(load::LoadFailure::Build(e)) => vec![format!("{}: {e}", args.providers.display())],
    };
    if errors.is_empty() {
        if args.webhooks.exists() {
            println!(
                "{}, {} and {} are valid",
                args.providers.display(),
                args.policies.display(),
                args.webhooks.display()
            );
        } else {
            println!(
                "{} and {} are valid",
                args.providers.display(),
                args.policies.display()
            );
        }
        ExitCode::SUCCESS
    } else {
        for e in &errors {
            eprintln!("error: {e}");
        }
        eprintln!("{} error(s)", errors.len());
        ExitCode::FAILURE
    }
}

fn policy_test(dir: &std::path::Path) -> ExitCode {
    match policy::fixtures::run_dir(dir) {
        Ok(report) => {
            for line in &report.lines {
                println!("{line}");
            }
            if !report.coverage.is_empty() {
                println!("lines executed by the fixtures:");
                for script in &report.coverage {
                    println!("  {}", script.summary());
                }
            }
            println!(
                "policy fixtures: {} passed, {} failed",
                report.passed, report.failed
            );
            if report.failed == 0 && report.passed > 0 {
                ExitCode::SUCCESS
            } else {
                if report.passed == 0 && report.failed == 0 {
                    eprintln!("no fixtures found in {}/tests", dir.display());
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keys(command: KeysCommand) -> ExitCode {
    let data = match &command {
        KeysCommand::Create { data, .. }
        | KeysCommand::List { data }
        | KeysCommand::Revoke { data, .. } => data.clone(),
    };
    // Bad input is refused before the data folder is touched.
    if let KeysCommand::Create { limits, .. } = &command {
        if let Err(e) = limits.limits().validate() {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    // `keys` works on the data folder's sled database: it takes no `--store` (with Redis, use
    // the admin API of any instance).
    let at = StoreArgs {
        store: StoreKind::Sled,
        data,
        redis: RedisArgs::none(),
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let store = open_store(&at).await?;
        keys_command(&store, command).await?;
        store.flush().await.map_err(KeysError::from)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A key's limits on the command line; each is optional (see README, "Limits and budgets").
#[derive(Args, Debug)]
struct LimitArgs {
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// Requests per day (UTC).
    #[arg(long)]
    rpd: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// Tokens per day (UTC).
    #[arg(long)]
    tpd: Option<u64>,
    /// Requests in flight at once.
    #[arg(long)]
    max_parallel: Option<u64>,
    /// USD per day (UTC).
    #[arg(long)]
    budget_usd_day: Option<f64>,
    /// USD per calendar month (UTC).
    #[arg(long)]
    budget_usd_month: Option<f64>,
    /// USD over the key's lifetime.
    #[arg(long)]
    budget_usd_total: Option<f64>,
    /// End a stream mid-way rather than let it pass `--tpm` or `--tpd`.
    #[arg(long)]
    hard_token_budgets: bool,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            rpm: self.rpm,
            rpd: self.rpd,
            tpm: self.tpm,
            tpd: self.tpd,
            max_parallel: self.max_parallel,
            budget_usd_day: self.budget_usd_day,
            budget_usd_month: self.budget_usd_month,
            budget_usd_total: self.budget_usd_total,
            hard: self.hard_token_budgets,
        }
    }
}

/// Why a `keys` command failed.
#[derive(Debug, thiserror::Error)]
enum KeysError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no team has the id `{0}` (teams are made with POST /admin/teams)")]
    UnknownTeam(String),
}

/// Runs one `keys` command against the open store.
async fn keys_command(store: &Store, command: KeysCommand) -> Result<(), KeysError> {
    match command {
        KeysCommand::Create {
            name,
            role,
            models,
            limits,
            team,
            ..
        } => {
            if let Some(id) = &team {
                if store.teams.find(id).await?.is_none() {
                    return Err(KeysError::UnknownTeam(id.clone()));
                }
            }
            let new = NewKey {
                name,
                role,
                models,
                limits: limits.limits(),
                team,
                ..NewKey::default()
            };
            let (record, secret) = store.keys.create(new).await?;
            println!("id:     {}", record.id);
            println!("name:   {}", record.name);
            println!("role:   {:?}", record.role);
            println!("key:    {secret}");
            println!("(the key is shown only this once)");
        }
        KeysCommand::List { .. } => {
            for k in store.keys.list().await? {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}  {:<7} {:<8} {}  {}",
                    k.id,
                    format!("{:?}", k.role).to_lowercase(),
                    state,
                    k.masked,
                    k.name
                );
            }
        }
        KeysCommand::Revoke { id, .. } => match store.keys.revoke(&id).await? {
            Some(_) => println!("revoked {id}"),
            None => println!("no key with id {id}"),
        },
    }
    Ok(())
}

/// The runtime a command that opens the store runs its calls on.
fn runtime() -> Result<tokio::runtime::Runtime, PortError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PortError::Runtime)
}

/// Why `export` or `import` failed.
#[derive(Debug, thiserror::Error)]
enum PortError {
    #[error("the data folder {0} is in use by another switchboard process: stop the gateway first (export and import open the database directly)")]
    Locked(String),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    File(#[from] BackupError),
    #[error("--store memory keeps nothing between processes: {0}")]
    Memory(&'static str),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl From<StoreError> for PortError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Locked(dir) => PortError::Locked(dir),
            other => PortError::Store(other),
        }
    }
}

fn export(args: &ExportArgs) -> ExitCode {
    match export_records(args) {
        // On standard output the export is the output: the summary goes beside it.
        Ok(counts) if args.out.as_os_str() == backup::STDIO => {
            eprintln!("exported {counts}");
            ExitCode::SUCCESS
        }
        Ok(counts) => {
            println!("exported {counts} to {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn export_records(args: &ExportArgs) -> Result<ImportCounts, PortError> {
    if args.store.store == StoreKind::Memory {
        return Err(PortError::Memory("a new one holds nothing to export"));
    }
    let records = runtime()?.block_on(async {
        let store = open_store(&args.store).await?;
        store.portable.export().await
    })?;
    if args.out.as_os_str() == backup::STDIO {
        backup::write_records(&records, std::io::stdout().lock()).map_err(|source| {
            BackupError::Write {
                file: "standard output".into(),
                source,
            }
        })?;
    } else {
        backup::write_file(&records, &args.out)?;
    }
    Ok(ImportCounts::of(&records))
}

fn import(args: &ImportArgs) -> ExitCode {
    match import_records(args) {
        Ok(counts) => {
            println!("imported {counts} into {}", args.store.describe());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn import_records(args: &ImportArgs) -> Result<ImportCounts, PortError> {
    if args.store.store == StoreKind::Memory {
        return Err(PortError::Memory(
            "what is imported would be lost as this command ends",
        ));
    }
    // Every line is read and checked before the store is even opened: a bad one writes nothing.
    let records = backup::read_file(&args.file)?;
    runtime()?.block_on(async {
        let store = open_store(&args.store).await?;
        let counts = store.portable.import(records).await?;
        store.flush().await?;
        Ok(counts)
    })
}
