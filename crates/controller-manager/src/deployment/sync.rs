//! One sync of one Deployment: claim its ReplicaSets, find or create the new one, scale
//! (rolling update, recreate or proportional scaling), clean up history, and write the status
//! with the Available and Progressing conditions.

use std::collections::BTreeMap;
use std::time::Duration;

use api_types::selector::Selector;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use super::util::{self, reason};
use super::{rollout, Controller, Error};
use crate::events::EventType;
use crate::key::ObjectKey;
use crate::podutil;

/// One sync of one Deployment.
pub(super) struct Sync<'a> {
    pub(super) controller: &'a Controller,
    pub(super) key: ObjectKey,
    /// The Deployment with defaults applied; its metadata follows our writes.
    pub(super) d: Deployment,
    pub(super) original_status: Option<DeploymentStatus>,
    /// The spec as stored (without our defaults), sent back on writes.
    pub(super) stored_spec: Option<DeploymentSpec>,
    pub(super) now: jiff::Timestamp,
}

impl Sync<'_> {
    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.controller.ctx.client.clone(), &self.key.namespace)
    }

    fn deployment_api(&self) -> Api<Deployment> {
        Api::namespaced(self.controller.ctx.client.clone(), &self.key.namespace)
    }

    pub(super) async fn run(&mut self) -> Result<Option<Duration>, Error> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let selector = match Selector::from_label_selector(&spec.selector) {
            Ok(selector) if !selector.is_empty() => selector,
            _ => {
                self.controller
                    .recorder
                    .record(
                        &self.d,
                        EventType::Warning,
                        "SelectingAll",
                        "This deployment is selecting all pods. A non-empty selector is required.",
                    )
                    .await;
                return Ok(None);
            }
        };
        let mut all = self.claim_replicasets(&selector).await?;
        all.sort_by(rollout::by_creation);
        if self.d.metadata.deletion_timestamp.is_some() {
            let new = self.find_new(&all);
            return self.write_status(&all, new, false).await;
        }
        self.check_paused_condition();
        let paused = spec.paused.unwrap_or(false);
        if paused || rollout::is_scaling_event(&self.d, &all) {
            return self.sync_scale(all, paused).await;
        }
        if util::is_rolling_update(&self.d) {
            self.rollout_rolling(all).await
        } else {
            self.rollout_recreate(all).await
        }
    }

    /// Adopts orphan ReplicaSets that match and releases owned ones that stopped matching.
    async fn claim_replicasets(&self, selector: &Selector) -> Result<Vec<ReplicaSet>, Error> {
        let uid = self.d.metadata.uid.clone();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        for rs in self.controller.replicasets.list_in(&self.key.namespace) {
            let matches = selector.matches(rs.labels());
            match podutil::controller_of(&rs.metadata) {
                Some(reference) if Some(&reference.uid) == uid.as_ref() => {
                    if matches {
                        owned.push((*rs).clone());
                    } else if !deleting {
                        let references: Vec<_> = rs
                            .owner_references()
                            .iter()
                            .filter(|r| Some(&r.uid) != uid.as_ref())
                            .cloned()
                            .collect();
                        self.patch_owners(&rs, references).await?;
                    }
                }
                Some(_) => {}
                None => {
                    if matches && !deleting && rs.metadata.deletion_timestamp.is_none() {
                        let mut references = rs.owner_references().to_vec();
                        references.push(podutil::controller_ref(&self.d));
                        let adopted = self.patch_owners(&rs, references).await?;
                        owned.push(adopted);
                    }
                }
            }
        }
        Ok(owned)
    }

    async fn patch_owners(
        &self,
        rs: &ReplicaSet,
        references: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    ) -> Result<ReplicaSet, Error> {
        let patch = serde_json::json!({
            "metadata": {"ownerReferences": references, "uid": rs.metadata.uid}
        });
        self.rs_api()
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|source| Error::UpdateReplicaSet {
                name: rs.name_any(),
                source,
            })
    }

    fn template(&self) -> k8s_openapi::api::core::v1::PodTemplateSpec {
        self.d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    /// The ReplicaSet whose template equals the Deployment's (oldest if several).
    fn find_new(&self, all: &[ReplicaSet]) -> Option<usize> {
        let template = self.template();
        all.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| util::equal_ignore_hash(t, &template))
        })
    }

    fn status_mut(&mut self) -> &mut DeploymentStatus {
        self.d.status.get_or_insert_with(Default::default)
    }

    fn check_paused_condition(&mut self) {
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let has_deadline = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .is_some();
        if !has_deadline {
            return;
        }
        let now = self.now;
        let current = self
            .d
            .status
            .as_ref()
            .and_then(|s| util::get_condition(s, "Progressing"))
            .and_then(|c| c.reason.clone());
        if paused && current.as_deref() != Some(reason::PAUSED) {
            util::set_condition(
                self.status_mut(),
                util::new_condition(
                    "Progressing",
                    "Unknown",
                    reason::PAUSED,
                    "Deployment is paused",
                    now,
                ),
            );
        } else if !paused && current.as_deref() == Some(reason::PAUSED) {
            util::set_condition(
                self.status_mut(),
                util::new_condition(
                    "Progressing",
                    "Unknown",
                    reason::RESUMED,
                    "Deployment is resumed",
                    now,
                ),
            );
        }
    }

    /// Finds (and annotates) or creates the new ReplicaSet; syncs the revision annotation.
    async fn new_replicaset(
        &mut self,
        all: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<Option<usize>, Error> {
        let new = self.find_new(all);
        let max_old_revision = (0..all.len())
            .filter(|i| Some(*i) != new)
            .map(|i| util::revision(all[i].metadata.annotations.as_ref()))
            .max()
            .unwrap_or(0);
        let new_revision = (max_old_revision + 1).to_string();
        let (surge, desired) = (util::max_surge(&self.d), util::replicas(&self.d));
        if let Some(i) = new {
            let rs = &all[i];
            let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
            let before = annotations.clone();
            annotations.extend(util::copyable_annotations(&self.d));
            util::bump_revision(&mut annotations, max_old_revision + 1);
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if annotations != before || min_ready.unwrap_or(0) != rs_min_ready.unwrap_or(0) {
                let mut updated = rs.clone();
                updated.metadata.annotations = Some(annotations);
                if let Some(spec) = updated.spec.as_mut() {
                    spec.min_ready_seconds = min_ready;
                }
                all[i] = self.replace_rs(&updated).await?;
            }
            let rs_revision = util::revision(all[i].metadata.annotations.as_ref());
            self.set_deployment_revision(rs_revision).await?;
            let now = self.now;
            let name = all[i].name_any();
            let has_progressing = self
                .d
                .status
                .as_ref()
                .and_then(|s| util::get_condition(s, "Progressing"))
                .is_some();
            if !has_progressing {
                util::set_condition(
                    self.status_mut(),
                    util::new_condition(
                        "Progressing",
                        "True",
                        reason::FOUND_NEW_RS,
                        &format!("Found new replica set \"{name}\""),
                        now,
                    ),
                );
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let mut template = self.template();
        let hash = util::compute_hash(&template, collision_count);
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(util::POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector: LabelSelector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(util::POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{}", self.d.name_any(), hash);
        let mut annotations = util::copyable_annotations(&self.d);
        annotations.insert(util::REVISION.into(), new_revision);
        annotations.insert(util::DESIRED_REPLICAS.into(), desired.to_string());
        annotations.insert(util::MAX_REPLICAS.into(), (desired + surge).to_string());
        let replicas = rollout::new_rs_new_replicas(&self.d, all, 0);
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.key.namespace.clone()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: Some(vec![podutil::controller_ref(&self.d)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: self.d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let created = match self.rs_api().create(&PostParams::default(), &rs).await {
            Ok(created) => created,
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // Same name: ours with an equal template means our cache was behind.
                let existing = self.rs_api().get_opt(&name).await.map_err(|source| {
                    Error::CreateReplicaSet {
                        name: name.clone(),
                        source,
                    }
                })?;
                let ours = existing.as_ref().is_some_and(|e| {
                    podutil::controller_of(&e.metadata).map(|r| &r.uid)
                        == self.d.metadata.uid.as_ref()
                        && e.spec
                            .as_ref()
                            .and_then(|s| s.template.as_ref())
                            .is_some_and(|t| util::equal_ignore_hash(t, &self.template()))
                });
                if let (true, Some(existing)) = (ours, existing) {
                    all.push(existing);
                    return Ok(Some(all.len() - 1));
                }
                let status = self.status_mut();
                status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                self.write_status_now().await?;
                return Err(Error::HashCollision(name));
            }
            Err(source) => return Err(Error::CreateReplicaSet { name, source }),
        };
        if replicas > 0 {
            self.controller
                .recorder
                .record(
                    &self.d,
                    EventType::Normal,
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {name} from 0 to {replicas}"),
                )
                .await;
        }
        let rs_revision = util::revision(created.metadata.annotations.as_ref());
        all.push(created);
        self.set_deployment_revision(rs_revision).await?;
        let now = self.now;
        util::set_condition(
            self.status_mut(),
            util::new_condition(
                "Progressing",
                "True",
                reason::NEW_RS_CREATED,
                &format!("Created new replica set \"{name}\""),
                now,
            ),
        );
        Ok(Some(all.len() - 1))
    }

    async fn set_deployment_revision(&mut self, revision: i64) -> Result<(), Error> {
        let current = util::revision(self.d.metadata.annotations.as_ref());
        if current == revision {
            return Ok(());
        }
        let patch = serde_json::json!({
            "metadata": {"annotations": {util::REVISION: revision.to_string()}}
        });
        let updated = self
            .deployment_api()
            .patch(
                &self.key.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|source| Error::UpdateDeployment {
                name: self.key.to_string(),
                source,
            })?;
        self.d.metadata = updated.metadata;
        Ok(())
    }

    async fn replace_rs(&self, rs: &ReplicaSet) -> Result<ReplicaSet, Error> {
        self.rs_api()
            .replace(&rs.name_any(), &PostParams::default(), rs)
            .await
            .map_err(|source| Error::UpdateReplicaSet {
                name: rs.name_any(),
                source,
            })
    }

    /// Sets a ReplicaSet's size and replica annotations (upstream's `scaleReplicaSet`).
    async fn scale(
        &self,
        all: &mut [ReplicaSet],
        index: usize,
        replicas: i32,
    ) -> Result<(), Error> {
        let rs = &all[index];
        let current = util::rs_replicas(rs);
        let desired = util::replicas(&self.d);
        let max = desired + util::max_surge(&self.d);
        let annotations = rs.metadata.annotations.as_ref();
        let annotations_stale = util::int_annotation(annotations, util::DESIRED_REPLICAS)
            != Some(desired)
            || util::int_annotation(annotations, util::MAX_REPLICAS) != Some(max);
        if current == replicas && !annotations_stale {
            return Ok(());
        }
        let mut updated = rs.clone();
        updated.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
        let annotations = updated
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        annotations.insert(util::DESIRED_REPLICAS.into(), desired.to_string());
        annotations.insert(util::MAX_REPLICAS.into(), max.to_string());
        all[index] = self.replace_rs(&updated).await?;
        if current != replicas {
            let direction = if replicas > current { "up" } else { "down" };
            self.controller
                .recorder
                .record(
                    &self.d,
                    EventType::Normal,
                    "ScalingReplicaSet",
                    &format!(
                        "Scaled {direction} replica set {} from {current} to {replicas}",
                        updated.name_any()
                    ),
                )
                .await;
        }
        Ok(())
    }

    async fn apply(&self, all: &mut [ReplicaSet], plan: &[rollout::Scale]) -> Result<bool, Error> {
        let mut changed = false;
        for &(index, replicas) in plan {
            changed |= util::rs_replicas(&all[index]) != replicas;
            self.scale(all, index, replicas).await?;
        }
        Ok(changed)
    }

    async fn rollout_rolling(
        &mut self,
        mut all: Vec<ReplicaSet>,
    ) -> Result<Option<Duration>, Error> {
        let new = self.new_replicaset(&mut all, true).await?;
        if let Some(i) = new {
            let desired = util::replicas(&self.d);
            let current = util::rs_replicas(&all[i]);
            let target = if current > desired {
                desired
            } else {
                rollout::new_rs_new_replicas(&self.d, &all, current)
            };
            if target != current {
                self.scale(&mut all, i, target).await?;
                return self.sync_rollout_status(&all, new).await;
            }
        }
        let plan = rollout::scale_down_old(&self.d, &all, new);
        if self.apply(&mut all, &plan).await? {
            return self.sync_rollout_status(&all, new).await;
        }
        let status = rollout::calculate_status(&self.d, &all, new, self.now);
        if rollout::is_complete(&self.d, &status) {
            self.cleanup(&all, new).await?;
        }
        self.sync_rollout_status(&all, new).await
    }

    fn old_pods_running(&self, all: &[ReplicaSet], new: Option<usize>) -> bool {
        let old_uids: Vec<&str> = rollout::old_indices(all, new)
            .into_iter()
            .filter_map(|i| all[i].metadata.uid.as_deref())
            .collect();
        if rollout::old_indices(all, new)
            .iter()
            .any(|i| util::rs_status_replicas(&all[*i]) > 0)
        {
            return true;
        }
        self.controller
            .pods
            .list_in(&self.key.namespace)
            .iter()
            .any(|pod| {
                let phase = podutil::phase(pod);
                phase != "Succeeded"
                    && phase != "Failed"
                    && podutil::controller_of(&pod.metadata)
                        .is_some_and(|r| old_uids.contains(&r.uid.as_str()))
            })
    }

    async fn rollout_recreate(
        &mut self,
        mut all: Vec<ReplicaSet>,
    ) -> Result<Option<Duration>, Error> {
        let mut new = self.new_replicaset(&mut all, false).await?;
        let plan: Vec<rollout::Scale> = rollout::old_indices(&all, new)
            .into_iter()
            .filter(|i| util::rs_replicas(&all[*i]) > 0)
            .map(|i| (i, 0))
            .collect();
        if self.apply(&mut all, &plan).await? {
            return self.sync_rollout_status(&all, new).await;
        }
        if self.old_pods_running(&all, new) {
            return self.sync_rollout_status(&all, new).await;
        }
        if new.is_none() {
            new = self.new_replicaset(&mut all, true).await?;
        }
        if let Some(i) = new {
            let desired = util::replicas(&self.d);
            if util::rs_replicas(&all[i]) != desired {
                self.scale(&mut all, i, desired).await?;
            }
        }
        let status = rollout::calculate_status(&self.d, &all, new, self.now);
        if rollout::is_complete(&self.d, &status) {
            self.cleanup(&all, new).await?;
        }
        self.sync_rollout_status(&all, new).await
    }

    /// Scaling without rolling out (paused, or replicas changed mid-rollout).
    async fn sync_scale(
        &mut self,
        mut all: Vec<ReplicaSet>,
        paused: bool,
    ) -> Result<Option<Duration>, Error> {
        let new = self.new_replicaset(&mut all, false).await?;
        let plan = rollout::scale_plan(&self.d, &all, new);
        self.apply(&mut all, &plan).await?;
        if paused {
            self.cleanup(&all, new).await?;
        }
        self.write_status(&all, new, false).await
    }

    async fn cleanup(&self, all: &[ReplicaSet], new: Option<usize>) -> Result<(), Error> {
        for i in rollout::cleanup_victims(&self.d, all, new) {
            let name = all[i].name_any();
            tracing::info!(deployment = %self.key, replicaset = %name, "cleaning up old replica set");
            match self.rs_api().delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => return Err(Error::DeleteReplicaSet { name, source }),
            }
        }
        Ok(())
    }

    /// Status plus the Progressing condition (upstream's `syncRolloutStatus`).
    async fn sync_rollout_status(
        &mut self,
        all: &[ReplicaSet],
        new: Option<usize>,
    ) -> Result<Option<Duration>, Error> {
        self.write_status(all, new, true).await
    }

    async fn write_status(
        &mut self,
        all: &[ReplicaSet],
        new: Option<usize>,
        progress: bool,
    ) -> Result<Option<Duration>, Error> {
        let now = self.now;
        let mut status = rollout::calculate_status(&self.d, all, new, now);
        let deadline = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds);
        let mut requeue = None;
        if progress {
            if deadline.is_none() {
                util::remove_condition(&mut status, "Progressing");
            }
            let current = util::get_condition(&status, "Progressing").cloned();
            let desired = util::replicas(&self.d);
            let complete_already = desired == status.updated_replicas.unwrap_or(0)
                && current.as_ref().and_then(|c| c.reason.as_deref())
                    == Some(reason::NEW_RS_AVAILABLE);
            let rs_name = new.map(|i| all[i].name_any());
            if let (Some(deadline), false) = (deadline, complete_already) {
                if rollout::is_complete(&self.d, &status) {
                    let message = match &rs_name {
                        Some(name) => format!("ReplicaSet \"{name}\" has successfully progressed."),
                        None => "Deployment has successfully progressed.".to_string(),
                    };
                    util::set_condition(
                        &mut status,
                        util::new_condition(
                            "Progressing",
                            "True",
                            reason::NEW_RS_AVAILABLE,
                            &message,
                            now,
                        ),
                    );
                } else if rollout::is_progressing(&self.d, &status) {
                    let message = match &rs_name {
                        Some(name) => format!("ReplicaSet \"{name}\" is progressing."),
                        None => "Deployment is progressing.".to_string(),
                    };
                    let mut condition = util::new_condition(
                        "Progressing",
                        "True",
                        reason::RS_UPDATED,
                        &message,
                        now,
                    );
                    if let Some(current) = current.as_ref().filter(|c| c.status == "True") {
                        condition.last_transition_time = current.last_transition_time.clone();
                    }
                    util::remove_condition(&mut status, "Progressing");
                    status
                        .conditions
                        .get_or_insert_with(Vec::new)
                        .push(condition);
                } else if rollout::is_timed_out(&self.d, &status, now) {
                    let message = match &rs_name {
                        Some(name) => format!("ReplicaSet \"{name}\" has timed out progressing."),
                        None => "Deployment has timed out progressing.".to_string(),
                    };
                    util::set_condition(
                        &mut status,
                        util::new_condition(
                            "Progressing",
                            "False",
                            reason::TIMED_OUT,
                            &message,
                            now,
                        ),
                    );
                } else {
                    // Look again when the deadline would pass.
                    let since = current
                        .as_ref()
                        .and_then(|c| c.last_update_time.as_ref())
                        .map(|t| t.0.as_second())
                        .unwrap_or(now.as_second());
                    let remaining = since + i64::from(deadline) - now.as_second();
                    requeue = Some(Duration::from_secs(
                        u64::try_from(remaining.max(1)).unwrap_or(1) + 1,
                    ));
                }
            }
            // Surface a ReplicaSet's ReplicaFailure (the new one first), as upstream does.
            match util::replica_failure(all, new) {
                Some(condition) => util::set_condition(&mut status, condition),
                None => util::remove_condition(&mut status, "ReplicaFailure"),
            }
        }
        self.d.status = Some(status);
        if self.d.status != self.original_status {
            self.write_status_now().await?;
        }
        Ok(requeue)
    }

    async fn write_status_now(&mut self) -> Result<(), Error> {
        let body = Deployment {
            metadata: self.d.metadata.clone(),
            spec: self.stored_spec.clone(),
            status: self.d.status.clone(),
        };
        let updated = self
            .deployment_api()
            .replace_status(&self.key.name, &PostParams::default(), &body)
            .await
            .map_err(|source| Error::UpdateStatus {
                name: self.key.to_string(),
                source,
            })?;
        self.original_status = updated.status.clone();
        self.d.metadata = updated.metadata;
        Ok(())
    }
}
