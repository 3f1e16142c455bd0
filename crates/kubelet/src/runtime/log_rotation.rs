//! Container log rotation by size, as upstream's container log manager does it: every
//! [`ROTATION_PERIOD`] each log of a running container
//! (`<pod-logs-dir>/<ns>_<pod>_<uid>/<container>/<n>.log`) larger than
//! `--container-log-max-size` is renamed to `<n>.log.<YYYYMMDD-hhmmss>` and a fresh `<n>.log`
//! is opened in its place, older rotated files are gzip-compressed (`.gz`), and at most
//! `--container-log-max-files` files (the current one included) are kept. `kubectl logs` keeps
//! reading `<n>.log`.
//!
//! The rename and the reopen happen under the log writer's lock ([`log_writer`]), so a record
//! written during a rotation lands in exactly one file, in order. Logs with no writer open
//! (exited containers) are left alone, as upstream rotates running containers only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;

use crate::runtime::log_writer;

/// How often logs are checked.
pub const ROTATION_PERIOD: Duration = Duration::from_secs(10);
/// `--container-log-max-size` default (10Mi).
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// `--container-log-max-files` default.
pub const DEFAULT_MAX_FILES: usize = 5;

/// Parses `--container-log-max-size` (a quantity: `10Mi`, `500Ki`, `1G`, `1048576`).
pub fn parse_size(value: &str) -> Result<u64, String> {
    crate::pod::resources::parse_scaled(value, 1.0)
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("invalid container log max size {value:?}"))
}

/// The rotation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// Rotate a log once it is larger than this many bytes.
    pub max_size: u64,
    /// Keep at most this many files per log (the current one included; at least 2).
    pub max_files: usize,
}

impl Default for LogRotation {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// `<path>.<YYYYMMDD-hhmmss>` (UTC), as upstream names rotated logs.
pub fn rotated_name(path: &Path, at: Timestamp) -> PathBuf {
    let stamp = at.strftime("%Y%m%d-%H%M%S").to_string();
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{stamp}"));
    PathBuf::from(name)
}

/// The rotated files of `path` (compressed or not), oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", base.to_string_lossy());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    name.strip_prefix(&prefix)
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                        && !name.ends_with(".tmp")
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    // The timestamps sort as text.
    files.sort();
    files
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// gzip-compresses `path` to `<path>.gz` and removes the original.
fn compress(path: &Path) -> std::io::Result<()> {
    let mut target = path.as_os_str().to_owned();
    target.push(".gz");
    let target = PathBuf::from(target);
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut input = std::fs::File::open(path)?;
    let output = std::fs::File::create(&tmp)?;
    let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
    std::io::copy(&mut input, &mut encoder)?;
    encoder.finish()?.flush()?;
    std::fs::rename(&tmp, &target)?;
    remove(path)
}

impl LogRotation {
    /// Rotates the log at `path` if it is over the size limit and a writer has it open: drops
    /// the oldest rotated files beyond the limit, compresses the older ones and renames the
    /// current file to a new rotated one, the writer reopening `path`. Returns the new rotated
    /// file, if any.
    pub fn rotate(&self, path: &Path, now: Timestamp) -> std::io::Result<Option<PathBuf>> {
        let size = match std::fs::metadata(path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if size <= self.max_size {
            return Ok(None);
        }
        if !log_writer::is_open(path) {
            return Ok(None);
        }
        // After this rotation: the current file plus `max_files - 1` rotated ones.
        let keep = self.max_files.max(2) - 2;
        let rotated = rotated_files(path);
        let excess = rotated.len().saturating_sub(keep);
        for old in &rotated[..excess] {
            remove(old)?;
        }
        for old in &rotated[excess..] {
            if old.extension().is_none_or(|e| e != "gz") {
                compress(old)?;
            }
        }
        let target = rotated_name(path, now);
        if log_writer::rotate(path, &target)? {
            Ok(Some(target))
        } else {
            // The container stopped meanwhile.
            Ok(None)
        }
    }

    /// Rotates every container log under `pod_logs_dir` that needs it; returns how many were
    /// rotated. Failures are logged per file.
    pub fn rotate_all(&self, pod_logs_dir: &Path, now: Timestamp) -> usize {
        let mut rotated = 0;
        for log in container_logs(pod_logs_dir) {
            match self.rotate(&log, now) {
                Ok(Some(target)) => {
                    tracing::info!(log = %log.display(), rotated = %target.display(), "container log rotated");
                    rotated += 1;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(log = %log.display(), %error, "rotating container log failed")
                }
            }
        }
        rotated
    }

    /// Checks the logs under `pod_logs_dir` every [`ROTATION_PERIOD`], forever.
    pub async fn run(self, pod_logs_dir: PathBuf) {
        let mut tick = tokio::time::interval(ROTATION_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let dir = pod_logs_dir.clone();
            let policy = self;
            let done =
                tokio::task::spawn_blocking(move || policy.rotate_all(&dir, Timestamp::now()))
                    .await;
            if let Err(error) = done {
                tracing::warn!(%error, "log rotation task failed");
            }
        }
    }
}

/// Every `<n>.log` file two levels below `pod_logs_dir`.
pub fn container_logs(pod_logs_dir: &Path) -> Vec<PathBuf> {
    let dirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut logs = Vec::new();
    for pod in dirs(pod_logs_dir) {
        for container in dirs(&pod) {
            let Ok(entries) = std::fs::read_dir(&container) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().to_string();
                if name
                    .strip_suffix(".log")
                    .is_some_and(|n| n.parse::<u64>().is_ok())
                {
                    logs.push(entry.path());
                }
            }
        }
    }
    logs.sort();
    logs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::log_writer::LogWriter;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn sizes_parse_as_quantities() {
        assert_eq!(parse_size("10Mi"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1k"), Ok(1000));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn rotated_names_carry_an_upstream_timestamp() {
        assert_eq!(
            rotated_name(Path::new("/logs/p/c/0.log"), at("2026-11-22T13:04:05Z")),
            PathBuf::from("/logs/p/c/0.log.20261122-130405")
        );
    }

    /// The text of a rotated or current log file, gunzipped if need be.
    fn read_log(path: &Path) -> String {
        let mut text = String::new();
        let file = std::fs::File::open(path).expect("open log");
        if path.extension().is_some_and(|e| e == "gz") {
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(file), &mut text)
                .expect("gunzip");
        } else {
            std::io::Read::read_to_string(&mut { file }, &mut text).expect("read");
        }
        text
    }

    #[test]
    fn a_log_over_the_limit_is_rotated_compressed_and_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let container = dir.path().join("default_web_uid/httpd");
        let log = container.join("0.log");
        let writer = LogWriter::open(&log).expect("writer");
        let policy = LogRotation {
            max_size: 10,
            max_files: 3,
        };
        writer.write(b"short\n").expect("write");
        assert_eq!(policy.rotate_all(dir.path(), at("2026-11-22T13:00:00Z")), 0);
        let stamps = [
            "2026-11-22T13:00:01Z",
            "2026-11-22T13:00:02Z",
            "2026-11-22T13:00:03Z",
        ];
        for (i, stamp) in stamps.iter().enumerate() {
            writer
                .write(format!("line number {i} is long\n").as_bytes())
                .expect("write");
            assert_eq!(policy.rotate_all(dir.path(), at(stamp)), 1);
            assert_eq!(std::fs::metadata(&log).expect("current").len(), 0);
        }
        // Current + 2 rotated: the oldest went, the older one is compressed.
        let names: Vec<String> = rotated_files(&log)
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names,
            vec!["0.log.20261122-130002.gz", "0.log.20261122-130003"]
        );
        assert_eq!(
            read_log(&container.join("0.log.20261122-130003")),
            "line number 2 is long\n"
        );
        assert_eq!(
            read_log(&container.join("0.log.20261122-130002.gz")),
            "line number 1 is long\n"
        );
        // The log reader still finds only the current file, which the writer still fills.
        assert_eq!(container_logs(dir.path()), vec![log.clone()]);
        writer.write(b"after\n").expect("write");
        assert_eq!(read_log(&log), "after\n");
    }

    #[test]
    fn logs_without_a_writer_are_left_alone_as_upstream_rotates_running_containers_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("default_done_uid/main/0.log");
        std::fs::create_dir_all(log.parent().expect("dir")).expect("mkdir");
        std::fs::write(&log, "a line longer than the limit\n").expect("write");
        let policy = LogRotation {
            max_size: 4,
            max_files: 2,
        };
        assert_eq!(policy.rotate_all(dir.path(), at("2026-11-22T13:00:00Z")), 0);
        assert_eq!(read_log(&log), "a line longer than the limit\n");
        assert!(rotated_files(&log).is_empty());
    }

    #[test]
    fn every_line_written_during_rotations_lands_in_exactly_one_file_in_order() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("default_busy_uid/main/0.log");
        let stop = Arc::new(AtomicBool::new(false));
        // Two writers (as a container's stdout and stderr copiers), each numbering its lines.
        let writers: Vec<_> = ["out", "err"]
            .into_iter()
            .map(|stream| {
                let writer = LogWriter::open(&log).expect("writer");
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        writer
                            .write(format!("{stream} {n}\n").as_bytes())
                            .expect("write");
                        n += 1;
                        // Pause now and then, as a copier waits for output: a thread that
                        // retakes the lock at once would starve the rotation.
                        if n.is_multiple_of(8) {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                    }
                    n
                })
            })
            .collect();
        let policy = LogRotation {
            max_size: 2000,
            max_files: 100,
        };
        let start: Timestamp = at("2026-11-22T13:00:00Z");
        let mut rotations = 0i64;
        while rotations < 20 {
            let now = start + jiff::SignedDuration::from_secs(rotations);
            if policy.rotate(&log, now).expect("rotate").is_some() {
                rotations += 1;
            } else {
                std::thread::yield_now();
            }
        }
        stop.store(true, Ordering::Relaxed);
        let written: Vec<u64> = writers
            .into_iter()
            .map(|w| w.join().expect("writer thread"))
            .collect();

        let mut files = rotated_files(&log);
        assert_eq!(files.len(), 20, "{files:?}");
        files.push(log.clone());
        let mut next = [0u64, 0u64];
        for file in &files {
            for line in read_log(file).lines() {
                let (stream, n) = line.split_once(' ').expect("numbered line");
                let i = usize::from(stream == "err");
                let n: u64 = n.parse().expect("number");
                assert_eq!(
                    n,
                    next[i],
                    "{stream} line {n} out of order in {}",
                    file.display()
                );
                next[i] += 1;
            }
        }
        assert_eq!(next.to_vec(), written, "lines lost or duplicated");
    }
}
