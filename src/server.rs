//! Building the server: load config, open the store, bind, serve.

use crate::auth::Authenticator;
use crate::error::ApiError;
use crate::load::{LoadFailure, Sources};
use crate::reload::{self, Reloader};
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::store::{NewKey, Role, Store, StoreError, StoreKind, StoreOptions};
use crate::{admin, dashboard, health, http, openapi, proxy};
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use arc_swap::ArcSwap;
use std::net::{SocketAddr, TcpListener};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration: every error of providers.d and policies, or a provider not built.
    #[error(transparent)]
    Load(#[from] LoadFailure),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cors(#[from] crate::http::cors::CorsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("cannot open the files and batches folders in {dir}: {source}")]
    Batches {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A bound, not yet running server.
pub struct Application {
    server: Server,
    addr: SocketAddr,
    state: web::Data<AppState>,
    new_admin_key: Option<String>,
    tls: bool,
    /// The `/metrics`-only server on `--metrics-listen`, and its bound address.
    metrics: Option<(Server, SocketAddr)>,
    /// The shutdown grace period, which also bounds the last trace export.
    grace: std::time::Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        // TLS files first: a start that cannot serve leaves no trace.
        let tls = settings
            .tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose()?;
        // Checked first: a bad CORS setting is a typo to fix, and should cost nothing.
        let cors = crate::http::cors::CorsSwitch::new(
            settings
                .cors
                .as_ref()
                .map(crate::http::cors::CorsPolicy::new)
                .transpose()?,
        );
        // Checked before anything is stored, like CORS; the exporter is built further down,
        // once there are metrics to count its drops in.
        if let Some(otlp) = &settings.otlp {
            otlp.check()?;
        }
        // Loaded (providers built too) before the store is opened: a configuration that cannot
        // serve leaves no trace, not even a bootstrap admin key.
        let sources = Sources::new(
            settings.providers_dir.clone(),
            settings.policies_dir.clone(),
            settings.webhooks_file.clone(),
            settings.body_limit,
            settings.policy_fail_open,
        );
        let snapshot = sources.load(1)?;
        log_loaded(&snapshot, &sources);

        let store = Store::open_with(&StoreOptions {
            kind: settings.store,
            dir: &settings.data_dir,
            cache_bytes: settings.store_cache_bytes,
            cache_max_entries: settings.cache_max_entries,
            redis: settings.redis.as_ref(),
        })
        .await?;
        if settings.store == StoreKind::Memory {
            tracing::warn!(
                "--store memory: keys, limits, usage and logs are lost when the gateway stops"
            );
        }
        let auth = Authenticator::new(store.keys.clone(), settings.admin_key.as_deref())
            .with_metrics_token(settings.metrics_token.as_deref());
        let new_admin_key = if !auth.has_env_admin() && !store.keys.has_admin().await? {
            let (_, secret) = store
                .keys
                .create(NewKey {
                    name: "bootstrap admin".into(),
                    role: Role::Admin,
                    ..NewKey::default()
                })
                .await?;
            store.flush().await?;
            Some(secret)
        } else {
            None
        };

        let metrics = std::sync::Arc::new(if settings.bench_off.metrics {
            crate::metrics::Metrics::per_request_off()
        } else {
            crate::metrics::Metrics::default()
        });
        let trace_sampling = crate::telemetry::SamplingRatio::default();
        let telemetry = match &settings.otlp {
            Some(otlp) => {
                let telemetry = crate::telemetry::Telemetry::start(
                    otlp,
                    trace_sampling.clone(),
                    metrics.clone(),
                )?;
                tracing::info!(endpoint = %otlp.display_endpoint(), ratio = otlp.sampling_ratio, "exporting traces (OTLP/HTTP)");
                telemetry
            }
            None => crate::telemetry::Telemetry::off(),
        };
        let live = std::sync::Arc::new(ArcSwap::from_pointee(snapshot));
        let webhooks = crate::webhooks::dispatch::start(metrics.clone(), &live);
        crate::webhooks::expiry::spawn(&store.keys, &store.counters, &webhooks, &live);
        let reloader = std::sync::Arc::new(
            Reloader::new(sources, live.clone(), metrics.clone(), webhooks.clone()).with_settings(
                settings.source.clone(),
                cors.clone(),
                trace_sampling.clone(),
            ),
        );
        if settings.watch {
            reload::spawn_watcher(std::sync::Arc::downgrade(&reloader));
        }
        reload::spawn_sighup(std::sync::Arc::downgrade(&reloader));
        let accountant = if settings.bench_off.log_writer_at_stop {
            crate::ledger_writer::Accountant::start_ticking(
                store.clone(),
                metrics.clone(),
                settings.log_retention,
                settings.log_bodies,
                std::time::Duration::from_secs(365 * 86_400),
            )
        } else {
            crate::ledger_writer::Accountant::start(
                store.clone(),
                metrics.clone(),
                settings.log_retention,
                settings.log_bodies,
            )
        }
        .map_err(|e| StartError::Store(StoreError::from(e)))?;
        let accountant = if settings.bench_off.request_log {
            accountant.discarding()
        } else {
            accountant
        };
        let health = std::sync::Arc::new(crate::router::provider_health::Registry::with_webhooks(
            webhooks.clone(),
        ));
        crate::router::checks::spawn(&health, &live);
        let mirrors = std::sync::Arc::new(crate::proxy::mirror::Mirrors::new(
            settings.mirror_concurrency,
            metrics.clone(),
        ));
        let providers = std::sync::Arc::new(crate::router::policy_facts::LiveProviders {
            health: health.clone(),
            live: live.clone(),
        });
        // With `--store memory` nothing is kept: files and batches go to a temporary folder,
        // removed when the gateway stops.
        let batch_dir = match settings.store {
            StoreKind::Memory => crate::batches::registry::Place::Temporary,
            _ => crate::batches::registry::Place::Folder(settings.data_dir.clone()),
        };
        let (batches, batch_commands) = crate::batches::Batches::open(
            batch_dir,
            crate::batches::BatchSettings {
                concurrency: settings.batch_concurrency,
                per_batch: settings.batch_concurrency_per_batch,
                max_file_bytes: settings.max_file_bytes,
                body_limit: settings.body_limit,
            },
        )
        .map_err(|source| StartError::Batches {
            dir: settings.data_dir.clone(),
            source,
        })?;
        let state = web::Data::new(AppState {
            batches: std::sync::Arc::new(batches),
            snapshot: live,
            reloader,
            accountant: std::sync::Arc::new(accountant),
            metrics,
            responses: crate::proxy::stored::StoredResponses::new(store.responses.clone()),
            providers,
            trusted_proxies: settings.trusted_proxies.clone(),
            mirrors,
            store,
            auth,
            body_limit: settings.body_limit,
            read_only_policies: settings.read_only_policies,
            health,
            budget_alerts: std::sync::Arc::new(crate::proxy::budget_alerts::BudgetAlerts::new(
                budget_sink(webhooks.clone()),
            )),
            webhooks,
            telemetry,
            trace_sampling,
        });

        crate::proxy::batch_runner::spawn(state.clone(), batch_commands);

        let listener = TcpListener::bind(settings.listen).map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            // Outermost, so a preflight never reaches the pipeline and every answer (errors
            // from the layers inside included) gets the CORS headers.
            let cors_layer = crate::http::cors::ReloadableCors(cors.clone());
            App::new()
                .app_data(app_state.clone())
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    ApiError::bad_request(format!("Invalid query string: {e}")).into()
                }))
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    ApiError::bad_request(format!("Invalid path: {e}")).into()
                }))
                .wrap(from_fn(crate::http::security_headers::middleware))
                .wrap(from_fn(proxy::request_id::middleware))
                .wrap(cors_layer)
                .configure(health::configure)
                .configure(proxy::configure)
                .configure(admin::configure)
                .configure(openapi::configure)
                .configure(dashboard::configure)
                .default_service(web::to(http::not_found))
        })
        .tcp_nodelay(true)
        .shutdown_timeout(settings.shutdown_grace.as_secs());
        if settings.workers > 0 {
            server = server.workers(settings.workers);
        }
        let serves_tls = tls.is_some();
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config),
            None => server.listen(listener),
        }
        .map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?
        .run();
        let metrics = match settings.metrics_listen {
            Some(at) => Some(metrics_server(at, state.clone())?),
            None => None,
        };
        Ok(Application {
            server,
            addr,
            state,
            new_admin_key,
            tls: serves_tls,
            metrics,
            grace: settings.shutdown_grace,
        })
    }

    /// `https` when serving TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The address actually bound (so port 0 works).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `/metrics` is served on without a key, if `--metrics-listen` was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The share of requests traced, to change while the server runs (the same handle as
    /// `AppState::trace_sampling`).
    pub fn trace_sampling(&self) -> crate::telemetry::SamplingRatio {
        self.state.trace_sampling.clone()
    }

    /// The admin key created on this start because none existed; shown once, then gone.
    pub fn take_new_admin_key(&mut self) -> Option<String> {
        self.new_admin_key.take()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGTERM or SIGINT stop gracefully: requests in flight finish),
    /// then writes what is held in memory (request logs and usage, counters) and flushes the
    /// store, before returning.
    pub async fn run(self) -> std::io::Result<()> {
        // The metrics server ignores signals: it stops when the main server has.
        let metrics = self.metrics.map(|(server, _)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let result = self.server.await;
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            if let Ok(Err(e)) = task.await {
                tracing::warn!(error = %e, "the metrics server stopped with an error");
            }
        }
        // Batch lines in flight are answered and written before the log writer stops.
        self.state.batches.stop_within(self.grace).await;
        // The accountant's writer is a thread of its own: waiting for it blocks.
        let state = self.state.clone();
        let stopped = web::block(move || state.accountant.stop()).await;
        if let Err(e) = stopped {
            tracing::error!(error = %e, "could not stop the request log writer cleanly");
        }
        // The spans of the last requests: exported within the grace period, or given up.
        // The SDK's shutdown blocks until its batch task (on this runtime) has exported, so it
        // waits on the blocking pool while this thread keeps running that task.
        if self.state.telemetry.is_on() {
            let telemetry = self.state.telemetry.clone();
            let grace = self.grace;
            if web::block(move || telemetry.shutdown(grace)).await.is_err() {
                tracing::warn!("could not stop the trace exporter cleanly");
            }
        }
        match self.state.store.flush().await {
            Ok(()) => tracing::info!("stopped; the store is flushed"),
            Err(e) => tracing::error!(error = %e, "could not flush the store on shutdown"),
        }
        result
    }
}

/// The server on `--metrics-listen`: `/metrics` without a key, nothing else, one worker.
fn metrics_server(
    at: SocketAddr,
    state: web::Data<AppState>,
) -> Result<(Server, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind { addr: at, source };
    let listener = TcpListener::bind(at).map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(crate::http::security_headers::middleware))
            .configure(admin::providers::configure_open)
            .default_service(web::to(http::not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)
    .map_err(bind_error)?
    .run();
    tracing::info!(%addr, "serving /metrics without a key");
    Ok((server, addr))
}

/// What the start loaded, for the log.
fn log_loaded(snapshot: &Snapshot, sources: &Sources) {
    let config = &snapshot.config;
    for skipped in &config.skipped {
        tracing::info!(provider = %skipped.name, "provider skipped: {}", skipped.reason);
    }
    for p in &config.providers {
        let models: Vec<&str> = p.models.iter().map(|m| m.name.as_str()).collect();
        tracing::info!(provider = %p.name, kind = p.kind.as_str(), models = ?models, "provider loaded");
    }
    if config.providers.is_empty() {
        tracing::warn!(dir = %sources.providers_dir.display(), "no provider is enabled; every model request will be a 404");
    }
    tracing::info!(scripts = ?snapshot.policies.script_names(), "policies loaded");
    for hook in &snapshot.webhooks.hooks {
        let events: Vec<&str> = hook.events.iter().map(|e| e.as_str()).collect();
        tracing::info!(url = %hook.display_url(), events = ?events, "webhook loaded");
    }
}

/// Where budget crossings go: a log line, and a `budget.threshold` webhook event.
fn budget_sink(webhooks: crate::webhooks::Webhooks) -> crate::proxy::budget_alerts::Sink {
    use crate::proxy::budget_alerts::{log_sink, Crossing};
    use crate::store::counters::LimitKind;
    let log = log_sink();
    Box::new(move |c: &Crossing| {
        log(c);
        // Counter names of built-in limits are `key:<id>:<field>` or `team:<id>:<field>`.
        let mut parts = c.limit.name.splitn(3, ':');
        let (owner, id) = (parts.next(), parts.next());
        let unit = match c.limit.kind {
            LimitKind::MicroUsd => 1_000_000.0,
            _ => 1.0,
        };
        webhooks.emit(crate::webhooks::Event::BudgetThreshold {
            limit: c.limit.label().to_string(),
            percent: c.percent,
            used: c.used as f64 / unit,
            max: c.limit.max as f64 / unit,
            key_id: (owner == Some("key")).then(|| id.unwrap_or_default().to_string()),
            team: (owner == Some("team")).then(|| id.unwrap_or_default().to_string()),
        });
    })
}
