//! The serving TLS configuration: server certificate, client certificates, ALPN h2 and
//! http/1.1.
//!
//! Client certificates are checked in two steps, as upstream's apiserver does it (Go's TLS stack
//! only asks for a certificate; the x509 authenticator verifies the chain per request). At the
//! handshake [`AcceptAnyClientCert`] takes any certificate but checks the handshake signature,
//! so the client proves it holds the certificate's key. The chain is then checked against
//! `--client-ca-file` by [`ClientCa::verify`] (issuer, signatures, validity period, client-auth
//! usage) when the request is authenticated: a certificate from another CA, an expired one or a
//! broken chain becomes a 401 with a `Status` body instead of a failed handshake.

use std::path::Path;
use std::sync::Arc;

pub use component_base::clientauth::{AcceptAnyClientCert, ClientCa};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file could not be read or parsed.
    #[error("reading certificates from {path}: {source}")]
    ReadCerts {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no certificate.
    #[error("no certificate found in {path}")]
    NoCerts {
        /// The file.
        path: String,
    },
    /// The private key file could not be read or parsed.
    #[error("reading private key from {path}: {source}")]
    ReadKey {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A CA certificate was rejected.
    #[error("adding CA certificate from {path}: {source}")]
    BadCa {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: rustls::Error,
    },
    /// The client verifier could not be built.
    #[error("building client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// rustls rejected the configuration (for example a key that does not match the certificate).
    #[error("building TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Reads every certificate in a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::ReadCerts {
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCerts {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// Reads the private key in a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::ReadKey {
        path: path.display().to_string(),
        source,
    })
}

/// Root store holding the certificates of a CA file.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(roots)
}

/// The ring crypto provider every TLS config here uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads the client CA (`--client-ca-file`).
pub fn load_client_ca(path: &Path) -> Result<ClientCa, TlsError> {
    Ok(ClientCa::new(read_roots(path)?)?)
}

/// Builds the serving configuration.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: &Path,
) -> Result<ServerConfig, TlsError> {
    let certs = read_certs(cert_file)?;
    let key = read_key(key_file)?;
    let verifier = AcceptAnyClientCert::new(load_client_ca(client_ca_file)?);
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Builds a client configuration for talking to kubelets (client cert + CA).
pub fn kubelet_client_config(
    cert_file: &Path,
    key_file: &Path,
    ca_file: &Path,
) -> Result<rustls::ClientConfig, TlsError> {
    let certs = read_certs(cert_file)?;
    let key = read_key(key_file)?;
    let roots = read_roots(ca_file)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
