//! The model table: which provider serves which model, and how names resolve.
//!
//! A client names a model as `provider/model` or by its bare name. Model names may contain
//! `/` themselves (OpenRouter's `openai/gpt-4o`, Workers AI's `@cf/meta/...`), so the qualified
//! form is tried first and the bare form second. A bare name listed by several providers
//! resolves to the first provider in file-name order.

use crate::config::{Config, ModelConfig};
use std::collections::HashMap;
use std::sync::Arc;

/// The longest model name a request may carry, in bytes (`provider/model` included). A longer
/// one is a 400 before anything is logged or stored under it.
pub use crate::config::MAX_MODEL_NAME_BYTES as MAX_NAME_BYTES;

/// A provider and one of its models.
#[derive(Debug, Clone)]
pub struct Target {
    pub provider: Arc<str>,
    pub model: Arc<ModelConfig>,
    /// `provider/model`, the model's id in `/v1/models`.
    pub id: Arc<str>,
}

#[derive(Debug, Default)]
pub struct ModelIndex {
    /// Keyed by `provider/model`, in listing order.
    qualified: HashMap<Arc<str>, Target>,
    /// Keyed by bare model name; the first provider (by name) that lists it.
    bare: HashMap<String, Target>,
    /// Every target, in provider then file order, for `/v1/models`.
    all: Vec<Target>,
}

impl ModelIndex {
    pub fn build(config: &Config) -> ModelIndex {
        let mut index = ModelIndex::default();
        for provider in &config.providers {
            let provider_name: Arc<str> = Arc::from(provider.name.as_str());
            for model in &provider.models {
                let id: Arc<str> = Arc::from(format!("{}/{}", provider.name, model.name));
                let target = Target {
                    provider: provider_name.clone(),
                    model: Arc::new(model.clone()),
                    id: id.clone(),
                };
                index.qualified.insert(id, target.clone());
                index
                    .bare
                    .entry(model.name.clone())
                    .or_insert_with(|| target.clone());
                index.all.push(target);
            }
        }
        index
    }

    /// The target a client's model name means, if any.
    pub fn resolve(&self, requested: &str) -> Option<&Target> {
        self.qualified
            .get(requested)
            .or_else(|| self.bare.get(requested))
    }

    pub fn all(&self) -> &[Target] {
        &self.all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MockOptions, ProviderConfig, ProviderKind, Timeouts};

    fn provider(name: &str, models: &[&str]) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            kind: ProviderKind::Mock,
            base_url: None,
            api_key: None,
            headers: vec![],
            timeouts: Timeouts::default(),
            stream_usage: true,
            models: models
                .iter()
                .map(|m| ModelConfig {
                    name: m.to_string(),
                    upstream: m.to_string(),
                    pricing: None,
                })
                .collect(),
            mock: MockOptions::default(),
            api_version: None,
            retry: Default::default(),
            breaker: Default::default(),
            health_check: None,
            weight: 1,
            unsupported_params: Default::default(),
            max_response_bytes: 1 << 20,
        }
    }

    #[test]
    fn qualified_bare_and_slashed_names() {
        let config = Config {
            providers: vec![
                provider("alpha", &["shared", "only-a"]),
                provider("beta", &["shared"]),
                provider("router", &["alpha/elsewhere", "vendor/model"]),
            ],
            ..Config::default()
        };
        let index = ModelIndex::build(&config);
        assert_eq!(&*index.resolve("beta/shared").unwrap().provider, "beta");
        assert_eq!(&*index.resolve("shared").unwrap().provider, "alpha");
        assert_eq!(&*index.resolve("only-a").unwrap().id, "alpha/only-a");
        assert_eq!(
            &*index.resolve("router/vendor/model").unwrap().provider,
            "router"
        );
        assert_eq!(&*index.resolve("vendor/model").unwrap().provider, "router");
        // `alpha/elsewhere` is not a model of alpha, so it is router's bare model name.
        assert_eq!(
            &*index.resolve("alpha/elsewhere").unwrap().provider,
            "router"
        );
        assert!(index.resolve("nope").is_none());
        assert_eq!(index.all().len(), 5);
    }
}
