//! Loading the configuration: providers.d, the policies folder and `webhooks.yaml`, read and
//! validated together, then built into a [`Snapshot`]. The start, every reload and
//! `switchboard check` load through here, so what `check` accepts is what the server starts
//! with and reloads to.

use crate::config::{self, Config, ConfigError, SourceFile};
use crate::policy::{self, PolicySet};
use crate::providers::BuildError;
use crate::snapshot::Snapshot;
use crate::webhooks::{self, WebhookConfig};
use rhai::Engine;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the configuration comes from and how its scripts are compiled; fixed at start.
#[derive(Clone)]
pub struct Sources {
    pub providers_dir: PathBuf,
    pub policies_dir: PathBuf,
    /// `webhooks.yaml`; an absent file means no webhooks.
    pub webhooks_file: PathBuf,
    /// Built once: every load compiles with the same engine (its limits follow the body limit).
    pub engine: Arc<Engine>,
    pub policy_fail_open: bool,
}

impl Sources {
    pub fn new(
        providers_dir: PathBuf,
        policies_dir: PathBuf,
        webhooks_file: PathBuf,
        body_limit: usize,
        policy_fail_open: bool,
    ) -> Self {
        Sources {
            providers_dir,
            policies_dir,
            webhooks_file,
            engine: Arc::new(policy::engine::build(body_limit)),
            policy_fail_open,
        }
    }

    /// Reads and validates both folders and the webhooks file; nothing is built yet.
    pub fn read(&self) -> Loaded {
        Loaded {
            config: config::load_dir(&self.providers_dir),
            policies: PolicySet::load_dir(
                self.engine.clone(),
                &self.policies_dir,
                self.policy_fail_open,
            ),
            webhooks: webhooks::config::load_file(&self.webhooks_file),
        }
    }

    /// Reads, validates and builds a snapshot with nothing to carry over (the start).
    pub fn load(&self, version: u64) -> Result<Snapshot, LoadFailure> {
        self.read().build(version, None)
    }
}

/// Both folders and the webhooks file, each read and validated on its own: one pass finds the
/// problems of all, and `check` can list what is valid next to what is not.
pub struct Loaded {
    pub config: Result<Config, config::ConfigErrors>,
    pub policies: Result<PolicySet, Vec<policy::LoadError>>,
    pub webhooks: Result<WebhookConfig, Vec<ConfigError>>,
}

impl Loaded {
    /// Whether everything is valid and made of exactly the files `snapshot` was built from.
    pub fn same_files_as(&self, snapshot: &Snapshot) -> bool {
        match (&self.config, &self.policies, &self.webhooks) {
            (Ok(config), Ok(policies), Ok(webhooks)) => {
                same_files(&config.files, &snapshot.config.files)
                    && same_files(&policies.files, &snapshot.policies.files)
                    && same_files(webhooks.file.as_slice(), snapshot.webhooks.file.as_slice())
            }
            _ => false,
        }
    }

    /// The snapshot, if everything is valid and every provider builds; providers whose
    /// configuration is the same as in `previous` are carried over with their connection pools.
    pub fn build(self, version: u64, previous: Option<&Snapshot>) -> Result<Snapshot, LoadFailure> {
        match (self.config, self.policies, self.webhooks) {
            (Ok(config), Ok(policies), Ok(webhooks)) => Ok(Snapshot::build_from(
                config, policies, webhooks, version, previous,
            )?),
            (config, policies, webhooks) => Err(LoadFailure::Invalid {
                config: config.err().map(|e| e.0).unwrap_or_default(),
                policies: policies.err().unwrap_or_default(),
                webhooks: webhooks.err().unwrap_or_default(),
            }),
        }
    }
}

/// Why a load gave no snapshot. The running one, if any, stays.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    /// Files that do not validate: every error of both folders and the webhooks file (some
    /// lists may be empty).
    #[error("{}", describe_invalid(config, policies, webhooks))]
    Invalid {
        config: Vec<ConfigError>,
        policies: Vec<policy::LoadError>,
        webhooks: Vec<ConfigError>,
    },
    /// Every file is valid, but a provider cannot be built from its configuration.
    #[error("cannot build providers: {0}")]
    Build(#[from] BuildError),
}

/// One section per source with errors, each error on a line of its own.
fn describe_invalid(
    config: &[ConfigError],
    policies: &[policy::LoadError],
    webhooks: &[ConfigError],
) -> String {
    let mut sections = Vec::with_capacity(3);
    if !config.is_empty() {
        sections.push(format!(
            "invalid provider configuration:\n{}",
            config::ConfigErrors(config.to_vec())
        ));
    }
    if !policies.is_empty() {
        let lines: Vec<String> = policies.iter().map(|e| e.to_string()).collect();
        sections.push(format!("invalid policies:\n{}", lines.join("\n")));
    }
    if !webhooks.is_empty() {
        sections.push(format!(
            "invalid webhooks:\n{}",
            config::ConfigErrors(webhooks.to_vec())
        ));
    }
    sections.join("\n")
}

fn same_files(a: &[SourceFile], b: &[SourceFile]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.path == y.path && x.sha256 == y.sha256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sources(base: &Path) -> Sources {
        let (providers, policies) = (base.join("providers.d"), base.join("policies"));
        std::fs::create_dir_all(&providers).unwrap();
        std::fs::create_dir_all(&policies).unwrap();
        Sources::new(
            providers,
            policies,
            base.join("webhooks.yaml"),
            1 << 20,
            false,
        )
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn errors_in_both_folders_are_reported_together() {
        let base = tempfile::tempdir().unwrap();
        let s = sources(base.path());
        write(
            &s.providers_dir,
            "bad.yaml",
            "kind: mock\nmodels: [a]\ncolour: red\n",
        );
        write(
            &s.policies_dir,
            "broken.rhai",
            "fn on_request(req, ctx) {\n  let = 1;\n}",
        );
        let Err(failure) = s.load(1) else {
            panic!("both folders are invalid")
        };
        let LoadFailure::Invalid {
            config, policies, ..
        } = &failure
        else {
            panic!("not a validation failure: {failure}")
        };
        assert_eq!((config.len(), policies.len()), (1, 1), "{failure}");
        let text = failure.to_string();
        assert!(
            text.starts_with("invalid provider configuration:\n")
                && text.contains("bad.yaml:3")
                && text.contains("\ninvalid policies:\n")
                && text.contains("broken.rhai:2"),
            "{text}"
        );
    }

    #[test]
    fn one_invalid_folder_reads_as_before() {
        let base = tempfile::tempdir().unwrap();
        let s = sources(base.path());
        write(&s.providers_dir, "mock.yaml", "kind: mock\nmodels: [a]\n");
        write(
            &s.policies_dir,
            "broken.rhai",
            "fn on_request(req, ctx) {\n  let = 1;\n}",
        );
        let Err(failure) = s.load(1) else {
            panic!("the policies are invalid")
        };
        assert!(
            failure.to_string().starts_with("invalid policies:\n"),
            "{failure}"
        );
    }

    #[test]
    fn a_provider_that_cannot_be_built_fails_the_load_without_its_secret() {
        let base = tempfile::tempdir().unwrap();
        let s = sources(base.path());
        // Valid YAML and a valid provider file, but no HTTP header can carry this key.
        write(
            &s.providers_dir,
            "up.yaml",
            "kind: openai\nbase_url: http://127.0.0.1:9/v1\napi_key: \"sk-\\x01secret\"\nmodels: [a]\n",
        );
        assert!(s.read().config.is_ok(), "the file itself validates");
        let Err(failure) = s.load(1) else {
            panic!("the key cannot be sent")
        };
        assert!(matches!(failure, LoadFailure::Build(_)), "{failure:?}");
        let text = failure.to_string();
        assert!(
            text.starts_with("cannot build providers: provider up:"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn a_bad_webhooks_file_fails_the_load_with_the_other_errors() {
        let base = tempfile::tempdir().unwrap();
        let s = sources(base.path());
        write(&s.providers_dir, "mock.yaml", "kind: mock\nmodels: [a]\n");
        write(
            base.path(),
            "webhooks.yaml",
            "webhooks:\n  - url: https://example.com/hook\n    secret: 0123456789abcdef\n    events: [nope]\n",
        );
        let Err(failure) = s.load(1) else {
            panic!("the webhooks file is invalid")
        };
        let LoadFailure::Invalid { webhooks, .. } = &failure else {
            panic!("not a validation failure: {failure}")
        };
        assert_eq!(webhooks.len(), 1);
        let text = failure.to_string();
        assert!(
            text.starts_with("invalid webhooks:\n") && text.contains("webhooks.yaml:4"),
            "{text}"
        );
    }

    #[test]
    fn the_webhooks_file_is_one_of_the_files_a_snapshot_is_made_of() {
        let base = tempfile::tempdir().unwrap();
        let s = sources(base.path());
        write(&s.providers_dir, "mock.yaml", "kind: mock\nmodels: [a]\n");
        let first = s.load(1).unwrap();
        assert!(first.webhooks.hooks.is_empty() && first.webhooks.file.is_none());
        assert!(s.read().same_files_as(&first));
        write(
            base.path(),
            "webhooks.yaml",
            "webhooks:\n  - url: https://example.com/hook\n    secret: 0123456789abcdef\n    events: ['*']\n",
        );
        let loaded = s.read();
        assert!(
            !loaded.same_files_as(&first),
            "a new webhooks file is a change"
        );
        let next = loaded.build(2, Some(&first)).unwrap();
        assert_eq!(next.webhooks.hooks.len(), 1);
        assert!(s.read().same_files_as(&next));
    }

    #[test]
    fn unchanged_files_are_recognised_and_providers_carried_over() {
        let base = tempfile::tempdir().unwrap();
        let s = sources(base.path());
        write(&s.providers_dir, "a.yaml", "kind: mock\nmodels: [a]\n");
        write(&s.providers_dir, "b.yaml", "kind: mock\nmodels: [b]\n");
        let first = s.load(1).unwrap();
        assert!(s.read().same_files_as(&first));

        write(&s.providers_dir, "b.yaml", "kind: mock\nmodels: [b, c]\n");
        let loaded = s.read();
        assert!(!loaded.same_files_as(&first));
        let next = loaded.build(2, Some(&first)).unwrap();
        let same = |name: &str| Arc::ptr_eq(&first.providers[name], &next.providers[name]);
        assert!(same("a"), "an unchanged provider is kept");
        assert!(!same("b"), "a changed one is built anew");
    }
}
