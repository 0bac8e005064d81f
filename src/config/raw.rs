//! The YAML shape of one providers.d file, exactly as written.
//!
//! Every struct denies unknown fields, and values that can be checked alone (a URL, a price,
//! a rate) are checked while deserialising, so serde_yaml reports the line and column and
//! serde_path_to_error the field path. Checks that need several fields live in `validate.rs`.

use super::env::EnvString;
use crate::wire::Usage;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: ProviderKind,
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub base_url: Option<EnvString>,
    pub api_key: Option<EnvString>,
    #[serde(default)]
    pub headers: BTreeMap<String, EnvString>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Ask upstream for a usage chunk at the end of streams (OpenAI `stream_options`).
    #[serde(default = "default_true")]
    pub stream_usage: bool,
    pub models: Vec<RawModel>,
    pub mock: Option<RawMock>,
    /// Azure OpenAI's `api-version` query parameter; required for, and only for, `kind: azure`.
    pub api_version: Option<EnvString>,
    /// Retries of one target on retryable failures.
    #[serde(default)]
    pub retry: RawRetry,
    /// The circuit breaker that skips this provider while it keeps failing.
    #[serde(default)]
    pub breaker: RawBreaker,
    /// An optional active probe feeding the breaker.
    pub health_check: Option<RawHealthCheck>,
    /// Share of traffic among balanced targets of equal rank (`weighted` strategy).
    #[serde(default, deserialize_with = "weight")]
    pub weight: Option<u32>,
    /// What a translating adapter does with a parameter its API cannot express.
    #[serde(default)]
    pub unsupported_params: UnsupportedParams,
    /// The largest non-streamed reply read from this provider, in bytes.
    #[serde(default, deserialize_with = "response_bytes")]
    pub max_response_bytes: Option<usize>,
}

/// The default `max_response_bytes`: far above any real completion or embeddings reply, far
/// below what would hurt the gateway.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 << 20;

fn response_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let v = u64::deserialize(d)?;
    if (1024..=1 << 30).contains(&v) {
        Ok(Some(v as usize))
    } else {
        Err(de::Error::custom(format!(
            "must be from 1024 to 1073741824 bytes, got {v}"
        )))
    }
}

/// What a translating adapter (anthropic, gemini) does with a request parameter its wire
/// format cannot express.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnsupportedParams {
    /// Refuse the request with a 400 naming the parameter, before anything goes upstream.
    #[default]
    Reject,
    /// Leave the parameter out and say so in `x-switchboard-dropped-params`.
    Drop,
}

fn default_true() -> bool {
    true
}

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The OpenAI HTTP API, as spoken by OpenAI and most compatible servers.
    Openai,
    /// The built-in offline provider.
    Mock,
    /// Anthropic's Messages API, translated to and from OpenAI's shape.
    Anthropic,
    /// Google's Gemini API (generateContent), translated to and from OpenAI's shape.
    Gemini,
    /// Azure OpenAI deployments: the OpenAI wire format with Azure's URLs and `api-key`.
    Azure,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Mock => "mock",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Azure => "azure",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// Establishing the TCP/TLS connection.
    pub connect_secs: Option<Seconds>,
    /// The longest silence while reading a response (also between stream chunks).
    pub read_secs: Option<Seconds>,
    /// Until the response headers, and for streams until the first event.
    pub first_byte_secs: Option<Seconds>,
    /// The whole exchange, streams included.
    pub total_secs: Option<Seconds>,
}

/// A model entry: either a bare name or a map.
#[derive(Debug)]
pub struct RawModel {
    pub name: String,
    pub upstream: Option<String>,
    pub pricing: Option<Pricing>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModelMap {
    name: String,
    upstream: Option<String>,
    pricing: Option<Pricing>,
}

impl<'de> Deserialize<'de> for RawModel {
    // Hand-written instead of `#[serde(untagged)]` so a mistake inside the map form keeps its
    // own message and position rather than "did not match any variant".
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModelVisitor;
        impl<'de> Visitor<'de> for ModelVisitor {
            type Value = RawModel;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a model name or a map with `name`, `upstream`, `pricing`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawModel, E> {
                Ok(RawModel {
                    name: v.to_string(),
                    upstream: None,
                    pricing: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawModel, A::Error> {
                let m = RawModelMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawModel {
                    name: m.name,
                    upstream: m.upstream,
                    pricing: m.pricing,
                })
            }
        }
        deserializer.deserialize_any(ModelVisitor)
    }
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    #[serde(deserialize_with = "non_negative")]
    pub input: f64,
    #[serde(deserialize_with = "non_negative")]
    pub output: f64,
    /// Prompt tokens read from the provider's prompt cache; absent means `input`, since a
    /// provider without a cheaper rate charges them as any other prompt token.
    #[serde(default, deserialize_with = "non_negative_optional")]
    pub cache_read: Option<f64>,
    /// Prompt tokens written to the provider's prompt cache (Anthropic charges them above
    /// `input`); absent means `input`.
    #[serde(default, deserialize_with = "non_negative_optional")]
    pub cache_write: Option<f64>,
}

impl Pricing {
    /// USD for this usage (prices are USD per million tokens): the prompt tokens read from a
    /// prompt cache at `cache_read`, those written to it at `cache_write`, the rest of the
    /// prompt at `input`, the completion at `output`. The cache's counts are part of
    /// `prompt_tokens`; an upstream that reports more of them than the prompt has is held to
    /// its prompt, so a confused report never costs more than the whole prompt's tokens.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let read = usage.cached_tokens().min(usage.prompt_tokens);
        let written = usage.cache_write_tokens().min(usage.prompt_tokens - read);
        let rest = usage.prompt_tokens - read - written;
        (rest as f64 * self.input
            + read as f64 * self.cache_read.unwrap_or(self.input)
            + written as f64 * self.cache_write.unwrap_or(self.input)
            + usage.completion_tokens as f64 * self.output)
            / 1_000_000.0
    }
}

fn non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(de::Error::custom(format!(
            "must be a price of zero or more, got {v}"
        )))
    }
}

/// An optional price: absent or `null` is `None`, anything else must be a price.
fn non_negative_optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(v) => non_negative(de::value::F64Deserializer::<D::Error>::new(v)).map(Some),
    }
}

/// A positive number of seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub f64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() && v > 0.0 && v <= 86_400.0 {
            Ok(Seconds(v))
        } else {
            Err(de::Error::custom(format!(
                "must be a number of seconds above 0 and at most 86400, got {v}"
            )))
        }
    }
}

/// Behaviour of the built-in `mock` provider.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMock {
    /// Delay before the reply (or the first chunk), in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Delay between stream chunks, in milliseconds.
    #[serde(default)]
    pub chunk_delay_ms: u64,
    /// Share of requests that fail with `fail_status`, from 0 to 1.
    #[serde(default, deserialize_with = "rate")]
    pub fail_rate: f64,
    #[serde(default = "default_fail_status", deserialize_with = "error_status")]
    pub fail_status: u16,
    /// A fixed reply instead of echoing the last user message.
    pub reply: Option<String>,
}

impl Default for RawMock {
    fn default() -> Self {
        RawMock {
            latency_ms: 0,
            chunk_delay_ms: 0,
            fail_rate: 0.0,
            fail_status: default_fail_status(),
            reply: None,
        }
    }
}

fn default_fail_status() -> u16 {
    503
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(de::Error::custom(format!(
            "must be between 0 and 1, got {v}"
        )))
    }
}

fn error_status<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = u16::deserialize(d)?;
    if (400..=599).contains(&v) {
        Ok(v)
    } else {
        Err(de::Error::custom(format!(
            "must be an HTTP error status from 400 to 599, got {v}"
        )))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Tries of one target, the first included (1: no retry).
    #[serde(default, deserialize_with = "attempts")]
    pub max_attempts: Option<u32>,
    pub base_delay_ms: Option<u64>,
    pub max_delay_ms: Option<u64>,
    /// Time spent on one target, retries included, after which it is given up.
    pub max_total_secs: Option<Seconds>,
    /// A 429 whose `retry-after` asks for longer than this is not retried on this target.
    pub max_retry_after_secs: Option<Seconds>,
}

/// Every field is optional, so `Default` (the block left out) and `breaker: {}` are the same;
/// the defaults are filled in by `BreakerPolicy::from_raw`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub enabled: Option<bool>,
    /// Consecutive failures that open the breaker.
    #[serde(default, deserialize_with = "positive_count")]
    pub consecutive_failures: Option<u32>,
    /// Share of failed calls in the window that opens the breaker, 0..1.
    #[serde(default, deserialize_with = "optional_rate")]
    pub error_rate: Option<f64>,
    /// Calls needed in the window before the error rate counts.
    #[serde(default, deserialize_with = "positive_count")]
    pub min_calls: Option<u32>,
    pub window_secs: Option<Seconds>,
    /// How long the breaker stays open before one probe is let through.
    pub cool_down_secs: Option<Seconds>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// Between probes; default 15.
    pub interval_secs: Option<Seconds>,
    /// Relative to `base_url`; default `models`.
    pub path: Option<String>,
}

fn attempts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = u32::deserialize(d)?;
    if (1..=10).contains(&v) {
        Ok(Some(v))
    } else {
        Err(de::Error::custom(format!(
            "must be from 1 (no retry) to 10, got {v}"
        )))
    }
}

fn positive_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = u32::deserialize(d)?;
    if v >= 1 {
        Ok(Some(v))
    } else {
        Err(de::Error::custom("must be 1 or more"))
    }
}

fn optional_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = rate(d)?;
    if v > 0.0 {
        Ok(Some(v))
    } else {
        Err(de::Error::custom("must be above 0 and at most 1"))
    }
}

fn weight<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = u32::deserialize(d)?;
    if (1..=10_000).contains(&v) {
        Ok(Some(v))
    } else {
        Err(de::Error::custom(format!(
            "must be from 1 to 10000, got {v}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pricing(input: f64, output: f64, read: Option<f64>, write: Option<f64>) -> Pricing {
        Pricing {
            input,
            output,
            cache_read: read,
            cache_write: write,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn without_caching_the_prompt_is_at_input_and_the_completion_at_output() {
        let p = pricing(3.0, 15.0, Some(0.3), Some(3.75));
        // 1M prompt tokens at $3, 200k completion tokens at $15/M: 3 + 3 = $6.
        assert!(close(p.cost(&Usage::new(1_000_000, 200_000)), 6.0));
        assert!(close(p.cost(&Usage::default()), 0.0));
    }

    #[test]
    fn cached_and_written_prompt_tokens_have_their_own_prices() {
        let p = pricing(3.0, 15.0, Some(0.3), Some(3.75));
        // 10,000 prompt tokens: 6,000 read ($0.30/M), 3,000 written ($3.75/M), 1,000 at $3/M;
        // 500 completion tokens at $15/M.
        let usage = Usage::new(10_000, 500).with_cache(6_000, 3_000);
        let expected = (1_000.0 * 3.0 + 6_000.0 * 0.3 + 3_000.0 * 3.75 + 500.0 * 15.0) / 1e6;
        assert!(close(p.cost(&usage), expected), "{}", p.cost(&usage));
        assert!(close(expected, 0.02355));
    }

    #[test]
    fn absent_cache_prices_are_the_input_price() {
        let p = pricing(2.0, 8.0, None, None);
        let cached = Usage::new(10_000, 100).with_cache(6_000, 3_000);
        assert!(close(p.cost(&cached), p.cost(&Usage::new(10_000, 100))));
        // Only a read price: written tokens stay at input.
        let p = pricing(2.0, 8.0, Some(0.5), None);
        let expected = (4_000.0 * 2.0 + 6_000.0 * 0.5 + 100.0 * 8.0) / 1e6;
        let usage = Usage::new(10_000, 100).with_cache(6_000, 0);
        assert!(close(p.cost(&usage), expected));
        let usage = Usage::new(10_000, 100).with_cache(6_000, 1_000);
        let expected = (4_000.0 * 2.0 + 6_000.0 * 0.5 + 100.0 * 8.0) / 1e6;
        assert!(close(p.cost(&usage), expected));
    }

    #[test]
    fn cache_counts_beyond_the_prompt_are_held_to_it() {
        let p = pricing(1.0, 0.0, Some(0.1), Some(10.0));
        // 100 prompt tokens reported as 80 read and 50 written: 80 read, the 20 left written.
        let usage = Usage::new(100, 0).with_cache(80, 50);
        assert!(close(p.cost(&usage), (80.0 * 0.1 + 20.0 * 10.0) / 1e6));
        let usage = Usage::new(100, 0).with_cache(500, 0);
        assert!(close(p.cost(&usage), 100.0 * 0.1 / 1e6));
    }

    #[test]
    fn cache_prices_are_optional_and_checked() {
        let p: Pricing = serde_yaml::from_str("{ input: 3, output: 15 }").unwrap();
        assert_eq!((p.cache_read, p.cache_write), (None, None));
        let p: Pricing =
            serde_yaml::from_str("{ input: 3, output: 15, cache_read: 0.3, cache_write: 3.75 }")
                .unwrap();
        assert_eq!((p.cache_read, p.cache_write), (Some(0.3), Some(3.75)));
        let p: Pricing =
            serde_yaml::from_str("{ input: 3, output: 15, cache_read: 0, cache_write: null }")
                .unwrap();
        assert_eq!((p.cache_read, p.cache_write), (Some(0.0), None));
        for bad in [
            "{ input: 3, output: 15, cache_read: -1 }",
            "{ input: 3, output: 15, cache_write: -0.5 }",
            "{ input: 3, output: 15, cache_read: .nan }",
            "{ input: 3, output: 15, cache_write: .inf }",
        ] {
            let err = serde_yaml::from_str::<Pricing>(bad).unwrap_err();
            assert!(
                err.to_string().contains("must be a price of zero or more"),
                "{bad}: {err}"
            );
        }
    }
}
