//! Which requests are traced: the client's decision when its `traceparent` says sampled,
//! otherwise a ratio of trace ids that can be changed while the gateway runs.

use opentelemetry::trace::{
    Link, SamplingDecision, SamplingResult, SpanKind, TraceContextExt, TraceId,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::ShouldSample;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A sampling ratio outside 0..=1 (or not a number).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("the trace sampling ratio must be between 0 and 1, not {0}")]
pub struct BadRatio(pub f64);

/// The share of requests traced, changeable at run time (`AppState::trace_sampling`): a
/// settings reload calls `set_sampling_ratio`, and the next request sees it. The ratio is an
/// `f64`'s bits in an atomic, so reading it costs a load and no lock.
#[derive(Clone, Debug)]
pub struct SamplingRatio(Arc<AtomicU64>);

impl SamplingRatio {
    pub fn new(ratio: f64) -> Result<Self, BadRatio> {
        check(ratio)?;
        Ok(SamplingRatio(Arc::new(AtomicU64::new(ratio.to_bits()))))
    }

    /// Sets the ratio for requests from now on; out of 0..=1 is refused and changes nothing.
    pub fn set_sampling_ratio(&self, ratio: f64) -> Result<(), BadRatio> {
        check(ratio)?;
        self.0.store(ratio.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl Default for SamplingRatio {
    fn default() -> Self {
        SamplingRatio(Arc::new(AtomicU64::new(1.0f64.to_bits())))
    }
}

pub fn check(ratio: f64) -> Result<f64, BadRatio> {
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(BadRatio(ratio))
    }
}

/// Parent-based with a live ratio. A span whose parent is the gateway's own (a stage or an
/// attempt under the request's span) follows its parent either way, so a trace is never cut
/// in two by a ratio changed mid-request. A client's sampled `traceparent` is followed: the
/// client asked for this trace. A client's unsampled one, or none, leaves it to the ratio,
/// by trace id (the SDK's `TraceIdRatioBased` rule, so every service sampling by ratio agrees
/// on the same trace).
#[derive(Clone, Debug)]
pub struct RatioSampler {
    pub ratio: SamplingRatio,
}

impl ShouldSample for RatioSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context
            .filter(|cx| cx.has_active_span())
            .map(|cx| cx.span().span_context().clone());
        let decision = match &parent {
            Some(p) if p.is_valid() && (p.is_sampled() || !p.is_remote()) => {
                if p.is_sampled() {
                    SamplingDecision::RecordAndSample
                } else {
                    SamplingDecision::Drop
                }
            }
            _ => by_ratio(self.ratio.get(), trace_id),
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: parent.map(|p| p.trace_state().clone()).unwrap_or_default(),
        }
    }
}

/// The ratio rule: the trace id's low 63 bits below `ratio` of their range.
fn by_ratio(ratio: f64, trace_id: TraceId) -> SamplingDecision {
    if ratio >= 1.0 {
        return SamplingDecision::RecordAndSample;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    if (u64::from_be_bytes(low) >> 1) < bound {
        SamplingDecision::RecordAndSample
    } else {
        SamplingDecision::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};

    fn sample(sampler: &RatioSampler, parent: Option<SpanContext>, id: u128) -> bool {
        let cx = parent.map(|p| Context::new().with_remote_span_context(p));
        let result = sampler.should_sample(
            cx.as_ref(),
            TraceId::from(id),
            "x",
            &SpanKind::Server,
            &[],
            &[],
        );
        result.decision == SamplingDecision::RecordAndSample
    }

    fn remote(sampled: bool) -> SpanContext {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(9u64),
            flags,
            true,
            TraceState::default(),
        )
    }

    #[test]
    fn follows_a_sampled_client_and_the_ratio_otherwise_which_can_change() {
        let sampler = RatioSampler {
            ratio: SamplingRatio::new(0.0).unwrap(),
        };
        assert!(sample(&sampler, Some(remote(true)), 1));
        assert!(!sample(&sampler, Some(remote(false)), 1));
        assert!(!sample(&sampler, None, u128::MAX));
        sampler.ratio.set_sampling_ratio(1.0).unwrap();
        assert!(sample(&sampler, None, u128::MAX));
        assert!(sample(&sampler, Some(remote(false)), 1));
        sampler.ratio.set_sampling_ratio(0.5).unwrap();
        // Low 64 bits 0 sit below any ratio above 0; all ones above any below 1.
        assert!(sample(&sampler, None, 0));
        assert!(!sample(&sampler, None, u128::MAX));
    }

    #[test]
    fn a_ratio_outside_0_to_1_is_refused_and_changes_nothing() {
        let ratio = SamplingRatio::new(0.25).unwrap();
        assert_eq!(ratio.set_sampling_ratio(1.5), Err(BadRatio(1.5)));
        assert!(ratio.set_sampling_ratio(f64::NAN).is_err());
        assert!(SamplingRatio::new(-0.1).is_err());
        assert_eq!(ratio.get(), 0.25);
    }
}
