//! providers.d: YAML files in, one validated [`Config`] out, or every error at once.
//!
//! Loading never half-succeeds: either all files are valid and a whole `Config` comes back, or
//! the caller gets the full list of [`ConfigError`]s (file, line, field path, message) and keeps
//! whatever it was running before.

pub mod env;
pub mod raw;
pub mod resilience;
mod validate;

pub use raw::{Pricing, ProviderKind, RawMock as MockOptions, UnsupportedParams};
pub use resilience::{BreakerPolicy, HealthCheck, RetryPolicy};

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest model name (or `provider/model` id) the gateway accepts, in bytes: longer ones
/// are a config error in providers.d and a 400 in requests.
pub const MAX_MODEL_NAME_BYTES: usize = 256;

/// The validated provider configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Enabled providers with everything they need, sorted by name.
    pub providers: Vec<ProviderConfig>,
    /// Providers that are valid but not serving, and why.
    pub skipped: Vec<SkippedProvider>,
    /// The files this came from, with their hashes.
    pub files: Vec<SourceFile>,
}

#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub sha256: String,
}

/// A provider file that is valid but not serving, and why (e.g. its API key variable is unset).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SkippedProvider {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: Option<reqwest::Url>,
    pub api_key: Option<Secret>,
    pub headers: Vec<(String, Secret)>,
    pub timeouts: Timeouts,
    pub stream_usage: bool,
    pub models: Vec<ModelConfig>,
    pub mock: MockOptions,
    /// Azure OpenAI's `api-version`; set only for `kind: azure`.
    pub api_version: Option<String>,
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
    pub health_check: Option<HealthCheck>,
    /// Share among balanced targets of equal rank (`weighted`); default 1.
    pub weight: u32,
    /// What the anthropic and gemini adapters do with parameters they cannot map.
    pub unsupported_params: UnsupportedParams,
    /// The largest non-streamed reply read from the provider (a 502 beyond it).
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The name clients use (after `provider/`).
    pub name: String,
    /// The id sent upstream.
    pub upstream: String,
    pub pricing: Option<Pricing>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Idle: the longest silence while reading, also between stream chunks.
    pub read: Duration,
    /// Until the response headers (a whole non-streamed reply), or a stream's first event.
    pub first_byte: Duration,
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(300),
            first_byte: Duration::from_secs(300),
            total: Duration::from_secs(600),
        }
    }
}

/// A value that must never be printed: API keys, header values that may carry tokens.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted field path such as `models[1].pricing.input`; empty for whole-file problems.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found, so one `check` run shows them all.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates every `*.yaml` / `*.yml` file in `dir`.
pub fn load_dir(dir: &Path) -> Result<Config, ConfigErrors> {
    let whole_dir_error = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: dir.to_path_buf(),
            line: None,
            column: None,
            field: String::new(),
            message,
        }])
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| whole_dir_error(format!("cannot read the providers folder: {e}")))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| is_provider_file(p))
        .collect();
    paths.sort();

    let mut config = Config::default();
    let mut errors = Vec::new();
    let mut seen: Vec<(String, PathBuf)> = Vec::new();
    for path in paths {
        let name = provider_name(&path);
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            errors.push(ConfigError {
                file: path.clone(),
                line: None,
                column: None,
                field: String::new(),
                message: format!(
                    "provider `{name}` is already defined by {}",
                    first.display()
                ),
            });
            continue;
        }
        seen.push((name.clone(), path.clone()));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                errors.push(ConfigError {
                    file: path.clone(),
                    line: None,
                    column: None,
                    field: String::new(),
                    message: format!("cannot read file: {e}"),
                });
                continue;
            }
        };
        config.files.push(SourceFile {
            path: path.clone(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        });
        match validate::provider_file(&path, &name, &text) {
            Ok(validate::Loaded::Serving(p)) => config.providers.push(*p),
            Ok(validate::Loaded::Skipped(s)) => config.skipped.push(s),
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Provider files are `*.yaml` / `*.yml`, not hidden (editors' swap and backup files are).
fn is_provider_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.') || n.ends_with('~'));
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml")
    );
    yaml && !hidden && path.is_file()
}

fn provider_name(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string()
}
