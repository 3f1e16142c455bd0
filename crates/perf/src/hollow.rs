//! Hollow nodes (as upstream kubemark): many kubelets in this process, built from the kubelet
//! crate over its fake runtime and network, sharing one client. They register Nodes, heartbeat
//! Leases, run pods instantly and report pod status through the kubelet's own code paths.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client};
use kubelet::testing::{start_hollow, HollowConfig, HollowNode};

/// Why hollow nodes could not start.
#[derive(Debug, thiserror::Error)]
pub enum HollowError {
    /// A node could not register.
    #[error("hollow node {node} could not register: {source}")]
    Register {
        /// Node name.
        node: String,
        /// Cause.
        #[source]
        source: kubelet::node::agent::NodeError,
    },
    /// The nodes did not become Ready in time.
    #[error("only {ready} of {want} hollow nodes became Ready within {seconds}s")]
    NotReady {
        /// Ready nodes.
        ready: usize,
        /// Wanted.
        want: usize,
        /// Timeout.
        seconds: u64,
    },
}

/// Name of hollow node `i`.
pub fn node_name(i: usize) -> String {
    format!("hollow-node-{i}")
}

/// How often a hollow node computes and reports its status: upstream kubemark's defaults
/// (`GetHollowKubeletConfig`) unless a scenario asks otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusTimings {
    /// `nodeStatusUpdateFrequency`: the status is computed this often (kubemark: 10 s).
    pub update: Duration,
    /// `nodeStatusReportFrequency`: an unchanged status is PATCHed this often (kubemark: 5 min);
    /// a changed one at the next update.
    pub report: Duration,
}

impl Default for StatusTimings {
    fn default() -> Self {
        Self {
            update: Duration::from_secs(10),
            report: Duration::from_secs(300),
        }
    }
}

/// Starts `count` hollow nodes (at most `parallel` registering at once), each with its files
/// under `dir/<name>`. Returns them and how long registration took.
///
/// Per node and period the API sees what upstream kubemark's hollow kubelet sends: a Lease PUT
/// every 10 s (the kubelet's renew interval), a node status PATCH when the status changed or
/// every `timings.report`, a pod watch (`spec.nodeName=<node>`), and GETs of the Node every
/// second until its pod CIDR is allocated. Each pod is re-synced every minute (upstream
/// `syncFrequency`) and at once when it changes.
pub async fn start_nodes(
    client: &Client,
    count: usize,
    dir: &Path,
    timings: StatusTimings,
    parallel: usize,
) -> Result<(Vec<HollowNode>, Duration), HollowError> {
    let config = HollowConfig {
        machine: kubelet::node::info::machine_info(dir),
        status_period: timings.update,
        status_report_period: timings.report.max(timings.update),
        max_pods: 110,
        sync_frequency: Duration::from_secs(60),
        port: 10250,
    };
    let started = Instant::now();
    let results: Vec<Result<HollowNode, HollowError>> = futures::stream::iter(0..count)
        .map(|i| {
            let client = client.clone();
            let config = config.clone();
            let name = node_name(i);
            let dir = dir.join(&name);
            async move {
                let mut attempt = 0;
                loop {
                    match start_hollow(client.clone(), &name, &dir, &config).await {
                        Ok(node) => {
                            // Each pod worker calls the runtime every resync: recording
                            // those calls would grow without bound at 150,000 pods.
                            node.runtime.stop_recording();
                            return Ok(node);
                        }
                        Err(source) if attempt >= 5 => {
                            return Err(HollowError::Register { node: name, source })
                        }
                        Err(error) => {
                            tracing::warn!(node = %name, %error, "hollow node registration failed; retrying");
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                        }
                    }
                }
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    let nodes = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok((nodes, started.elapsed()))
}

/// Waits until `want` nodes named `hollow-node-*` report Ready.
pub async fn wait_ready(
    client: &Client,
    want: usize,
    timeout: Duration,
) -> Result<(), HollowError> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let ready = match api.list(&ListParams::default()).await {
            Ok(list) => list.items.iter().filter(|n| is_ready(n)).count(),
            Err(error) => {
                tracing::warn!(%error, "listing nodes failed");
                0
            }
        };
        if ready >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(HollowError::NotReady {
                ready,
                want,
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether the node's Ready condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
