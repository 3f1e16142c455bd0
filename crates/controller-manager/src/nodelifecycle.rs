//! The node lifecycle controller (small): a Node whose kubelet stops renewing its Lease (and
//! posting status) for `--node-monitor-grace-period` gets its conditions set to `Unknown` and the
//! `node.kubernetes.io/unreachable` taint; a NotReady node gets `node.kubernetes.io/not-ready`;
//! a Ready node loses both. Each is applied with effect NoSchedule (condition-based tainting) and
//! NoExecute (taint-based eviction, carried out by [`crate::tainteviction`]). As upstream, the
//! pressure conditions a kubelet reports (MemoryPressure, DiskPressure, PIDPressure) and
//! NetworkUnavailable become NoSchedule taints while they are True.
//!
//! Staleness is measured with this process's own clock from when it last saw the heartbeat
//! change (as upstream does), so clock skew between hosts does not matter.
//!
//! As upstream's, it records `RegisteredNode` for each node it starts watching (every node, when
//! it starts) and `RemovingNode` for each node that goes away. When it marks a Ready node
//! Unknown it records `NodeNotReady` and sets the Ready condition of every pod on the node to
//! False (with a Warning `NodeNotReady` event on each), so Services stop sending them traffic;
//! a node whose pods could not all be marked is tried again each round while it is not Ready.
//! The kubelet sets Ready back when it returns.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::events::{EventType, Recorder};
use crate::informer::Informer;

/// Taint for nodes whose kubelet is silent.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint for nodes reporting NotReady.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Where kubelets keep their Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Why a node could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the node failed.
    #[error("updating node {node}: {source}")]
    Update {
        /// The node.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// The latest heartbeat of a node: its Lease renewal or its Ready condition's heartbeat.
pub fn heartbeat(node: &Node, lease: Option<&Lease>) -> Option<jiff::Timestamp> {
    let lease_time = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let status_time = ready_condition(node)
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    lease_time.max(status_time)
}

fn ready_condition(node: &Node) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
}

/// The lifecycle taint keys the node should carry given its Ready status (`None` = no condition).
pub fn desired_taints(ready: Option<&str>) -> Vec<&'static str> {
    match ready {
        Some("True") => Vec::new(),
        Some("False") => vec![NOT_READY],
        _ => vec![UNREACHABLE],
    }
}

/// The effects every lifecycle taint key is applied with.
pub const EFFECTS: [&str; 2] = ["NoSchedule", "NoExecute"];

/// The node's taints with the lifecycle ones replaced by `wanted`, each with both [`EFFECTS`]
/// (others untouched; a taint already present keeps its `timeAdded`).
pub fn reconcile_taints(existing: &[Taint], wanted: &[&str], now: jiff::Timestamp) -> Vec<Taint> {
    let managed = |t: &Taint| {
        (t.key == UNREACHABLE || t.key == NOT_READY) && EFFECTS.contains(&t.effect.as_str())
    };
    let mut taints: Vec<Taint> = existing
        .iter()
        .filter(|t| !managed(t) || wanted.contains(&t.key.as_str()))
        .cloned()
        .collect();
    for key in wanted {
        for effect in EFFECTS {
            if !taints.iter().any(|t| t.key == *key && t.effect == effect) {
                taints.push(Taint {
                    key: (*key).to_string(),
                    effect: effect.into(),
                    time_added: Some(Time(now)),
                    value: None,
                });
            }
        }
    }
    taints
}

/// The node with every condition set to Unknown (kubelet stopped posting status).
pub fn mark_unknown(node: &Node, now: jiff::Timestamp) -> Node {
    let mut node = node.clone();
    let status = node.status.get_or_insert_with(Default::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(k8s_openapi::api::core::v1::NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some("NodeStatusNeverUpdated".into()),
            message: Some("Kubelet never posted node status.".into()),
            last_transition_time: Some(Time(now)),
            last_heartbeat_time: None,
        });
    }
    for condition in conditions.iter_mut() {
        if condition.status != "Unknown" {
            condition.status = "Unknown".into();
            condition.reason = Some("NodeStatusUnknown".into());
            condition.message = Some("Kubelet stopped posting node status.".into());
            condition.last_transition_time = Some(Time(now));
        }
    }
    node
}

/// Node conditions that become a NoSchedule taint while True, with the taint key.
pub const CONDITION_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "node.kubernetes.io/network-unavailable",
    ),
];

/// The node's taints with the condition taints ([`CONDITION_TAINTS`], effect NoSchedule) set to
/// match its conditions (others untouched; a taint already present keeps its `timeAdded`).
pub fn reconcile_condition_taints(
    node: &Node,
    taints: Vec<Taint>,
    now: jiff::Timestamp,
) -> Vec<Taint> {
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let is_true = |type_: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    let wanted: Vec<&str> = CONDITION_TAINTS
        .iter()
        .filter(|(condition, _)| is_true(condition))
        .map(|(_, key)| *key)
        .collect();
    let managed =
        |t: &Taint| t.effect == "NoSchedule" && CONDITION_TAINTS.iter().any(|(_, k)| *k == t.key);
    let mut taints: Vec<Taint> = taints
        .into_iter()
        .filter(|t| !managed(t) || wanted.contains(&t.key.as_str()))
        .collect();
    for key in wanted {
        if !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoSchedule")
        {
            taints.push(Taint {
                key: key.to_string(),
                effect: "NoSchedule".into(),
                time_added: Some(Time(now)),
                value: None,
            });
        }
    }
    taints
}

/// A node event of one monitoring round: the node's name and UID, the reason and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    /// The node's name.
    pub node: String,
    /// The node's UID.
    pub uid: String,
    /// `RegisteredNode`, `RemovingNode` or `NodeNotReady`.
    pub reason: &'static str,
    /// As upstream words it.
    pub message: String,
}

impl NodeEvent {
    /// `RegisteredNode`: the controller started watching the node.
    pub fn registered(node: &str, uid: &str) -> Self {
        Self::about(
            node,
            uid,
            "RegisteredNode",
            format!("Node {node} event: Registered Node {node} in Controller"),
        )
    }

    /// `RemovingNode`: the node is gone.
    pub fn removing(node: &str, uid: &str) -> Self {
        Self::about(
            node,
            uid,
            "RemovingNode",
            format!("Node {node} event: Removing Node {node} from Controller"),
        )
    }

    /// `NodeNotReady`: the controller marked a Ready node Unknown.
    pub fn not_ready(node: &str, uid: &str) -> Self {
        Self::about(
            node,
            uid,
            "NodeNotReady",
            format!("Node {node} status is now: NodeNotReady"),
        )
    }

    fn about(node: &str, uid: &str, reason: &'static str, message: String) -> Self {
        NodeEvent {
            node: node.to_string(),
            uid: uid.to_string(),
            reason,
            message,
        }
    }

    /// Records it (Normal) about a reference to the node by name and UID.
    async fn record(&self, recorder: &Recorder) {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(self.node.clone()),
                uid: Some(self.uid.clone()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        recorder
            .record(&node, EventType::Normal, self.reason, &self.message)
            .await;
    }
}

/// The nodes seen last round (name -> UID) against this round's: `RegisteredNode` for the new
/// ones, `RemovingNode` for those gone (a node re-created under the same name is both).
pub fn membership_events(
    known: &mut HashMap<String, String>,
    nodes: &[Arc<Node>],
) -> Vec<NodeEvent> {
    let mut events = Vec::new();
    let mut current = HashMap::with_capacity(nodes.len());
    for node in nodes {
        let name = node.name_any();
        let uid = node.metadata.uid.clone().unwrap_or_default();
        match known.remove(&name) {
            Some(old) if old == uid => {}
            Some(old) => {
                events.push(NodeEvent::removing(&name, &old));
                events.push(NodeEvent::registered(&name, &uid));
            }
            None => events.push(NodeEvent::registered(&name, &uid)),
        }
        current.insert(name, uid);
    }
    let mut gone: Vec<_> = known.drain().collect();
    gone.sort();
    events.extend(
        gone.iter()
            .map(|(name, uid)| NodeEvent::removing(name, uid)),
    );
    *known = current;
    events
}

/// The status patch that sets the pod's Ready condition to False (with a new transition time),
/// or `None` when the pod is not on `node`, has no Ready condition or is already not Ready.
pub fn marked_not_ready(pod: &Pod, node: &str, now: jiff::Timestamp) -> Option<serde_json::Value> {
    if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
        return None;
    }
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))?;
    if ready.status == "False" {
        return None;
    }
    Some(serde_json::json!({
        "metadata": {"uid": pod.metadata.uid},
        "status": {"conditions": [{
            "type": "Ready",
            "status": "False",
            "lastTransitionTime": Time(now),
        }]}
    }))
}

/// The last heartbeat seen for a node and when (by our clock) it was first seen.
type Probe = (Option<jiff::Timestamp>, Instant);

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    pods: Informer<Pod>,
    recorder: Recorder,
    /// Per node: the last heartbeat seen and when (by our clock) it was first seen.
    probes: Arc<Mutex<HashMap<String, Probe>>>,
    /// The nodes seen last round, name -> UID.
    known: Arc<Mutex<HashMap<String, String>>>,
    /// Nodes whose pods could not all be marked NotReady.
    retry: Arc<Mutex<HashSet<String>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Starts the node lifecycle controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        nodes: ctx.informers.get::<Node>(),
        leases: ctx.informers.get::<Lease>(),
        pods: ctx.informers.get::<Pod>(),
        recorder: ctx.recorder.for_component("node-controller"),
        probes: Arc::default(),
        known: Arc::default(),
        retry: Arc::default(),
        ctx,
    };
    tokio::spawn(async move {
        controller.nodes.ready().await;
        controller.leases.ready().await;
        controller.pods.ready().await;
        let mut interval = tokio::time::interval(controller.ctx.settings.node_monitor_period);
        loop {
            interval.tick().await;
            let nodes = controller.nodes.list();
            let events = membership_events(&mut lock(&controller.known), &nodes);
            controller.forget_missing();
            if !events.is_empty() {
                // Recorded beside the round: thousands of nodes registering at once must not
                // hold up their health checks.
                let recorder = controller.recorder.clone();
                tokio::spawn(async move {
                    for event in events {
                        event.record(&recorder).await;
                    }
                });
            }
            for node in nodes {
                if let Err(error) = controller.monitor(&node).await {
                    tracing::warn!(node = %node.name_any(), %error, "node health update failed");
                }
            }
        }
    });
}

impl Controller {
    /// Drops the records of nodes that are gone, once the round's membership is known (once
    /// per round: per node it made each round quadratic in the node count).
    fn forget_missing(&self) {
        let known = lock(&self.known);
        lock(&self.probes).retain(|n, _| known.contains_key(n));
        lock(&self.retry).retain(|n| known.contains_key(n));
    }

    /// Sets the Ready condition of every pod on the node to False, with a Warning event on
    /// each; whether all of them were marked (a pod gone or replaced meanwhile counts).
    async fn mark_pods_not_ready(&self, node: &str) -> bool {
        let now = jiff::Timestamp::now();
        let mut all = true;
        for pod in self.pods.list() {
            let Some(patch) = marked_not_ready(&pod, node, now) else {
                continue;
            };
            let namespace = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &namespace);
            let params = PatchParams::default();
            match api
                .patch_status(&pod.name_any(), &params, &Patch::Strategic(&patch))
                .await
            {
                Ok(updated) => {
                    self.recorder
                        .record(
                            &updated,
                            EventType::Warning,
                            "NodeNotReady",
                            "Node is not ready",
                        )
                        .await;
                }
                // Gone, or replaced by a pod of the same name (the patch names the old UID).
                Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409 | 422) => {}
                Err(error) => {
                    tracing::warn!(pod = %format!("{namespace}/{}", pod.name_any()), %error, "marking pod NotReady failed; will retry");
                    all = false;
                }
            }
        }
        all
    }

    /// Whether the node's heartbeat has not changed for longer than the grace period.
    fn is_stale(&self, node: &Node) -> bool {
        let name = node.name_any();
        let lease = self.leases.get(Some(LEASE_NAMESPACE), &name);
        let beat = heartbeat(node, lease.as_deref());
        let mut probes = match self.probes.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = probes.entry(name).or_insert((beat, Instant::now()));
        if entry.0 != beat {
            *entry = (beat, Instant::now());
        }
        entry.1.elapsed() > self.ctx.settings.node_monitor_grace_period
    }

    async fn monitor(&self, node: &Node) -> Result<(), Error> {
        let name = node.name_any();
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let error = |source| Error::Update {
            node: name.clone(),
            source,
        };
        let now = jiff::Timestamp::now();
        let mut ready = ready_condition(node).map(|c| c.status.clone());
        if self.is_stale(node) && ready.as_deref() != Some("Unknown") {
            tracing::warn!(node = %name, "kubelet stopped posting node status; marking Unknown");
            let updated = mark_unknown(node, now);
            api.replace_status(&name, &PostParams::default(), &updated)
                .await
                .map_err(error)?;
            if ready.as_deref() == Some("True") {
                let uid = node.metadata.uid.clone().unwrap_or_default();
                NodeEvent::not_ready(&name, &uid)
                    .record(&self.recorder)
                    .await;
                lock(&self.retry).insert(name.clone());
            }
            ready = Some("Unknown".into());
        }
        // Pods are marked on the transition and again each round until all of them are.
        let marking = lock(&self.retry).contains(&name);
        let done =
            ready.as_deref() == Some("True") || (marking && self.mark_pods_not_ready(&name).await);
        if done {
            lock(&self.retry).remove(&name);
        }
        // A node that never reported gets its grace period before any taint.
        if ready.is_none() {
            return Ok(());
        }
        let existing = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let wanted = reconcile_condition_taints(
            node,
            reconcile_taints(&existing, &desired_taints(ready.as_deref()), now),
            now,
        );
        let same = wanted.len() == existing.len()
            && wanted.iter().all(|w| {
                existing
                    .iter()
                    .any(|e| e.key == w.key && e.effect == w.effect)
            });
        if !same {
            let patch = serde_json::json!({"spec": {"taints": wanted}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

    fn node(ready: &str) -> Node {
        Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
            ..Node::default()
        }
    }

    #[test]
    fn pressure_conditions_become_no_schedule_taints_and_go_away() {
        let now = jiff::Timestamp::now();
        let mut pressured = node("True");
        let conditions = pressured
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .expect("conditions");
        for (type_, status) in [("MemoryPressure", "True"), ("DiskPressure", "False")] {
            conditions.push(NodeCondition {
                type_: type_.into(),
                status: status.into(),
                ..Default::default()
            });
        }
        let other = Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let stale = Taint {
            key: "node.kubernetes.io/disk-pressure".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let taints = reconcile_condition_taints(&pressured, vec![other.clone(), stale], now);
        let keys: Vec<(&str, &str)> = taints
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                ("node.kubernetes.io/memory-pressure", "NoSchedule")
            ]
        );
        let calm = node("True");
        let taints = reconcile_condition_taints(&calm, taints, now);
        assert_eq!(taints.len(), 1);
        assert_eq!(taints[0].key, other.key);
    }

    fn named(name: &str, uid: &str) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        })
    }

    #[test]
    fn nodes_are_registered_when_first_seen_and_removed_when_gone() {
        let mut known = HashMap::new();
        let said = |events: &[NodeEvent]| -> Vec<String> {
            events
                .iter()
                .map(|e| format!("{} {} {}", e.reason, e.node, e.uid))
                .collect()
        };
        let events = membership_events(&mut known, &[named("a", "1"), named("b", "2")]);
        assert_eq!(said(&events), ["RegisteredNode a 1", "RegisteredNode b 2"]);
        assert_eq!(
            events[0].message,
            "Node a event: Registered Node a in Controller"
        );
        assert!(membership_events(&mut known, &[named("a", "1"), named("b", "2")]).is_empty());

        // b is gone and a was re-created under its name.
        let events = membership_events(&mut known, &[named("a", "3")]);
        assert_eq!(
            said(&events),
            ["RemovingNode a 1", "RegisteredNode a 3", "RemovingNode b 2"]
        );
        assert_eq!(
            events[2].message,
            "Node b event: Removing Node b from Controller"
        );
        assert_eq!(
            NodeEvent::not_ready("a", "3").message,
            "Node a status is now: NodeNotReady"
        );
    }

    #[test]
    fn only_the_nodes_pods_that_are_not_already_not_ready_are_marked() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let pod = |node: &str, ready: Option<&str>| -> Pod {
            let conditions: Vec<serde_json::Value> = ready
                .map(|r| serde_json::json!({"type": "Ready", "status": r}))
                .into_iter()
                .collect();
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "uid": "u-1"},
                "spec": {"nodeName": node, "containers": []},
                "status": {"conditions": conditions}
            }))
            .expect("pod")
        };
        let patch = marked_not_ready(&pod("n1", Some("True")), "n1", now).expect("marked");
        assert_eq!(patch["metadata"]["uid"], "u-1");
        assert_eq!(
            patch["status"]["conditions"],
            serde_json::json!([{"type": "Ready", "status": "False", "lastTransitionTime": "1970-01-01T00:00:00Z"}])
        );
        assert!(marked_not_ready(&pod("n1", Some("Unknown")), "n1", now).is_some());
        assert!(marked_not_ready(&pod("n1", Some("False")), "n1", now).is_none());
        assert!(marked_not_ready(&pod("n1", None), "n1", now).is_none());
        assert!(marked_not_ready(&pod("n2", Some("True")), "n1", now).is_none());
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        assert!(desired_taints(Some("True")).is_empty());
        assert_eq!(desired_taints(Some("False")), [NOT_READY]);
        assert_eq!(desired_taints(Some("Unknown")), [UNREACHABLE]);
        assert_eq!(desired_taints(None), [UNREACHABLE]);
    }

    #[test]
    fn lifecycle_taints_are_replaced_and_others_kept() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let existing = vec![
            Taint {
                key: "dedicated".into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            },
            Taint {
                key: NOT_READY.into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            },
        ];
        let taints = reconcile_taints(&existing, &[UNREACHABLE], now);
        let keys: Vec<_> = taints
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                (UNREACHABLE, "NoSchedule"),
                (UNREACHABLE, "NoExecute")
            ]
        );
        assert_eq!(reconcile_taints(&existing, &[], now).len(), 1);
    }

    #[test]
    fn silent_nodes_get_every_condition_unknown() {
        let marked = mark_unknown(&node("True"), jiff::Timestamp::UNIX_EPOCH);
        let condition = ready_condition(&marked).cloned().unwrap_or_default();
        assert_eq!(condition.status, "Unknown");
        assert_eq!(condition.reason.as_deref(), Some("NodeStatusUnknown"));
        let never = mark_unknown(&Node::default(), jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(
            ready_condition(&never).map(|c| c.reason.clone()),
            Some(Some("NodeStatusNeverUpdated".into()))
        );
    }
}
