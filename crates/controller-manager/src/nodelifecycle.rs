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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use crate::context::Context;
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

/// The last heartbeat seen for a node and when (by our clock) it was first seen.
type Probe = (Option<jiff::Timestamp>, Instant);

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    /// Per node: the last heartbeat seen and when (by our clock) it was first seen.
    probes: Arc<Mutex<HashMap<String, Probe>>>,
}

/// Starts the node lifecycle controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        nodes: ctx.informers.get::<Node>(),
        leases: ctx.informers.get::<Lease>(),
        probes: Arc::default(),
        ctx,
    };
    tokio::spawn(async move {
        controller.nodes.ready().await;
        controller.leases.ready().await;
        let mut interval = tokio::time::interval(controller.ctx.settings.node_monitor_period);
        loop {
            interval.tick().await;
            let nodes = controller.nodes.list();
            controller.forget_missing(&nodes);
            for node in nodes {
                if let Err(error) = controller.monitor(&node).await {
                    tracing::warn!(node = %node.name_any(), %error, "node health update failed");
                }
            }
        }
    });
}

impl Controller {
    /// Drops the heartbeat records of nodes that are gone (once per round: per node it made
    /// each round quadratic in the node count).
    fn forget_missing(&self, nodes: &[Arc<Node>]) {
        let known: std::collections::HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        let mut probes = match self.probes.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        probes.retain(|n, _| known.contains(n));
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
            ready = Some("Unknown".into());
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
