//! OpenTelemetry traces: OTLP over HTTP/protobuf to `--otlp-endpoint`, off by default.
//!
//! `sampler.rs` decides which requests are traced (a ratio changeable at run time),
//! `spans.rs` makes a request's spans and the trace headers sent upstream, `export.rs`
//! bounds what waits for the collector and counts what never reaches it. With no endpoint
//! there is no tracer at all: `Telemetry::request` then only looks for a client's
//! `traceparent` to pass on.

pub mod export;
pub mod sampler;
pub mod spans;

pub use sampler::{BadRatio, SamplingRatio};
pub use spans::{gen_ai_system, Attempt, RequestTrace, StageSpan, TraceHeaders};

use crate::metrics::Metrics;
use actix_web::http::header::HeaderMap;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, SdkTracer, SdkTracerProvider};
use std::sync::Arc;
use std::time::Duration;

/// Where and how traces are exported (`--otlp-*`).
#[derive(Clone)]
pub struct OtlpSettings {
    /// The collector's OTLP/HTTP address: a base (`http://collector:4318`, to which
    /// `/v1/traces` is added) or the full traces URL (any other path is used as given).
    pub endpoint: String,
    /// The share of requests traced when the client did not decide (0..=1).
    pub sampling_ratio: f64,
    /// Headers sent with every export (an API key for a hosted collector): secrets, never
    /// logged or shown.
    pub headers: Vec<(String, String)>,
    pub service_name: String,
    /// Spans waiting for (or in) an export; past it, new spans are dropped and counted.
    pub max_queue: usize,
    /// How often a batch leaves, at most.
    pub batch_delay: Duration,
    /// How long one export may take before its batch is given up (and counted as dropped).
    pub export_timeout: Duration,
}

impl OtlpSettings {
    pub const DEFAULT_SERVICE_NAME: &'static str = "switchboard";
    pub const DEFAULT_MAX_QUEUE: usize = 2048;
    pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_secs(5);
    pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(endpoint: impl Into<String>) -> Self {
        OtlpSettings {
            endpoint: endpoint.into(),
            sampling_ratio: 1.0,
            headers: Vec::new(),
            service_name: Self::DEFAULT_SERVICE_NAME.into(),
            max_queue: Self::DEFAULT_MAX_QUEUE,
            batch_delay: Self::DEFAULT_BATCH_DELAY,
            export_timeout: Self::DEFAULT_EXPORT_TIMEOUT,
        }
    }

    /// The traces URL: `/v1/traces` added to a bare base.
    fn traces_url(&self) -> Result<String, TelemetryError> {
        // The parse error names what is wrong, never the text.
        let mut url = url::Url::parse(&self.endpoint).map_err(|e| TelemetryError::Endpoint {
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TelemetryError::Endpoint {
                reason: format!("the scheme must be http or https, not {}", url.scheme()),
            });
        }
        if url.path().is_empty() || url.path() == "/" {
            url.set_path("/v1/traces");
        }
        Ok(url.to_string())
    }

    /// The endpoint for logs and `Debug`: a user or password in the URL is left out.
    pub fn display_endpoint(&self) -> String {
        match url::Url::parse(&self.endpoint) {
            Ok(url) => crate::url_credentials::without_credentials(url.as_str())
                .unwrap_or_else(|| url.to_string()),
            Err(_) => "<not a URL>".into(),
        }
    }

    /// Every setting checked, so a typo stops the start with a clear message.
    pub fn check(&self) -> Result<(), TelemetryError> {
        sampler::check(self.sampling_ratio)?;
        self.traces_url()?;
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(TelemetryError::HeaderName { name: name.clone() });
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                // The value is a secret: the message names the header only.
                return Err(TelemetryError::HeaderValue { name: name.clone() });
            }
        }
        if self.service_name.trim().is_empty() {
            return Err(TelemetryError::ServiceName);
        }
        if self.max_queue == 0 {
            return Err(TelemetryError::Queue);
        }
        Ok(())
    }

    /// `NAME=VALUE` as given to `--otlp-header` (and comma-separated in the environment).
    pub fn parse_header(text: &str) -> Result<(String, String), TelemetryError> {
        match text.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok((name.trim().to_string(), value.trim().to_string()))
            }
            // No value to leak here: without `=` the text is taken as a name.
            _ => Err(TelemetryError::HeaderSyntax),
        }
    }
}

impl std::fmt::Debug for OtlpSettings {
    // Hand-written: header values are secrets (the names are kept), and so is a password in
    // the endpoint's URL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OtlpSettings")
            .field("endpoint", &self.display_endpoint())
            .field("sampling_ratio", &self.sampling_ratio)
            .field("headers", &names)
            .field("service_name", &self.service_name)
            .field("max_queue", &self.max_queue)
            .field("batch_delay", &self.batch_delay)
            .field("export_timeout", &self.export_timeout)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("--otlp-sampling-ratio: {0}")]
    Ratio(#[from] BadRatio),
    #[error("--otlp-endpoint is not an http(s) URL: {reason}")]
    Endpoint { reason: String },
    #[error("--otlp-header: `{name}` is not a valid header name")]
    HeaderName { name: String },
    #[error("--otlp-header: the value of `{name}` is not a valid header value")]
    HeaderValue { name: String },
    #[error("--otlp-header must be NAME=VALUE")]
    HeaderSyntax,
    #[error("--otlp-service-name must not be empty")]
    ServiceName,
    #[error("the OTLP span queue must hold at least one span")]
    Queue,
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// The tracer, or nothing when tracing is off. In `AppState`; clones share it.
#[derive(Clone, Default)]
pub struct Telemetry {
    active: Option<Arc<Active>>,
}

struct Active {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Telemetry {
    /// Tracing off: every request's trace is empty.
    pub fn off() -> Self {
        Telemetry::default()
    }

    /// Builds the exporter and the batch processor (whose task runs on the current tokio
    /// runtime). Nothing is sent until a span ends: an unreachable collector does not stop the
    /// start, it only costs the spans.
    pub fn start(
        settings: &OtlpSettings,
        sampling: SamplingRatio,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TelemetryError> {
        settings.check()?;
        sampling.set_sampling_ratio(settings.sampling_ratio)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(settings.traces_url()?)
            .with_timeout(settings.export_timeout)
            .with_headers(settings.headers.iter().cloned().collect())
            .build()
            // The builder's errors name settings, not header values.
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let accounting = export::Accounting::new(metrics);
        let batch = BatchSpanProcessor::builder(
            export::Counting {
                inner: exporter,
                accounting: accounting.clone(),
            },
            Tokio,
        )
        .with_batch_config(
            BatchConfigBuilder::default()
                // Above the gateway's own bound, so the SDK's queue (which its flush and
                // shutdown messages share) never drops uncounted.
                .with_max_queue_size(settings.max_queue + 64)
                .with_max_export_batch_size(settings.max_queue.min(512))
                .with_scheduled_delay(settings.batch_delay)
                .build(),
        )
        .build();
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler::RatioSampler { ratio: sampling })
            .with_span_processor(export::Bounded {
                inner: Arc::new(batch),
                max_queue: settings.max_queue,
                accounting,
            })
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("switchboard");
        Ok(Telemetry {
            active: Some(Arc::new(Active { provider, tracer })),
        })
    }

    pub fn is_on(&self) -> bool {
        self.active.is_some()
    }

    /// The request's trace: a SERVER span named `name` (with `attributes`, built only when it
    /// is sampled), or, with tracing off, the client's trace headers to pass on.
    pub fn request(
        &self,
        headers: &HeaderMap,
        name: impl FnOnce() -> String,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> RequestTrace {
        match &self.active {
            Some(active) => RequestTrace::start(&active.tracer, headers, name(), attributes()),
            None => RequestTrace::untraced(headers),
        }
    }

    /// Exports what is queued and stops, within `timeout`. Blocks: call it off the async
    /// workers (the batch task needs its runtime to run meanwhile).
    pub fn shutdown(&self, timeout: Duration) {
        let Some(active) = &self.active else { return };
        match active.provider.shutdown_with_timeout(timeout) {
            Ok(()) => tracing::info!("traces exported and the exporter stopped"),
            Err(e) => tracing::warn!(error = %e, "the trace exporter did not stop cleanly"),
        }
    }
}
