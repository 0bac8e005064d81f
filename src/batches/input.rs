//! A batch input file, line by line: each line a JSON object with `custom_id`, `method`
//! (`POST`), `url` (an endpoint the gateway serves) and `body` (that endpoint's request, not
//! streamed). Checked whole at upload, so a bad line is a 400 naming it; indexed (where each
//! line is) when a batch starts, so the runner reads one line at a time and never holds the
//! file in memory.

use crate::wire::{ChatRequest, CompletionRequest, EmbeddingRequest};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// The most requests in one batch (OpenAI's limit).
pub const MAX_LINES: usize = 50_000;
/// The longest `custom_id`.
pub const MAX_CUSTOM_ID: usize = 512;

/// The endpoints a batch can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEndpoint {
    Chat,
    Completions,
    Embeddings,
    Messages,
    Responses,
}

impl BatchEndpoint {
    pub const ALL: [BatchEndpoint; 5] = [
        BatchEndpoint::Chat,
        BatchEndpoint::Completions,
        BatchEndpoint::Embeddings,
        BatchEndpoint::Messages,
        BatchEndpoint::Responses,
    ];

    pub fn path(self) -> &'static str {
        match self {
            BatchEndpoint::Chat => "/v1/chat/completions",
            BatchEndpoint::Completions => "/v1/completions",
            BatchEndpoint::Embeddings => "/v1/embeddings",
            BatchEndpoint::Messages => "/v1/messages",
            BatchEndpoint::Responses => "/v1/responses",
        }
    }

    pub fn from_path(path: &str) -> Option<BatchEndpoint> {
        Self::ALL.into_iter().find(|e| e.path() == path)
    }

    /// The endpoints, for an error message.
    pub fn list() -> String {
        Self::ALL.map(|e| format!("`{}`", e.path())).join(", ")
    }
}

/// What is wrong with a line (1-based), as the 400 or a failed batch's `errors` says it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Line(#[from] LineError),
    #[error("the file has more than {MAX_LINES} requests")]
    TooManyLines,
    #[error("the file has no requests")]
    Empty,
    #[error("could not read the file: {0}")]
    Io(#[from] io::Error),
}

/// One request of a batch.
#[derive(Debug)]
pub struct InputLine {
    pub custom_id: String,
    pub endpoint: BatchEndpoint,
    pub body: Box<RawValue>,
}

#[derive(Deserialize)]
struct RawLine {
    custom_id: serde_json::Value,
    method: Option<String>,
    url: Option<String>,
    body: Option<Box<RawValue>>,
}

/// Parses and checks one line: its shape, and its body as its endpoint's request.
pub fn parse_line(line: usize, text: &[u8], body_limit: usize) -> Result<InputLine, LineError> {
    let fail = |message: String| LineError { line, message };
    let raw: RawLine = serde_json::from_slice(text).map_err(|e| {
        fail(format!(
            "not a JSON object with `custom_id`, `method`, `url` and `body`: {e}"
        ))
    })?;
    let custom_id = match raw.custom_id {
        serde_json::Value::String(id) if !id.is_empty() && id.len() <= MAX_CUSTOM_ID => id,
        _ => {
            return Err(fail(format!(
                "`custom_id` must be a non-empty string of at most {MAX_CUSTOM_ID} bytes"
            )))
        }
    };
    if raw.method.as_deref() != Some("POST") {
        return Err(fail("`method` must be \"POST\"".into()));
    }
    let url = raw.url.unwrap_or_default();
    let endpoint = BatchEndpoint::from_path(&url).ok_or_else(|| {
        fail(format!(
            "`url` {url:?} is not an endpoint a batch can call ({})",
            BatchEndpoint::list()
        ))
    })?;
    let body = raw.body.ok_or_else(|| fail("`body` is missing".into()))?;
    if body.get().len() > body_limit {
        return Err(fail(format!(
            "`body` is over the body limit of {body_limit} bytes"
        )));
    }
    check_body(endpoint, &body).map_err(|e| fail(format!("`body`: {e}")))?;
    Ok(InputLine {
        custom_id,
        endpoint,
        body,
    })
}

/// Why a line's body is not its endpoint's request.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(transparent)]
    Parse(#[from] serde_json::Error),
    #[error("`stream` must not be true in a batch")]
    Streams,
}

/// The body is its endpoint's request, and does not stream (a batch's replies are files).
fn check_body(endpoint: BatchEndpoint, body: &RawValue) -> Result<(), BodyError> {
    let parsed = match endpoint {
        BatchEndpoint::Chat => serde_json::from_str::<ChatRequest>(body.get()).map(|_| ()),
        BatchEndpoint::Completions => {
            serde_json::from_str::<CompletionRequest>(body.get()).map(|_| ())
        }
        BatchEndpoint::Embeddings => {
            serde_json::from_str::<EmbeddingRequest>(body.get()).map(|_| ())
        }
        // Translated when they run; here the shape every request of theirs has.
        BatchEndpoint::Messages | BatchEndpoint::Responses => {
            serde_json::from_str::<ModelOnly>(body.get()).map(|_| ())
        }
    };
    parsed?;
    let stream: Option<StreamFlag> = serde_json::from_str(body.get()).ok();
    if stream.is_some_and(|s| s.stream == Some(true)) {
        return Err(BodyError::Streams);
    }
    Ok(())
}

#[derive(Deserialize)]
#[allow(dead_code)] // read to check the shape
struct ModelOnly {
    model: String,
}

#[derive(Deserialize)]
struct StreamFlag {
    stream: Option<bool>,
}

/// A checked line's `body`, as the bytes to send; `None` when the text is not such a line.
pub fn body_of(text: &[u8]) -> Option<bytes::Bytes> {
    #[derive(Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        body: &'a RawValue,
    }
    let line: Line = serde_json::from_slice(text.trim_ascii()).ok()?;
    Some(bytes::Bytes::copy_from_slice(line.body.get().as_bytes()))
}

/// Where a request's line is in the file, and its id.
#[derive(Debug, Clone)]
pub struct LineAt {
    pub offset: u64,
    pub len: u32,
    pub custom_id: String,
}

/// Reads every line of the file: each checked, `custom_id`s unique, at most [`MAX_LINES`].
/// With `endpoint`, every line must call it (a batch's lines all call the batch's endpoint).
/// Blank lines are skipped.
pub fn index(
    path: &Path,
    body_limit: usize,
    endpoint: Option<BatchEndpoint>,
) -> Result<Vec<LineAt>, InputError> {
    let mut reader = BufReader::with_capacity(64 * 1024, File::open(path)?);
    let mut lines = Vec::new();
    let mut seen = HashSet::new();
    let mut buf = Vec::new();
    let (mut offset, mut number) = (0u64, 0usize);
    loop {
        buf.clear();
        // A line is bounded by the body limit plus its envelope; read no more than that.
        let read = (&mut reader)
            .take(body_limit as u64 + 64 * 1024)
            .read_until(b'\n', &mut buf)?;
        if read == 0 {
            break;
        }
        number += 1;
        let at = offset;
        offset += read as u64;
        if read as u64 >= body_limit as u64 + 64 * 1024 && buf.last() != Some(&b'\n') {
            return Err(LineError {
                line: number,
                message: format!("the line is over the body limit of {body_limit} bytes"),
            }
            .into());
        }
        let text = buf.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let line = parse_line(number, text, body_limit)?;
        if let Some(endpoint) = endpoint.filter(|e| *e != line.endpoint) {
            return Err(LineError {
                line: number,
                message: format!(
                    "`url` is {} but the batch's endpoint is {}",
                    line.endpoint.path(),
                    endpoint.path()
                ),
            }
            .into());
        }
        if !seen.insert(line.custom_id.clone()) {
            return Err(LineError {
                line: number,
                message: format!(
                    "`custom_id` {:?} is used by an earlier line",
                    line.custom_id
                ),
            }
            .into());
        }
        if lines.len() == MAX_LINES {
            return Err(InputError::TooManyLines);
        }
        lines.push(LineAt {
            offset: at,
            len: read as u32,
            custom_id: line.custom_id,
        });
    }
    if lines.is_empty() {
        return Err(InputError::Empty);
    }
    Ok(lines)
}

/// Reads one indexed line back.
pub fn read_line(file: &mut File, at: &LineAt) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(at.offset))?;
    let mut buf = vec![0; at.len as usize];
    file.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: &str) -> String {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"m","messages":[{{"role":"user","content":"hi"}}]}}}}"#
        )
    }

    fn index_of(text: &str) -> Result<Vec<LineAt>, InputError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, text).unwrap();
        index(&path, 10_000, None)
    }

    fn line_error(text: &str) -> LineError {
        match index_of(text) {
            Err(InputError::Line(e)) => e,
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_file_is_indexed_and_lines_read_back() {
        let text = format!("{}\r\n\n{}\n", chat("a"), chat("b"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, &text).unwrap();
        let lines = index(&path, 10_000, Some(BatchEndpoint::Chat)).unwrap();
        assert_eq!(lines.len(), 2);
        let mut file = File::open(&path).unwrap();
        let second = read_line(&mut file, &lines[1]).unwrap();
        let parsed = parse_line(3, second.trim_ascii(), 10_000).unwrap();
        assert_eq!(parsed.custom_id, "b");
        assert_eq!(parsed.endpoint, BatchEndpoint::Chat);
        assert_eq!(
            body_of(&second).unwrap(),
            parsed.body.get().as_bytes(),
            "the body sent is the line's, byte for byte"
        );
        assert_eq!(body_of(b"not json"), None);
    }

    #[test]
    fn bad_lines_are_named() {
        let dup = format!("{}\n{}\n", chat("a"), chat("a"));
        let e = line_error(&dup);
        assert_eq!(e.line, 2);
        assert!(e.message.contains("earlier line"), "{e}");
        let e = line_error(&format!("{}\nnot json\n", chat("a")));
        assert_eq!(e.line, 2);
        let e = line_error(&chat("a").replace("POST", "GET"));
        assert!(e.message.contains("method"), "{e}");
        let e = line_error(&chat("a").replace("/v1/chat/completions", "/v1/images"));
        assert!(e.message.contains("/v1/images"), "{e}");
        let e = line_error(&chat("a").replace("\"messages\"", "\"msgs\""));
        assert!(e.message.contains("messages"), "{e}");
        let e =
            line_error(&chat("a").replace("\"model\":\"m\"", "\"model\":\"m\",\"stream\":true"));
        assert!(e.message.contains("stream"), "{e}");
        let e = line_error(&chat("a").replace("\"a\"", "\"\""));
        assert!(e.message.contains("custom_id"), "{e}");
        assert!(matches!(index_of("\n\n"), Err(InputError::Empty)));
        let long = chat(&"x".repeat(20_000));
        assert!(
            line_error(&long).message.contains("limit")
                || line_error(&long).message.contains("custom_id")
        );
    }

    #[test]
    fn a_line_for_another_endpoint_is_refused_for_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, chat("a")).unwrap();
        let e = index(&path, 10_000, Some(BatchEndpoint::Embeddings)).unwrap_err();
        assert!(e.to_string().contains("batch's endpoint"), "{e}");
    }
}
