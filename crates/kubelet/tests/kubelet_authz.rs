//! Kubelet API authentication and authorization against an in-process apiserver
//! (`--authorization-mode Node,RBAC`, a static token file): client certificates and bearer
//! tokens (TokenReview) authenticate; every request is authorized with a SubjectAccessReview
//! on `nodes/<subresource>` of this node, with upstream 401/403 answers. The apiserver's own
//! client certificate (O=system:masters) keeps working. Certificates from another CA, expired
//! ones and ones without client-auth usage complete the TLS handshake and get a 401, as does
//! an anonymous exec.

use std::sync::Arc;

use kube_apiserver::testing::TestServer;
use kubelet::pod::PodStore;
use kubelet::runtime::fake::FakeRuntime;
use kubelet::server::auth::{AuthorizationMode, KubeletAuth};
use kubelet::server::{serve_with_auth, ServerState, TlsFiles};
use serde_json::json;

mod support;

use support::{connector, get};

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

/// A throwaway CA for the certificate tests.
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> anyhow::Result<Ca> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key)?.pem();
        Ok(Ca { params, key, pem })
    }

    /// (certificate PEM, key PEM) for `cn`, usable for serving and client auth.
    fn issue(
        &self,
        cn: &str,
        sans: &[&str],
        modify: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> anyhow::Result<(String, String)> {
        let key = rcgen::KeyPair::generate()?;
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        modify(&mut params);
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
    }
}

#[tokio::test]
async fn foreign_expired_and_missing_client_certificates_get_401_not_a_handshake_failure(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("kubelet-client-ca")?;
    let (serving_cert, serving_key) = ca.issue("n1", &["localhost", "127.0.0.1"], |_| {})?;
    std::fs::write(dir.path().join("kubelet.crt"), serving_cert)?;
    std::fs::write(dir.path().join("kubelet.key"), serving_key)?;
    std::fs::write(dir.path().join("ca.crt"), &ca.pem)?;
    let files = TlsFiles {
        cert: Some(dir.path().join("kubelet.crt")),
        key: Some(dir.path().join("kubelet.key")),
        client_ca: Some(dir.path().join("ca.crt")),
        self_signed_names: vec![],
    };
    let addr = kubelet::server::serve(
        "127.0.0.1:0".parse()?,
        &files,
        ServerState {
            store: PodStore::new(),
            runtime: Arc::new(FakeRuntime::new()),
            pod_logs_dir: dir.path().join("logs"),
        },
    )
    .await?;

    let valid = connector(&ca.pem, Some(ca.issue("apiserver", &[], |_| {})?));
    let (status, body) = get(addr, &valid, "/pods", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("PodList"));

    let unauthorized = (401, "Unauthorized".to_string());
    let foreign = Ca::new("kubelet-client-ca")?; // same name, another key
    let foreign = connector(&ca.pem, Some(foreign.issue("apiserver", &[], |_| {})?));
    assert_eq!(get(addr, &foreign, "/pods", None).await, unauthorized);
    assert_eq!(
        get(addr, &foreign, "/exec/default/web/c?command=ls", None).await,
        unauthorized
    );
    let expired = connector(
        &ca.pem,
        Some(ca.issue("apiserver", &[], |p| {
            p.not_before = rcgen::date_time_ymd(2001, 1, 1);
            p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        })?),
    );
    assert_eq!(get(addr, &expired, "/pods", None).await, unauthorized);
    let server_only = connector(
        &ca.pem,
        Some(ca.issue("apiserver", &[], |p| {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        })?),
    );
    assert_eq!(get(addr, &server_only, "/pods", None).await, unauthorized);

    // No certificate: health only; an anonymous exec or log read is refused.
    let anonymous = connector(&ca.pem, None);
    assert_eq!(
        get(addr, &anonymous, "/healthz", None).await,
        (200, "ok".into())
    );
    assert_eq!(
        get(addr, &anonymous, "/exec/default/web/c?command=ls", None).await,
        unauthorized
    );
    assert_eq!(
        get(addr, &anonymous, "/containerLogs/default/web/c", None).await,
        unauthorized
    );
    Ok(())
}
