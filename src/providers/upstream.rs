//! HTTP plumbing every network provider shares: the pooled client, URL joining, and turning
//! transport failures and error responses into [`ProviderError`]s. Wire formats differ only in
//! how an error body is parsed, so that is the one thing passed in.

use super::{BuildError, ProviderError};
use crate::config::ProviderConfig;
use actix_web::http::StatusCode;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// Upstream error bodies larger than this are cut before being read into a message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A success body that is not what its format promises. The detail (serde's, which may quote
/// the body) is for the log; the client gets the adapter's fixed message.
#[derive(Debug, thiserror::Error)]
#[error("not {expected}: {error}")]
pub struct UnreadableReply {
    /// What the body should have been, e.g. "an Anthropic message".
    pub expected: &'static str,
    pub error: serde_json::Error,
}

/// A sensitive header value for the provider's credential; the error never shows the value.
pub fn secret_header(config: &ProviderConfig, value: &str) -> Result<HeaderValue, BuildError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| BuildError::BadApiKey {
        provider: config.name.clone(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The provider's HTTP clients: one per worker thread, each with its own connection pool.
///
/// A pooled connection's task lives on the runtime of the worker that opened it; with one
/// client shared by every worker, a request on one worker drives a connection owned by another
/// and each call wakes a second thread both ways. A client per worker keeps a request and its
/// connection on one thread. The first client is built when the provider loads, so a bad
/// setting fails the load; each worker then builds its own on first use, from the same
/// settings.
pub struct Clients {
    settings: ClientSettings,
    first: reqwest::Client,
    per_thread: thread_local::ThreadLocal<reqwest::Client>,
}

struct ClientSettings {
    headers: HeaderMap,
    timeouts: crate::config::Timeouts,
}

impl ClientSettings {
    fn build(&self) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .default_headers(self.headers.clone())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.timeouts.connect)
            .read_timeout(self.timeouts.read)
            .timeout(self.timeouts.total)
            .tcp_nodelay(true)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            // An API call is never redirected by a provider that means it: following one would
            // send the request, and the provider's key, wherever `Location` points (or turn the
            // POST into a bodiless GET). A 3xx is the upstream's failure (`status_error`). Not
            // following also skips reqwest's per-call redirect bookkeeping.
            .redirect(reqwest::redirect::Policy::none())
            .build()
    }
}

impl Clients {
    /// This thread's client.
    pub fn get(&self) -> &reqwest::Client {
        self.per_thread.get_or(|| {
            // The settings built a client once already; should it fail now, share that one.
            self.settings.build().unwrap_or_else(|_| self.first.clone())
        })
    }
}

/// The provider's clients: `auth` headers first, then the file's `headers`, which win so an
/// operator can override anything (for example `anthropic-version`).
pub fn build_client(config: &ProviderConfig, auth: HeaderMap) -> Result<Clients, BuildError> {
    let mut headers = auth;
    for (name, value) in &config.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| BuildError::BadHeaderName {
                provider: config.name.clone(),
                name: name.clone(),
            })?;
        let mut value =
            HeaderValue::from_str(value.expose()).map_err(|_| BuildError::BadHeaderValue {
                provider: config.name.clone(),
                name: name.to_string(),
            })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let settings = ClientSettings {
        headers,
        timeouts: config.timeouts,
    };
    let first = settings.build().map_err(|source| BuildError::Client {
        provider: config.name.clone(),
        source,
    })?;
    Ok(Clients {
        settings,
        first,
        per_thread: thread_local::ThreadLocal::new(),
    })
}

/// The provider's `base_url`, required by every network kind.
pub fn base_url(config: &ProviderConfig) -> Result<&reqwest::Url, BuildError> {
    config
        .base_url
        .as_ref()
        .ok_or_else(|| BuildError::MissingBaseUrl {
            provider: config.name.clone(),
        })
}

/// `base` + `/` + `path`. `Url::join` would drop the last segment of a base without a
/// trailing slash, which is how every preset writes it.
pub fn join(base: &reqwest::Url, path: &str) -> Result<reqwest::Url, url::ParseError> {
    let mut s = base.as_str().trim_end_matches('/').to_string();
    s.push('/');
    s.push_str(path);
    reqwest::Url::parse(&s)
}

pub fn transport_error(provider: &str, e: reqwest::Error) -> ProviderError {
    // The reqwest error names the URL; it goes to the log, the client gets the provider name.
    tracing::warn!(provider, error = %e, "upstream request failed");
    if e.is_timeout() {
        ProviderError::Timeout(format!("provider `{provider}` did not answer in time"))
    } else if e.is_connect() {
        ProviderError::Unreachable(format!("cannot connect to provider `{provider}`"))
    } else if e.is_body() || e.is_decode() {
        ProviderError::Protocol(format!("provider `{provider}` broke off its response"))
    } else {
        ProviderError::Unreachable(format!("request to provider `{provider}` failed"))
    }
}

pub fn status_of(response: &reqwest::Response) -> StatusCode {
    StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY)
}

/// Reads a whole (non-streamed) reply, refusing one larger than `max` bytes before it is read
/// (by its declared length) or as soon as it grows past the limit, so one reply can never
/// hold more than `max` bytes of memory.
pub async fn read_body(
    provider: &str,
    response: reqwest::Response,
    max: usize,
) -> Result<bytes::Bytes, ProviderError> {
    let too_large = || {
        ProviderError::TooLarge(format!(
            "provider `{provider}` sent a reply larger than its max_response_bytes ({max})"
        ))
    };
    let declared = response.content_length();
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body =
        bytes::BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(max as u64) as usize);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport_error(provider, e))?;
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// What a wire format's error body says, once parsed.
pub struct ErrorParts {
    pub message: String,
    pub kind: Option<String>,
    pub code: Option<String>,
    /// The request field the upstream names, kept for the client.
    pub param: Option<String>,
}

/// Whether an upstream response header is relayed to the client: its rate-limit state
/// (`x-ratelimit-*`, `retry-after`) and processing time, which clients use to pace themselves.
fn relayed(name: &str) -> bool {
    name.starts_with("x-ratelimit-") || name == "retry-after" || name == "openai-processing-ms"
}

/// The upstream headers to relay, converted to the server's header types. Values that are
/// not valid header values on the way out are left behind rather than failing the reply.
pub fn relayed_headers(headers: &HeaderMap) -> super::RelayedHeaders {
    headers
        .iter()
        .filter(|(name, _)| relayed(name.as_str()))
        .filter_map(|(name, value)| {
            Some((
                actix_web::http::header::HeaderName::from_bytes(name.as_str().as_bytes()).ok()?,
                actix_web::http::header::HeaderValue::from_bytes(value.as_bytes()).ok()?,
            ))
        })
        .collect()
}

/// An upstream error status. `parse` reads the format's error body; a body it cannot read is
/// shown as (cut) text, since it is usually a proxy's or load balancer's page.
pub async fn status_error(
    response: reqwest::Response,
    parse: fn(&[u8]) -> Option<ErrorParts>,
) -> ProviderError {
    let status = status_of(&response);
    if status.is_redirection() {
        // Not relayed as it came: a client would see a redirect the gateway did not follow.
        return ProviderError::Protocol(format!(
            "the upstream answered {status}, a redirect, which the gateway does not follow: \
             point the provider's base_url at the address it redirects to"
        ));
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let headers = relayed_headers(response.headers());
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    let parts = parse(&body).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        ErrorParts {
            message: if text.is_empty() {
                format!("upstream error {status}")
            } else {
                text.chars().take(1000).collect()
            },
            kind: None,
            code: None,
            param: None,
        }
    });
    ProviderError::Status {
        status,
        message: parts.message,
        kind: parts.kind,
        code: parts.code,
        retry_after,
        param: parts.param,
        headers,
    }
}

/// The header that lists the parameters an adapter left out (`unsupported_params: drop`).
pub const DROPPED_PARAMS_HEADER: &str = "x-switchboard-dropped-params";

/// `x-switchboard-dropped-params: a, b` for the reply, when anything was dropped.
pub fn dropped_header(dropped: &[String]) -> super::RelayedHeaders {
    if dropped.is_empty() {
        return Vec::new();
    }
    match actix_web::http::header::HeaderValue::from_str(&dropped.join(", ")) {
        Ok(value) => vec![(
            actix_web::http::header::HeaderName::from_static(DROPPED_PARAMS_HEADER),
            value,
        )],
        Err(_) => Vec::new(),
    }
}

/// A JSON POST carrying the gateway's per-call headers: the request id, the trace context, and
/// the headers the policies set (`ctx.set_header`), for every wire format alike. A policy that
/// sets `traceparent` or `tracestate` itself has the last word.
pub fn json_post(
    client: &reqwest::Client,
    url: reqwest::Url,
    call: &super::UpstreamCall<'_>,
) -> reqwest::RequestBuilder {
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-request-id", call.request_id);
    for (name, value) in call.trace_headers {
        if !call.headers.contains_key(*name) {
            request = request.header(*name, value.as_str());
        }
    }
    for (name, value) in call.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request
}

/// A health probe: `GET {base}/{path}` with the provider's client (so its credentials); any
/// 2xx is healthy. The body is not read beyond what dropping the response costs.
pub async fn probe(
    provider: &str,
    client: &reqwest::Client,
    base: &reqwest::Url,
    path: &str,
) -> Result<(), ProviderError> {
    let url = join(base, path).map_err(|e| ProviderError::Protocol(format!("probe URL: {e}")))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| transport_error(provider, e))?;
    let status = status_of(&response);
    if status.is_success() {
        Ok(())
    } else {
        Err(ProviderError::Status {
            status,
            message: format!("health check of provider `{provider}` returned {status}"),
            kind: None,
            code: None,
            retry_after: None,
            param: None,
            headers: Vec::new(),
        })
    }
}
