//! Shared server state handed to every request: storage, the service networks and the kubelet
//! client configuration.

use std::net::IpAddr;
use std::sync::Arc;

use crate::admission::services::ServiceNetwork;
use crate::storage::Storage;

/// Everything a request handler needs.
pub struct ApiState {
    /// The storage backend.
    pub storage: Arc<dyn Storage>,
    /// Service ClusterIP range and NodePort range.
    pub services: ServiceNetwork,
    /// TLS client configuration towards kubelets (None: log/exec are unavailable).
    pub kubelet_tls: Option<Arc<rustls::ClientConfig>>,
    /// The address advertised in the `kubernetes` Service endpoints.
    pub advertise_address: IpAddr,
    /// The secure port.
    pub secure_port: u16,
    /// The authorizer chain (`--authorization-mode`).
    pub authorizer: Arc<crate::authz::Authorizer>,
    /// The enabled admission plugins (`--enable-admission-plugins`).
    pub admission: crate::admission::plugins::Plugins,
    /// Request counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// The watch cache lists and watches are served from (None: `--watch-cache=false`).
    pub watch_cache: Option<Arc<crate::storage::cache::WatchCache>>,
    /// Bearer-token authenticators and the service-account token issuer.
    pub authn: Arc<crate::auth::Authenticator>,
    /// The encryption-at-rest wrapper `storage` is (None: no `--encryption-provider-config`).
    pub encryption: Option<Arc<crate::storage::encryption::EncryptedStorage>>,
    /// The audit policy and log (None: no `--audit-policy-file` and `--audit-log-path`).
    pub audit: Option<Arc<crate::audit::Auditor>>,
    /// The revisions of the last writes made through [`ApiState::storage`] (see
    /// [`crate::storage::tracking`]).
    pub written_revision: Arc<crate::storage::tracking::Written>,
}

impl ApiState {
    /// Whether the stored value of `key` is encrypted with an older key (or not encrypted) and
    /// an update must rewrite it even when the object is unchanged (key rotation by
    /// `kubectl get -o json | kubectl replace -f -`). False without encryption or on errors.
    pub async fn needs_reencryption(&self, key: &str) -> bool {
        let Some(encryption) = &self.encryption else {
            return false;
        };
        match encryption.needs_rewrite(key).await {
            Ok(stale) => stale,
            Err(error) => {
                tracing::warn!(key, %error, "checking whether a value needs re-encryption");
                false
            }
        }
    }
}
