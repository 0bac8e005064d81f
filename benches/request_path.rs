//! Per-request pieces: parsing a chat request, running the shipped policies (together, each
//! alone, and an empty hook for the fixed cost of a call), encoding the upstream body (copying
//! the client's fields, with one changed, and from values alone), and admission against a
//! key's limits; and what a Messages or Responses client costs on top: translating its request
//! into the chat form, and its reply (JSON, and a 200-chunk stream) back; and what tracing
//! costs a request, off and on (sampled); and what an output guard adds to a stream.
//! Run with `cargo bench --bench request_path`.

// A benchmark, not the gateway: a failed setup should stop it at once.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use switchboard::policy::{engine, PolicyEnv, PolicySet};
use switchboard::store::{KeyRecord, Role, Store};
use switchboard::wire::{ChatRequest, RequestBody, Typed};

/// The binary's allocator, so the figures are the gateway's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CHAT: &[u8] = br#"{"model":"echo","temperature":0,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the capital of France?"},{"role":"assistant","content":"Paris."},{"role":"user","content":"And of Italy?"}],"max_tokens":256,"stream":false}"#;

fn key() -> Arc<KeyRecord> {
    Arc::new(KeyRecord {
        id: "key_bench".into(),
        name: "bench".into(),
        role: Role::User,
        masked: String::new(),
        created_at: 0,
        models: vec![],
        tags: BTreeMap::from([("team".to_string(), "search".to_string())]),
        revoked_at: None,
        expires_at: None,
        metadata: Default::default(),
        limits: Default::default(),
        team: None,
    })
}

fn benches(c: &mut Criterion) {
    c.bench_function("parse chat request", |b| {
        b.iter(|| serde_json::from_slice::<ChatRequest>(black_box(CHAT)).unwrap())
    });
    // What the proxy does: the parse above, plus the scan that keeps each field's bytes.
    c.bench_function("parse chat request, keeping its bytes", |b| {
        b.iter(|| {
            let bytes = Bytes::from_static(black_box(CHAT));
            let typed = Typed::Chat(serde_json::from_slice(&bytes).unwrap());
            RequestBody::with_original(typed, bytes)
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let engine = Arc::new(engine::build(switchboard::Settings::DEFAULT_BODY_LIMIT));
    let env = PolicyEnv {
        counters: store.counters.clone(),
        assignments: store.assignments.clone(),
        simulate: false,
        providers: None,
        client_ip: None,
        batch_id: None,
    };
    let request: ChatRequest = serde_json::from_slice(CHAT).unwrap();
    let kept = RequestBody::with_original(Typed::Chat(request.clone()), Bytes::from_static(CHAT));
    let key = key();
    let mut bench_policies = |name: &str, dir: &Path| {
        let policies = PolicySet::load_dir(engine.clone(), dir, false).unwrap();
        c.bench_function(name, |b| {
            b.iter_batched(
                || kept.clone(),
                |body| {
                    policies
                        .on_request(body, key.clone(), Vec::new(), env.clone())
                        .unwrap()
                },
                criterion::BatchSize::SmallInput,
            )
        });
    };
    bench_policies("shipped policies on_request", &shipped);

    // Each shipped script alone, to see where the chain's time goes.
    for script in ["10-aliases", "20-cache", "30-canary", "40-quotas"] {
        let one = tempfile::tempdir().unwrap();
        let file = format!("{script}.rhai");
        std::fs::copy(shipped.join(&file), one.path().join(&file)).unwrap();
        bench_policies(&format!("policy {script}"), one.path());
    }
    // The fixed cost of a hook call.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(
        empty.path().join("empty.rhai"),
        "fn on_request(req, ctx) {}",
    )
    .unwrap();
    bench_policies("policy: one empty on_request", empty.path());

    c.bench_function("upstream body encoding", |b| {
        b.iter(|| kept.to_upstream_json(black_box("echo")).unwrap())
    });
    let mut changed = kept.clone();
    changed.set_param("temperature", serde_json::json!(0.2));
    c.bench_function("upstream body encoding, one field changed", |b| {
        b.iter(|| changed.to_upstream_json(black_box("echo")).unwrap())
    });
    let from_values = RequestBody::from(request.clone());
    c.bench_function("upstream body encoding from values", |b| {
        b.iter(|| from_values.to_upstream_json(black_box("echo")).unwrap())
    });
}

/// Admission as the admit and settle stages do it for a key with a request limit, a token
/// budget and a cost budget: estimate, reserve all three, settle with real usage.
fn admission(c: &mut Criterion) {
    use switchboard::store::counters::{Actual, Limit, LimitKind};
    let store = Store::memory();
    let body = RequestBody::with_original(
        Typed::Chat(serde_json::from_slice::<ChatRequest>(CHAT).unwrap()),
        Bytes::from_static(CHAT),
    );
    let limits = [
        Limit::new("key:k:rpm", u64::MAX, 60, LimitKind::Requests),
        Limit::new("key:k:tpd", u64::MAX, 86_400, LimitKind::Tokens),
        Limit::new("key:k:usd", u64::MAX, u64::MAX, LimitKind::MicroUsd),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    c.bench_function("admission: estimate, reserve 3 limits, settle", |b| {
        b.iter(|| {
            let prompt = switchboard::proxy::estimate::prompt_tokens(black_box(&body));
            let completion = switchboard::proxy::estimate::completion_tokens(&body);
            let held: Vec<(Limit, u64)> = limits
                .iter()
                .map(|l| (l.clone(), prompt + completion))
                .collect();
            runtime.block_on(async {
                let r = store.counters.reserve(&held).await.unwrap();
                let actual = Actual {
                    tokens: prompt,
                    micro_usd: 10,
                };
                store.counters.settle(&r, actual).await.unwrap();
            });
        })
    });
}

const MESSAGES: &[u8] = br#"{"model":"echo","max_tokens":256,"system":[{"type":"text","text":"You are a helpful assistant.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"What is the capital of France?"},{"role":"assistant","content":[{"type":"text","text":"Paris."}]},{"role":"user","content":"And of Italy?"}],"tools":[{"name":"lookup","description":"Look up","input_schema":{"type":"object","properties":{"q":{"type":"string"}}}}]}"#;
const RESPONSES: &[u8] = br#"{"model":"echo","instructions":"You are a helpful assistant.","input":[{"role":"user","content":"What is the capital of France?"},{"role":"assistant","content":"Paris."},{"role":"user","content":"And of Italy?"}],"max_output_tokens":256,"tools":[{"type":"function","name":"lookup","parameters":{"type":"object"}}]}"#;
const COMPLETION: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"echo","choices":[{"index":0,"message":{"role":"assistant","content":"Rome is the capital of Italy."},"finish_reason":"stop"}],"usage":{"prompt_tokens":40,"completion_tokens":8,"total_tokens":48}}"#;

/// 200 text chunks, then the finish and usage chunks, as a provider streams them.
fn chunks() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..200)
        .map(|i| format!(r#"{{"id":"c","object":"chat.completion.chunk","created":1,"model":"echo","choices":[{{"index":0,"delta":{{"content":"word{i} "}},"finish_reason":null}}]}}"#).into_bytes())
        .collect();
    out.push(br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"echo","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.to_vec());
    out.push(br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"echo","choices":[],"usage":{"prompt_tokens":40,"completion_tokens":200,"total_tokens":240}}"#.to_vec());
    out
}

fn translation(c: &mut Criterion) {
    use switchboard::inbound::{messages, responses, OpenAiEncoder, StreamEncoder};
    c.bench_function("messages request -> chat form", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(MESSAGES)).unwrap();
            messages::request::to_chat(&v).unwrap()
        })
    });
    c.bench_function("responses request -> chat form", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(RESPONSES)).unwrap();
            responses::request::to_chat(&v, &[]).unwrap()
        })
    });
    let meta = responses::reply::Meta {
        id: "resp_1".into(),
        created_at: 1,
        request: serde_json::from_slice(RESPONSES).unwrap(),
    };
    c.bench_function("chat completion -> message", |b| {
        b.iter(|| messages::reply::from_chat(black_box(COMPLETION)).unwrap())
    });
    c.bench_function("chat completion -> response object", |b| {
        b.iter(|| responses::reply::from_chat(&meta, black_box(COMPLETION)).unwrap())
    });
    let stream = chunks();
    let mut encode = |name: &str, make: &dyn Fn() -> Box<dyn StreamEncoder>| {
        c.bench_function(name, |b| {
            b.iter(|| {
                let mut encoder = make();
                let mut out = bytes::BytesMut::new();
                for chunk in &stream {
                    encoder.chunk(black_box(chunk), &mut out);
                }
                encoder.done(&mut out);
                out.len()
            })
        });
    };
    encode("stream of 202 chunks: openai (framing only)", &|| {
        Box::new(OpenAiEncoder)
    });
    encode("stream of 202 chunks: -> messages events", &|| {
        Box::new(messages::stream::MessagesEncoder::new(
            "msg_1".into(),
            "echo".into(),
        ))
    });
    encode("stream of 202 chunks: -> responses events", &|| {
        Box::new(responses::stream::ResponsesEncoder::new(meta.clone(), None))
    });
}

/// A request's trace as the pipeline makes it: the server span, the policy stage, one attempt
/// (with its `traceparent`), the usage, the end. Off, it is a header lookup; on, the spans are
/// built and queued (the exporter sends them to a closed port, off the measured thread).
fn tracing(c: &mut Criterion) {
    use actix_web::http::header::HeaderMap;
    use opentelemetry::KeyValue;
    use switchboard::telemetry::{OtlpSettings, SamplingRatio, Telemetry};
    let headers = HeaderMap::new();
    let one_request = |telemetry: &Telemetry| {
        let trace = telemetry.request(
            &headers,
            || "POST /v1/chat/completions".into(),
            || {
                vec![
                    KeyValue::new("gen_ai.operation.name", "chat"),
                    KeyValue::new("gen_ai.request.model", "echo"),
                    KeyValue::new("switchboard.key_id", "key_bench"),
                ]
            },
        );
        trace.stage("policy").end();
        let attempt = trace.attempt(
            || "chat echo".into(),
            || vec![KeyValue::new("switchboard.provider", "mock")],
        );
        black_box(&attempt.headers);
        attempt.span.end();
        trace.set(|| {
            vec![
                KeyValue::new("gen_ai.usage.input_tokens", 12),
                KeyValue::new("gen_ai.usage.output_tokens", 34),
            ]
        });
        trace.end(200, None);
    };
    let off = Telemetry::off();
    c.bench_function("trace a request: off", |b| b.iter(|| one_request(&off)));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut settings = OtlpSettings::new(format!("http://{}", closed.local_addr().unwrap()));
    drop(closed);
    settings.max_queue = 1 << 16;
    let metrics = Arc::new(switchboard::metrics::Metrics::default());
    let on = Telemetry::start(&settings, SamplingRatio::default(), metrics).unwrap();
    c.bench_function("trace a request: on, sampled (3 spans)", |b| {
        b.iter(|| one_request(&on))
    });
}

/// The 202-chunk stream through an output guard as `policies/examples/output-guard.rhai`
/// declares it (a 100-term block list; card, e-mail, phone and a regex redacted; 48 characters
/// held back), against the same stream unguarded ("stream of 202 chunks: openai").
fn guard(c: &mut Criterion) {
    use switchboard::inbound::{OpenAiEncoder, StreamEncoder};
    use switchboard::policy::guard::{Check, OutputGuard};
    use switchboard::policy::library::{DataFile, Library};
    use switchboard::proxy::guarded::GuardedEncoder;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("blocked.txt");
    let terms: Vec<String> = (0..100).map(|i| format!("forbidden term {i}")).collect();
    std::fs::write(&list, terms.join("\n")).unwrap();
    let words = DataFile::read(&list).unwrap();
    let key_pattern = Library::default().regex("sk-[A-Za-z0-9_-]{16,}").unwrap();
    let guard = Arc::new(OutputGuard {
        block: vec![Check::Words(words)],
        redact: vec![
            Check::Card,
            Check::Email,
            Check::Phone,
            Check::Pattern(key_pattern),
        ],
        replacement: "[redacted]".into(),
        hold: 48,
    });
    let stream = chunks();
    c.bench_function(
        "stream of 202 chunks: openai, output guard (hold 48)",
        |b| {
            b.iter(|| {
                let mut encoder = GuardedEncoder::new(Box::new(OpenAiEncoder), guard.clone());
                let mut out = bytes::BytesMut::new();
                for chunk in &stream {
                    encoder.chunk(black_box(chunk), &mut out);
                }
                encoder.done(&mut out);
                assert!(!encoder.ended());
                out.len()
            })
        },
    );
}

criterion_group!(
    request_path,
    benches,
    admission,
    translation,
    tracing,
    guard
);
criterion_main!(request_path);
