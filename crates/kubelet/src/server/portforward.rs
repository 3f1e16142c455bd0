//! `/portForward/{namespace}/{pod}`: TCP streams to ports inside a pod's network namespace.
//!
//! Three transports, as upstream clients use them:
//!
//! - SPDY/3.1 (`Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version: portforward.k8s.io`): per
//!   forwarded connection the client opens an `error` and a `data` stream carrying the headers
//!   `streamType`, `port` and `requestID`. Bytes on the data stream go to the pod port and back;
//!   a failure is written to the error stream; when the pod closes the connection both streams
//!   are finished (FIN).
//! - SPDY tunnelled over WebSocket (subprotocol `SPDY/3.1+portforward.k8s.io`, what kubectl 1.32
//!   sends by default): the same SPDY connection, its bytes carried in binary WebSocket messages.
//!   Upstream's apiserver translates this to plain SPDY towards the kubelet; this kubelet accepts
//!   the tunnelled form directly, so the apiserver only passes the upgrade through.
//! - The WebSocket channel protocol (`v4.channel.k8s.io`, `portforward.k8s.io` or none): ports
//!   from the `port` (or `ports`) query parameters, channel `2i` carries data of the i-th port and
//!   `2i+1` its errors; the first message the server sends on every channel is the port (2 bytes,
//!   little endian).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::spdy::{self, Frame, HeaderInflater};
use super::{query, stream};
use crate::network::{netns_name, netns_path};
use crate::runtime::ContainerRuntime;

/// The port-forward protocol name (SPDY `X-Stream-Protocol-Version`).
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol of SPDY tunnelled over WebSocket.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// WebSocket channel protocols accepted (besides none at all).
const CHANNEL_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", PROTOCOL];
/// Bytes read from the pod per DATA frame.
const CHUNK: usize = 32 * 1024;

/// Where forwarded connections go: a pod's network namespace through the runtime.
#[derive(Clone)]
pub struct Target {
    /// The runtime that dials.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The pod's network namespace (`None`: host network).
    pub netns: Option<PathBuf>,
    /// `namespace/name` of the pod, for messages.
    pub pod: String,
    /// The pod uid, for messages.
    pub uid: String,
}

impl Target {
    async fn dial(&self, port: u16) -> Result<Box<dyn crate::runtime::PortStream>, String> {
        self.runtime
            .port_forward(self.netns.as_deref(), port)
            .await
            .map_err(|error| {
                format!(
                    "error forwarding port {port} to pod {}, uid {}: {error}",
                    self.pod, self.uid
                )
            })
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

fn header_tokens(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .filter(|p| !p.is_empty())
        .collect()
}

fn is_spdy_upgrade(headers: &HeaderMap) -> bool {
    header_tokens(headers, "upgrade")
        .iter()
        .any(|t| t.eq_ignore_ascii_case("SPDY/3.1"))
}

/// Ports named by the `port` (upstream kubelet) or `ports` (apiserver) query parameters.
pub fn parse_ports(pairs: &[(String, String)]) -> Result<Vec<u16>, String> {
    let values: Vec<&String> = pairs
        .iter()
        .filter(|(k, _)| k == "port" || k == "ports")
        .map(|(_, v)| v)
        .collect();
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for value in values {
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            let port: u16 = p
                .trim()
                .parse()
                .map_err(|_| format!("unable to parse \"{p}\" as a port"))?;
            if port == 0 {
                return Err(format!("port \"{p}\" must be > 0"));
            }
            ports.push(port);
        }
    }
    Ok(ports)
}

/// `GET|POST /portForward/{namespace}/{pod}`.
pub async fn route(
    axum::extract::State(state): axum::extract::State<super::ServerState>,
    axum::extract::Path((namespace, pod)): axum::extract::Path<(String, String)>,
    request: Request,
) -> Response {
    handle(state, namespace, pod, request).await
}

/// `GET|POST /portForward/{namespace}/{pod}/{uid}`.
pub async fn route_uid(
    axum::extract::State(state): axum::extract::State<super::ServerState>,
    axum::extract::Path((namespace, pod, uid)): axum::extract::Path<(String, String, String)>,
    request: Request,
) -> Response {
    let current = state
        .store
        .find(&namespace, &pod)
        .and_then(|e| e.pod.metadata.uid);
    if current.as_deref() != Some(uid.as_str()) {
        return text(StatusCode::NOT_FOUND, format!("pod \"{pod}\" not found"));
    }
    handle(state, namespace, pod, request).await
}

/// Handles a port-forward request for a pod of the store.
pub async fn handle(
    state: super::ServerState,
    namespace: String,
    pod: String,
    mut request: Request,
) -> Response {
    let Some(entry) = state.store.find(&namespace, &pod) else {
        return text(StatusCode::NOT_FOUND, format!("pod \"{pod}\" not found"));
    };
    let uid = entry.pod.metadata.uid.clone().unwrap_or_default();
    let host_network = entry
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let target = Target {
        runtime: state.runtime.clone(),
        netns: (!host_network).then(|| netns_path(&netns_name(&uid))),
        pod: format!("{namespace}/{pod}"),
        uid,
    };
    let headers = request.headers().clone();
    if stream::is_websocket(&headers) {
        let offered = header_tokens(&headers, "sec-websocket-protocol");
        let chosen: Option<&'static str> = if offered.iter().any(|p| p == TUNNEL_PROTOCOL) {
            Some(TUNNEL_PROTOCOL)
        } else {
            CHANNEL_PROTOCOLS
                .into_iter()
                .find(|p| offered.iter().any(|o| o == p))
        };
        if chosen.is_none() && !offered.is_empty() {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "unsupported subprotocol: use {TUNNEL_PROTOCOL}, {} or {}",
                    CHANNEL_PROTOCOLS[0], CHANNEL_PROTOCOLS[1]
                ),
            );
        }
        let ports = if chosen == Some(TUNNEL_PROTOCOL) {
            Vec::new()
        } else {
            match parse_ports(&query::pairs(request.uri().query())) {
                Ok(ports) => ports,
                Err(message) => return text(StatusCode::BAD_REQUEST, message),
            }
        };
        tracing::info!(pod = %target.pod, protocol = chosen.unwrap_or(""), ?ports, "port-forward session");
        let response = stream::switching_protocols::<Body>(&headers, chosen);
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let upgraded = match upgrade.await {
                Ok(upgraded) => TokioIo::new(upgraded),
                Err(error) => {
                    tracing::warn!(%error, "port-forward upgrade failed");
                    return;
                }
            };
            let ws = WebSocketStream::from_raw_socket(upgraded, Role::Server, None).await;
            if chosen == Some(TUNNEL_PROTOCOL) {
                serve_spdy(tunnel(ws), target).await;
            } else {
                serve_channels(ws, ports, target).await;
            }
        });
        return response;
    }
    if is_spdy_upgrade(&headers) {
        let offered = header_tokens(&headers, "x-stream-protocol-version");
        if !offered.is_empty() && !offered.iter().any(|p| p == PROTOCOL) {
            return text(
                StatusCode::FORBIDDEN,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts [\"{PROTOCOL}\"]"
                ),
            );
        }
        tracing::info!(pod = %target.pod, "port-forward session (SPDY)");
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => serve_spdy(TokioIo::new(upgraded), target).await,
                Err(error) => tracing::warn!(%error, "port-forward upgrade failed"),
            }
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let out = response.headers_mut();
        out.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        );
        out.insert(http::header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        out.insert(
            "x-stream-protocol-version",
            HeaderValue::from_static(PROTOCOL),
        );
        return response;
    }
    text(StatusCode::BAD_REQUEST, "Upgrade request required")
}

/// Carries a byte stream in binary WebSocket messages (client-go's tunnelling connection).
fn tunnel<S>(ws: WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (near, far) = tokio::io::duplex(256 * 1024);
    let (mut far_read, mut far_write) = tokio::io::split(far);
    let (mut sink, mut incoming) = ws.split();
    tokio::spawn(async move {
        while let Some(message) = incoming.next().await {
            match message {
                Ok(Message::Binary(data)) => {
                    if far_write.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if let Err(error) = far_write.shutdown().await {
            tracing::debug!(%error, "closing the tunnel reader failed");
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match far_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    if sink.send(Message::Binary(data)).await.is_err() {
                        return;
                    }
                }
            }
        }
        if let Err(error) = sink.send(normal_close()).await {
            tracing::debug!(%error, "closing the tunnel failed");
        }
    });
    near
}

fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// What the connection reader hands a forwarder.
enum Inbound {
    Data(Bytes),
    Fin,
}

/// Streams of one request id waiting for their partner.
#[derive(Default)]
struct Pending {
    error: Option<u32>,
    data: Option<(u32, mpsc::Receiver<Inbound>)>,
    port: String,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Serves one SPDY port-forward connection until the client goes away.
pub async fn serve_spdy<S>(io: S, target: Target)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(io);
    let mut inflater = match HeaderInflater::new() {
        Ok(inflater) => inflater,
        Err(error) => {
            tracing::warn!(%error, "port-forward: header inflater");
            return;
        }
    };
    let (out, writer_task) = spdy::spawn_frame_writer(writer, "port-forward");
    let mut streams: HashMap<u32, mpsc::Sender<Inbound>> = HashMap::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut forwarders = JoinSet::new();
    let mut last_stream = 0;
    loop {
        let frame = match spdy::read_frame(&mut reader, &mut inflater).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(%error, "port-forward connection ended");
                if out
                    .send(Frame::GoAway {
                        last_good: last_stream,
                        status: 1,
                    })
                    .await
                    .is_err()
                {
                    tracing::debug!("port-forward writer already gone");
                }
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                last_stream = last_stream.max(stream_id);
                let stream_type = header(&headers, "streamtype").unwrap_or_default();
                let request_id = header(&headers, "requestid").unwrap_or_default();
                let port = header(&headers, "port").unwrap_or_default().to_string();
                let reply = if stream_type == "error" || stream_type == "data" {
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
                let key = request_id.to_string();
                let slot = pending.entry(key.clone()).or_default();
                slot.port = port;
                match stream_type {
                    "error" => slot.error = Some(stream_id),
                    "data" => {
                        let (tx, rx) = mpsc::channel(16);
                        streams.insert(stream_id, tx);
                        slot.data = Some((stream_id, rx));
                    }
                    _ => continue,
                }
                if slot.error.is_some() && slot.data.is_some() {
                    if let Some(Pending {
                        error: Some(error_id),
                        data: Some((data_id, rx)),
                        port,
                    }) = pending.remove(&key)
                    {
                        forwarders.spawn(forward(
                            target.clone(),
                            port,
                            data_id,
                            error_id,
                            rx,
                            out.clone(),
                        ));
                    }
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let Some(tx) = streams.get(&stream_id) else {
                    continue;
                };
                let mut alive = true;
                if !data.is_empty() {
                    alive = tx.send(Inbound::Data(data)).await.is_ok();
                }
                if fin && alive {
                    alive = tx.send(Inbound::Fin).await.is_ok();
                }
                if fin || !alive {
                    streams.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                streams.remove(&stream_id);
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
        // Forget finished forwarders.
        while forwarders.try_join_next().is_some() {}
    }
    forwarders.abort_all();
    drop(out);
    if let Err(error) = writer_task.await {
        tracing::debug!(%error, "port-forward writer failed");
    }
}

/// Forwards one connection (one request id) to the pod.
async fn forward(
    target: Target,
    port: String,
    data_id: u32,
    error_id: u32,
    mut inbound: mpsc::Receiver<Inbound>,
    out: mpsc::Sender<Frame>,
) {
    let finish = |stream_id: u32, data: Bytes| Frame::Data {
        stream_id,
        fin: true,
        data,
    };
    let conn = match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port \"{port}\"")),
        Ok(p) => target.dial(p).await,
    };
    let conn = match conn {
        Ok(conn) => conn,
        Err(message) => {
            tracing::info!(pod = %target.pod, %port, %message, "port-forward failed");
            for frame in [
                finish(error_id, Bytes::from(message)),
                finish(data_id, Bytes::new()),
            ] {
                if out.send(frame).await.is_err() {
                    return;
                }
            }
            return;
        }
    };
    let (mut from_pod, mut to_pod) = tokio::io::split(conn);
    let writer = tokio::spawn(async move {
        while let Some(message) = inbound.recv().await {
            match message {
                Inbound::Data(data) => {
                    if to_pod.write_all(&data).await.is_err() {
                        return;
                    }
                }
                Inbound::Fin => break,
            }
        }
        if let Err(error) = to_pod.shutdown().await {
            tracing::debug!(%error, "port-forward: half-closing the pod connection failed");
        }
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from_pod.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let frame = Frame::Data {
                    stream_id: data_id,
                    fin: false,
                    data: Bytes::copy_from_slice(&buf[..n]),
                };
                if out.send(frame).await.is_err() {
                    writer.abort();
                    return;
                }
            }
        }
    }
    writer.abort();
    for frame in [
        finish(data_id, Bytes::new()),
        finish(error_id, Bytes::new()),
    ] {
        if out.send(frame).await.is_err() {
            return;
        }
    }
}

fn channel_frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// Serves the WebSocket channel protocol for `ports` until every pod connection ends or the
/// client goes away.
pub async fn serve_channels<S>(ws: WebSocketStream<S>, ports: Vec<u16>, target: Target)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut incoming) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        if let Err(error) = sink.send(normal_close()).await {
            tracing::debug!(%error, "closing the port-forward websocket failed");
        }
    });
    let mut to_pods: Vec<Option<tokio::io::WriteHalf<Box<dyn crate::runtime::PortStream>>>> =
        Vec::new();
    let mut readers = JoinSet::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, error) = match u8::try_from(2 * i).ok().zip(u8::try_from(2 * i + 1).ok()) {
            Some(channels) => channels,
            None => break,
        };
        for channel in [data, error] {
            if tx
                .send(channel_frame(channel, &port.to_le_bytes()))
                .await
                .is_err()
            {
                return;
            }
        }
        match target.dial(*port).await {
            Ok(conn) => {
                let (mut from_pod, to_pod) = tokio::io::split(conn);
                to_pods.push(Some(to_pod));
                let tx = tx.clone();
                readers.spawn(async move {
                    let mut buf = vec![0u8; CHUNK];
                    loop {
                        match from_pod.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if tx.send(channel_frame(data, &buf[..n])).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
            Err(message) => {
                to_pods.push(None);
                if tx
                    .send(channel_frame(error, message.as_bytes()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let pump_in = async {
        while let Some(message) = incoming.next().await {
            let data = match message {
                Ok(Message::Binary(data)) => data,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            if channel % 2 != 0 || payload.is_empty() {
                continue;
            }
            let index = usize::from(channel / 2);
            if let Some(slot) = to_pods.get_mut(index) {
                if let Some(writer) = slot.as_mut() {
                    if writer.write_all(payload).await.is_err() {
                        *slot = None;
                    }
                }
            }
        }
    };
    let drain_out = async { while readers.join_next().await.is_some() {} };
    tokio::select! {
        () = pump_in => {}
        () = drain_out => {}
    }
    drop(tx);
    if let Err(error) = writer.await {
        tracing::debug!(%error, "port-forward websocket writer failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ports_come_from_port_or_ports() {
        assert_eq!(
            parse_ports(&pairs(&[("port", "80"), ("port", "8080,9090")])),
            Ok(vec![80, 8080, 9090])
        );
        assert_eq!(parse_ports(&pairs(&[("ports", "53")])), Ok(vec![53]));
        assert!(parse_ports(&[]).is_err());
        assert!(parse_ports(&pairs(&[("port", "0")])).is_err());
        assert!(parse_ports(&pairs(&[("port", "x")])).is_err());
        assert!(parse_ports(&pairs(&[("port", "")])).is_err());
    }
}
