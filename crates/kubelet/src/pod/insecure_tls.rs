//! TLS for `httpGet` probes and lifecycle hooks with `scheme: HTTPS`. As upstream (Go's
//! `InsecureSkipVerify`), the server's certificate chain and name are not checked: a pod's
//! serving certificate is rarely issued for its IP by anything the kubelet trusts. The
//! handshake signatures are still verified, so the peer holds the key of the certificate it
//! shows.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Why a TLS connection to a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum InsecureTlsError {
    /// The client configuration could not be built.
    #[error("building the TLS client configuration: {0}")]
    Config(String),
    /// The host is not a valid server name or IP address.
    #[error("invalid server name {0:?}")]
    ServerName(String),
    /// The peer answered in plain HTTP (an `http` server on an `https` handler).
    #[error("server gave HTTP response to HTTPS client")]
    PlainHttp,
    /// The handshake failed.
    #[error("{0}")]
    Handshake(std::io::Error),
}

/// Accepts any certificate chain; checks the handshake signatures with the provider's
/// algorithms.
#[derive(Debug)]
struct SkipChainVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipChainVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn build_config() -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SkipChainVerification(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The shared client configuration (built once).
fn config() -> Result<Arc<ClientConfig>, InsecureTlsError> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(build_config)
        .clone()
        .map_err(InsecureTlsError::Config)
}

/// Runs the TLS handshake over `stream` to `host` without checking its certificate.
pub async fn connect(
    host: &str,
    stream: TcpStream,
) -> Result<TlsStream<TcpStream>, InsecureTlsError> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| InsecureTlsError::ServerName(host.to_string()))?;
    TlsConnector::from(config()?)
        .connect(name, stream)
        .await
        .map_err(|error| {
            // A plain HTTP answer ("HTTP/1.1 400 ...") is not a TLS record.
            let plain = error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|e| {
                    matches!(
                        e,
                        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
                    )
                });
            if plain {
                InsecureTlsError::PlainHttp
            } else {
                InsecureTlsError::Handshake(error)
            }
        })
}

/// A local TLS server for tests of HTTPS handlers.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    /// Serves TLS on a loopback port with a self-signed certificate for a name that is not
    /// the address dialled, answers every request with `answer` and sends each request's head
    /// to the receiver.
    pub(crate) async fn tls_server(
        answer: &'static [u8],
    ) -> (u16, mpsc::UnboundedReceiver<String>) {
        let generated = rcgen::generate_simple_self_signed(vec!["not-the-pod.example".to_string()])
            .expect("self-signed certificate");
        let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der()).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    continue;
                };
                let mut buf = [0u8; 1024];
                let n = tls.read(&mut buf).await.unwrap_or(0);
                let _sent = tx.send(String::from_utf8_lossy(&buf[..n]).to_string());
                let _written = tls.write_all(answer).await;
                let _shutdown = tls.shutdown().await;
            }
        });
        (port, rx)
    }

    /// Serves plain HTTP on a loopback port, answers every connection with `answer` and sends
    /// the bytes each one sent first (up to 2 KiB) to the receiver.
    pub(crate) async fn http_server(
        answer: &'static [u8],
    ) -> (u16, mpsc::UnboundedReceiver<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let _sent = tx.send(buf[..n].to_vec());
                let _written = socket.write_all(answer).await;
            }
        });
        (port, rx)
    }
}
