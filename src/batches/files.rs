//! Files (`/v1/files`): kept in the data folder, not in the database, one pair per file:
//! `<id>.data` (the bytes as uploaded or written) and `<id>.json` (who owns it, its name,
//! purpose and size). The `.json` is written last, atomically: a file exists once its record
//! does, so a crash mid-upload leaves only a hidden temporary file or an orphan `.data`, both
//! removed at the next start. The records are held in memory (listing reads no disk).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// What a file is for (OpenAI's names): clients upload `batch` input; the runner writes
/// `batch_output` (a batch's output and error files).
pub const PURPOSE_BATCH: &str = "batch";
pub const PURPOSE_BATCH_OUTPUT: &str = "batch_output";

/// A file's record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileMeta {
    pub id: String,
    pub bytes: u64,
    /// Unix milliseconds (listing order).
    pub created_ms: u64,
    pub filename: String,
    pub purpose: String,
    /// The id of the key that uploaded it (or whose batch wrote it): the only key that sees it.
    pub owner: String,
    /// Requests in a batch input file (checked at upload).
    #[serde(default)]
    pub lines: u64,
}

pub struct FileStore {
    dir: PathBuf,
    index: RwLock<BTreeMap<String, FileMeta>>,
    /// `--max-file-bytes`: the largest upload accepted.
    pub max_bytes: u64,
}

pub fn new_id() -> String {
    format!("file-{}", uuid::Uuid::new_v4().simple())
}

/// A file id as the gateway makes them (`file-` and hex), so no id can name a path.
pub fn is_id(id: &str) -> bool {
    id.strip_prefix("file-").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

impl FileStore {
    /// Opens (creating) `dir`, reads every record and removes what a crash left half-made.
    pub fn open(dir: PathBuf, max_bytes: u64) -> io::Result<FileStore> {
        fs::create_dir_all(&dir)?;
        let mut index = BTreeMap::new();
        let mut data = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with('.') {
                // An upload or a write that never finished.
                let _ = fs::remove_file(&path);
            } else if let Some(id) = name.strip_suffix(".json") {
                match fs::read(&path).map(|b| serde_json::from_slice::<FileMeta>(&b)) {
                    Ok(Ok(meta)) if meta.id == id => {
                        index.insert(meta.id.clone(), meta);
                    }
                    _ => {
                        tracing::warn!(file = %path.display(), "a file record could not be read; the file is not served")
                    }
                }
            } else if let Some(id) = name.strip_suffix(".data") {
                data.push(id.to_string());
            }
        }
        for id in data.iter().filter(|id| !index.contains_key(*id)) {
            let _ = fs::remove_file(dir.join(format!("{id}.data")));
        }
        Ok(FileStore {
            dir,
            index: RwLock::new(index),
            max_bytes,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A hidden path in the folder to write a new file's bytes to, before `commit`.
    pub fn temp_path(&self) -> PathBuf {
        self.dir
            .join(format!(".upload-{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn data_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.data"))
    }

    /// Makes the (synced) bytes at `temp` the file `meta` describes, durably. Blocking.
    pub fn commit(&self, temp: &Path, meta: FileMeta) -> io::Result<()> {
        fs::File::open(temp)?.sync_all()?;
        fs::rename(temp, self.data_path(&meta.id))?;
        let record = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        crate::durable_file::write(&self.dir, &format!("{}.json", meta.id), &record)?;
        self.index
            .write()
            .map_err(|_| io::Error::other("the file index lock is poisoned"))?
            .insert(meta.id.clone(), meta);
        Ok(())
    }

    /// The file, if it exists and `owner` may see it (`None`: any owner, for the admin API).
    pub fn get(&self, id: &str, owner: Option<&str>) -> Option<FileMeta> {
        let index = self.index.read().ok()?;
        index
            .get(id)
            .filter(|meta| owner.is_none_or(|owner| meta.owner == owner))
            .cloned()
    }

    /// The files `owner` may see (all with `None`), newest first.
    pub fn list(&self, owner: Option<&str>, purpose: Option<&str>) -> Vec<FileMeta> {
        let Ok(index) = self.index.read() else {
            return Vec::new();
        };
        let mut files: Vec<FileMeta> = index
            .values()
            .filter(|m| owner.is_none_or(|owner| m.owner == owner))
            .filter(|m| purpose.is_none_or(|p| m.purpose == p))
            .cloned()
            .collect();
        files.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
        files
    }

    /// Deletes a file (its record first, so it is gone even if the bytes stay). Blocking.
    pub fn delete(&self, id: &str) -> io::Result<bool> {
        let existed = self
            .index
            .write()
            .map_err(|_| io::Error::other("the file index lock is poisoned"))?
            .remove(id)
            .is_some();
        if !existed {
            return Ok(false);
        }
        crate::durable_file::remove(&self.dir, &format!("{id}.json"))?;
        crate::durable_file::remove(&self.dir, &format!("{id}.data"))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str, owner: &str, created_ms: u64) -> FileMeta {
        FileMeta {
            id: id.into(),
            bytes: 3,
            created_ms,
            filename: "in.jsonl".into(),
            purpose: PURPOSE_BATCH.into(),
            owner: owner.into(),
            lines: 1,
        }
    }

    #[test]
    fn files_survive_a_reopen_and_half_made_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let files = FileStore::open(dir.path().join("files"), 1000).unwrap();
        for (id, owner, at) in [
            ("file-a", "k1", 1),
            ("file-b", "k2", 2),
            ("file-c", "k1", 3),
        ] {
            let temp = files.temp_path();
            fs::write(&temp, b"abc").unwrap();
            files.commit(&temp, meta(id, owner, at)).unwrap();
        }
        // A crash mid-upload, and one between the bytes and the record.
        fs::write(files.temp_path(), b"half").unwrap();
        fs::write(files.data_path("file-orphan"), b"x").unwrap();
        let files = FileStore::open(dir.path().join("files"), 1000).unwrap();
        let ids = |list: Vec<FileMeta>| list.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(files.list(Some("k1"), None)), ["file-c", "file-a"]);
        assert_eq!(ids(files.list(None, None)), ["file-c", "file-b", "file-a"]);
        assert!(
            files.get("file-b", Some("k1")).is_none(),
            "another key's file"
        );
        assert!(files.get("file-b", None).is_some());
        assert_eq!(fs::read(files.data_path("file-a")).unwrap(), b"abc");
        let left = fs::read_dir(files.dir()).unwrap().count();
        assert_eq!(left, 6, "three records and three data files, nothing else");
        assert!(files.delete("file-a").unwrap());
        assert!(!files.delete("file-a").unwrap());
        assert!(!files.data_path("file-a").exists());
        let files = FileStore::open(dir.path().join("files"), 1000).unwrap();
        assert!(files.get("file-a", None).is_none());
    }

    #[test]
    fn only_the_gateways_own_ids_are_ids() {
        assert!(is_id("file-0af3"));
        assert!(!is_id("file-"));
        assert!(!is_id("file-../x"));
        assert!(!is_id("batch_1"));
    }
}
