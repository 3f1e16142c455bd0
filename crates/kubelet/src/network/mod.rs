//! Pod sandboxes: one network namespace per pod, wired to the node bridge through CNI, and one
//! IPC namespace (with its `/dev/shm`) shared by the pod's containers.
//!
//! Everything goes through the [`Network`] trait: [`cni::CniNetwork`] is the real implementation
//! (`ip netns` + the CNI `loopback` and `bridge` plugins, [`ipc`] for IPC namespaces),
//! [`fake::FakeNetwork`] records calls for unit tests. Start at [`Network`], then
//! [`cni::CniNetwork`].

pub mod cni;
pub mod config;
pub mod fake;
pub mod ipc;

use std::net::IpAddr;
use std::path::PathBuf;

/// Prefix of every network namespace the kubelet creates (cleanup scripts rely on it).
pub const NETNS_PREFIX: &str = "kube-";

/// The network namespace name of a pod: `kube-` and the first 12 characters of its uid.
pub fn netns_name(pod_uid: &str) -> String {
    let prefix: String = pod_uid.chars().filter(|c| *c != '-').take(12).collect();
    format!("{NETNS_PREFIX}{prefix}")
}

/// The path of a named network namespace as `ip netns` creates it.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(name)
}

/// What the network needs to know about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkRequest {
    /// The pod's uid.
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
}

/// A pod's network once set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkStatus {
    /// Name of the network namespace (`kube-...`).
    pub netns_name: String,
    /// Path to join it (`/var/run/netns/kube-...`).
    pub netns_path: PathBuf,
    /// The pod's IP address.
    pub ip: IpAddr,
}

/// A pod's IPC namespace, shared by its containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIpc {
    /// The namespace file to join (a bind mount of an nsfs file).
    pub ns_path: PathBuf,
    /// A tmpfs every container of the pod mounts at `/dev/shm`.
    pub shm_path: PathBuf,
}

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// Pod networking was asked for before the pod CIDR was known.
    #[error("network not ready: the node has no pod CIDR yet")]
    NotConfigured,
    /// CNI plugins are missing from the plugin directory.
    #[error("CNI plugins {missing:?} not found in {dir}: install containernetworking-plugins or pass --cni-bin-dir")]
    MissingPlugins {
        /// The plugin directory searched.
        dir: String,
        /// Missing plugin names.
        missing: Vec<String>,
    },
    /// Writing the CNI configuration failed.
    #[error("writing CNI configuration {path}: {source}")]
    WriteConfig {
        /// The file written.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Enabling IP forwarding failed.
    #[error("enabling net.ipv4.ip_forward: {0}")]
    IpForward(#[source] std::io::Error),
    /// An external command (`ip`, a CNI plugin) could not be run.
    #[error("running {command}: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `ip netns` failed.
    #[error("{command} failed: {stderr}")]
    Netns {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A CNI plugin reported an error.
    #[error("CNI {command} with plugin {plugin} failed: {message}")]
    Plugin {
        /// ADD or DEL.
        command: String,
        /// The plugin type.
        plugin: String,
        /// The plugin's error message.
        message: String,
    },
    /// A CNI plugin's result could not be understood.
    #[error("CNI result of plugin {plugin} has no usable IP: {detail}")]
    Result {
        /// The plugin type.
        plugin: String,
        /// What was wrong.
        detail: String,
    },
    /// Creating or removing a pod IPC namespace failed.
    #[error("{step} {path}: {source}")]
    Ipc {
        /// What was being done.
        step: &'static str,
        /// The file or directory involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An error injected by the fake.
    #[error("injected failure: {0}")]
    Injected(String),
}

/// The node's pod network.
#[async_trait::async_trait]
pub trait Network: Send + Sync + 'static {
    /// Writes the CNI configuration for the node's pod CIDR and prepares the host (IP
    /// forwarding). Idempotent; called again if the CIDR changes.
    async fn configure(&self, pod_cidr: &str) -> Result<(), NetworkError>;

    /// Whether [`configure`](Network::configure) has succeeded.
    fn ready(&self) -> bool;

    /// Creates the pod's network namespace and attaches it (CNI ADD). Idempotent: a namespace
    /// that is already attached is returned as it is.
    async fn setup_pod(&self, pod: &PodNetworkRequest) -> Result<PodNetworkStatus, NetworkError>;

    /// Detaches (CNI DEL) and deletes the network namespace `netns_name`, and the IPC
    /// namespace of the same name. Tolerates missing ones.
    async fn teardown(&self, netns_name: &str) -> Result<(), NetworkError>;

    /// Names of the pod network and IPC namespaces (`kube-*`) this kubelet made and has not
    /// torn down, for garbage collection.
    async fn list_netns(&self) -> Result<Vec<String>, NetworkError>;

    /// Creates the pod's IPC namespace and shared memory (named like its network namespace,
    /// [`netns_name`]). Idempotent: an existing one is returned as it is.
    async fn setup_ipc(&self, pod_uid: &str) -> Result<PodIpc, NetworkError>;

    /// Removes the IPC namespace `name` and its shared memory. Tolerates a missing one.
    async fn teardown_ipc(&self, name: &str) -> Result<(), NetworkError>;
}

#[async_trait::async_trait]
impl<T: Network + ?Sized> Network for std::sync::Arc<T> {
    async fn configure(&self, pod_cidr: &str) -> Result<(), NetworkError> {
        (**self).configure(pod_cidr).await
    }
    fn ready(&self) -> bool {
        (**self).ready()
    }
    async fn setup_pod(&self, pod: &PodNetworkRequest) -> Result<PodNetworkStatus, NetworkError> {
        (**self).setup_pod(pod).await
    }
    async fn teardown(&self, netns_name: &str) -> Result<(), NetworkError> {
        (**self).teardown(netns_name).await
    }
    async fn list_netns(&self) -> Result<Vec<String>, NetworkError> {
        (**self).list_netns().await
    }
    async fn setup_ipc(&self, pod_uid: &str) -> Result<PodIpc, NetworkError> {
        (**self).setup_ipc(pod_uid).await
    }
    async fn teardown_ipc(&self, name: &str) -> Result<(), NetworkError> {
        (**self).teardown_ipc(name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_name_uses_the_first_twelve_uid_characters() {
        assert_eq!(
            netns_name("0f3c2a1b-9d8e-4c7b-a6f5-e4d3c2b1a098"),
            "kube-0f3c2a1b9d8e"
        );
    }
}
