//! Keeping a provider's secrets out of everything relayed or logged.
//!
//! An upstream may echo the credential it was sent (`Incorrect API key provided: Bearer
//! sk-...`). Every provider with secrets (its `api_key`, its `headers` values) is wrapped so
//! that each error it returns, before or inside a stream, has them replaced by `[redacted]`:
//! the client, the request log and the process log only ever see the redacted text.

use super::{Provider, ProviderError, Reply, UpstreamCall};
use crate::config::ProviderConfig;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use std::sync::Arc;

const MASK: &str = "[redacted]";

/// Values shorter than this are not treated as secrets: replacing a one- or two-letter header
/// value everywhere would garble messages and protect nothing.
const MIN_SECRET_LEN: usize = 4;

/// The provider's secret values, longest first (so a secret that contains another is masked
/// whole).
pub fn secrets_of(config: &ProviderConfig) -> Vec<String> {
    let mut secrets: Vec<String> = config
        .api_key
        .iter()
        .chain(config.headers.iter().map(|(_, value)| value))
        .map(|s| s.expose().to_string())
        .filter(|s| s.len() >= MIN_SECRET_LEN)
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}

fn redact_error(e: ProviderError, secrets: &[String]) -> ProviderError {
    match e {
        ProviderError::Status {
            status,
            message,
            kind,
            param,
            code,
            retry_after,
            headers,
        } => ProviderError::Status {
            status,
            message: redact(&message, secrets),
            kind: kind.map(|k| redact(&k, secrets)),
            param: param.map(|p| redact(&p, secrets)),
            code: code.map(|c| redact(&c, secrets)),
            retry_after,
            headers,
        },
        ProviderError::Unreachable(m) => ProviderError::Unreachable(redact(&m, secrets)),
        ProviderError::Timeout(m) => ProviderError::Timeout(redact(&m, secrets)),
        ProviderError::Protocol(m) => ProviderError::Protocol(redact(&m, secrets)),
        ProviderError::TooLarge(m) => ProviderError::TooLarge(redact(&m, secrets)),
    }
}

/// A provider whose errors never carry its secrets.
pub struct Redacted {
    inner: Arc<dyn Provider>,
    secrets: Arc<[String]>,
}

/// Wraps `inner` when the config has secrets; a provider without any is returned as it is.
pub fn wrap(inner: Arc<dyn Provider>, config: &ProviderConfig) -> Arc<dyn Provider> {
    let secrets = secrets_of(config);
    if secrets.is_empty() {
        return inner;
    }
    Arc::new(Redacted {
        inner,
        secrets: secrets.into(),
    })
}

impl Provider for Redacted {
    fn call<'a>(&'a self, call: UpstreamCall<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move {
            match self.inner.call(call).await {
                Ok(Reply::Stream(events, headers)) => {
                    let secrets = self.secrets.clone();
                    let events = events
                        .map(move |item| item.map_err(|e| redact_error(e, &secrets)))
                        .boxed();
                    Ok(Reply::Stream(events, headers))
                }
                Ok(json) => Ok(json),
                Err(e) => Err(redact_error(e, &self.secrets)),
            }
        })
    }

    fn asks_stream_usage(&self) -> bool {
        self.inner.asks_stream_usage()
    }

    fn probe<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            self.inner
                .probe(path)
                .await
                .map_err(|e| redact_error(e, &self.secrets))
        })
    }

    fn count_tokens<'a>(
        &'a self,
        body: &'a crate::wire::RequestBody,
        upstream_model: &'a str,
    ) -> Option<BoxFuture<'a, Result<u64, ProviderError>>> {
        let counting = self.inner.count_tokens(body, upstream_model)?;
        Some(Box::pin(async move {
            counting.await.map_err(|e| redact_error(e, &self.secrets))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_of_every_secret_is_masked() {
        let secrets = vec!["sk-live-abcdef123".to_string(), "hdr-token".to_string()];
        let text =
            "Incorrect API key provided: Bearer sk-live-abcdef123 (hdr-token, sk-live-abcdef123)";
        assert_eq!(
            redact(text, &secrets),
            "Incorrect API key provided: Bearer [redacted] ([redacted], [redacted])"
        );
        assert_eq!(redact("nothing here", &secrets), "nothing here");
    }
}
