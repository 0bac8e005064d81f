//! One provider file: parse (with positions), then the checks that span several fields.

use super::env::EnvString;
use super::raw::{ProviderKind, RawProvider};
use super::{ConfigError, ModelConfig, ProviderConfig, Secret, SkippedProvider, Timeouts};
use std::path::Path;
use std::time::Duration;

pub enum Loaded {
    Serving(Box<ProviderConfig>),
    Skipped(SkippedProvider),
}

pub fn provider_file(path: &Path, name: &str, text: &str) -> Result<Loaded, Vec<ConfigError>> {
    let err = |line: Option<usize>, field: &str, message: String| ConfigError {
        file: path.to_path_buf(),
        line,
        column: None,
        field: field.to_string(),
        message,
    };
    if !valid_provider_name(name) {
        return Err(vec![err(
            None,
            "",
            format!(
                "`{name}` is not a valid provider name (the file name): use letters, digits, `-`, `_` and `.`"
            ),
        )]);
    }
    let raw = parse(path, text)?;

    let mut errors = Vec::new();
    let line_of = |key: &str| find_key_line(text, key);

    match raw.kind {
        ProviderKind::Mock if raw.base_url.is_some() => errors.push(err(
            line_of("base_url"),
            "base_url",
            "is not used by kind `mock`; remove it".into(),
        )),
        ProviderKind::Mock => {}
        // Every network kind needs its URL; presets carry the public defaults, the code none.
        kind if raw.base_url.is_none() => errors.push(err(
            Some(1),
            "base_url",
            format!("is required for kind `{}`", kind.as_str()),
        )),
        _ => {}
    }
    match (raw.kind, &raw.api_version) {
        (ProviderKind::Azure, None) => errors.push(err(
            Some(1),
            "api_version",
            "is required for kind `azure` (for example `2024-10-21`)".into(),
        )),
        (ProviderKind::Azure, _) | (_, None) => {}
        (kind, Some(_)) => errors.push(err(
            line_of("api_version"),
            "api_version",
            format!("only applies to kind `azure`, not `{}`", kind.as_str()),
        )),
    }
    if raw.mock.is_some() && raw.kind != ProviderKind::Mock {
        errors.push(err(
            line_of("mock"),
            "mock",
            format!("only applies to kind `mock`, not `{}`", raw.kind.as_str()),
        ));
    }
    if raw.models.is_empty() {
        errors.push(err(
            line_of("models"),
            "models",
            "lists no models; add at least one".into(),
        ));
    }
    let mut models: Vec<ModelConfig> = Vec::with_capacity(raw.models.len());
    for (i, m) in raw.models.iter().enumerate() {
        let field = format!("models[{i}]");
        if m.name.trim().is_empty() || m.name.trim() != m.name {
            errors.push(err(
                line_of("models"),
                &field,
                format!("model name {:?} is empty or has surrounding spaces", m.name),
            ));
            continue;
        }
        let id_bytes = name.len() + 1 + m.name.len();
        if id_bytes > super::MAX_MODEL_NAME_BYTES {
            errors.push(err(
                find_text_line(text, &m.name),
                &field,
                format!(
                    "model id `{name}/…` is {id_bytes} bytes; requests may name at most {} bytes",
                    super::MAX_MODEL_NAME_BYTES
                ),
            ));
            continue;
        }
        if models.iter().any(|prev| prev.name == m.name) {
            errors.push(err(
                find_text_line(text, &m.name),
                &field,
                format!("model `{}` is listed twice", m.name),
            ));
            continue;
        }
        models.push(ModelConfig {
            name: m.name.clone(),
            upstream: m.upstream.clone().unwrap_or_else(|| m.name.clone()),
            pricing: m.pricing,
        });
    }
    for (header, _) in raw.headers.iter() {
        if actix_web::http::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
            errors.push(err(
                find_text_line(text, header),
                &format!("headers.{header}"),
                "is not a valid HTTP header name".into(),
            ));
        }
    }

    // Unset variables skip the provider rather than fail the load.
    let mut missing: Vec<String> = Vec::new();
    let mut note_missing = |s: &EnvString| {
        for m in &s.missing {
            if !missing.contains(m) {
                missing.push(m.clone());
            }
        }
    };
    raw.base_url.iter().for_each(&mut note_missing);
    raw.api_key.iter().for_each(&mut note_missing);
    raw.headers.values().for_each(&mut note_missing);
    raw.api_version.iter().for_each(&mut note_missing);

    let base_url = match raw.base_url.as_ref().and_then(|u| u.value.as_deref()) {
        Some(text_url) => match parse_base_url(text_url) {
            Ok(url) => Some(url),
            Err(e) => {
                errors.push(err(line_of("base_url"), "base_url", e.to_string()));
                None
            }
        },
        None => None,
    };
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, value) in &raw.headers {
        if let Some(v) = &value.value {
            if actix_web::http::header::HeaderValue::from_str(v).is_err() {
                errors.push(err(
                    find_text_line(text, name),
                    &format!("headers.{name}"),
                    "is not a valid HTTP header value".into(),
                ));
            }
            headers.push((name.to_ascii_lowercase(), Secret::new(v.clone())));
        }
    }

    let retry = super::RetryPolicy::from_raw(&raw.retry)
        .map_err(|e| errors.push(err(line_of("retry"), "retry", e.to_string())))
        .ok();
    let health_check = match &raw.health_check {
        Some(h) => super::HealthCheck::from_raw(h)
            .map_err(|e| {
                errors.push(err(
                    line_of("health_check"),
                    "health_check.path",
                    e.to_string(),
                ))
            })
            .ok(),
        None => None,
    };
    if health_check.is_some() && raw.kind == ProviderKind::Mock {
        errors.push(err(
            line_of("health_check"),
            "health_check",
            "does not apply to kind `mock`, which has no upstream to probe".into(),
        ));
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    if !raw.enabled {
        return Ok(Loaded::Skipped(SkippedProvider {
            name: name.to_string(),
            reason: "disabled (enabled: false)".into(),
        }));
    }
    if !missing.is_empty() {
        return Ok(Loaded::Skipped(SkippedProvider {
            name: name.to_string(),
            reason: format!("environment variable(s) not set: {}", missing.join(", ")),
        }));
    }

    let defaults = Timeouts::default();
    let secs = |s: Option<super::raw::Seconds>, d: Duration| {
        s.map(|s| Duration::from_secs_f64(s.0)).unwrap_or(d)
    };
    Ok(Loaded::Serving(Box::new(ProviderConfig {
        name: name.to_string(),
        kind: raw.kind,
        base_url,
        api_key: raw
            .api_key
            .and_then(|k| k.value)
            .filter(|k| !k.is_empty())
            .map(Secret::new),
        headers,
        timeouts: Timeouts {
            connect: secs(raw.timeouts.connect_secs, defaults.connect),
            read: secs(raw.timeouts.read_secs, defaults.read),
            first_byte: secs(raw.timeouts.first_byte_secs, defaults.first_byte),
            total: secs(raw.timeouts.total_secs, defaults.total),
        },
        stream_usage: raw.stream_usage,
        models,
        mock: raw.mock.unwrap_or_default(),
        api_version: raw.api_version.and_then(|v| v.value),
        retry: retry.unwrap_or_default(),
        breaker: super::BreakerPolicy::from_raw(&raw.breaker),
        health_check,
        weight: raw.weight.unwrap_or(1),
        unsupported_params: raw.unsupported_params,
        max_response_bytes: raw
            .max_response_bytes
            .unwrap_or(super::raw::DEFAULT_MAX_RESPONSE_BYTES),
    })))
}

fn parse(path: &Path, text: &str) -> Result<RawProvider, Vec<ConfigError>> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, RawProvider>(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let location = inner.location();
        // serde_yaml appends " at line L column C" to messages; the position is reported apart.
        let mut message = inner.to_string();
        if let Some(idx) = message.find(" at line ") {
            message.truncate(idx);
        }
        vec![ConfigError {
            file: path.to_path_buf(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            field: if field == "." { String::new() } else { field },
            message,
        }]
    })
}

/// Why a `base_url` cannot be one; the validator adds file, line and field.
#[derive(Debug, thiserror::Error)]
enum BaseUrlError {
    #[error("{text:?} is not a URL: {error}")]
    NotAUrl {
        text: String,
        error: url::ParseError,
    },
    #[error("{text:?} must start with http:// or https://")]
    Scheme { text: String },
    #[error("{text:?} must not have a query or fragment")]
    QueryOrFragment { text: String },
}

fn parse_base_url(text: &str) -> Result<reqwest::Url, BaseUrlError> {
    // Errors quote the URL for the operator, without any `user:password@` it may carry:
    // errors reach logs and `/admin/config`.
    let shown = || without_credentials(text);
    let url = reqwest::Url::parse(text).map_err(|error| BaseUrlError::NotAUrl {
        text: shown(),
        error,
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BaseUrlError::Scheme { text: shown() });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(BaseUrlError::QueryOrFragment { text: shown() });
    }
    Ok(url)
}

/// `text` with whatever stands between `://` and the last `@` of the authority replaced.
fn without_credentials(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

fn valid_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The 1-based line of a top-level `key:`; used for checks made after parsing, where serde has
/// no position any more.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

fn find_text_line(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Loaded, Vec<ConfigError>> {
        provider_file(Path::new("providers.d/test.yaml"), "test", text)
    }

    fn serving(text: &str) -> ProviderConfig {
        match load(text) {
            Ok(Loaded::Serving(p)) => *p,
            Ok(Loaded::Skipped(s)) => panic!("skipped: {}", s.reason),
            Err(e) => panic!("errors: {e:?}"),
        }
    }

    #[test]
    fn a_model_id_longer_than_a_request_may_name_is_an_error() {
        // `test/` + 251 bytes = 256: the longest a request may carry.
        serving(&format!("kind: mock\nmodels: [{}]\n", "a".repeat(251)));
        let errs = match load(&format!("kind: mock\nmodels: [ok, {}]\n", "a".repeat(252))) {
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(errs[0].field, "models[1]");
        assert!(errs[0].message.contains("257 bytes"), "{}", errs[0].message);
    }

    #[test]
    fn plain_and_mapped_models() {
        let p = serving(
            "kind: openai\nbase_url: http://127.0.0.1:9/v1\nmodels:\n  - a\n  - name: b\n    upstream: b-2024\n    pricing: { input: 1.5, output: 2 }\n",
        );
        assert_eq!(p.models.len(), 2);
        assert_eq!(p.models[0].upstream, "a");
        assert_eq!(p.models[1].upstream, "b-2024");
        assert_eq!(p.models[1].pricing.map(|p| p.output), Some(2.0));
    }

    #[test]
    fn cache_prices_are_read_and_a_negative_one_is_located() {
        let p = serving(
            "kind: mock\nmodels:\n  - name: a\n    pricing: { input: 3, output: 15, cache_read: 0.3, cache_write: 3.75 }\n  - name: b\n    pricing: { input: 1, output: 2 }\n",
        );
        let a = p.models[0].pricing.unwrap();
        assert_eq!((a.cache_read, a.cache_write), (Some(0.3), Some(3.75)));
        let b = p.models[1].pricing.unwrap();
        assert_eq!((b.cache_read, b.cache_write), (None, None));
        let errs = match load(
            "kind: mock\nmodels:\n  - name: a\n    pricing: { input: 1, output: 2, cache_write: -3 }\n",
        ) {
            Err(e) => e,
            _ => panic!("expected an error"),
        };
        assert_eq!(errs[0].field, "models[0].pricing.cache_write");
        assert_eq!(errs[0].line, Some(4));
        assert!(
            errs[0]
                .message
                .contains("must be a price of zero or more, got -3"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn unknown_field_names_path_and_line() {
        let errs = match load(
            "kind: mock\nmodels:\n  - name: a\n    pricing: { input: 1, output: 2, extra: 3 }\n",
        ) {
            Err(e) => e,
            _ => panic!("expected an error"),
        };
        assert_eq!(errs[0].field, "models[0].pricing.extra");
        assert_eq!(errs[0].line, Some(4));
        assert!(
            errs[0].message.contains("unknown field `extra`"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn bad_value_is_located() {
        let errs = match load("kind: mock\nmodels: [a]\nmock:\n  fail_rate: 2\n") {
            Err(e) => e,
            _ => panic!("expected an error"),
        };
        assert_eq!(errs[0].field, "mock.fail_rate");
        assert_eq!(errs[0].line, Some(4));
        assert!(errs[0].message.contains("between 0 and 1"));
    }

    #[test]
    fn cross_field_errors_are_all_reported() {
        let errs = match load("kind: openai\nbase_url: ftp://x\nmodels: [a, a]\nmock: {}\n") {
            Err(e) => e,
            _ => panic!("expected an error"),
        };
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"base_url"), "{fields:?}");
        assert!(fields.contains(&"models[1]"), "{fields:?}");
        assert!(fields.contains(&"mock"), "{fields:?}");
    }

    #[test]
    fn unset_api_key_skips_the_provider() {
        match load("kind: openai\nbase_url: http://x/v1\napi_key: ${SWITCHBOARD_TEST_SURELY_UNSET}\nmodels: [a]\n") {
            Ok(Loaded::Skipped(s)) => assert!(s.reason.contains("SWITCHBOARD_TEST_SURELY_UNSET")),
            _ => panic!("expected the provider to be skipped"),
        }
    }

    #[test]
    fn native_kinds_need_a_base_url_and_only_azure_takes_api_version() {
        let errs = match load("kind: anthropic\nmodels: [a]\napi_version: x\n") {
            Err(e) => e,
            _ => panic!("expected an error"),
        };
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["base_url", "api_version"], "{errs:?}");
        let errs = match load("kind: azure\nbase_url: https://x.openai.azure.com\nmodels: [a]\n") {
            Err(e) => e,
            _ => panic!("expected an error"),
        };
        assert_eq!(errs[0].field, "api_version");
        let p = serving("kind: azure\nbase_url: https://x.openai.azure.com\napi_version: 2024-10-21\nmodels: [a]\n");
        assert_eq!(p.api_version.as_deref(), Some("2024-10-21"));
        serving("kind: gemini\nbase_url: https://g.example/v1beta\nmodels: [a]\n");
    }

    #[test]
    fn resilience_settings_have_defaults_and_are_checked() {
        let p = serving("kind: openai\nbase_url: http://x/v1\nmodels: [a]\n");
        assert_eq!(p.retry, super::super::RetryPolicy::default());
        assert_eq!(p.weight, 1);
        assert!(p.health_check.is_none());
        let p = serving("kind: openai\nbase_url: http://x/v1\nmodels: [a]\nweight: 3\ntimeouts: { first_byte_secs: 2 }\nretry: { max_attempts: 1 }\nbreaker: { consecutive_failures: 2, cool_down_secs: 0.5 }\nhealth_check: { interval_secs: 5, path: /health }\n");
        assert_eq!(p.weight, 3);
        assert_eq!(p.timeouts.first_byte, Duration::from_secs(2));
        assert_eq!(p.retry.max_attempts, 1);
        assert_eq!(p.breaker.consecutive_failures, 2);
        assert_eq!(p.breaker.cool_down, Duration::from_millis(500));
        assert_eq!(p.health_check.map(|h| h.path).as_deref(), Some("health"));
        let errs = match load(
            "kind: openai\nbase_url: http://x/v1\nmodels: [a]\nretry: { max_attempts: 0 }\n",
        ) {
            Err(e) => e,
            _ => panic!("expected an error"),
        };
        assert_eq!(errs[0].field, "retry.max_attempts");
        let errs = match load("kind: openai\nbase_url: http://x/v1\nmodels: [a]\nretry: { base_delay_ms: 500, max_delay_ms: 100 }\n") {
            Err(e) => e,
            _ => panic!("expected an error"),
        };
        assert_eq!(errs[0].field, "retry");
    }

    #[test]
    fn base_url_and_resilience_messages_quote_the_value() {
        let message_of = |text: &str, field: &str| match load(text) {
            Err(errs) => errs
                .into_iter()
                .find(|e| e.field == field)
                .map(|e| (e.line, e.message))
                .unwrap_or_else(|| panic!("no error for {field}")),
            Ok(_) => panic!("accepted: {text}"),
        };
        let cases = [
            (
                "kind: openai\nbase_url: nope\nmodels: [a]\n",
                "base_url",
                r#""nope" is not a URL: relative URL without a base"#,
            ),
            (
                "kind: openai\nbase_url: ftp://x\nmodels: [a]\n",
                "base_url",
                r#""ftp://x" must start with http:// or https://"#,
            ),
            (
                "kind: openai\nbase_url: http://x/v1?a=1\nmodels: [a]\n",
                "base_url",
                r#""http://x/v1?a=1" must not have a query or fragment"#,
            ),
            (
                "kind: openai\nbase_url: http://x/v1\nmodels: [a]\nretry: { base_delay_ms: 500, max_delay_ms: 100 }\n",
                "retry",
                "base_delay_ms (500) must not exceed max_delay_ms (100)",
            ),
            (
                "kind: openai\nbase_url: http://x/v1\nmodels: [a]\nhealth_check: { path: \"http://y/models\" }\n",
                "health_check.path",
                r#"path "http://y/models" must be a path relative to base_url"#,
            ),
        ];
        for (text, field, message) in cases {
            let (line, got) = message_of(text, field);
            assert_eq!(got, message);
            assert!(line.is_some(), "{field} is located");
        }
    }

    /// An openai provider file with `block` appended (empty: the block left out).
    fn network_provider(block: &str) -> ProviderConfig {
        serving(&format!(
            "kind: openai\nbase_url: http://x/v1\nmodels: [a]\n{block}"
        ))
    }

    // The defaults README "providers.d reference" documents hold whether a block is left out,
    // written empty, or given only some of its fields.

    #[test]
    fn breaker_defaults_hold_when_absent_empty_or_partial() {
        use super::super::BreakerPolicy;
        let documented = BreakerPolicy {
            enabled: true,
            consecutive_failures: 5,
            error_rate: 0.5,
            min_calls: 20,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
        };
        let cases = [
            ("", documented),
            ("breaker: {}\n", documented),
            (
                "breaker:\n  min_calls: 7\n",
                BreakerPolicy {
                    min_calls: 7,
                    ..documented
                },
            ),
            (
                "breaker: { enabled: false }\n",
                BreakerPolicy {
                    enabled: false,
                    ..documented
                },
            ),
        ];
        for (block, expected) in cases {
            assert_eq!(network_provider(block).breaker, expected, "{block:?}");
        }
    }

    #[test]
    fn retry_defaults_hold_when_absent_empty_or_partial() {
        use super::super::RetryPolicy;
        let documented = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(2000),
            max_total: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(5),
        };
        let cases = [
            ("", documented),
            ("retry: {}\n", documented),
            (
                "retry:\n  max_delay_ms: 5000\n",
                RetryPolicy {
                    max_delay: Duration::from_millis(5000),
                    ..documented
                },
            ),
        ];
        for (block, expected) in cases {
            assert_eq!(network_provider(block).retry, expected, "{block:?}");
        }
    }

    #[test]
    fn timeout_defaults_hold_when_absent_empty_or_partial() {
        let documented = Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(300),
            read: Duration::from_secs(300),
            total: Duration::from_secs(600),
        };
        let cases = [
            ("", documented),
            ("timeouts: {}\n", documented),
            (
                "timeouts:\n  read_secs: 20\n",
                Timeouts {
                    read: Duration::from_secs(20),
                    ..documented
                },
            ),
        ];
        for (block, expected) in cases {
            assert_eq!(network_provider(block).timeouts, expected, "{block:?}");
        }
    }

    #[test]
    fn health_check_defaults_hold_when_empty_or_partial_and_absent_means_no_probe() {
        use super::super::HealthCheck;
        let check = |interval: Duration, path: &str| {
            Some(HealthCheck {
                interval,
                path: path.to_string(),
            })
        };
        let cases = [
            ("", None),
            (
                "health_check: {}\n",
                check(Duration::from_secs(15), "models"),
            ),
            (
                "health_check:\n  path: health\n",
                check(Duration::from_secs(15), "health"),
            ),
            (
                "health_check: { interval_secs: 5 }\n",
                check(Duration::from_secs(5), "models"),
            ),
        ];
        for (block, expected) in cases {
            assert_eq!(network_provider(block).health_check, expected, "{block:?}");
        }
    }

    #[test]
    fn mock_defaults_hold_when_absent_empty_or_partial() {
        use super::super::MockOptions;
        let documented = MockOptions {
            latency_ms: 0,
            chunk_delay_ms: 0,
            fail_rate: 0.0,
            fail_status: 503,
            reply: None,
        };
        let cases = [
            ("", documented.clone()),
            ("mock: {}\n", documented.clone()),
            (
                "mock:\n  fail_rate: 0.25\n",
                MockOptions {
                    fail_rate: 0.25,
                    ..documented.clone()
                },
            ),
            (
                "mock: { reply: fixed }\n",
                MockOptions {
                    reply: Some("fixed".into()),
                    ..documented
                },
            ),
        ];
        for (block, expected) in cases {
            let p = serving(&format!("kind: mock\nmodels: [a]\n{block}"));
            assert_eq!(p.mock, expected, "{block:?}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let p = serving("kind: openai\nbase_url: http://x/v1\napi_key: sk-very-secret\nheaders: { x-token: tok-secret }\nmodels: [a]\n");
        let debug = format!("{p:?}");
        assert!(!debug.contains("sk-very-secret") && !debug.contains("tok-secret"));
    }

    #[test]
    fn a_base_url_error_never_shows_credentials() {
        let err = parse_base_url("ftp://user:hunter2@example.com/v1")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("ftp://***@example.com/v1"), "{err}");
        assert_eq!(without_credentials("https://h/v1?a@b"), "https://h/v1?a@b");
    }
}
