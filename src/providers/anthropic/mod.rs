//! `kind: anthropic`: Anthropic's Messages API behind the OpenAI chat API.
//!
//! `request` translates the OpenAI request, `response` the JSON reply and errors, `stream` the
//! event stream; this file only does the HTTP.

pub mod passthrough;
pub mod request;
pub mod response;
pub mod stream;

use super::translate_error::{Api, TranslateError};
use super::unsupported::Unmapped;
use super::upstream::{self, transport_error};
use super::{BuildError, Provider, ProviderError, Reply, UpstreamCall};
use crate::config::{ProviderConfig, UnsupportedParams};
use crate::wire::Typed;
use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue};

/// The API version this adapter speaks; a provider file's `headers` may override it.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

pub struct AnthropicProvider {
    name: String,
    client: upstream::Clients,
    messages_url: reqwest::Url,
    /// `messages/count_tokens`, for `POST /v1/messages/count_tokens`.
    count_url: reqwest::Url,
    /// `base_url`, for health probes.
    base: reqwest::Url,
    unsupported_params: UnsupportedParams,
    max_response_bytes: usize,
}

impl AnthropicProvider {
    pub fn new(config: &ProviderConfig) -> Result<Self, BuildError> {
        let base = upstream::base_url(config)?;
        let mut auth = HeaderMap::new();
        auth.insert(
            "anthropic-version",
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        if let Some(key) = &config.api_key {
            auth.insert("x-api-key", upstream::secret_header(config, key.expose())?);
        }
        Ok(AnthropicProvider {
            name: config.name.clone(),
            client: upstream::build_client(config, auth)?,
            messages_url: upstream::join(base, "messages").map_err(|source| {
                BuildError::BadUrl {
                    provider: config.name.clone(),
                    path: "messages".into(),
                    source,
                }
            })?,
            count_url: upstream::join(base, "messages/count_tokens").map_err(|source| {
                BuildError::BadUrl {
                    provider: config.name.clone(),
                    path: "messages/count_tokens".into(),
                    source,
                }
            })?,
            base: base.clone(),
            unsupported_params: config.unsupported_params,
            max_response_bytes: config.max_response_bytes,
        })
    }

    async fn send(&self, call: UpstreamCall<'_>) -> Result<Reply, ProviderError> {
        if let Some(inbound) = passthrough::native_request(call.body) {
            return self.pass_through(&call, inbound).await;
        }
        let Typed::Chat(chat) = call.body.typed() else {
            return Err(TranslateError::Endpoint {
                endpoint: call.body.endpoint(),
                api: Api::AnthropicMessages,
            }
            .refused_by(&self.name));
        };
        let mut unmapped = Unmapped::new(self.unsupported_params);
        let body = request::messages_request(chat, call.upstream_model, &self.name, &mut unmapped)?;
        let dropped = upstream::dropped_header(&unmapped.dropped);
        let body = serde_json::to_vec(&body)
            .map_err(|e| ProviderError::Protocol(format!("cannot encode request: {e}")))?;
        // A Messages client's `anthropic-*` headers go too, even when its request was
        // translated (a policy changed it).
        let response = self.post_messages(&call, body).await?;
        if call.body.is_stream() {
            let translator = stream::StreamTranslator::new(
                self.name.clone(),
                format!("chatcmpl-{}", call.request_id),
                call.upstream_model.to_string(),
                call.body.wants_stream_usage(),
            );
            return Ok(Reply::Stream(
                super::stream::translate(self.name.clone(), response.bytes_stream(), translator),
                dropped,
            ));
        }
        let bytes = upstream::read_body(&self.name, response, self.max_response_bytes).await?;
        let (body, usage) = response::chat_completion(&bytes).map_err(|e| {
            tracing::warn!(provider = %self.name, error = %e, "unreadable upstream reply");
            ProviderError::Protocol(format!(
                "provider `{}` answered with a body that is not a message",
                self.name
            ))
        })?;
        Ok(Reply::Json {
            status: StatusCode::OK,
            body: Bytes::from(body.to_string()),
            usage: Some(usage),
            headers: dropped,
        })
    }
}

impl AnthropicProvider {
    /// POSTs `body` to the Messages endpoint (with a Messages client's `anthropic-*` headers);
    /// a reply that is not a success is the upstream's error.
    async fn post_messages(
        &self,
        call: &UpstreamCall<'_>,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut request = upstream::json_post(self.client.get(), self.messages_url.clone(), call);
        if let Some(inbound) = call.body.inbound() {
            request = with_client_headers(request, inbound, call.headers);
        }
        self.send_checked(request.body(body)).await
    }

    /// Sends `request`; a reply that is not a success is the upstream's error.
    async fn send_checked(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&self.name, e))?;
        if !upstream::status_of(&response).is_success() {
            return Err(overloaded_as_503(
                upstream::status_error(response, response::parse_error).await,
            ));
        }
        Ok(response)
    }

    /// A Messages client's request, as it came (`passthrough.rs`); the reply as Anthropic sent
    /// it, with its usage read for the gateway.
    async fn pass_through(
        &self,
        call: &UpstreamCall<'_>,
        inbound: &crate::wire::Inbound,
    ) -> Result<Reply, ProviderError> {
        let native = inbound.native.as_deref().unwrap_or_default();
        let body = crate::wire::with_model(native, call.upstream_model).ok_or_else(|| {
            ProviderError::Protocol("the request body cannot be passed through".into())
        })?;
        let response = self.post_messages(call, body).await?;
        if call.body.is_stream() {
            let events = super::stream::translate(
                self.name.clone(),
                response.bytes_stream(),
                passthrough::Passthrough {
                    provider: self.name.clone(),
                },
            );
            return Ok(Reply::Stream(events, Vec::new()));
        }
        let bytes = upstream::read_body(&self.name, response, self.max_response_bytes).await?;
        let usage = response::chat_completion(&bytes)
            .map(|(_, usage)| usage)
            .map_err(|e| {
                tracing::warn!(provider = %self.name, error = %e, "unreadable upstream reply");
                ProviderError::Protocol(format!(
                    "provider `{}` answered with a body that is not a message",
                    self.name
                ))
            })?;
        Ok(Reply::Json {
            status: StatusCode::OK,
            body: bytes,
            usage: Some(usage),
            headers: Vec::new(),
        })
    }
}

impl AnthropicProvider {
    /// Anthropic's own count of a Messages request's input tokens.
    async fn count(
        &self,
        body: &[u8],
        upstream_model: &str,
        headers: &[(String, String)],
    ) -> Result<u64, ProviderError> {
        let body = crate::wire::with_model(body, upstream_model).ok_or_else(|| {
            ProviderError::Protocol("the request body cannot be passed through".into())
        })?;
        let mut request = self
            .client
            .get()
            .post(self.count_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = self.send_checked(request.body(body)).await?;
        let bytes = upstream::read_body(&self.name, response, self.max_response_bytes).await?;
        #[derive(serde::Deserialize)]
        struct Count {
            input_tokens: u64,
        }
        serde_json::from_slice::<Count>(&bytes)
            .map(|c| c.input_tokens)
            .map_err(|_| {
                ProviderError::Protocol(format!(
                    "provider `{}` answered count_tokens with a body that is not a count",
                    self.name
                ))
            })
    }
}

/// The client's `anthropic-version` / `anthropic-beta`; a policy's header of the same name
/// (`ctx.set_header`) wins.
fn with_client_headers(
    mut request: reqwest::RequestBuilder,
    inbound: &crate::wire::Inbound,
    policy_headers: &std::collections::BTreeMap<String, String>,
) -> reqwest::RequestBuilder {
    for (name, value) in &inbound.headers {
        if !policy_headers.contains_key(name) {
            request = request.header(name.as_str(), value.as_str());
        }
    }
    request
}

/// Anthropic's 529 "overloaded" is not a standard status; clients and proxies know 503.
fn overloaded_as_503(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::Status {
            status,
            message,
            kind,
            code,
            retry_after,
            param,
            headers,
        } if status.as_u16() == 529 => ProviderError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message,
            kind,
            code,
            retry_after,
            param,
            headers,
        },
        other => other,
    }
}

impl Provider for AnthropicProvider {
    fn call<'a>(&'a self, call: UpstreamCall<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(self.send(call))
    }

    fn probe<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(upstream::probe(
            &self.name,
            self.client.get(),
            &self.base,
            path,
        ))
    }

    fn count_tokens<'a>(
        &'a self,
        body: &'a crate::wire::RequestBody,
        upstream_model: &'a str,
    ) -> Option<BoxFuture<'a, Result<u64, ProviderError>>> {
        let inbound = body.inbound()?;
        let native = inbound.native.as_deref()?;
        Some(Box::pin(self.count(
            native,
            upstream_model,
            &inbound.headers,
        )))
    }

    /// Anthropic streams always carry usage; the adapter emits the usage chunk when the body
    /// asks for it, and asking costs nothing upstream.
    fn asks_stream_usage(&self) -> bool {
        true
    }
}
