//! A batch's progress: `<data>/batches/<id>.results.jsonl`, one line per answered request,
//! appended and synced as answers arrive (the runner writes what arrived together in one
//! append and one sync). A restart reads it back and sends only the lines it lacks. A crash
//! mid-append leaves a torn last line, which the next open cuts off: that request is sent again,
//! as it would be had the crash come a moment earlier.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

/// A request's outcome.
#[derive(Debug, Serialize, Deserialize)]
pub struct LineResult {
    /// The line's place among the batch's requests (0-based).
    pub index: u32,
    pub custom_id: String,
    /// The HTTP status of the answer; 0 when the request was never sent (it expired).
    pub status: u16,
    /// The gateway's request id (the request log's `request_id`).
    pub request_id: String,
    /// The answer's body (JSON; a body that is not JSON is kept as a JSON string).
    pub body: Option<Box<RawValue>>,
    /// Why there is no answer (a request never sent).
    pub error: Option<LineFailure>,
    #[serde(default)]
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineFailure {
    pub code: String,
    pub message: String,
}

impl LineResult {
    /// Whether the line counts as completed (a 2xx answer) rather than failed.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub struct Journal {
    file: File,
}

impl Journal {
    /// Opens (creating) the journal and reads what it holds; a torn last line is cut off.
    pub fn open(path: &Path) -> io::Result<(Journal, Vec<LineResult>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .create(true)
            .append(true)
            .open(path)?;
        let (results, good) = read(&mut file)?;
        if good < file.metadata()?.len() {
            tracing::warn!(journal = %path.display(), "a batch journal ended in a torn line (a crash mid-write); it is cut off and that request sent again");
            file.set_len(good)?;
            file.sync_all()?;
        }
        Ok((Journal { file }, results))
    }

    /// Appends `results` and syncs them to disk. On failure (a full disk) the journal is cut
    /// back to where it was, so a retry does not follow half a line, and nothing counts as
    /// written.
    pub fn append(&mut self, results: &[LineResult]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(results.len() * 256);
        for result in results {
            serde_json::to_writer(&mut buf, result).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        let before = self.file.metadata()?.len();
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if written.is_err() {
            let _ = self.file.set_len(before);
        }
        written
    }
}

/// Every whole line of the journal, and where the whole lines end.
fn read(file: &mut File) -> io::Result<(Vec<LineResult>, u64)> {
    let mut reader = BufReader::new(&*file);
    let mut results = Vec::new();
    let mut good = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        match serde_json::from_slice::<LineResult>(&line) {
            Ok(result) => results.push(result),
            Err(_) => break,
        }
        good += n as u64;
    }
    Ok((results, good))
}

/// The journal's results, read only (finalizing).
pub fn read_all(path: &Path) -> io::Result<Vec<LineResult>> {
    match File::open(path) {
        Ok(mut file) => read(&mut file).map(|(results, _)| results),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(index: u32) -> LineResult {
        LineResult {
            index,
            custom_id: format!("c{index}"),
            status: 200,
            request_id: "r".into(),
            body: RawValue::from_string("{\"ok\":1}".into()).ok(),
            error: None,
            cost_usd: 0.5,
        }
    }

    #[test]
    fn a_torn_line_is_cut_and_later_appends_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.results.jsonl");
        let (mut journal, read) = Journal::open(&path).unwrap();
        assert!(read.is_empty());
        journal.append(&[result(0), result(1)]).unwrap();
        drop(journal);
        // A crash in the middle of the next append.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"index\":2,\"custom_id\":\"c").unwrap();
        drop(file);
        let (mut journal, read) = Journal::open(&path).unwrap();
        assert_eq!(read.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1]);
        journal.append(&[result(2)]).unwrap();
        let all = read_all(&path).unwrap();
        assert_eq!(all.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(all[2].succeeded());
        assert_eq!(all[2].body.as_ref().unwrap().get(), "{\"ok\":1}");
    }
}
