//! The audit log backend (`--audit-log-path`, `-` = standard output): events go through a
//! bounded channel to a writer thread, so a slow disk never blocks a request; when the channel is
//! full the event is dropped and counted. With `--audit-log-maxsize` the file is rotated to
//! `<name>-<timestamp>.<ext>` once it would exceed that many megabytes, keeping at most
//! `--audit-log-maxbackup` rotated files (0 = all).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;

use super::event::Event;

/// How many events may wait for the writer before new ones are dropped.
pub const BUFFER_SIZE: usize = 10_000;

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The log file could not be opened.
    #[error("opening audit log {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("starting the audit log writer: {0}")]
    Thread(#[source] std::io::Error),
}

/// Where and how to write the log.
#[derive(Clone, Debug, PartialEq)]
pub struct WriterConfig {
    /// The log file, or `-` for standard output.
    pub path: PathBuf,
    /// Rotate once the file would exceed this many megabytes (0 = never).
    pub max_size_mb: u64,
    /// Keep at most this many rotated files (0 = all).
    pub max_backup: usize,
}

/// The sending side of the audit log: cheap to call from request handlers.
#[derive(Debug)]
pub struct AuditWriter {
    tx: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

enum Sink {
    Stdout(std::io::Stdout),
    File {
        out: BufWriter<File>,
        path: PathBuf,
        size: u64,
    },
}

fn open(path: &Path) -> Result<(BufWriter<File>, u64), WriterError> {
    let open_error = |source| WriterError::Open {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(open_error)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(open_error)?;
    let size = file.metadata().map_err(open_error)?.len();
    Ok((BufWriter::new(file), size))
}

impl AuditWriter {
    /// Opens the log (failing now when it cannot be opened) and starts the writer thread.
    pub fn start(config: WriterConfig) -> Result<Self, WriterError> {
        Self::with_capacity(config, BUFFER_SIZE)
    }

    /// Like [`AuditWriter::start`] with a channel of `capacity` events.
    pub fn with_capacity(config: WriterConfig, capacity: usize) -> Result<Self, WriterError> {
        let sink = if config.path.as_os_str() == "-" {
            Sink::Stdout(std::io::stdout())
        } else {
            let (out, size) = open(&config.path)?;
            Sink::File {
                out,
                path: config.path.clone(),
                size,
            }
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run(rx, sink, &config))
            .map_err(WriterError::Thread)?;
        Ok(AuditWriter {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues `event`; drops it (and counts the drop) when the writer is behind.
    pub fn write(&self, event: &Event) {
        let mut line = match serde_json::to_vec(event) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(%error, "serializing an audit event");
                return;
            }
        };
        line.push(b'\n');
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "audit log is behind: dropping audit events");
                }
            }
        }
    }

    /// How many events were dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn run(rx: Receiver<Vec<u8>>, mut sink: Sink, config: &WriterConfig) {
    loop {
        let line = match rx.try_recv() {
            Ok(line) => line,
            Err(TryRecvError::Empty) => {
                flush(&mut sink);
                match rx.recv() {
                    Ok(line) => line,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        if let Err(error) = write_line(&mut sink, &line, config) {
            tracing::error!(%error, "writing the audit log");
        }
    }
    flush(&mut sink);
}

fn flush(sink: &mut Sink) {
    let result = match sink {
        Sink::Stdout(out) => out.flush(),
        Sink::File { out, .. } => out.flush(),
    };
    if let Err(error) = result {
        tracing::error!(%error, "flushing the audit log");
    }
}

fn write_line(sink: &mut Sink, line: &[u8], config: &WriterConfig) -> std::io::Result<()> {
    match sink {
        Sink::Stdout(out) => out.write_all(line),
        Sink::File { out, path, size } => {
            let limit = config.max_size_mb.saturating_mul(1024 * 1024);
            if limit > 0 && *size > 0 && *size + line.len() as u64 > limit {
                out.flush()?;
                rotate(path, config.max_backup)?;
                let (reopened, new_size) = open(path).map_err(std::io::Error::other)?;
                *out = reopened;
                *size = new_size;
            }
            out.write_all(line)?;
            *size += line.len() as u64;
            Ok(())
        }
    }
}

/// `<stem>-` and `.<ext>` of rotated copies of `path`.
fn backup_affixes(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (format!("{stem}-"), ext)
}

fn rotate(path: &Path, max_backup: usize) -> std::io::Result<()> {
    let (prefix, suffix) = backup_affixes(path);
    let stamp = jiff::Timestamp::now().strftime("%Y-%m-%dT%H-%M-%S%.3f");
    let mut backup = path.with_file_name(format!("{prefix}{stamp}{suffix}"));
    let mut n = 1;
    while backup.exists() {
        backup = path.with_file_name(format!("{prefix}{stamp}-{n}{suffix}"));
        n += 1;
    }
    std::fs::rename(path, &backup)?;
    if max_backup == 0 {
        return Ok(());
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| {
            p != path
                && p.file_name().is_some_and(|name| {
                    let name = name.to_string_lossy();
                    name.starts_with(&prefix) && name.ends_with(&suffix)
                })
        })
        .collect();
    backups.sort();
    let excess = backups.len().saturating_sub(max_backup);
    for old in backups.into_iter().take(excess) {
        std::fs::remove_file(&old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{now, UserInfo};
    use crate::audit::policy::{Level, Stage};

    fn event(i: usize) -> Event {
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: Level::Metadata,
            audit_id: format!("id-{i}"),
            stage: Stage::ResponseComplete,
            request_uri: "/api".into(),
            verb: "get".into(),
            user: UserInfo::default(),
            impersonated_user: None,
            source_ips: vec![],
            user_agent: String::new(),
            object_ref: None,
            response_status: None,
            request_object: None,
            response_object: None,
            request_received_timestamp: now(),
            stage_timestamp: now(),
            annotations: Default::default(),
        }
    }

    fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
        for _ in 0..500 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= n {
                return lines;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the audit log never reached {n} lines");
    }

    #[test]
    fn writes_json_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/audit.log");
        let writer = AuditWriter::start(WriterConfig {
            path: path.clone(),
            max_size_mb: 0,
            max_backup: 0,
        })
        .expect("starts");
        for i in 0..3 {
            writer.write(&event(i));
        }
        let lines = wait_for_lines(&path, 3);
        let ids: Vec<String> = lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                v["auditID"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        assert_eq!(ids, ["id-0", "id-1", "id-2"]);
        assert_eq!(writer.dropped(), 0);
    }

    #[test]
    fn a_full_channel_drops_and_counts() {
        // A disconnected writer stands for one that never catches up.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        drop(rx);
        let writer = AuditWriter {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        writer.write(&event(0));
        writer.write(&event(1));
        assert_eq!(writer.dropped(), 2);
    }

    #[test]
    fn rotation_keeps_max_backup_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let config = WriterConfig {
            path: path.clone(),
            max_size_mb: 1,
            max_backup: 2,
        };
        let (out, size) = open(&path).expect("opens");
        let mut sink = Sink::File {
            out,
            path: path.clone(),
            size,
        };
        let line = vec![b'x'; 400 * 1024];
        for _ in 0..12 {
            write_line(&mut sink, &line, &config).expect("writes");
        }
        flush(&mut sink);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("lists")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(std::fs::metadata(&path).expect("current log").len() <= 1024 * 1024);
    }

    #[test]
    fn an_unwritable_path_fails_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("writes");
        let result = AuditWriter::start(WriterConfig {
            path: file.join("audit.log"),
            max_size_mb: 0,
            max_backup: 0,
        });
        assert!(result.is_err());
    }
}
