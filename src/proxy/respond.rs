//! Stage 6, respond: the reply's headers (who served, attempts, cache, variants, relayed
//! upstream rate limits), then its body: JSON whole, or the stream relayed event by event.
//! Each reply carries its settle work (stage 7), run when the JSON is built or the stream ends.

use super::cache;
use super::native::NativeDecoder;
use super::relay::{CutOff, OnFinish, Relay, StreamOutcome};
use super::settle::{Aftermath, Completed};
use super::shape::Shape;
use crate::policy::Decision;
use crate::providers::Reply;
use crate::store::counters::{LimitKind, Standing};
use crate::store::CachedReply;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use bytes::Bytes;

pub const PROVIDER_HEADER: &str = "x-switchboard-provider";
pub const MODEL_HEADER: &str = "x-switchboard-model";
pub const CACHE_HEADER: &str = "x-switchboard-cache";
pub const VARIANT_HEADER: &str = "x-switchboard-variant";
pub const ATTEMPTS_HEADER: &str = "x-switchboard-attempts";

/// What a served reply's headers say.
pub struct Served<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub decision: &'a Decision,
    /// `x-switchboard-cache`, when the policies cache this request.
    pub cache_label: Option<&'a str>,
    pub attempts: u32,
    /// How the request's limits stood once it was admitted.
    pub standing: &'a [Standing],
    /// The gateway's id for the request (translated replies are named after it).
    pub request_id: &'a str,
}

impl Served<'_> {
    fn decorate(&self, response: &mut HttpResponseBuilder) {
        response
            .insert_header((PROVIDER_HEADER, self.provider))
            .insert_header((MODEL_HEADER, self.model))
            .insert_header((ATTEMPTS_HEADER, self.attempts.to_string()));
        if let Some(label) = self.cache_label {
            response.insert_header((CACHE_HEADER, label));
        }
        if let Some(variants) = self.decision.variant_header() {
            response.insert_header((VARIANT_HEADER, variants));
        }
        for (kind, suffix) in [
            (LimitKind::Requests, "requests"),
            (LimitKind::Tokens, "tokens"),
        ] {
            if let Some(tightest) = tightest(self.standing, kind) {
                let reset = reset_text(tightest.reset_secs);
                response
                    .insert_header((
                        format!("x-ratelimit-limit-{suffix}"),
                        tightest.limit.max.to_string(),
                    ))
                    .insert_header((
                        format!("x-ratelimit-remaining-{suffix}"),
                        tightest.remaining.to_string(),
                    ))
                    .insert_header((format!("x-ratelimit-reset-{suffix}"), reset));
            }
        }
    }
}

/// The limit of this kind with the least left (the one that would refuse first).
fn tightest(standing: &[Standing], kind: LimitKind) -> Option<&Standing> {
    standing
        .iter()
        .filter(|s| s.limit.kind == kind)
        .min_by_key(|s| (s.remaining, s.reset_secs))
}

/// A reset time as OpenAI writes it: `1s`, `6m0s`, `1h2m3s`; `0s` for a limit that never
/// resets.
fn reset_text(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// A cache hit: replayed as JSON, or as chunks to a streaming client, in the client's API.
pub fn from_cache(
    hit: &CachedReply,
    headers: Served<'_>,
    stream: bool,
    client_wants_usage: bool,
    after: Aftermath,
    shape: &Shape,
) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    headers.decorate(&mut response);
    if stream {
        // Other APIs than OpenAI's always report usage at the end of a stream.
        let chunks = cache::as_chunks(hit, client_wants_usage || !shape.is_openai());
        let events = futures_util::stream::iter(chunks.into_iter().map(Ok));
        let relay = Relay::new(Box::pin(events), false, Some(on_stream_end(after))).encoder(
            guarded(shape.encoder(headers.model, &after_id(&headers)), &headers),
        );
        return sse(&mut response, relay);
    }
    let json = cache::as_json(hit);
    let guarded_json = match &headers.decision.output_guard {
        Some(g) => super::guarded::guard_json(&g.0, json.clone()),
        None => Ok(json.clone()),
    };
    let body = match guarded_json.map_err(|b| super::guarded::blocked_error(&b.0)) {
        Ok(guarded) => match shape.json(guarded) {
            Ok(body) => body,
            Err(e) => return shape.error(&e),
        },
        Err(blocked) => {
            let usage = crate::wire::usage_of(&json);
            after.finish(Completed::failed(422, usage, blocked.message.clone()));
            return shape.error(&blocked);
        }
    };
    let finish_reasons = if after.trace.is_recording() {
        super::relay::finish_reasons(&json)
    } else {
        Vec::new()
    };
    after.finish(Completed {
        status: 200,
        usage: crate::wire::usage_of(&json),
        text_bytes: 0,
        body: None,
        payloads: vec![],
        complete: true,
        error: None,
        first_token: None,
        finish_reasons,
    });
    response
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(body)
}

/// The id a translated reply is named after when the reply has none of its own.
fn after_id(headers: &Served<'_>) -> String {
    headers.request_id.to_string()
}

/// How much of a stream to keep for the cache and the request log, if anything.
pub struct Capture {
    pub wanted: bool,
    pub limit: usize,
}

/// An upstream's reply, in the client's API. `native`: the reply is the provider's own, in the
/// client's API already (an Anthropic provider's to a Messages client), and goes out as it came.
pub fn from_upstream(
    reply: Reply,
    headers: Served<'_>,
    client_wants_usage: bool,
    capture: Capture,
    after: Aftermath,
    shape: &Shape,
    native: bool,
) -> HttpResponse {
    let (mut response, relayed) = match &reply {
        Reply::Json {
            status, headers, ..
        } => (HttpResponse::build(*status), headers),
        Reply::Stream(_, headers) => (HttpResponse::build(StatusCode::OK), headers),
    };
    // The upstream's rate-limit headers first, so the gateway's own headers win on a clash.
    for (name, value) in relayed {
        response.insert_header((name.clone(), value.clone()));
    }
    headers.decorate(&mut response);
    match reply {
        Reply::Json {
            status,
            body,
            usage,
            ..
        } => {
            // Only read when the upstream reported no usage.
            let text_bytes = if usage.is_none() {
                super::estimate::streamed_text_bytes(&body)
            } else {
                0
            };
            // Kept for the cache, the log, and a mirrored request's comparison.
            let wanted =
                after.cache_put.is_some() || after.accountant.log_bodies || after.mirror.is_some();
            let finish_reasons = if after.trace.is_recording() {
                super::relay::finish_reasons(&body)
            } else {
                Vec::new()
            };
            // What is cached and logged is the OpenAI form, whatever the client gets.
            let (keep, body) = if native {
                let openai = wanted
                    .then(|| crate::providers::anthropic::response::chat_completion(&body).ok())
                    .flatten()
                    .map(|(v, _)| Bytes::from(v.to_string()));
                (openai, body)
            } else {
                let keep = wanted.then(|| body.clone());
                let guarded = match &headers.decision.output_guard {
                    Some(g) => super::guarded::guard_json(&g.0, body),
                    None => Ok(body),
                };
                let body = match guarded {
                    Ok(body) => body,
                    Err(b) => {
                        let blocked = super::guarded::blocked_error(&b.0);
                        after.finish(Completed {
                            text_bytes,
                            body: keep,
                            finish_reasons,
                            ..Completed::failed(422, usage, blocked.message.clone())
                        });
                        return shape.error(&blocked);
                    }
                };
                match shape.json(body) {
                    Ok(body) => (keep, body),
                    Err(e) => {
                        after.finish(Completed::failed(502, usage, e.message.clone()));
                        return shape.error(&e);
                    }
                }
            };
            after.finish(Completed {
                status: status.as_u16(),
                usage,
                text_bytes,
                body: keep,
                payloads: vec![],
                complete: true,
                error: None,
                first_token: None,
                finish_reasons,
            });
            response
                .insert_header((CONTENT_TYPE, "application/json"))
                .body(body)
        }
        Reply::Stream(events, _) => {
            let cut_off = after
                .hold
                .hard_cap(after.prompt_estimate, after.pricing)
                .map(|(budget, allowed_tokens)| CutOff {
                    budget,
                    allowed_tokens,
                    prompt_tokens: after.prompt_estimate,
                });
            let provider = headers.provider.to_string();
            let finish_reasons = after.trace.is_recording();
            let relay = Relay::new(
                events,
                !client_wants_usage && shape.is_openai(),
                Some(on_stream_end(after)),
            )
            .cut_off(cut_off)
            .finish_reasons(finish_reasons)
            .encoder(guarded(
                shape.encoder(headers.model, &after_id(&headers)),
                &headers,
            ));
            let relay = if native {
                relay.native(NativeDecoder::anthropic(&provider, headers.model))
            } else {
                relay
            };
            let relay = if capture.wanted {
                relay.capture(capture.limit)
            } else {
                relay
            };
            sse(&mut response, relay)
        }
    }
}

fn sse(response: &mut HttpResponseBuilder, relay: Relay) -> HttpResponse {
    response
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(relay)
}

/// The client's encoder, behind the request's output guard if a policy declared one.
fn guarded(
    encoder: Box<dyn crate::inbound::StreamEncoder>,
    headers: &Served<'_>,
) -> Box<dyn crate::inbound::StreamEncoder> {
    match &headers.decision.output_guard {
        Some(g) => Box::new(super::guarded::GuardedEncoder::new(encoder, g.0.clone())),
        None => encoder,
    }
}

/// A stream settles when it ends, however it ends.
fn on_stream_end(after: Aftermath) -> OnFinish {
    Box::new(move |outcome: StreamOutcome| {
        let complete = outcome.error.is_none() && !outcome.client_gone;
        let status = match (&outcome.cut_for, &outcome.error) {
            (Some(_), _) => 429,
            (None, Some(_)) if outcome.blocked => 422,
            (None, Some(_)) => 502,
            (None, None) => 200,
        };
        after.finish(Completed {
            status,
            usage: outcome.usage,
            text_bytes: outcome.text_bytes,
            body: None,
            payloads: outcome.payloads,
            complete,
            error: outcome.error,
            first_token: outcome.first_token,
            finish_reasons: outcome.finish_reasons,
        })
    })
}
