//! The kubelet API over real TLS with client certificates, on the fake runtime: healthz is
//! open, everything else needs a certificate from the client CA; `/pods`, `/containerLogs` and
//! `/exec` over WebSocket (`v5.channel.k8s.io`) behave as the apiserver and kubectl expect.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::ObjectMeta;
use kubelet::pod::{PodEntry, PodStore};
use kubelet::runtime::fake::{ExecResult, FakeRuntime};
use kubelet::runtime::{ContainerConfig, ContainerRuntime};
use kubelet::server::{serve, ServerState, TlsFiles};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

mod support;

use support::{get, tls, write_pki, Pki};

async fn setup() -> (tempfile::TempDir, Pki, SocketAddr, Arc<FakeRuntime>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = write_pki(dir.path());
    let runtime = Arc::new(FakeRuntime::new());
    runtime.add_image("busybox:1.35");
    let id = runtime
        .create_container(&ContainerConfig {
            name: "c".into(),
            image: "busybox:1.35".into(),
            ..Default::default()
        })
        .await
        .expect("create");
    runtime.start_container(&id).await.expect("start");
    runtime.set_exec_handler(|_, request| match request.command.as_slice() {
        [cmd, ..] if cmd == "echo" => ExecResult {
            stdout: format!("{}\n", request.command[1..].join(" ")).into_bytes(),
            stderr: Vec::new(),
            exit_code: 0,
        },
        _ => ExecResult {
            stdout: Vec::new(),
            stderr: b"oops\n".to_vec(),
            exit_code: 3,
        },
    });
    let store = PodStore::new();
    store.upsert(
        "u1",
        PodEntry {
            pod: Pod {
                metadata: ObjectMeta {
                    name: Some("web".into()),
                    namespace: Some("default".into()),
                    uid: Some("u1".into()),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                status: None,
            },
            containers: [("c".to_string(), id)].into(),
        },
    );
    let logs = dir.path().join("logs");
    let container_logs = logs.join("default_web_u1/c");
    std::fs::create_dir_all(&container_logs).expect("mkdir");
    std::fs::write(
        container_logs.join("0.log"),
        "2026-11-22T04:00:00.000000000Z stdout F first\n2026-11-22T04:00:01.000000000Z stderr F last\n",
    )
    .expect("write log");
    let files = TlsFiles {
        cert: Some(dir.path().join("kubelet.crt")),
        key: Some(dir.path().join("kubelet.key")),
        client_ca: Some(dir.path().join("ca.crt")),
        self_signed_names: vec![],
    };
    let addr = serve(
        "127.0.0.1:0".parse().expect("addr"),
        &files,
        ServerState {
            store,
            runtime: runtime.clone(),
            pod_logs_dir: logs,
        },
    )
    .await
    .expect("serve");
    (dir, pki, addr, runtime)
}

#[tokio::test]
async fn healthz_is_open_but_pods_need_a_client_certificate() {
    let (_dir, pki, addr, _runtime) = setup().await;
    let anonymous = pki.connector(false);
    assert_eq!(
        get(addr, &anonymous, "/healthz", None).await,
        (200, "ok".into())
    );
    assert_eq!(get(addr, &anonymous, "/pods", None).await.0, 401);
    let client = pki.connector(true);
    let (status, body) = get(addr, &client, "/pods", None).await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"][0]["metadata"]["name"], "web");
}

#[tokio::test]
async fn container_logs_are_served_from_the_cri_log_files() {
    let (_dir, pki, addr, _runtime) = setup().await;
    let client = pki.connector(true);
    assert_eq!(
        get(addr, &client, "/containerLogs/default/web/c", None).await,
        (200, "first\nlast\n".into())
    );
    assert_eq!(
        get(
            addr,
            &client,
            "/containerLogs/default/web/c?tailLines=1&timestamps=true",
            None
        )
        .await,
        (200, "2026-11-22T04:00:01.000000000Z last\n".into())
    );
    assert_eq!(
        get(addr, &client, "/containerLogs/default/nope/c", None)
            .await
            .0,
        404
    );
    assert_eq!(
        get(addr, &client, "/containerLogs/default/web/other", None)
            .await
            .0,
        404
    );
    let (status, body) = get(
        addr,
        &client,
        "/containerLogs/default/web/c?previous=true",
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("previous terminated container"));
}

async fn exec(addr: SocketAddr, pki: &Pki, query: &str) -> Vec<(u8, Vec<u8>)> {
    let stream = tls(addr, &pki.connector(true)).await;
    let mut request = format!("wss://localhost/exec/default/web/c?{query}")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
    );
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("websocket handshake");
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok()),
        Some("v5.channel.k8s.io")
    );
    let mut frames = Vec::new();
    while let Some(message) = ws.next().await {
        match message.expect("message") {
            Message::Binary(data) => {
                if let Some((channel, rest)) = data.split_first() {
                    frames.push((*channel, rest.to_vec()));
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    frames
}

fn channel(frames: &[(u8, Vec<u8>)], number: u8) -> String {
    frames
        .iter()
        .filter(|(c, _)| *c == number)
        .map(|(_, d)| String::from_utf8_lossy(d).to_string())
        .collect()
}

#[tokio::test]
async fn exec_streams_output_and_ends_with_the_status() {
    let (_dir, pki, addr, _runtime) = setup().await;
    let frames = exec(
        addr,
        &pki,
        "command=echo&command=hi&stdout=true&stderr=true",
    )
    .await;
    assert_eq!(channel(&frames, 1), "hi\n");
    let status: serde_json::Value = serde_json::from_str(&channel(&frames, 3)).expect("status");
    assert_eq!(
        status,
        serde_json::json!({"metadata": {}, "status": "Success"})
    );

    let frames = exec(
        addr,
        &pki,
        "command=sh&command=-c&command=exit%203&stdout=true&stderr=true",
    )
    .await;
    assert_eq!(channel(&frames, 2), "oops\n");
    let status: serde_json::Value = serde_json::from_str(&channel(&frames, 3)).expect("status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
}

#[tokio::test]
async fn exec_without_websocket_or_command_is_a_bad_request() {
    let (_dir, pki, addr, _runtime) = setup().await;
    let client = pki.connector(true);
    assert_eq!(
        get(
            addr,
            &client,
            "/exec/default/web/c?command=ls&stdout=true",
            None
        )
        .await
        .0,
        400
    );
}
