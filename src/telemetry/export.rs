//! Spans leave in batches, off the request path, and every span that never reaches the
//! collector is counted (`switchboard_otel_spans_dropped_total`).
//!
//! The SDK's batch processor drops a span when its queue is full, and an exporter's failed
//! batch is gone, but it keeps both counts to itself (a log line at shutdown). So the gateway
//! keeps its own: `Bounded` admits a span only while fewer than `max_queue` are waiting or
//! being exported (the SDK's queue is sized above that, so it never drops on its own), and
//! `Counting` wraps the exporter to give the places back and count a batch that failed, timed
//! out or was cancelled as dropped.

use crate::metrics::Metrics;
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Spans admitted and not yet exported (or dropped), shared by the processor and exporter.
#[derive(Clone)]
pub struct Accounting {
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Accounting {
    // The SDK wants its processors and exporters `Debug`; the metrics have nothing to show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounting")
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish()
    }
}

impl Accounting {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Accounting {
            in_flight: Arc::new(AtomicUsize::new(0)),
            metrics,
        }
    }

    fn settled(&self, spans: usize, exported: bool) {
        self.in_flight.fetch_sub(spans, Ordering::Relaxed);
        if !exported {
            self.metrics.otel_spans_dropped(spans as u64);
        }
    }
}

/// The span processor in front of the SDK's batch processor: the bound and the count.
#[derive(Debug)]
pub struct Bounded<P> {
    pub inner: Arc<P>,
    pub max_queue: usize,
    pub accounting: Accounting,
}

impl<P: SpanProcessor + 'static> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let waiting = self.accounting.in_flight.fetch_add(1, Ordering::Relaxed);
        if waiting >= self.max_queue {
            // The collector is behind (or away): this span is dropped here, at no cost to the
            // request that ended it.
            self.accounting.settled(1, false);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    /// The SDK's shutdown blocks until the last batch is exported, which needs the runtime
    /// the batch task runs on. Waited for on a thread of its own with a bound, so a caller on
    /// that runtime's thread (a drop at the end of a test) waits `timeout` at worst instead
    /// of forever.
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let inner = self.inner.clone();
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".into())
            .spawn(move || {
                let _ = done.send(inner.shutdown_with_timeout(timeout));
            });
        if let Err(e) = spawned {
            return Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                e.to_string(),
            ));
        }
        match wait.recv_timeout(timeout) {
            Ok(result) => result,
            Err(_) => Err(opentelemetry_sdk::error::OTelSdkError::Timeout(timeout)),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// The exporter behind the batch processor: whatever becomes of a batch, its spans leave the
/// bound; unless the export succeeded, they are counted as dropped. A batch whose export is
/// cancelled (the processor's export timeout drops the future) is counted by `Settle`'s drop.
#[derive(Debug)]
pub struct Counting<E> {
    pub inner: E,
    pub accounting: Accounting,
}

struct Settle<'a> {
    accounting: &'a Accounting,
    spans: usize,
    exported: bool,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        self.accounting.settled(self.spans, self.exported);
    }
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut settle = Settle {
            accounting: &self.accounting,
            spans: batch.len(),
            exported: false,
        };
        let result = self.inner.export(batch).await;
        settle.exported = result.is_ok();
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
