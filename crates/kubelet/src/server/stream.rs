//! `exec` and `attach` over WebSocket with the Kubernetes channel protocol
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`): every binary message starts with a channel byte
//! (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize, 255 close in v5). When the process ends
//! the status goes out on channel 3 (`Success`, or `Failure` / `NonZeroExitCode` with the exit
//! code as a cause), then the socket closes.

use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::runtime::{ExecSession, RuntimeError, TerminalSize};

/// Channel numbers of the protocol.
pub mod channel {
    /// Client to process stdin.
    pub const STDIN: u8 = 0;
    /// Process stdout.
    pub const STDOUT: u8 = 1;
    /// Process stderr.
    pub const STDERR: u8 = 2;
    /// Final status (JSON `Status`).
    pub const ERROR: u8 = 3;
    /// Terminal resize (JSON `{"Width":..,"Height":..}`).
    pub const RESIZE: u8 = 4;
    /// v5: close the stream named by the next byte.
    pub const CLOSE: u8 = 255;
}

/// The protocols this server speaks, most preferred first.
pub const PROTOCOLS: [&str; 4] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "channel.k8s.io",
];

/// The protocol to speak given the client's `Sec-WebSocket-Protocol` offers.
pub fn negotiate(headers: &HeaderMap) -> Option<&'static str> {
    let offered: Vec<String> = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    PROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    let has = |name: http::header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has(http::header::CONNECTION, "upgrade")
        && has(http::header::UPGRADE, "websocket")
        && headers.contains_key(http::header::SEC_WEBSOCKET_KEY)
}

/// The `101 Switching Protocols` answer.
pub fn switching_protocols<B: Default>(
    headers: &HeaderMap,
    protocol: Option<&'static str>,
) -> Response<B> {
    let key = headers
        .get(http::header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes())
        .unwrap_or_default();
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    out.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key)) {
        out.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = protocol {
        out.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        );
    }
    response
}

/// The channel-3 status for an exit code.
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    }
}

/// The channel-3 status for a failure before or while running.
pub fn error_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}

/// A normal-closure close frame: clients (client-go) treat any other close as an error.
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

async fn pump(
    mut reader: Box<dyn AsyncRead + Send + Unpin>,
    channel: u8,
    tx: mpsc::Sender<Message>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                if tx.send(frame(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::debug!(%error, channel, "stream read ended");
                return;
            }
        }
    }
}

/// How long output may still flow once the process has exited.
const OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for the process to exit and its output `pumps` to finish. An attached container's
/// output may outlive its process (the runtime keeps copying it), so once the process has
/// exited the pumps get [`OUTPUT_GRACE`] to send what is buffered, then they are aborted.
pub async fn until_exit_and_drained(
    mut exit: futures::future::BoxFuture<'static, Result<i32, RuntimeError>>,
    mut pumps: tokio::task::JoinSet<()>,
) -> Result<i32, RuntimeError> {
    let drained = async {
        while let Some(result) = pumps.join_next().await {
            if let Err(error) = result {
                tracing::debug!(%error, "output pump failed");
            }
        }
    };
    tokio::pin!(drained);
    tokio::select! {
        () = &mut drained => exit.await,
        exit = &mut exit => {
            if tokio::time::timeout(OUTPUT_GRACE, &mut drained).await.is_err() {
                tracing::debug!("output still open after the exit; closing it");
            }
            exit
        }
    }
}

/// Bridges an upgraded connection to a running session: runs until the process ends and the
/// status has been sent. `session` is the result of starting the exec or attach.
pub async fn serve<S>(
    io: S,
    protocol: Option<&'static str>,
    command: Vec<String>,
    session: Result<ExecSession, RuntimeError>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut incoming) = ws.split();
    let mut session = match session {
        Ok(session) => session,
        Err(error) => {
            let status = error_status(&error.to_string());
            if let Err(error) = sink
                .send(frame(channel::ERROR, status.to_string().as_bytes()))
                .await
            {
                tracing::debug!(%error, "sending error status failed");
            }
            if let Err(error) = sink.send(normal_close()).await {
                tracing::debug!(%error, "closing websocket failed");
            }
            return;
        }
    };
    let v5 = protocol == Some("v5.channel.k8s.io");
    let (tx, mut rx) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        if let Err(error) = sink.send(normal_close()).await {
            tracing::debug!(%error, "closing websocket failed");
        }
    });
    let mut pumps = tokio::task::JoinSet::new();
    if let Some(stdout) = session.stdout.take() {
        pumps.spawn(pump(stdout, channel::STDOUT, tx.clone()));
    }
    if let Some(stderr) = session.stderr.take() {
        pumps.spawn(pump(stderr, channel::STDERR, tx.clone()));
    }
    let mut stdin = session.stdin.take();
    let resize = session.resize.take();
    let reader = tokio::spawn(async move {
        while let Some(message) = incoming.next().await {
            let data = match message {
                Ok(Message::Binary(data)) => data,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            match channel {
                channel::STDIN => {
                    if let Some(writer) = stdin.as_mut() {
                        if writer.write_all(payload).await.is_err() || writer.flush().await.is_err()
                        {
                            stdin = None;
                        }
                    }
                }
                channel::RESIZE => {
                    if let (Some(resize), Ok(size)) =
                        (resize.as_ref(), serde_json::from_slice::<Value>(payload))
                    {
                        let dim = |k: &str| {
                            size[k]
                                .as_u64()
                                .and_then(|v| u16::try_from(v).ok())
                                .unwrap_or(0)
                        };
                        let size = TerminalSize {
                            width: dim("Width"),
                            height: dim("Height"),
                        };
                        if resize.send(size).await.is_err() {
                            tracing::debug!("resize channel closed");
                        }
                    }
                }
                channel::CLOSE if v5 && payload.first() == Some(&channel::STDIN) => {
                    if let Some(mut writer) = stdin.take() {
                        if let Err(error) = writer.shutdown().await {
                            tracing::debug!(%error, "closing stdin failed");
                        }
                    }
                }
                _ => {}
            }
        }
        // The client went away: close stdin so the process sees EOF.
        if let Some(mut writer) = stdin.take() {
            if let Err(error) = writer.shutdown().await {
                tracing::debug!(%error, "closing stdin failed");
            }
        }
    });
    let exit = until_exit_and_drained(session.exit, pumps).await;
    let status = match exit {
        Ok(code) => exit_status(&command, code),
        Err(error) => error_status(&error.to_string()),
    };
    if tx
        .send(frame(channel::ERROR, status.to_string().as_bytes()))
        .await
        .is_err()
    {
        tracing::debug!("client gone before the exit status");
    }
    drop(tx);
    if let Err(error) = writer.await {
        tracing::debug!(%error, "websocket writer failed");
    }
    reader.abort();
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
            Err(error) => tracing::warn!(%error, "websocket upgrade failed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v5_is_preferred_over_v4() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v4.channel.k8s.io, v5.channel.k8s.io"),
        );
        assert_eq!(negotiate(&headers), Some("v5.channel.k8s.io"));
        headers.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("base64.channel.k8s.io"),
        );
        assert_eq!(negotiate(&headers), None);
    }

    #[test]
    fn exit_status_matches_the_upstream_shape() {
        assert_eq!(
            exit_status(&["true".into()], 0),
            json!({"metadata":{},"status":"Success"})
        );
        let failure = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(failure["reason"], "NonZeroExitCode");
        assert_eq!(failure["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failure["details"]["causes"][0]["message"], "3");
        assert_eq!(
            failure["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }
}
