//! The batch runner: a thread of its own (not a request worker) that runs
//! every batch's lines through the same pipeline as a live request from the batch's key
//! (`proxy::forward`: policies, routing, fallbacks, cache, limits, budgets, usage, cost, the
//! request log, tagged `batch: <id>`).
//!
//! - **Bounded:** at most `--batch-concurrency` lines in flight over all batches, and
//!   `--batch-concurrency-per-batch` within one; behind live traffic (`pacing.rs`).
//! - **Durable:** each answer goes to the batch's journal (synced) before the line counts as
//!   done; after a restart (or a kill -9) a batch resumes with the lines its journal lacks.
//! - **Limits wait:** a line refused for a limit (429), an open breaker or an unreachable
//!   store was not answered by any provider: it waits (the `retry-after`, or a backoff) and
//!   goes again, until the completion window runs out.
//! - **Cancel** stops new lines at once; lines in flight finish and the batch is finalized
//!   with what completed.

use crate::batches::input::{self, BatchEndpoint, LineAt};
use crate::batches::journal::{Journal, LineFailure, LineResult};
use crate::batches::pacing::{Mode, Pacer};
use crate::batches::record::{BatchErrorItem, BatchErrors, Status};
use crate::batches::registry::Command;
use crate::error::ApiError;
use crate::proxy::request_id::{BatchLine, RequestId};
use crate::proxy::shape::Shape;
use crate::state::AppState;
use crate::store::KeyRecord;
use crate::wire::{ChatRequest, CompletionRequest, EmbeddingRequest, RequestBody, Typed};
use actix_web::http::header::HeaderMap;
use actix_web::{web, HttpResponse, ResponseError};
use bytes::Bytes;
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, Semaphore};

/// How often a batch's loop looks at cancellation, stopping and the journal even when nothing
/// else wakes it.
const TICK: Duration = Duration::from_millis(250);
/// The wait before a refused line goes again when the answer named none.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MOST: Duration = Duration::from_secs(30);

/// A batch's cancel switch.
#[derive(Default)]
struct Control {
    cancelled: AtomicBool,
    notify: Notify,
}

impl Control {
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// Starts the runner on a thread of its own (its own single-threaded runtime), so batch work
/// never runs on a request worker; it resumes the batches a previous run left unfinished. It
/// holds the state weakly, and ends when the state (and with it the command sender) is gone.
pub fn spawn(state: web::Data<AppState>, commands: mpsc::UnboundedReceiver<Command>) {
    let state = Arc::downgrade(&state.into_inner());
    let started = std::thread::Builder::new()
        .name("batch-runner".into())
        .spawn(move || actix_web::rt::System::new().block_on(run(state, commands)));
    if let Err(e) = started {
        tracing::error!(error = %e, "could not start the batch runner; batches will not run");
    }
}

async fn run(state: std::sync::Weak<AppState>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let Some(concurrency) = state.upgrade().map(|s| s.batches.settings.concurrency) else {
        return;
    };
    let all = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut controls: HashMap<String, Arc<Control>> = HashMap::new();
    let start = |id: String, controls: &mut HashMap<String, Arc<Control>>| {
        let Some(state) = state.upgrade() else {
            return;
        };
        controls.retain(|_, control| Arc::strong_count(control) > 1);
        let control = Arc::new(Control::default());
        controls.insert(id.clone(), control.clone());
        actix_web::rt::spawn(run_batch(web::Data::from(state), id, control, all.clone()));
    };
    let unfinished = state
        .upgrade()
        .map(|s| s.batches.unfinished())
        .unwrap_or_default();
    for id in unfinished {
        tracing::info!(batch = %id, "resuming a batch");
        start(id, &mut controls);
    }
    while let Some(command) = commands.recv().await {
        match command {
            Command::Run(id) => start(id, &mut controls),
            Command::Cancel(id) => {
                if let Some(control) = controls.get(&id) {
                    control.cancel();
                }
            }
        }
    }
}

/// Runs one batch from wherever it stands to a final status.
async fn run_batch(
    state: web::Data<AppState>,
    id: String,
    control: Arc<Control>,
    all: Arc<Semaphore>,
) {
    let _running = state.batches.running();
    // A failure (a full disk while writing a record, the journal or the output) is retried:
    // every step can be taken again from what is on disk.
    let mut wait = RETRY_FIRST;
    while let Err(e) = drive(&state, &id, &control, &all).await {
        if state.batches.is_stopping() {
            tracing::warn!(batch = %id, error = %e, "a batch stopped on an error while the gateway stops; it resumes at the next start");
            return;
        }
        tracing::error!(batch = %id, error = %e, retry_in_ms = wait.as_millis() as u64, "a batch step failed; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MOST);
    }
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Batch(#[from] crate::batches::registry::BatchError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a blocking task failed: {0}")]
    Blocking(String),
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RunError> {
    web::block(f)
        .await
        .map_err(|e| RunError::Blocking(e.to_string()))
}

async fn drive(
    state: &web::Data<AppState>,
    id: &str,
    control: &Arc<Control>,
    all: &Arc<Semaphore>,
) -> Result<(), RunError> {
    let batches = state.batches.clone();
    let Some(record) = batches.get(id, None) else {
        return Ok(());
    };
    if record.batch.status.is_final() {
        return Ok(());
    }
    let endpoint = BatchEndpoint::from_path(&record.batch.endpoint);
    let path = batches.files.data_path(&record.batch.input_file_id);
    let body_limit = batches.settings.body_limit;
    let indexed = blocking(move || input::index(&path, body_limit, endpoint)).await?;
    let lines = match indexed {
        Ok(lines) => lines,
        Err(e) => {
            let line = match &e {
                input::InputError::Line(l) => Some(l.line as u64),
                _ => None,
            };
            let message = e.to_string();
            update(&batches, id, move |r| {
                r.batch.status = Status::Failed;
                r.batch.failed_at = Some(crate::clock::now_secs());
                r.batch.errors = Some(BatchErrors {
                    object: "list".into(),
                    data: vec![BatchErrorItem {
                        code: "invalid_request".into(),
                        message: message.clone(),
                        param: Some("input_file_id".into()),
                        line,
                    }],
                });
            })
            .await?;
            tracing::warn!(batch = %id, error = %e, "a batch failed validation");
            return Ok(());
        }
    };
    if record.batch.status == Status::Validating {
        let total = lines.len() as u64;
        update(&batches, id, move |r| {
            if r.batch.status == Status::Validating {
                r.batch.status = Status::InProgress;
                r.batch.in_progress_at = Some(crate::clock::now_secs());
            }
            r.batch.request_counts.total = total;
        })
        .await?;
    }
    let journal_path = batches.journal_path(id);
    let (journal, done) = blocking(move || Journal::open(&journal_path)).await??;
    let mut progress = Progress::default();
    for result in &done {
        progress.count(result);
    }
    batches.set_progress(id, progress.completed, progress.failed, progress.cost);

    let stopped_for = send_lines(state, id, control, all, &lines, journal, &mut progress).await?;
    if stopped_for == Ending::Shutdown {
        return Ok(());
    }
    finalize(state, id, stopped_for, &lines, &progress).await
}

/// Changes the batch's record durably (on the blocking pool).
async fn update(
    batches: &Arc<crate::batches::Batches>,
    id: &str,
    change: impl Fn(&mut crate::batches::record::BatchRecord) + Send + 'static,
) -> Result<(), RunError> {
    let (batches, id) = (batches.clone(), id.to_string());
    blocking(move || batches.update(&id, change)).await??;
    Ok(())
}

/// Why the sending stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Done,
    Cancelled,
    Expired,
    /// The gateway is stopping: the batch resumes at the next start.
    Shutdown,
}

#[derive(Default)]
struct Progress {
    done: HashSet<u32>,
    completed: u64,
    failed: u64,
    cost: f64,
}

impl Progress {
    fn count(&mut self, result: &LineResult) {
        if self.done.insert(result.index) {
            if result.succeeded() {
                self.completed += 1;
            } else {
                self.failed += 1;
            }
            self.cost += result.cost_usd;
        }
    }
}

/// Sends the lines the journal lacks, writing each answer to it, until all are answered, the
/// batch is cancelled, its window runs out or the gateway stops.
#[allow(clippy::too_many_arguments)]
async fn send_lines(
    state: &web::Data<AppState>,
    id: &str,
    control: &Arc<Control>,
    all: &Arc<Semaphore>,
    lines: &[LineAt],
    journal: Journal,
    progress: &mut Progress,
) -> Result<Ending, RunError> {
    let batches = state.batches.clone();
    let Some(record) = batches.get(id, None) else {
        return Ok(Ending::Shutdown);
    };
    if record.batch.status == Status::Cancelling {
        return Ok(Ending::Cancelled);
    }
    if record.batch.status == Status::Finalizing {
        return Ok(Ending::Done);
    }
    let deadline = deadline_of(record.batch.expires_at);
    let endpoint = BatchEndpoint::from_path(&record.batch.endpoint).unwrap_or(BatchEndpoint::Chat);
    let mut pending: VecDeque<u32> = (0..lines.len() as u32)
        .filter(|i| !progress.done.contains(i))
        .collect();
    let per_batch = Arc::new(Semaphore::new(batches.settings.per_batch.max(1)));
    let (tx, mut rx) = mpsc::channel::<Sent>(batches.settings.per_batch.max(1) * 2);
    let input_path = batches.files.data_path(&record.batch.input_file_id);
    let mut input = Some(std::fs::File::open(&input_path)?);
    let mut journal = Some(journal);
    let mut unwritten: Vec<LineResult> = Vec::new();
    let mut in_flight = 0usize;
    let mut pacer = Pacer::default();
    let mut rest_until: Option<Instant> = None;
    let mut ending = None;
    loop {
        if ending.is_none() {
            ending = if control.is_cancelled() {
                Some(Ending::Cancelled)
            } else if batches.is_stopping() {
                Some(Ending::Shutdown)
            } else if Instant::now() >= deadline {
                Some(Ending::Expired)
            } else if pending.is_empty() && in_flight == 0 && unwritten.is_empty() {
                Some(Ending::Done)
            } else {
                None
            };
        }
        // Answers first: written and synced before they count.
        if !unwritten.is_empty() {
            let Some(mut j) = journal.take() else {
                return Err(RunError::Blocking("the journal is gone".into()));
            };
            let batch = std::mem::take(&mut unwritten);
            let (j, batch, written) = blocking(move || {
                let written = j.append(&batch);
                (j, batch, written)
            })
            .await?;
            journal = Some(j);
            match written {
                Ok(()) => {
                    for result in &batch {
                        progress.count(result);
                    }
                    batches.set_progress(id, progress.completed, progress.failed, progress.cost);
                }
                Err(e) => {
                    // Kept and tried again; no new line goes while answers cannot be kept.
                    tracing::error!(batch = %id, error = %e, "could not write a batch's journal; retrying");
                    unwritten = batch;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        if let Some(end) = ending {
            if in_flight == 0 && unwritten.is_empty() {
                if end == Ending::Expired {
                    expire_rest(&mut journal, &pending, lines, progress, &batches, id).await?;
                }
                return Ok(end);
            }
        }
        let mode = pacer.mode(state.metrics.in_flight());
        let may_send = ending.is_none()
            && !pending.is_empty()
            && (mode == Mode::Full
                || (in_flight == 0 && rest_until.is_none_or(|t| Instant::now() >= t)));
        // While trickling, wake when the rest is over rather than at the next tick.
        let wake = match rest_until {
            Some(at) if mode == Mode::Trickle && in_flight == 0 => at
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(5), TICK),
            _ => TICK,
        };
        let mut received = Vec::new();
        tokio::select! {
            biased;
            n = rx.recv_many(&mut received, 64), if in_flight > 0 => {
                in_flight -= n;
                for sent in received.drain(..) {
                    if mode == Mode::Trickle {
                        rest_until = Some(Instant::now() + Pacer::rest(sent.took));
                    }
                    match sent.result {
                        Some(result) => unwritten.push(result),
                        // Never sent (cancelled or stopping while it waited): still pending.
                        None => pending.push_front(sent.index),
                    }
                }
            }
            permits = acquire(all, &per_batch), if may_send => {
                let Some(index) = pending.pop_front() else { continue };
                let at = lines[index as usize].clone();
                let Some(file) = input.take() else { continue };
                let (file, read) = blocking(move || {
                    let mut file = file;
                    let read = input::read_line(&mut file, &at);
                    (file, read)
                }).await?;
                input = Some(file);
                let text = read?;
                in_flight += 1;
                let job = Job {
                    state: state.clone(),
                    batch_id: id.to_string(),
                    owner: record.owner.clone(),
                    endpoint,
                    index,
                    custom_id: lines[index as usize].custom_id.clone(),
                    // The line was checked whole at upload: only its body is sent.
                    body: input::body_of(&text),
                    deadline,
                    control: control.clone(),
                };
                let tx = tx.clone();
                actix_web::rt::spawn(async move {
                    let started = Instant::now();
                    let result = job.run().await;
                    drop(permits);
                    let _ = tx.send(Sent { index, result, took: started.elapsed() }).await;
                });
            }
            _ = control.notify.notified() => {}
            _ = tokio::time::sleep(wake) => {}
        }
    }
}

/// A line's outcome, back from its task.
struct Sent {
    index: u32,
    result: Option<LineResult>,
    took: Duration,
}

async fn acquire(
    all: &Arc<Semaphore>,
    per_batch: &Arc<Semaphore>,
) -> Option<(
    tokio::sync::OwnedSemaphorePermit,
    tokio::sync::OwnedSemaphorePermit,
)> {
    let batch = per_batch.clone().acquire_owned().await.ok()?;
    let global = all.clone().acquire_owned().await.ok()?;
    Some((batch, global))
}

/// The window's end as an `Instant`.
fn deadline_of(expires_at: u64) -> Instant {
    let left = expires_at.saturating_sub(crate::clock::now_secs());
    Instant::now() + Duration::from_secs(left)
}

/// Lines never sent when the window ran out: in the journal as `batch_expired`.
async fn expire_rest(
    journal: &mut Option<Journal>,
    pending: &VecDeque<u32>,
    lines: &[LineAt],
    progress: &mut Progress,
    batches: &Arc<crate::batches::Batches>,
    id: &str,
) -> Result<(), RunError> {
    let expired: Vec<LineResult> = pending
        .iter()
        .filter(|i| !progress.done.contains(i))
        .map(|&index| expired(index, &lines[index as usize].custom_id))
        .collect();
    if expired.is_empty() {
        return Ok(());
    }
    let Some(mut j) = journal.take() else {
        return Ok(());
    };
    let (j, expired, written) = blocking(move || {
        let written = j.append(&expired);
        (j, expired, written)
    })
    .await?;
    *journal = Some(j);
    written?;
    for result in &expired {
        progress.count(result);
    }
    batches.set_progress(id, progress.completed, progress.failed, progress.cost);
    Ok(())
}

/// A line never sent before the window ran out, as OpenAI reports it.
fn expired(index: u32, custom_id: &str) -> LineResult {
    LineResult {
        index,
        custom_id: custom_id.to_string(),
        status: 0,
        request_id: String::new(),
        body: None,
        error: Some(LineFailure {
            code: "batch_expired".into(),
            message: "This request could not be executed before the completion window expired."
                .into(),
        }),
        cost_usd: 0.0,
    }
}

/// Writes the output and error files and gives the batch its final status.
async fn finalize(
    state: &web::Data<AppState>,
    id: &str,
    ending: Ending,
    lines: &[LineAt],
    progress: &Progress,
) -> Result<(), RunError> {
    let batches = state.batches.clone();
    let total = lines.len() as u64;
    update(&batches, id, move |r| {
        if r.batch.finalizing_at.is_none() {
            r.batch.finalizing_at = Some(crate::clock::now_secs());
        }
        if r.batch.status != Status::Cancelling {
            r.batch.status = Status::Finalizing;
        }
        r.batch.request_counts.total = total;
    })
    .await?;
    let Some(record) = batches.get(id, None) else {
        return Ok(());
    };
    let (b, id2, owner) = (batches.clone(), id.to_string(), record.owner.clone());
    let journal_path = batches.journal_path(id);
    let written = blocking(move || {
        let results = crate::batches::journal::read_all(&journal_path)?;
        crate::batches::output::write(&b.files, &id2, &owner, results)
    })
    .await??;
    let (completed, failed, cost) = (progress.completed, progress.failed, progress.cost);
    update(&batches, id, move |r| {
        let now = Some(crate::clock::now_secs());
        r.batch.output_file_id = written.output_file_id.clone();
        r.batch.error_file_id = written.error_file_id.clone();
        r.batch.request_counts.completed = completed;
        r.batch.request_counts.failed = failed;
        r.cost_usd = cost;
        match ending {
            Ending::Cancelled => {
                r.batch.status = Status::Cancelled;
                r.batch.cancelled_at = now;
            }
            Ending::Expired => {
                r.batch.status = Status::Expired;
                r.batch.expired_at = now;
            }
            _ if r.batch.status == Status::Cancelling => {
                r.batch.status = Status::Cancelled;
                r.batch.cancelled_at = now;
            }
            _ => {
                r.batch.status = Status::Completed;
                r.batch.completed_at = now;
            }
        }
    })
    .await?;
    tracing::info!(batch = %id, completed, failed, cost_usd = cost, "a batch finished");
    Ok(())
}

/// One line to send.
struct Job {
    state: web::Data<AppState>,
    batch_id: String,
    owner: String,
    endpoint: BatchEndpoint,
    index: u32,
    custom_id: String,
    /// The line's `body`; `None` if the file no longer reads as it did when checked.
    body: Option<Bytes>,
    deadline: Instant,
    control: Arc<Control>,
}

impl Job {
    /// Sends the line until it is answered (waiting out limits); `None` when it was never
    /// sent because the batch was cancelled or the gateway is stopping meanwhile. A line past
    /// the window while waiting is answered `batch_expired`.
    async fn run(self) -> Option<LineResult> {
        let mut wait = RETRY_FIRST;
        loop {
            if self.control.is_cancelled() || self.state.batches.is_stopping() {
                return None;
            }
            let line = Arc::new(BatchLine::new(self.batch_id.clone()));
            let request_id = RequestId::for_batch(line.clone());
            let answer = match self.key().await {
                Ok(key) => self.send(&key, &request_id).await,
                Err(e) => Answer::read(e.error_response()).await,
            };
            if answer.retryable() && Instant::now() < self.deadline {
                let pause = answer.retry_after.unwrap_or(wait).min(RETRY_MOST);
                wait = (wait * 2).min(RETRY_MOST);
                if Instant::now() + pause >= self.deadline {
                    return Some(self.expired());
                }
                self.sleep(pause).await;
                continue;
            }
            return Some(LineResult {
                index: self.index,
                custom_id: self.custom_id.clone(),
                status: answer.status,
                request_id: request_id.log_id().to_string(),
                body: Some(answer.body),
                error: None,
                cost_usd: line.cost_usd(),
            });
        }
    }

    /// Sleeps `pause` in slices, ending early when the batch is cancelled or the gateway
    /// stops.
    async fn sleep(&self, pause: Duration) {
        let until = Instant::now() + pause;
        while Instant::now() < until
            && !self.control.is_cancelled()
            && !self.state.batches.is_stopping()
        {
            tokio::time::sleep((until - Instant::now()).min(TICK)).await;
        }
    }

    fn expired(&self) -> LineResult {
        expired(self.index, &self.custom_id)
    }

    /// The batch's key, as it is now: a key revoked or expired since stops its batch's lines.
    async fn key(&self) -> Result<Arc<KeyRecord>, ApiError> {
        let key = self
            .state
            .auth
            .record_by_id(&self.owner)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "could not read a batch's key");
                ApiError::store_unavailable()
            })?;
        key.ok_or_else(|| {
            ApiError::unauthorized(
                "The key that created this batch was revoked, has expired or no longer exists.",
            )
        })
    }

    async fn send(&self, key: &Arc<KeyRecord>, request_id: &RequestId) -> Answer {
        let state = &self.state;
        let headers = HeaderMap::new();
        let Some(bytes) = self.body.clone() else {
            let e = ApiError::bad_request(format!(
                "line {} of the input file no longer reads as the JSON it was when checked",
                self.index + 1
            ));
            return Answer::read(e.error_response()).await;
        };
        let response = match self.endpoint {
            BatchEndpoint::Messages => {
                let shape = Shape::Messages;
                match crate::proxy::messages::run_bytes(
                    state,
                    key,
                    request_id,
                    &headers,
                    Vec::new(),
                    bytes,
                    &shape,
                )
                .await
                {
                    Ok(response) => response,
                    Err(e) => shape.error(&e),
                }
            }
            BatchEndpoint::Responses => {
                crate::proxy::responses::run_bytes(state, key, request_id, &headers, bytes)
                    .await
                    .unwrap_or_else(|e| e.error_response())
            }
            endpoint => match typed(endpoint, &bytes) {
                Ok(typed) => crate::proxy::forward::forward(
                    state,
                    key,
                    request_id,
                    &headers,
                    RequestBody::with_original(typed, bytes),
                    &Shape::OpenAi,
                )
                .await
                .unwrap_or_else(|e| e.error_response()),
                Err(e) => e.error_response(),
            },
        };
        Answer::read(response).await
    }
}

fn typed(endpoint: BatchEndpoint, bytes: &[u8]) -> Result<Typed, ApiError> {
    Ok(match endpoint {
        BatchEndpoint::Completions => {
            Typed::Completions(crate::proxy::body::parse_json::<CompletionRequest>(bytes)?)
        }
        BatchEndpoint::Embeddings => {
            Typed::Embeddings(crate::proxy::body::parse_json::<EmbeddingRequest>(bytes)?)
        }
        _ => Typed::Chat(crate::proxy::body::parse_json::<ChatRequest>(bytes)?),
    })
}

/// An answer as the batch keeps it.
struct Answer {
    status: u16,
    body: Box<RawValue>,
    code: Option<String>,
    retry_after: Option<Duration>,
}

impl Answer {
    async fn read(response: HttpResponse) -> Answer {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap_or_default();
        let body = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| RawValue::from_string(text.to_string()).ok())
            .unwrap_or_else(|| {
                RawValue::from_string(
                    serde_json::to_string(&String::from_utf8_lossy(&bytes)).unwrap_or_default(),
                )
                .unwrap_or_default()
            });
        let code = serde_json::from_str::<serde_json::Value>(body.get())
            .ok()
            .and_then(|v| {
                v.pointer("/error/code")
                    .or_else(|| v.pointer("/error/type"))
                    .and_then(|c| c.as_str().map(str::to_string))
            });
        Answer {
            status,
            body,
            code,
            retry_after,
        }
    }

    /// Refused before any provider answered, for a reason that passes: a limit (429), an
    /// open breaker, a store that did not answer.
    fn retryable(&self) -> bool {
        self.status == 429
            || matches!(
                self.code.as_deref(),
                Some("circuit_open") | Some("store_unavailable")
            )
    }
}
