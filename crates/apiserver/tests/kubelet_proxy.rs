//! `pods/log` and `pods/exec` proxied to a fake kubelet (TLS, client certificate from the
//! apiserver, WebSocket `v5.channel.k8s.io` exec), driven by the upstream kubectl.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::SinkExt;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_apiserver::testing::TestServer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

async fn fake_kubelet_handler(
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path.starts_with("/containerLogs/default/p/c") {
        let body = format!("hello from logs {}\n", req.uri().query().unwrap_or(""));
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    if path.starts_with("/exec/default/p/c") {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| derive_accept_key(k.as_bytes()))
            .unwrap_or_default();
        let protocols = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let chosen = if protocols.contains("v5.channel.k8s.io") {
            "v5.channel.k8s.io"
        } else {
            "v4.channel.k8s.io"
        };
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            let mut out = vec![1u8];
            out.extend_from_slice(b"hi from exec\n");
            ws.send(Message::Binary(out.into())).await.ok();
            let mut status = vec![3u8];
            status.extend_from_slice(br#"{"metadata":{},"status":"Success"}"#);
            ws.send(Message::Binary(status.into())).await.ok();
            ws.close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await
            .ok();
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", key)
            .header("sec-websocket-protocol", chosen)
            .body(Full::new(Bytes::new()))
            .unwrap_or_default();
        return Ok(response);
    }
    Ok(Response::builder()
        .status(404)
        .body(Full::new(Bytes::from("not found")))
        .unwrap_or_default())
}

/// Starts a fake kubelet serving TLS with a certificate from the test CA; returns its port.
async fn fake_kubelet(server: &TestServer) -> anyhow::Result<u16> {
    let (cert, key) = server.pki.issue("kubelet", &[], &["127.0.0.1"])?;
    let certs = vec![rustls_pki_types::CertificateDer::from_pem_slice(
        cert.as_bytes(),
    )?];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service_fn(fake_kubelet_handler))
                    .with_upgrades()
                    .await
                    .ok();
            });
        }
    });
    Ok(port)
}

async fn bound_pod(server: &TestServer, port: u16) -> anyhow::Result<()> {
    let client = server.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}}))?;
    nodes.create(&PostParams::default(), &node).await?;
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}})),
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox:1.35"}]}}))?;
    pods.create(&PostParams::default(), &pod).await?;
    pods.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await?;
    Ok(())
}

async fn kubectl(server: &TestServer, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = tokio::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn logs_and_exec_are_proxied_to_the_kubelet() -> anyhow::Result<()> {
    if !Path::new("/usr/bin/kubectl").exists() {
        eprintln!("note: /usr/bin/kubectl not installed; skipping");
        return Ok(());
    }
    let server = TestServer::start().await?;
    let port = fake_kubelet(&server).await?;
    bound_pod(&server, port).await?;
    let (ok, out, err) = kubectl(&server, &["logs", "p", "--tail=5"]).await?;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("hello from logs") && out.contains("tailLines=5"),
        "{out}"
    );
    let (ok, out, err) = kubectl(&server, &["exec", "p", "--", "echo", "hi"]).await?;
    assert!(ok, "{out}{err}");
    assert_eq!(out, "hi from exec\n");
    Ok(())
}

#[tokio::test]
async fn logs_of_an_unbound_pod_is_a_bad_request() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let pods: Api<Pod> = Api::namespaced(server.client().await?, "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "u"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}))?;
    pods.create(&PostParams::default(), &pod).await?;
    let err = pods
        .logs("u", &Default::default())
        .await
        .expect_err("unbound");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 400 && s.message.contains("does not have a host assigned")),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn kube_rs_exec_is_proxied_to_the_kubelet() -> anyhow::Result<()> {
    use kube::api::AttachParams;
    use tokio::io::AsyncReadExt;
    let server = TestServer::start().await?;
    let port = fake_kubelet(&server).await?;
    bound_pod(&server, port).await?;
    let pods: Api<Pod> = Api::namespaced(server.client().await?, "default");
    let mut attached = pods
        .exec(
            "p",
            ["echo", "hi"],
            &AttachParams::default().stdout(true).stderr(false),
        )
        .await?;
    let mut stdout = attached
        .stdout()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut out = String::new();
    stdout.read_to_string(&mut out).await?;
    assert_eq!(out, "hi from exec\n");
    let logs = pods.logs("p", &Default::default()).await?;
    assert!(logs.starts_with("hello from logs"), "{logs}");
    Ok(())
}
