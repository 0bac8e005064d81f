//! Everything a request needs from configuration, built whole and swapped in atomically.
//!
//! A handler loads one `Arc<Snapshot>` at its start and uses only that, so a reload in the
//! middle of a request (or a long stream) changes nothing for it.

use crate::config::Config;
use crate::policy::PolicySet;
use crate::providers::{self, Provider};
use crate::router::ModelIndex;
use crate::webhooks::WebhookConfig;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

pub struct Snapshot {
    pub version: u64,
    pub loaded_at: SystemTime,
    pub config: Config,
    pub providers: HashMap<String, Arc<dyn Provider>>,
    pub models: ModelIndex,
    pub policies: PolicySet,
    /// The webhooks and the events each wants (`webhooks.yaml`).
    pub webhooks: WebhookConfig,
}

impl Snapshot {
    /// Prepares a snapshot from a validated config (`load.rs` reads and validates it); fails
    /// without side effects. Every provider whose configuration is the same as in `previous` is
    /// carried over, so its connection pool (and any state it keeps) survives the reload.
    pub fn build_from(
        config: Config,
        policies: PolicySet,
        webhooks: WebhookConfig,
        version: u64,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, providers::BuildError> {
        let mut built = HashMap::with_capacity(config.providers.len());
        for provider in &config.providers {
            let kept = previous.and_then(|prev| {
                let same = prev.config.providers.iter().any(|p| p == provider);
                same.then(|| prev.providers.get(&provider.name).cloned())
                    .flatten()
            });
            let instance = match kept {
                Some(instance) => instance,
                None => providers::build(provider)?,
            };
            built.insert(provider.name.clone(), instance);
        }
        Ok(Snapshot {
            version,
            loaded_at: SystemTime::now(),
            models: ModelIndex::build(&config),
            providers: built,
            policies,
            webhooks,
            config,
        })
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }
}
