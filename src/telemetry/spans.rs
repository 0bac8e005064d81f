//! A request's spans: the SERVER span the whole request lives in (from arrival to settle, so
//! a stream's span ends with the stream), INTERNAL spans for the stages worth seeing (policy,
//! cache lookup) and a CLIENT span per upstream attempt, whose context goes upstream as
//! `traceparent`/`tracestate`.
//!
//! With tracing off every value here is empty: no span, no allocation, and the only work is
//! looking for a client's `traceparent`, which is passed upstream unchanged (see
//! `RequestTrace::untraced`).

use actix_web::http::header::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};

/// Attribute names: the OpenTelemetry GenAI and HTTP semantic conventions, and the gateway's.
pub mod attr {
    pub const OPERATION: &str = "gen_ai.operation.name";
    pub const SYSTEM: &str = "gen_ai.system";
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
    pub const HTTP_METHOD: &str = "http.request.method";
    pub const HTTP_ROUTE: &str = "http.route";
    pub const HTTP_STATUS: &str = "http.response.status_code";
    pub const ERROR_TYPE: &str = "error.type";
    pub const PROVIDER: &str = "switchboard.provider";
    pub const CACHE: &str = "switchboard.cache";
    pub const VARIANT: &str = "switchboard.variant";
    pub const ATTEMPT: &str = "switchboard.attempt";
    pub const ATTEMPT_OUTCOME: &str = "switchboard.attempt.outcome";
    pub const ATTEMPT_THEN: &str = "switchboard.attempt.then";
    pub const ATTEMPTS: &str = "switchboard.attempts";
    pub const KEY_ID: &str = "switchboard.key_id";
    pub const COST_USD: &str = "switchboard.cost_usd";
    pub const REQUEST_ID: &str = "switchboard.request_id";
    pub const USAGE_ESTIMATED: &str = "switchboard.usage_estimated";
}

/// `gen_ai.operation.name` for an endpoint's path below `/v1/` (Messages and Responses
/// requests run as chat).
pub fn operation(endpoint: &str) -> &'static str {
    match endpoint {
        "completions" => "text_completion",
        "embeddings" => "embeddings",
        _ => "chat",
    }
}

/// `gen_ai.system` for a provider kind (`ProviderKind::as_str`): the convention's well-known
/// values, `_OTHER` for the offline mock.
pub fn gen_ai_system(kind: &str) -> &'static str {
    match kind {
        "openai" => "openai",
        "azure" => "azure.ai.openai",
        "anthropic" => "anthropic",
        "gemini" => "gcp.gemini",
        _ => "_OTHER",
    }
}

/// The W3C headers, the only ones read from clients and written upstream.
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
/// A `tracestate` longer than this is not passed on (the W3C limit is 32 members; 512 bytes
/// is what a vendor must at least propagate).
const MAX_TRACESTATE: usize = 512;

/// Headers for an upstream call: `traceparent` and, when there is one, `tracestate`.
pub type TraceHeaders = Vec<(&'static str, String)>;

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct Collect(TraceHeaders);

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        let name = match key {
            TRACEPARENT => TRACEPARENT,
            TRACESTATE => TRACESTATE,
            _ => return,
        };
        if !value.is_empty() {
            self.0.push((name, value));
        }
    }
}

/// The client's trace context, when it sent a well-formed `traceparent`.
fn client_context(headers: &HeaderMap) -> Option<Context> {
    headers.get(TRACEPARENT)?;
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// One proxied request's trace. Cheap to clone (the span lives behind the context's `Arc`).
#[derive(Clone, Default)]
pub struct RequestTrace {
    /// Tracing on: the tracer, and the context holding the request's SERVER span.
    traced: Option<(SdkTracer, Context)>,
    /// Tracing off: the client's own trace headers, passed upstream as they came.
    passthrough: TraceHeaders,
    /// The trace this request belongs to, for the request log: the client's, or the
    /// gateway's own when it sampled the request.
    trace_id: Option<String>,
}

impl RequestTrace {
    /// Starts the request's SERVER span, a child of the client's `traceparent` if it sent one.
    pub(super) fn start(
        tracer: &SdkTracer,
        headers: &HeaderMap,
        name: String,
        attributes: Vec<KeyValue>,
    ) -> Self {
        let parent = client_context(headers);
        let from_client = parent.is_some();
        let parent = parent.unwrap_or_default();
        let span = tracer.build_with_context(
            tracer
                .span_builder(name)
                .with_kind(SpanKind::Server)
                .with_attributes(attributes),
            &parent,
        );
        let context = span.span_context().clone();
        let trace_id =
            (from_client || context.is_sampled()).then(|| context.trace_id().to_string());
        RequestTrace {
            traced: Some((tracer.clone(), parent.with_span(span))),
            passthrough: Vec::new(),
            trace_id,
        }
    }

    /// Tracing off. A gateway that does not trace is no participant in the client's trace,
    /// but it should not break it either: a well-formed `traceparent` (and its `tracestate`,
    /// if not oversized) goes upstream exactly as it came, so an upstream that traces joins
    /// the client's trace, as it would without a gateway in between.
    pub fn untraced(headers: &HeaderMap) -> Self {
        let Some(cx) = client_context(headers) else {
            return RequestTrace::default();
        };
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let mut passthrough = Vec::with_capacity(2);
        if let Some(parent) = text(TRACEPARENT) {
            passthrough.push((TRACEPARENT, parent.to_string()));
        }
        if let Some(state) = text(TRACESTATE).filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE)
        {
            passthrough.push((TRACESTATE, state.to_string()));
        }
        RequestTrace {
            traced: None,
            passthrough,
            trace_id: Some(cx.span().span_context().trace_id().to_string()),
        }
    }

    /// The trace id for the request log, if the request is part of a trace someone can find.
    pub fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    /// Whether the request's span records: only then are attributes worth building.
    pub fn is_recording(&self) -> bool {
        self.traced
            .as_ref()
            .is_some_and(|(_, cx)| cx.span().is_recording())
    }

    /// Adds attributes to the request's span; `attributes` runs only when it records.
    pub fn set(&self, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if let Some((_, cx)) = self.traced.as_ref().filter(|_| self.is_recording()) {
            cx.span().set_attributes(attributes());
        }
    }

    /// A child span (INTERNAL) for a stage.
    pub fn stage(&self, name: &'static str) -> StageSpan {
        StageSpan(self.child(name.into(), SpanKind::Internal, Vec::new))
    }

    /// A CLIENT span for one upstream attempt, and the headers that carry it upstream.
    pub fn attempt(
        &self,
        name: impl FnOnce() -> String,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Attempt {
        let Some((tracer, parent)) = &self.traced else {
            return Attempt {
                span: StageSpan(None),
                headers: self.passthrough.clone(),
            };
        };
        let attributes = if parent.span().is_recording() {
            attributes()
        } else {
            Vec::new()
        };
        let span = tracer.build_with_context(
            tracer
                .span_builder(name())
                .with_kind(SpanKind::Client)
                .with_attributes(attributes),
            parent,
        );
        // Even an unsampled span's context goes upstream (flag 00), as W3C asks.
        let mut collect = Collect(Vec::with_capacity(2));
        TraceContextPropagator::new().inject_context(
            &parent.with_remote_span_context(span.span_context().clone()),
            &mut collect,
        );
        Attempt {
            span: StageSpan(Some(span)),
            headers: collect.0,
        }
    }

    fn child(
        &self,
        name: std::borrow::Cow<'static, str>,
        kind: SpanKind,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Option<Span> {
        let (tracer, parent) = self.traced.as_ref()?;
        let attributes = if parent.span().is_recording() {
            attributes()
        } else {
            Vec::new()
        };
        Some(
            tracer.build_with_context(
                tracer
                    .span_builder(name)
                    .with_kind(kind)
                    .with_attributes(attributes),
                parent,
            ),
        )
    }

    /// Ends the request's span with its HTTP status. A 5xx (a stream that broke is a 502)
    /// marks it failed, with `error` as the status message; a 4xx is the client's error, not
    /// the server's, so, as the HTTP conventions have it, it only gets `error.type`.
    pub fn end(&self, status: u16, error: Option<&str>) {
        let Some((_, cx)) = &self.traced else { return };
        let span = cx.span();
        if span.is_recording() {
            span.set_attribute(KeyValue::new(attr::HTTP_STATUS, status as i64));
            if status >= 400 {
                span.set_attribute(KeyValue::new(attr::ERROR_TYPE, status.to_string()));
            }
            if status >= 500 {
                span.set_status(Status::error(error.unwrap_or_default().to_string()));
            }
        }
        span.end();
    }
}

/// A child span; ends when dropped if not before. Empty when tracing is off.
pub struct StageSpan(Option<Span>);

impl StageSpan {
    pub fn is_recording(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.is_recording())
    }

    pub fn set(&mut self, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if let Some(span) = self.0.as_mut().filter(|s| s.is_recording()) {
            span.set_attributes(attributes());
        }
    }

    /// Marks the span failed, with a message safe to export (no prompt, no key).
    pub fn fail(&mut self, message: impl Into<String>) {
        if let Some(span) = self.0.as_mut().filter(|s| s.is_recording()) {
            span.set_status(Status::error(message.into()));
        }
    }

    pub fn end(mut self) {
        if let Some(span) = self.0.as_mut() {
            span.end();
        }
    }
}

/// One upstream attempt's span, and the trace headers its call carries.
pub struct Attempt {
    pub span: StageSpan,
    pub headers: TraceHeaders,
}
