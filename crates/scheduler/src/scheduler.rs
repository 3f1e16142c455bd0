//! The running scheduler: watches pods and nodes into the [`Cache`] and the
//! [`SchedulingQueue`], and a loop that takes one pod at a time, decides with
//! [`algorithm::schedule_from`], assumes the pod on its node and binds it in the background.
//! When no node fits it runs [`preemption::preempt`]: the pod is nominated to the chosen node
//! (`status.nominatedNodeName`) and the victims are deleted gracefully.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Binding, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod, PodCondition,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use rand::Rng;

use crate::algorithm;
use crate::cache::Cache;
use crate::events;
use crate::framework::{ClusterInfo, NodeInfo, PodInfo, Registry};
use crate::listers::Listers;
use crate::metrics::{AttemptResult, Metrics};
use crate::plugins::{scheduling_gates, volume_binding};
use crate::preemption::{self, Candidate};
use crate::queue::SchedulingQueue;
use crate::volumes::VolumeCache;
use component_base::events::EventRecorder;

/// The scheduler name this scheduler answers to.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// How often pods whose back-off ended move from the back-off set to the active queue.
const BACKOFF_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// A running scheduler's shared state.
#[derive(Clone)]
pub struct Scheduler {
    client: Client,
    /// Writes the pod events, bumping the count of a repeated one.
    events: EventRecorder,
    cache: Arc<Mutex<Cache>>,
    queue: SchedulingQueue,
    pods: Store<Pod>,
    nodes: Store<Node>,
    listers: Listers,
    /// Claims, volumes and classes with assumed bindings (VolumeBinding).
    volumes: VolumeCache,
    /// Scheduler name -> the profile's plugins.
    profiles: Arc<HashMap<String, Arc<Registry>>>,
    /// Unbound pods with `status.nominatedNodeName` (uid -> node, pod): while their victims
    /// terminate, pods of lower priority must not take the room made for them.
    nominated: Arc<Mutex<HashMap<String, (String, PodInfo)>>>,
    /// Where the next cycle starts filtering (upstream `nextStartNodeIndex`).
    next_start: Arc<AtomicUsize>,
    /// Parked pods as their last attempt saw them: an update changing only their status (the
    /// scheduler's own condition or nomination) does not retry them (upstream's
    /// `isPodUpdated`), cluster events and back-off do.
    failed: Arc<Mutex<HashMap<String, Arc<Pod>>>>,
    metrics: Metrics,
}

fn nominated_node_name(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// The pod's `spec.schedulerName` (`default-scheduler` when unset).
pub fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or(SCHEDULER_NAME)
}

/// Whether the default profile should place the pod: unbound, ours, not being deleted.
pub fn needs_scheduling(pod: &Pod) -> bool {
    needs_scheduling_by(pod, |name| name == SCHEDULER_NAME)
}

/// Whether a scheduler with the profiles `ours` accepts should place the pod.
pub fn needs_scheduling_by(pod: &Pod, ours: impl Fn(&str) -> bool) -> bool {
    let spec = pod.spec.as_ref();
    let unbound = spec
        .and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty);
    let ours = ours(scheduler_name(pod));
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    unbound
        && ours
        && pod.metadata.deletion_timestamp.is_none()
        && phase != "Succeeded"
        && phase != "Failed"
}

/// Whether a node update can make a pod fit that did not (labels, taints, cordon, allocatable,
/// readiness).
pub fn scheduling_relevant_change(old: &Node, new: &Node) -> bool {
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
    };
    old.metadata.labels != new.metadata.labels
        || old.spec != new.spec
        || old.status.as_ref().and_then(|s| s.allocatable.clone())
            != new.status.as_ref().and_then(|s| s.allocatable.clone())
        || ready(old) != ready(new)
}

impl Scheduler {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        match self.cache.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Starts watching and scheduling with the default profile; returns once the caches are
    /// filled.
    pub async fn start(client: Client) -> Self {
        Self::start_with_profiles(
            client,
            vec![(SCHEDULER_NAME.to_string(), Registry::default())],
        )
        .await
    }

    /// Starts with one registry per scheduler name (from a `KubeSchedulerConfiguration`).
    pub async fn start_with_profiles(client: Client, profiles: Vec<(String, Registry)>) -> Self {
        let pod_writer = Writer::<Pod>::default();
        let pods = pod_writer.as_reader();
        let node_writer = Writer::<Node>::default();
        let nodes = node_writer.as_reader();
        let claim_writer = Writer::<PersistentVolumeClaim>::default();
        let volume_writer = Writer::<PersistentVolume>::default();
        let class_writer = Writer::<StorageClass>::default();
        let volume_stores = (
            claim_writer.as_reader(),
            volume_writer.as_reader(),
            class_writer.as_reader(),
        );
        let scheduler = Scheduler {
            client: client.clone(),
            events: EventRecorder::new(client.clone(), events::COMPONENT),
            cache: Arc::default(),
            queue: SchedulingQueue::default(),
            pods: pods.clone(),
            nodes: nodes.clone(),
            listers: Listers::start(&client),
            volumes: VolumeCache::new(
                volume_stores.0.clone(),
                volume_stores.1.clone(),
                volume_stores.2.clone(),
            ),
            profiles: Arc::new(
                profiles
                    .into_iter()
                    .map(|(name, registry)| (name, Arc::new(registry)))
                    .collect(),
            ),
            nominated: Arc::default(),
            next_start: Arc::default(),
            failed: Arc::default(),
            metrics: Metrics::default(),
        };
        let handler = scheduler.clone();
        component_base::reflect::spawn(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            node_writer,
            move |event| handler.on_node(event),
        );
        // A claim, volume or class appearing or changing may let a parked pod's volumes bind.
        let handler = scheduler.clone();
        component_base::reflect::spawn(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
            claim_writer,
            move |event| handler.on_volume_event(event),
        );
        let handler = scheduler.clone();
        component_base::reflect::spawn(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
            volume_writer,
            move |event| handler.on_volume_event(event),
        );
        let handler = scheduler.clone();
        component_base::reflect::spawn(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
            class_writer,
            move |event| handler.on_volume_event(event),
        );
        let handler = scheduler.clone();
        component_base::reflect::spawn(
            Api::<Pod>::all(client),
            watcher::Config::default(),
            pod_writer,
            move |event| handler.on_pod(event),
        );
        let ready = nodes.wait_until_ready().await.is_ok()
            && pods.wait_until_ready().await.is_ok()
            && volume_stores.0.wait_until_ready().await.is_ok()
            && volume_stores.1.wait_until_ready().await.is_ok()
            && volume_stores.2.wait_until_ready().await.is_ok();
        if !ready {
            tracing::warn!("watch ended before the caches were ready");
        }
        let looper = scheduler.clone();
        tokio::spawn(async move { looper.run_loop().await });
        let flusher = scheduler.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(30));
            loop {
                interval.tick().await;
                flusher.queue.flush_stale();
            }
        });
        let flusher = scheduler.queue.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(BACKOFF_FLUSH_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                flusher.flush_backoff();
            }
        });
        scheduler
    }

    /// This scheduler's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Adds this scheduler's metrics (including its queue sizes) to `registry`.
    pub fn register_metrics(&self, registry: &component_base::metrics::SharedRegistry) {
        self.metrics.register(registry, self.queue.clone());
    }

    fn responsible(&self, pod: &Pod) -> bool {
        needs_scheduling_by(pod, |name| self.profiles.contains_key(name))
    }

    /// Cluster changed: give parked pods another chance (after their back-off, through the
    /// back-off set the flusher drains).
    fn retry_unschedulable(&self) {
        let backing_off = self.queue.move_all_to_active();
        tracing::trace!(backing_off, "moved the parked pods");
    }

    fn on_volume_event<K>(&self, event: &Event<K>) {
        if matches!(event, Event::Apply(_) | Event::Delete(_)) {
            self.retry_unschedulable();
        }
    }

    fn on_node(&self, event: &Event<Node>) {
        match event {
            Event::Apply(node) | Event::InitApply(node) => {
                let changed = {
                    let mut cache = self.cache();
                    let old = cache.node(&node.name_any());
                    cache.set_node(self.shared(&self.nodes, node));
                    old.is_none_or(|old| scheduling_relevant_change(&old, node))
                };
                // Heartbeats change nothing a decision depends on; do not retry for them.
                if changed {
                    self.retry_unschedulable();
                }
            }
            Event::Delete(node) => self.cache().remove_node(&node.name_any()),
            Event::Init | Event::InitDone => {}
        }
    }

    /// The store's copy of an object just applied to it (one copy in memory for the store and
    /// the cache), or a new one if the store has moved on.
    fn shared<K>(&self, store: &Store<K>, object: &K) -> Arc<K>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        store
            .get(&ObjectRef::from_obj(object))
            .filter(|stored| stored.meta().resource_version == object.meta().resource_version)
            .unwrap_or_else(|| Arc::new(object.clone()))
    }

    fn failed(&self) -> MutexGuard<'_, HashMap<String, Arc<Pod>>> {
        match self.failed.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether `pod` is parked and differs from its last failed attempt only in status.
    fn only_status_changed(&self, pod: &Pod) -> bool {
        let key = pod_key(pod);
        let same = self.failed().get(&key).is_some_and(|old| {
            old.metadata.uid == pod.metadata.uid
                && old.metadata.labels == pod.metadata.labels
                && old.metadata.annotations == pod.metadata.annotations
                && old.spec == pod.spec
        });
        same && self.queue.is_parked(&key)
    }

    fn nominated(&self) -> MutexGuard<'_, HashMap<String, (String, PodInfo)>> {
        match self.nominated.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The snapshot for `pod`'s cycle: with the nominated pods of at least its priority (other
    /// than itself) on their nodes, as upstream's `RunFilterPluginsWithNominatedPods` has them,
    /// as an overlay of the touched nodes only ([`Cache::snapshot_with`]).
    fn snapshot_for(&self, pod: &PodInfo) -> Arc<Vec<NodeInfo>> {
        let uid = pod.pod.metadata.uid.as_deref().unwrap_or_default();
        let extra: Vec<(String, PodInfo)> = self
            .nominated()
            .iter()
            .filter(|(other_uid, (_, info))| *other_uid != uid && info.priority >= pod.priority)
            .map(|(_, (node, info))| (node.clone(), info.clone()))
            .collect();
        self.cache().snapshot_with(extra)
    }

    fn on_pod(&self, event: &Event<Pod>) {
        match event {
            Event::Apply(pod) | Event::InitApply(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let bound = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                let nominated_node = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.clone())
                    .filter(|n| !n.is_empty());
                let pending = !bound
                    && pod.metadata.deletion_timestamp.is_none()
                    && !(nominated_node.is_some() && self.cache().contains_pod(&uid));
                let mut nominated = self.nominated();
                match nominated_node {
                    // An assumed pod's nomination is over (upstream drops it on assume).
                    Some(node) if pending => {
                        let info = PodInfo::new(self.shared(&self.pods, pod));
                        nominated.insert(uid.clone(), (node, info));
                    }
                    // A nomination made by this scheduler's preemption and not yet written to
                    // the status stays when an update without it arrives (upstream's nominator
                    // keeps it the same way); one written and then cleared goes.
                    None if pending
                        && nominated
                            .get(&uid)
                            .is_some_and(|(_, info)| nominated_node_name(&info.pod).is_none()) =>
                    {
                        if let Some((_, info)) = nominated.get_mut(&uid) {
                            *info = PodInfo::new(self.shared(&self.pods, pod));
                        }
                    }
                    _ => {
                        nominated.remove(&uid);
                    }
                }
                drop(nominated);
                if bound {
                    self.cache().set_pod(self.shared(&self.pods, pod));
                    self.failed().remove(&pod_key(pod));
                    self.queue.forget(&pod_key(pod));
                    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                    if matches!(phase, Some("Succeeded") | Some("Failed")) {
                        self.retry_unschedulable();
                    }
                } else if self.responsible(pod) && scheduling_gates::gated(pod) {
                    self.queue.gate(pod_key(pod));
                    if scheduling_gates::needs_condition(pod) {
                        let marker = self.clone();
                        let pod = pod.clone();
                        tokio::spawn(async move { marker.mark_gated(&pod).await });
                    }
                } else if self.responsible(pod) {
                    if !self.cache().contains_pod(&uid) && !self.only_status_changed(pod) {
                        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
                        self.queue.add_with_priority(pod_key(pod), priority);
                    }
                } else {
                    self.queue.forget(&pod_key(pod));
                }
            }
            Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                self.nominated().remove(&uid);
                self.cache().remove_pod(&uid);
                self.failed().remove(&pod_key(pod));
                self.queue.forget(&pod_key(pod));
                self.retry_unschedulable();
            }
            Event::Init | Event::InitDone => {}
        }
    }

    async fn run_loop(&self) {
        loop {
            let key = self.queue.pop().await;
            let Some((namespace, name)) = key.split_once('/') else {
                continue;
            };
            let Some(pod) = self.pods.get(&ObjectRef::new(name).within(namespace)) else {
                continue;
            };
            if !self.responsible(&pod) {
                continue;
            }
            if scheduling_gates::gated(&pod) {
                self.queue.gate(key);
                continue;
            }
            let Some(registry) = self.profiles.get(scheduler_name(&pod)).cloned() else {
                continue;
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if self.cache().contains_pod(&uid) {
                continue;
            }
            let mut info = PodInfo::new(pod.clone());
            info.default_selector = self.listers.default_selector(&pod);
            info.cluster = Arc::new(ClusterInfo {
                namespace_labels: self.listers.namespace_labels(),
            });
            if !info.claims.is_empty() {
                info.volumes = Some(Arc::new(self.volumes.pod_volumes(&pod, &info.claims)));
            }
            let nodes = self.snapshot_for(&info);
            let start = self.next_start.load(Ordering::Relaxed);
            let started = tokio::time::Instant::now();
            let decision =
                algorithm::schedule_from(&registry, &info, &nodes, start, &mut rand::rng());
            // A decided pod's attempt is counted when its binding ends (upstream: the attempt
            // latency covers the algorithm and the binding).
            if decision.is_err() {
                self.metrics.observe_attempt(
                    AttemptResult::Unschedulable,
                    scheduler_name(&pod),
                    started.elapsed(),
                );
            }
            match decision {
                Ok((node, processed)) => {
                    self.next_start
                        .store((start + processed) % nodes.len().max(1), Ordering::Relaxed);
                    tracing::debug!(pod = %key, %node, "scheduled");
                    // Reserve: the volumes the pod's unbound claims get on the node.
                    let plan = info
                        .volumes
                        .as_ref()
                        .filter(|_| registry.filters.iter().any(|p| p.name() == "VolumeBinding"))
                        .and_then(|_| nodes.iter().find(|n| n.name() == node))
                        .and_then(|n| volume_binding::plan(&info, n))
                        .map(|plan| self.volumes.assume(&plan, &node));
                    // Released first, so the cache updates its snapshot in place.
                    drop(nodes);
                    self.nominated().remove(&uid);
                    self.failed().remove(&key);
                    self.cache().assume(&pod, &node);
                    let binder = self.clone();
                    let timeout = registry.volume_bind_timeout;
                    tokio::spawn(
                        async move { binder.bind(pod, node, plan, timeout, started).await },
                    );
                }
                Err(mut fit) => {
                    let pdbs = self.listers.pdbs();
                    // Without nodes there is nothing to preempt (upstream stops before PostFilter).
                    let preempted = if nodes.is_empty() {
                        None
                    } else {
                        let offset = rand::rng().random_range(0..nodes.len());
                        match preemption::preempt_from(
                            &registry, &info, &nodes, &fit, &pdbs, offset,
                        ) {
                            Ok(candidate) => {
                                // Nominated now, so the next cycles leave it the room (the
                                // status follows asynchronously).
                                self.nominated()
                                    .insert(uid.clone(), (candidate.node.clone(), info.clone()));
                                Some(candidate)
                            }
                            Err(message) => {
                                fit.post_filter = Some(format!("preemption: {message}"));
                                None
                            }
                        }
                    };
                    let message = fit.to_string();
                    tracing::info!(pod = %key, %message, "unschedulable");
                    self.failed().insert(key.clone(), pod.clone());
                    self.queue.add_unschedulable(key.clone());
                    let reporter = self.clone();
                    tokio::spawn(async move {
                        let nominated = match preempted {
                            Some(candidate) => {
                                let node = candidate.node.clone();
                                reporter.prepare_candidate(&pod, candidate).await;
                                Some(node)
                            }
                            None => None,
                        };
                        reporter
                            .report_unschedulable(&pod, &message, nominated)
                            .await
                    });
                }
            }
        }
    }

    /// Evicts the victims (marked `DisruptionTarget`, deleted gracefully, with a `Preempted`
    /// event) so the preemptor fits on the candidate node.
    async fn prepare_candidate(&self, preemptor: &Pod, candidate: Candidate) {
        // All victims at once (upstream evicts them in parallel too).
        let evictions = candidate
            .victims
            .iter()
            .map(|victim| self.evict(preemptor, victim, &candidate.node));
        futures::future::join_all(evictions).await;
    }

    /// Marks one victim `DisruptionTarget`, deletes it and records `Preempted`.
    async fn evict(&self, preemptor: &Pod, victim: &Pod, node: &str) {
        let namespace = victim.namespace().unwrap_or_default();
        let name = victim.name_any();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let mut conditions: Vec<PodCondition> = victim
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ != preemption::DISRUPTION_TARGET)
            .collect();
        conditions.push(PodCondition {
            type_: preemption::DISRUPTION_TARGET.into(),
            status: "True".into(),
            reason: Some(preemption::PREEMPTION_BY_SCHEDULER.into()),
            message: Some(format!(
                "{SCHEDULER_NAME}: preempting to accommodate a higher priority pod"
            )),
            last_transition_time: Some(Time(jiff::Timestamp::now())),
            ..PodCondition::default()
        });
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        if let Err(error) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(pod = %name, %error, "could not mark the victim");
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(victim = %name, preemptor = %preemptor.name_any(), %node, "preempted");
                events::record(
                    &self.events,
                    victim,
                    false,
                    "Preempted",
                    &format!(
                        "Preempted by pod {} on node {}",
                        preemptor.metadata.uid.clone().unwrap_or_default(),
                        node
                    ),
                )
                .await;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => tracing::warn!(victim = %name, %error, "could not delete the victim"),
        }
    }

    /// PreBind failed: Unreserve (forget the assumed volumes and the pod's place) and retry
    /// the pod later, as upstream's binding-cycle failure handling does.
    async fn pre_bind_failed(
        &self,
        pod: &Pod,
        plan: &volume_binding::Plan,
        message: String,
        started: tokio::time::Instant,
    ) {
        tracing::warn!(pod = %pod.name_any(), %message, "binding volumes failed");
        self.volumes.revert(plan);
        self.metrics
            .observe_attempt(AttemptResult::Error, scheduler_name(pod), started.elapsed());
        self.cache()
            .remove_pod(&pod.metadata.uid.clone().unwrap_or_default());
        events::record(&self.events, pod, true, "FailedScheduling", &message).await;
        self.queue.add_unschedulable(pod_key(pod));
        self.retry_unschedulable();
    }

    async fn bind(
        &self,
        pod: Arc<Pod>,
        node: String,
        plan: Option<volume_binding::Plan>,
        volume_bind_timeout: Duration,
        started: tokio::time::Instant,
    ) {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        if let Some(plan) = &plan {
            let bound = self
                .volumes
                .bind(&self.client, &node, plan, volume_bind_timeout)
                .await;
            if let Err(error) = bound {
                let message = format!("running PreBind plugin \"VolumeBinding\": {error}");
                self.pre_bind_failed(&pod, plan, message, started).await;
                return;
            }
        }
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                uid: pod.metadata.uid.clone(),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.clone()),
                ..ObjectReference::default()
            },
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let result: Result<serde_json::Value, kube::Error> = api
            .create_subresource("binding", &name, &PostParams::default(), &binding)
            .await;
        let outcome = match &result {
            Ok(_) => AttemptResult::Scheduled,
            Err(_) => AttemptResult::Error,
        };
        self.metrics
            .observe_attempt(outcome, scheduler_name(&pod), started.elapsed());
        // The informers hold every volume change by now (bound), or the pod goes back
        // (Unreserve): either way the assumptions are done.
        if let Some(plan) = &plan {
            self.volumes.revert(plan);
        }
        match result {
            Ok(_) => {
                self.queue.forget(&pod_key(&pod));
                events::record(
                    &self.events,
                    &pod,
                    false,
                    "Scheduled",
                    &format!("Successfully assigned {namespace}/{name} to {node}"),
                )
                .await;
            }
            Err(error) => {
                tracing::warn!(pod = %name, %node, %error, "binding failed");
                self.cache()
                    .remove_pod(&pod.metadata.uid.clone().unwrap_or_default());
                let gone_or_bound = matches!(&error, kube::Error::Api(status) if status.code == 404 || status.code == 409);
                if !gone_or_bound {
                    events::record(
                        &self.events,
                        &pod,
                        true,
                        "FailedScheduling",
                        &format!("Binding rejected: {error}"),
                    )
                    .await;
                    self.queue.add_unschedulable(pod_key(&pod));
                    self.retry_unschedulable();
                }
            }
        }
    }

    /// Sets `PodScheduled=False` with reason `SchedulingGated` on a pod with scheduling gates.
    async fn mark_gated(&self, pod: &Pod) {
        let mut conditions: Vec<PodCondition> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ != "PodScheduled")
            .collect();
        conditions.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some(scheduling_gates::REASON.into()),
            message: Some(scheduling_gates::MESSAGE.into()),
            last_transition_time: Some(Time(jiff::Timestamp::now())),
            ..PodCondition::default()
        });
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        if let Err(error) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            tracing::debug!(pod = %pod.name_any(), %error, "could not set the SchedulingGated condition");
        }
    }

    async fn report_unschedulable(&self, pod: &Pod, message: &str, nominated: Option<String>) {
        events::record(&self.events, pod, true, "FailedScheduling", message).await;
        let existing = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let current_nominated = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone());
        if nominated.is_none()
            && existing
                .is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message))
        {
            return;
        }
        let mut conditions: Vec<PodCondition> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ != "PodScheduled")
            .collect();
        conditions.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(jiff::Timestamp::now())),
            last_probe_time: None,
            ..PodCondition::default()
        });
        let mut patch = serde_json::json!({"status": {"conditions": conditions}});
        if nominated.is_some() && nominated != current_nominated {
            patch["status"]["nominatedNodeName"] = serde_json::json!(nominated);
        }
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        if let Err(error) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            tracing::debug!(pod = %pod.name_any(), %error, "could not set PodScheduled condition");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    #[test]
    fn heartbeats_are_not_relevant_but_readiness_and_taints_are() {
        let node = |ready: &str, heartbeat: i64| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n"},
                "status": {"conditions": [{"type": "Ready", "status": ready,
                    "lastHeartbeatTime": jiff::Timestamp::from_second(heartbeat).unwrap_or_default().to_string()}]}
            }))
            .unwrap_or_default()
        };
        assert!(!scheduling_relevant_change(
            &node("True", 1),
            &node("True", 2)
        ));
        assert!(scheduling_relevant_change(
            &node("False", 1),
            &node("True", 2)
        ));
        let mut tainted = node("True", 1);
        tainted.spec = Some(
            serde_json::from_value(
                serde_json::json!({"taints": [{"key": "k", "effect": "NoSchedule"}]}),
            )
            .unwrap_or_default(),
        );
        assert!(scheduling_relevant_change(&node("True", 1), &tainted));
    }

    #[test]
    fn only_unbound_live_pods_for_this_scheduler_are_scheduled() {
        let mut pod = Pod {
            spec: Some(PodSpec::default()),
            ..Pod::default()
        };
        assert!(needs_scheduling(&pod));
        if let Some(spec) = pod.spec.as_mut() {
            spec.scheduler_name = Some("other".into());
        }
        assert!(!needs_scheduling(&pod));
        if let Some(spec) = pod.spec.as_mut() {
            spec.scheduler_name = Some(SCHEDULER_NAME.into());
            spec.node_name = Some("node-0".into());
        }
        assert!(!needs_scheduling(&pod));
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = None;
        }
        pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert!(!needs_scheduling(&pod));
    }
}
