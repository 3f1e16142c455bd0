//! Talking to image registries (the OCI distribution API) for image pulls.
//!
//! The runtime asks a [`Registry`] for an image's manifest and blobs; [`OciRegistry`] is the real
//! one, built on `oci-client` (rustls with the `ring` provider). Registries on a loopback host
//! (`localhost`, `127.0.0.0/8`, `::1`) are spoken to over plain HTTP, as containerd does for
//! localhost; every other registry over HTTPS. Credentials come from the pod's
//! `imagePullSecrets` (see [`crate::runtime::credentials`]).

use std::fmt;
use std::net::IpAddr;
use std::sync::Once;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::AsyncWrite;

use super::containerd::archive::{
    MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_MANIFEST_LIST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    /// User name.
    pub username: String,
    /// Password (or token).
    pub password: String,
}

impl fmt::Debug for RegistryCredential {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What went wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference cannot be parsed.
    #[error("invalid reference format: {reference}")]
    InvalidReference {
        /// The reference.
        reference: String,
    },
    /// The registry does not know the manifest or blob.
    #[error("{reference}: not found")]
    NotFound {
        /// The reference (or `name@digest`).
        reference: String,
    },
    /// The registry refused the credentials (or wants some).
    #[error(
        "pull access denied, repository does not exist or may require authorization: {reason}"
    )]
    Unauthorized {
        /// What the registry said.
        reason: String,
    },
    /// Any other failure (network, protocol, digest mismatch, local I/O).
    #[error("{reason}")]
    Other {
        /// What went wrong.
        reason: String,
    },
}

/// A manifest or index as fetched from a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The raw bytes (their sha256 is `digest`).
    pub bytes: Vec<u8>,
    /// `sha256:...` of `bytes`.
    pub digest: String,
    /// Media type (from the document's `mediaType`, else guessed from its shape).
    pub media_type: String,
}

/// A source of manifests and blobs; implemented by [`OciRegistry`] and by test fakes.
#[async_trait::async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Fetches the manifest or index `reference` (a normalised name, `name:tag` or
    /// `name@sha256:...`) names.
    async fn manifest(
        &self,
        reference: &str,
        credential: Option<&RegistryCredential>,
    ) -> Result<FetchedManifest, RegistryError>;

    /// Streams blob `digest` of `reference`'s repository into `out`, verifying its digest.
    async fn blob(
        &self,
        reference: &str,
        digest: &str,
        credential: Option<&RegistryCredential>,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<(), RegistryError>;
}

/// The media types a pull accepts for manifests.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    MEDIA_OCI_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_DOCKER_MANIFEST_LIST,
];

/// The media type of a manifest document: its `mediaType` field, else `manifests` means an OCI
/// index and anything else an OCI manifest.
pub fn manifest_media_type(bytes: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(media_type) = value.get("mediaType").and_then(|m| m.as_str()) {
        return media_type.to_string();
    }
    if value.get("manifests").is_some() {
        MEDIA_OCI_INDEX.to_string()
    } else {
        MEDIA_OCI_MANIFEST.to_string()
    }
}

/// The registry host of a normalised image name (`127.0.0.1:5000/busybox:1` -> `127.0.0.1:5000`).
pub fn registry_host(name: &str) -> &str {
    name.split_once('/').map(|(host, _)| host).unwrap_or(name)
}

/// `name` with its tag or digest replaced by `@digest` (same repository).
pub fn with_digest(name: &str, digest: &str) -> String {
    let repository = match name.split_once('@') {
        Some((repository, _)) => repository,
        None => match name.rfind(':') {
            Some(colon) if !name[colon..].contains('/') => &name[..colon],
            _ => name,
        },
    };
    format!("{repository}@{digest}")
}

/// Whether a registry host (with optional port) is on loopback, where plain HTTP is used.
pub fn is_loopback_registry(host: &str) -> bool {
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map(|(h, _)| h).unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host,
        }
    };
    without_port == "localhost"
        || without_port
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The real registry client.
#[derive(Clone, Debug)]
pub struct OciRegistry {
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl Default for OciRegistry {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

impl OciRegistry {
    /// A client with the default timeouts (10 s connect, 60 s between reads).
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh client for one request: `oci-client` caches the first credential per registry,
    /// and different pods may bring different ones.
    fn client(&self, host: &str) -> Client {
        static PROVIDER: Once = Once::new();
        PROVIDER.call_once(|| {
            if rustls::crypto::ring::default_provider()
                .install_default()
                .is_err()
            {
                tracing::debug!("a rustls crypto provider was already installed");
            }
        });
        let protocol = if is_loopback_registry(host) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(self.connect_timeout),
            read_timeout: Some(self.read_timeout),
            platform_resolver: None,
            ..Default::default()
        })
    }
}

fn parse(reference: &str) -> Result<Reference, RegistryError> {
    reference
        .parse::<Reference>()
        .map_err(|_| RegistryError::InvalidReference {
            reference: reference.to_string(),
        })
}

fn auth(credential: Option<&RegistryCredential>) -> RegistryAuth {
    match credential {
        Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
        None => RegistryAuth::Anonymous,
    }
}

fn classify(reference: &str, error: OciDistributionError) -> RegistryError {
    use oci_client::errors::OciErrorCode;
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => RegistryError::NotFound {
            reference: reference.to_string(),
        },
        OciDistributionError::RegistryError { ref envelope, .. }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) =>
        {
            RegistryError::NotFound {
                reference: reference.to_string(),
            }
        }
        OciDistributionError::RegistryError { ref envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)) =>
        {
            RegistryError::Unauthorized {
                reason: error.to_string(),
            }
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => RegistryError::Unauthorized {
            reason: error.to_string(),
        },
        other => RegistryError::Other {
            reason: other.to_string(),
        },
    }
}

#[async_trait::async_trait]
impl Registry for OciRegistry {
    async fn manifest(
        &self,
        reference: &str,
        credential: Option<&RegistryCredential>,
    ) -> Result<FetchedManifest, RegistryError> {
        let parsed = parse(reference)?;
        let client = self.client(parsed.registry());
        let (bytes, digest) = client
            .pull_manifest_raw(&parsed, &auth(credential), &MANIFEST_MEDIA_TYPES)
            .await
            .map_err(|e| classify(reference, e))?;
        let media_type = manifest_media_type(&bytes);
        Ok(FetchedManifest {
            bytes: bytes.to_vec(),
            digest,
            media_type,
        })
    }

    async fn blob(
        &self,
        reference: &str,
        digest: &str,
        credential: Option<&RegistryCredential>,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<(), RegistryError> {
        let parsed = parse(reference)?;
        let client = self.client(parsed.registry());
        client
            .store_auth_if_needed(parsed.resolve_registry(), &auth(credential))
            .await;
        client
            .pull_blob(&parsed, digest, out)
            .await
            .map_err(|e| classify(&with_digest(reference, digest), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised_with_or_without_port() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.1.2.3:80",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback_registry(host), "{host}");
        }
        for host in [
            "docker.io",
            "registry.k8s.io",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
        ] {
            assert!(!is_loopback_registry(host), "{host}");
        }
    }

    #[test]
    fn with_digest_replaces_the_tag_or_digest() {
        assert_eq!(
            with_digest("127.0.0.1:5000/busybox:1.35", "sha256:ab"),
            "127.0.0.1:5000/busybox@sha256:ab"
        );
        assert_eq!(
            with_digest("docker.io/library/busybox@sha256:cd", "sha256:ab"),
            "docker.io/library/busybox@sha256:ab"
        );
        assert_eq!(
            with_digest("localhost:5000/a/b", "sha256:ab"),
            "localhost:5000/a/b@sha256:ab"
        );
        assert_eq!(registry_host("127.0.0.1:5000/busybox:1"), "127.0.0.1:5000");
    }

    #[test]
    fn manifest_media_type_reads_the_field_or_the_shape() {
        assert_eq!(
            manifest_media_type(
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#
            ),
            MEDIA_DOCKER_MANIFEST
        );
        assert_eq!(
            manifest_media_type(br#"{"schemaVersion":2,"manifests":[]}"#),
            MEDIA_OCI_INDEX
        );
        assert_eq!(
            manifest_media_type(br#"{"schemaVersion":2,"layers":[]}"#),
            MEDIA_OCI_MANIFEST
        );
    }

    #[test]
    fn credentials_never_print_their_password() {
        let c = RegistryCredential {
            username: "me".into(),
            password: "s3cret".into(),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("me") && !shown.contains("s3cret"), "{shown}");
    }
}
