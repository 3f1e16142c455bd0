//! Client certificates on the in-process apiserver: the TLS handshake takes any certificate
//! (the client still proves it holds the key) and the chain is checked against
//! `--client-ca-file` when the request is authenticated, as upstream's x509 authenticator does.
//! A certificate from another CA, an expired one, one without client-auth usage or one whose
//! chain does not lead to the CA gets a 401 `Status` (reason Unauthorized) even where anonymous
//! requests are allowed; a valid bearer token next to a bad certificate still authenticates;
//! the upstream `kubectl` is told to log in (a 401), not a TLS error. A certificate presented
//! without its key (the handshake signed with another) still fails the handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kube_apiserver::testing::TestServer;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio_rustls::TlsConnector;

const KUBECTL: &str = "/usr/bin/kubectl";

/// A throwaway CA.
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

    /// A client certificate (PEM cert, PEM key) for `cn` in `orgs`, after `modify`.
    fn issue(
        &self,
        cn: &str,
        orgs: &[&str],
        modify: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> anyhow::Result<(String, String)> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        modify(&mut params);
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
    }
}

/// A server whose client CA is `ca` (its admin certificate is then foreign: the tests use
/// `admin-token`, a `system:masters` member from the token file).
async fn server(dir: &Path, ca: &Ca, rbac: bool) -> anyhow::Result<TestServer> {
    let ca_file = dir.join("client-ca.crt");
    std::fs::write(&ca_file, &ca.pem)?;
    let tokens = dir.join("tokens.csv");
    std::fs::write(
        &tokens,
        "admin-token,token-admin,1,system:masters\nalice-token,alice,2\n",
    )?;
    Ok(TestServer::start_with(|o| {
        o.client_ca_file = ca_file;
        o.authn.token_auth_file = Some(tokens);
        if rbac {
            o.authorization_mode = vec!["RBAC".into()];
        }
    })
    .await?)
}

/// What a client shows: a certificate chain with its key, and/or a bearer token.
#[derive(Default)]
struct Credentials {
    chain: Vec<CertificateDer<'static>>,
    key: Option<PrivateKeyDer<'static>>,
    token: Option<String>,
}

impl Credentials {
    fn cert((cert, key): (String, String)) -> anyhow::Result<Credentials> {
        Ok(Credentials {
            chain: CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>()?,
            key: Some(PrivateKeyDer::from_pem_slice(key.as_bytes())?),
            token: None,
        })
    }
}

/// Sends one request over a fresh TLS connection; answers (status, JSON body).
async fn request(
    server: &TestServer,
    credentials: Credentials,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server.pki.ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match credentials.key {
        Some(key) => builder.with_client_auth_cert(credentials.chain, key)?,
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(server.addr).await?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json");
    if let Some(token) = &credentials.token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let response = sender
        .send_request(builder.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

async fn get(server: &TestServer, credentials: Credentials) -> anyhow::Result<(u16, Value)> {
    request(server, credentials, "GET", "/api/v1/namespaces", None).await
}

/// Asserts the upstream 401 `Status`.
fn unauthorized(answer: &(u16, Value)) {
    let (code, body) = answer;
    assert_eq!(*code, 401, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["reason"], "Unauthorized", "{body}");
    assert_eq!(body["message"], "Unauthorized", "{body}");
    assert_eq!(body["code"], 401, "{body}");
}

async fn whoami(server: &TestServer, credentials: Credentials) -> anyhow::Result<(u16, Value)> {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    request(
        server,
        credentials,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(review),
    )
    .await
}

#[tokio::test]
async fn a_valid_client_certificate_authenticates_its_subject() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("client-ca")?;
    let server = server(dir.path(), &ca, false).await?;
    let alice = || -> anyhow::Result<Credentials> {
        Credentials::cert(ca.issue("alice", &["devs"], |_| {})?)
    };
    let (code, body) = get(&server, alice()?).await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "NamespaceList", "{body}");
    let (code, review) = whoami(&server, alice()?).await?;
    assert_eq!(code, 201, "{review}");
    assert_eq!(review["status"]["userInfo"]["username"], "alice");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!(["devs", "system:authenticated"])
    );
    Ok(())
}

#[tokio::test]
async fn bad_client_certificates_get_401_even_where_anonymous_is_allowed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("client-ca")?;
    let server = server(dir.path(), &ca, false).await?;
    // Anonymous callers may read /version, so the 401 there is the certificate's doing.
    let version = |credentials| request(&server, credentials, "GET", "/version", None);
    assert_eq!(version(Credentials::default()).await?.0, 200);

    let other = Ca::new("client-ca")?; // the same name, another key
    let foreign = other.issue("kubernetes-admin", &["system:masters"], |_| {})?;
    unauthorized(&get(&server, Credentials::cert(foreign.clone())?).await?);
    unauthorized(&version(Credentials::cert(foreign.clone())?).await?);

    let expired = ca.issue("alice", &[], |p| {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    })?;
    unauthorized(&get(&server, Credentials::cert(expired)?).await?);

    let not_yet_valid = ca.issue("alice", &[], |p| {
        p.not_before = rcgen::date_time_ymd(2990, 1, 1);
        p.not_after = rcgen::date_time_ymd(2991, 1, 1);
    })?;
    unauthorized(&get(&server, Credentials::cert(not_yet_valid)?).await?);

    let serving_only = ca.issue("alice", &[], |p| {
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    })?;
    unauthorized(&get(&server, Credentials::cert(serving_only)?).await?);

    // Garbage after the leaf: a foreign leaf stays foreign, a valid one stays valid.
    let garbage = CertificateDer::from(vec![0x30, 0x05, 0x02, 0x03, 0xde, 0xad, 0xbe]);
    let mut with_garbage = Credentials::cert(foreign.clone())?;
    with_garbage.chain.push(garbage.clone());
    unauthorized(&get(&server, with_garbage).await?);
    let mut valid_with_garbage = Credentials::cert(ca.issue("alice", &[], |_| {})?)?;
    valid_with_garbage.chain.push(garbage);
    assert_eq!(get(&server, valid_with_garbage).await?.0, 200);

    // A foreign intermediate CA does not make a chain to our CA.
    let mut foreign_chain = Credentials::cert(foreign.clone())?;
    foreign_chain.chain.extend(
        CertificateDer::pem_slice_iter(other.pem.as_bytes()).collect::<Result<Vec<_>, _>>()?,
    );
    unauthorized(&get(&server, foreign_chain).await?);

    // A bad certificate next to a valid token: the token authenticates (union of
    // authenticators); next to a bad token it stays a 401.
    let mut with_token = Credentials::cert(foreign.clone())?;
    with_token.token = Some("alice-token".into());
    let (code, review) = whoami(&server, with_token).await?;
    assert_eq!(code, 201, "{review}");
    assert_eq!(review["status"]["userInfo"]["username"], "alice");
    let mut with_bad_token = Credentials::cert(foreign)?;
    with_bad_token.token = Some("nobody-token".into());
    unauthorized(&get(&server, with_bad_token).await?);

    // The server keeps serving valid callers.
    let admin = Credentials {
        token: Some("admin-token".into()),
        ..Credentials::default()
    };
    assert_eq!(get(&server, admin).await?.0, 200);
    Ok(())
}

/// A kubeconfig presenting a client certificate.
fn cert_kubeconfig(
    server: &TestServer,
    name: &str,
    (cert, key): (String, String),
) -> anyhow::Result<PathBuf> {
    let path = server.dir().join(format!("{name}.kubeconfig"));
    kube_apiserver::testing::write_kubeconfig(&path, &server.url, &server.pki.ca_pem, &cert, &key)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_kubectl_with_a_foreign_certificate_is_unauthorized() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("client-ca")?;
    let server = server(dir.path(), &ca, true).await?;
    let run = |kubeconfig: &Path| {
        std::process::Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["get", "namespaces", "-o", "name"])
            .output()
    };
    let foreign = Ca::new("client-ca")?.issue("kubernetes-admin", &["system:masters"], |_| {})?;
    let out = run(&cert_kubeconfig(&server, "foreign", foreign)?)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("error: You must be logged in to the server"),
        "{stderr}"
    );
    let admin = ca.issue("kubernetes-admin", &["system:masters"], |_| {})?;
    let out = run(&cert_kubeconfig(&server, "admin", admin)?)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("namespace/default"), "{stdout}");
    Ok(())
}

/// Presents a fixed certificate and signs with a fixed key, matching or not.
#[derive(Debug)]
struct FixedIdentity(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// GET /api/v1/namespaces presenting `cert` and signing the handshake with `key`; the status,
/// or an error when the connection fails.
async fn get_as(server: &TestServer, cert: &str, key: &str) -> anyhow::Result<u16> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>()?;
    let signing =
        provider
            .key_provider
            .load_private_key(rustls_pki_types::PrivateKeyDer::from_pem_slice(
                key.as_bytes(),
            )?)?;
    let identity = FixedIdentity(Arc::new(rustls::sign::CertifiedKey::new(chain, signing)));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server.pki.ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(identity));
    let tcp = tokio::net::TcpStream::connect(server.addr).await?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let request = http::Request::get("/api/v1/namespaces")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))?;
    Ok(sender.send_request(request).await?.status().as_u16())
}

#[tokio::test]
async fn a_stolen_certificate_without_its_key_fails_the_handshake() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("client-ca")?;
    let server = server(dir.path(), &ca, false).await?;
    let (alice_cert, alice_key) = ca.issue("alice", &[], |_| {})?;
    let (_, mallory_key) = ca.issue("mallory", &[], |_| {})?;
    assert_eq!(get_as(&server, &alice_cert, &alice_key).await?, 200);
    // Alice's certificate, but the handshake signed with another key: no HTTP answer at all.
    let stolen = get_as(&server, &alice_cert, &mallory_key).await;
    assert!(stolen.is_err(), "{stolen:?}");
    // The server keeps serving.
    assert_eq!(get_as(&server, &alice_cert, &alice_key).await?, 200);
    Ok(())
}
