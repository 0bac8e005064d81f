//! The sled database behind every store, and what happens when it cannot write.
//!
//! What sled 0.34 does after a failed write (read in its source, `pagecache/iobuf.rs`,
//! `logger.rs`, `config.rs`):
//! - An I/O error while writing its log (a full disk, say) is kept as a "global error": from
//!   then on every write and every flush fails with it, even once the cause is gone
//!   (`Config::set_global_error` only sets it; only `PageCache::start`, that is opening the
//!   database again, resets it). Its background flusher stops at that error, and on close it
//!   writes nothing more. Reads keep working from what it holds.
//! - When that error is set by a background write, threads already waiting in a flush are not
//!   woken (no notify on that path) until the next write attempt: a flush can hang.
//! - A failed write of a *blob* (a page over a quarter segment, 512 KiB here: a big cached
//!   reply, a logged body) returns after its log slot was claimed, and the slot is never
//!   released: the log cannot get past it, no global error is set, and every flush from then
//!   on waits forever. That database cannot be closed either (closing flushes): only a new
//!   process gets past it, from what reached the disk before.
//!
//! So this handle:
//! - keeps why the store cannot write, set by any failed write and by a small write probe
//!   every [`PROBE_EVERY`], for `/health/ready` and `/metrics`;
//! - flushes on a helper thread, nudging sled with a write attempt while it waits, and gives
//!   up after [`FLUSH_WAIT`]: the database is then "stuck", reported as needing a restart, and
//!   left alone (its calls could block);
//! - is the one place that says whether writes may be tried: while the store cannot write,
//!   the stores refuse writes at once ([`Database::writable`]) instead of calling sled;
//! - once writes fail (sled's global error) and the data folder takes a write again, closes
//!   the database and opens it again from what reached the disk (a crash recovery), then
//!   tells the stores, which bring what they keep in memory in line (hooks registered with
//!   [`Database::on_reopen`]);
//! - hands out the trees per call ([`Database::trees`]): no store keeps a tree, or the old
//!   database could not close (sled locks the folder while any handle lives).

use crate::store::error::{StoreError, What, WriteFailures};
use arc_swap::ArcSwapOption;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How often the store is checked with a small write (and reopened, if writes failed and the
/// disk has room again).
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long a reopen waits for the old database to let go of the folder.
const REOPEN_WAIT: Duration = Duration::from_secs(10);
/// How long a flush may take before it counts as stuck.
pub const FLUSH_WAIT: Duration = Duration::from_secs(10);
/// Why the store cannot write while a flush is stuck.
const STUCK: &str = "a flush of the database has not finished: sled cannot get past a write that failed (a large value, with the disk full); restart the gateway once the disk has room (what was not flushed before is lost; key changes answered 2xx were flushed)";
/// How long a first open waits for a folder locked by a database just closed.
const OPEN_WAIT: Duration = Duration::from_millis(500);
/// The space check before a reopen: a file of this size is written, synced and removed.
const SPACE_CHECK_BYTES: usize = 64 * 1024;
const SPACE_CHECK_FILE: &str = ".switchboard-space-check";

/// The open sled database and its trees; one per (re)open.
pub struct Trees {
    pub db: sled::Db,
    pub keys: sled::Tree,
    pub key_hashes: sled::Tree,
    pub teams: sled::Tree,
    pub counters: sled::Tree,
    pub assignments: sled::Tree,
    pub cache: sled::Tree,
    pub cache_expiry: sled::Tree,
    pub log_batches: sled::Tree,
    pub usage_hours: sled::Tree,
    pub usage_keys: sled::Tree,
    pub responses: sled::Tree,
    pub response_ages: sled::Tree,
}

impl Trees {
    fn open(db: sled::Db) -> Result<Trees, StoreError> {
        Ok(Trees {
            keys: db.open_tree("keys")?,
            key_hashes: db.open_tree("key_hashes")?,
            teams: db.open_tree("teams")?,
            counters: db.open_tree("counters")?,
            assignments: db.open_tree("assignments")?,
            cache: db.open_tree("cache")?,
            cache_expiry: db.open_tree("cache_expiry")?,
            log_batches: db.open_tree("log_batches")?,
            usage_hours: db.open_tree("usage_hours")?,
            usage_keys: db.open_tree("usage_keys")?,
            responses: db.open_tree("responses")?,
            response_ages: db.open_tree("response_ages")?,
            db,
        })
    }
}

type Hook = Box<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

pub struct Database {
    dir: PathBuf,
    cache_bytes: u64,
    /// `None` only while a reopen is under way (or after one failed, until the next try).
    current: ArcSwapOption<Trees>,
    /// +1 per reopen: what was written to an earlier generation and not flushed is gone.
    generation: AtomicU64,
    /// Why the store cannot write; `None` while writes work.
    fault: Mutex<Option<String>>,
    hooks: Mutex<Vec<Hook>>,
    reopen_lock: Mutex<()>,
    /// One flush at a time; see [`Database::flush`].
    flush_lock: Mutex<()>,
    /// Set for good when a flush did not finish within [`FLUSH_WAIT`]: sled is left alone.
    stuck: AtomicBool,
    failures: WriteFailures,
    reopens: AtomicU64,
}

/// The segment size of the database in `dir`: the one it was created with (sled refuses to open
/// it with another; folders made before 2 MiB segments have sled's default 512 KiB), or
/// [`super::SEGMENT_BYTES`] for a new one.
pub(super) fn segment_size_of(dir: &Path) -> usize {
    // The file ends in a binary checksum, so it is read as bytes.
    std::fs::read(dir.join("conf"))
        .ok()
        .and_then(|conf| {
            String::from_utf8_lossy(&conf)
                .lines()
                .find_map(|l| l.strip_prefix("segment_size:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(super::SEGMENT_BYTES)
}

fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    std::fs::create_dir_all(dir)?;
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        // sled writes a page bigger than a quarter segment as a blob, and its cache counts
        // a blob by its pointer: such pages would never be evicted. 2 MiB segments (sled's
        // default is 512 KiB) put that limit at 512 KiB, above a full leaf of log records.
        .segment_size(segment_size_of(dir))
        // Writes reach disk in the background; nothing on a request path waits for a flush.
        .flush_every_ms(Some(500))
        .open()
        .map_err(|e| match e {
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                StoreError::Locked(dir.display().to_string())
            }
            other => other.into(),
        })
}

/// Opens sled as [`open_sled`] does, getting past one more of its full-disk failures: a
/// snapshot whose write failed is left behind as `snap.<lsn>.generating`, and sled 0.34 reads
/// the newest `snap.*` file, that one included, so the database would no longer open
/// ("Read corrupted data"). Such a file is unfinished by definition (a finished snapshot is
/// renamed to `snap.<lsn>`), and sled recovers from the previous snapshot and its log without
/// it. It is removed only after sled failed to open, so no other sled holds the folder.
fn open_sled_recovering(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    match open_sled(dir, cache_bytes) {
        Err(StoreError::Corrupt(_)) if remove_unfinished_snapshots(dir) > 0 => {
            open_sled(dir, cache_bytes)
        }
        other => other,
    }
}

/// Removes `snap.*.generating` files in `dir`; returns how many.
fn remove_unfinished_snapshots(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::warn!(file = %name, "removed an unfinished sled snapshot left by a failed write");
                    removed += 1;
                }
                Err(e) => {
                    tracing::error!(file = %name, error = %e, "could not remove an unfinished sled snapshot")
                }
            }
        }
    }
    removed
}

/// A short reason for an operator: what the disk said.
pub fn describe(e: &StoreError) -> String {
    match e {
        StoreError::Io(io) => {
            let text = io.to_string();
            if io.kind() == std::io::ErrorKind::StorageFull || text.contains("code: 28") {
                "no space left on the device".to_string()
            } else {
                format!("I/O error: {text}")
            }
        }
        other => other.to_string(),
    }
}

impl Database {
    /// Opens (or creates) the database in `dir` and starts its write probe.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Arc<Database>, StoreError> {
        // A database of this process closed a moment ago may still hold the folder's lock
        // (its probe or sled's own threads finishing a call): wait a little for it.
        let started = Instant::now();
        let db = loop {
            match open_sled_recovering(dir, cache_bytes) {
                Err(StoreError::Locked(_)) if started.elapsed() < OPEN_WAIT => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => break other?,
            }
        };
        let trees = Trees::open(db)?;
        let db = Arc::new(Database {
            dir: dir.to_path_buf(),
            cache_bytes,
            current: ArcSwapOption::from_pointee(trees),
            generation: AtomicU64::new(0),
            fault: Mutex::new(None),
            hooks: Mutex::new(Vec::new()),
            reopen_lock: Mutex::new(()),
            flush_lock: Mutex::new(()),
            stuck: AtomicBool::new(false),
            failures: Default::default(),
            reopens: AtomicU64::new(0),
        });
        spawn_monitor(Arc::downgrade(&db));
        Ok(db)
    }

    /// The trees of the open database. Hold them for one call only.
    pub fn trees(&self) -> Result<Arc<Trees>, StoreError> {
        if self.stuck() {
            return Err(StoreError::Unavailable(STUCK.into()));
        }
        self.current.load_full().ok_or_else(|| {
            StoreError::Unavailable("the database is being reopened after a write failure".into())
        })
    }

    /// Increases by one with every reopen.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Makes every write so far durable. sled's flush runs on a helper thread, nudged while
    /// it waits (see the module notes); after [`FLUSH_WAIT`] the database counts as stuck,
    /// for good: every call fails from then on without touching sled, whose calls can then
    /// block (a writer waiting for sled's global lock behind a reader that never leaves was
    /// seen), and only a restart gets past it.
    pub fn flush(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.flush_lock.lock().unwrap_or_else(|p| p.into_inner());
        let trees = self.trees()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let flushing = trees.clone();
        std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || {
                let _ = tx.send(flushing.db.flush());
            })
            .map_err(StoreError::from)?;
        let started = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(flushed) => return flushed.map(drop).map_err(StoreError::from),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    if started.elapsed() < FLUSH_WAIT =>
                {
                    // On a failed sled this fails at once, and wakes the flush to fail too.
                    let _ = kick(&trees);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    tracing::error!(wait_secs = FLUSH_WAIT.as_secs(), "{STUCK}");
                    *self.lock_fault() = Some(STUCK.into());
                    self.stuck.store(true, Ordering::Release);
                    return Err(StoreError::Unavailable(STUCK.into()));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(StoreError::Unavailable("the flush thread failed".into()))
                }
            }
        }
    }

    /// Whether a flush got stuck; see [`Database::flush`].
    pub fn stuck(&self) -> bool {
        self.stuck.load(Ordering::Acquire)
    }

    /// Why the store cannot write, or `None` when it can.
    pub fn fault(&self) -> Option<String> {
        self.lock_fault().clone()
    }

    /// `Ok` while the store writes; an `Unavailable` error saying why not otherwise. Every
    /// write asks first: a write to a failed sled cannot work, and one to a stuck sled may
    /// block for good.
    pub fn writable(&self) -> Result<(), StoreError> {
        match self.fault() {
            None => Ok(()),
            Some(why) => Err(StoreError::Unavailable(format!(
                "the store cannot write: {why}"
            ))),
        }
    }

    fn lock_fault(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a failed write of `what`; a failure of the disk or the database file (not of
    /// the data) marks the store as unable to write until a probe succeeds.
    pub fn report(&self, what: What, e: &StoreError) {
        self.failures.count(what);
        match e {
            StoreError::Io(_) => {}
            // Refused because the store is known not to write (or is reopening): said once.
            StoreError::Unavailable(_) => return,
            _ => {
                tracing::warn!(what = what.name(), error = %e, "a store write failed");
                return;
            }
        }
        let reason = describe(e);
        let mut fault = self.lock_fault();
        if fault.is_none() {
            tracing::error!(
                what = what.name(),
                reason = %reason,
                "the store cannot write: key changes answer 503, request logs and usage are held in memory; it recovers by itself once the data folder takes writes again"
            );
            *fault = Some(reason);
        } else {
            tracing::debug!(what = what.name(), reason = %reason, "a store write failed");
        }
    }

    fn clear_fault(&self) {
        if self.lock_fault().take().is_some() {
            tracing::info!("the store writes again");
        }
    }

    /// Calls `hook` after every reopen, to bring what a store keeps in memory in line.
    pub fn on_reopen(&self, hook: impl Fn() -> Result<(), StoreError> + Send + Sync + 'static) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(hook));
    }

    /// A small write made durable: does the store write now?
    fn probe(&self) -> Result<(), StoreError> {
        kick(&*self.trees()?)?;
        self.flush()
    }

    /// Checks that the store writes: a probe, and when it fails and the data folder takes a
    /// write again, a reopen. Returns whether the store writes now. Run every
    /// [`PROBE_EVERY`], and on shutdown.
    pub fn check(&self) -> bool {
        if self.stuck() {
            // Only a restart helps; closing this database would wait for the flush forever.
            return false;
        }
        let probed = if self.current.load().is_none() {
            Err(StoreError::Unavailable("a reopen failed".into()))
        } else {
            self.probe()
        };
        match probed {
            Ok(()) => {
                self.clear_fault();
                true
            }
            Err(_) if self.stuck() => false,
            Err(e) => {
                if !matches!(e, StoreError::Unavailable(_)) {
                    self.report(What::Probe, &e);
                }
                // sled does not write again after an I/O error: only a reopen clears it, and
                // that is worth trying only when the folder takes a write.
                if !space_for_a_write(&self.dir) {
                    return false;
                }
                match self.reopen() {
                    Ok(()) => match self.probe() {
                        Ok(()) => {
                            self.clear_fault();
                            true
                        }
                        Err(e) => {
                            self.report(What::Probe, &e);
                            false
                        }
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "could not reopen the store; trying again shortly");
                        let mut fault = self.lock_fault();
                        if fault.is_none() {
                            *fault =
                                Some(format!("could not reopen the database: {}", describe(&e)));
                        }
                        false
                    }
                }
            }
        }
    }

    /// Closes the database and opens it again from what reached the disk.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.reopen_lock.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current.swap(None).map(|trees| Arc::downgrade(&trees));
        // Calls in flight and sled's own threads may still hold the old database for a moment;
        // the folder's lock goes with the last of them. A call waiting in a flush of a failed
        // sled is woken by a write attempt (see `flush`).
        let started = Instant::now();
        let db = loop {
            match open_sled_recovering(&self.dir, self.cache_bytes) {
                Ok(db) => break db,
                Err(StoreError::Locked(_)) if started.elapsed() < REOPEN_WAIT => {
                    if let Some(trees) = old.as_ref().and_then(Weak::upgrade) {
                        let _ = kick(&trees);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        };
        self.current.store(Some(Arc::new(Trees::open(db)?)));
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.reopens.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            after_ms = started.elapsed().as_millis() as u64,
            "reopened the store after a write failure"
        );
        for hook in self.hooks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if let Err(e) = hook() {
                tracing::error!(error = %e, "a store could not reload its state after the reopen");
            }
        }
        Ok(())
    }

    /// `switchboard_store_*` in Prometheus text.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let writable = u8::from(self.fault().is_none() && self.current.load().is_some());
        let _ = writeln!(out, "# HELP switchboard_store_writable 1 when the store's last write or probe worked, 0 while it cannot write.\n# TYPE switchboard_store_writable gauge\nswitchboard_store_writable {writable}");
        self.failures.render(out);
        let _ = writeln!(out, "# HELP switchboard_store_reopens_total Times the store was closed and opened again to recover from a write failure.\n# TYPE switchboard_store_reopens_total counter\nswitchboard_store_reopens_total {}", self.reopens.load(Ordering::Relaxed));
    }
}

/// A write of the probe key, not flushed: it fails at once on a sled that has failed, and
/// then wakes whoever waits for a flush of it (see `Database::probe`).
fn kick(trees: &Trees) -> Result<(), StoreError> {
    trees
        .db
        .insert(b"probe", &crate::clock::now_ms().to_be_bytes())?;
    Ok(())
}

/// Whether `dir` takes a small write now (a full disk does not).
fn space_for_a_write(dir: &Path) -> bool {
    let path = dir.join(SPACE_CHECK_FILE);
    let wrote = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(&[0u8; SPACE_CHECK_BYTES])
            .and_then(|_| f.sync_all())
    });
    let _ = std::fs::remove_file(&path);
    wrote.is_ok()
}

/// Probes the store every [`PROBE_EVERY`] until the database is dropped.
fn spawn_monitor(db: Weak<Database>) {
    let spawned = std::thread::Builder::new()
        .name("store-probe".into())
        .spawn(move || loop {
            std::thread::sleep(PROBE_EVERY);
            let Some(db) = db.upgrade() else { return };
            db.check();
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the store probe");
    }
}
