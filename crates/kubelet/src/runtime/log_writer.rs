//! The writing end of container logs: one [`LogWriter`] per log file, shared by the container's
//! stdout and stderr copiers, and reopened by log rotation.
//!
//! Upstream's kubelet renames a log that grew too large and asks the runtime to reopen it
//! (`ReopenContainerLog`). Here the kubelet writes the logs itself, so rotation takes the
//! writer's lock, renames the file and opens a fresh one at the same path before letting the
//! next record through: every record lands in exactly one file, in order. The writers of this
//! process are found through a registry keyed by the log's canonical path, since the copiers
//! (started by the runtime) and the rotation task (started by the kubelet) share nothing else.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

/// The open log writers of this process, by canonical path.
type Registry = HashMap<PathBuf, Weak<LogWriter>>;

fn registry() -> MutexGuard<'static, Registry> {
    static OPEN: OnceLock<Mutex<Registry>> = OnceLock::new();
    OPEN.get_or_init(Mutex::default)
        .lock()
        // The map stays consistent whatever panicked while holding it.
        .unwrap_or_else(PoisonError::into_inner)
}

/// `path` with its directory canonicalized, so that writers and rotation agree on the key
/// however the pod logs dir was spelled.
fn key(path: &Path) -> std::io::Result<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        ));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    Ok(std::fs::canonicalize(dir)?.join(name))
}

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// The writer of one container log file.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogWriter {
    /// The writer of the log at `path`: the one this process already has open, or a new one
    /// appending to the file (created with its parent directories). Blocking.
    pub fn open(path: &Path) -> std::io::Result<Arc<LogWriter>> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let key = key(path)?;
        let mut open = registry();
        if let Some(writer) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(writer);
        }
        let writer = Arc::new(LogWriter {
            file: Mutex::new(open_append(&key)?),
            path: key.clone(),
        });
        open.retain(|_, w| w.strong_count() > 0);
        open.insert(key, Arc::downgrade(&writer));
        Ok(writer)
    }

    /// The file's (canonical) path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self) -> MutexGuard<'_, File> {
        // A panic mid-write leaves a valid file handle behind.
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `records` with one write, so records of the two streams never interleave.
    /// Blocking.
    pub fn write(&self, records: &[u8]) -> std::io::Result<()> {
        self.file().write_all(records)
    }

    /// Renames the file to `target` and reopens a fresh file at the path, with no write in
    /// between. If the fresh file cannot be opened the rename is undone (as upstream does when
    /// the runtime cannot reopen the log).
    fn rotate_to(&self, target: &Path) -> std::io::Result<()> {
        let mut file = self.file();
        std::fs::rename(&self.path, target)?;
        match open_append(&self.path) {
            Ok(fresh) => {
                *file = fresh;
                Ok(())
            }
            Err(error) => {
                if let Err(back) = std::fs::rename(target, &self.path) {
                    tracing::warn!(log = %self.path.display(), error = %back, "renaming a rotated log back failed");
                }
                Err(error)
            }
        }
    }
}

/// Whether this process has a writer open on the log at `path` (its container runs).
pub fn is_open(path: &Path) -> bool {
    let Ok(key) = key(path) else {
        return false;
    };
    registry()
        .get(&key)
        .is_some_and(|writer| writer.strong_count() > 0)
}

/// Rotates the log at `path` to `target` through its open writer; `Ok(false)` when no writer
/// has it open (upstream rotates the logs of running containers only). Blocking.
pub fn rotate(path: &Path, target: &Path) -> std::io::Result<bool> {
    let key = key(path)?;
    let writer = registry().get(&key).and_then(Weak::upgrade);
    match writer {
        Some(writer) => writer.rotate_to(target).map(|()| true),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_of_one_path_are_shared_and_forgotten_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("ns_pod_uid/c/0.log");
        let stdout = LogWriter::open(&log).expect("open");
        let stderr = LogWriter::open(&dir.path().join("ns_pod_uid/c/../c/0.log")).expect("open");
        assert!(Arc::ptr_eq(&stdout, &stderr));
        stdout.write(b"a\n").expect("write");
        stderr.write(b"b\n").expect("write");
        assert_eq!(std::fs::read_to_string(&log).expect("log"), "a\nb\n");
        assert!(is_open(&log));
        drop((stdout, stderr));
        assert!(!is_open(&log));
        assert!(!rotate(&log, &dir.path().join("rotated")).expect("rotate"));
    }

    #[test]
    fn rotation_moves_the_file_and_later_writes_go_to_a_fresh_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("0.log");
        let writer = LogWriter::open(&log).expect("open");
        writer.write(b"before\n").expect("write");
        let target = dir.path().join("0.log.20261122-130000");
        assert!(rotate(&log, &target).expect("rotate"));
        writer.write(b"after\n").expect("write");
        assert_eq!(
            std::fs::read_to_string(&target).expect("rotated"),
            "before\n"
        );
        assert_eq!(std::fs::read_to_string(&log).expect("current"), "after\n");
    }
}
