//! `GET /containerLogs/{namespace}/{pod}/{container}`: reads the CRI log files the runtime
//! writes (`<pod-logs-dir>/<ns>_<pod>_<uid>/<container>/<restartCount>.log`) and serves the
//! content as text, honouring `follow`, `tailLines`, `timestamps`, `sinceSeconds`/`sinceTime`,
//! `limitBytes` and `previous` as upstream does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::query::{first, flag};
use crate::runtime::cri_log::parse_record;

/// How often a followed log is polled for new output.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The options of one log request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming while the container runs.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only lines at or after this time.
    pub since: Option<Timestamp>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
    /// The previous instance's log.
    pub previous: bool,
}

impl LogOptions {
    /// Parses the query parameters; `now` anchors `sinceSeconds`.
    pub fn from_query(pairs: &[(String, String)], now: Timestamp) -> Result<Self, String> {
        let number = |key: &str| -> Result<Option<i64>, String> {
            match first(pairs, key) {
                None | Some("") => Ok(None),
                Some(v) => v
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| format!("invalid {key}: {v:?}")),
            }
        };
        let tail_lines = match number("tailLines")? {
            Some(n) if n < 0 => None,
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => None,
        };
        let mut since = None;
        if let Some(seconds) = number("sinceSeconds")? {
            if seconds < 1 {
                return Err("sinceSeconds must be greater than 0".into());
            }
            since = now
                .checked_sub(jiff::SignedDuration::from_secs(seconds))
                .ok();
        }
        if let Some(time) = first(pairs, "sinceTime").filter(|t| !t.is_empty()) {
            since = Some(
                time.parse()
                    .map_err(|_| format!("invalid sinceTime: {time:?}"))?,
            );
        }
        let limit_bytes = match number("limitBytes")? {
            Some(n) if n < 1 => return Err("limitBytes must be greater than 0".into()),
            Some(n) => Some(u64::try_from(n).unwrap_or(u64::MAX)),
            None => None,
        };
        Ok(Self {
            follow: flag(pairs, "follow", false),
            tail_lines,
            timestamps: flag(pairs, "timestamps", false),
            since,
            limit_bytes,
            previous: flag(pairs, "previous", false),
        })
    }
}

/// The log files of a container directory, ordered by restart count.
pub fn log_files(container_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(container_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    let n = name.strip_suffix(".log")?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The file to read: the newest, or the one before it for `previous`.
pub fn select_file(container_dir: &Path, previous: bool) -> Option<PathBuf> {
    let mut files = log_files(container_dir);
    let newest = files.pop()?;
    if previous {
        files.pop().map(|(_, p)| p)
    } else {
        Some(newest.1)
    }
}

/// Byte offset where the last `n` lines of `data` begin.
pub fn tail_start(data: &[u8], n: usize) -> usize {
    if n == 0 {
        return data.len();
    }
    let mut seen = 0;
    // Skip a final newline: it ends the last line rather than starting a new one.
    let end = if data.last() == Some(&b'\n') {
        data.len() - 1
    } else {
        data.len()
    };
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

/// Renders the complete records in `data` into `out`; returns how many bytes of `data` were
/// consumed (an unterminated last line is left for later) and whether the byte limit was hit.
pub fn render(
    data: &[u8],
    options: &LogOptions,
    written: &mut u64,
    out: &mut Vec<u8>,
) -> (usize, bool) {
    let mut consumed = 0;
    while let Some(newline) = data[consumed..].iter().position(|b| *b == b'\n') {
        let line = &data[consumed..consumed + newline];
        consumed += newline + 1;
        let Some(record) = parse_record(line) else {
            continue;
        };
        if options.since.is_some_and(|since| record.timestamp < since) {
            continue;
        }
        let mut rendered = Vec::with_capacity(record.content.len() + 40);
        if options.timestamps {
            let raw = line.split(|b| *b == b' ').next().unwrap_or_default();
            rendered.extend_from_slice(raw);
            rendered.push(b' ');
        }
        rendered.extend_from_slice(record.content);
        if !record.partial {
            rendered.push(b'\n');
        }
        if let Some(limit) = options.limit_bytes {
            let room = usize::try_from(limit.saturating_sub(*written)).unwrap_or(usize::MAX);
            if rendered.len() >= room {
                out.extend_from_slice(&rendered[..room]);
                *written += room as u64;
                return (consumed, true);
            }
        }
        *written += rendered.len() as u64;
        out.extend_from_slice(&rendered);
    }
    (consumed, false)
}

/// Reads a whole log at once (no follow).
pub async fn read_all(path: &Path, options: &LogOptions) -> std::io::Result<Vec<u8>> {
    let data = tokio::fs::read(path).await?;
    let start = options
        .tail_lines
        .map(|n| tail_start(&data, n))
        .unwrap_or(0);
    let mut out = Vec::new();
    let mut written = 0;
    render(&data[start..], options, &mut written, &mut out);
    Ok(out)
}

/// Streams a log: what is there (after `tailLines`), then new output while `running` says the
/// container still runs. Chunks arrive on the returned channel; it closes at the end.
pub fn follow(
    path: PathBuf,
    options: LogOptions,
    running: impl Fn() -> BoxFuture<'static, bool> + Send + 'static,
) -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) => {
                let _closed = tx.send(Err(error)).await;
                return;
            }
        };
        let mut pending: Vec<u8> = Vec::new();
        let mut written = 0u64;
        // Initial content, with the tail applied.
        let mut initial = Vec::new();
        if let Err(error) = file.read_to_end(&mut initial).await {
            let _closed = tx.send(Err(error)).await;
            return;
        }
        let start = options
            .tail_lines
            .map(|n| tail_start(&initial, n))
            .unwrap_or(0);
        pending.extend_from_slice(&initial[start..]);
        let mut finishing = false;
        loop {
            let mut out = Vec::new();
            let (consumed, limited) = render(&pending, &options, &mut written, &mut out);
            pending.drain(..consumed);
            if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                return; // the client went away
            }
            if limited || finishing || tx.is_closed() {
                return;
            }
            let mut buf = Vec::new();
            match file.read_to_end(&mut buf).await {
                Ok(0) => {
                    match rotated_away(&path, &file).await {
                        Ok(Some(fresh)) => {
                            // The rest of the old file, then the new one from its start.
                            if let Err(error) = file.read_to_end(&mut pending).await {
                                let _closed = tx.send(Err(error)).await;
                                return;
                            }
                            file = fresh;
                            continue;
                        }
                        Ok(None) => {}
                        Err(error) => {
                            let _closed = tx.send(Err(error)).await;
                            return;
                        }
                    }
                    if !running().await {
                        // One last read for output written just before the exit.
                        finishing = true;
                        if let Err(error) = file.read_to_end(&mut pending).await {
                            let _closed = tx.send(Err(error)).await;
                            return;
                        }
                        continue;
                    }
                    tokio::time::sleep(FOLLOW_POLL).await;
                }
                Ok(_) => pending.extend_from_slice(&buf),
                Err(error) => {
                    let _closed = tx.send(Err(error)).await;
                    return;
                }
            }
            // The file may have been truncated in place (by hand: rotation renames it).
            if let (Ok(meta), Ok(pos)) = (file.metadata().await, file.stream_position().await) {
                if meta.len() < pos {
                    if let Err(error) = file.seek(std::io::SeekFrom::Start(0)).await {
                        let _closed = tx.send(Err(error)).await;
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// The file now at `path` when log rotation renamed the one `file` reads (`None` while the
/// path still names it, or names nothing for the instant between the rename and the reopen).
async fn rotated_away(
    path: &Path,
    file: &tokio::fs::File,
) -> std::io::Result<Option<tokio::fs::File>> {
    use std::os::unix::fs::MetadataExt;
    let same =
        |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    let reading = file.metadata().await?;
    match tokio::fs::metadata(path).await {
        Ok(now) if same(&now, &reading) => return Ok(None),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    match tokio::fs::File::open(path).await {
        Ok(fresh) => Ok(Some(fresh)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::query::pairs;

    const LOG: &str = "2026-11-22T04:00:00.000000001Z stdout F one\n\
2026-11-22T04:00:01.000000000Z stderr F two\n\
2026-11-22T04:00:02.000000000Z stdout P thr\n\
2026-11-22T04:00:02.000000001Z stdout F ee\n\
2026-11-22T04:00:03.000000000Z stdout F four\n";

    fn opts(query: &str) -> LogOptions {
        LogOptions::from_query(
            &pairs(Some(query)),
            "2026-11-22T04:00:04Z".parse().expect("now"),
        )
        .expect("options")
    }

    fn render_all(options: &LogOptions) -> String {
        let data = LOG.as_bytes();
        let start = options.tail_lines.map(|n| tail_start(data, n)).unwrap_or(0);
        let mut out = Vec::new();
        render(&data[start..], options, &mut 0, &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn plain_logs_join_partial_records() {
        assert_eq!(render_all(&opts("")), "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn tail_lines_counts_records_from_the_end() {
        assert_eq!(render_all(&opts("tailLines=1")), "four\n");
        assert_eq!(render_all(&opts("tailLines=2")), "ee\nfour\n");
        assert_eq!(render_all(&opts("tailLines=0")), "");
        assert_eq!(
            render_all(&opts("tailLines=100")),
            "one\ntwo\nthree\nfour\n"
        );
    }

    #[test]
    fn timestamps_prefix_every_record() {
        assert!(render_all(&opts("timestamps=true")).starts_with(
            "2026-11-22T04:00:00.000000001Z one\n2026-11-22T04:00:01.000000000Z two\n"
        ));
    }

    #[test]
    fn since_seconds_skips_older_lines() {
        assert_eq!(render_all(&opts("sinceSeconds=2")), "three\nfour\n");
        assert_eq!(
            render_all(&opts("sinceTime=2026-11-22T04:00:03Z")),
            "four\n"
        );
    }

    #[test]
    fn limit_bytes_cuts_the_output() {
        assert_eq!(render_all(&opts("limitBytes=6")), "one\ntw");
    }

    #[test]
    fn bad_parameters_are_rejected() {
        let now = "2026-11-22T04:00:04Z".parse().expect("now");
        assert!(LogOptions::from_query(&pairs(Some("tailLines=x")), now).is_err());
        assert!(LogOptions::from_query(&pairs(Some("limitBytes=0")), now).is_err());
    }

    #[test]
    fn previous_selects_the_older_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        for n in [0, 1, 10, 2] {
            std::fs::write(dir.path().join(format!("{n}.log")), "").expect("write");
        }
        assert!(select_file(dir.path(), false)
            .expect("newest")
            .ends_with("10.log"));
        assert!(select_file(dir.path(), true)
            .expect("previous")
            .ends_with("2.log"));
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(select_file(empty.path(), false).is_none());
    }

    #[tokio::test]
    async fn follow_streams_new_lines_until_the_container_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2026-11-22T04:00:00Z stdout F first\n").expect("write");
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = running.clone();
        let mut rx = follow(path.clone(), LogOptions::default(), move || {
            let flag = flag.clone();
            Box::pin(async move { flag.load(std::sync::atomic::Ordering::SeqCst) })
        });
        assert_eq!(rx.recv().await.expect("chunk").expect("ok"), "first\n");
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        file.write_all(b"2026-11-22T04:00:01Z stdout F second\n")
            .expect("append");
        assert_eq!(rx.recv().await.expect("chunk").expect("ok"), "second\n");
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn follow_moves_to_the_fresh_file_after_a_rotation_and_loses_no_line() {
        use crate::runtime::log_writer::{self, LogWriter};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let writer = LogWriter::open(&path).expect("writer");
        let record = |n: usize| format!("2026-11-22T04:00:00Z stdout F line {n}\n");
        writer.write(record(0).as_bytes()).expect("write");
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = running.clone();
        let mut rx = follow(path.clone(), LogOptions::default(), move || {
            let flag = flag.clone();
            Box::pin(async move { flag.load(std::sync::atomic::Ordering::SeqCst) })
        });
        // The follower reads the first file before any rotation.
        let mut seen =
            String::from_utf8(rx.recv().await.expect("chunk").expect("ok").to_vec()).expect("utf8");
        assert_eq!(seen, "line 0\n");
        let mut want = 1;
        // Each rotation with a line written just before it (left in the renamed file) and one
        // just after (in the fresh file); the follower must show both, in order.
        for rotation in 0..3 {
            writer.write(record(want).as_bytes()).expect("write");
            want += 1;
            let target = dir.path().join(format!("0.log.2026112{rotation}-000000"));
            assert!(log_writer::rotate(&path, &target).expect("rotate"));
            writer.write(record(want).as_bytes()).expect("write");
            want += 1;
            let expected: String = (0..want).map(|n| format!("line {n}\n")).collect();
            while seen.len() < expected.len() {
                let chunk = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .expect("more output")
                    .expect("chunk")
                    .expect("ok");
                seen.push_str(std::str::from_utf8(&chunk).expect("utf8"));
            }
            assert_eq!(seen, expected);
        }
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(rx.recv().await.is_none());
    }
}
