//! Kubelet API authentication and authorization against an in-process apiserver
//! (`--authorization-mode Node,RBAC`, a static token file): client certificates and bearer
//! tokens (TokenReview) authenticate; every request is authorized with a SubjectAccessReview
//! on `nodes/<subresource>` of this node, with upstream 401/403 answers. The apiserver's own
//! client certificate (O=system:masters) keeps working.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kube_apiserver::testing::TestServer;
use kubelet::pod::PodStore;
use kubelet::runtime::fake::FakeRuntime;
use kubelet::server::auth::{AuthorizationMode, KubeletAuth};
use kubelet::server::{serve_with_auth, ServerState, TlsFiles};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use tokio_rustls::TlsConnector;

fn connector(ca_pem: &str, client: Option<(String, String)>) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca")).expect("add");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("certs");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

async fn get(
    addr: SocketAddr,
    connector: &TlsConnector,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let stream = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("tls");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut request = http::Request::get(path).header("host", "localhost");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Empty::<Bytes>::new()).expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).to_string())
}

async fn post(client: &kube::Client, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
    let request = http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body)?)?;
    client.request_text(request).await?;
    Ok(())
}

#[tokio::test]
async fn tokens_and_certificates_are_authorized_with_subject_access_reviews() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "alice-token,alice,uid-alice\nbob-token,bob,uid-bob\n",
    )?;
    let server = TestServer::start_with(|o| {
        o.authorization_mode = vec!["Node".into(), "RBAC".into()];
        o.authn.token_auth_file = Some(tokens.clone());
    })
    .await?;
    let admin = server.client().await?;
    post(
        &admin,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "kubelet-proxy"},
            "rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get", "create"]}]}),
    )
    .await?;
    post(
        &admin,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "alice-kubelet-proxy"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": "kubelet-proxy"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}),
    )
    .await?;

    // The kubelet asks the apiserver as itself (the Node authorizer lets it review).
    let kubelet_config = server.kubeconfig_for("system:node:n1", &["system:nodes"])?;
    let kubelet_client = component_base::client::from_kubeconfig(Some(&kubelet_config)).await?;
    let auth = Arc::new(KubeletAuth::new(
        kubelet_client,
        "n1",
        true,
        AuthorizationMode::Webhook,
    ));
    let (serving_cert, serving_key) = server.pki.issue("n1", &[], &["localhost", "127.0.0.1"])?;
    std::fs::write(dir.path().join("kubelet.crt"), serving_cert)?;
    std::fs::write(dir.path().join("kubelet.key"), serving_key)?;
    std::fs::write(dir.path().join("ca.crt"), &server.pki.ca_pem)?;
    let files = TlsFiles {
        cert: Some(dir.path().join("kubelet.crt")),
        key: Some(dir.path().join("kubelet.key")),
        client_ca: Some(dir.path().join("ca.crt")),
        self_signed_names: vec![],
    };
    let addr = serve_with_auth(
        "127.0.0.1:0".parse()?,
        &files,
        ServerState {
            store: PodStore::new(),
            runtime: Arc::new(FakeRuntime::new()),
            pod_logs_dir: dir.path().join("logs"),
        },
        Some(auth),
    )
    .await?;

    let ca = server.pki.ca_pem.clone();
    let anonymous = connector(&ca, None);
    assert_eq!(
        get(addr, &anonymous, "/healthz", None).await,
        (200, "ok".into())
    );
    assert_eq!(
        get(addr, &anonymous, "/pods", None).await,
        (401, "Unauthorized".into())
    );
    assert_eq!(
        get(addr, &anonymous, "/pods", Some("garbage")).await,
        (401, "Unauthorized".into())
    );
    let (status, body) = get(addr, &anonymous, "/pods", Some("alice-token")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("PodList"));
    assert_eq!(
        get(addr, &anonymous, "/stats/summary", Some("alice-token")).await,
        (
            403,
            "Forbidden (user=alice, verb=get, resource=nodes, subresource=stats)".into()
        )
    );
    assert_eq!(
        get(addr, &anonymous, "/pods", Some("bob-token")).await,
        (
            403,
            "Forbidden (user=bob, verb=get, resource=nodes, subresource=proxy)".into()
        )
    );
    // Exec over a WebSocket GET also needs `create`: alice has it, so the request reaches the
    // handler (which then wants an upgrade).
    let (status, _) = get(
        addr,
        &anonymous,
        "/exec/default/web/c?command=ls",
        Some("alice-token"),
    )
    .await;
    assert_ne!(status, 401);
    assert_ne!(status, 403);

    let apiserver = connector(
        &ca,
        Some(
            server
                .pki
                .issue("kube-apiserver-kubelet-client", &["system:masters"], &[])?,
        ),
    );
    assert_eq!(get(addr, &apiserver, "/pods", None).await.0, 200);
    let carol = connector(&ca, Some(server.pki.issue("carol", &[], &[])?));
    assert_eq!(
        get(addr, &carol, "/containerLogs/default/web/c", None).await,
        (
            403,
            "Forbidden (user=carol, verb=get, resource=nodes, subresource=proxy)".into()
        )
    );
    Ok(())
}
