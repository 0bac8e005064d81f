//! The conformance matrix: every inbound API {chat completions, Messages, Responses} against
//! every provider kind {openai, azure, anthropic, gemini, mock}, as JSON and as a stream, each
//! cell its own test. The upstreams answer with recorded replies (tests/fixtures/matrix) that
//! all say the same thing: "I'll check the weather." plus a `get_weather` call for San
//! Francisco, 150 prompt tokens of which 100 were read from the provider's prompt cache, and 67
//! completion tokens. Each cell reads the reply in its own API (the streams event by event,
//! checking the event sequence) and must find exactly that: the text, the tool call, the stop
//! reason, and the usage, cached tokens included. The mock provider echoes instead, and is
//! held to the chat completions reply of the same request.

use crate::helpers::{spawn, Spawn, ADMIN_KEY};
use crate::recorder::{json_body, sse_in_pieces, Received, Recorder};
use actix_web::HttpResponse;
use serde_json::{json, Value};

const ANTHROPIC_MESSAGE: &str = include_str!("../fixtures/matrix/anthropic_message.json");
const ANTHROPIC_STREAM: &str = include_str!("../fixtures/matrix/anthropic_stream.sse");
const GEMINI_GENERATE: &str = include_str!("../fixtures/matrix/gemini_generate.json");
const GEMINI_STREAM: &str = include_str!("../fixtures/matrix/gemini_stream.sse");
const OPENAI_CHAT: &str = include_str!("../fixtures/matrix/openai_chat.json");
const OPENAI_STREAM: &str = include_str!("../fixtures/matrix/openai_stream.sse");

/// One upstream for every wire format, told apart by path.
fn answer(req: &Received) -> HttpResponse {
    let stream = req.body["stream"] == true;
    let path = req.path.as_str();
    if path.ends_with("/messages") {
        return if stream {
            sse_in_pieces(ANTHROPIC_STREAM)
        } else {
            json_body(200, ANTHROPIC_MESSAGE)
        };
    }
    if path.ends_with(":streamGenerateContent") {
        return sse_in_pieces(GEMINI_STREAM);
    }
    if path.ends_with(":generateContent") {
        return json_body(200, GEMINI_GENERATE);
    }
    if path.ends_with("/chat/completions") {
        return if stream {
            sse_in_pieces(OPENAI_STREAM)
        } else {
            json_body(200, OPENAI_CHAT)
        };
    }
    json_body(404, r#"{"error":{"message":"no such path"}}"#)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Openai,
    Azure,
    Anthropic,
    Gemini,
    Mock,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Api {
    Chat,
    Messages,
    Responses,
}

fn provider_yaml(kind: Kind, origin: &str) -> String {
    match kind {
        Kind::Openai => format!("kind: openai\nbase_url: {origin}/v1\napi_key: sk-up\nmodels: [m]\n"),
        Kind::Azure => format!(
            "kind: azure\nbase_url: {origin}\napi_key: az-up\napi_version: 2024-10-21\nmodels:\n  - name: m\n    upstream: deployment\n"
        ),
        Kind::Anthropic => {
            format!("kind: anthropic\nbase_url: {origin}/v1\napi_key: sk-ant-up\nmodels: [m]\n")
        }
        Kind::Gemini => {
            format!("kind: gemini\nbase_url: {origin}/v1beta\napi_key: gm-up\nmodels: [m]\n")
        }
        Kind::Mock => "kind: mock\nmodels: [m]\n".to_string(),
    }
}

const QUESTION: &str = "What is the weather in San Francisco?";

fn weather_schema() -> Value {
    json!({"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]})
}

/// The same request in each API.
fn request(api: Api, stream: bool) -> (&'static str, Value) {
    match api {
        Api::Chat => (
            "/v1/chat/completions",
            json!({
                "model": "up/m", "stream": stream, "max_tokens": 200,
                "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}],
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": weather_schema()}}],
            }),
        ),
        Api::Messages => (
            "/v1/messages",
            json!({
                "model": "up/m", "stream": stream, "max_tokens": 200,
                "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": QUESTION}],
                "tools": [{"name": "get_weather", "description": "Weather", "input_schema": weather_schema()}],
            }),
        ),
        Api::Responses => (
            "/v1/responses",
            json!({
                "model": "up/m", "stream": stream, "max_output_tokens": 200,
                "instructions": "Be brief.",
                "input": QUESTION,
                "tools": [{"type": "function", "name": "get_weather", "description": "Weather", "parameters": weather_schema()}],
            }),
        ),
    }
}

/// What a reply said, whatever its API.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    text: String,
    /// (name, arguments)
    tools: Vec<(String, Value)>,
    /// `tool`, `end` or `length`, in the API's own words mapped back.
    stop: String,
    /// Every prompt token, cached ones included.
    input: u64,
    output: u64,
    cached: u64,
}

fn args(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("tool arguments {text:?}: {e}"))
}

fn chat_json(v: &Value) -> Outcome {
    let choice = &v["choices"][0];
    let message = &choice["message"];
    let tools = message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    (
                        c["function"]["name"].as_str().unwrap().to_string(),
                        args(c["function"]["arguments"].as_str().unwrap()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Outcome {
        text: message["content"].as_str().unwrap_or("").to_string(),
        tools,
        stop: chat_stop(choice["finish_reason"].as_str().unwrap()),
        input: v["usage"]["prompt_tokens"].as_u64().unwrap(),
        output: v["usage"]["completion_tokens"].as_u64().unwrap(),
        cached: v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
    }
}

fn chat_stop(reason: &str) -> String {
    match reason {
        "tool_calls" => "tool",
        "stop" => "end",
        "length" => "length",
        other => panic!("finish_reason {other}"),
    }
    .to_string()
}

/// `(event name, data)` pairs of an SSE body.
fn events(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, data)
        })
        .collect()
}

fn chat_stream(body: &str) -> Outcome {
    let evs = events(body);
    assert_eq!(
        evs.last().unwrap().1,
        "[DONE]",
        "a chat stream ends with [DONE]"
    );
    let mut out = Outcome::default();
    let mut calls: Vec<(String, String)> = Vec::new();
    for (_, data) in &evs[..evs.len() - 1] {
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(choice) = v["choices"].get(0) {
            if let Some(t) = choice["delta"]["content"].as_str() {
                out.text.push_str(t);
            }
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let i = call["index"].as_u64().unwrap() as usize;
                if calls.len() <= i {
                    calls.push((String::new(), String::new()));
                }
                if let Some(n) = call["function"]["name"].as_str() {
                    calls[i].0.push_str(n);
                }
                if let Some(a) = call["function"]["arguments"].as_str() {
                    calls[i].1.push_str(a);
                }
            }
            if let Some(r) = choice["finish_reason"].as_str() {
                out.stop = chat_stop(r);
            }
        }
        if v["usage"].is_object() {
            out.input = v["usage"]["prompt_tokens"].as_u64().unwrap();
            out.output = v["usage"]["completion_tokens"].as_u64().unwrap();
            out.cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0);
        }
    }
    out.tools = calls.into_iter().map(|(n, a)| (n, args(&a))).collect();
    out
}

fn messages_stop(reason: &str) -> String {
    match reason {
        "tool_use" => "tool",
        "end_turn" | "stop_sequence" => "end",
        "max_tokens" => "length",
        other => panic!("stop_reason {other}"),
    }
    .to_string()
}

fn messages_usage(out: &mut Outcome, usage: &Value) {
    let n = |k: &str| usage[k].as_u64();
    if let Some(input) = n("input_tokens") {
        out.cached = n("cache_read_input_tokens").unwrap_or(0);
        out.input = input + out.cached + n("cache_creation_input_tokens").unwrap_or(0);
    }
    if let Some(output) = n("output_tokens") {
        out.output = output;
    }
}

fn messages_json(v: &Value) -> Outcome {
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    let mut out = Outcome::default();
    for block in v["content"].as_array().unwrap() {
        match block["type"].as_str().unwrap() {
            "text" => out.text.push_str(block["text"].as_str().unwrap()),
            "tool_use" => {
                assert!(block["id"].as_str().is_some_and(|id| !id.is_empty()));
                out.tools.push((
                    block["name"].as_str().unwrap().to_string(),
                    block["input"].clone(),
                ))
            }
            _ => {}
        }
    }
    out.stop = messages_stop(v["stop_reason"].as_str().unwrap());
    messages_usage(&mut out, &v["usage"]);
    out
}

/// Reads Anthropic's event stream, checking its order: `message_start` first, blocks opened,
/// filled and closed in turn, one `message_delta`, `message_stop` last.
fn messages_stream(body: &str) -> Outcome {
    let evs = events(body);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    let mut out = Outcome::default();
    let mut open: Option<(u64, String, String, String)> = None; // index, type, name, json
    let mut seen_delta = false;
    for (name, data) in &evs {
        let v: Value = serde_json::from_str(data).unwrap();
        let name = name.as_deref().unwrap();
        assert_eq!(v["type"], name, "the data's type is the event's name");
        match name {
            "message_start" => messages_usage(&mut out, &v["message"]["usage"]),
            "content_block_start" => {
                assert!(open.is_none(), "a block opened inside another: {names:?}");
                let block = &v["content_block"];
                open = Some((
                    v["index"].as_u64().unwrap(),
                    block["type"].as_str().unwrap().to_string(),
                    block["name"].as_str().unwrap_or("").to_string(),
                    String::new(),
                ));
            }
            "content_block_delta" => {
                let (index, kind, _, json) = open.as_mut().expect("a delta outside a block");
                assert_eq!(v["index"].as_u64().unwrap(), *index);
                match v["delta"]["type"].as_str().unwrap() {
                    "text_delta" => {
                        assert_eq!(kind, "text");
                        out.text.push_str(v["delta"]["text"].as_str().unwrap());
                    }
                    "input_json_delta" => {
                        assert_eq!(kind, "tool_use");
                        json.push_str(v["delta"]["partial_json"].as_str().unwrap());
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let (index, kind, name, json) = open.take().expect("a stop without a block");
                assert_eq!(v["index"].as_u64().unwrap(), index);
                if kind == "tool_use" {
                    out.tools.push((name, args(&json)));
                }
            }
            "message_delta" => {
                assert!(open.is_none() && !seen_delta, "{names:?}");
                seen_delta = true;
                out.stop = messages_stop(v["delta"]["stop_reason"].as_str().unwrap());
                messages_usage(&mut out, &v["usage"]);
            }
            "message_stop" | "ping" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    assert!(seen_delta, "no message_delta: {names:?}");
    out
}

fn responses_json(v: &Value) -> Outcome {
    assert_eq!(v["object"], "response");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    let mut out = Outcome::default();
    for item in v["output"].as_array().unwrap() {
        match item["type"].as_str().unwrap() {
            "message" => {
                for part in item["content"].as_array().unwrap() {
                    if part["type"] == "output_text" {
                        out.text.push_str(part["text"].as_str().unwrap());
                    }
                }
            }
            "function_call" => out.tools.push((
                item["name"].as_str().unwrap().to_string(),
                args(item["arguments"].as_str().unwrap()),
            )),
            _ => {}
        }
    }
    out.stop = match (v["status"].as_str().unwrap(), out.tools.is_empty()) {
        ("completed", false) => "tool".into(),
        ("completed", true) => "end".into(),
        ("incomplete", _) => "length".into(),
        (other, _) => panic!("status {other}"),
    };
    out.input = v["usage"]["input_tokens"].as_u64().unwrap();
    out.output = v["usage"]["output_tokens"].as_u64().unwrap();
    out.cached = v["usage"]["input_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    out
}

/// Reads the Responses event stream, checking its order (`response.created` first, sequence
/// numbers counting up from 0, `response.completed` last) and that the deltas add up to the
/// final response, which is what the outcome is read from.
fn responses_stream(body: &str) -> Outcome {
    let evs = events(body);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(names.first(), Some(&"response.created"), "{names:?}");
    assert_eq!(names.last(), Some(&"response.completed"), "{names:?}");
    let mut text = String::new();
    let mut arguments = String::new();
    let mut last = None;
    for (i, (name, data)) in evs.iter().enumerate() {
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["type"], name.as_deref().unwrap());
        assert_eq!(v["sequence_number"].as_u64(), Some(i as u64), "{names:?}");
        match name.as_deref().unwrap() {
            "response.output_text.delta" => text.push_str(v["delta"].as_str().unwrap()),
            "response.function_call_arguments.delta" => {
                arguments.push_str(v["delta"].as_str().unwrap())
            }
            "response.completed" => last = Some(v["response"].clone()),
            _ => {}
        }
    }
    let out = responses_json(&last.unwrap());
    assert_eq!(text, out.text, "the text deltas add up to the final text");
    let final_args: String = out.tools.iter().map(|(_, a)| a.to_string()).collect();
    if !arguments.is_empty() {
        assert_eq!(args(&arguments).to_string(), final_args);
    }
    out
}

async fn outcome(app: &crate::helpers::TestApp, api: Api, stream: bool) -> Outcome {
    let (path, body) = request(api, stream);
    let res = app.post(path, ADMIN_KEY).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let kind = res.headers()["content-type"].to_str().unwrap().to_string();
    let text = res.text().await.unwrap();
    assert_eq!(kind.starts_with("text/event-stream"), stream, "{kind}");
    match (api, stream) {
        (Api::Chat, false) => chat_json(&serde_json::from_str(&text).unwrap()),
        (Api::Chat, true) => chat_stream(&text),
        (Api::Messages, false) => messages_json(&serde_json::from_str(&text).unwrap()),
        (Api::Messages, true) => messages_stream(&text),
        (Api::Responses, false) => responses_json(&serde_json::from_str(&text).unwrap()),
        (Api::Responses, true) => responses_stream(&text),
    }
}

async fn cell(kind: Kind, api: Api, stream: bool) {
    let upstream = Recorder::start(answer).await;
    let app = spawn(Spawn::default().provider("up", provider_yaml(kind, &upstream.origin))).await;
    let got = outcome(&app, api, stream).await;
    let expected = if kind == Kind::Mock {
        // The mock echoes the question; its reference is the chat completions reply.
        let reference = outcome(&app, Api::Chat, false).await;
        assert_eq!(reference.text, QUESTION);
        reference
    } else {
        Outcome {
            text: "I'll check the weather.".into(),
            tools: vec![(
                "get_weather".into(),
                json!({"location": "San Francisco, CA"}),
            )],
            stop: "tool".into(),
            input: 150,
            output: 67,
            cached: 100,
        }
    };
    assert_eq!(got, expected, "{kind:?} x {api:?} x stream={stream}");
    if kind == Kind::Anthropic && api == Api::Messages {
        // Passed through as the client sent it: the cache marker reached Anthropic.
        let sent = upstream.last();
        assert_eq!(sent.body["system"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(sent.body["model"], "m");
    }
}

macro_rules! matrix {
    ($($name:ident: $kind:ident, $api:ident, $stream:expr;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                cell(Kind::$kind, Api::$api, $stream).await;
            }
        )*
    };
}

matrix! {
    chat_openai_json: Openai, Chat, false;
    chat_openai_stream: Openai, Chat, true;
    chat_azure_json: Azure, Chat, false;
    chat_azure_stream: Azure, Chat, true;
    chat_anthropic_json: Anthropic, Chat, false;
    chat_anthropic_stream: Anthropic, Chat, true;
    chat_gemini_json: Gemini, Chat, false;
    chat_gemini_stream: Gemini, Chat, true;
    chat_mock_json: Mock, Chat, false;
    chat_mock_stream: Mock, Chat, true;
    messages_openai_json: Openai, Messages, false;
    messages_openai_stream: Openai, Messages, true;
    messages_azure_json: Azure, Messages, false;
    messages_azure_stream: Azure, Messages, true;
    messages_anthropic_json: Anthropic, Messages, false;
    messages_anthropic_stream: Anthropic, Messages, true;
    messages_gemini_json: Gemini, Messages, false;
    messages_gemini_stream: Gemini, Messages, true;
    messages_mock_json: Mock, Messages, false;
    messages_mock_stream: Mock, Messages, true;
    responses_openai_json: Openai, Responses, false;
    responses_openai_stream: Openai, Responses, true;
    responses_azure_json: Azure, Responses, false;
    responses_azure_stream: Azure, Responses, true;
    responses_anthropic_json: Anthropic, Responses, false;
    responses_anthropic_stream: Anthropic, Responses, true;
    responses_gemini_json: Gemini, Responses, false;
    responses_gemini_stream: Gemini, Responses, true;
    responses_mock_json: Mock, Responses, false;
    responses_mock_stream: Mock, Responses, true;
}
