//! Starts a kubelet inside a test (or a hollow node): the real node agent, pod manager and
//! kubelet API against a real apiserver, over the fake runtime and the fake network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use crate::app::{start, Dependencies, RunError, RunningKubelet};
use crate::network::fake::FakeNetwork;
use crate::node::status::NodeConfig;
use crate::pod::files::DnsSettings;
use crate::pod::PodSettings;
use crate::runtime::fake::FakeRuntime;
use crate::server::TlsFiles;

/// A kubelet running in-process on fakes.
pub struct TestKubelet {
    /// The running kubelet (its API on an ephemeral 127.0.0.1 port, reported in the node
    /// status; self-signed TLS, no client auth).
    pub kubelet: RunningKubelet,
    /// The fake runtime (has `busybox:1.35`, auto-pulls other images).
    pub runtime: Arc<FakeRuntime>,
    /// The fake network (ready from the start).
    pub network: Arc<FakeNetwork>,
}

/// Starts a kubelet for node `node_name` with its files under `dir`.
pub async fn start_fake(
    client: Client,
    node_name: &str,
    dir: &Path,
) -> Result<TestKubelet, RunError> {
    let runtime = Arc::new(FakeRuntime::with_auto_pull());
    runtime.add_image("busybox:1.35");
    let network = Arc::new(FakeNetwork::ready_network());
    let node_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let kubelet = start(Dependencies {
        client,
        runtime: runtime.clone(),
        network: network.clone(),
        node: NodeConfig {
            name: node_name.to_string(),
            node_ip,
            port: 0,
            max_pods: 110,
        },
        pods: PodSettings {
            node_name: node_name.to_string(),
            node_ip,
            root_dir: dir.join("root"),
            pod_logs_dir: dir.join("logs"),
            dns: DnsSettings {
                cluster_dns: vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))],
                cluster_domain: "cluster.local".into(),
                host_resolv_conf: String::new(),
            },
        },
        api_addr: SocketAddr::new(node_ip, 0),
        tls: TlsFiles {
            self_signed_names: vec![node_name.to_string(), "127.0.0.1".into()],
            ..Default::default()
        },
        status_period: Duration::from_secs(10),
    })
    .await?;
    Ok(TestKubelet {
        kubelet,
        runtime,
        network,
    })
}
