//! `exec` and `attach` over SPDY/3.1 (the remotecommand protocol client-go speaks when
//! WebSockets are turned off): the client offers `X-Stream-Protocol-Version` values
//! (`v4.channel.k8s.io`, `v3.channel.k8s.io`, `v2.channel.k8s.io`, `channel.k8s.io`), the server
//! answers `101` with the one it chose, and the client opens one SPDY stream per purpose, named by
//! its `streamtype` header: `error`, `stdin`, `stdout`, `stderr` and (v3 and later, with a tty)
//! `resize`. stdin bytes go to the process (a FIN closes its stdin), the process output goes out on
//! the `stdout`/`stderr` streams (finished with FIN when the output ends), resize messages are
//! JSON objects `{"Width":..,"Height":..}` one per line. When the process ends, v4 writes a
//! `Status` (`Success`, or `Failure` / `NonZeroExitCode`) to the error stream; older versions write
//! only a failure's message. Then the error stream is finished and the connection closed.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::spdy::{self, Frame, HeaderInflater};
use super::stream;
use crate::runtime::{ExecSession, RuntimeError, TerminalSize};

/// The protocols this server speaks, most preferred first.
pub const PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// Bytes read from the process per DATA frame.
const CHUNK: usize = 32 * 1024;
/// Largest pending (not yet newline-terminated) resize message kept.
const MAX_RESIZE_MESSAGE: usize = 4096;

fn header_tokens(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .filter(|p| !p.is_empty())
        .collect()
}

/// Whether the request asks for a SPDY/3.1 upgrade.
pub fn is_spdy(headers: &HeaderMap) -> bool {
    header_tokens(headers, "upgrade")
        .iter()
        .any(|t| t.eq_ignore_ascii_case("SPDY/3.1"))
}

/// The protocol to speak given the client's `X-Stream-Protocol-Version` offers: `Ok(None)` when
/// the client offers none (the original protocol), `Err` with the refusal message when none of
/// its offers is supported.
pub fn negotiate(headers: &HeaderMap) -> Result<Option<&'static str>, String> {
    let offered = header_tokens(headers, "x-stream-protocol-version");
    if offered.is_empty() {
        return Ok(None);
    }
    PROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
        .map(Some)
        .ok_or_else(|| {
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {PROTOCOLS:?}"
            )
        })
}

/// The `101 Switching Protocols` answer.
pub fn switching_protocols<B: Default>(protocol: Option<&'static str>) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    out.insert(http::header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if let Some(protocol) = protocol {
        out.insert(
            "x-stream-protocol-version",
            HeaderValue::from_static(protocol),
        );
    }
    response
}

/// What goes to the error stream: v4 a JSON `Status` always, older versions only a failure's
/// message.
fn error_payload(protocol: Option<&str>, status: &Value) -> Option<Vec<u8>> {
    if protocol == Some(PROTOCOLS[0]) {
        return Some(status.to_string().into_bytes());
    }
    if status["status"] == "Success" {
        return None;
    }
    Some(
        status["message"]
            .as_str()
            .unwrap_or("error executing command")
            .as_bytes()
            .to_vec(),
    )
}

/// Parses the complete lines of a resize stream buffer, leaving an incomplete tail in place.
fn take_resizes(buffer: &mut Vec<u8>) -> Vec<TerminalSize> {
    let mut sizes = Vec::new();
    while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = buffer.drain(..=end).collect();
        let Ok(size) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        let dim = |k: &str| {
            size[k]
                .as_u64()
                .and_then(|v| u16::try_from(v).ok())
                .unwrap_or(0)
        };
        sizes.push(TerminalSize {
            width: dim("Width"),
            height: dim("Height"),
        });
    }
    if buffer.len() > MAX_RESIZE_MESSAGE {
        buffer.clear();
    }
    sizes
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Sends `reader`'s bytes on `stream_id` once the client has opened it, then finishes it.
async fn pump(
    mut reader: Box<dyn AsyncRead + Send + Unpin>,
    stream_id: oneshot::Receiver<u32>,
    out: mpsc::Sender<Frame>,
) {
    let Ok(stream_id) = stream_id.await else {
        return;
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let frame = Frame::Data {
                    stream_id,
                    fin: false,
                    data: Bytes::copy_from_slice(&buf[..n]),
                };
                if out.send(frame).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::debug!(%error, stream_id, "output read ended");
                break;
            }
        }
    }
    let fin = Frame::Data {
        stream_id,
        fin: true,
        data: Bytes::new(),
    };
    if out.send(fin).await.is_err() {
        tracing::debug!(stream_id, "client gone before the end of the output");
    }
}

/// Runs the session once the error stream is open: output, then the exit status.
async fn drive(
    protocol: Option<&'static str>,
    command: Vec<String>,
    session: Result<ExecSession, RuntimeError>,
    error_id: oneshot::Receiver<u32>,
    stdout_id: oneshot::Receiver<u32>,
    stderr_id: oneshot::Receiver<u32>,
    out: mpsc::Sender<Frame>,
) {
    let Ok(error_id) = error_id.await else {
        return;
    };
    let status = match session {
        Err(error) => stream::error_status(&error.to_string()),
        Ok(mut session) => {
            // A JoinSet: the pumps are aborted if the client goes away or the output outlives
            // the process.
            let mut pumps = JoinSet::new();
            if let Some(stdout) = session.stdout.take() {
                pumps.spawn(pump(stdout, stdout_id, out.clone()));
            }
            if let Some(stderr) = session.stderr.take() {
                pumps.spawn(pump(stderr, stderr_id, out.clone()));
            }
            match stream::until_exit_and_drained(session.exit, pumps).await {
                Ok(code) => stream::exit_status(&command, code),
                Err(error) => stream::error_status(&error.to_string()),
            }
        }
    };
    let mut frames = Vec::new();
    if let Some(payload) = error_payload(protocol, &status) {
        frames.push(Frame::Data {
            stream_id: error_id,
            fin: false,
            data: Bytes::from(payload),
        });
    }
    frames.push(Frame::Data {
        stream_id: error_id,
        fin: true,
        data: Bytes::new(),
    });
    for frame in frames {
        if out.send(frame).await.is_err() {
            tracing::debug!("client gone before the exit status");
            return;
        }
    }
}

/// Writes the process stdin from the stdin stream's data; a FIN (or the end) closes it.
async fn feed_stdin(
    mut stdin: Box<dyn AsyncWrite + Send + Unpin>,
    mut inbound: mpsc::Receiver<Bytes>,
) {
    while let Some(data) = inbound.recv().await {
        if stdin.write_all(&data).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
    if let Err(error) = stdin.shutdown().await {
        tracing::debug!(%error, "closing stdin failed");
    }
}

/// Serves one SPDY exec/attach connection: runs until the process ended and its status was
/// sent, or the client went away.
pub async fn serve<S>(
    io: S,
    protocol: Option<&'static str>,
    command: Vec<String>,
    mut session: Result<ExecSession, RuntimeError>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(io);
    let mut inflater = match HeaderInflater::new() {
        Ok(inflater) => inflater,
        Err(error) => {
            tracing::warn!(%error, "exec: header inflater");
            return;
        }
    };
    let (out, writer_task) = spdy::spawn_frame_writer(writer, "exec");
    let mut stdin = session.as_mut().ok().and_then(|s| s.stdin.take());
    let resize = session.as_mut().ok().and_then(|s| s.resize.take());
    let (error_tx, error_rx) = oneshot::channel();
    let (stdout_tx, stdout_rx) = oneshot::channel();
    let (stderr_tx, stderr_rx) = oneshot::channel();
    let mut error_tx = Some(error_tx);
    let mut stdout_tx = Some(stdout_tx);
    let mut stderr_tx = Some(stderr_tx);
    let driver = drive(
        protocol,
        command,
        session,
        error_rx,
        stdout_rx,
        stderr_rx,
        out.clone(),
    );
    let read_loop = async {
        let mut stdin_stream: Option<(u32, mpsc::Sender<Bytes>)> = None;
        let mut resize_stream: Option<u32> = None;
        let mut resize_buffer = Vec::new();
        let mut feeders = Vec::new();
        loop {
            let frame = match spdy::read_frame(&mut reader, &mut inflater).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "exec connection ended");
                    break;
                }
            };
            match frame {
                Frame::SynStream {
                    stream_id, headers, ..
                } => {
                    let stream_type = header(&headers, "streamtype").unwrap_or_default();
                    let known = matches!(
                        stream_type,
                        "error" | "stdin" | "stdout" | "stderr" | "resize"
                    );
                    let reply = if known {
                        Frame::SynReply {
                            stream_id,
                            fin: false,
                            headers: Vec::new(),
                        }
                    } else {
                        Frame::RstStream {
                            stream_id,
                            status: spdy::rst::PROTOCOL_ERROR,
                        }
                    };
                    if out.send(reply).await.is_err() {
                        break;
                    }
                    let slot = match stream_type {
                        "error" => error_tx.take(),
                        "stdout" => stdout_tx.take(),
                        "stderr" => stderr_tx.take(),
                        "stdin" => {
                            if let Some(writer) = stdin.take() {
                                let (tx, rx) = mpsc::channel(16);
                                feeders.push(tokio::spawn(feed_stdin(writer, rx)));
                                stdin_stream = Some((stream_id, tx));
                            }
                            None
                        }
                        "resize" => {
                            resize_stream = Some(stream_id);
                            None
                        }
                        _ => None,
                    };
                    if let Some(slot) = slot {
                        if slot.send(stream_id).is_err() {
                            tracing::debug!(stream_id, "exec: stream no longer wanted");
                        }
                    }
                }
                Frame::Data {
                    stream_id,
                    fin,
                    data,
                } => {
                    if stdin_stream.as_ref().map(|(id, _)| *id) == Some(stream_id) {
                        if let Some((_, tx)) = stdin_stream.as_ref() {
                            if !data.is_empty() && tx.send(data).await.is_err() {
                                stdin_stream = None;
                            }
                        }
                        if fin {
                            // Dropping the sender closes the process stdin.
                            stdin_stream = None;
                        }
                    } else if resize_stream == Some(stream_id) {
                        resize_buffer.extend_from_slice(&data);
                        for size in take_resizes(&mut resize_buffer) {
                            if let Some(resize) = resize.as_ref() {
                                if resize.send(size).await.is_err() {
                                    tracing::debug!("resize channel closed");
                                }
                            }
                        }
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    if stdin_stream.as_ref().map(|(id, _)| *id) == Some(stream_id) {
                        stdin_stream = None;
                    }
                }
                Frame::Ping { id } => {
                    if out.send(Frame::Ping { id }).await.is_err() {
                        break;
                    }
                }
                Frame::GoAway { .. } => break,
                Frame::SynReply { .. }
                | Frame::Headers { .. }
                | Frame::WindowUpdate { .. }
                | Frame::Other { .. } => {}
            }
        }
        // The client went away: close stdin so the process sees EOF, and wait for that.
        drop(stdin_stream);
        for feeder in feeders {
            if let Err(error) = feeder.await {
                tracing::debug!(%error, "stdin feeder failed");
            }
        }
    };
    tokio::select! {
        () = driver => {}
        () = read_loop => {}
    }
    drop(out);
    if let Err(error) = writer_task.await {
        tracing::debug!(%error, "exec writer failed");
    }
}

/// Upgrades `request` and serves the session in the background.
pub fn spawn_upgraded(
    request: &mut http::Request<axum::body::Body>,
    protocol: Option<&'static str>,
    command: Vec<String>,
    session: Result<ExecSession, RuntimeError>,
) {
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => serve(TokioIo::new(upgraded), protocol, command, session).await,
            Err(error) => tracing::warn!(%error, "SPDY upgrade failed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v4_is_preferred_and_unknown_offers_are_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(negotiate(&headers), Ok(None));
        headers.append(
            "x-stream-protocol-version",
            HeaderValue::from_static("channel.k8s.io"),
        );
        headers.append(
            "x-stream-protocol-version",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        assert_eq!(negotiate(&headers), Ok(Some("v4.channel.k8s.io")));
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-stream-protocol-version",
            HeaderValue::from_static("v9.channel.k8s.io"),
        );
        assert!(negotiate(&headers).is_err());
    }

    #[test]
    fn resize_lines_are_parsed_and_tails_kept() {
        let mut buffer = b"{\"Width\":80,\"Height\":24}\n{\"Width\":1".to_vec();
        let sizes = take_resizes(&mut buffer);
        assert_eq!(sizes.len(), 1);
        assert_eq!((sizes[0].width, sizes[0].height), (80, 24));
        buffer.extend_from_slice(b"00,\"Height\":50}\n");
        let sizes = take_resizes(&mut buffer);
        assert_eq!((sizes[0].width, sizes[0].height), (100, 50));
        assert!(buffer.is_empty());
    }

    #[test]
    fn only_v4_reports_success() {
        let ok = json!({"metadata": {}, "status": "Success"});
        assert!(error_payload(Some("v4.channel.k8s.io"), &ok).is_some());
        assert!(error_payload(Some("v3.channel.k8s.io"), &ok).is_none());
        let failed = stream::exit_status(&["false".into()], 1);
        assert_eq!(
            error_payload(Some("v2.channel.k8s.io"), &failed),
            failed["message"].as_str().map(|m| m.as_bytes().to_vec())
        );
    }
}
