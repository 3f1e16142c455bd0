//! What every controller shares: the client, the shared informers, the event recorder and the
//! settings taken from the command line.

use std::time::Duration;

use kube::Client;

use crate::cidr::Ipv4Cidr;
use crate::events::Recorder;
use crate::informer::Informers;

/// Settings from the command line that controllers read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--cluster-cidr`, the pod network node CIDRs are carved from.
    pub cluster_cidr: Option<Ipv4Cidr>,
    /// `--allocate-node-cidrs`.
    pub allocate_node_cidrs: bool,
    /// `--node-cidr-mask-size`.
    pub node_cidr_mask_size: u8,
    /// `--node-monitor-grace-period`: how long a kubelet may stay silent before its node is
    /// marked unknown.
    pub node_monitor_grace_period: Duration,
    /// How often the node lifecycle controller looks at nodes (`--node-monitor-period`).
    pub node_monitor_period: Duration,
    /// Worker counts (`--concurrent-*-syncs`).
    pub workers: Workers,
    /// The CA bundle (PEM) published as the `kube-root-ca.crt` ConfigMap in every namespace:
    /// `--root-ca-file`, else the kubeconfig's certificate authority (the root-ca-cert-publisher
    /// runs only when one is known).
    pub root_ca: Option<String>,
    /// `--terminated-pod-gc-threshold`: PodGC deletes terminated pods beyond this many
    /// (0 disables that part).
    pub terminated_pod_gc_threshold: usize,
}

/// How many workers each controller runs (upstream's `--concurrent-*-syncs` defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workers {
    /// `--concurrent-deployment-syncs`.
    pub deployment: usize,
    /// `--concurrent-replicaset-syncs`.
    pub replicaset: usize,
    /// `--concurrent-rc-syncs`.
    pub replicationcontroller: usize,
    /// `--concurrent-statefulset-syncs`.
    pub statefulset: usize,
    /// `--concurrent-daemonset-syncs`.
    pub daemonset: usize,
    /// `--concurrent-job-syncs`.
    pub job: usize,
    /// `--concurrent-cron-job-syncs`.
    pub cronjob: usize,
    /// `--concurrent-endpoint-syncs`.
    pub endpoint: usize,
    /// `--concurrent-service-endpoint-syncs` (EndpointSlices).
    pub endpointslice: usize,
    /// `--concurrent-gc-syncs`.
    pub garbagecollector: usize,
    /// `--concurrent-namespace-syncs`.
    pub namespace: usize,
    /// `--concurrent-ttl-after-finished-syncs`.
    pub ttl_after_finished: usize,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            deployment: 5,
            replicaset: 5,
            replicationcontroller: 5,
            statefulset: 5,
            daemonset: 2,
            job: 5,
            cronjob: 5,
            endpoint: 5,
            endpointslice: 5,
            garbagecollector: 20,
            namespace: 10,
            ttl_after_finished: 5,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster_cidr: None,
            allocate_node_cidrs: false,
            node_cidr_mask_size: 24,
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            workers: Workers::default(),
            root_ca: None,
            terminated_pod_gc_threshold: 12500,
        }
    }
}

/// Shared by every controller of one controller-manager.
#[derive(Clone)]
pub struct Context {
    /// The API client.
    pub client: Client,
    /// One informer per resource type, shared.
    pub informers: Informers,
    /// Records core/v1 Events.
    pub recorder: Recorder,
    /// Command-line settings.
    pub settings: Settings,
}
