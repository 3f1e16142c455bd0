//! The StatefulSet controller: pods with stable names `<sts>-<ordinal>`, created in order (each
//! Running and Ready before the next, `OrderedReady`) or all at once (`Parallel`), deleted from
//! the highest ordinal down, with their PersistentVolumeClaims `<claim>-<sts>-<ordinal>` created
//! before the pod and kept afterwards.
//!
//! Templates are versioned as ControllerRevisions ([`crate::history`]); pods carry the revision
//! name in `controller-revision-hash`. `RollingUpdate` replaces pods at or above the partition
//! from the highest ordinal down, one at a time, each Ready before the next; `OnDelete` only
//! recreates pods someone deleted. [`plan`] is the pure decision; `reconcile` applies it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use api_types::selector::Selector;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::events::{EventType, Recorder};
use crate::history::{self, REVISION_LABEL};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::podutil;
use crate::queue::WorkQueue;
use crate::runner;

/// Label with the pod's name (lets a Service select one replica).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Why a StatefulSet could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Syncing the ControllerRevisions failed.
    #[error("syncing revisions of {sts}: {source}")]
    Revisions {
        /// The StatefulSet.
        sts: String,
        /// The cause.
        #[source]
        source: history::Error,
    },
    /// Creating a PersistentVolumeClaim failed.
    #[error("creating claim {claim}: {source}")]
    CreateClaim {
        /// The claim.
        claim: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting a PersistentVolumeClaim (retention policy `Delete`) failed.
    #[error("deleting claim {claim}: {source}")]
    DeleteClaim {
        /// The claim.
        claim: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Creating a pod failed.
    #[error("creating pod {pod}: {source}")]
    CreatePod {
        /// The pod.
        pod: String,
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
    /// Adopting an orphan pod failed.
    #[error("adopting pod {pod}: {source}")]
    AdoptPod {
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error("updating status of {sts}: {source}")]
    UpdateStatus {
        /// The StatefulSet.
        sts: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// What [`plan`] knows about one existing pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// The pod's ordinal.
    pub ordinal: i32,
    /// Its `controller-revision-hash` label.
    pub revision: String,
    /// Running with a true Ready condition.
    pub running_ready: bool,
    /// Being deleted.
    pub terminating: bool,
    /// Phase Failed or Succeeded: to be replaced.
    pub finished: bool,
}

/// The inputs of [`plan`].
#[derive(Debug, Clone)]
pub struct PlanInput {
    /// The first ordinal (`spec.ordinals.start`).
    pub start: i32,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `OrderedReady` (true) or `Parallel`.
    pub ordered: bool,
    /// `RollingUpdate` (true) or `OnDelete`.
    pub rolling: bool,
    /// The rolling update partition (pods below `start + partition` keep the current revision).
    pub partition: i32,
    /// The update revision's name.
    pub update_revision: String,
    /// Existing pods.
    pub pods: Vec<PodView>,
}

/// One step the controller takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create the pod with this ordinal (and its claims).
    Create(i32),
    /// Delete the pod with this ordinal.
    Delete(i32),
}

/// Upstream's sync decision for one pass: which pods to create and delete now.
pub fn plan(input: &PlanInput) -> Vec<Action> {
    let end = input.start + input.replicas.max(0);
    let by_ordinal: BTreeMap<i32, &PodView> = input.pods.iter().map(|p| (p.ordinal, p)).collect();
    let mut actions = Vec::new();
    for ordinal in input.start..end {
        match by_ordinal.get(&ordinal) {
            None => {
                actions.push(Action::Create(ordinal));
                if input.ordered {
                    return actions;
                }
            }
            Some(pod) if pod.terminating || !pod.running_ready => {
                if pod.finished && !pod.terminating {
                    actions.push(Action::Delete(ordinal));
                }
                if input.ordered {
                    return actions;
                }
            }
            Some(_) => {}
        }
    }
    let condemned: Vec<&PodView> = by_ordinal
        .values()
        .rev()
        .filter(|p| p.ordinal < input.start || p.ordinal >= end)
        .copied()
        .collect();
    for pod in condemned {
        if pod.terminating {
            if input.ordered {
                return actions;
            }
            continue;
        }
        actions.push(Action::Delete(pod.ordinal));
        if input.ordered {
            return actions;
        }
    }
    if !input.rolling {
        return actions;
    }
    let update_min = input.start + input.partition.max(0);
    for ordinal in (update_min.max(input.start)..end).rev() {
        let Some(pod) = by_ordinal.get(&ordinal) else {
            return actions;
        };
        if pod.revision != input.update_revision && !pod.terminating {
            if !actions.contains(&Action::Delete(ordinal)) {
                actions.push(Action::Delete(ordinal));
            }
            return actions;
        }
        if pod.terminating || !pod.running_ready {
            return actions;
        }
    }
    actions
}

/// The ordinal in a pod name `<set>-<ordinal>`, if the pod belongs to `set` by name.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// The running controller's state.
#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    sets: Informer<StatefulSet>,
    pods: Informer<Pod>,
    revisions: Informer<ControllerRevision>,
    claims: Informer<PersistentVolumeClaim>,
    recorder: Recorder,
}

/// Starts the StatefulSet controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        sets: ctx.informers.get::<StatefulSet>(),
        pods: ctx.informers.get::<Pod>(),
        revisions: ctx.informers.get::<ControllerRevision>(),
        claims: ctx.informers.get::<PersistentVolumeClaim>(),
        recorder: ctx.recorder.for_component("statefulset-controller"),
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.sets.ready().await;
        controller.pods.ready().await;
        controller.revisions.ready().await;
        controller.claims.ready().await;
        runner::forward(&controller.sets, queue.clone(), |change| match change {
            Change::Applied { new, .. } => vec![ObjectKey::of(new.as_ref())],
            Change::Deleted(old) => vec![ObjectKey::of(old.as_ref())],
            Change::Resynced => Vec::new(),
        });
        let handler = controller.clone();
        runner::forward(&controller.pods, queue.clone(), move |change| {
            handler.pod_changed(change)
        });
        let worker = controller.clone();
        runner::spawn_workers(
            "statefulset",
            queue,
            controller.ctx.settings.workers.statefulset,
            move |key| {
                let worker = worker.clone();
                async move { worker.reconcile(key).await }
            },
        );
    });
}

fn is_set_ref(reference: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> bool {
    reference.kind == "StatefulSet" && reference.api_version.starts_with("apps/")
}

impl Controller {
    fn pod_changed(&self, change: &Change<Pod>) -> Vec<ObjectKey> {
        let owner = |pod: &Pod| -> Vec<ObjectKey> {
            let namespace = pod.namespace().unwrap_or_default();
            match podutil::controller_of(&pod.metadata) {
                Some(reference) if is_set_ref(reference) => {
                    vec![ObjectKey::new(&namespace, &reference.name)]
                }
                Some(_) => Vec::new(),
                // Orphans: every set that may adopt it.
                None => self
                    .sets
                    .list_in(&namespace)
                    .iter()
                    .filter(|s| {
                        s.spec.as_ref().is_some_and(|spec| {
                            api_types::selector::label_selector_matches(
                                Some(&spec.selector),
                                pod.labels(),
                            )
                        })
                    })
                    .map(|s| ObjectKey::of(s.as_ref()))
                    .collect(),
            }
        };
        match change {
            Change::Applied { old, new } => {
                let mut keys = owner(new);
                if let Some(old) = old {
                    for key in owner(old) {
                        if !keys.contains(&key) {
                            keys.push(key);
                        }
                    }
                }
                keys
            }
            Change::Deleted(pod) => owner(pod),
            Change::Resynced => Vec::new(),
        }
    }

    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(set) = self.sets.get(key.namespace(), &key.name) else {
            return Ok(None);
        };
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = set.spec.clone().unwrap_or_default();
        let selector = match Selector::from_label_selector(&spec.selector) {
            Ok(selector) if !selector.is_empty() => selector,
            Ok(_) | Err(_) => {
                tracing::warn!(sts = %key, "invalid or empty selector; not syncing");
                return Ok(None);
            }
        };
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let owned_by_us =
            |meta: &ObjectMeta| podutil::controller_of(meta).is_some_and(|r| r.uid == uid);
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);

        // Claim pods: ours by controller reference; adopt orphans that match and are named ours.
        let mut pods: Vec<Arc<Pod>> = Vec::new();
        for pod in self.pods.list_in(&key.namespace) {
            if ordinal_of(&key.name, &pod.name_any()).is_none() {
                continue;
            }
            if owned_by_us(&pod.metadata) {
                pods.push(pod);
            } else if podutil::controller_of(&pod.metadata).is_none()
                && pod.metadata.deletion_timestamp.is_none()
                && selector.matches(pod.labels())
            {
                let mut references = pod.metadata.owner_references.clone().unwrap_or_default();
                references.push(podutil::controller_ref(set.as_ref()));
                let patch = serde_json::json!({"metadata": {
                    "ownerReferences": references, "uid": pod.metadata.uid }});
                pods_api
                    .patch(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map_err(|source| Error::AdoptPod {
                        pod: pod.name_any(),
                        source,
                    })?;
                pods.push(pod);
            }
        }

        // Revisions.
        let owned_revisions: Vec<Arc<ControllerRevision>> = self
            .revisions
            .list_in(&key.namespace)
            .into_iter()
            .filter(|r| owned_by_us(&r.metadata))
            .collect();
        let status = set.status.clone().unwrap_or_default();
        let owner = history::Owner {
            namespace: &key.namespace,
            name: &key.name,
            reference: podutil::controller_ref(set.as_ref()),
            template: &spec.template,
            collision_count: status.collision_count,
            current_revision: status.current_revision.as_deref(),
        };
        let revisions =
            match history::sync_revisions(&self.ctx.client, &owner, &owned_revisions).await {
                Ok(revisions) => revisions,
                Err(history::Error::Collision { name }) => {
                    tracing::info!(sts = %key, revision = %name, "revision name collision");
                    let mut updated = (*set).clone();
                    let mut status = status.clone();
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    updated.status = Some(status);
                    self.write_status(&key, &updated).await?;
                    return Ok(Some(Duration::from_millis(100)));
                }
                Err(source) => {
                    return Err(Error::Revisions {
                        sts: key.to_string(),
                        source,
                    })
                }
            };
        let update_name = revisions.update.name_any();
        let current_name = revisions.current.name_any();

        // Decide and act.
        let start = spec
            .ordinals
            .as_ref()
            .and_then(|o| o.start)
            .unwrap_or(0)
            .max(0);
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        let rolling = strategy.type_.as_deref() != Some("OnDelete");
        let partition = strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.partition)
            .unwrap_or(0);
        let input = PlanInput {
            start,
            replicas: spec.replicas.unwrap_or(1),
            ordered: spec.pod_management_policy.as_deref() != Some("Parallel"),
            rolling,
            partition,
            update_revision: update_name.clone(),
            pods: pods
                .iter()
                .filter_map(|p| {
                    Some(PodView {
                        ordinal: ordinal_of(&key.name, &p.name_any())?,
                        revision: p.labels().get(REVISION_LABEL).cloned().unwrap_or_default(),
                        running_ready: podutil::phase(p) == "Running" && podutil::is_pod_ready(p),
                        terminating: podutil::is_terminating(p),
                        finished: matches!(podutil::phase(p), "Failed" | "Succeeded"),
                    })
                })
                .collect(),
        };
        let actions = plan(&input);
        let mut result = Ok(());
        for action in actions {
            let step = match action {
                Action::Create(ordinal) => {
                    let use_current = rolling && ordinal < start + partition;
                    let (template, revision) = if use_current {
                        (
                            history::template_of(&revisions.current)
                                .unwrap_or_else(|| spec.template.clone()),
                            current_name.as_str(),
                        )
                    } else {
                        (spec.template.clone(), update_name.as_str())
                    };
                    self.create_pod(&set, ordinal, &template, revision).await
                }
                Action::Delete(ordinal) => {
                    let condemned = ordinal < start || ordinal >= start + input.replicas.max(0);
                    let deleted = self
                        .delete_pod(&set, &pods_api, &format!("{}-{ordinal}", key.name))
                        .await;
                    if deleted.is_ok() && condemned && retention(&set).1 {
                        self.delete_claims(&set, ordinal).await
                    } else {
                        deleted
                    }
                }
            };
            if let Err(error) = step {
                result = Err(error);
                break;
            }
        }

        // Status.
        let now = jiff::Timestamp::now();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let live: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| !podutil::is_terminating(p))
            .collect();
        let count = |f: &dyn Fn(&Pod) -> bool| {
            i32::try_from(live.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
        };
        let mut new_status = StatefulSetStatus {
            observed_generation: set.metadata.generation,
            replicas: count(&|_| true),
            ready_replicas: Some(count(&|p| podutil::is_pod_ready(p))),
            available_replicas: Some(count(&|p| podutil::is_pod_available(p, min_ready, now))),
            current_replicas: Some(count(&|p| {
                p.labels().get(REVISION_LABEL) == Some(&current_name)
            })),
            updated_replicas: Some(count(&|p| {
                p.labels().get(REVISION_LABEL) == Some(&update_name)
            })),
            current_revision: Some(current_name.clone()),
            update_revision: Some(update_name.clone()),
            collision_count: status.collision_count,
            conditions: status.conditions.clone(),
        };
        let desired = spec.replicas.unwrap_or(1);
        if new_status.updated_replicas == Some(desired)
            && new_status.ready_replicas == Some(desired)
            && new_status.replicas == desired
        {
            // The rollout is complete: the update revision becomes current.
            new_status.current_revision = Some(update_name.clone());
            new_status.current_replicas = new_status.updated_replicas;
        }
        if set.status.as_ref() != Some(&new_status) {
            let mut updated = (*set).clone();
            updated.status = Some(new_status.clone());
            self.write_status(&key, &updated).await?;
        }
        result?;

        // Trim history: keep live revisions and `revisionHistoryLimit` others.
        let mut live_revisions: BTreeSet<String> = pods
            .iter()
            .filter_map(|p| p.labels().get(REVISION_LABEL).cloned())
            .collect();
        live_revisions.insert(update_name);
        if let Some(current) = &new_status.current_revision {
            live_revisions.insert(current.clone());
        }
        history::truncate(
            &self.ctx.client,
            &key.namespace,
            &owned_revisions,
            &live_revisions,
            spec.revision_history_limit.unwrap_or(10),
        )
        .await
        .map_err(|source| Error::Revisions {
            sts: key.to_string(),
            source,
        })?;

        if min_ready > 0 && new_status.ready_replicas != new_status.available_replicas {
            return Ok(Some(Duration::from_secs(
                u64::try_from(min_ready).unwrap_or(1),
            )));
        }
        Ok(None)
    }

    /// Deletes the claims of a pod removed by a scale-down (`whenScaled: Delete`).
    async fn delete_claims(&self, set: &StatefulSet, ordinal: i32) -> Result<(), Error> {
        let namespace = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), &namespace);
        for claim in claims_for(set, ordinal) {
            let name = claim.name_any();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(Error::DeleteClaim {
                        claim: name,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    async fn write_status(&self, key: &ObjectKey, set: &StatefulSet) -> Result<(), Error> {
        Api::<StatefulSet>::namespaced(self.ctx.client.clone(), &key.namespace)
            .replace_status(&key.name, &PostParams::default(), set)
            .await
            .map(|_| ())
            .map_err(|source| Error::UpdateStatus {
                sts: key.to_string(),
                source,
            })
    }

    async fn create_pod(
        &self,
        set: &StatefulSet,
        ordinal: i32,
        template: &PodTemplateSpec,
        revision: &str,
    ) -> Result<(), Error> {
        let namespace = set.namespace().unwrap_or_default();
        let spec = set.spec.clone().unwrap_or_default();
        // Claims first.
        let claims_api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.ctx.client.clone(), &namespace);
        for claim in claims_for(set, ordinal) {
            let name = claim.name_any();
            if self.claims.get(Some(&namespace), &name).is_some() {
                continue;
            }
            match claims_api.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    self.recorder
                        .record(
                            set,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!(
                                "create Claim {name} Pod {}-{ordinal} in StatefulSet {} success",
                                set.name_any(),
                                set.name_any()
                            ),
                        )
                        .await;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(source) => {
                    return Err(Error::CreateClaim {
                        claim: name,
                        source,
                    })
                }
            }
        }
        let pod = new_pod(set, &spec, ordinal, template, revision);
        let name = pod.name_any();
        match Api::<Pod>::namespaced(self.ctx.client.clone(), &namespace)
            .create(&PostParams::default(), &pod)
            .await
        {
            Ok(_) => {
                self.recorder
                    .record(
                        set,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!(
                            "create Pod {name} in StatefulSet {} successful",
                            set.name_any()
                        ),
                    )
                    .await;
                Ok(())
            }
            // Our cache is behind: the pod exists already.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(source) => {
                self.recorder
                    .record(
                        set,
                        EventType::Warning,
                        "FailedCreate",
                        &format!(
                            "create Pod {name} in StatefulSet {} failed error: {source}",
                            set.name_any()
                        ),
                    )
                    .await;
                Err(Error::CreatePod { pod: name, source })
            }
        }
    }

    async fn delete_pod(&self, set: &StatefulSet, api: &Api<Pod>, name: &str) -> Result<(), Error> {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                self.recorder
                    .record(
                        set,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!(
                            "delete Pod {name} in StatefulSet {} successful",
                            set.name_any()
                        ),
                    )
                    .await;
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::DeletePod {
                pod: name.to_string(),
                source,
            }),
        }
    }
}

/// The set's persistentVolumeClaimRetentionPolicy as (delete when the set is deleted, delete
/// when scaled down); both default to Retain.
pub fn retention(set: &StatefulSet) -> (bool, bool) {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |value: Option<&String>| value.is_some_and(|v| v == "Delete");
    (
        delete(policy.and_then(|p| p.when_deleted.as_ref())),
        delete(policy.and_then(|p| p.when_scaled.as_ref())),
    )
}

/// The claims a pod of `set` with `ordinal` uses: one per volumeClaimTemplate, named
/// `<claim>-<set>-<ordinal>`, labelled with the set's selector labels.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let namespace = set.namespace();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let mut claim = template.clone();
            let mut labels = claim.metadata.labels.clone().unwrap_or_default();
            labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
            // `whenDeleted: Delete`: the set owns its claims, so deleting it collects them.
            let owner_references = retention(set).0.then(|| {
                let mut reference = podutil::controller_ref(set);
                reference.controller = None;
                vec![reference]
            });
            claim.metadata = ObjectMeta {
                owner_references,
                name: Some(format!(
                    "{}-{}-{ordinal}",
                    template.name_any(),
                    set.name_any()
                )),
                namespace: namespace.clone(),
                labels: Some(labels),
                annotations: template.metadata.annotations.clone(),
                ..ObjectMeta::default()
            };
            claim.status = None;
            claim
        })
        .collect()
}

/// The pod for `ordinal` from `template`: stable name, identity labels, hostname and subdomain,
/// claim volumes, controller reference.
pub fn new_pod(
    set: &StatefulSet,
    spec: &k8s_openapi::api::apps::v1::StatefulSetSpec,
    ordinal: i32,
    template: &PodTemplateSpec,
    revision: &str,
) -> Pod {
    let name = format!("{}-{ordinal}", set.name_any());
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut labels = template_meta.labels.clone().unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.to_string());
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    if let Some(service) = spec.service_name.as_ref().filter(|s| !s.is_empty()) {
        pod_spec.subdomain = Some(service.clone());
    }
    let mut volumes: Vec<Volume> = pod_spec.volumes.take().unwrap_or_default();
    for claim in spec.volume_claim_templates.iter().flatten() {
        let volume_name = claim.name_any();
        volumes.retain(|v| v.name != volume_name);
        volumes.push(Volume {
            name: volume_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: format!("{volume_name}-{name}"),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    if !volumes.is_empty() {
        pod_spec.volumes = Some(volumes);
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            owner_references: Some(vec![podutil::controller_ref(set)]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ordinal: i32, revision: &str, ready: bool) -> PodView {
        PodView {
            ordinal,
            revision: revision.into(),
            running_ready: ready,
            terminating: false,
            finished: false,
        }
    }

    fn input(replicas: i32, pods: Vec<PodView>) -> PlanInput {
        PlanInput {
            start: 0,
            replicas,
            ordered: true,
            rolling: true,
            partition: 0,
            update_revision: "r2".into(),
            pods,
        }
    }

    #[test]
    fn ordered_creation_waits_for_each_pod_to_be_ready() {
        assert_eq!(plan(&input(3, vec![])), [Action::Create(0)]);
        assert_eq!(plan(&input(3, vec![pod(0, "r2", false)])), []);
        assert_eq!(
            plan(&input(3, vec![pod(0, "r2", true)])),
            [Action::Create(1)]
        );
        let mut parallel = input(3, vec![pod(1, "r2", false)]);
        parallel.ordered = false;
        assert_eq!(plan(&parallel), [Action::Create(0), Action::Create(2)]);
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
        let pods = vec![pod(0, "r2", true), pod(1, "r2", true), pod(2, "r2", true)];
        assert_eq!(plan(&input(1, pods.clone())), [Action::Delete(2)]);
        let mut terminating = pods.clone();
        terminating[2].terminating = true;
        assert_eq!(plan(&input(1, terminating.clone())), []);
        let mut parallel = input(1, terminating);
        parallel.ordered = false;
        assert_eq!(plan(&parallel), [Action::Delete(1)]);
    }

    #[test]
    fn rolling_update_goes_from_the_top_down_to_the_partition() {
        let old = vec![pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)];
        assert_eq!(plan(&input(3, old.clone())), [Action::Delete(2)]);
        let mut partitioned = input(
            3,
            vec![pod(0, "r1", true), pod(1, "r1", true), pod(2, "r2", true)],
        );
        partitioned.partition = 2;
        assert_eq!(plan(&partitioned), []);
        partitioned.partition = 1;
        assert_eq!(plan(&partitioned), [Action::Delete(1)]);
        // Waits for the updated pod to be ready before the next.
        let waiting = input(
            3,
            vec![pod(0, "r1", true), pod(1, "r1", true), pod(2, "r2", false)],
        );
        assert_eq!(plan(&waiting), []);
        let mut on_delete = input(3, old);
        on_delete.rolling = false;
        assert_eq!(plan(&on_delete), []);
    }

    #[test]
    fn failed_pods_are_replaced_and_names_parse() {
        let mut failed = pod(0, "r2", false);
        failed.finished = true;
        assert_eq!(plan(&input(1, vec![failed])), [Action::Delete(0)]);
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
    }

    #[test]
    fn pods_get_identity_and_claims() -> Result<(), serde_json::Error> {
        let set: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "default", "uid": "u1"},
            "spec": {
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                             "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        }))?;
        let spec = set.spec.clone().unwrap_or_default();
        let pod = new_pod(&set, &spec, 2, &spec.template, "db-abc");
        assert_eq!(pod.name_any(), "db-2");
        assert_eq!(
            pod.labels().get(POD_NAME_LABEL).map(String::as_str),
            Some("db-2")
        );
        assert_eq!(
            pod.labels().get(POD_INDEX_LABEL).map(String::as_str),
            Some("2")
        );
        assert_eq!(
            pod.labels().get(REVISION_LABEL).map(String::as_str),
            Some("db-abc")
        );
        let pod_spec = pod.spec.unwrap_or_default();
        assert_eq!(pod_spec.hostname.as_deref(), Some("db-2"));
        assert_eq!(pod_spec.subdomain.as_deref(), Some("db"));
        let claim = pod_spec.volumes.unwrap_or_default()[0]
            .persistent_volume_claim
            .clone()
            .map(|c| c.claim_name);
        assert_eq!(claim.as_deref(), Some("data-db-2"));
        let claims = claims_for(&set, 2);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].name_any(), "data-db-2");
        assert_eq!(
            claims[0].labels().get("app").map(String::as_str),
            Some("db")
        );
        assert!(claims[0].metadata.owner_references.is_none());
        assert_eq!(retention(&set), (false, false));
        let mut deleting = set.clone();
        if let Some(spec) = deleting.spec.as_mut() {
            spec.persistent_volume_claim_retention_policy = Some(serde_json::from_value(
                serde_json::json!({"whenDeleted": "Delete", "whenScaled": "Retain"}),
            )?);
        }
        assert_eq!(retention(&deleting), (true, false));
        let owners = claims_for(&deleting, 0)[0]
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].uid, "u1");
        Ok(())
    }
}
