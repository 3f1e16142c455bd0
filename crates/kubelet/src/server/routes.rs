//! The kubelet API routes and their handlers.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio_stream::wrappers::ReceiverStream;

use super::logs::{self, LogOptions};
use super::query;
use super::spdy_stream;
use super::stream;
use crate::pod::{pod_log_dir, PodEntry, PodStore};
use crate::runtime::{AttachRequest, ContainerRuntime, ContainerState, ExecRequest};

/// Who is calling, as the TLS layer established it.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The caller presented a certificate signed by the client CA (or no CA is configured).
    pub authenticated: bool,
    /// The subject of the caller's verified client certificate.
    pub certificate: Option<super::auth::Identity>,
    /// Token authentication and SubjectAccessReview authorization, when configured.
    pub auth: Option<Arc<super::auth::KubeletAuth>>,
}

/// What the handlers need.
#[derive(Clone)]
pub struct ServerState {
    /// The kubelet's pods.
    pub store: PodStore,
    /// The container runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// `--pod-logs-dir`.
    pub pod_logs_dir: PathBuf,
}

/// The kubelet API router. Requests need a [`Peer`] extension (added per connection);
/// without one they are treated as authenticated (in-process tests).
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/pods/", get(pods))
        .route("/stats/summary", get(super::stats::summary))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", get(exec).post(exec))
        .route(
            "/exec/{namespace}/{pod}/{uid}/{container}",
            get(exec_uid).post(exec_uid),
        )
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(attach).post(attach),
        )
        .route(
            "/attach/{namespace}/{pod}/{uid}/{container}",
            get(attach_uid).post(attach_uid),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(super::portforward::route).post(super::portforward::route),
        )
        .route(
            "/portForward/{namespace}/{pod}/{uid}",
            get(super::portforward::route_uid).post(super::portforward::route_uid),
        )
        .layer(axum::middleware::from_fn(authenticate))
        .with_state(state)
}

async fn authenticate(request: Request, next: axum::middleware::Next) -> Response {
    let peer = request.extensions().get::<Peer>().cloned();
    if let Some(Peer {
        auth: Some(auth),
        certificate,
        ..
    }) = &peer
    {
        if request.uri().path() != "/healthz" {
            if let Err(refusal) = auth
                .check(
                    certificate.as_ref(),
                    request.method(),
                    request.uri().path(),
                    request.headers(),
                )
                .await
            {
                return refusal;
            }
            return next.run(request).await;
        }
    }
    let allowed = peer.is_none_or(|p| p.authenticated) || request.uri().path() == "/healthz";
    if allowed {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, "Unauthorized").into_response()
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

async fn pods(State(state): State<ServerState>) -> Response {
    let items: Vec<Pod> = state.store.pods();
    let list = json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items,
    });
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        list.to_string(),
    )
        .into_response()
}

/// Finds the pod and checks the container belongs to it.
fn lookup(
    state: &ServerState,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<PodEntry, (StatusCode, String)> {
    let entry = state
        .store
        .find(namespace, pod)
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("pod \"{pod}\" not found")))?;
    let known = entry.pod.spec.iter().any(|s| {
        s.containers.iter().any(|c| c.name == container)
            || s.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == container)
    });
    if !known {
        return Err((
            StatusCode::NOT_FOUND,
            format!("container \"{container}\" not found in pod \"{pod}\""),
        ));
    }
    Ok(entry)
}

fn waiting_reason(entry: &PodEntry, container: &str) -> Option<String> {
    let status = entry.pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|s| s.name == container)
        .and_then(|s| s.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone())
}

async fn container_logs(
    State(state): State<ServerState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let pairs = query::pairs(request.uri().query());
    let options = match LogOptions::from_query(&pairs, jiff::Timestamp::now()) {
        Ok(options) => options,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let entry = match lookup(&state, &namespace, &pod, &container) {
        Ok(entry) => entry,
        Err(response) => return response.into_response(),
    };
    let uid = entry.pod.metadata.uid.clone().unwrap_or_default();
    let dir = pod_log_dir(&state.pod_logs_dir, &namespace, &pod, &uid).join(&container);
    let Some(path) = logs::select_file(&dir, options.previous) else {
        let message = if options.previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            match waiting_reason(&entry, &container) {
                Some(reason) => format!(
                    "container \"{container}\" in pod \"{pod}\" is waiting to start: {reason}"
                ),
                None => format!("container \"{container}\" in pod \"{pod}\" has no logs yet"),
            }
        };
        return text(StatusCode::BAD_REQUEST, message);
    };
    let headers = [(http::header::CONTENT_TYPE, "text/plain")];
    let container_id = entry.containers.get(&container).cloned();
    if options.follow && !options.previous {
        let runtime = state.runtime.clone();
        let running = move || {
            let runtime = runtime.clone();
            let id = container_id.clone();
            Box::pin(async move {
                match id {
                    Some(id) => matches!(
                        runtime.container_status(&id).await,
                        Ok(ContainerState::Running { .. })
                    ),
                    None => false,
                }
            }) as futures::future::BoxFuture<'static, bool>
        };
        let rx = logs::follow(path, options, running);
        return (headers, Body::from_stream(ReceiverStream::new(rx))).into_response();
    }
    match logs::read_all(&path, &options).await {
        Ok(bytes) => (headers, bytes).into_response(),
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading log {}: {error}", path.display()),
        ),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exec,
    Attach,
}

async fn exec(
    State(state): State<ServerState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    streaming(state, Kind::Exec, namespace, pod, container, request).await
}

async fn exec_uid(
    State(state): State<ServerState>,
    Path((namespace, pod, _uid, container)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    streaming(state, Kind::Exec, namespace, pod, container, request).await
}

async fn attach(
    State(state): State<ServerState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    streaming(state, Kind::Attach, namespace, pod, container, request).await
}

async fn attach_uid(
    State(state): State<ServerState>,
    Path((namespace, pod, _uid, container)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    streaming(state, Kind::Attach, namespace, pod, container, request).await
}

async fn streaming(
    state: ServerState,
    kind: Kind,
    namespace: String,
    pod: String,
    container: String,
    mut request: Request,
) -> Response {
    let spdy = !stream::is_websocket(request.headers()) && spdy_stream::is_spdy(request.headers());
    if !spdy && !stream::is_websocket(request.headers()) {
        return text(
            StatusCode::BAD_REQUEST,
            "Upgrade request required: exec and attach stream over WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) or SPDY/3.1",
        );
    }
    let protocol = if spdy {
        match spdy_stream::negotiate(request.headers()) {
            Ok(protocol) => protocol,
            Err(message) => return text(StatusCode::FORBIDDEN, message),
        }
    } else {
        stream::negotiate(request.headers())
    };
    if !spdy
        && protocol.is_none()
        && request
            .headers()
            .contains_key(http::header::SEC_WEBSOCKET_PROTOCOL)
    {
        return text(
            StatusCode::BAD_REQUEST,
            "unsupported subprotocol: use v5.channel.k8s.io or v4.channel.k8s.io",
        );
    }
    let pairs = query::pairs(request.uri().query());
    let command = query::all(&pairs, "command");
    if kind == Kind::Exec && command.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container",
        );
    }
    let tty = query::flag(&pairs, "tty", false);
    let stdin = query::flag(&pairs, "stdin", false);
    let stdout = query::flag(&pairs, "stdout", false);
    let stderr = query::flag(&pairs, "stderr", false) && !tty;
    if !stdin && !stdout && !stderr {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        );
    }
    let entry = match lookup(&state, &namespace, &pod, &container) {
        Ok(entry) => entry,
        Err(response) => return response.into_response(),
    };
    let Some(id) = entry.containers.get(&container).cloned() else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("container \"{container}\" in pod \"{pod}\" is not running"),
        );
    };
    tracing::info!(%namespace, %pod, %container, ?command, tty, stdin, spdy, "streaming session");
    let session = match kind {
        Kind::Exec => {
            state
                .runtime
                .exec(
                    &id,
                    ExecRequest {
                        command: command.clone(),
                        tty,
                        stdin,
                        stdout,
                        stderr,
                    },
                )
                .await
        }
        Kind::Attach => {
            state
                .runtime
                .attach(
                    &id,
                    AttachRequest {
                        stdin,
                        stdout,
                        stderr,
                        tty,
                    },
                )
                .await
        }
    };
    if spdy {
        let response = spdy_stream::switching_protocols::<Body>(protocol);
        spdy_stream::spawn_upgraded(&mut request, protocol, command, session);
        return response;
    }
    let response = stream::switching_protocols::<Body>(request.headers(), protocol);
    stream::spawn_upgraded(&mut request, protocol, command, session);
    response
}
