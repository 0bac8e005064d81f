//! Export files: a store's records ([`Record`]) as JSON lines, one a line, the format of
//! `switchboard export` and `switchboard import`: a backup, and the way from one store backend
//! to another. The records come from and go to the store through `store::portable`; this is
//! only the file.
//!
//! The file holds keys' secret hashes and usage, so it is created readable by its owner only,
//! and written whole or not at all: a failed export never leaves half a file under its name.

use crate::store::portable::{InvalidRecord, Record};
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

/// Why an export file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A line that is not a record.
    #[error("{file}, line {line}: not a record: {message}")]
    Parse {
        file: String,
        line: usize,
        message: String,
    },
    /// A record no store can take as it is.
    #[error("{file}, line {line}: {source}")]
    Invalid {
        file: String,
        line: usize,
        source: InvalidRecord,
    },
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("cannot write {file}: {source}")]
    Write {
        file: String,
        source: std::io::Error,
    },
}

/// The name `-` stands for standard input (reading) or output (writing).
pub const STDIO: &str = "-";

/// Every record of an export, each checked ([`Record::check`]) as it is read: the first line
/// that is not a record, or one no store can take, is the error, named by its number. Blank
/// lines are skipped. `file` names the input in errors.
pub fn read_records(mut input: impl BufRead, file: &str) -> Result<Vec<Record>, BackupError> {
    let mut records = Vec::new();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = input.read_until(b'\n', &mut line);
        if read.map_err(|source| BackupError::Read {
            file: file.to_string(),
            source,
        })? == 0
        {
            break;
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_slice(&line).map_err(|e| BackupError::Parse {
            file: file.to_string(),
            line: number,
            message: message_of(&e),
        })?;
        record.check().map_err(|source| BackupError::Invalid {
            file: file.to_string(),
            line: number,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

/// serde_json's message with the column it names, if any, and not its line: that counts
/// lines within the one line parsed, always 1.
fn message_of(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let location = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&location) {
        Some(message) if e.line() > 0 => format!("{message} (column {})", e.column()),
        _ => full,
    }
}

/// The records of the export at `path` ([`STDIO`]: standard input), as [`read_records`].
pub fn read_file(path: &Path) -> Result<Vec<Record>, BackupError> {
    let file = path.display().to_string();
    if path.as_os_str() == STDIO {
        return read_records(std::io::stdin().lock(), "standard input");
    }
    let opened = std::fs::File::open(path).map_err(|source| BackupError::Read {
        file: file.clone(),
        source,
    })?;
    read_records(std::io::BufReader::new(opened), &file)
}

/// Writes the records, one JSON line each.
pub fn write_records(records: &[Record], out: impl Write) -> std::io::Result<()> {
    let mut out = BufWriter::new(out);
    for record in records {
        serde_json::to_writer(&mut out, record)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Writes the records to `path` whole or not at all: into a new file in the same folder,
/// readable by its owner only (0600 on unix), synced to disk and then renamed to `path`
/// (replacing a file there). On failure the new file is removed and `path` is untouched.
pub fn write_file(records: &[Record], path: &Path) -> Result<(), BackupError> {
    let failed = |source| BackupError::Write {
        file: path.display().to_string(),
        source,
    };
    // The same folder, so the rename cannot cross file systems.
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".switchboard-export-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let temp = builder.tempfile_in(dir).map_err(failed)?;
    write_records(records, temp.as_file()).map_err(failed)?;
    temp.as_file().sync_all().map_err(failed)?;
    temp.persist(path).map_err(|e| failed(e.error))?;
    // The rename is durable once the folder is synced. Best effort: some file systems cannot
    // sync a folder, and the file itself is complete either way.
    #[cfg(unix)]
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(error = %e, "could not sync the export's folder");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::usage::{KeyUsage, Totals};

    fn records() -> Vec<Record> {
        vec![
            Record::Assignment {
                split: "s".into(),
                sticky_id: "u".into(),
                variant: "a".into(),
            },
            Record::KeyUsage {
                key_id: "key_1".into(),
                usage: KeyUsage {
                    totals: Totals {
                        requests: 2,
                        cost_usd: 0.25,
                        ..Totals::default()
                    },
                    last_used_ms: Some(7),
                },
            },
        ]
    }

    #[test]
    fn a_written_file_reads_back_and_only_its_owner_may_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.jsonl");
        std::fs::write(&path, "older").unwrap();
        write_file(&records(), &path).unwrap();
        assert_eq!(read_file(&path).unwrap(), records());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with(r#"{"kind":"assignment","#), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        // A folder under the name: the rename fails after the data was written.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), "kept").unwrap();
        let Err(BackupError::Write { .. }) = write_file(&records(), &path) else {
            panic!("a folder cannot be replaced by the export");
        };
        assert_eq!(
            std::fs::read_to_string(path.join("inside")).unwrap(),
            "kept"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "the temporary file is removed");
        assert!(write_file(&records(), &dir.path().join("missing/export.jsonl")).is_err());
    }

    #[test]
    fn the_first_bad_line_is_named_by_its_number() {
        let mut text = Vec::new();
        write_records(&records(), &mut text).unwrap();
        text.extend_from_slice(b"\n   \n{\"kind\":\"team\"}\n");
        let Err(BackupError::Parse { line, message, .. }) = read_records(&text[..], "f") else {
            panic!("a team without its record is not a record");
        };
        assert_eq!((line, message.as_str()), (5, "missing field `record`"));

        let bad_hash = br#"{"kind":"key","hash":"12","record":{"id":"k","name":"k","role":"user","masked":"","created_at":0}}"#;
        let mut text = b"\n".to_vec();
        text.extend_from_slice(bad_hash);
        let err = read_records(&text[..], "export.jsonl").unwrap_err();
        assert!(matches!(err, BackupError::Invalid { line: 2, .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("export.jsonl, line 2: a key's `hash`"),
            "{err}"
        );

        let err = read_records(&b"{\"kind\":\"team\",\"record\":nope}"[..], "f").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("f, line 1: not a record: expected ident (column 26)"),
            "{err}"
        );
    }
}
