//! Writing and removing a file so that no reader (the watcher, a reload, a crash) ever sees
//! half of it: a hidden temporary file in the same folder, synced, renamed over the file, then
//! the folder synced so the rename itself survives a power cut. Policy scripts from the editor,
//! batch files and batch records are written this way.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells apart the temporary files of writes running at once.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `dir/name` atomically. The temporary file is hidden (`.name.N.tmp`), so
/// the policy loader, which skips hidden files, never compiles it. An existing file keeps its
/// permissions.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let target = dir.join(name);
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        if let Ok(meta) = fs::metadata(&target) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &target)
    })();
    if written.is_err() {
        // Best effort: a temporary file left behind is hidden and ignored by the loader.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Removes `dir/name`; `Ok(false)` when there was no such file.
pub fn remove(dir: &Path, name: &str) -> io::Result<bool> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => sync_dir(dir).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.rhai", b"one").unwrap();
        write(dir.path(), "a.rhai", b"two").unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("a.rhai")).unwrap(),
            "two"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.rhai"], "no temporary file left");
        assert!(remove(dir.path(), "a.rhai").unwrap());
        assert!(!remove(dir.path(), "a.rhai").unwrap());
        assert!(!dir.path().join("a.rhai").exists());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.rhai", b"one").unwrap();
        let missing = dir.path().join("gone");
        assert!(write(&missing, "a.rhai", b"two").is_err());
        assert_eq!(
            fs::read_to_string(dir.path().join("a.rhai")).unwrap(),
            "one"
        );
    }
}
