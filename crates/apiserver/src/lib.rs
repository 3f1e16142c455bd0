//! `kube-apiserver`: the Kubernetes API over HTTPS on top of a [`storage::Storage`] backend.
//!
//! Start with [`run`] (what `main` calls) and [`handlers`] (request dispatch). Resources are
//! handled generically as JSON, described by `api_types::registry`; typed logic lives in
//! [`admission`] (defaults, validation, allocation), [`table`] (server-side printing) and
//! [`patch`] (strategic merge). [`testing`] starts a server in-process for tests.

pub mod admission;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod bootstrap;
pub mod conversion;
pub mod discovery;
pub mod event_ttl;
pub mod handlers;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod options;
pub mod patch;
pub mod protobuf;
pub mod proxy;
pub mod request;
pub mod selectors;
pub mod server;
pub mod state;
pub mod status;
pub mod storage;
pub mod table;
pub mod testing;
pub mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

pub use options::{Options, StorageBackend};

use crate::admission::services::{RangeError, ServiceNetwork};
use crate::state::ApiState;
use crate::status::ApiError;
use crate::storage::{StorageConfig, StorageError};
use crate::tls::TlsError;

/// Why the apiserver could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TLS material is missing or bad.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// A range flag is bad.
    #[error("{0}")]
    Range(#[from] RangeError),
    /// The storage backend could not be opened.
    #[error("opening storage: {0}")]
    Storage(#[from] StorageError),
    /// `--storage-backend etcd3` without `--etcd-servers`.
    #[error("--etcd-servers must be specified when --storage-backend is etcd3")]
    NoEtcdServers,
    /// The secure port could not be bound.
    #[error("failed to listen on {addr}: {source} (is the port already in use?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Creating the bootstrap objects failed.
    #[error("creating bootstrap objects: {0}")]
    Bootstrap(#[source] ApiError),
    /// `--authorization-mode` is unusable.
    #[error("invalid --authorization-mode: {0}")]
    Authorization(#[from] authz::ConfigError),
    /// The token file or service-account keys are unusable.
    #[error("{0}")]
    Authentication(#[from] auth::AuthnError),
    /// `--enable-admission-plugins` / `--disable-admission-plugins` are unusable.
    #[error("invalid admission plugin flags: {0}")]
    Admission(#[from] admission::plugins::ConfigError),
    /// `--encryption-provider-config` is unusable.
    #[error("{0}")]
    Encryption(#[from] storage::encryption::ConfigError),
    /// The audit policy or log is unusable.
    #[error("{0}")]
    Audit(#[from] audit::AuditError),
    /// Only one of the kubelet client certificate and key was given.
    #[error("--kubelet-client-certificate and --kubelet-client-key must be given together")]
    KubeletClientPair,
}

/// The advertise address: the flag, else the bind address unless unspecified, else 127.0.0.1.
pub fn advertise_address(options: &Options) -> IpAddr {
    options.advertise_address.unwrap_or({
        if options.bind_address.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            options.bind_address
        }
    })
}

/// Builds the server state and TLS configuration from options (no listening yet).
pub async fn prepare(
    options: &Options,
) -> Result<(Arc<ApiState>, Arc<rustls::ServerConfig>), Error> {
    let modes = authz::parse_modes(&options.authorization_mode)?;
    let admission = admission::plugins::Plugins::new(
        &options.enable_admission_plugins,
        &options.disable_admission_plugins,
    )?;
    let tls = tls::server_config(
        &options.tls_cert_file,
        &options.tls_private_key_file,
        &options.client_ca_file,
    )?;
    let services = ServiceNetwork::parse(
        &options.service_cluster_ip_range,
        &options.service_node_port_range,
    )?;
    let kubelet_tls = match (
        &options.kubelet_client_certificate,
        &options.kubelet_client_key,
    ) {
        (Some(cert), Some(key)) => {
            let ca = options
                .kubelet_certificate_authority
                .as_ref()
                .unwrap_or(&options.client_ca_file);
            Some(Arc::new(tls::kubelet_client_config(cert, key, ca)?))
        }
        (None, None) => None,
        _ => return Err(Error::KubeletClientPair),
    };
    let config = match options.storage_backend {
        StorageBackend::Sqlite => StorageConfig::Sqlite {
            path: options.sqlite_path.clone(),
        },
        StorageBackend::Etcd3 => {
            if options.etcd_servers.is_empty() {
                return Err(Error::NoEtcdServers);
            }
            StorageConfig::Etcd {
                endpoints: options.etcd_servers.clone(),
                prefix: options.etcd_prefix.clone(),
            }
        }
    };
    let authn = Arc::new(auth::Authenticator::from_options(options)?);
    let encryption = options
        .encryption_provider_config
        .as_deref()
        .map(storage::encryption::EncryptionConfig::load)
        .transpose()?;
    let audit = audit::Auditor::from_options(options)?;
    let storage = storage::open(&config).await?;
    let encryption = encryption.map(|config| {
        Arc::new(storage::encryption::EncryptedStorage::new(
            storage.clone(),
            config,
        ))
    });
    let storage: Arc<dyn storage::Storage> = match &encryption {
        Some(encrypted) => encrypted.clone(),
        None => storage,
    };
    let written_revision = Arc::new(storage::tracking::Written::default());
    let storage: Arc<dyn storage::Storage> = Arc::new(storage::tracking::WriteTracking::new(
        storage,
        written_revision.clone(),
    ));
    let authorizer = Arc::new(authz::Authorizer::new(modes, storage.clone()));
    let watch_cache = options.watch_cache.then(|| {
        Arc::new(storage::cache::WatchCache::start(
            storage.clone(),
            Default::default(),
        ))
    });
    let state = Arc::new(ApiState {
        storage,
        authorizer,
        admission,
        services,
        kubelet_tls,
        advertise_address: advertise_address(options),
        secure_port: options.secure_port,
        metrics: Default::default(),
        authn,
        watch_cache,
        written_revision,
        encryption,
        audit,
    });
    if let Some(cache) = &state.watch_cache {
        state.metrics.set_watch_cache(cache.metrics_handle());
    }
    Ok((state, Arc::new(tls)))
}

/// Binds the secure port.
pub async fn bind(options: &Options) -> Result<tokio::net::TcpListener, Error> {
    let addr = SocketAddr::new(options.bind_address, options.secure_port);
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Runs the apiserver until SIGINT/SIGTERM.
pub async fn run(options: Options) -> Result<(), Error> {
    let (state, tls) = prepare(&options).await?;
    let listener = bind(&options).await?;
    bootstrap::bootstrap(&state)
        .await
        .map_err(Error::Bootstrap)?;
    let rbac_watch = authz::start(&state).await.map_err(Error::Storage)?;
    let compactor =
        storage::spawn_compactor(state.storage.clone(), storage::DEFAULT_COMPACTION_INTERVAL);
    let event_sweeper = event_ttl::spawn(state.storage.clone(), event_ttl::DEFAULT_EVENT_TTL);
    tracing::info!(
        addr = %SocketAddr::new(options.bind_address, options.secure_port),
        storage = ?options.storage_backend,
        "kube-apiserver serving"
    );
    server::serve(listener, tls, state, component_base::signals::shutdown()).await;
    compactor.abort();
    if let Some(task) = rbac_watch {
        task.abort();
    }
    event_sweeper.abort();
    tracing::info!("kube-apiserver stopped");
    Ok(())
}
