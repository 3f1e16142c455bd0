//! Start-up: checks what the kubelet needs (root, CNI plugins, the runtime socket, free
//! ports), connects the runtime, imports image archives, then starts the node agent, the pod
//! manager and the kubelet API. [`start`] does the wiring for any runtime and network (the
//! in-process [`crate::testing`] helper uses fakes); [`run`] is the binary's entry point.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use component_base::client::ClientError;
use component_base::health::{Health, HealthError};
use kube::Client;
use tokio::task::JoinHandle;

use crate::network::cni::{check_plugins, CniNetwork};
use crate::network::{Network, NetworkError};
use crate::node::agent::NodeAgent;
use crate::node::events::{KubeNodeEvents, NodeEvent, NodeEventSink};
use crate::node::eviction::{
    parse_soft_thresholds, parse_thresholds, EvictionManager, Pressure, SignalSource,
};
use crate::node::features::{EvictionSettings, NodeFeatures, StaticPodSettings};
use crate::node::image_gc::{ImageGc, StatvfsDisk, IMAGE_GC_PERIOD};
use crate::node::info::{default_node_ip, machine_info};
use crate::node::static_pods::{KubeMirrorClient, MirrorClient, StaticPodApi, StaticUids};
use crate::node::stats::StatsCollector;
use crate::node::status::NodeConfig;
use crate::options::Options;
use crate::pod::files::DnsSettings;
use crate::pod::manager::{PodManager, StaticPodConfig};
use crate::pod::objects::ObjectCache;
use crate::pod::{KubePodApi, PodApi, PodContext, PodSettings, PodStore, ServiceLister};
use crate::runtime::containerd::{ContainerdOptions, ContainerdRuntime};
use crate::runtime::{ContainerRuntime, RuntimeError};
use crate::server::{ServerError, ServerState, TlsFiles};

/// The eviction manager's settings from `--eviction-hard`, `--eviction-soft`,
/// `--eviction-soft-grace-period` and `--eviction-max-pod-grace-period`.
fn eviction_settings(options: &Options) -> Result<EvictionSettings, RunError> {
    let mut thresholds = parse_thresholds(&options.eviction_hard).map_err(RunError::Eviction)?;
    thresholds.extend(
        parse_soft_thresholds(&options.eviction_soft, &options.eviction_soft_grace_period)
            .map_err(RunError::Eviction)?,
    );
    let mut settings =
        EvictionSettings::new(thresholds, options.eviction_pressure_transition_period);
    settings.max_pod_grace_period = options.eviction_max_pod_grace_period;
    Ok(settings)
}

/// Why the kubelet could not start. Each message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Not running as root.
    #[error("the kubelet must run as root (it creates network namespaces, mounts and containers): run it with sudo or as root")]
    NotRoot,
    /// The image GC thresholds are unusable.
    #[error("{0}")]
    ImageGc(#[source] crate::node::image_gc::ImageGcError),
    /// CNI plugins are missing.
    #[error("{0}")]
    Cni(#[source] NetworkError),
    /// The runtime socket does not exist.
    #[error("container runtime socket {path} not found: start containerd or point --container-runtime-endpoint at its socket")]
    RuntimeSocket {
        /// The socket path.
        path: String,
    },
    /// Connecting to the runtime failed.
    #[error(
        "connecting to the container runtime at {endpoint}: {source} (is containerd running?)"
    )]
    Runtime {
        /// The endpoint.
        endpoint: String,
        /// Cause.
        #[source]
        source: RuntimeError,
    },
    /// The node IP could not be found.
    #[error("cannot find the node IP (no default route): pass --node-ip")]
    NodeIp,
    /// The kubeconfig could not be used.
    #[error("{0}: check --kubeconfig")]
    Client(#[source] ClientError),
    /// The kubelet API could not start.
    #[error("{0}")]
    Server(#[source] ServerError),
    /// An eviction flag is malformed.
    #[error("{0}: check --eviction-hard, --eviction-soft and --eviction-soft-grace-period")]
    Eviction(#[source] crate::node::eviction::EvictionError),
    /// The healthz endpoint could not start.
    #[error("{0}: pick another with --healthz-port")]
    Health(#[source] HealthError),
    /// A directory could not be created.
    #[error("creating {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Everything [`start`] wires together.
pub struct Dependencies {
    /// The API client.
    pub client: Client,
    /// The container runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The pod network.
    pub network: Arc<dyn Network>,
    /// Node identity (`port` 0: report the port the kubelet API actually bound).
    pub node: NodeConfig,
    /// Pod settings (dirs, DNS).
    pub pods: PodSettings,
    /// Where the kubelet API listens.
    pub api_addr: SocketAddr,
    /// TLS of the kubelet API.
    pub tls: TlsFiles,
    /// How often the node status is computed, and posted if it changed
    /// (`--node-status-update-frequency`).
    pub status_period: Duration,
    /// How often an unchanged node status is posted all the same
    /// (`--node-status-report-frequency`).
    pub status_report_period: Duration,
    /// Mounts of memory-backed volumes.
    pub mounter: Arc<dyn crate::pod::mounts::Mounter>,
}

/// A started kubelet: its background tasks and where its API listens.
pub struct RunningKubelet {
    /// The kubelet API address.
    pub api_addr: SocketAddr,
    /// The kubelet's pods.
    pub store: PodStore,
    /// The node's ConfigMap and Secret cache (its TTL comes from the Node).
    pub objects: Arc<ObjectCache>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningKubelet {
    /// Stops the background tasks (containers keep running, as upstream).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for RunningKubelet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds the kubelet API, registers the node (retrying until the apiserver answers) and starts
/// the status, lease, pod CIDR and pod manager loops.
pub async fn start(deps: Dependencies) -> Result<RunningKubelet, RunError> {
    start_with_auth(deps, None).await
}

/// Like [`start`], with kubelet API callers checked by `auth` (token webhook, Webhook
/// authorization).
pub async fn start_with_auth(
    deps: Dependencies,
    auth: Option<Arc<crate::server::auth::KubeletAuth>>,
) -> Result<RunningKubelet, RunError> {
    start_with_features(deps, auth, NodeFeatures::default()).await
}

/// Like [`start_with_auth`], with the optional node `features` (static pods, eviction, stats).
pub async fn start_with_features(
    deps: Dependencies,
    auth: Option<Arc<crate::server::auth::KubeletAuth>>,
    features: NodeFeatures,
) -> Result<RunningKubelet, RunError> {
    let store = PodStore::new();
    let stats = features.stats.clone().unwrap_or_else(|| {
        Arc::new(StatsCollector::host(
            &deps.node.name,
            deps.pods.root_dir.clone(),
            deps.pods.pod_logs_dir.clone(),
        ))
    });
    let api_addr = crate::server::serve_with_stats(
        deps.api_addr,
        &deps.tls,
        ServerState {
            store: store.clone(),
            runtime: deps.runtime.clone(),
            pod_logs_dir: deps.pods.pod_logs_dir.clone(),
        },
        auth,
        Some(stats.clone()),
    )
    .await
    .map_err(RunError::Server)?;

    let info = machine_info(&deps.pods.root_dir);
    let mut node = deps.node.clone();
    if node.port == 0 {
        // Report the port actually bound (in-process kubelets listen on an ephemeral port).
        node.port = api_addr.port();
    }
    let pressure = Pressure::default();
    let objects = Arc::new(ObjectCache::new());
    let events: Arc<dyn NodeEventSink> =
        Arc::new(KubeNodeEvents::new(deps.client.clone(), &deps.node.name));
    events.record(NodeEvent::normal("Starting", "Starting kubelet.".into()));
    let agent = Arc::new(
        NodeAgent::new(
            deps.client.clone(),
            node,
            info,
            deps.runtime.clone(),
            deps.network.clone(),
        )
        .with_pressure(pressure.clone())
        .with_object_cache(objects.clone())
        .with_events(events.clone()),
    );
    let mut delay = Duration::from_millis(200);
    loop {
        match agent.register().await {
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(%error, "registering the node failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(7));
            }
        }
    }
    if let Err(error) = agent.post_status().await {
        tracing::warn!(%error, "first node status update failed");
    }
    let services = ServiceLister::spawn(deps.client.clone());
    let api: Arc<dyn PodApi> = Arc::new(
        KubePodApi::new(deps.client.clone(), &deps.node.name).with_service_lister(services),
    );
    let static_uids = StaticUids::default();
    let mirrors: Arc<dyn MirrorClient> =
        Arc::new(KubeMirrorClient::new(deps.client.clone(), &deps.node.name));
    let api: Arc<dyn PodApi> = Arc::new(StaticPodApi::new(
        api,
        deps.client.clone(),
        mirrors.clone(),
        static_uids.clone(),
    ));
    let ctx = Arc::new(PodContext {
        runtime: deps.runtime.clone(),
        network: deps.network.clone(),
        api,
        settings: deps.pods.clone(),
        store: store.clone(),
        mounter: deps.mounter.clone(),
        resync: crate::pod::worker::RESYNC,
        objects: objects.clone(),
    });
    let mut manager = PodManager::new(ctx).await;
    if let Some(settings) = &features.static_pods {
        tracing::info!(dir = %settings.dir.display(), "running static pods");
        manager = manager.with_static_pods(StaticPodConfig {
            dir: settings.dir.clone(),
            period: settings.period,
            mirrors,
            uids: static_uids,
        });
    }
    let commands = manager.commands();
    let mut tasks = vec![
        tokio::spawn(
            agent
                .clone()
                .status_report_loop(deps.status_period, deps.status_report_period),
        ),
        tokio::spawn(agent.clone().lease_loop()),
        tokio::spawn(agent.clone().pod_cidr_loop()),
        tokio::spawn(manager.run(deps.client.clone(), deps.node.name.clone())),
    ];
    if let Some(settings) = features.eviction.filter(|e| !e.thresholds.is_empty()) {
        let source: Arc<dyn SignalSource> = settings.source.unwrap_or(stats);
        let mut eviction = EvictionManager::new(
            settings.thresholds,
            source,
            store.clone(),
            pressure,
            settings.transition_period,
        )
        .with_max_pod_grace_period(settings.max_pod_grace_period)
        .with_events(events);
        if let Some(reclaimer) = settings.reclaimer {
            eviction = eviction.with_reclaimer(reclaimer);
        }
        tasks.push(tokio::spawn(eviction.run(settings.interval, commands)));
    }
    tracing::info!(node = %deps.node.name, api = %api_addr, "kubelet started");
    Ok(RunningKubelet {
        api_addr,
        store,
        objects,
        tasks,
    })
}

/// The socket path of a `unix://` endpoint (or a bare path).
pub fn socket_path(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

/// Imports every `*.tar` (and `*.tar.gz`) archive in `dir`; failures are logged, not fatal.
/// Returns the names of the images imported.
pub async fn import_archives(runtime: &dyn ContainerRuntime, dir: &Path) -> Vec<String> {
    let mut imported = Vec::new();
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot read --image-archive-dir");
            return imported;
        }
    };
    let mut archives = Vec::new();
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        let name = path.to_string_lossy().to_string();
        if name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            archives.push(path);
        }
    }
    archives.sort();
    for path in archives {
        match runtime.import_image_archive(&path).await {
            Ok(names) => {
                tracing::info!(archive = %path.display(), ?names, "image archive imported");
                imported.extend(names);
            }
            Err(error) => {
                tracing::error!(archive = %path.display(), %error, "importing image archive failed")
            }
        }
    }
    imported
}

fn ensure_dir(path: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(path).map_err(|source| RunError::Dir {
        path: path.display().to_string(),
        source,
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// Runs the kubelet until SIGINT/SIGTERM.
pub async fn run(options: Options) -> Result<(), RunError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(RunError::NotRoot);
    }
    check_plugins(&options.cni_bin_dir).map_err(RunError::Cni)?;
    let mut features = NodeFeatures {
        static_pods: options
            .pod_manifest_path
            .clone()
            .map(|dir| StaticPodSettings {
                dir,
                period: options.file_check_frequency,
            }),
        eviction: Some(eviction_settings(&options)?),
        stats: None,
    };
    let socket = socket_path(&options.container_runtime_endpoint);
    if !socket.exists() {
        return Err(RunError::RuntimeSocket {
            path: socket.display().to_string(),
        });
    }
    ensure_dir(&options.root_dir)?;
    ensure_dir(&options.pod_logs_dir)?;
    tokio::spawn(
        crate::runtime::log_rotation::LogRotation {
            max_size: options.container_log_max_size,
            max_files: usize::from(options.container_log_max_files),
        }
        .run(options.pod_logs_dir.clone()),
    );
    let node_name = options
        .hostname_override
        .clone()
        .map(|n| n.to_lowercase())
        .unwrap_or_else(hostname);
    let node_ip: IpAddr = match options.node_ip {
        Some(ip) => ip,
        None => default_node_ip().await.ok_or(RunError::NodeIp)?,
    };
    if options.healthz_port != 0 {
        let addr = SocketAddr::new(options.healthz_bind_address, options.healthz_port);
        let health = Health::default();
        health.set_ready(true);
        component_base::health::serve(addr, health)
            .await
            .map_err(RunError::Health)?;
    }
    let runtime = ContainerdRuntime::connect(ContainerdOptions::new(
        options.container_runtime_endpoint.clone(),
        options.root_dir.join("containers"),
    ))
    .await
    .map_err(|source| RunError::Runtime {
        endpoint: options.container_runtime_endpoint.clone(),
        source,
    })?;
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(runtime);
    let image_gc = Arc::new(
        ImageGc::new(
            runtime.clone(),
            Arc::new(StatvfsDisk(options.root_dir.clone())),
            options.image_gc_high_threshold,
            options.image_gc_low_threshold,
        )
        .map_err(RunError::ImageGc)?
        .with_minimum_age(options.minimum_image_ttl_duration),
    );
    if let Some(eviction) = features.eviction.as_mut() {
        // Under disk pressure, unused images go before any pod is evicted.
        eviction.reclaimer = Some(image_gc.clone());
    }
    if let Err(error) = runtime.recover().await {
        tracing::warn!(%error, "re-attaching to running containers failed");
    }
    if let Some(dir) = &options.image_archive_dir {
        // Air-gapped images could not be pulled again: image GC leaves them alone.
        image_gc.pin(import_archives(runtime.as_ref(), dir).await);
    }
    let client = component_base::client::from_kubeconfig(options.kubeconfig.as_deref())
        .await
        .map_err(RunError::Client)?;
    let network: Arc<dyn Network> = Arc::new(CniNetwork::new(
        options.cni_bin_dir.clone(),
        &options.root_dir.join("cni"),
    ));
    let host_resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let auth = (options.authentication_token_webhook
        || options.authorization_mode == crate::server::auth::AuthorizationMode::Webhook)
        .then(|| {
            Arc::new(crate::server::auth::KubeletAuth::new(
                client.clone(),
                &node_name,
                options.authentication_token_webhook,
                options.authorization_mode,
            ))
        });
    let kubelet = start_with_features(
        Dependencies {
            client,
            runtime,
            network,
            node: NodeConfig {
                name: node_name.clone(),
                node_ip,
                port: options.port,
                max_pods: options.max_pods,
            },
            pods: PodSettings {
                node_name: node_name.clone(),
                node_ip,
                root_dir: options.root_dir.clone(),
                pod_logs_dir: options.pod_logs_dir.clone(),
                dns: DnsSettings {
                    cluster_dns: options.cluster_dns.clone(),
                    cluster_domain: options.cluster_domain.clone(),
                    host_resolv_conf,
                },
            },
            api_addr: SocketAddr::new(options.address, options.port),
            tls: TlsFiles {
                cert: options.tls_cert_file.clone(),
                key: options.tls_private_key_file.clone(),
                client_ca: options.client_ca_file.clone(),
                self_signed_names: vec![node_name.clone(), node_ip.to_string(), "127.0.0.1".into()],
            },
            // A zero period would make the status loop spin.
            status_period: options
                .node_status_update_frequency
                .max(Duration::from_secs(1)),
            status_report_period: options.node_status_report_frequency,
            mounter: Arc::new(crate::pod::mounts::HostMounter),
        },
        auth,
        features,
    )
    .await?;
    let gc_task = tokio::spawn(image_gc.run(IMAGE_GC_PERIOD));
    component_base::signals::shutdown().await;
    gc_task.abort();
    kubelet.stop();
    tracing::info!("kubelet stopped; containers keep running");
    Ok(())
}
