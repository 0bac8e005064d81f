//! `kind: openai`: any server that speaks the OpenAI HTTP API.
//!
//! Requests go upstream as the client sent them, with `model` set to the upstream id. JSON
//! replies come back byte for byte; streams are re-framed event by event, payloads untouched.

use super::sse::SseDecoder;
use super::{EventStream, Provider, ProviderError, Reply, UpstreamCall};
use crate::config::{ProviderConfig, ProviderKind};
use crate::wire::{usage_of, Endpoint};
use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use std::collections::VecDeque;

/// Upstream error bodies larger than this are cut before being read into a message.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub struct OpenAiProvider {
    name: String,
    client: reqwest::Client,
    chat_url: reqwest::Url,
    completions_url: reqwest::Url,
    embeddings_url: reqwest::Url,
    stream_usage: bool,
}

impl OpenAiProvider {
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let base = config
            .base_url
            .as_ref()
            .ok_or_else(|| format!("provider {}: base_url is required", config.name))?;
        let join = |path: &str| {
            // `Url::join` would drop the last segment of a base without a trailing slash.
            let mut s = base.as_str().trim_end_matches('/').to_string();
            s.push('/');
            s.push_str(path);
            reqwest::Url::parse(&s).map_err(|e| format!("provider {}: {e}", config.name))
        };

        let mut headers = HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    format!(
                        "provider {}: api_key is not a valid header value",
                        config.name
                    )
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("provider {}: bad header name {name}", config.name))?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| format!("provider {}: bad value for header {name}", config.name))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeouts.connect)
            .read_timeout(config.timeouts.read)
            .timeout(config.timeouts.total)
            .tcp_nodelay(true)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build()
            .map_err(|e| format!("provider {}: cannot build HTTP client: {e}", config.name))?;
        Ok(OpenAiProvider {
            name: config.name.clone(),
            client,
            chat_url: join(Endpoint::Chat.path())?,
            completions_url: join(Endpoint::Completions.path())?,
            embeddings_url: join(Endpoint::Embeddings.path())?,
            stream_usage: config.stream_usage,
        })
    }

    fn url(&self, endpoint: Endpoint) -> &reqwest::Url {
        match endpoint {
            Endpoint::Chat => &self.chat_url,
            Endpoint::Completions => &self.completions_url,
            Endpoint::Embeddings => &self.embeddings_url,
        }
    }

    async fn send(&self, call: UpstreamCall<'_>) -> Result<Reply, ProviderError> {
        let body = call
            .body
            .to_upstream_json(call.upstream_model)
            .map_err(|e| ProviderError::Protocol(format!("cannot encode request: {e}")))?;
        let mut request = self
            .client
            .post(self.url(call.body.endpoint()).clone())
            .header(CONTENT_TYPE, "application/json")
            .header("x-request-id", call.request_id);
        for (name, value) in call.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&self.name, e))?;

        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        if !status.is_success() {
            return Err(status_error(status, response).await);
        }
        if call.body.is_stream() {
            Ok(Reply::Stream(event_stream(
                self.name.clone(),
                response.bytes_stream(),
            )))
        } else {
            let body = response
                .bytes()
                .await
                .map_err(|e| transport_error(&self.name, e))?;
            let usage = usage_of(&body);
            Ok(Reply::Json {
                status,
                body,
                usage,
            })
        }
    }
}

impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Openai
    }

    fn call<'a>(&'a self, call: UpstreamCall<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(self.send(call))
    }

    fn asks_stream_usage(&self) -> bool {
        self.stream_usage
    }
}

fn transport_error(provider: &str, e: reqwest::Error) -> ProviderError {
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

/// An upstream error status, with the upstream's message when it sent an OpenAI-shaped body.
async fn status_error(status: StatusCode, response: reqwest::Response) -> ProviderError {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: ErrorDetail,
    }
    #[derive(Deserialize)]
    struct ErrorDetail {
        message: Option<String>,
        #[serde(rename = "type")]
        kind: Option<String>,
        code: Option<serde_json::Value>,
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    let (message, kind, code) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(parsed) => (
            parsed
                .error
                .message
                .unwrap_or_else(|| format!("upstream error {status}")),
            parsed.error.kind,
            parsed.error.code.map(|c| match c {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
        ),
        Err(_) => {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("upstream error {status}")
            } else {
                text.chars().take(1000).collect()
            };
            (message, None, None)
        }
    };
    ProviderError::Status {
        status,
        message,
        kind,
        code,
        retry_after,
    }
}

/// Turns an SSE byte stream into event payloads, ending at `[DONE]`. A body that ends without
/// `[DONE]` was cut off, and ends the stream with an error rather than looking complete.
fn event_stream(
    provider: String,
    body: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
) -> EventStream {
    struct State<S> {
        body: S,
        decoder: SseDecoder,
        ready: VecDeque<Result<Bytes, ProviderError>>,
        ended: bool,
        provider: String,
    }
    let state = State {
        body: Box::pin(body),
        decoder: SseDecoder::new(),
        ready: VecDeque::new(),
        ended: false,
        provider,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.ready.pop_front() {
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            match st.body.next().await {
                Some(Ok(chunk)) => {
                    if let Err(e) = st.decoder.push(&chunk) {
                        st.ended = true;
                        st.ready.push_back(Err(ProviderError::Protocol(e)));
                        continue;
                    }
                    while let Some(event) = st.decoder.next_event() {
                        if event.data.as_ref() == b"[DONE]" {
                            st.ended = true;
                            break;
                        }
                        st.ready.push_back(Ok(event.data));
                    }
                }
                Some(Err(e)) => {
                    st.ended = true;
                    st.ready.push_back(Err(transport_error(&st.provider, e)));
                }
                None => {
                    st.ended = true;
                    let last = st.decoder.finish();
                    if last.as_ref().is_some_and(|e| e.data.as_ref() == b"[DONE]") {
                        continue;
                    }
                    if let Some(event) = last {
                        st.ready.push_back(Ok(event.data));
                    }
                    st.ready.push_back(Err(ProviderError::Protocol(format!(
                        "provider `{}` ended its stream before [DONE]",
                        st.provider
                    ))));
                }
            }
        }
    })
    .boxed()
}
