//! Client-certificate authentication in two steps, as upstream's servers do it (Go's TLS stack
//! only asks for a certificate; the x509 authenticator judges the chain per request).
//!
//! At the handshake [`AcceptAnyClientCert`] takes any certificate but checks the handshake
//! signature with the leaf's key, so the client proves it holds that key. The chain is judged
//! afterwards by [`ClientCa::verify`] (issuer, signatures, validity period, client-auth usage):
//! a certificate from another CA, an expired one or a broken chain then becomes a 401 with a
//! `Status` body instead of a failed handshake. Used by the apiserver and the kubelet API.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

/// The client CA (`--client-ca-file`): checks the chains callers present.
#[derive(Clone, Debug)]
pub struct ClientCa {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl ClientCa {
    /// Trusts the certificates of `roots` (ring's algorithms).
    pub fn new(roots: RootCertStore) -> Result<Self, VerifierBuilderError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()?;
        Ok(ClientCa { verifier })
    }

    /// Checks a chain (leaf first, then the intermediates the caller sent) now.
    pub fn verify(&self, chain: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        self.verify_at(chain, UnixTime::now())
    }

    /// Checks a chain at `now`: it must lead to the CA, every signature must hold, every
    /// certificate must be valid at `now` and the leaf must allow client authentication.
    pub fn verify_at(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(rustls::Error::NoCertificatesPresented);
        };
        self.verifier
            .verify_client_cert(leaf, intermediates, now)
            .map(|_| ())
    }
}

/// The handshake side: asks for a certificate without requiring one, accepts any chain, and
/// verifies the handshake signature with the leaf's key.
#[derive(Debug)]
pub struct AcceptAnyClientCert {
    ca: ClientCa,
}

impl AcceptAnyClientCert {
    /// A verifier whose signature checks use `ca`'s algorithms.
    pub fn new(ca: ClientCa) -> Self {
        AcceptAnyClientCert { ca }
    }
}

impl ClientCertVerifier for AcceptAnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No hints: clients (kubectl among them) then send their certificate whatever CA issued
    /// it, and a foreign one is answered with a 401 rather than silently made anonymous.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ca.verifier.supported_verify_schemes()
    }
}
