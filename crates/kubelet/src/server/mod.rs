//! The kubelet API: HTTPS on `--port` with client certificates verified against
//! `--client-ca-file`. Routes (see [`routes`]): `/healthz`, `/pods`,
//! `/containerLogs/{ns}/{pod}/{container}`, `/exec/...` and `/attach/...` (WebSocket,
//! [`stream`]). Callers without a verified client certificate only get `/healthz`; with
//! [`auth::KubeletAuth`] ([`serve_with_auth`]) bearer tokens are accepted too and every request
//! is authorized with a SubjectAccessReview.

pub mod auth;
pub mod logs;
pub mod portforward;
pub mod query;
pub mod routes;
pub mod spdy;
pub mod spdy_stream;
pub mod stats;
pub mod stream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use routes::{router, Peer, ServerState};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A certificate or key file could not be read.
    #[error("reading {path}: {reason}")]
    ReadPem {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The TLS configuration was rejected.
    #[error("building the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client CA could not be used.
    #[error("using --client-ca-file: {0}")]
    ClientCa(String),
    /// Generating a self-signed serving certificate failed.
    #[error("generating a self-signed serving certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    /// The port could not be bound.
    #[error("binding the kubelet API to {addr}: {source} (is another kubelet running, or the port taken? pick another with --port)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// TLS settings of the kubelet API.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// `--tls-cert-file` (None: a self-signed certificate is generated).
    pub cert: Option<PathBuf>,
    /// `--tls-private-key-file`.
    pub key: Option<PathBuf>,
    /// `--client-ca-file` (None: no client certificates are asked for, every caller is trusted).
    pub client_ca: Option<PathBuf>,
    /// Names for a generated self-signed certificate.
    pub self_signed_names: Vec<String>,
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let fail = |reason: String| ServerError::ReadPem {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificates in file".into()));
    }
    Ok(certs)
}

/// The client CA of `--client-ca-file`, if given.
pub fn client_ca(files: &TlsFiles) -> Result<Option<auth::ClientCa>, ServerError> {
    let Some(ca) = &files.client_ca else {
        return Ok(None);
    };
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| ServerError::ClientCa(e.to_string()))?;
    }
    auth::ClientCa::new(roots)
        .map(Some)
        .map_err(|e| ServerError::ClientCa(e.to_string()))
}

/// Builds the rustls server configuration.
pub fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, ServerError> {
    tls_config_with(files, client_ca(files)?)
}

/// Builds the rustls server configuration; with a client CA, client certificates are asked for
/// and taken at the handshake, their chains checked per connection ([`auth::check_certificate`]).
fn tls_config_with(
    files: &TlsFiles,
    client_ca: Option<auth::ClientCa>,
) -> Result<rustls::ServerConfig, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (certs, key) = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ServerError::ReadPem {
                path: key.display().to_string(),
                reason: e.to_string(),
            })?;
            (certs, key)
        }
        _ => {
            let generated = rcgen::generate_simple_self_signed(files.self_signed_names.clone())?;
            let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
                .map_err(|e| ServerError::ClientCa(e.to_string()))?;
            (vec![generated.cert.der().clone()], key)
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(Arc::new(auth::AcceptAnyClientCert::new(ca))),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Binds `addr` now (so a taken port fails the start) and serves the kubelet API in the
/// background. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    files: &TlsFiles,
    state: ServerState,
) -> Result<SocketAddr, ServerError> {
    serve_with_auth(addr, files, state, None).await
}

/// Like [`serve`], with callers authenticated and authorized by `auth`
/// (`--authentication-token-webhook`, `--authorization-mode Webhook`); `None` keeps client
/// certificates as the only check.
pub async fn serve_with_auth(
    addr: SocketAddr,
    files: &TlsFiles,
    state: ServerState,
    auth: Option<Arc<auth::KubeletAuth>>,
) -> Result<SocketAddr, ServerError> {
    serve_with_stats(addr, files, state, auth, None).await
}

/// Like [`serve_with_auth`], with `/stats/summary` answered from `stats`.
pub async fn serve_with_stats(
    addr: SocketAddr,
    files: &TlsFiles,
    state: ServerState,
    auth: Option<Arc<auth::KubeletAuth>>,
    stats: Option<Arc<crate::node::stats::StatsCollector>>,
) -> Result<SocketAddr, ServerError> {
    let client_ca = client_ca(files)?;
    let config = tls_config_with(files, client_ca.clone())?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let mut app = router(state);
    if let Some(collector) = stats {
        app = app.layer(axum::Extension(stats::StatsSource(collector)));
    }
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a kubelet API connection failed");
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            let auth = auth.clone();
            let client_ca = client_ca.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(error) => {
                        tracing::debug!(%remote, %error, "TLS handshake failed");
                        return;
                    }
                };
                let (authenticated, certificate) = match &client_ca {
                    Some(ca) => {
                        let check =
                            auth::check_certificate(ca, tls.get_ref().1.peer_certificates());
                        (check.verified, check.identity)
                    }
                    None => (true, None),
                };
                let peer = Peer {
                    authenticated,
                    certificate,
                    auth,
                };
                let service = TowerToHyperService::new(app.layer(axum::Extension(peer)));
                if let Err(error) = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(%remote, %error, "kubelet API connection ended with an error");
                }
            });
        }
    });
    tracing::info!(addr = %local, "kubelet API serving");
    Ok(local)
}
