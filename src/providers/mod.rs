//! Upstream providers: one trait, one file per wire format.
//!
//! Every provider answers in OpenAI's shape, whatever it speaks upstream: a JSON body, or a
//! stream of `chat.completion.chunk` payloads. The proxy never needs to know which kind served.

pub mod anthropic;
pub mod chunk;
pub mod content;
pub mod embeddings;
pub mod gemini;
pub mod mock;
pub mod openai;
pub mod redact;
pub mod sse;
pub mod stream;
pub mod translate_error;
pub mod unsupported;
pub mod untranslated;
pub mod upstream;

use crate::config::{ProviderConfig, ProviderKind};
use crate::error::ApiError;
use crate::error_codes::Code;
use crate::wire::{RequestBody, Usage};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use std::sync::Arc;

/// One call to a provider.
pub struct UpstreamCall<'a> {
    pub request_id: &'a str,
    pub body: &'a RequestBody,
    /// The model id the provider expects.
    pub upstream_model: &'a str,
    /// Extra headers from policies (`ctx.set_header`), lower-case names, already validated.
    pub headers: &'a std::collections::BTreeMap<String, String>,
    /// `traceparent` (and `tracestate`): the attempt's span when tracing, else the client's
    /// own, passed on; empty when neither.
    pub trace_headers: &'a [(&'static str, String)],
}

/// The data payloads of a stream's events, in order, `[DONE]` excluded. The stream ending is
/// the clean end; an `Err` item means the stream broke.
pub type EventStream = BoxStream<'static, Result<Bytes, ProviderError>>;

/// Upstream response headers worth relaying to the client (rate limits, processing time).
pub type RelayedHeaders = Vec<(HeaderName, HeaderValue)>;

pub enum Reply {
    /// A complete OpenAI-shaped JSON body, as the upstream sent it.
    Json {
        status: StatusCode,
        body: Bytes,
        usage: Option<Usage>,
        headers: RelayedHeaders,
    },
    Stream(EventStream, RelayedHeaders),
}

/// Why a call failed. The message is safe to show a client: no URLs with credentials, no keys.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The upstream answered with an error status.
    #[error("upstream returned {status}: {message}")]
    Status {
        status: StatusCode,
        message: String,
        kind: Option<String>,
        /// The request field the upstream (or the translation) found at fault.
        param: Option<String>,
        code: Option<String>,
        retry_after: Option<u64>,
        /// Rate-limit headers of the upstream's error reply, relayed to the client.
        headers: RelayedHeaders,
    },
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream timed out: {0}")]
    Timeout(String),
    /// The upstream answered something that is not the protocol.
    #[error("bad upstream response: {0}")]
    Protocol(String),
    /// The reply was larger than the provider's `max_response_bytes`.
    #[error("upstream response too large: {0}")]
    TooLarge(String),
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> ApiError {
        match e {
            ProviderError::Status {
                status,
                message,
                kind,
                param,
                code,
                retry_after,
                headers,
            } => {
                let mut err =
                    ApiError::new(status, "upstream_error", message).with_headers(headers);
                err.param = param;
                if let Some(kind) = kind {
                    // Keep the upstream's own error type when it gave one, as OpenAI clients
                    // branch on it; leak it as a static str only from a small known set.
                    err.kind = known_error_type(&kind).unwrap_or("upstream_error");
                }
                err.code = code;
                err.retry_after = retry_after;
                err
            }
            ProviderError::Unreachable(m) => ApiError::bad_gateway(m),
            ProviderError::Protocol(m) => {
                ApiError::bad_gateway(m).with_code(Code::BadUpstreamResponse)
            }
            ProviderError::TooLarge(m) => {
                ApiError::bad_gateway(m).with_code(Code::UpstreamResponseTooLarge)
            }
            ProviderError::Timeout(m) => ApiError::gateway_timeout(m),
        }
    }
}

fn known_error_type(kind: &str) -> Option<&'static str> {
    const KNOWN: &[&str] = &[
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "insufficient_quota",
        "server_error",
        "api_error",
        "overloaded_error",
    ];
    KNOWN.iter().copied().find(|k| *k == kind)
}

pub trait Provider: Send + Sync {
    fn call<'a>(&'a self, call: UpstreamCall<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>>;
    /// Whether to ask this provider for a usage chunk at the end of streams.
    fn asks_stream_usage(&self) -> bool {
        true
    }
    /// An active health check: a cheap authenticated `GET {base_url}/{path}`. Providers with
    /// nothing to probe (the mock) are always healthy.
    fn probe<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        let _ = path;
        Box::pin(async { Ok(()) })
    }
    /// Counts a Messages request's input tokens upstream, when this provider can (Anthropic's
    /// `count_tokens` with the client's own body and `anthropic-*` headers, Gemini's
    /// `countTokens` with the chat form's translation); `None` when it cannot, and the gateway
    /// estimates.
    fn count_tokens<'a>(
        &'a self,
        body: &'a RequestBody,
        upstream_model: &'a str,
    ) -> Option<BoxFuture<'a, Result<u64, ProviderError>>> {
        let _ = (body, upstream_model);
        None
    }
}

/// Why a provider could not be built from its (validated) configuration. The message names the
/// provider and never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("provider {provider}: base_url is required")]
    MissingBaseUrl { provider: String },
    #[error("provider {provider}: api_version is required")]
    MissingApiVersion { provider: String },
    #[error("provider {provider}: api_key is not a valid header value")]
    BadApiKey { provider: String },
    #[error("provider {provider}: bad header name {name}")]
    BadHeaderName { provider: String, name: String },
    #[error("provider {provider}: bad value for header {name}")]
    BadHeaderValue { provider: String, name: String },
    #[error("provider {provider}: {path:?} does not make a URL with base_url: {source}")]
    BadUrl {
        provider: String,
        path: String,
        source: url::ParseError,
    },
    #[error("provider {provider}: cannot build HTTP client: {source}")]
    Client {
        provider: String,
        source: reqwest::Error,
    },
}

/// Builds the provider a config entry describes (with its own pooled HTTP client), wrapped so
/// its errors never carry its secrets.
pub fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, BuildError> {
    let provider: Arc<dyn Provider> = match config.kind {
        ProviderKind::Openai => Arc::new(openai::OpenAiProvider::new(config)?),
        ProviderKind::Mock => Arc::new(mock::MockProvider::new(config)),
        ProviderKind::Azure => Arc::new(openai::OpenAiProvider::azure(config)?),
        ProviderKind::Anthropic => Arc::new(anthropic::AnthropicProvider::new(config)?),
        ProviderKind::Gemini => Arc::new(gemini::GeminiProvider::new(config)?),
    };
    Ok(redact::wrap(untranslated::wrap(provider, config), config))
}
