//! The DaemonSet controller: one pod per eligible node.
//!
//! A node is eligible when it matches the template's nodeSelector and required node affinity and
//! every NoSchedule/NoExecute taint is tolerated, counting the tolerations upstream adds to every
//! daemon pod (not-ready, unreachable, disk/memory/pid pressure, unschedulable, and
//! network-unavailable for host-network pods). Pods are pinned to their node with required node
//! affinity on `metadata.name` (`matchFields`) and the scheduler binds them. Templates are
//! versioned as ControllerRevisions; `RollingUpdate` replaces old pods within `maxUnavailable`
//! (or surges new ones within `maxSurge`), `OnDelete` waits for someone to delete them.
//! [`node_should_run`], [`manage`] and [`rolling_update`] are the pure decisions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use api_types::selector::Selector;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::events::{EventType, Recorder};
use crate::expectations::Expectations;
use crate::history::{self, REVISION_LABEL};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::podutil;
use crate::queue::WorkQueue;
use crate::runner;

/// The deprecated label with the DaemonSet generation a pod was made from.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// Why a DaemonSet could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Syncing the ControllerRevisions failed.
    #[error("syncing revisions of {ds}: {source}")]
    Revisions {
        /// The DaemonSet.
        ds: String,
        /// The cause.
        #[source]
        source: history::Error,
    },
    /// Creating a pod failed.
    #[error("creating pod for {ds} on node {node}: {source}")]
    CreatePod {
        /// The DaemonSet.
        ds: String,
        /// The node.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting a pod failed.
    #[error("deleting pod {pod}: {source}")]
    DeletePod {
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error("updating status of {ds}: {source}")]
    UpdateStatus {
        /// The DaemonSet.
        ds: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.to_string()),
        operator: Some("Exists".into()),
        effect: Some(effect.to_string()),
        ..Toleration::default()
    }
}

/// The template's tolerations plus the ones upstream adds to every daemon pod.
pub fn daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    let mut wanted = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    for extra in wanted {
        let present = tolerations
            .iter()
            .any(|t| t.key == extra.key && t.effect == extra.effect);
        if !present {
            tolerations.push(extra);
        }
    }
    tolerations
}

/// Whether a toleration tolerates a taint (upstream's `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            (!key.is_empty() || taint.key.is_empty())
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

fn requirement_matches(
    requirement: &NodeSelectorRequirement,
    values: &BTreeMap<String, String>,
) -> bool {
    let actual = values.get(&requirement.key);
    let wanted = requirement.values.clone().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => actual.is_some_and(|v| wanted.contains(v)),
        "NotIn" => actual.is_none_or(|v| !wanted.contains(v)),
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        "Gt" | "Lt" => match (
            actual.and_then(|v| number(v)),
            wanted.first().and_then(|v| number(v)),
        ) {
            (Some(actual), Some(limit)) if requirement.operator == "Gt" => actual > limit,
            (Some(actual), Some(limit)) => actual < limit,
            _ => false,
        },
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.clone().unwrap_or_default();
    let fields = term.match_fields.clone().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let field_values: BTreeMap<String, String> =
        [("metadata.name".to_string(), node.name_any())].into();
    expressions.iter().all(|r| requirement_matches(r, &labels))
        && fields.iter().all(|r| requirement_matches(r, &field_values))
}

/// Whether the pod's nodeSelector and required node affinity match the node.
pub fn node_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity_ok =
        required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)));
    selector_ok && affinity_ok
}

/// Upstream's `NodeShouldRunDaemonPod`: (should run a new pod there, may keep running one).
pub fn node_should_run(node: &Node, template: &PodSpec) -> (bool, bool) {
    if !node_matches(template, node) {
        return (false, false);
    }
    let tolerations = daemon_tolerations(template);
    let taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    if untolerated("NoExecute") {
        return (false, false);
    }
    if untolerated("NoSchedule") {
        return (false, true);
    }
    (true, true)
}

/// Required node affinity pinning a pod to `node` (upstream replaces every required term).
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// The node a daemon pod is (or will be) on: `spec.nodeName`, else its `matchFields` pin.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(node);
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

/// What the decisions know about one daemon pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// The pod's name.
    pub name: String,
    /// From the update revision.
    pub updated: bool,
    /// Available (ready for minReadySeconds).
    pub available: bool,
    /// Phase Failed.
    pub failed: bool,
}

/// One node as the decisions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// A new daemon pod should run there.
    pub should_run: bool,
    /// An existing daemon pod may keep running there.
    pub should_continue: bool,
    /// Its non-terminating daemon pods, oldest first.
    pub pods: Vec<PodView>,
}

/// Nodes to create pods on and pods to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes that get a new pod.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
}

/// Upstream's `manage`: a pod on every node that should run one, none where none may run,
/// failed pods replaced, duplicates removed (keeping the oldest, and with surge the oldest
/// updated one too).
pub fn manage(nodes: &[NodeView], surge: bool) -> Plan {
    let mut plan = Plan::default();
    for node in nodes {
        if !node.should_continue {
            plan.delete.extend(node.pods.iter().map(|p| p.name.clone()));
            continue;
        }
        let (failed, healthy): (Vec<&PodView>, Vec<&PodView>) =
            node.pods.iter().partition(|p| p.failed);
        plan.delete.extend(failed.iter().map(|p| p.name.clone()));
        if healthy.is_empty() {
            if node.should_run {
                plan.create.push(node.name.clone());
            }
            continue;
        }
        let mut keep: Vec<&str> = Vec::new();
        if surge {
            keep.extend(healthy.iter().find(|p| p.updated).map(|p| p.name.as_str()));
            keep.extend(healthy.iter().find(|p| !p.updated).map(|p| p.name.as_str()));
        } else {
            keep.push(healthy[0].name.as_str());
        }
        plan.delete.extend(
            healthy
                .iter()
                .filter(|p| !keep.contains(&p.name.as_str()))
                .map(|p| p.name.clone()),
        );
    }
    plan
}

/// Resolves an int-or-percent against `total`, rounding up (upstream's daemon fenceposts).
pub fn scaled(value: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match value {
        None => default,
        Some(IntOrString::Int(n)) => (*n).max(0),
        Some(IntOrString::String(s)) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let scaled = (percent * i64::from(total) + 99) / 100;
            i32::try_from(scaled.max(0)).unwrap_or(i32::MAX)
        }
    }
}

/// Upstream's `rollingUpdate`: old pods to delete (within `max_unavailable`) or, with
/// `max_surge > 0`, nodes to surge a new pod onto and old pods whose replacement is available.
pub fn rolling_update(nodes: &[NodeView], max_unavailable: i32, max_surge: i32) -> Plan {
    let mut plan = Plan::default();
    let nodes: Vec<&NodeView> = nodes
        .iter()
        .filter(|n| n.should_continue && !n.pods.is_empty())
        .collect();
    let pair = |node: &NodeView| -> Option<(Option<PodView>, Option<PodView>)> {
        let healthy: Vec<&PodView> = node.pods.iter().filter(|p| !p.failed).collect();
        let new: Vec<&&PodView> = healthy.iter().filter(|p| p.updated).collect();
        let old: Vec<&&PodView> = healthy.iter().filter(|p| !p.updated).collect();
        if new.len() > 1 || old.len() > 1 {
            return None;
        }
        Some((
            new.first().map(|p| (**p).clone()),
            old.first().map(|p| (**p).clone()),
        ))
    };
    if max_surge <= 0 {
        let max_unavailable = max_unavailable.max(1);
        let mut unavailable = 0;
        let mut allowed = Vec::new();
        let mut candidates = Vec::new();
        for node in nodes {
            match pair(node) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !new.available {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !old.available {
                        allowed.push(old.name);
                    } else if unavailable < max_unavailable {
                        candidates.push(old.name);
                    }
                }
            }
        }
        let remaining = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
        plan.delete = allowed;
        plan.delete.extend(candidates.into_iter().take(remaining));
        return plan;
    }
    let mut surging = 0;
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    for node in nodes {
        match pair(node) {
            None | Some((_, None)) => {}
            Some((None, Some(old))) => {
                if !node.should_run {
                    continue;
                }
                if !old.available {
                    allowed.push(node.name.clone());
                } else if surging < max_surge {
                    candidates.push(node.name.clone());
                }
            }
            Some((Some(new), Some(old))) => {
                surging += 1;
                if new.available {
                    plan.delete.push(old.name);
                }
            }
        }
    }
    let remaining = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
    plan.create = allowed;
    plan.create.extend(candidates.into_iter().take(remaining));
    plan
}

/// The running controller's state.
#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    sets: Informer<DaemonSet>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    revisions: Informer<ControllerRevision>,
    expectations: Expectations,
    recorder: Recorder,
}

/// Starts the DaemonSet controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        sets: ctx.informers.get::<DaemonSet>(),
        pods: ctx.informers.get::<Pod>(),
        nodes: ctx.informers.get::<Node>(),
        revisions: ctx.informers.get::<ControllerRevision>(),
        expectations: Expectations::default(),
        recorder: ctx.recorder.for_component("daemonset-controller"),
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.sets.ready().await;
        controller.pods.ready().await;
        controller.nodes.ready().await;
        controller.revisions.ready().await;
        runner::forward(&controller.sets, queue.clone(), |change| match change {
            Change::Applied { new, .. } => vec![ObjectKey::of(new.as_ref())],
            Change::Deleted(old) => vec![ObjectKey::of(old.as_ref())],
            Change::Resynced => Vec::new(),
        });
        let handler = controller.clone();
        runner::forward(&controller.pods, queue.clone(), move |change| {
            handler.pod_changed(change)
        });
        let sets = controller.sets.clone();
        runner::forward(
            &controller.nodes,
            queue.clone(),
            move |change| match change {
                Change::Applied {
                    old: Some(old),
                    new,
                } if old.metadata.labels == new.metadata.labels
                    && old.spec.as_ref().map(|s| &s.taints)
                        == new.spec.as_ref().map(|s| &s.taints) =>
                {
                    Vec::new()
                }
                Change::Resynced => Vec::new(),
                _ => sets
                    .list()
                    .iter()
                    .map(|s| ObjectKey::of(s.as_ref()))
                    .collect(),
            },
        );
        let worker = controller.clone();
        runner::spawn_workers(
            "daemonset",
            queue,
            controller.ctx.settings.workers.daemonset,
            move |key| {
                let worker = worker.clone();
                async move { worker.reconcile(key).await }
            },
        );
    });
}

fn owner_key(pod: &Pod) -> Option<ObjectKey> {
    let reference = podutil::controller_of(&pod.metadata)?;
    (reference.kind == "DaemonSet" && reference.api_version.starts_with("apps/"))
        .then(|| ObjectKey::new(&pod.namespace().unwrap_or_default(), &reference.name))
}

impl Controller {
    fn pod_changed(&self, change: &Change<Pod>) -> Vec<ObjectKey> {
        match change {
            Change::Applied { old, new } => {
                let Some(owner) = owner_key(new) else {
                    return Vec::new();
                };
                match old {
                    None if new.metadata.deletion_timestamp.is_none() => {
                        self.expectations.creation_observed(&owner);
                    }
                    Some(old)
                        if old.metadata.deletion_timestamp.is_none()
                            && new.metadata.deletion_timestamp.is_some() =>
                    {
                        self.expectations.deletion_observed(&owner, &new.name_any());
                    }
                    _ => {}
                }
                vec![owner]
            }
            Change::Deleted(pod) => match owner_key(pod) {
                Some(owner) => {
                    self.expectations.deletion_observed(&owner, &pod.name_any());
                    vec![owner]
                }
                None => Vec::new(),
            },
            Change::Resynced => Vec::new(),
        }
    }

    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(ds) = self.sets.get(key.namespace(), &key.name) else {
            self.expectations.forget(&key);
            return Ok(None);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = ds.spec.clone().unwrap_or_default();
        if Selector::from_label_selector(&spec.selector).map_or(true, |s| s.is_empty()) {
            tracing::warn!(ds = %key, "invalid or empty selector; not syncing");
            return Ok(None);
        }
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let ours = |meta: &ObjectMeta| podutil::controller_of(meta).is_some_and(|r| r.uid == uid);
        let owned_revisions: Vec<Arc<ControllerRevision>> = self
            .revisions
            .list_in(&key.namespace)
            .into_iter()
            .filter(|r| ours(&r.metadata))
            .collect();
        let status = ds.status.clone().unwrap_or_default();
        let owner = history::Owner {
            namespace: &key.namespace,
            name: &key.name,
            reference: podutil::controller_ref(ds.as_ref()),
            template: &spec.template,
            collision_count: status.collision_count,
            current_revision: None,
        };
        let revisions =
            match history::sync_revisions(&self.ctx.client, &owner, &owned_revisions).await {
                Ok(revisions) => revisions,
                Err(history::Error::Collision { name }) => {
                    tracing::info!(ds = %key, revision = %name, "revision name collision");
                    let mut updated = (*ds).clone();
                    let mut status = status.clone();
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    updated.status = Some(status);
                    self.write_status(&key, &updated).await?;
                    return Ok(Some(Duration::from_millis(100)));
                }
                Err(source) => {
                    return Err(Error::Revisions {
                        ds: key.to_string(),
                        source,
                    })
                }
            };
        let hash = revisions
            .update
            .labels()
            .get(REVISION_LABEL)
            .cloned()
            .unwrap_or_default();

        // Pods by node.
        let mut pods: Vec<Arc<Pod>> = self
            .pods
            .list_in(&key.namespace)
            .into_iter()
            .filter(|p| ours(&p.metadata))
            .collect();
        pods.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .then_with(|| a.name_any().cmp(&b.name_any()))
        });
        let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        for pod in &pods {
            if let Some(node) = target_node(pod) {
                by_node.entry(node).or_default().push(pod.clone());
            }
        }
        let now = jiff::Timestamp::now();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let template_spec = spec.template.spec.clone().unwrap_or_default();
        let mut node_views = Vec::new();
        let mut node_names: BTreeSet<String> = BTreeSet::new();
        for node in self.nodes.list() {
            let (should_run, should_continue) = node_should_run(&node, &template_spec);
            node_names.insert(node.name_any());
            let pods = by_node.get(&node.name_any()).cloned().unwrap_or_default();
            node_views.push(NodeView {
                name: node.name_any(),
                should_run,
                should_continue,
                pods: pods
                    .iter()
                    .filter(|p| !podutil::is_terminating(p))
                    .map(|p| PodView {
                        name: p.name_any(),
                        updated: p.labels().get(REVISION_LABEL) == Some(&hash),
                        available: podutil::is_pod_available(p, min_ready, now),
                        failed: podutil::phase(p) == "Failed",
                    })
                    .collect(),
            });
        }
        node_views.sort_by(|a, b| a.name.cmp(&b.name));
        // Pods pinned to nodes that no longer exist go too.
        let orphaned: Vec<String> = by_node
            .iter()
            .filter(|(node, _)| !node_names.contains(*node))
            .flat_map(|(_, pods)| pods.iter())
            .filter(|p| !podutil::is_terminating(p))
            .map(|p| p.name_any())
            .collect();

        let strategy = spec.update_strategy.clone().unwrap_or_default();
        let rolling = strategy.type_.as_deref() != Some("OnDelete");
        let desired =
            i32::try_from(node_views.iter().filter(|n| n.should_run).count()).unwrap_or(i32::MAX);
        let max_surge = if rolling {
            scaled(
                strategy
                    .rolling_update
                    .as_ref()
                    .and_then(|r| r.max_surge.as_ref()),
                desired,
                0,
            )
        } else {
            0
        };
        let max_unavailable = scaled(
            strategy
                .rolling_update
                .as_ref()
                .and_then(|r| r.max_unavailable.as_ref()),
            desired,
            1,
        );

        let mut result = Ok(());
        if self.expectations.satisfied(&key) {
            let mut plan = manage(&node_views, max_surge > 0);
            plan.delete.extend(orphaned);
            if rolling {
                let update = rolling_update(&node_views, max_unavailable, max_surge);
                plan.create.extend(update.create);
                for pod in update.delete {
                    if !plan.delete.contains(&pod) {
                        plan.delete.push(pod);
                    }
                }
            }
            result = self.sync_nodes(&ds, &plan, &hash).await;
        }

        // Status.
        let mut new_status = DaemonSetStatus {
            observed_generation: ds.metadata.generation,
            collision_count: status.collision_count,
            conditions: status.conditions.clone(),
            ..DaemonSetStatus::default()
        };
        let mut available = 0;
        let mut updated = 0;
        for node in &node_views {
            let scheduled = by_node.get(&node.name).and_then(|pods| pods.first());
            match (node.should_run, scheduled) {
                (true, Some(pod)) => {
                    new_status.current_number_scheduled += 1;
                    if podutil::is_pod_ready(pod) {
                        new_status.number_ready += 1;
                    }
                    if podutil::is_pod_available(pod, min_ready, now) {
                        available += 1;
                    }
                    if pod.labels().get(REVISION_LABEL) == Some(&hash) {
                        updated += 1;
                    }
                }
                (false, Some(_)) => new_status.number_misscheduled += 1,
                _ => {}
            }
        }
        new_status.desired_number_scheduled = desired;
        new_status.number_available = Some(available);
        new_status.updated_number_scheduled = Some(updated);
        new_status.number_unavailable = Some((desired - available).max(0));
        if ds.status.as_ref() != Some(&new_status) {
            let mut updated_ds = (*ds).clone();
            updated_ds.status = Some(new_status.clone());
            self.write_status(&key, &updated_ds).await?;
        }
        result?;

        let mut live: BTreeSet<String> = BTreeSet::new();
        live.insert(revisions.update.name_any());
        for revision in &owned_revisions {
            let revision_hash = revision.labels().get(REVISION_LABEL);
            if pods
                .iter()
                .any(|p| p.labels().get(REVISION_LABEL) == revision_hash && revision_hash.is_some())
            {
                live.insert(revision.name_any());
            }
        }
        history::truncate(
            &self.ctx.client,
            &key.namespace,
            &owned_revisions,
            &live,
            spec.revision_history_limit.unwrap_or(10),
        )
        .await
        .map_err(|source| Error::Revisions {
            ds: key.to_string(),
            source,
        })?;
        if min_ready > 0 && new_status.number_ready != available {
            return Ok(Some(Duration::from_secs(
                u64::try_from(min_ready).unwrap_or(1),
            )));
        }
        Ok(None)
    }

    async fn write_status(&self, key: &ObjectKey, ds: &DaemonSet) -> Result<(), Error> {
        Api::<DaemonSet>::namespaced(self.ctx.client.clone(), &key.namespace)
            .replace_status(&key.name, &PostParams::default(), ds)
            .await
            .map(|_| ())
            .map_err(|source| Error::UpdateStatus {
                ds: key.to_string(),
                source,
            })
    }

    async fn sync_nodes(&self, ds: &DaemonSet, plan: &Plan, hash: &str) -> Result<(), Error> {
        let key = ObjectKey::of(ds);
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let api = &api;
        let mut failure = None;
        let mut created_any = false;
        if !plan.create.is_empty() {
            self.expectations.expect_creations(&key, plan.create.len());
            let post = &PostParams::default();
            let pods: Vec<(String, Pod)> = plan
                .create
                .iter()
                .map(|node| (node.clone(), new_pod(ds, node, hash)))
                .collect();
            let results = join_all(
                pods.iter()
                    .map(|(node, pod)| async move { (node.clone(), api.create(post, pod).await) }),
            )
            .await;
            for (node, result) in results {
                match result {
                    Ok(pod) => {
                        created_any = true;
                        self.recorder
                            .record(
                                ds,
                                EventType::Normal,
                                "SuccessfulCreate",
                                &format!("Created pod: {}", pod.name_any()),
                            )
                            .await;
                    }
                    Err(source) => {
                        self.expectations.creation_observed(&key);
                        self.recorder
                            .record(
                                ds,
                                EventType::Warning,
                                "FailedCreate",
                                &format!("Error creating: {source}"),
                            )
                            .await;
                        failure = Some(Error::CreatePod {
                            ds: key.to_string(),
                            node,
                            source,
                        });
                    }
                }
            }
        }
        // Expectations hold either creations or deletions for an owner, so deletions wait for
        // the next sync once this sync's creations have been observed.
        if !created_any && !plan.delete.is_empty() {
            self.expectations
                .expect_deletions(&key, plan.delete.iter().cloned());
            let results = join_all(plan.delete.iter().map(|name| async move {
                (
                    name.clone(),
                    api.delete(name, &DeleteParams::default()).await,
                )
            }))
            .await;
            for (name, result) in results {
                match result {
                    Ok(_) => {
                        self.recorder
                            .record(
                                ds,
                                EventType::Normal,
                                "SuccessfulDelete",
                                &format!("Deleted pod: {name}"),
                            )
                            .await;
                    }
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        self.expectations.deletion_observed(&key, &name);
                    }
                    Err(source) => {
                        self.expectations.deletion_observed(&key, &name);
                        failure = Some(Error::DeletePod { pod: name, source });
                    }
                }
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// A daemon pod for `node`: the template with the daemon tolerations, pinned to the node, labelled
/// with the revision hash and template generation, owned by the DaemonSet.
pub fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let spec = ds.spec.clone().unwrap_or_default();
    let template_meta = spec.template.metadata.clone().unwrap_or_default();
    let mut labels = template_meta.labels.clone().unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), hash.to_string());
    if let Some(generation) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), generation.to_string());
    }
    let mut pod_spec = spec.template.spec.clone().unwrap_or_default();
    pod_spec.tolerations = Some(daemon_tolerations(&pod_spec));
    pin_to_node(&mut pod_spec, node);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            owner_references: Some(vec![podutil::controller_ref(ds)]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}
        }))
        .unwrap_or_default()
    }

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).unwrap_or_default()
    }

    #[test]
    fn eligibility_follows_selectors_affinity_and_taints() {
        let plain = node(
            "a",
            serde_json::json!({"disk": "ssd"}),
            serde_json::json!([]),
        );
        let empty = spec(serde_json::json!({"containers": []}));
        assert_eq!(node_should_run(&plain, &empty), (true, true));
        let selecting =
            spec(serde_json::json!({"containers": [], "nodeSelector": {"disk": "hdd"}}));
        assert_eq!(node_should_run(&plain, &selecting), (false, false));
        let affinity = spec(
            serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}}),
        );
        assert_eq!(node_should_run(&plain, &affinity), (false, false));

        let no_schedule = node(
            "b",
            serde_json::json!({}),
            serde_json::json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
        );
        assert_eq!(node_should_run(&no_schedule, &empty), (false, true));
        let tolerating = spec(serde_json::json!({"containers": [], "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]}));
        assert_eq!(node_should_run(&no_schedule, &tolerating), (true, true));
        let no_execute = node(
            "c",
            serde_json::json!({}),
            serde_json::json!([{"key": "dedicated", "effect": "NoExecute"}]),
        );
        assert_eq!(node_should_run(&no_execute, &empty), (false, false));
        // Upstream's automatic tolerations.
        let not_ready = node(
            "d",
            serde_json::json!({}),
            serde_json::json!([
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        );
        assert_eq!(node_should_run(&not_ready, &empty), (true, true));
    }

    #[test]
    fn pods_are_pinned_with_match_fields() {
        let mut pod_spec = spec(serde_json::json!({"containers": []}));
        pin_to_node(&mut pod_spec, "node-1");
        let pod = Pod {
            spec: Some(pod_spec.clone()),
            ..Pod::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("node-1"));
        let other = node("node-2", serde_json::json!({}), serde_json::json!([]));
        assert!(!node_matches(&pod_spec, &other));
    }

    fn view(name: &str, pods: &[(&str, bool, bool)]) -> NodeView {
        NodeView {
            name: name.into(),
            should_run: true,
            should_continue: true,
            pods: pods
                .iter()
                .map(|(n, updated, available)| PodView {
                    name: (*n).into(),
                    updated: *updated,
                    available: *available,
                    failed: false,
                })
                .collect(),
        }
    }

    #[test]
    fn manage_creates_missing_and_removes_extra_and_misplaced_pods() {
        let mut gone = view("c", &[("p3", true, true)]);
        gone.should_run = false;
        gone.should_continue = false;
        let plan = manage(
            &[
                view("a", &[]),
                view("b", &[("p1", true, true), ("p2", true, true)]),
                gone,
            ],
            false,
        );
        assert_eq!(plan.create, ["a"]);
        assert_eq!(plan.delete, ["p2", "p3"]);
    }

    #[test]
    fn rolling_update_respects_max_unavailable_and_max_surge() {
        let nodes = [
            view("a", &[("a1", false, true)]),
            view("b", &[("b1", false, true)]),
            view("c", &[("c1", false, true)]),
        ];
        assert_eq!(rolling_update(&nodes, 1, 0).delete, ["a1"]);
        assert_eq!(rolling_update(&nodes, 2, 0).delete, ["a1", "b1"]);
        let in_progress = [
            view("a", &[("a2", true, false)]),
            view("b", &[("b1", false, true)]),
        ];
        assert!(rolling_update(&in_progress, 1, 0).delete.is_empty());
        let surge = rolling_update(&nodes, 0, 1);
        assert_eq!(surge.create, ["a"]);
        let surged = [view("a", &[("a2", true, true), ("a1", false, true)])];
        assert_eq!(rolling_update(&surged, 0, 1).delete, ["a1"]);
        assert_eq!(scaled(Some(&IntOrString::String("10%".into())), 3, 1), 1);
    }
}
