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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster_cidr: None,
            allocate_node_cidrs: false,
            node_cidr_mask_size: 24,
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
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
