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
}
