//! `kind: gemini`: Google's Gemini API (generateContent, batchEmbedContents) behind the
//! OpenAI chat and embeddings APIs.
//!
//! `request`, `response`, `stream` and `embed` translate; this file only does the HTTP.

pub mod embed;
pub mod request;
pub mod response;
pub mod stream;

use super::translate_error::{Api, TranslateError};
use super::unsupported::Unmapped;
use super::upstream::{self, transport_error};
use super::{BuildError, Provider, ProviderError, Reply, UpstreamCall};
use crate::config::{ProviderConfig, UnsupportedParams};
use crate::wire::{Endpoint, Typed};
use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub struct GeminiProvider {
    name: String,
    client: upstream::Clients,
    base: reqwest::Url,
    unsupported_params: UnsupportedParams,
    max_response_bytes: usize,
}

impl GeminiProvider {
    pub fn new(config: &ProviderConfig) -> Result<Self, BuildError> {
        let mut auth = HeaderMap::new();
        if let Some(key) = &config.api_key {
            // A header rather than `?key=`, so the key is never part of a URL that could be
            // logged.
            auth.insert(
                "x-goog-api-key",
                upstream::secret_header(config, key.expose())?,
            );
        }
        Ok(GeminiProvider {
            name: config.name.clone(),
            client: upstream::build_client(config, auth)?,
            base: upstream::base_url(config)?.clone(),
            unsupported_params: config.unsupported_params,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// `{base}/models/{model}:{method}`, the model id percent-encoded as one path segment.
    fn url(&self, model: &str, method: &str) -> Result<reqwest::Url, ProviderError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| {
                ProviderError::Protocol(format!(
                    "provider `{}`: base_url cannot take a path",
                    self.name
                ))
            })?
            .pop_if_empty()
            .push("models")
            .push(&format!("{model}:{method}"));
        Ok(url)
    }

    async fn post(
        &self,
        url: reqwest::Url,
        body: &Value,
        call: &UpstreamCall<'_>,
    ) -> Result<reqwest::Response, ProviderError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ProviderError::Protocol(format!("cannot encode request: {e}")))?;
        let response = upstream::json_post(self.client.get(), url, call)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&self.name, e))?;
        if !response.status().is_success() {
            return Err(upstream::status_error(response, response::parse_error).await);
        }
        Ok(response)
    }

    async fn read(&self, response: reqwest::Response) -> Result<Bytes, ProviderError> {
        upstream::read_body(&self.name, response, self.max_response_bytes).await
    }

    fn unreadable(&self, e: upstream::UnreadableReply) -> ProviderError {
        tracing::warn!(provider = %self.name, error = %e, "unreadable upstream reply");
        ProviderError::Protocol(format!(
            "provider `{}` answered with a body that is not a Gemini response",
            self.name
        ))
    }

    async fn send(&self, call: UpstreamCall<'_>) -> Result<Reply, ProviderError> {
        let model = call.upstream_model;
        let fallback_id = format!("chatcmpl-{}", call.request_id);
        match call.body.typed() {
            Typed::Chat(chat) => {
                let mut unmapped = Unmapped::new(self.unsupported_params);
                let body = request::generate_request(chat, &self.name, &mut unmapped)?;
                let dropped = upstream::dropped_header(&unmapped.dropped);
                if call.body.is_stream() {
                    let mut url = self.url(model, "streamGenerateContent")?;
                    url.query_pairs_mut().append_pair("alt", "sse");
                    let response = self.post(url, &body, &call).await?;
                    let translator = stream::StreamTranslator::new(
                        self.name.clone(),
                        fallback_id,
                        model.to_string(),
                        call.body.wants_stream_usage(),
                    );
                    return Ok(Reply::Stream(
                        super::stream::translate(
                            self.name.clone(),
                            response.bytes_stream(),
                            translator,
                        ),
                        dropped,
                    ));
                }
                let response = self
                    .post(self.url(model, "generateContent")?, &body, &call)
                    .await?;
                let bytes = self.read(response).await?;
                let (body, usage) = response::chat_completion(&bytes, &fallback_id, model)
                    .map_err(|e| self.unreadable(e))?;
                Ok(Reply::Json {
                    status: StatusCode::OK,
                    body: Bytes::from(body.to_string()),
                    usage: Some(usage),
                    headers: dropped,
                })
            }
            Typed::Embeddings(req) => {
                let mut unmapped = Unmapped::new(self.unsupported_params);
                let (body, format) = embed::batch_request(req, model, &self.name, &mut unmapped)?;
                let response = self
                    .post(self.url(model, "batchEmbedContents")?, &body, &call)
                    .await?;
                let bytes = self.read(response).await?;
                let body =
                    embed::embedding_list(&bytes, model, format).map_err(|e| self.unreadable(e))?;
                Ok(Reply::Json {
                    status: StatusCode::OK,
                    body: Bytes::from(body.to_string()),
                    usage: None,
                    headers: upstream::dropped_header(&unmapped.dropped),
                })
            }
            Typed::Completions(_) => Err(TranslateError::Endpoint {
                endpoint: Endpoint::Completions,
                api: Api::Gemini,
            }
            .refused_by(&self.name)),
        }
    }
}

impl GeminiProvider {
    /// Gemini's own count (`countTokens`) of the request `generateContent` would get. What the
    /// translation cannot express is left out of the count rather than refused: a count is
    /// an estimate's better, not a request.
    async fn count(
        &self,
        body: &crate::wire::RequestBody,
        model: &str,
    ) -> Result<u64, ProviderError> {
        let Typed::Chat(chat) = body.typed() else {
            return Err(ProviderError::Protocol(
                "only chat requests are counted".into(),
            ));
        };
        let mut unmapped = Unmapped::new(UnsupportedParams::Drop);
        let mut request = request::generate_request(chat, &self.name, &mut unmapped)?;
        request["model"] = Value::String(format!("models/{model}"));
        let counting = serde_json::json!({ "generateContentRequest": request });
        let no_headers = std::collections::BTreeMap::new();
        let call = UpstreamCall {
            request_id: "count_tokens",
            body,
            upstream_model: model,
            headers: &no_headers,
            trace_headers: &[],
        };
        let response = self
            .post(self.url(model, "countTokens")?, &counting, &call)
            .await?;
        let bytes = self.read(response).await?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Count {
            total_tokens: u64,
        }
        serde_json::from_slice::<Count>(&bytes)
            .map(|c| c.total_tokens)
            .map_err(|_| {
                ProviderError::Protocol(format!(
                    "provider `{}` answered countTokens with a body that is not a count",
                    self.name
                ))
            })
    }
}

impl Provider for GeminiProvider {
    fn probe<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(upstream::probe(
            &self.name,
            self.client.get(),
            &self.base,
            path,
        ))
    }

    fn call<'a>(&'a self, call: UpstreamCall<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(self.send(call))
    }

    fn count_tokens<'a>(
        &'a self,
        body: &'a crate::wire::RequestBody,
        upstream_model: &'a str,
    ) -> Option<BoxFuture<'a, Result<u64, ProviderError>>> {
        Some(Box::pin(self.count(body, upstream_model)))
    }

    /// Gemini streams always carry usage metadata; asking costs nothing upstream.
    fn asks_stream_usage(&self) -> bool {
        true
    }
}
