//! `kind: openai`: any server that speaks the OpenAI HTTP API; also `kind: azure`, which is
//! the same wire format behind Azure's deployment URLs and `api-key` header.
//!
//! Requests go upstream as the client sent them, with `model` set to the upstream id. JSON
//! replies come back byte for byte; streams are re-framed event by event, payloads untouched.

use super::sse::SseEvent;
use super::stream::{Out, Step, Translate};
use super::upstream::{self, transport_error, ErrorParts};
use super::{BuildError, Provider, ProviderError, Reply, UpstreamCall};
use crate::config::ProviderConfig;
use crate::wire::{Endpoint, Usage};
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, AUTHORIZATION};
use serde::Deserialize;

/// Where each endpoint lives upstream.
enum Urls {
    /// `{base_url}/chat/completions` and so on.
    Fixed {
        chat: reqwest::Url,
        completions: reqwest::Url,
        embeddings: reqwest::Url,
    },
    /// `{base_url}/openai/deployments/{deployment}/{path}?api-version=...`; the model's
    /// upstream id is the deployment name, so the URL is made per call.
    Azure {
        base: reqwest::Url,
        api_version: String,
    },
}

pub struct OpenAiProvider {
    name: String,
    client: upstream::Clients,
    urls: Urls,
    stream_usage: bool,
    /// `base_url`, for health probes.
    base: reqwest::Url,
    max_response_bytes: usize,
}

impl OpenAiProvider {
    pub fn new(config: &ProviderConfig) -> Result<Self, BuildError> {
        let base = upstream::base_url(config)?;
        let join = |path: &str| {
            upstream::join(base, path).map_err(|source| BuildError::BadUrl {
                provider: config.name.clone(),
                path: path.to_string(),
                source,
            })
        };
        let mut auth = HeaderMap::new();
        if let Some(key) = &config.api_key {
            auth.insert(
                AUTHORIZATION,
                upstream::secret_header(config, &format!("Bearer {}", key.expose()))?,
            );
        }
        Ok(OpenAiProvider {
            name: config.name.clone(),
            client: upstream::build_client(config, auth)?,
            urls: Urls::Fixed {
                chat: join(Endpoint::Chat.path())?,
                completions: join(Endpoint::Completions.path())?,
                embeddings: join(Endpoint::Embeddings.path())?,
            },
            stream_usage: config.stream_usage,
            base: base.clone(),
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// `kind: azure`: Azure OpenAI authenticates with `api-key` and addresses deployments.
    pub fn azure(config: &ProviderConfig) -> Result<Self, BuildError> {
        let base = upstream::base_url(config)?.clone();
        let api_version =
            config
                .api_version
                .clone()
                .ok_or_else(|| BuildError::MissingApiVersion {
                    provider: config.name.clone(),
                })?;
        let mut auth = HeaderMap::new();
        if let Some(key) = &config.api_key {
            auth.insert("api-key", upstream::secret_header(config, key.expose())?);
        }
        Ok(OpenAiProvider {
            name: config.name.clone(),
            client: upstream::build_client(config, auth)?,
            urls: Urls::Azure {
                base: base.clone(),
                api_version,
            },
            stream_usage: config.stream_usage,
            base,
            max_response_bytes: config.max_response_bytes,
        })
    }

    fn url(&self, endpoint: Endpoint, model: &str) -> Result<reqwest::Url, ProviderError> {
        match &self.urls {
            Urls::Fixed {
                chat,
                completions,
                embeddings,
            } => Ok(match endpoint {
                Endpoint::Chat => chat.clone(),
                Endpoint::Completions => completions.clone(),
                Endpoint::Embeddings => embeddings.clone(),
            }),
            Urls::Azure { base, api_version } => azure_url(base, model, endpoint, api_version)
                .ok_or_else(|| {
                    ProviderError::Protocol(format!(
                        "provider `{}`: cannot build a deployment URL",
                        self.name
                    ))
                }),
        }
    }

    async fn send(&self, call: UpstreamCall<'_>) -> Result<Reply, ProviderError> {
        let body = call
            .body
            .to_upstream_json(call.upstream_model)
            .map_err(|e| ProviderError::Protocol(format!("cannot encode request: {e}")))?;
        let url = self.url(call.body.endpoint(), call.upstream_model)?;
        let response = upstream::json_post(self.client.get(), url, &call)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&self.name, e))?;

        let status = upstream::status_of(&response);
        if !status.is_success() {
            return Err(upstream::status_error(response, parse_error).await);
        }
        let headers = upstream::relayed_headers(response.headers());
        if call.body.is_stream() {
            Ok(Reply::Stream(
                super::stream::translate(
                    self.name.clone(),
                    response.bytes_stream(),
                    Passthrough {
                        provider: self.name.clone(),
                    },
                ),
                headers,
            ))
        } else {
            let body = upstream::read_body(&self.name, response, self.max_response_bytes).await?;
            // A success that is not a JSON object (an HTML page, an empty or cut-off body) is
            // the upstream's failure: never relayed as a 200, never cached, retried elsewhere.
            let usage = usage_of_reply(&body).ok_or_else(|| {
                ProviderError::Protocol(format!(
                    "provider `{}` answered {status} with a body that is not a JSON object",
                    self.name
                ))
            })?;
            Ok(Reply::Json {
                status,
                body,
                usage,
                headers,
            })
        }
    }
}

/// `{base}/openai/deployments/{deployment}/{path}?api-version=...`, the deployment name
/// percent-encoded as one path segment.
fn azure_url(
    base: &reqwest::Url,
    deployment: &str,
    endpoint: Endpoint,
    api_version: &str,
) -> Option<reqwest::Url> {
    let mut url = base.clone();
    {
        let mut segments = url.path_segments_mut().ok()?;
        segments
            .pop_if_empty()
            .extend(["openai", "deployments", deployment]);
        segments.extend(endpoint.path().split('/'));
    }
    url.query_pairs_mut()
        .append_pair("api-version", api_version);
    Some(url)
}

impl Provider for OpenAiProvider {
    fn call<'a>(&'a self, call: UpstreamCall<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(self.send(call))
    }

    fn asks_stream_usage(&self) -> bool {
        self.stream_usage
    }

    fn probe<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(upstream::probe(
            &self.name,
            self.client.get(),
            &self.base,
            path,
        ))
    }
}

/// OpenAI's error body: `{"error":{"message","type","param","code"}}`.
fn parse_error(body: &[u8]) -> Option<ErrorParts> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: ErrorDetail,
    }
    #[derive(Deserialize)]
    struct ErrorDetail {
        message: Option<String>,
        #[serde(rename = "type")]
        kind: Option<String>,
        param: Option<serde_json::Value>,
        code: Option<serde_json::Value>,
    }
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok()?;
    Some(ErrorParts {
        message: parsed
            .error
            .message
            .unwrap_or_else(|| "upstream error".to_string()),
        kind: parsed.error.kind,
        param: match parsed.error.param {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        },
        code: parsed.error.code.map(|c| match c {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }),
    })
}

/// The usage of a JSON reply, or `None` when the body is not a JSON object at all. Only
/// `usage` is read into a value; the rest is checked and skipped.
fn usage_of_reply(body: &[u8]) -> Option<Option<Usage>> {
    #[derive(Deserialize)]
    struct Reply<'a> {
        #[serde(borrow, default)]
        usage: Option<&'a serde_json::value::RawValue>,
    }
    // serde would also read a struct from a JSON array; a reply is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let reply: Reply = serde_json::from_slice(body).ok()?;
    Some(
        reply
            .usage
            .and_then(|raw| serde_json::from_str(raw.get()).ok()),
    )
}

/// OpenAI's own stream: payloads pass untouched until `[DONE]`; a body that ends without
/// `[DONE]` was cut off.
struct Passthrough {
    provider: String,
}

impl Translate for Passthrough {
    fn event(&mut self, event: SseEvent, out: &mut Out) -> Step {
        if event.data.as_ref() == b"[DONE]" {
            return Step::Done;
        }
        out.push_back(Ok(event.data));
        Step::Continue
    }

    fn end_of_body(&mut self, out: &mut Out) {
        out.push_back(Err(ProviderError::Protocol(format!(
            "provider `{}` ended its stream before [DONE]",
            self.provider
        ))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_must_be_a_json_object_and_its_usage_is_read_leniently() {
        let usage = usage_of_reply(
            br#"{"id":"x","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        );
        assert_eq!(usage.flatten().map(|u| u.total_tokens), Some(3));
        assert_eq!(usage_of_reply(br#"{"id":"x","usage":null}"#), Some(None));
        assert_eq!(usage_of_reply(br#"{"id":"x","usage":"odd"}"#), Some(None));
        for bad in [
            &b""[..],
            b"<html>oops</html>",
            b"{\"id\":\"x\",",
            b"\"text\"",
            b"[1]",
        ] {
            assert_eq!(
                usage_of_reply(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cached_prompt_tokens_are_read_from_replies_and_stream_chunks() {
        // As OpenAI and Azure send it, with details the gateway does not count.
        let usage = usage_of_reply(
            br#"{"id":"x","usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,
                "prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},
                "completion_tokens_details":{"reasoning_tokens":0}}}"#,
        )
        .flatten()
        .unwrap();
        assert_eq!(usage, Usage::new(2006, 300).with_cache(1920, 0));
        // `null` counts and `null` details are no caching, not an unreadable usage.
        for body in [
            &br#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6,"prompt_tokens_details":{"cached_tokens":null}}}"#[..],
            br#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6,"prompt_tokens_details":null}}"#,
            br#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#,
        ] {
            let usage = usage_of_reply(body).flatten().unwrap();
            assert_eq!(
                (usage.prompt_tokens, usage.total_tokens, usage.cached_tokens()),
                (5, 6, 0),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // A stream's usage chunk passes untouched, and the relay reads the same counts off it.
        let chunk = bytes::Bytes::from_static(
            br#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":2006,"completion_tokens":3,"total_tokens":2009,"prompt_tokens_details":{"cached_tokens":1024}}}"#,
        );
        let mut out = Out::new();
        let mut passthrough = Passthrough {
            provider: "p".into(),
        };
        let event = SseEvent {
            event: None,
            data: chunk.clone(),
        };
        assert!(passthrough.event(event, &mut out) == Step::Continue);
        let relayed = out.pop_front().unwrap().unwrap();
        assert_eq!(relayed, chunk);
        let usage = crate::wire::usage_of(&relayed).unwrap();
        assert_eq!((usage.prompt_tokens, usage.cached_tokens()), (2006, 1024));
    }

    #[test]
    fn azure_urls_name_the_deployment_and_version() {
        let base = reqwest::Url::parse("https://res.openai.azure.com/").unwrap();
        let url = azure_url(&base, "gpt 4o", Endpoint::Chat, "2024-10-21").unwrap();
        assert_eq!(
            url.as_str(),
            "https://res.openai.azure.com/openai/deployments/gpt%204o/chat/completions?api-version=2024-10-21"
        );
        let base = reqwest::Url::parse("http://127.0.0.1:9/prefix").unwrap();
        let url = azure_url(&base, "d", Endpoint::Embeddings, "v").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/prefix/openai/deployments/d/embeddings?api-version=v"
        );
    }
}
