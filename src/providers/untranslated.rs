//! Messages and Responses requests that carry what the chat form cannot (a thinking block, a
//! server tool: `Inbound::untranslated`), sent to a provider that will get the chat form:
//! refused with a 400 naming the first such part, or sent without them (named in
//! `x-switchboard-dropped-params`), as the provider's `unsupported_params` setting says. A
//! provider that takes the client's own request as it came (Anthropic for a Messages client)
//! loses nothing and is let through.

use super::translate_error::TranslateError;
use super::{Provider, ProviderError, Reply, UpstreamCall};
use crate::config::{ProviderConfig, ProviderKind, UnsupportedParams};
use futures_util::future::BoxFuture;
use std::sync::Arc;

pub struct Guarded {
    inner: Arc<dyn Provider>,
    name: String,
    kind: ProviderKind,
    mode: UnsupportedParams,
}

pub fn wrap(inner: Arc<dyn Provider>, config: &ProviderConfig) -> Arc<dyn Provider> {
    Arc::new(Guarded {
        inner,
        name: config.name.clone(),
        kind: config.kind,
        mode: config.unsupported_params,
    })
}

impl Guarded {
    /// What this call loses, if anything: `Err` when it must be refused.
    fn losses<'a>(&self, call: &UpstreamCall<'a>) -> Result<&'a [String], ProviderError> {
        let Some(inbound) = call.body.inbound() else {
            return Ok(&[]);
        };
        if inbound.untranslated.is_empty()
            || super::anthropic::passthrough::served_natively(self.kind, call.body)
        {
            return Ok(&[]);
        }
        match self.mode {
            UnsupportedParams::Reject => Err(TranslateError::Untranslated {
                what: inbound.untranslated[0].clone(),
            }
            .refused_by(&self.name)),
            UnsupportedParams::Drop => Ok(&inbound.untranslated),
        }
    }
}

impl Provider for Guarded {
    fn call<'a>(&'a self, call: UpstreamCall<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move {
            let lost = self.losses(&call)?;
            let mut reply = self.inner.call(call).await?;
            if !lost.is_empty() {
                let paths: Vec<String> = lost
                    .iter()
                    .map(|l| l.split(':').next().unwrap_or(l).to_string())
                    .collect();
                let headers = match &mut reply {
                    Reply::Json { headers, .. } | Reply::Stream(_, headers) => headers,
                };
                headers.extend(super::upstream::dropped_header(&paths));
            }
            Ok(reply)
        })
    }

    fn asks_stream_usage(&self) -> bool {
        self.inner.asks_stream_usage()
    }

    fn probe<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        self.inner.probe(path)
    }

    fn count_tokens<'a>(
        &'a self,
        body: &'a crate::wire::RequestBody,
        upstream_model: &'a str,
    ) -> Option<BoxFuture<'a, Result<u64, ProviderError>>> {
        self.inner.count_tokens(body, upstream_model)
    }
}
