//! The running scheduler: watches pods and nodes into the [`Cache`] and the
//! [`SchedulingQueue`], and a loop that takes one pod at a time, decides with
//! [`algorithm::schedule`], assumes the pod on its node and binds it in the background.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::algorithm;
use crate::cache::Cache;
use crate::events;
use crate::framework::{PodInfo, Registry};
use crate::queue::SchedulingQueue;

/// The scheduler name this scheduler answers to.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// A running scheduler's shared state.
#[derive(Clone)]
pub struct Scheduler {
    client: Client,
    cache: Arc<Mutex<Cache>>,
    queue: SchedulingQueue,
    pods: Store<Pod>,
    registry: Arc<Registry>,
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// Whether this scheduler should place the pod: unbound, ours, not being deleted.
pub fn needs_scheduling(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let unbound = spec
        .and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty);
    let ours = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME);
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

/// Runs a watch into a store, calling `handle` for each event after the store saw it.
fn spawn_watch<K, F>(api: Api<K>, mut writer: Writer<K>, handle: F)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    F: Fn(&Event<K>) + Send + 'static,
{
    tokio::spawn(async move {
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    writer.apply_watcher_event(&event);
                    handle(&event);
                }
                Err(error) => {
                    tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying")
                }
            }
        }
    });
}

impl Scheduler {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        match self.cache.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Starts watching and scheduling; returns once the caches are filled.
    pub async fn start(client: Client) -> Self {
        let pod_writer = Writer::<Pod>::default();
        let pods = pod_writer.as_reader();
        let node_writer = Writer::<Node>::default();
        let nodes = node_writer.as_reader();
        let scheduler = Scheduler {
            client: client.clone(),
            cache: Arc::default(),
            queue: SchedulingQueue::default(),
            pods: pods.clone(),
            registry: Arc::new(Registry::default()),
        };
        let handler = scheduler.clone();
        spawn_watch(
            Api::<Node>::all(client.clone()),
            node_writer,
            move |event| handler.on_node(event),
        );
        let handler = scheduler.clone();
        spawn_watch(Api::<Pod>::all(client), pod_writer, move |event| {
            handler.on_pod(event)
        });
        if nodes.wait_until_ready().await.is_err() || pods.wait_until_ready().await.is_err() {
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
        scheduler
    }

    /// Cluster changed: give parked pods another chance (after their back-off).
    fn retry_unschedulable(&self) {
        for (key, wait) in self.queue.move_all_to_active() {
            let queue = self.queue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                queue.add(key);
            });
        }
    }

    fn on_node(&self, event: &Event<Node>) {
        match event {
            Event::Apply(node) | Event::InitApply(node) => {
                let changed = {
                    let mut cache = self.cache();
                    let old = cache.node(&node.name_any());
                    cache.set_node(Arc::new(node.clone()));
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

    fn on_pod(&self, event: &Event<Pod>) {
        match event {
            Event::Apply(pod) | Event::InitApply(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let bound = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                if bound {
                    self.cache().set_pod(Arc::new(pod.clone()));
                    self.queue.forget(&pod_key(pod));
                    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                    if matches!(phase, Some("Succeeded") | Some("Failed")) {
                        self.retry_unschedulable();
                    }
                } else if needs_scheduling(pod) {
                    if !self.cache().contains_pod(&uid) {
                        self.queue.add(pod_key(pod));
                    }
                } else {
                    self.queue.forget(&pod_key(pod));
                }
            }
            Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                self.cache().remove_pod(&uid);
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
            if !needs_scheduling(&pod) {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if self.cache().contains_pod(&uid) {
                continue;
            }
            let info = PodInfo::new(pod.clone());
            let nodes = self.cache().snapshot();
            let decision = algorithm::schedule(&self.registry, &info, &nodes, &mut rand::rng());
            match decision {
                Ok(node) => {
                    tracing::debug!(pod = %key, %node, "scheduled");
                    self.cache().assume(&pod, &node);
                    let binder = self.clone();
                    tokio::spawn(async move { binder.bind(pod, node).await });
                }
                Err(fit) => {
                    let message = fit.to_string();
                    tracing::info!(pod = %key, %message, "unschedulable");
                    self.queue.add_unschedulable(key.clone());
                    let reporter = self.clone();
                    tokio::spawn(
                        async move { reporter.report_unschedulable(&pod, &message).await },
                    );
                }
            }
        }
    }

    async fn bind(&self, pod: Arc<Pod>, node: String) {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
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
        match result {
            Ok(_) => {
                self.queue.forget(&pod_key(&pod));
                events::record(
                    &self.client,
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
                        &self.client,
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

    async fn report_unschedulable(&self, pod: &Pod, message: &str) {
        events::record(&self.client, pod, true, "FailedScheduling", message).await;
        let existing = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        if existing.is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message)) {
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
