//! `webhooks.yaml`: the receivers, each with the events it wants, validated whole like a
//! providers.d file (unknown fields are errors with file, line and field). An absent file is no
//! webhooks; a present one must be valid for a load (start, reload, `check`) to succeed.
//!
//! ```yaml
//! webhooks:
//!   - url: https://alerts.example.com/switchboard
//!     secret: ${SWITCHBOARD_WEBHOOK_SECRET}
//!     events: [breaker.opened, breaker.closed, reload.rolled_back]
//!     timeout_secs: 5      # optional, per attempt
//!     max_attempts: 5      # optional, the first try included
//! ```

use super::event::EventKind;
use crate::config::env::interpolate;
use crate::config::{ConfigError, Secret, SourceFile};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The shortest secret accepted: an HMAC key an attacker could guess protects nothing.
pub const MIN_SECRET_BYTES: usize = 16;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
const MAX_TIMEOUT_SECS: f64 = 60.0;
const MAX_ATTEMPTS_LIMIT: u32 = 10;

/// The validated webhooks; empty when the file is absent.
#[derive(Debug, Clone, Default)]
pub struct WebhookConfig {
    pub hooks: Vec<Arc<Hook>>,
    /// The file this came from, with its hash; `None` when there is no file.
    pub file: Option<SourceFile>,
}

impl WebhookConfig {
    /// The hooks that want `kind`.
    pub fn subscribed(&self, kind: EventKind) -> impl Iterator<Item = &Arc<Hook>> {
        self.hooks.iter().filter(move |h| h.events.contains(&kind))
    }
}

/// One receiver. `Debug` never shows the secret (it is a [`Secret`]) nor the URL's
/// credentials or query (see [`Hook::display_url`]).
#[derive(Clone, PartialEq)]
pub struct Hook {
    pub url: reqwest::Url,
    pub secret: Secret,
    /// The events it wants, without repeats, in file order.
    pub events: Vec<EventKind>,
    /// Per attempt: connecting, sending, and the receiver's answer.
    pub timeout: Duration,
    /// Tries in all, the first included.
    pub max_attempts: u32,
}

impl Hook {
    /// The URL as it may be shown and logged: no user, password, query or fragment (tokens
    /// often ride there).
    pub fn display_url(&self) -> String {
        display_url(&self.url)
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("url", &self.display_url())
            .field("events", &self.events)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// `scheme://host[:port]/path`, with `?…` when a query was dropped.
pub fn display_url(url: &reqwest::Url) -> String {
    let mut shown = format!("{}://", url.scheme());
    if let Some(host) = url.host_str() {
        shown.push_str(host);
    }
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    if url.query().is_some() {
        shown.push_str("?…");
    }
    shown
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// `webhooks:` with nothing under it is an empty list too.
    #[serde(default)]
    webhooks: Option<Vec<RawHook>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    url: HookUrl,
    secret: HookSecret,
    events: Events,
    #[serde(default, deserialize_with = "timeout")]
    timeout_secs: Option<Duration>,
    #[serde(default, deserialize_with = "attempts")]
    max_attempts: Option<u32>,
}

/// A `${VAR}` reference resolved; an unset variable is an error here (unlike a provider's
/// key, which skips the provider): a webhook that silently does not exist alerts no one.
fn resolved<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = String::deserialize(d)?;
    let text = interpolate(&raw, |name| std::env::var(name).ok()).map_err(de::Error::custom)?;
    match text.value {
        Some(value) => Ok(value),
        None => Err(de::Error::custom(format!(
            "environment variable(s) not set: {}",
            text.missing.join(", ")
        ))),
    }
}

struct HookUrl(reqwest::Url);

impl<'de> Deserialize<'de> for HookUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = resolved(d)?;
        // The message never quotes the URL: it may carry a token (`${VAR}` in a query).
        let url = reqwest::Url::parse(&text)
            .map_err(|e| de::Error::custom(format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(de::Error::custom(
                "must be an http:// or https:// URL with a host",
            ));
        }
        Ok(HookUrl(url))
    }
}

struct HookSecret(Secret);

impl<'de> Deserialize<'de> for HookSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = resolved(d)?;
        if value.len() < MIN_SECRET_BYTES {
            return Err(de::Error::custom(format!(
                "must be at least {MIN_SECRET_BYTES} bytes (it is {}); generate one with `openssl rand -hex 32`",
                value.len()
            )));
        }
        Ok(HookSecret(Secret::new(value)))
    }
}

/// One entry of `events`: a name, or `"*"` for all of them. Checked one by one, so a wrong
/// name is reported at its own line.
struct EventName(Vec<EventKind>);

impl<'de> Deserialize<'de> for EventName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if name == "*" {
            return Ok(EventName(EventKind::ALL.to_vec()));
        }
        match EventKind::ALL.iter().find(|k| k.as_str() == name) {
            Some(kind) => Ok(EventName(vec![*kind])),
            None => {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                Err(de::Error::custom(format!(
                    "unknown event `{name}`; expected one of {}, or \"*\"",
                    known.join(", ")
                )))
            }
        }
    }
}

/// The events a hook wants, without repeats, in file order.
struct Events(Vec<EventKind>);

impl<'de> Deserialize<'de> for Events {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<EventName>::deserialize(d)?;
        if names.is_empty() {
            return Err(de::Error::custom(
                "lists no events; name at least one, or \"*\" for all",
            ));
        }
        let mut kinds: Vec<EventKind> = Vec::new();
        for kind in names.into_iter().flat_map(|n| n.0) {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(Events(kinds))
    }
}

fn timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v > 0.0 && v <= MAX_TIMEOUT_SECS {
        Ok(Some(Duration::from_secs_f64(v)))
    } else {
        Err(de::Error::custom(format!(
            "must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECS}, got {v}"
        )))
    }
}

fn attempts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = u64::deserialize(d)?;
    if (1..=u64::from(MAX_ATTEMPTS_LIMIT)).contains(&v) {
        Ok(Some(v as u32))
    } else {
        Err(de::Error::custom(format!(
            "must be from 1 to {MAX_ATTEMPTS_LIMIT}, got {v}"
        )))
    }
}

/// Reads and validates `path`. A missing file is an empty config; any other problem is an
/// error naming the file (and, from the parser, the line and field).
pub fn load_file(path: &Path) -> Result<WebhookConfig, Vec<ConfigError>> {
    let err = |line: Option<usize>, column: Option<usize>, field: String, message: String| {
        vec![ConfigError {
            file: path.to_path_buf(),
            line,
            column,
            field,
            message,
        }]
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(WebhookConfig::default()),
        Err(e) => {
            return Err(err(
                None,
                None,
                String::new(),
                format!("cannot read file: {e}"),
            ))
        }
    };
    let file = SourceFile {
        path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(text.as_bytes())),
    };
    // A file of comments only (or nothing) is a valid "no webhooks", as an empty list is.
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        return Ok(WebhookConfig {
            hooks: Vec::new(),
            file: Some(file),
        });
    }
    let de = serde_yaml::Deserializer::from_str(&text);
    let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let location = inner.location();
        // serde_yaml appends " at line L column C"; the position is reported apart.
        let mut message = inner.to_string();
        if let Some(idx) = message.find(" at line ") {
            message.truncate(idx);
        }
        err(
            location.as_ref().map(|l| l.line()),
            location.as_ref().map(|l| l.column()),
            if field == "." { String::new() } else { field },
            message,
        )
    })?;
    let hooks = raw
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .map(|h| {
            Arc::new(Hook {
                url: h.url.0,
                secret: h.secret.0,
                events: h.events.0,
                timeout: h.timeout_secs.unwrap_or(DEFAULT_TIMEOUT),
                max_attempts: h.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            })
        })
        .collect();
    Ok(WebhookConfig {
        hooks,
        file: Some(file),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<WebhookConfig, Vec<ConfigError>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhooks.yaml");
        std::fs::write(&path, text).unwrap();
        load_file(&path)
    }

    fn one_error(text: &str) -> ConfigError {
        let mut errors = load(text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0)
    }

    #[test]
    fn an_absent_or_blank_file_is_no_webhooks() {
        let dir = tempfile::tempdir().unwrap();
        let absent = load_file(&dir.path().join("webhooks.yaml")).unwrap();
        assert!(absent.hooks.is_empty() && absent.file.is_none());
        let blank = load("# nothing yet\n\n").unwrap();
        assert!(blank.hooks.is_empty() && blank.file.is_some());
        assert!(load("webhooks: []\n").unwrap().hooks.is_empty());
        assert!(load("webhooks:\n").unwrap().hooks.is_empty());
    }

    #[test]
    fn a_full_entry_with_defaults_and_a_wildcard() {
        let config = load(
            "webhooks:\n  - url: https://example.com/hook\n    secret: 0123456789abcdef\n    events: [breaker.opened, breaker.opened, reload.rolled_back]\n  - url: http://127.0.0.1:9/all?token=qtok-secret\n    secret: 0123456789abcdef\n    events: ['*']\n    timeout_secs: 0.5\n    max_attempts: 2\n",
        )
        .unwrap();
        let (a, b) = (&config.hooks[0], &config.hooks[1]);
        assert_eq!(
            a.events,
            vec![EventKind::BreakerOpened, EventKind::ReloadRolledBack]
        );
        assert_eq!(
            (a.timeout, a.max_attempts),
            (DEFAULT_TIMEOUT, DEFAULT_MAX_ATTEMPTS)
        );
        assert_eq!(b.events.len(), EventKind::ALL.len());
        assert_eq!((b.timeout, b.max_attempts), (Duration::from_millis(500), 2));
        assert_eq!(b.display_url(), "http://127.0.0.1:9/all?…");
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("0123456789abcdef") && !debug.contains("qtok-secret"),
            "{debug}"
        );
        assert_eq!(
            config.subscribed(EventKind::KeyExpiring).count(),
            1,
            "only the wildcard wants key.expiring"
        );
    }

    #[test]
    fn unknown_fields_and_events_are_errors_with_line_and_field() {
        let e = one_error(
            "webhooks:\n  - url: https://example.com/hook\n    secret: 0123456789abcdef\n    events: [breaker.opened]\n    colour: red\n",
        );
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("unknown field `colour`"), "{e}");
        let e = one_error(
            "webhooks:\n  - url: https://example.com/hook\n    secret: 0123456789abcdef\n    events: [breaker.open]\n",
        );
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(4), "webhooks[0].events[0]"),
            "{e}"
        );
        assert!(e.message.contains("unknown event `breaker.open`"), "{e}");
        let e = one_error("hooks: []\n");
        assert!(e.message.contains("unknown field `hooks`"), "{e}");
    }

    #[test]
    fn bad_values_are_errors_that_never_quote_the_secret() {
        let e = one_error(
            "webhooks:\n  - url: ftp://example.com/hook\n    secret: 0123456789abcdef\n    events: ['*']\n",
        );
        assert_eq!(e.field, "webhooks[0].url", "{e}");
        let e = one_error(
            "webhooks:\n  - url: https://example.com/hook\n    secret: short-secret\n    events: ['*']\n",
        );
        assert_eq!(e.field, "webhooks[0].secret", "{e}");
        assert!(!e.to_string().contains("short-secret"), "{e}");
        let e = one_error(
            "webhooks:\n  - url: https://example.com/hook\n    secret: ${SB_WEBHOOK_TEST_UNSET_SECRET}\n    events: ['*']\n",
        );
        assert!(
            e.message
                .contains("environment variable(s) not set: SB_WEBHOOK_TEST_UNSET_SECRET"),
            "{e}"
        );
        let e = one_error(
            "webhooks:\n  - url: https://example.com/hook\n    secret: 0123456789abcdef\n    events: []\n",
        );
        assert!(e.message.contains("lists no events"), "{e}");
        let e = one_error(
            "webhooks:\n  - url: https://example.com/hook\n    secret: 0123456789abcdef\n    events: ['*']\n    max_attempts: 0\n",
        );
        assert_eq!(e.field, "webhooks[0].max_attempts", "{e}");
        let e = one_error(
            "webhooks:\n  - url: https://example.com/hook\n    secret: 0123456789abcdef\n    events: ['*']\n    timeout_secs: 600\n",
        );
        assert_eq!(e.field, "webhooks[0].timeout_secs", "{e}");
    }
}
