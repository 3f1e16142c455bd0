//! kube-controller-manager: the control loops that drive the cluster toward its declared state.
//!
//! Start with [`run`]: it builds one client and one set of shared [`informer::Informers`], then
//! starts every controller named by `--controllers`. Each controller is one module with a `start`
//! function; its event handlers only enqueue keys ([`queue::WorkQueue`]) and its `reconcile`
//! reads the caches, diffs, and acts through the API. [`testing::start`] runs the same
//! controllers inside a test.

pub mod cidr;
pub mod context;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod expectations;
pub mod garbagecollector;
pub mod history;
pub mod informer;
pub mod job;
pub mod key;
pub mod metrics;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod podgc;
pub mod podutil;
pub mod queue;
pub mod replicaset;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod runner;
pub mod serviceaccount;
pub mod statefulset;
pub mod tainteviction;
pub mod testing;
pub mod ttl;
pub mod ttlafterfinished;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::cidr::{CidrError, Ipv4Cidr};
use crate::context::{Context, Settings, Workers};
use crate::events::Recorder;
use crate::informer::Informers;

/// Every controller this binary knows, in start order.
pub const KNOWN_CONTROLLERS: &[&str] = &[
    "deployment",
    "replicaset",
    "replicationcontroller",
    "endpoint",
    "endpointslice",
    "garbagecollector",
    "nodeipam",
    "namespace",
    "serviceaccount",
    "nodelifecycle",
    "statefulset",
    "daemonset",
    "job",
    "cronjob",
    "ttl-after-finished",
    "ttl",
    "podgc",
    "root-ca-cert-publisher",
    "disruption",
    "taint-eviction-controller",
    "resourcequota",
    "persistentvolume-binder",
];

/// Command-line options (upstream flag names).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube-controller-manager",
    version,
    about = "The Kubernetes controller manager"
)]
pub struct Options {
    /// Path to a kubeconfig file with the apiserver address and credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// CIDR range for pods in the cluster.
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// Whether CIDRs for pods should be allocated and set on nodes.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub allocate_node_cidrs: bool,
    /// Mask size for the node CIDR in the cluster.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// CIDR range for Services (accepted for compatibility; used by later controllers).
    #[arg(long)]
    pub service_cluster_ip_range: Option<String>,
    /// Port for `/healthz` and `/metrics` (served as plain HTTP for now). With `--leader-elect`,
    /// `/healthz` includes the `leaderElection` check.
    #[arg(long, default_value_t = 10257)]
    pub secure_port: u16,
    /// Address the health endpoint listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Controllers to enable: '*' for all, 'name' to enable one, '-name' to disable one.
    #[arg(long, default_value = "*", value_delimiter = ',')]
    pub controllers: Vec<String>,
    /// How long a node may go without a kubelet heartbeat before it is marked unhealthy.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub node_monitor_period: Duration,
    /// Path to the cluster CA bundle published as the `kube-root-ca.crt` ConfigMap in every
    /// namespace.
    #[arg(long)]
    pub root_ca_file: Option<PathBuf>,
    /// Number of terminated pods that can exist before PodGC starts deleting them (0 = never).
    #[arg(long, default_value_t = 12500)]
    pub terminated_pod_gc_threshold: i32,
    /// Deployments synced concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_deployment_syncs: usize,
    /// ReplicaSets synced concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_replicaset_syncs: usize,
    /// ReplicationControllers synced concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_rc_syncs: usize,
    /// StatefulSets synced concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_statefulset_syncs: usize,
    /// DaemonSets synced concurrently.
    #[arg(long, default_value_t = 2)]
    pub concurrent_daemonset_syncs: usize,
    /// Jobs synced concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_job_syncs: usize,
    /// CronJobs synced concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_cron_job_syncs: usize,
    /// Endpoints synced concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_endpoint_syncs: usize,
    /// Services whose EndpointSlices are synced concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_service_endpoint_syncs: usize,
    /// Garbage collector workers.
    #[arg(long, default_value_t = 20)]
    pub concurrent_gc_syncs: usize,
    /// Namespaces synced concurrently.
    #[arg(long, default_value_t = 10)]
    pub concurrent_namespace_syncs: usize,
    /// TTL-after-finished workers.
    #[arg(long, default_value_t = 5)]
    pub concurrent_ttl_after_finished_syncs: usize,
    /// Leader election (`--leader-elect*`): only the holder of the `kube-controller-manager`
    /// Lease runs controllers.
    #[command(flatten)]
    pub leader_election: component_base::leaderelection::LeaderElectionFlags,
}

/// The component name: the default Lease name and the event source.
pub const COMPONENT: &str = "kube-controller-manager";

/// Why the controller-manager could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The API client could not be built.
    #[error("building the API client: {0}")]
    Client(#[from] component_base::client::ClientError),
    /// The health server could not start.
    #[error("starting the health server: {0}")]
    Health(#[from] component_base::health::HealthError),
    /// `--cluster-cidr` is not a valid IPv4 CIDR.
    #[error("--cluster-cidr: {0}")]
    ClusterCidr(#[from] CidrError),
    /// `--allocate-node-cidrs` without `--cluster-cidr`.
    #[error("--allocate-node-cidrs requires --cluster-cidr")]
    MissingClusterCidr,
    /// `--root-ca-file` could not be read.
    #[error("reading --root-ca-file {path}: {source}")]
    RootCaFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `--controllers` names a controller this binary does not have.
    #[error("--controllers: unknown controller {0:?}")]
    UnknownController(String),
    /// The `--leader-elect*` flags are inconsistent.
    #[error("leader election: {0}")]
    LeaderElection(#[from] component_base::leaderelection::ConfigError),
    /// This instance led and could not renew its Lease in time; another may lead now.
    #[error("leaderelection lost")]
    LeaderElectionLost,
}

/// Parses a Go-style duration (`40s`, `5m`, `500ms`, `1m30s`), as every component's flags do.
pub use component_base::leaderelection::parse_duration;

/// Which controllers `--controllers` enables.
pub fn enabled_controllers(flags: &[String]) -> Result<Vec<&'static str>, RunError> {
    for flag in flags {
        let name = flag.trim().trim_start_matches('-');
        if name != "*" && !name.is_empty() && !KNOWN_CONTROLLERS.contains(&name) {
            return Err(RunError::UnknownController(name.to_string()));
        }
    }
    let star = flags.iter().any(|f| f.trim() == "*");
    Ok(KNOWN_CONTROLLERS
        .iter()
        .copied()
        .filter(|name| {
            let disabled = flags.iter().any(|f| f.trim() == format!("-{name}"));
            let enabled = flags.iter().any(|f| f.trim() == *name);
            !disabled && (enabled || star)
        })
        .collect())
}

/// Runs the controller-manager until SIGINT/SIGTERM.
pub async fn run(options: Options) -> Result<(), RunError> {
    run_until(options, None, component_base::signals::shutdown()).await
}

/// Runs the controller-manager until `shutdown` resolves (used by [`run`] and in-process
/// tests); `identity` overrides the leader-election identity (`<hostname>_<uuid>` by default).
pub async fn run_until(
    options: Options,
    identity: Option<String>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let election = if options.leader_election.leader_elect {
        let mut election = options.leader_election.config(COMPONENT)?;
        if let Some(identity) = identity {
            election.identity = identity;
        }
        Some(election)
    } else {
        None
    };
    let controllers = enabled_controllers(&options.controllers)?;
    let cluster_cidr = options
        .cluster_cidr
        .as_deref()
        .map(str::parse::<Ipv4Cidr>)
        .transpose()?;
    if options.allocate_node_cidrs && cluster_cidr.is_none() {
        return Err(RunError::MissingClusterCidr);
    }
    let root_ca = match &options.root_ca_file {
        Some(path) => {
            Some(
                std::fs::read_to_string(path).map_err(|source| RunError::RootCaFile {
                    path: path.clone(),
                    source,
                })?,
            )
        }
        None => options
            .kubeconfig
            .as_deref()
            .and_then(rootcacertpublisher::kubeconfig_ca),
    };
    let client = component_base::client::from_kubeconfig(options.kubeconfig.as_deref()).await?;
    let health = component_base::health::Health::default();
    let registry = component_base::metrics::SharedRegistry::default();
    // As upstream, /healthz fails while this process leads with a stale Lease.
    let elector = election.map(|election| {
        component_base::leaderelection::LeaderElector::new(client.clone(), election)
            .observed(COMPONENT, &health, &registry)
    });
    let address = component_base::metrics::serve(
        SocketAddr::new(options.bind_address, options.secure_port),
        health.clone(),
        registry.clone(),
    )
    .await?;
    tracing::info!(%address, "serving /healthz and /metrics (plain HTTP)");
    health.set_ready(true);
    let ctx = Arc::new(Context {
        informers: Informers::new(client.clone()),
        recorder: Recorder::new(client.clone(), "controller-manager"),
        client,
        settings: Settings {
            cluster_cidr,
            allocate_node_cidrs: options.allocate_node_cidrs,
            node_cidr_mask_size: options.node_cidr_mask_size,
            node_monitor_grace_period: options.node_monitor_grace_period,
            node_monitor_period: options.node_monitor_period,
            workers: Workers {
                deployment: options.concurrent_deployment_syncs,
                replicaset: options.concurrent_replicaset_syncs,
                replicationcontroller: options.concurrent_rc_syncs,
                statefulset: options.concurrent_statefulset_syncs,
                daemonset: options.concurrent_daemonset_syncs,
                job: options.concurrent_job_syncs,
                cronjob: options.concurrent_cron_job_syncs,
                endpoint: options.concurrent_endpoint_syncs,
                endpointslice: options.concurrent_service_endpoint_syncs,
                garbagecollector: options.concurrent_gc_syncs,
                namespace: options.concurrent_namespace_syncs,
                ttl_after_finished: options.concurrent_ttl_after_finished_syncs,
            },
            root_ca,
            terminated_pod_gc_threshold: usize::try_from(options.terminated_pod_gc_threshold)
                .unwrap_or(0),
        },
    });
    let lead = async {
        metrics::register(&registry);
        start_controllers(ctx, &controllers);
        std::future::pending::<()>().await;
    };
    let Some(mut elector) = elector else {
        tokio::select! {
            () = lead => {}
            () = shutdown => {}
        }
        return Ok(());
    };
    match elector.run(shutdown, lead).await {
        component_base::leaderelection::Outcome::Cancelled => Ok(()),
        component_base::leaderelection::Outcome::Lost => Err(RunError::LeaderElectionLost),
    }
}

/// Starts the named controllers on `ctx` (used by [`run`] and by in-process tests).
pub fn start_controllers(ctx: Arc<Context>, controllers: &[&str]) {
    for name in controllers {
        tracing::info!(controller = name, "starting controller");
        match *name {
            "deployment" => deployment::start(ctx.clone()),
            "replicaset" => replicaset::start(ctx.clone()),
            "replicationcontroller" => replicaset::start_replication_controllers(ctx.clone()),
            "podgc" => podgc::start(ctx.clone()),
            "root-ca-cert-publisher" => {
                if ctx.settings.root_ca.is_some() {
                    rootcacertpublisher::start(ctx.clone());
                }
            }
            "disruption" => disruption::start(ctx.clone()),
            "taint-eviction-controller" => tainteviction::start(ctx.clone()),
            "endpoint" => endpoints::start(ctx.clone()),
            "endpointslice" => endpointslice::start(ctx.clone()),
            "garbagecollector" => garbagecollector::start(ctx.clone()),
            "nodeipam" => {
                if ctx.settings.allocate_node_cidrs {
                    nodeipam::start(ctx.clone());
                }
            }
            "namespace" => namespace::start(ctx.clone()),
            "serviceaccount" => serviceaccount::start(ctx.clone()),
            "nodelifecycle" => nodelifecycle::start(ctx.clone()),
            "job" => job::start(ctx.clone()),
            "cronjob" => cronjob::start(ctx.clone()),
            "ttl-after-finished" => ttlafterfinished::start(ctx.clone()),
            "ttl" => ttl::start(ctx.clone()),
            "statefulset" => statefulset::start(ctx.clone()),
            "daemonset" => daemonset::start(ctx.clone()),
            "resourcequota" => resourcequota::start(ctx.clone()),
            "persistentvolume-binder" => persistentvolume::start(ctx.clone()),
            other => tracing::warn!(controller = other, "unknown controller"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("40").is_err());
        assert!(parse_duration("4x").is_err());
    }

    #[test]
    fn controllers_flag_enables_all_but_the_disabled_ones() -> Result<(), RunError> {
        let all = enabled_controllers(&["*".into()])?;
        assert_eq!(all.len(), KNOWN_CONTROLLERS.len());
        let some = enabled_controllers(&["*".into(), "-nodeipam".into()])?;
        assert!(!some.contains(&"nodeipam"));
        let one = enabled_controllers(&["deployment".into()])?;
        assert_eq!(one, ["deployment"]);
        assert!(enabled_controllers(&["bogus".into()]).is_err());
        Ok(())
    }

    #[test]
    fn options_accept_the_upstream_flags() {
        let options = Options::try_parse_from([
            "kube-controller-manager",
            "--kubeconfig",
            "/tmp/k",
            "--cluster-cidr",
            "10.244.0.0/16",
            "--allocate-node-cidrs",
            "--node-cidr-mask-size",
            "24",
            "--service-cluster-ip-range",
            "10.96.0.0/12",
            "--secure-port",
            "10257",
            "--controllers",
            "*",
            "--root-ca-file",
            "/tmp/ca.crt",
            "--terminated-pod-gc-threshold",
            "100",
            "--concurrent-deployment-syncs",
            "7",
            "--concurrent-rc-syncs",
            "3",
        ]);
        assert!(options.is_ok_and(|o| o.allocate_node_cidrs
            && o.node_cidr_mask_size == 24
            && o.terminated_pod_gc_threshold == 100
            && o.concurrent_deployment_syncs == 7
            && o.concurrent_rc_syncs == 3
            && o.concurrent_gc_syncs == 20
            && o.root_ca_file.is_some()));
    }
}
