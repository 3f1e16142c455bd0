//! Process I/O through FIFOs, and copying container output into CRI log files.
//!
//! Each container (and each exec) gets a directory of named pipes under the runtime's state
//! dir; containerd's shim opens their write side (read side for stdin). We open the read side
//! of stdout/stderr *before* `Tasks.Create`/`Tasks.Start` (the shim's open blocks until a
//! reader exists) and start reading only after, since a read before the shim connects would
//! see end-of-file. Stdin is opened read-write so the open never blocks; dropping it gives the
//! process end-of-file.
//!
//! Why FIFOs rather than the shim's `binary://` log URI: the kubelet stays the only process
//! that writes logs (no helper binary to install), and the same pipes serve attach.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::broadcast;

use crate::runtime::cri_log::{format_record, LineFramer, Stream};
use crate::runtime::log_writer::LogWriter;
use crate::runtime::RuntimeError;

/// How many output chunks an attached client may lag behind before losing some.
const ATTACH_BUFFER: usize = 256;
/// First size of a copier's read buffer: most containers write little, and a pod's two copiers
/// would otherwise hold 64 KiB between them for nothing.
const MIN_READ_BUFFER: usize = 1024;
/// Largest read buffer, reached by doubling while reads fill the buffer.
const MAX_READ_BUFFER: usize = 32 * 1024;

/// The attach listeners of one output stream. The channel (and its ring of slots) is created by
/// the first attach; until then the copier forwards nothing.
#[derive(Debug, Default)]
pub struct Listeners(OnceLock<broadcast::Sender<Bytes>>);

impl Listeners {
    /// No listeners yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stream's output from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        self.0
            .get_or_init(|| broadcast::channel(ATTACH_BUFFER).0)
            .subscribe()
    }

    /// Forwards a chunk to whoever is attached.
    fn send(&self, chunk: &[u8]) {
        let Some(tx) = self.0.get() else {
            return;
        };
        if tx.receiver_count() == 0 {
            return;
        }
        // Receivers may go between the check and the send: that is normal.
        if tx.send(Bytes::copy_from_slice(chunk)).is_err() {
            tracing::trace!("no attach listeners");
        }
    }
}

/// A read buffer that doubles while reads fill it and falls back to its first size when
/// the output calms down.
#[derive(Debug)]
struct ReadBuffer(Vec<u8>);

impl ReadBuffer {
    fn new() -> Self {
        Self(vec![0; MIN_READ_BUFFER])
    }

    /// Adjusts the size after a read of `n` bytes.
    fn after_read(&mut self, n: usize) {
        let len = self.0.len();
        if n == len && len < MAX_READ_BUFFER {
            self.0.resize(len * 2, 0);
        } else if n < MIN_READ_BUFFER && len > MIN_READ_BUFFER {
            self.0 = vec![0; MIN_READ_BUFFER];
        }
    }
}

/// Paths of one process's FIFOs (`None` = not connected, `/dev/null` for the shim).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FifoSet {
    /// The directory holding them.
    pub dir: PathBuf,
    /// stdin FIFO.
    pub stdin: Option<PathBuf>,
    /// stdout FIFO.
    pub stdout: Option<PathBuf>,
    /// stderr FIFO.
    pub stderr: Option<PathBuf>,
}

fn io_err(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.to_path_buf();
    move |source| RuntimeError::Io { step, path, source }
}

impl FifoSet {
    /// The FIFO paths in `dir` for the requested streams (not created).
    pub fn paths(dir: PathBuf, stdin: bool, stdout: bool, stderr: bool) -> Self {
        let path = |name: &str, wanted: bool| wanted.then(|| dir.join(name));
        Self {
            stdin: path("stdin", stdin),
            stdout: path("stdout", stdout),
            stderr: path("stderr", stderr),
            dir,
        }
    }

    /// Creates the directory and the FIFOs (replacing leftovers).
    pub fn create(&self) -> Result<(), RuntimeError> {
        std::fs::create_dir_all(&self.dir).map_err(io_err("creating fifo dir", &self.dir))?;
        for path in [&self.stdin, &self.stdout, &self.stderr]
            .into_iter()
            .flatten()
        {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing stale fifo", path)(e)),
            }
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|errno| io_err("creating fifo", path)(std::io::Error::from(errno)))?;
        }
        Ok(())
    }

    /// Whether the FIFOs exist (for reattaching after a restart).
    pub fn exists(&self) -> bool {
        [&self.stdin, &self.stdout, &self.stderr]
            .into_iter()
            .flatten()
            .all(|p| p.exists())
    }

    /// Removes the directory and everything in it; Ok if already gone.
    pub fn remove(&self) -> Result<(), RuntimeError> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing fifo dir", &self.dir)(e)),
        }
    }

    /// The path string containerd gets for a stream (`""` = not connected).
    pub fn uri(path: &Option<PathBuf>) -> String {
        path.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// Opens the read side of an output FIFO without blocking.
pub fn open_reader(path: &Path) -> Result<pipe::Receiver, RuntimeError> {
    pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(io_err("opening fifo for reading", path))
}

/// Opens the write side of an input FIFO without blocking (read-write, so no reader is needed).
pub fn open_writer(path: &Path) -> Result<pipe::Sender, RuntimeError> {
    pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(path)
        .map_err(io_err("opening fifo for writing", path))
}

/// The write side of a process's stdin FIFO. containerd's shim holds a writer of its own on
/// the FIFO, so closing ours is not end-of-file for the process: closing (shutdown or drop)
/// also runs `on_close`, which asks the shim to close its end (`Tasks.CloseIO`).
pub struct StdinWriter {
    inner: Option<pipe::Sender>,
    on_close: Option<Box<dyn FnOnce() + Send>>,
}

impl StdinWriter {
    /// Wraps `inner`; `on_close` runs once, after `inner` is closed.
    pub fn new(inner: pipe::Sender, on_close: impl FnOnce() + Send + 'static) -> Self {
        Self {
            inner: Some(inner),
            on_close: Some(Box::new(on_close)),
        }
    }

    fn close(&mut self) {
        self.inner = None;
        if let Some(on_close) = self.on_close.take() {
            on_close();
        }
    }
}

impl tokio::io::AsyncWrite for StdinWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(inner) => std::pin::Pin::new(inner).poll_write(cx, buf),
            None => std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => std::pin::Pin::new(inner).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.close();
        std::task::Poll::Ready(Ok(()))
    }
}

impl Drop for StdinWriter {
    fn drop(&mut self) {
        self.close();
    }
}

/// Opens the shared writer of the CRI log at `path` (see [`LogWriter`]).
async fn open_log(path: PathBuf) -> Result<Arc<LogWriter>, RuntimeError> {
    let opened = tokio::task::spawn_blocking(move || {
        LogWriter::open(&path).map_err(io_err("opening container log", &path))
    })
    .await;
    match opened {
        Ok(result) => result,
        Err(join) => Err(RuntimeError::Io {
            step: "opening container log",
            path: PathBuf::new(),
            source: std::io::Error::other(join),
        }),
    }
}

/// Copies a stream into the CRI log at `log_path` until end-of-file, and forwards the raw
/// bytes to attached listeners. Each read's records are written with one `write` through the
/// log's shared writer, so records of stdout and stderr never interleave and a rotation
/// (which renames the file and reopens it under the writer's lock) loses none.
pub async fn copy_to_log(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    log_path: PathBuf,
    listeners: Option<Arc<Listeners>>,
) {
    let log = match open_log(log_path.clone()).await {
        Ok(log) => Some(log),
        Err(err) => {
            tracing::warn!(path = %log_path.display(), error = %err, "container log unavailable");
            None
        }
    };
    let mut framer = LineFramer::new();
    let mut buf = ReadBuffer::new();
    loop {
        let n = match reader.read(&mut buf.0).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) => {
                tracing::warn!(stream = stream.as_str(), error = %err, "reading container output");
                break;
            }
        };
        if let Some(listeners) = &listeners {
            listeners.send(&buf.0[..n]);
        }
        let now = jiff::Timestamp::now();
        let records: Vec<u8> = framer
            .push(&buf.0[..n])
            .iter()
            .flat_map(|chunk| format_record(now, stream, chunk))
            .collect();
        write_records(&log, records).await;
        buf.after_read(n);
    }
    if let Some(chunk) = framer.finish() {
        let records = format_record(jiff::Timestamp::now(), stream, &chunk);
        write_records(&log, records).await;
    }
}

/// Writes on the blocking pool (as tokio's own file I/O does), waiting for the write so
/// that the stream's records stay in order.
async fn write_records(log: &Option<Arc<LogWriter>>, records: Vec<u8>) {
    let Some(log) = log else {
        return;
    };
    if records.is_empty() {
        return;
    }
    let writer = log.clone();
    let written = tokio::task::spawn_blocking(move || writer.write(&records))
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join)));
    if let Err(err) = written {
        tracing::warn!(path = %log.path().display(), error = %err, "writing container log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn copy_to_log_writes_cri_records_and_flushes_the_last_partial_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("pod/web/0.log");
        let input: &[u8] = b"hello\nworld\nno newline";
        copy_to_log(input, Stream::Stderr, log.clone(), None).await;
        let text = std::fs::read_to_string(&log).expect("log");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with(" stderr F hello"), "{}", lines[0]);
        assert!(lines[2].ends_with(" stderr F no newline"), "{}", lines[2]);
        assert!(crate::runtime::cri_log::parse_record(lines[1].as_bytes()).is_some());
    }

    #[test]
    fn read_buffer_grows_while_full_and_shrinks_when_calm() {
        let mut buf = ReadBuffer::new();
        buf.after_read(MIN_READ_BUFFER);
        assert_eq!(buf.0.len(), 2 * MIN_READ_BUFFER);
        for _ in 0..10 {
            let len = buf.0.len();
            buf.after_read(len);
        }
        assert_eq!(buf.0.len(), MAX_READ_BUFFER);
        buf.after_read(MIN_READ_BUFFER);
        assert_eq!(buf.0.len(), MAX_READ_BUFFER, "a medium read keeps it");
        buf.after_read(10);
        assert_eq!(buf.0.len(), MIN_READ_BUFFER);
    }

    #[tokio::test]
    async fn copy_to_log_forwards_output_to_attached_listeners_only_once_subscribed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listeners = std::sync::Arc::new(Listeners::new());
        let mut rx = listeners.subscribe();
        let input: &[u8] = b"hello\n";
        copy_to_log(
            input,
            Stream::Stdout,
            dir.path().join("log"),
            Some(listeners.clone()),
        )
        .await;
        assert_eq!(
            rx.try_recv().expect("chunk"),
            Bytes::from_static(b"hello\n")
        );
        let unattached = std::sync::Arc::new(Listeners::new());
        copy_to_log(
            input,
            Stream::Stdout,
            dir.path().join("log2"),
            Some(unattached.clone()),
        )
        .await;
        assert!(unattached.0.get().is_none(), "no channel without an attach");
    }

    #[tokio::test]
    async fn copy_to_log_keeps_long_lines_whole_across_small_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let long = "x".repeat(3 * MAX_READ_BUFFER);
        let input = format!("{long}\nshort\n");
        copy_to_log(input.as_bytes(), Stream::Stdout, log.clone(), None).await;
        let text = std::fs::read_to_string(&log).expect("log");
        let content: String = text
            .lines()
            .filter_map(|l| crate::runtime::cri_log::parse_record(l.as_bytes()))
            .map(|r| String::from_utf8_lossy(r.content).into_owned())
            .collect();
        assert_eq!(content, format!("{long}short"));
    }

    #[tokio::test]
    async fn fifo_set_creates_pipes_that_carry_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifos = FifoSet::paths(dir.path().join("c1"), true, true, false);
        fifos.create().expect("create");
        assert!(fifos.exists());
        let stdout = fifos.stdout.clone().expect("stdout");
        let reader = open_reader(&stdout).expect("reader");
        let mut writer = pipe::OpenOptions::new()
            .open_sender(&stdout)
            .expect("writer");
        writer.write_all(b"line\n").await.expect("write");
        drop(writer);
        let log = dir.path().join("log");
        copy_to_log(reader, Stream::Stdout, log.clone(), None).await;
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(text.ends_with(" stdout F line\n"), "{text:?}");
        fifos.remove().expect("remove");
        fifos.remove().expect("remove twice");
    }
}
