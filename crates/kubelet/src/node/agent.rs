//! The node's loops against the API: register the Node, compute its status every
//! `--node-status-update-frequency` and post it when it changed or every
//! `--node-status-report-frequency`, renew its Lease in `kube-node-lease` every 10 s, and wait for
//! the controller-manager to assign `spec.podCIDR` before configuring the pod network.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Mutex;

use super::events::{NodeEvent, NodeEventSink};
use super::info::MachineInfo;
use super::status::{
    condition_events, node_labels, node_object, node_status, NodeConfig, NodeHealth,
};
use crate::network::Network;
use crate::pod::objects::ObjectCache;
use crate::runtime::{ContainerRuntime, RuntimeVersion};

/// The Lease namespace.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The Lease duration.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the Lease is renewed.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// The longest wait between two reads of the Node while its pod CIDR is not allocated yet.
pub const POD_CIDR_POLL_MAX: Duration = Duration::from_secs(5);

/// One reading of what the node status reports.
struct Observed {
    health: NodeHealth,
    version: RuntimeVersion,
    images: Vec<crate::runtime::ImageInfo>,
}

/// Why a node API step failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Creating or updating the Node failed.
    #[error("registering node {node}: {source}")]
    Register {
        /// Node name.
        node: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Posting the node status failed.
    #[error("updating status of node {node}: {source}")]
    Status {
        /// Node name.
        node: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Renewing the Lease failed.
    #[error("renewing lease {LEASE_NAMESPACE}/{node}: {source}")]
    Lease {
        /// Node name.
        node: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Reading the Node failed.
    #[error("reading node {node}: {source}")]
    Read {
        /// Node name.
        node: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// `status` with the conditions' heartbeat times cleared (they change on every computation).
fn without_heartbeats(status: &NodeStatus) -> NodeStatus {
    let mut status = status.clone();
    for condition in status.conditions.iter_mut().flatten() {
        condition.last_heartbeat_time = None;
    }
    status
}

/// The node's API-facing agent.
pub struct NodeAgent {
    client: Client,
    config: NodeConfig,
    info: MachineInfo,
    runtime: Arc<dyn ContainerRuntime>,
    network: Arc<dyn Network>,
    previous: Mutex<Option<NodeStatus>>,
    /// When the status was last PATCHed (by any caller).
    last_posted: Mutex<Option<tokio::time::Instant>>,
    node_uid: Mutex<Option<String>>,
    lease: Mutex<Option<Lease>>,
    pressure: Option<super::eviction::Pressure>,
    /// The pressure last reflected in the Node's taints.
    tainted: Mutex<Option<(bool, bool)>>,
    /// Told the TTL annotation of every Node object read or written.
    objects: Option<Arc<ObjectCache>>,
    /// Where the node status events go (none: not recorded).
    events: Option<Arc<dyn NodeEventSink>>,
}

impl NodeAgent {
    /// An agent for the node described by `config`.
    pub fn new(
        client: Client,
        config: NodeConfig,
        info: MachineInfo,
        runtime: Arc<dyn ContainerRuntime>,
        network: Arc<dyn Network>,
    ) -> Self {
        Self {
            client,
            config,
            info,
            runtime,
            network,
            previous: Mutex::new(None),
            last_posted: Mutex::new(None),
            node_uid: Mutex::new(None),
            lease: Mutex::new(None),
            pressure: None,
            tainted: Mutex::new(None),
            objects: None,
            events: None,
        }
    }

    /// Records an event in `events` for every node condition that changes in a posted status
    /// (`NodeReady`, `NodeHasSufficientMemory`...).
    pub fn with_events(mut self, events: Arc<dyn NodeEventSink>) -> Self {
        self.events = Some(events);
        self
    }

    /// Tells `objects` the TTL annotation of the Node objects the agent reads and writes.
    pub fn with_object_cache(mut self, objects: Arc<ObjectCache>) -> Self {
        self.objects = Some(objects);
        self
    }

    fn observe_node(&self, node: &Node) {
        if let Some(objects) = &self.objects {
            objects.observe_node(node);
        }
    }

    /// Reports the eviction manager's `pressure` in the node conditions and taints.
    pub fn with_pressure(mut self, pressure: super::eviction::Pressure) -> Self {
        self.pressure = Some(pressure);
        self
    }

    /// Adds or removes the memory/disk pressure taints when the pressure changed.
    async fn sync_taints(&self, health: &NodeHealth) -> Result<(), NodeError> {
        let state = (health.memory_pressure, health.disk_pressure);
        let mut tainted = self.tainted.lock().await;
        if self.pressure.is_none() || *tainted == Some(state) {
            return Ok(());
        }
        let name = self.config.name.clone();
        let node = self
            .nodes()
            .get(&name)
            .await
            .map_err(|source| NodeError::Read {
                node: name.clone(),
                source,
            })?;
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        if let Some(taints) = super::status::pressure_taints(&taints, health) {
            let patch = json!({ "spec": { "taints": taints } });
            match self
                .nodes()
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %name, memory_pressure = state.0, disk_pressure = state.1, "node pressure taints updated")
                }
                // NodeRestriction: nodes may not change their taints; upstream's node
                // lifecycle controller taints by condition instead.
                Err(kube::Error::Api(status)) if status.code == 403 => {
                    tracing::info!(node = %name, "not allowed to set the node's pressure taints; leaving them to the node lifecycle controller")
                }
                Err(source) => {
                    return Err(NodeError::Register {
                        node: name.clone(),
                        source,
                    })
                }
            }
        }
        *tainted = Some(state);
        Ok(())
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    /// Creates the Node, or brings the labels of an existing one up to date.
    pub async fn register(&self) -> Result<Node, NodeError> {
        let name = self.config.name.clone();
        let register = |source| NodeError::Register {
            node: name.clone(),
            source,
        };
        let node = match self
            .nodes()
            .create(&PostParams::default(), &node_object(&self.config))
            .await
        {
            Ok(node) => {
                tracing::info!(node = %name, "node registered");
                node
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let patch = json!({ "metadata": { "labels": node_labels(&self.config) } });
                let node = self
                    .nodes()
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(register)?;
                tracing::info!(node = %name, "node already registered; labels updated");
                node
            }
            Err(source) => return Err(register(source)),
        };
        *self.node_uid.lock().await = node.metadata.uid.clone();
        *self.previous.lock().await = node.status.clone();
        self.observe_node(&node);
        Ok(node)
    }

    async fn health(&self) -> (NodeHealth, RuntimeVersion) {
        let (mut health, version) = self.runtime_health().await;
        if let Some(pressure) = &self.pressure {
            health.memory_pressure = pressure.memory();
            health.disk_pressure = pressure.disk();
        }
        (health, version)
    }

    async fn runtime_health(&self) -> (NodeHealth, RuntimeVersion) {
        match self.runtime.version().await {
            Ok(version) => (
                NodeHealth {
                    runtime_ok: true,
                    network_ready: self.network.ready(),
                    ..Default::default()
                },
                version,
            ),
            Err(error) => {
                tracing::warn!(%error, "container runtime did not answer");
                (
                    NodeHealth {
                        runtime_ok: false,
                        network_ready: self.network.ready(),
                        ..Default::default()
                    },
                    RuntimeVersion {
                        runtime_name: "containerd".into(),
                        runtime_version: "unknown".into(),
                    },
                )
            }
        }
    }

    /// What the node status is built from, read now: health, runtime version and images.
    async fn observe(&self) -> Observed {
        let (health, version) = self.health().await;
        let images = match self.runtime.list_images().await {
            Ok(images) => images,
            Err(error) => {
                tracing::warn!(%error, "listing images failed");
                Vec::new()
            }
        };
        Observed {
            health,
            version,
            images,
        }
    }

    /// Posts the node status once (merge patch of `nodes/status`).
    pub async fn post_status(&self) -> Result<NodeHealth, NodeError> {
        let observed = self.observe().await;
        self.post_observed(observed).await
    }

    /// Posts the status built from `observed`.
    async fn post_observed(&self, observed: Observed) -> Result<NodeHealth, NodeError> {
        let Observed {
            health,
            version,
            images,
        } = observed;
        let mut previous = self.previous.lock().await;
        let status = node_status(
            &self.config,
            &self.info,
            &version,
            &images,
            &health,
            previous.as_ref(),
            Time(jiff::Timestamp::now()),
        );
        let patch = json!({ "status": status });
        let node = self
            .nodes()
            .patch_status(
                &self.config.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|source| NodeError::Status {
                node: self.config.name.clone(),
                source,
            })?;
        self.observe_node(&node);
        if let Some(events) = &self.events {
            let before = previous.as_ref().and_then(|p| p.conditions.as_deref());
            let after = status.conditions.as_deref().unwrap_or_default();
            for reason in condition_events(before, after) {
                events.record(NodeEvent::status(&self.config.name, reason));
            }
        }
        *previous = Some(status);
        drop(previous);
        *self.last_posted.lock().await = Some(tokio::time::Instant::now());
        if let Err(error) = self.sync_taints(&health).await {
            tracing::warn!(%error, "updating the node's pressure taints failed");
        }
        Ok(health)
    }

    /// Computes the status every `period` but PATCHes it only when it changed (heartbeat times
    /// aside) or `report_period` passed since the last PATCH, as upstream's kubelet does with
    /// `--node-status-update-frequency` / `--node-status-report-frequency` while the Lease is
    /// the heartbeat: a change (runtime down, pressure, network ready) is posted within one
    /// `period`. The first PATCH is the caller's ([`Self::post_status`] right after
    /// registering), so the node is Ready without waiting for a tick. As upstream, the report
    /// after a start or a change waits `report_period` moved at random by up to half of it,
    /// later ones `report_period`: nodes that registered together spread their reports over
    /// the period instead of all sending them in the same minute.
    pub async fn status_report_loop(self: Arc<Self>, period: Duration, report_period: Duration) {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut was_ready = None;
        let mut report_after = report_jitter(report_period, rand::random());
        loop {
            ticker.tick().await;
            let observed = self.observe().await;
            let due = self
                .last_posted
                .lock()
                .await
                .is_none_or(|at| at.elapsed() >= report_after);
            let changed = self.status_changed(&observed).await;
            if !due && !changed {
                continue;
            }
            match self.post_observed(observed).await {
                Ok(health) => {
                    report_after = if changed {
                        report_jitter(report_period, rand::random())
                    } else {
                        report_period
                    };
                    let ready = health.runtime_ok && health.network_ready;
                    if was_ready != Some(ready) {
                        tracing::info!(node = %self.config.name, ready, "node status posted");
                        was_ready = Some(ready);
                    }
                }
                Err(error) => tracing::warn!(%error, "node status update failed"),
            }
        }
    }

    /// Whether the status built from `observed` differs from the last one posted, heartbeat
    /// times aside.
    async fn status_changed(&self, observed: &Observed) -> bool {
        let previous = self.previous.lock().await;
        let Some(previous) = previous.as_ref() else {
            return true;
        };
        let status = node_status(
            &self.config,
            &self.info,
            &observed.version,
            &observed.images,
            &observed.health,
            Some(previous),
            Time(jiff::Timestamp::now()),
        );
        without_heartbeats(previous) != without_heartbeats(&status)
    }

    /// Renews (or creates) the node's Lease once.
    pub async fn renew_lease(&self) -> Result<(), NodeError> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let name = self.config.name.clone();
        let lease_error = |source| NodeError::Lease {
            node: name.clone(),
            source,
        };
        let now = MicroTime(jiff::Timestamp::now());
        let mut cached = self.lease.lock().await;
        let current = match cached.take() {
            Some(lease) => Some(lease),
            None => api.get_opt(&name).await.map_err(lease_error)?,
        };
        let result = match current {
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                spec.holder_identity = Some(name.clone());
                spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
                spec.renew_time = Some(now);
                api.replace(&name, &PostParams::default(), &lease).await
            }
            None => {
                let owner = self.node_uid.lock().await.clone().map(|uid| {
                    vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: name.clone(),
                        uid,
                        ..Default::default()
                    }]
                });
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(LEASE_NAMESPACE.into()),
                        owner_references: owner,
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(name.clone()),
                        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                        renew_time: Some(now),
                        ..Default::default()
                    }),
                };
                api.create(&PostParams::default(), &lease).await
            }
        };
        // On error the cache stays empty, so the next renewal starts from a fresh read.
        *cached = Some(result.map_err(lease_error)?);
        Ok(())
    }

    /// Renews the Lease every 10 s, forever.
    pub async fn lease_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(LEASE_RENEW);
        loop {
            ticker.tick().await;
            if let Err(error) = self.renew_lease().await {
                tracing::warn!(%error, "lease renewal failed");
            }
        }
    }

    /// Waits until the Node has `spec.podCIDR` (polling after 1 s, then less often up to every
    /// [`POD_CIDR_POLL_MAX`]), configures the pod network with it and ends: a pod CIDR cannot
    /// change once set.
    pub async fn pod_cidr_loop(self: Arc<Self>) {
        let mut configured: Option<String> = None;
        let mut wait = Duration::from_secs(1);
        loop {
            // resourceVersion=0: answered from the apiserver's watch cache (thousands of nodes
            // registering at once would otherwise send a storage read each per second).
            let read = self
                .nodes()
                .get_with(&self.config.name, &kube::api::GetParams::any())
                .await;
            let cidr = match read {
                Ok(node) => {
                    self.observe_node(&node);
                    node.spec.and_then(|s| s.pod_cidr)
                }
                Err(kube::Error::Api(status)) if status.is_not_found() => None,
                Err(source) => {
                    let error = NodeError::Read {
                        node: self.config.name.clone(),
                        source,
                    };
                    tracing::warn!(%error, "reading node for its pod CIDR failed");
                    None
                }
            };
            if let Some(cidr) = cidr.filter(|c| configured.as_ref() != Some(c)) {
                match self.network.configure(&cidr).await {
                    Ok(()) => {
                        tracing::info!(pod_cidr = %cidr, "pod network configured");
                        configured = Some(cidr);
                        if let Err(error) = self.post_status().await {
                            tracing::warn!(%error, "node status update failed");
                        }
                    }
                    Err(error) => tracing::error!(%error, "configuring the pod network failed"),
                }
            } else if configured.is_none() {
                tracing::debug!("waiting for the node's pod CIDR");
            }
            if configured.is_some() {
                // A node's pod CIDR cannot change once set (the apiserver refuses it).
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(POD_CIDR_POLL_MAX);
        }
    }
}

/// The wait before the report that follows a start or a status change: `report_period` moved
/// by up to half of it either way (`unit` is uniform in [0, 1)).
fn report_jitter(report_period: Duration, unit: f64) -> Duration {
    component_base::jitter::at(report_period / 2, 2.0, unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_after_a_change_spread_over_half_to_one_and_a_half_periods() {
        let period = Duration::from_secs(300);
        assert_eq!(report_jitter(period, 0.0), Duration::from_secs(150));
        assert_eq!(report_jitter(period, 0.5), period);
        assert!(report_jitter(period, 0.999_999) < Duration::from_secs(450));
        assert_eq!(report_jitter(period, 7.0), Duration::from_secs(450));
        let waits: Vec<Duration> = (0..200)
            .map(|_| report_jitter(period, rand::random()))
            .collect();
        assert!(waits
            .iter()
            .all(|w| *w >= Duration::from_secs(150) && *w < Duration::from_secs(450)));
        // Not all the same: 200 draws spread over the window.
        let early = waits.iter().filter(|w| **w < period).count();
        assert!(
            (40..=160).contains(&early),
            "{early} of 200 before the period"
        );
    }
}
