//! Pods on this node: one worker task per pod syncs what the pod asks for with what the
//! runtime and the network have, and reports the pod's status.
//!
//! Start at [`manager::PodManager`] (watches this node's pods, starts and stops workers,
//! collects orphans), then [`worker::PodWorker`] (the per-pod sync loop). Pure pieces:
//! [`status`] (phase and conditions), [`env`], [`volumes`], [`files`], [`resources`], [`probe`].

pub mod api;
pub mod claims;
pub mod env;
pub mod files;
pub mod insecure_tls;
pub mod manager;
pub mod mounts;
pub mod objects;
pub mod probe;
pub mod resources;
pub mod status;
pub mod store;
pub mod tokens;
pub mod volumes;
pub mod worker;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::network::Network;
use crate::runtime::ContainerRuntime;

pub use api::{FakePodApi, KubePodApi, ObjectLister, PodApi, ServiceLister};
pub use store::{PodEntry, PodStore};

/// Node-wide settings pod workers need.
#[derive(Debug, Clone)]
pub struct PodSettings {
    /// This node's name.
    pub node_name: String,
    /// This node's IP.
    pub node_ip: IpAddr,
    /// `--root-dir`: pod files live under `<root-dir>/pods/<uid>`.
    pub root_dir: PathBuf,
    /// `--pod-logs-dir`.
    pub pod_logs_dir: PathBuf,
    /// DNS settings for resolv.conf.
    pub dns: files::DnsSettings,
}

impl PodSettings {
    /// `<root-dir>/pods/<uid>`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root_dir.join("pods").join(uid)
    }

    /// `<pod-logs-dir>/<ns>_<name>_<uid>`.
    pub fn pod_log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        pod_log_dir(&self.pod_logs_dir, namespace, name, uid)
    }
}

/// `<logs>/<ns>_<name>_<uid>`: where a pod's container logs live.
pub fn pod_log_dir(logs: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    logs.join(format!("{namespace}_{name}_{uid}"))
}

/// What every pod worker shares.
pub struct PodContext {
    /// The container runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The pod network.
    pub network: Arc<dyn Network>,
    /// The apiserver.
    pub api: Arc<dyn PodApi>,
    /// Node settings.
    pub settings: PodSettings,
    /// The shared pod view.
    pub store: PodStore,
    /// Mounts of memory-backed volumes.
    pub mounter: Arc<dyn mounts::Mounter>,
    /// How often a live pod is re-synced ([`worker::RESYNC`] for a real kubelet, which
    /// notices container exits from runtime events and this poll; hollow nodes, whose fake
    /// containers only change when told, use upstream's one-minute `syncFrequency`).
    pub resync: std::time::Duration,
    /// This node's ConfigMaps and Secrets, for volume refreshes.
    pub objects: Arc<objects::ObjectCache>,
}
