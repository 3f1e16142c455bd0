//! In-process apiserver for tests: [`TestServer::start`] generates a throwaway CA, serving and
//! admin client certificates, opens SQLite in a temp dir, listens on a random loopback port and
//! writes an admin kubeconfig usable by kube-rs and the upstream `kubectl`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{Options, StorageBackend};

/// Why a test server could not start.
#[derive(Debug, thiserror::Error)]
pub enum TestServerError {
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Certs(#[from] rcgen::Error),
    /// Writing files failed.
    #[error("writing test files: {0}")]
    Io(#[from] std::io::Error),
    /// The server failed to start.
    #[error("starting apiserver: {0}")]
    Start(#[from] crate::Error),
    /// The kube client could not be built.
    #[error("building client: {0}")]
    Client(#[from] component_base::client::ClientError),
}

/// A throwaway PKI: a CA plus a way to issue client certificates from it.
pub struct TestPki {
    ca_params: CertificateParams,
    ca_key: KeyPair,
    /// PEM of the CA certificate.
    pub ca_pem: String,
}

impl TestPki {
    /// A new CA.
    pub fn new() -> Result<Self, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_pem = ca_params.self_signed(&ca_key)?.pem();
        Ok(TestPki {
            ca_params,
            ca_key,
            ca_pem,
        })
    }

    /// Issues a certificate (PEM cert, PEM key) for `cn`/`orgs` with `sans`, for serving and
    /// client use.
    pub fn issue(
        &self,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
    ) -> Result<(String, String), rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes a kubeconfig with embedded certificate data.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> std::io::Result<()> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n    namespace: default\ncurrent-context: test\n",
        b64(ca_pem),
        b64(cert_pem),
        b64(key_pem)
    );
    std::fs::write(path, text)
}

/// A running in-process apiserver.
pub struct TestServer {
    /// Address it listens on.
    pub addr: SocketAddr,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// Admin kubeconfig (CN=kubernetes-admin, O=system:masters).
    pub kubeconfig: PathBuf,
    /// The throwaway PKI, to issue more client certificates.
    pub pki: TestPki,
    /// The server state (storage access for tests).
    pub state: std::sync::Arc<crate::state::ApiState>,
    dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Starts a server on a random loopback port with SQLite in a temp dir.
    pub async fn start() -> Result<Self, TestServerError> {
        Self::start_with(|_| {}).await
    }

    /// Like [`TestServer::start`], with `modify` applied to the options first (for example
    /// `options.authorization_mode = vec!["RBAC".into()]`).
    pub async fn start_with(modify: impl FnOnce(&mut Options)) -> Result<Self, TestServerError> {
        component_base::logging::init();
        let dir = tempfile::tempdir()?;
        let pki = TestPki::new()?;
        let (serving_cert, serving_key) =
            pki.issue("kube-apiserver", &[], &["127.0.0.1", "localhost"])?;
        let (admin_cert, admin_key) = pki.issue("kubernetes-admin", &["system:masters"], &[])?;
        let (kubelet_client_cert, kubelet_client_key) =
            pki.issue("kube-apiserver-kubelet-client", &["system:masters"], &[])?;
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("kubelet-client.crt"), &kubelet_client_cert)?;
        std::fs::write(p("kubelet-client.key"), &kubelet_client_key)?;
        std::fs::write(p("ca.crt"), &pki.ca_pem)?;
        std::fs::write(p("apiserver.crt"), &serving_cert)?;
        std::fs::write(p("apiserver.key"), &serving_key)?;
        let mut options = Options {
            secure_port: 0,
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertise_address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            tls_cert_file: p("apiserver.crt"),
            tls_private_key_file: p("apiserver.key"),
            client_ca_file: p("ca.crt"),
            storage_backend: StorageBackend::Sqlite,
            sqlite_path: p("state.db"),
            etcd_servers: vec![],
            etcd_prefix: "/registry".into(),
            service_cluster_ip_range: "10.96.0.0/12".into(),
            service_node_port_range: "30000-32767".into(),
            kubelet_client_certificate: Some(p("kubelet-client.crt")),
            kubelet_client_key: Some(p("kubelet-client.key")),
            kubelet_certificate_authority: Some(p("ca.crt")),
            service_account_key_file: vec![],
            service_account_signing_key_file: None,
            service_account_issuer: None,
            authn: Default::default(),
            watch_cache: true,
            encryption_provider_config: None,
            audit_policy_file: None,
            audit_log_path: None,
            audit_log_maxsize: 0,
            audit_log_maxbackup: 0,
            authorization_mode: vec!["AlwaysAllow".into()],
            enable_admission_plugins: vec![],
            // As upstream's integration test servers: no ServiceAccount admission (pods need no
            // service account); tests that want it clear this.
            disable_admission_plugins: vec!["ServiceAccount".into()],
        };
        modify(&mut options);
        let listener = crate::bind(&options).await?;
        let addr = listener.local_addr()?;
        options.secure_port = addr.port();
        let (state, tls) = crate::prepare(&options).await?;
        crate::bootstrap::bootstrap(&state)
            .await
            .map_err(crate::Error::Bootstrap)?;
        let rbac_watch = crate::authz::start(&state)
            .await
            .map_err(crate::Error::Storage)?;
        let url = format!("https://127.0.0.1:{}", addr.port());
        let kubeconfig = p("admin.kubeconfig");
        write_kubeconfig(&kubeconfig, &url, &pki.ca_pem, &admin_cert, &admin_key)?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serve_state = state.clone();
        let task = tokio::spawn(async move {
            crate::server::serve(listener, tls, serve_state, async {
                rx.await.ok();
            })
            .await;
            if let Some(t) = rbac_watch {
                t.abort();
            }
        });
        Ok(TestServer {
            addr,
            url,
            kubeconfig,
            pki,
            state,
            dir,
            shutdown: Some(tx),
            task,
        })
    }

    /// A kube-rs client authenticated as the admin.
    pub async fn client(&self) -> Result<kube::Client, TestServerError> {
        Ok(component_base::client::from_kubeconfig(Some(&self.kubeconfig)).await?)
    }

    /// The temp dir holding certificates, kubeconfig and the database.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a kubeconfig for another user (CN `user`, O `groups`) and returns its path.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> Result<PathBuf, TestServerError> {
        let (cert, key) = self.pki.issue(user, groups, &[])?;
        let path = self
            .dir
            .path()
            .join(format!("{user}.kubeconfig").replace(':', "_"));
        write_kubeconfig(&path, &self.url, &self.pki.ca_pem, &cert, &key)?;
        Ok(path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        self.task.abort();
    }
}
