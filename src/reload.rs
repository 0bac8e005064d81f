//! Reloading providers.d, policies and `webhooks.yaml` while serving: load a whole new
//! snapshot (`load.rs`, as at start), then swap it in with one atomic store. A bad file never
//! replaces a good config; a rolled-back reload raises `reload.rolled_back` for webhooks.
//!
//! The settings file is read again too: the settings a reload can change (CORS, the log
//! filter, the tracing sampling ratio) apply, the others are marked as waiting for a restart. A bad settings file rolls the
//! whole reload back, like a bad provider file.
//!
//! Triggers: a file watcher (notify, debounced, re-armed when a folder is recreated or the
//! watcher fails; the webhooks and settings files are watched through their folders), SIGHUP, and
//! `POST /admin/reload`. Requests in flight keep the snapshot they loaded; providers whose
//! configuration did not change are carried over with their connection pools.

use crate::config::ConfigError;
use crate::http::cors::CorsSwitch;
use crate::load::{LoadFailure, Sources};
use crate::policy::LoadError;
use crate::settings::{Resolved, SettingsSource};
use crate::settings_file::SettingReport;
use crate::snapshot::Snapshot;
use crate::webhooks::{Event, Problem, Webhooks};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// One problem that kept a reload from applying.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReloadError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl From<&ConfigError> for ReloadError {
    fn from(e: &ConfigError) -> Self {
        ReloadError {
            file: e.file.display().to_string(),
            line: e.line,
            column: e.column,
            field: (!e.field.is_empty()).then(|| e.field.clone()),
            message: e.message.clone(),
        }
    }
}

impl From<&crate::settings_file::SettingsError> for ReloadError {
    fn from(e: &crate::settings_file::SettingsError) -> Self {
        ReloadError {
            file: e.file.display().to_string(),
            line: e.line,
            column: e.column,
            field: e.field.clone(),
            message: e.message.clone(),
        }
    }
}

impl From<&LoadError> for ReloadError {
    fn from(e: &LoadError) -> Self {
        ReloadError {
            file: e.file.display().to_string(),
            line: e.line,
            column: e.column,
            field: None,
            message: e.message.clone(),
        }
    }
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new snapshot is serving.
    Applied,
    /// The files are as loaded: nothing to do.
    Unchanged,
    /// Errors; the running snapshot stays.
    RolledBack,
}

/// The last reload attempt, as `/admin/config` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Attempt {
    /// Unix seconds.
    pub at: u64,
    pub trigger: String,
    pub outcome: Outcome,
    /// The snapshot version serving after the attempt.
    pub version: u64,
    pub errors: Vec<ReloadError>,
    pub duration_ms: u64,
}

pub struct Reloader {
    sources: Sources,
    live: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Told about rolled-back reloads.
    webhooks: Webhooks,
    /// Serialises reloads, and holds the last attempt.
    last: Mutex<Option<Attempt>>,
    /// Where the settings came from (to read them again), and what is applied now.
    settings: Option<Arc<SettingsSource>>,
    applied: Mutex<Vec<SettingReport>>,
    cors: CorsSwitch,
    trace_sampling: crate::telemetry::SamplingRatio,
}

use crate::clock::now_secs;

impl Reloader {
    pub fn new(
        sources: Sources,
        live: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<crate::metrics::Metrics>,
        webhooks: Webhooks,
    ) -> Self {
        Reloader {
            sources,
            live,
            metrics,
            webhooks,
            last: Mutex::new(None),
            settings: None,
            applied: Mutex::new(Vec::new()),
            cors: CorsSwitch::default(),
            trace_sampling: Default::default(),
        }
    }

    /// Reloads read the settings again from `source`, and apply CORS through `cors` and the
    /// tracing sampling ratio through `trace_sampling`.
    pub fn with_settings(
        mut self,
        source: Option<Arc<SettingsSource>>,
        cors: CorsSwitch,
        trace_sampling: crate::telemetry::SamplingRatio,
    ) -> Self {
        if let Some(s) = &source {
            self.applied = Mutex::new(s.started.clone());
        }
        self.settings = source;
        self.cors = cors;
        self.trace_sampling = trace_sampling;
        self
    }

    /// The settings file read at start, if any.
    pub fn settings_file(&self) -> Option<&Path> {
        self.settings.as_ref().and_then(|s| s.file.as_deref())
    }

    /// Every setting as it applies now, with those that wait for a restart marked.
    pub fn settings(&self) -> Vec<SettingReport> {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the settings file again. `Ok(None)`: nothing to read, or nothing changed.
    fn reread_settings(&self) -> Result<Option<Resolved>, Vec<ReloadError>> {
        let Some(source) = self.settings.as_ref().filter(|s| s.file.is_some()) else {
            return Ok(None);
        };
        let resolved = (source.reread)()
            .map_err(|errors| errors.iter().map(ReloadError::from).collect::<Vec<_>>())?;
        let applied = self.settings();
        let unchanged = applied.len() == resolved.report.len()
            && applied
                .iter()
                .zip(&resolved.report)
                .all(|(a, b)| a.name == b.name && a.value == b.value && a.source == b.source);
        Ok((!unchanged).then_some(resolved))
    }

    /// Applies what a reload can change, and marks the rest as waiting for a restart.
    fn apply_settings(&self, resolved: Resolved) -> Result<(), Vec<ReloadError>> {
        let Some(source) = &self.settings else {
            return Ok(());
        };
        crate::logging::set_filter(&resolved.log_filter).map_err(|e| {
            vec![ReloadError {
                file: self
                    .settings_file()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                line: None,
                column: None,
                field: Some("log_level".to_string()),
                message: e.to_string(),
            }]
        })?;
        // Checked by the reread: a ratio outside 0..=1 never gets here.
        let _ = self
            .trace_sampling
            .set_sampling_ratio(resolved.sampling_ratio);
        self.cors.set(resolved.cors);
        let report = crate::settings_file::mark_pending(&source.started, resolved.report);
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        for s in report.iter().filter(|s| s.restart_pending) {
            let was_pending = applied
                .iter()
                .any(|a| a.name == s.name && a.restart_pending && a.value == s.value);
            if !was_pending {
                tracing::warn!(
                    setting = %s.name,
                    "the settings file changed a setting that applies only after a restart"
                );
            }
        }
        *applied = report;
        Ok(())
    }

    pub fn last_attempt(&self) -> Option<Attempt> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Attempt>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn providers_dir(&self) -> &Path {
        &self.sources.providers_dir
    }

    pub fn policies_dir(&self) -> &Path {
        &self.sources.policies_dir
    }

    pub fn webhooks_file(&self) -> &Path {
        &self.sources.webhooks_file
    }

    /// Loads everything, and swaps it in only if all of it is valid. `force`: rebuild even when
    /// no file changed (SIGHUP, the admin endpoint); the watcher passes false.
    pub fn reload(&self, trigger: &str, force: bool) -> Attempt {
        let mut last = self.lock();
        let started = Instant::now();
        let current = self.live.load_full();
        let loaded = self.sources.read();
        let settings = self.reread_settings();
        let files_same = !force && loaded.same_files_as(&current);
        let (outcome, errors) = match settings {
            Err(errors) => (Outcome::RolledBack, errors),
            Ok(None) if files_same => (Outcome::Unchanged, Vec::new()),
            Ok(settings) => {
                // The snapshot first (it can fail), then the settings, so a rollback of either
                // leaves both as they were.
                let next = if files_same {
                    Ok(None)
                } else {
                    loaded
                        .build(current.version + 1, Some(&current))
                        .map(Some)
                        .map_err(|failure| self.report(&failure))
                };
                match next.and_then(|next| match settings {
                    Some(s) => self.apply_settings(s).map(|()| next),
                    None => Ok(next),
                }) {
                    Ok(next) => {
                        if let Some(next) = next {
                            log_changes(&current, &next);
                            self.live.store(Arc::new(next));
                        }
                        (Outcome::Applied, Vec::new())
                    }
                    Err(errors) => (Outcome::RolledBack, errors),
                }
            }
        };
        let attempt = Attempt {
            at: now_secs(),
            trigger: trigger.to_string(),
            outcome,
            version: self.live.load().version,
            errors,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        if outcome != Outcome::Unchanged || force {
            self.metrics.reload(match outcome {
                Outcome::Applied => "applied",
                Outcome::Unchanged => "unchanged",
                Outcome::RolledBack => "rolled_back",
            });
        }
        match outcome {
            Outcome::Applied => tracing::info!(
                trigger,
                version = attempt.version,
                ms = attempt.duration_ms,
                "configuration reloaded"
            ),
            Outcome::Unchanged => tracing::debug!(trigger, "reload: nothing changed"),
            Outcome::RolledBack => {
                for e in &attempt.errors {
                    tracing::error!(trigger, "reload rejected: {e}");
                }
                tracing::warn!(
                    trigger,
                    version = attempt.version,
                    "reload failed; the running configuration stays"
                );
                // To the webhooks of the configuration that stays (the new one is not valid).
                self.webhooks.emit(Event::ReloadRolledBack {
                    trigger: trigger.to_string(),
                    version: attempt.version,
                    errors: attempt
                        .errors
                        .iter()
                        .map(|e| Problem {
                            file: e.file.clone(),
                            line: e.line,
                            field: e.field.clone(),
                            message: e.message.clone(),
                        })
                        .collect(),
                });
            }
        }
        // An unchanged check by the watcher does not hide the outcome of a real attempt, except
        // a rollback whose cause is gone: the files match the running configuration again
        // (a deleted folder was restored, a broken edit undone), so its errors no longer hold.
        let resolves_rollback = last
            .as_ref()
            .is_some_and(|l| l.outcome == Outcome::RolledBack);
        if outcome != Outcome::Unchanged || last.is_none() || force || resolves_rollback {
            *last = Some(attempt.clone());
        }
        attempt
    }

    /// A failed load as `/admin/config` lists it: each file's errors, or the providers folder
    /// with the provider that could not be built.
    fn report(&self, failure: &LoadFailure) -> Vec<ReloadError> {
        match failure {
            LoadFailure::Invalid {
                config,
                policies,
                webhooks,
            } => config
                .iter()
                .map(ReloadError::from)
                .chain(policies.iter().map(ReloadError::from))
                .chain(webhooks.iter().map(ReloadError::from))
                .collect(),
            LoadFailure::Build(e) => vec![ReloadError {
                file: self.providers_dir().display().to_string(),
                line: None,
                column: None,
                field: None,
                message: e.to_string(),
            }],
        }
    }
}

fn log_changes(old: &Snapshot, new: &Snapshot) {
    let names = |s: &Snapshot| -> Vec<String> {
        s.config.providers.iter().map(|p| p.name.clone()).collect()
    };
    let (before, after) = (names(old), names(new));
    for added in after.iter().filter(|n| !before.contains(n)) {
        tracing::info!(provider = %added, "provider added");
    }
    for removed in before.iter().filter(|n| !after.contains(n)) {
        tracing::info!(provider = %removed, "provider removed");
    }
}

/// Reloads on SIGHUP until the reloader is gone.
pub fn spawn_sighup(reloader: Weak<Reloader>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /admin/reload");
            return;
        };
        while hangups.recv().await.is_some() {
            let Some(r) = reloader.upgrade() else { return };
            let _ = tokio::task::spawn_blocking(move || r.reload("sighup", true)).await;
        }
    });
}

/// How long the folders must be quiet before a burst of changes is applied.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// How often the watcher checks that its folders are the ones it watches.
const RECHECK: Duration = Duration::from_millis(500);

/// Watches both folders from a thread of its own, until the reloader is gone.
pub fn spawn_watcher(reloader: Weak<Reloader>) {
    let spawned = std::thread::Builder::new()
        .name("config-watcher".into())
        .spawn(move || watch_loop(reloader));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the config watcher; reload with SIGHUP or POST /admin/reload");
    }
}

/// What a folder is right now: a recreated folder is a different inode.
fn identity(dir: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(dir).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Some((0, 0))
    }
}

/// `path` made absolute against the working directory (unchanged if that cannot be read).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The folder a lone file (webhooks, settings) is watched through, and the file as events
/// name it.
fn webhooks_watch(file: &Path) -> (PathBuf, PathBuf) {
    let dir = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let named = match file.file_name() {
        Some(name) => dir.join(name),
        None => file.to_path_buf(),
    };
    (dir, named)
}

fn watch_loop(reloader: Weak<Reloader>) {
    use notify::{RecursiveMode, Watcher};
    // The config folders (the policies' data folder too), then the folders of the webhooks and
    // settings files (watched for those files only).
    // Absolute, as the watcher names the paths of its events (`providers.d` is reported as
    // `/srv/gw/./providers.d/...`, which compares equal to `/srv/gw/providers.d/...`).
    let (folders, files, dirs) = match reloader.upgrade() {
        Some(r) => {
            let folders = vec![
                absolute(r.providers_dir()),
                absolute(r.policies_dir()),
                absolute(&r.policies_dir().join(crate::policy::DATA_DIR)),
            ];
            let mut dirs = folders.clone();
            let mut files = Vec::new();
            for file in std::iter::once(r.webhooks_file()).chain(r.settings_file()) {
                let (dir, named) = webhooks_watch(&absolute(file));
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
                files.push(named);
            }
            (folders, files, dirs)
        }
        None => return,
    };
    let (tx, rx) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
    let arm = |tx: std::sync::mpsc::Sender<notify::Result<notify::Event>>| {
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })?;
        for dir in &dirs {
            if dir.exists() {
                watcher.watch(dir, RecursiveMode::NonRecursive)?;
            }
        }
        Ok::<_, notify::Error>(watcher)
    };
    let mut watcher = match arm(tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "file watcher unavailable; folders are checked every 500 ms instead");
            None
        }
    };
    let mut identities: Vec<_> = dirs.iter().map(|d| identity(d)).collect();
    // A change made between the start's load and the watch being armed raised no event:
    // check once now, so it is not missed until some later change.
    let mut pending: Option<Instant> = Some(Instant::now() - DEBOUNCE);
    // Set when an event concerns a watched folder itself (deleted, moved): its watch is dead,
    // and a folder made again may reuse the old inode, so identity alone cannot tell.
    let mut folder_touched = false;
    loop {
        let timeout = match pending {
            Some(since) => DEBOUNCE.saturating_sub(since.elapsed()),
            None => RECHECK,
        };
        let mut rearm = false;
        match rx.recv_timeout(timeout) {
            Ok(Ok(event)) => {
                // Reads are not changes: the loader opening a folder raises an access event
                // on it (and, through the webhooks file's folder, on its parent's watch too),
                // which must not count as the folder being touched, or every reload would
                // cause the next.
                let read = matches!(event.kind, notify::EventKind::Access(_));
                if !read && event.paths.iter().any(|p| dirs.contains(p)) {
                    folder_touched = true;
                }
                if relevant(&event, &folders, &files) {
                    pending = Some(Instant::now());
                }
                continue;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "file watcher failed; restarting it");
                rearm = true;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => rearm = true,
        }
        let Some(r) = reloader.upgrade() else { return };
        // A folder deleted and made again, or never watched: watch it anew and reload once.
        let now: Vec<_> = dirs.iter().map(|d| identity(d)).collect();
        if now != identities || watcher.is_none() || folder_touched {
            rearm = true;
            folder_touched = false;
        }
        if rearm {
            identities = now;
            drop(watcher.take());
            watcher = arm(tx.clone()).ok();
            pending = Some(Instant::now() - DEBOUNCE);
        }
        if pending.is_some_and(|since| since.elapsed() >= DEBOUNCE) {
            pending = None;
            r.reload("watcher", false);
        }
    }
}

/// Changes to provider files and scripts in their folders, and to the webhooks and settings
/// files; not editors' swap files, reads, or other files beside those two.
fn relevant(event: &notify::Event, folders: &[PathBuf], files: &[PathBuf]) -> bool {
    use notify::EventKind;
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.is_empty()
        || event.paths.iter().any(|p| {
            if files.contains(p) {
                return true;
            }
            let in_folder = p.parent().is_some_and(|d| folders.iter().any(|f| f == d));
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            in_folder
                && !name.starts_with('.')
                && !name.ends_with('~')
                && matches!(ext, "yaml" | "yml" | "rhai" | "txt" | "json" | "")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(path: &str) -> notify::Event {
        notify::Event::new(notify::EventKind::Modify(notify::event::ModifyKind::Any))
            .add_path(PathBuf::from(path))
    }

    #[test]
    fn only_config_files_and_the_webhooks_file_are_relevant() {
        assert_eq!(
            webhooks_watch(Path::new("webhooks.yaml")),
            (PathBuf::from("."), PathBuf::from("./webhooks.yaml"))
        );
        let folders = vec![
            PathBuf::from("base/providers.d"),
            PathBuf::from("base/policies"),
        ];
        let (dir, file) = webhooks_watch(Path::new("base/webhooks.yaml"));
        assert_eq!(dir, PathBuf::from("base"));
        for path in [
            "base/webhooks.yaml",
            "base/providers.d/a.yaml",
            "base/policies/a.rhai",
        ] {
            assert!(
                relevant(&event(path), &folders, std::slice::from_ref(&file)),
                "{path}"
            );
        }
        for path in [
            "base/README.md",
            "base/other.yaml",
            "base/providers.d/.a.yaml.swp",
            "base/policies/a.rhai~",
        ] {
            assert!(
                !relevant(&event(path), &folders, std::slice::from_ref(&file)),
                "{path}"
            );
        }
    }
}
