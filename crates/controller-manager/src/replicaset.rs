//! The ReplicaSet controller: keeps `spec.replicas` pods matching the template running.
//! The ReplicationController controller is the same loop ([`start_replication_controllers`]):
//! like upstream, it views each ReplicationController as a ReplicaSet ([`Replicated`]).
//!
//! `reconcile` claims pods (adopts matching orphans, releases owned pods that stopped matching),
//! creates missing pods in slow-start batches or deletes surplus ones (worst-ranked first), and
//! writes the status. [`Expectations`] keep it from acting twice on a stale cache.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api_types::selector::Selector;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, ReplicationController, ReplicationControllerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use crate::context::Context;
use crate::events::{EventType, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::podutil;
use crate::queue::WorkQueue;
use crate::runner;

/// At most this many pods are created or deleted in one sync (upstream's burstReplicas).
const BURST_REPLICAS: usize = 500;

/// Why a ReplicaSet could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating a pod failed.
    #[error("creating pod for {rs}: {source}")]
    CreatePod {
        /// The ReplicaSet.
        rs: String,
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
    /// Adopting or releasing a pod failed.
    #[error("updating owner references of pod {pod}: {source}")]
    ClaimPod {
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error("updating status of {rs}: {source}")]
    UpdateStatus {
        /// The ReplicaSet.
        rs: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// An object the replica controller manages: a ReplicaSet, or a ReplicationController seen as one.
pub trait Replicated:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::Serialize
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Whether a controller reference names an object of this kind.
    fn is_owner_ref(reference: &OwnerReference) -> bool;
    /// This object as a ReplicaSet (same metadata, spec and status).
    fn as_replicaset(&self) -> ReplicaSet;
    /// A copy of this object carrying `status`.
    fn with_status(&self, status: ReplicaSetStatus) -> Self;
}

impl Replicated for ReplicaSet {
    fn is_owner_ref(reference: &OwnerReference) -> bool {
        reference.kind == "ReplicaSet" && reference.api_version.starts_with("apps/")
    }

    fn as_replicaset(&self) -> ReplicaSet {
        self.clone()
    }

    fn with_status(&self, status: ReplicaSetStatus) -> Self {
        let mut updated = self.clone();
        updated.status = Some(status);
        updated
    }
}

impl Replicated for ReplicationController {
    fn is_owner_ref(reference: &OwnerReference) -> bool {
        reference.kind == "ReplicationController" && reference.api_version == "v1"
    }

    fn as_replicaset(&self) -> ReplicaSet {
        rc_as_replicaset(self)
    }

    fn with_status(&self, status: ReplicaSetStatus) -> Self {
        let mut updated = self.clone();
        updated.status = Some(rs_status_as_rc(&status));
        updated
    }
}

/// A ReplicationController as the equivalent ReplicaSet: its map selector becomes `matchLabels`
/// (defaulting to the template's labels, as the apiserver defaults it upstream).
pub fn rc_as_replicaset(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    let selector = spec.selector.filter(|s| !s.is_empty()).or(template_labels);
    let status = rc.status.as_ref().map(|status| ReplicaSetStatus {
        replicas: status.replicas,
        fully_labeled_replicas: status.fully_labeled_replicas,
        ready_replicas: status.ready_replicas,
        available_replicas: status.available_replicas,
        observed_generation: status.observed_generation,
        conditions: status.conditions.as_ref().map(|conditions| {
            conditions
                .iter()
                .map(|c| k8s_openapi::api::apps::v1::ReplicaSetCondition {
                    last_transition_time: c.last_transition_time.clone(),
                    message: c.message.clone(),
                    reason: c.reason.clone(),
                    status: c.status.clone(),
                    type_: c.type_.clone(),
                })
                .collect()
        }),
        terminating_replicas: None,
    });
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: Some(ReplicaSetSpec {
            replicas: Some(spec.replicas.unwrap_or(1)),
            min_ready_seconds: spec.min_ready_seconds,
            selector: LabelSelector {
                match_labels: selector,
                match_expressions: None,
            },
            template: spec.template,
        }),
        status,
    }
}

/// A ReplicaSet status in ReplicationController form.
pub fn rs_status_as_rc(status: &ReplicaSetStatus) -> ReplicationControllerStatus {
    ReplicationControllerStatus {
        replicas: status.replicas,
        fully_labeled_replicas: status.fully_labeled_replicas,
        ready_replicas: status.ready_replicas,
        available_replicas: status.available_replicas,
        observed_generation: status.observed_generation,
        conditions: status.conditions.as_ref().map(|conditions| {
            conditions
                .iter()
                .map(
                    |c| k8s_openapi::api::core::v1::ReplicationControllerCondition {
                        last_transition_time: c.last_transition_time.clone(),
                        message: c.message.clone(),
                        reason: c.reason.clone(),
                        status: c.status.clone(),
                        type_: c.type_.clone(),
                    },
                )
                .collect()
        }),
    }
}

/// The running controller's state.
#[derive(Clone)]
struct Controller<K: Replicated> {
    ctx: Arc<Context>,
    replicasets: Informer<K>,
    pods: Informer<Pod>,
    expectations: Expectations,
    recorder: Recorder,
}

/// Starts the ReplicaSet controller.
pub fn start(ctx: Arc<Context>) {
    let workers = ctx.settings.workers.replicaset;
    start_for::<ReplicaSet>(ctx, "replicaset", "replicaset-controller", workers);
}

/// Starts the ReplicationController controller (upstream's replication manager).
pub fn start_replication_controllers(ctx: Arc<Context>) {
    let workers = ctx.settings.workers.replicationcontroller;
    start_for::<ReplicationController>(
        ctx,
        "replicationcontroller",
        "replication-controller",
        workers,
    );
}

fn start_for<K: Replicated>(
    ctx: Arc<Context>,
    name: &'static str,
    component: &str,
    workers: usize,
) {
    let controller = Controller::<K> {
        replicasets: ctx.informers.get::<K>(),
        pods: ctx.informers.get::<Pod>(),
        expectations: Expectations::default(),
        recorder: ctx.recorder.for_component(component),
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.replicasets.ready().await;
        controller.pods.ready().await;
        runner::forward(
            &controller.replicasets,
            queue.clone(),
            |change| match change {
                Change::Applied { new, .. } => vec![ObjectKey::of(new.as_ref())],
                Change::Deleted(old) => vec![ObjectKey::of(old.as_ref())],
                Change::Resynced => Vec::new(),
            },
        );
        let handler = controller.clone();
        runner::forward(&controller.pods, queue.clone(), move |change| {
            handler.pod_changed(change)
        });
        let worker = controller.clone();
        runner::spawn_workers(name, queue, workers, move |key| {
            let worker = worker.clone();
            async move { worker.reconcile(key).await }
        });
    });
}

impl<K: Replicated> Controller<K> {
    /// The ReplicaSet a pod's controller reference resolves to (only if the uid matches).
    fn resolve_owner(&self, pod: &Pod) -> Option<ObjectKey> {
        let reference = podutil::controller_of(&pod.metadata)?;
        if !K::is_owner_ref(reference) {
            return None;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let rs = self.replicasets.get(Some(&namespace), &reference.name)?;
        (rs.meta().uid.as_deref() == Some(reference.uid.as_str()))
            .then(|| ObjectKey::new(&namespace, &reference.name))
    }

    /// ReplicaSets in the pod's namespace whose selector matches it (candidates for adoption).
    fn matching_replicasets(&self, pod: &Pod) -> Vec<ObjectKey> {
        let namespace = pod.namespace().unwrap_or_default();
        let labels = pod.labels();
        self.replicasets
            .list_in(&namespace)
            .iter()
            .filter(|rs| {
                rs.as_replicaset()
                    .spec
                    .as_ref()
                    .and_then(|s| Selector::from_label_selector(&s.selector).ok())
                    .is_some_and(|s| !s.is_empty() && s.matches(labels))
            })
            .map(|rs| ObjectKey::of(rs.as_ref()))
            .collect()
    }

    /// The handler for pod changes: records observed expectations and returns owners to sync.
    fn pod_changed(&self, change: &Change<Pod>) -> Vec<ObjectKey> {
        match change {
            Change::Applied { old: None, new } => {
                if let Some(owner) = self.resolve_owner(new) {
                    if new.metadata.deletion_timestamp.is_some() {
                        self.expectations.deletion_observed(&owner, &new.name_any());
                    } else {
                        self.expectations.creation_observed(&owner);
                    }
                    vec![owner]
                } else if podutil::controller_of(&new.metadata).is_none() {
                    self.matching_replicasets(new)
                } else {
                    Vec::new()
                }
            }
            Change::Applied {
                old: Some(old),
                new,
            } => {
                let mut keys = Vec::new();
                let new_owner = self.resolve_owner(new);
                if let Some(owner) = &new_owner {
                    if new.metadata.deletion_timestamp.is_some()
                        && old.metadata.deletion_timestamp.is_none()
                    {
                        self.expectations.deletion_observed(owner, &new.name_any());
                    }
                    keys.push(owner.clone());
                }
                if let Some(old_owner) = self.resolve_owner(old) {
                    if Some(&old_owner) != new_owner.as_ref() {
                        keys.push(old_owner);
                    }
                }
                if podutil::controller_of(&new.metadata).is_none() {
                    keys.extend(self.matching_replicasets(new));
                }
                keys
            }
            Change::Deleted(pod) => match self.resolve_owner(pod) {
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
        let Some(original) = self.replicasets.get(key.namespace(), &key.name) else {
            self.expectations.forget(&key);
            return Ok(None);
        };
        let rs = Arc::new(original.as_replicaset());
        let spec = rs.spec.clone().unwrap_or_default();
        let selector = match Selector::from_label_selector(&spec.selector) {
            Ok(selector) if !selector.is_empty() => selector,
            Ok(_) | Err(_) => {
                tracing::warn!(rs = %key, "invalid or empty selector; not syncing");
                return Ok(None);
            }
        };
        let needs_sync = self.expectations.satisfied(&key);
        let candidates: Vec<Arc<Pod>> = self
            .pods
            .list_in(&key.namespace)
            .into_iter()
            .filter(|p| podutil::is_pod_active(p))
            .collect();
        let claim = claim_pods(&rs, &selector, candidates);
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let mut owned = claim.owned;
        for pod in claim.adopt {
            // Re-check the owner is live and not being deleted (upstream's canAdopt).
            let fresh = Api::<K>::namespaced(self.ctx.client.clone(), &key.namespace)
                .get_opt(&key.name)
                .await
                .map_err(|source| Error::ClaimPod {
                    pod: pod.name_any(),
                    source,
                })?;
            let still_ours = fresh.is_some_and(|f| {
                f.meta().uid == rs.metadata.uid && f.meta().deletion_timestamp.is_none()
            });
            if !still_ours {
                break;
            }
            let mut references = pod.metadata.owner_references.clone().unwrap_or_default();
            references.push(podutil::controller_ref(original.as_ref()));
            patch_owner_references(&pods_api, &pod, references).await?;
            owned.push(pod);
        }
        for pod in claim.release {
            let references: Vec<_> = pod
                .metadata
                .owner_references
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| Some(&r.uid) != rs.metadata.uid.as_ref())
                .collect();
            patch_owner_references(&pods_api, &pod, references).await?;
        }

        let mut result = Ok(());
        if needs_sync && rs.metadata.deletion_timestamp.is_none() {
            result = self
                .manage_replicas(original.as_ref(), &rs, &owned, &pods_api)
                .await;
        }

        let now = jiff::Timestamp::now();
        let mut status = calculate_status(&rs, &owned, now);
        set_replica_failure(&mut status, result.as_ref().err(), now);
        if !status_equal(rs.status.as_ref(), &status) {
            let updated = original.with_status(status.clone());
            Api::<K>::namespaced(self.ctx.client.clone(), &key.namespace)
                .replace_status(&key.name, &PostParams::default(), &updated)
                .await
                .map_err(|source| Error::UpdateStatus {
                    rs: key.to_string(),
                    source,
                })?;
        }
        result?;
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        if min_ready > 0 && status.ready_replicas != status.available_replicas {
            return Ok(Some(Duration::from_secs(
                u64::try_from(min_ready).unwrap_or(0),
            )));
        }
        Ok(None)
    }

    async fn manage_replicas(
        &self,
        original: &K,
        rs: &ReplicaSet,
        owned: &[Arc<Pod>],
        pods_api: &Api<Pod>,
    ) -> Result<(), Error> {
        let key = ObjectKey::of(rs);
        let desired =
            usize::try_from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)).unwrap_or(0);
        if owned.len() < desired {
            let missing = (desired - owned.len()).min(BURST_REPLICAS);
            self.expectations.expect_creations(&key, missing);
            let mut template = pod_from_template(rs);
            template.metadata.owner_references = Some(vec![podutil::controller_ref(original)]);
            let post = PostParams::default();
            let mut attempted = 0;
            let mut failure = None;
            for batch in slow_start_batches(missing) {
                attempted += batch;
                let results = join_all((0..batch).map(|_| pods_api.create(&post, &template))).await;
                for result in results {
                    match result {
                        Ok(pod) => {
                            self.recorder
                                .record(
                                    original,
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
                                    original,
                                    EventType::Warning,
                                    "FailedCreate",
                                    &format!("Error creating: {source}"),
                                )
                                .await;
                            failure = Some(source);
                        }
                    }
                }
                if failure.is_some() {
                    break;
                }
            }
            if let Some(source) = failure {
                // The batches that were never attempted will never be observed either.
                for _ in 0..missing.saturating_sub(attempted) {
                    self.expectations.creation_observed(&key);
                }
                return Err(Error::CreatePod {
                    rs: key.to_string(),
                    source,
                });
            }
        } else if owned.len() > desired {
            let surplus = (owned.len() - desired).min(BURST_REPLICAS);
            let now = jiff::Timestamp::now();
            let victims: Vec<Arc<Pod>> = rank_for_deletion(owned.to_vec(), now)
                .into_iter()
                .take(surplus)
                .collect();
            self.expectations
                .expect_deletions(&key, victims.iter().map(|p| p.name_any()));
            let results = join_all(victims.iter().map(|pod| async move {
                (
                    pod.name_any(),
                    pods_api
                        .delete(&pod.name_any(), &DeleteParams::default())
                        .await,
                )
            }))
            .await;
            let mut failure = None;
            for (name, result) in results {
                match result {
                    Ok(_) => {
                        self.recorder
                            .record(
                                original,
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
            if let Some(error) = failure {
                return Err(error);
            }
        }
        Ok(())
    }
}

async fn patch_owner_references(
    api: &Api<Pod>,
    pod: &Pod,
    references: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Result<(), Error> {
    let patch = serde_json::json!({
        "metadata": {
            "ownerReferences": references,
            "uid": pod.metadata.uid,
        }
    });
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Gone already: nothing to claim.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::ClaimPod {
            pod: pod.name_any(),
            source,
        }),
    }
}

/// The result of matching a ReplicaSet against the pods of its namespace.
#[derive(Debug, Default)]
pub struct Claim {
    /// Pods the ReplicaSet controls and that still match.
    pub owned: Vec<Arc<Pod>>,
    /// Orphans that match and should be adopted.
    pub adopt: Vec<Arc<Pod>>,
    /// Pods the ReplicaSet controls that no longer match and should be released.
    pub release: Vec<Arc<Pod>>,
}

/// Splits active pods into owned, to-adopt and to-release (upstream's `ClaimPods`).
pub fn claim_pods(rs: &ReplicaSet, selector: &Selector, pods: Vec<Arc<Pod>>) -> Claim {
    let mut claim = Claim::default();
    let rs_uid = rs.metadata.uid.as_deref();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    for pod in pods {
        let matches = selector.matches(pod.labels());
        match podutil::controller_of(&pod.metadata) {
            Some(reference) if Some(reference.uid.as_str()) == rs_uid => {
                if matches {
                    claim.owned.push(pod);
                } else if !deleting {
                    claim.release.push(pod);
                }
            }
            Some(_) => {}
            None => {
                if matches && !deleting && pod.metadata.deletion_timestamp.is_none() {
                    claim.adopt.push(pod);
                }
            }
        }
    }
    claim
}

/// Batch sizes for creating `count` pods: 1, 2, 4, ... (upstream's slowStartBatch).
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut size = 1;
    while remaining > 0 {
        let batch = size.min(remaining);
        batches.push(batch);
        remaining -= batch;
        size *= 2;
    }
    batches
}

/// The pod a ReplicaSet creates from its template.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let name = rs.name_any();
    let prefix = if name.len() > 57 {
        name
    } else {
        format!("{name}-")
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: rs.namespace(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![podutil::controller_ref(rs)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn phase_rank(pod: &Pod) -> u8 {
    match podutil::phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

/// Orders pods so the ones to delete first come first (upstream's `ActivePods` ranking,
/// simplified): unscheduled, then pending/unknown before running, not ready before ready,
/// ready for less time, more restarts, then newer.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some_and(|n| !n.is_empty())
    };
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| podutil::is_pod_ready(a).cmp(&podutil::is_pod_ready(b)))
        // Lower controller.kubernetes.io/pod-deletion-cost goes first.
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        // Ready more recently (later timestamp) goes first.
        .then_with(|| podutil::ready_since(b).cmp(&podutil::ready_since(a)))
        .then_with(|| podutil::restart_count(b).cmp(&podutil::restart_count(a)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            // Newer first; a pod with no timestamp counts as newest.
            match (created(a), created(b)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => y.cmp(&x),
            }
        })
}

/// The `controller.kubernetes.io/pod-deletion-cost` annotation (0 when absent or invalid).
pub fn deletion_cost(pod: &Pod) -> i32 {
    pod.annotations()
        .get("controller.kubernetes.io/pod-deletion-cost")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Pods sorted by [`deletion_order`].
pub fn rank_for_deletion(mut pods: Vec<Arc<Pod>>, _now: jiff::Timestamp) -> Vec<Arc<Pod>> {
    pods.sort_by(|a, b| deletion_order(a, b));
    pods
}

fn nonzero(value: i32) -> Option<i32> {
    (value != 0).then_some(value)
}

/// The status a ReplicaSet should report for the pods it owns.
pub fn calculate_status(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    now: jiff::Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.clone().unwrap_or_default();
    let template_labels: BTreeMap<String, String> = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(owned.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let fully_labeled = count(&|p: &Pod| {
        template_labels
            .iter()
            .all(|(k, v)| p.labels().get(k) == Some(v))
    });
    let ready = count(&|p: &Pod| podutil::is_pod_ready(p));
    let available = count(&|p: &Pod| podutil::is_pod_available(p, min_ready, now));
    let previous = rs.status.clone().unwrap_or_default();
    ReplicaSetStatus {
        replicas: i32::try_from(owned.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: nonzero(fully_labeled),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        observed_generation: rs.metadata.generation,
        conditions: previous.conditions,
        terminating_replicas: previous.terminating_replicas,
    }
}

/// Sets or clears the `ReplicaFailure` condition after a sync (upstream: set to True with reason
/// FailedCreate/FailedDelete and the API error when managing replicas failed and none is set yet,
/// removed once a sync succeeds).
pub fn set_replica_failure(
    status: &mut ReplicaSetStatus,
    failure: Option<&Error>,
    now: jiff::Timestamp,
) {
    let present = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some(error) if !present => {
            let (reason, source) = match error {
                Error::CreatePod { source, .. } => ("FailedCreate", source),
                Error::DeletePod { source, .. } => ("FailedDelete", source),
                _ => return,
            };
            let message = match source {
                kube::Error::Api(status) => status.message.clone(),
                other => other.to_string(),
            };
            status.conditions.get_or_insert_with(Vec::new).push(
                k8s_openapi::api::apps::v1::ReplicaSetCondition {
                    type_: "ReplicaFailure".into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    message: Some(message),
                    last_transition_time: Some(
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
                    ),
                },
            );
        }
        None if present => {
            if let Some(conditions) = status.conditions.as_mut() {
                conditions.retain(|c| c.type_ != "ReplicaFailure");
            }
            if status.conditions.as_ref().is_some_and(Vec::is_empty) {
                status.conditions = None;
            }
        }
        _ => {}
    }
}

fn status_equal(old: Option<&ReplicaSetStatus>, new: &ReplicaSetStatus) -> bool {
    old.is_some_and(|old| old == new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn replicaset(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("default".into()),
                uid: Some("rs-uid".into()),
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    match_expressions: None,
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web"), ("tier", "front")])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec::default()),
                }),
                min_ready_seconds: None,
            }),
            status: None,
        }
    }

    fn pod(
        name: &str,
        owner: Option<&str>,
        pod_labels: &[(&str, &str)],
        node: Option<&str>,
        ready: bool,
    ) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some(labels(pod_labels)),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: "web-abc".into(),
                        uid: uid.into(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]
                }),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(if node.is_some() { "Running" } else { "Pending" }.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn claim_adopts_matching_orphans_and_releases_non_matching_owned_pods(
    ) -> Result<(), api_types::selector::SelectorError> {
        let rs = replicaset(3);
        let selector = Selector::parse("app=web")?;
        let pods = vec![
            pod("owned", Some("rs-uid"), &[("app", "web")], None, false),
            pod("orphan", None, &[("app", "web")], None, false),
            pod("other-owner", Some("other"), &[("app", "web")], None, false),
            pod("stray", Some("rs-uid"), &[("app", "db")], None, false),
            pod("unrelated", None, &[("app", "db")], None, false),
        ];
        let claim = claim_pods(&rs, &selector, pods);
        let names = |v: &Vec<Arc<Pod>>| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(&claim.owned), ["owned"]);
        assert_eq!(names(&claim.adopt), ["orphan"]);
        assert_eq!(names(&claim.release), ["stray"]);
        Ok(())
    }

    #[test]
    fn failed_creations_set_replica_failure_until_a_sync_succeeds() {
        let mut status = ReplicaSetStatus::default();
        let error = Error::CreatePod {
            rs: "default/web".into(),
            source: kube::Error::Api(Box::new(
                kube::core::Status::failure("exceeded quota", "Forbidden").with_code(403),
            )),
        };
        let now = jiff::Timestamp::UNIX_EPOCH;
        set_replica_failure(&mut status, Some(&error), now);
        let conditions = status.conditions.clone().unwrap_or_default();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].type_, "ReplicaFailure");
        assert_eq!(conditions[0].reason.as_deref(), Some("FailedCreate"));
        assert_eq!(conditions[0].message.as_deref(), Some("exceeded quota"));
        set_replica_failure(&mut status, None, now);
        assert!(status.conditions.is_none());
    }

    #[test]
    fn replication_controllers_are_viewed_as_replica_sets() -> anyhow::Result<()> {
        let rc: ReplicationController = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "legacy", "namespace": "default", "uid": "u"},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "legacy"}}}},
            "status": {"replicas": 1, "readyReplicas": 1,
                "conditions": [{"type": "ReplicaFailure", "status": "True"}]}
        }))?;
        let rs = rc_as_replicaset(&rc);
        let spec = rs.spec.clone().unwrap_or_default();
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(
            spec.selector.match_labels,
            Some(labels(&[("app", "legacy")]))
        );
        let status = rs.status.clone().unwrap_or_default();
        assert_eq!((status.replicas, status.ready_replicas), (1, Some(1)));
        let back = rc.with_status(status);
        assert_eq!(back.status.as_ref().map(|s| s.replicas), Some(1));
        assert_eq!(
            back.status
                .and_then(|s| s.conditions)
                .map(|c| c[0].type_.clone())
                .as_deref(),
            Some("ReplicaFailure")
        );
        let reference = podutil::controller_ref(&rc);
        assert!(ReplicationController::is_owner_ref(&reference));
        assert!(!ReplicaSet::is_owner_ref(&reference));
        Ok(())
    }

    #[test]
    fn slow_start_doubles_batch_sizes() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), [1]);
        assert_eq!(slow_start_batches(5), [1, 2, 2]);
        assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
    }

    #[test]
    fn unscheduled_and_not_ready_pods_are_deleted_first() {
        let pods = vec![
            pod("ready", Some("rs-uid"), &[], Some("n"), true),
            pod("unscheduled", Some("rs-uid"), &[], None, false),
            pod("not-ready", Some("rs-uid"), &[], Some("n"), false),
        ];
        let ranked = rank_for_deletion(pods, jiff::Timestamp::UNIX_EPOCH);
        let names: Vec<_> = ranked.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["unscheduled", "not-ready", "ready"]);
    }

    #[test]
    fn cheaper_pods_are_deleted_first() {
        let cost = |name: &str, value: &str| {
            let mut pod = (*pod(name, Some("rs-uid"), &[], Some("n"), true)).clone();
            pod.metadata.annotations = Some(
                [(
                    "controller.kubernetes.io/pod-deletion-cost".to_string(),
                    value.to_string(),
                )]
                .into(),
            );
            Arc::new(pod)
        };
        let ranked = rank_for_deletion(
            vec![cost("dear", "100"), cost("cheap", "-5")],
            jiff::Timestamp::UNIX_EPOCH,
        );
        let names: Vec<_> = ranked.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["cheap", "dear"]);
    }

    #[test]
    fn template_pods_get_generate_name_labels_and_a_controller_reference() {
        let pod = pod_from_template(&replicaset(1));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(pod.labels().get("tier").map(String::as_str), Some("front"));
        let reference = &pod.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!(reference.uid, "rs-uid");
        assert_eq!(reference.controller, Some(true));
        assert_eq!(reference.block_owner_deletion, Some(true));
    }

    #[test]
    fn status_counts_ready_available_and_fully_labeled_pods() {
        let rs = replicaset(3);
        let pods = vec![
            pod(
                "a",
                Some("rs-uid"),
                &[("app", "web"), ("tier", "front")],
                Some("n"),
                true,
            ),
            pod("b", Some("rs-uid"), &[("app", "web")], Some("n"), false),
        ];
        let status = calculate_status(&rs, &pods, jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(status.replicas, 2);
        assert_eq!(status.fully_labeled_replicas, Some(1));
        assert_eq!(status.ready_replicas, Some(1));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(3));
    }
}
