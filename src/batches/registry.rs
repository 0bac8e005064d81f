//! `Batches` (in `AppState`): the files, every batch's record in memory, and the commands the
//! runner takes (`Run`, `Cancel`). Creating and cancelling are written to disk and synced before
//! they are answered; the runner (`proxy/batch_runner.rs`) does the rest.

use super::files::{FileStore, PURPOSE_BATCH};
use super::input::BatchEndpoint;
use super::record::{self, Batch, BatchRecord, RequestCounts, Status};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// How many requests of batches run at once.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// `--batch-concurrency`: across all batches.
    pub concurrency: usize,
    /// `--batch-concurrency-per-batch`: within one batch.
    pub per_batch: usize,
    /// `--max-file-bytes`: the largest upload.
    pub max_file_bytes: u64,
    /// `--body-limit`: the largest request, in a batch line as in a live request.
    pub body_limit: usize,
}

/// The most batches one key may have unfinished: each holds a task and reads its input file,
/// so one key cannot make the runner hold (and index) without bound.
pub const MAX_UNFINISHED_PER_KEY: usize = 100;

/// What the runner is told to do.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(String),
    Cancel(String),
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("no such batch")]
    NotFound,
    #[error("{message}")]
    Invalid {
        message: String,
        param: &'static str,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("this key has {MAX_UNFINISHED_PER_KEY} batches not yet finished; wait for one, or cancel one")]
    TooMany,
    #[error("could not write the batch: {0}")]
    Io(#[from] io::Error),
}

/// `POST /v1/batches`' fields.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Where files and batches are kept.
pub enum Place {
    /// `<data>/files` and `<data>/batches`.
    Folder(PathBuf),
    /// A temporary folder removed when the gateway stops (`--store memory`: nothing is kept).
    Temporary,
}

pub struct Batches {
    dir: PathBuf,
    /// The temporary folder, when that is where they are (removed when dropped).
    _temporary: Option<tempfile::TempDir>,
    pub files: FileStore,
    records: Mutex<BTreeMap<String, BatchRecord>>,
    commands: mpsc::UnboundedSender<Command>,
    pub settings: BatchSettings,
    stopping: AtomicBool,
    /// Batches the runner is working on now.
    active: Arc<AtomicUsize>,
}

impl Batches {
    /// Opens `<data>/files` and `<data>/batches` (creating them) and reads every batch record.
    pub fn open(
        place: Place,
        settings: BatchSettings,
    ) -> io::Result<(Batches, mpsc::UnboundedReceiver<Command>)> {
        let (data_dir, temporary) = match place {
            Place::Folder(dir) => (dir, None),
            Place::Temporary => {
                let temp = tempfile::Builder::new()
                    .prefix("switchboard-batches-")
                    .tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let data_dir: &Path = &data_dir;
        let files = FileStore::open(data_dir.join("files"), settings.max_file_bytes)?;
        let dir = data_dir.join("batches");
        std::fs::create_dir_all(&dir)?;
        let mut records = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with('.') {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            match std::fs::read(&path).map(|b| serde_json::from_slice::<BatchRecord>(&b)) {
                Ok(Ok(record)) if record.batch.id == id => {
                    records.insert(id.to_string(), record);
                }
                _ => {
                    tracing::warn!(file = %path.display(), "a batch record could not be read; the batch is skipped")
                }
            }
        }
        let (commands, receiver) = mpsc::unbounded_channel();
        Ok((
            Batches {
                dir,
                _temporary: temporary,
                files,
                records: Mutex::new(records),
                commands,
                settings,
                stopping: AtomicBool::new(false),
                active: Arc::new(AtomicUsize::new(0)),
            },
            receiver,
        ))
    }

    pub fn journal_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.results.jsonl"))
    }

    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BatchRecord>> {
        // A panic while holding it cannot leave a record half-changed: changes are whole.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the record durably. Blocking.
    fn persist(&self, record: &BatchRecord) -> io::Result<()> {
        let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        crate::durable_file::write(&self.dir, &format!("{}.json", record.batch.id), &bytes)
    }

    /// Creates a batch for `owner` and hands it to the runner. Blocking (the record is synced).
    pub fn create(&self, owner: &str, new: NewBatch) -> Result<Batch, BatchError> {
        let invalid = |message: String, param| BatchError::Invalid { message, param };
        let file = self
            .files
            .get(&new.input_file_id, Some(owner))
            .ok_or_else(|| invalid(format!("no file {:?}", new.input_file_id), "input_file_id"))?;
        if file.purpose != PURPOSE_BATCH {
            return Err(invalid(
                format!(
                    "file {:?} has purpose {:?}, not \"batch\"",
                    file.id, file.purpose
                ),
                "input_file_id",
            ));
        }
        if BatchEndpoint::from_path(&new.endpoint).is_none() {
            return Err(invalid(
                format!("`endpoint` must be one of {}", BatchEndpoint::list()),
                "endpoint",
            ));
        }
        let window = record::completion_window_secs(&new.completion_window).ok_or_else(|| {
            invalid(
                "`completion_window` must be \"24h\" (or <n>h, <n>m, <n>s: 1 s to 7 days)".into(),
                "completion_window",
            )
        })?;
        if let Some(metadata) = &new.metadata {
            if metadata.len() > 16 || metadata.iter().any(|(k, v)| k.len() > 64 || v.len() > 512) {
                return Err(invalid(
                    "`metadata` holds at most 16 pairs, keys up to 64 and values up to 512 characters".into(),
                    "metadata",
                ));
            }
        }
        let unfinished = self
            .records()
            .values()
            .filter(|r| r.owner == owner && !r.batch.status.is_final())
            .count();
        if unfinished >= MAX_UNFINISHED_PER_KEY {
            return Err(BatchError::TooMany);
        }
        let now = crate::clock::now_secs();
        let record = BatchRecord {
            batch: Batch {
                id: record::new_id(),
                object: "batch".into(),
                endpoint: new.endpoint,
                errors: None,
                input_file_id: file.id,
                completion_window: new.completion_window,
                status: Status::Validating,
                output_file_id: None,
                error_file_id: None,
                created_at: now,
                in_progress_at: None,
                expires_at: now + window,
                finalizing_at: None,
                completed_at: None,
                failed_at: None,
                expired_at: None,
                cancelling_at: None,
                cancelled_at: None,
                request_counts: RequestCounts {
                    total: file.lines,
                    ..RequestCounts::default()
                },
                metadata: new.metadata,
            },
            owner: owner.to_string(),
            cost_usd: 0.0,
        };
        self.persist(&record)?;
        let batch = record.batch.clone();
        self.records().insert(batch.id.clone(), record);
        let _ = self.commands.send(Command::Run(batch.id.clone()));
        Ok(batch)
    }

    /// The batch, if `owner` may see it (`None`: any, for the admin API).
    pub fn get(&self, id: &str, owner: Option<&str>) -> Option<BatchRecord> {
        self.records()
            .get(id)
            .filter(|r| owner.is_none_or(|o| r.owner == o))
            .cloned()
    }

    /// The batches `owner` may see, newest first, after the batch `after` (a cursor), at most
    /// `limit`; and whether there are more.
    pub fn list(
        &self,
        owner: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<BatchRecord>, bool) {
        let records = self.records();
        let mut all: Vec<&BatchRecord> = records
            .values()
            .filter(|r| owner.is_none_or(|o| r.owner == o))
            .collect();
        all.sort_by(|a, b| {
            (b.batch.created_at, &b.batch.id).cmp(&(a.batch.created_at, &a.batch.id))
        });
        let all: Vec<BatchRecord> = all.into_iter().cloned().collect();
        super::paging::page(&all, |r| &r.batch.id, after, limit)
    }

    /// Cancels the batch: no new line is sent. Blocking (the record is synced).
    pub fn cancel(&self, id: &str, owner: Option<&str>) -> Result<Batch, BatchError> {
        let record = self.get(id, owner).ok_or(BatchError::NotFound)?;
        match record.batch.status {
            Status::Cancelling | Status::Cancelled => return Ok(record.batch),
            status if status.is_final() || status == Status::Finalizing => {
                return Err(BatchError::Conflict(format!(
                    "the batch is {}; there is nothing to cancel",
                    serde_json::to_value(status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                )))
            }
            _ => {}
        }
        let batch = self.update(id, |r| {
            r.batch.status = Status::Cancelling;
            r.batch.cancelling_at = Some(crate::clock::now_secs());
        })?;
        let _ = self.commands.send(Command::Cancel(id.to_string()));
        Ok(batch)
    }

    /// Changes the record and writes it durably, then changes the live record the same way
    /// (whose counts the runner may have moved meanwhile). Blocking.
    pub fn update(&self, id: &str, change: impl Fn(&mut BatchRecord)) -> Result<Batch, BatchError> {
        let mut record = self.get(id, None).ok_or(BatchError::NotFound)?;
        change(&mut record);
        self.persist(&record)?;
        let mut records = self.records();
        let live = records.get_mut(id).ok_or(BatchError::NotFound)?;
        change(live);
        Ok(live.batch.clone())
    }

    /// The runner's progress, in memory (the journal is what lasts).
    pub fn set_progress(&self, id: &str, completed: u64, failed: u64, cost_usd: f64) {
        if let Some(record) = self.records().get_mut(id) {
            record.batch.request_counts.completed = completed;
            record.batch.request_counts.failed = failed;
            record.cost_usd = cost_usd;
        }
    }

    /// Batches the runner has yet to finish (after a restart, to resume).
    pub fn unfinished(&self) -> Vec<String> {
        self.records()
            .values()
            .filter(|r| !r.batch.status.is_final())
            .map(|r| r.batch.id.clone())
            .collect()
    }

    /// A batch not yet finished that reads this file, if any.
    pub fn reading(&self, file_id: &str) -> Option<String> {
        self.records()
            .values()
            .find(|r| !r.batch.status.is_final() && r.batch.input_file_id == file_id)
            .map(|r| r.batch.id.clone())
    }

    /// The gateway is stopping: the runner sends no new line and lets those in flight finish.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Counts a batch as being worked on until the guard is dropped.
    pub fn running(&self) -> Running {
        self.active.fetch_add(1, Ordering::SeqCst);
        Running(self.active.clone())
    }

    /// Stops the runner (no new line) and waits, at most `grace`, for the lines in flight to
    /// be answered and written.
    pub async fn stop_within(&self, grace: std::time::Duration) {
        self.stop();
        let until = std::time::Instant::now() + grace;
        while self.active.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// A batch being worked on (see [`Batches::running`]).
pub struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
