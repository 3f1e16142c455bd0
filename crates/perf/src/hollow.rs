//! Hollow nodes (as upstream kubemark): many kubelets in this process, built from the kubelet
//! crate over its fake runtime and network, sharing one client. They register Nodes, heartbeat
//! Leases, run pods instantly and report pod status through the kubelet's own code paths.

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use http::{Request, Response};
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client};
use kubelet::pod::{ObjectLister, ServiceLister};
use kubelet::testing::{start_hollow, HollowConfig, HollowNode};
use tokio::sync::Semaphore;

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

/// Requests other than watches that the hollow nodes have in flight at once, together. With
/// 256, at 5,000 nodes and 10,000 pods, pod starts waited seconds for a slot behind the Lease
/// renewals and volume refreshes (churn startup p90 14.7 s; 579 ms with 2,048).
pub const FLEET_REQUESTS: usize = 2048;

/// Heartbeats (Lease renewals, node status) the hollow nodes have in flight at once, in a pool
/// of their own. Unbounded, a saturated apiserver answering Leases in seconds let them open
/// connections until both ends ran out of file descriptors.
pub const HEARTBEAT_REQUESTS: usize = 1024;

/// The client the hollow nodes share: `client`, with at most [`FLEET_REQUESTS`] requests other
/// than watches and heartbeats in flight. Over HTTP/1.1 every waiting request would open a
/// connection of its own, and at 5,000 nodes a burst of pod starts opened 20,000, each a TLS
/// handshake on both ends; upstream's kubelets multiplex their requests over one HTTP/2
/// connection each. Watches are not counted: each holds its connection for as long as it
/// runs. Heartbeats (Lease renewals and node status) wait for one of [`HEARTBEAT_REQUESTS`]
/// slots of their own, as upstream's kubelet sends them through a client of their own: queued
/// behind 100,000 pod starts, the Leases of a 5,000-node fleet were renewed at 65/s instead of
/// 500/s and nodes went NotReady.
pub fn fleet_client(client: &Client) -> Client {
    let limit = FleetLimit {
        client: client.clone(),
        slots: Arc::new(Semaphore::new(FLEET_REQUESTS)),
        heartbeat_slots: Arc::new(Semaphore::new(HEARTBEAT_REQUESTS)),
    };
    Client::new(limit, client.default_namespace())
}

#[derive(Clone)]
struct FleetLimit {
    client: Client,
    slots: Arc<Semaphore>,
    heartbeat_slots: Arc<Semaphore>,
}

fn is_watch(uri: &http::Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
}

/// A node's Lease or status: `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/*`
/// or `/api/v1/nodes/*/status`.
fn is_heartbeat(uri: &http::Uri) -> bool {
    let path = uri.path();
    path.starts_with("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
        || path
            .strip_prefix("/api/v1/nodes/")
            .is_some_and(|rest| rest.ends_with("/status") && rest.matches('/').count() == 1)
}

impl tower::Service<Request<kube::client::Body>> for FleetLimit {
    type Response = Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let client = self.client.clone();
        let uri = request.uri();
        let slots = match (is_watch(uri), is_heartbeat(uri)) {
            (true, _) => None,
            (false, true) => Some(self.heartbeat_slots.clone()),
            (false, false) => Some(self.slots.clone()),
        };
        Box::pin(async move {
            // The semaphore is never closed; the slot is held until the response's headers.
            let _slot = match slots {
                Some(slots) => slots.acquire_owned().await.ok(),
                None => None,
            };
            client.send(request).await
        })
    }
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
/// second until its pod CIDR is allocated. The fleet shares one Service watch for the pods'
/// service link variables and one ConfigMap and one Secret watch for their volume refreshes
/// (a pod start still reads its objects from storage). Each pod is re-synced every minute (upstream
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
        // One Service watch for the fleet: upstream's hollow kubelets each run a Service
        // informer, which over HTTP/1.1 would cost a connection per node.
        services: Some(ServiceLister::spawn(client.clone())),
        // One ConfigMap and one Secret watch for the fleet, in place of upstream's per-node
        // watches of the objects its pods use (the default change detection strategy): volume
        // refreshes read memory, not the apiserver (at 150,000 pods the per-node TTL caches
        // still sent 300 GETs/s).
        objects: Some(ObjectLister::spawn(client.clone())),
    };
    let started = Instant::now();
    let fleet = fleet_client(client);
    let results: Vec<Result<HollowNode, HollowError>> = futures::stream::iter(0..count)
        .map(|i| {
            let client = fleet.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_watch_requests_escape_the_fleet_limit() {
        let uri = |s: &str| s.parse::<http::Uri>().expect("uri");
        assert!(is_watch(&uri("/api/v1/pods?fieldSelector=x&watch=true")));
        assert!(is_watch(&uri("/api/v1/pods?watch=1&resourceVersion=5")));
        assert!(!is_watch(&uri("/api/v1/pods?watch=false")));
        assert!(!is_watch(&uri("/api/v1/namespaces/a/pods/watch")));
        assert!(!is_watch(&uri("/api/v1/pods?allowWatchBookmarks=true")));
    }

    #[test]
    fn heartbeats_escape_the_fleet_limit() {
        let uri = |s: &str| s.parse::<http::Uri>().expect("uri");
        let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/hollow-node-1";
        assert!(is_heartbeat(&uri(lease)));
        assert!(is_heartbeat(&uri("/api/v1/nodes/hollow-node-1/status?")));
        assert!(!is_heartbeat(&uri("/api/v1/nodes/hollow-node-1")));
        assert!(!is_heartbeat(&uri("/api/v1/namespaces/a/pods/p/status")));
        assert!(!is_heartbeat(&uri(
            "/apis/coordination.k8s.io/v1/namespaces/default/leases/x"
        )));
    }
}
