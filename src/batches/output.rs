//! A finished batch's files, in OpenAI's line format: the output file has the lines answered
//! with a 2xx, the error file the others (an error answer, or `batch_expired` for a line never
//! sent), each once, in the input's order. Their ids follow from the batch's, so finalizing
//! again after a crash rewrites the same two files instead of leaving orphans.

use super::files::{FileMeta, FileStore, PURPOSE_BATCH_OUTPUT};
use super::journal::LineResult;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// The ids of the output and error files written (`None` where there was nothing to put).
pub struct Written {
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
}

/// Writes the files for `batch_id` from its results (a line answered twice, after a crash
/// between its answer and its journal entry, is written once: the first answer).
pub fn write(
    files: &FileStore,
    batch_id: &str,
    owner: &str,
    results: Vec<LineResult>,
) -> io::Result<Written> {
    let mut by_index: BTreeMap<u32, LineResult> = BTreeMap::new();
    for result in results {
        by_index.entry(result.index).or_insert(result);
    }
    let (ok, failed): (Vec<_>, Vec<_>) = by_index.into_values().partition(LineResult::succeeded);
    let hex = batch_id.trim_start_matches("batch_");
    let output_file_id = write_one(
        files,
        &format!("file-{hex}output"),
        batch_id,
        "output",
        owner,
        &ok,
    )?;
    let error_file_id = write_one(
        files,
        &format!("file-{hex}errors"),
        batch_id,
        "error",
        owner,
        &failed,
    )?;
    Ok(Written {
        output_file_id,
        error_file_id,
    })
}

fn write_one(
    files: &FileStore,
    id: &str,
    batch_id: &str,
    kind: &str,
    owner: &str,
    results: &[LineResult],
) -> io::Result<Option<String>> {
    if results.is_empty() {
        return Ok(None);
    }
    let temp = files.temp_path();
    let mut out = io::BufWriter::new(std::fs::File::create(&temp)?);
    for result in results {
        serde_json::to_writer(&mut out, &line(batch_id, result)).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    files.commit(
        &temp,
        FileMeta {
            id: id.to_string(),
            bytes,
            created_ms: crate::clock::now_ms(),
            filename: format!("{batch_id}_{kind}.jsonl"),
            purpose: PURPOSE_BATCH_OUTPUT.into(),
            owner: owner.to_string(),
            lines: results.len() as u64,
        },
    )?;
    Ok(Some(id.to_string()))
}

/// One line of an output or error file.
fn line(batch_id: &str, result: &LineResult) -> Value {
    let id = if result.request_id.is_empty() {
        format!(
            "batch_req_{}_{}",
            batch_id.trim_start_matches("batch_"),
            result.index
        )
    } else {
        format!("batch_req_{}", result.request_id)
    };
    let response = (result.status != 0).then(|| {
        json!({
            "status_code": result.status,
            "request_id": result.request_id,
            "body": result.body.as_ref().map_or(Value::Null, |b| serde_json::from_str(b.get()).unwrap_or(Value::Null)),
        })
    });
    json!({
        "id": id,
        "custom_id": result.custom_id,
        "response": response,
        "error": result.error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
    })
}
