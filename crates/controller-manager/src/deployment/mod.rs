//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets named
//! `<deployment>-<pod-template-hash>`, scales them (RollingUpdate within maxSurge/maxUnavailable,
//! or Recreate), keeps `revisionHistoryLimit` old ones and reports status and conditions as
//! upstream does, so `kubectl rollout status` behaves the same.
//!
//! [`util`] holds defaults, hashing, annotations and conditions; [`rollout`] the arithmetic;
//! this module reads the caches and writes through the API.

pub mod rollout;
mod sync;
pub mod util;

use std::sync::Arc;
use std::time::Duration;

use api_types::selector::Selector;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::context::Context;
use crate::events::Recorder;
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::podutil;
use crate::queue::WorkQueue;
use crate::runner;
use sync::Sync;

/// Why a Deployment could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating the new ReplicaSet failed.
    #[error("creating replica set {name}: {source}")]
    CreateReplicaSet {
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The ReplicaSet name is taken by one with another template; the collision count was raised.
    #[error("hash collision for replica set {0}; retrying with a new collision count")]
    HashCollision(String),
    /// Updating a ReplicaSet failed.
    #[error("updating replica set {name}: {source}")]
    UpdateReplicaSet {
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting an old ReplicaSet failed.
    #[error("deleting replica set {name}: {source}")]
    DeleteReplicaSet {
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Updating the Deployment (annotations) failed.
    #[error("updating deployment {name}: {source}")]
    UpdateDeployment {
        /// Its key.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the Deployment status failed.
    #[error("updating status of deployment {name}: {source}")]
    UpdateStatus {
        /// Its key.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    deployments: Informer<Deployment>,
    replicasets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    recorder: Recorder,
}

/// Starts the Deployment controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        deployments: ctx.informers.get::<Deployment>(),
        replicasets: ctx.informers.get::<ReplicaSet>(),
        pods: ctx.informers.get::<Pod>(),
        recorder: ctx.recorder.for_component("deployment-controller"),
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.deployments.ready().await;
        controller.replicasets.ready().await;
        controller.pods.ready().await;
        runner::forward(
            &controller.deployments,
            queue.clone(),
            |change| match change {
                Change::Applied { new, .. } => vec![ObjectKey::of(new.as_ref())],
                Change::Deleted(old) => vec![ObjectKey::of(old.as_ref())],
                Change::Resynced => Vec::new(),
            },
        );
        let handler = controller.clone();
        runner::forward(
            &controller.replicasets,
            queue.clone(),
            move |change| match change {
                Change::Applied { old, new } => {
                    let mut keys = handler.owners_of_rs(new);
                    if let Some(old) = old {
                        for key in handler.owners_of_rs(old) {
                            if !keys.contains(&key) {
                                keys.push(key);
                            }
                        }
                    }
                    keys
                }
                Change::Deleted(old) => handler.owners_of_rs(old),
                Change::Resynced => Vec::new(),
            },
        );
        let handler = controller.clone();
        runner::forward(
            &controller.pods,
            queue.clone(),
            move |change| match change {
                // Recreate waits for old pods to be gone.
                Change::Deleted(pod) => handler.owner_of_pod(pod).into_iter().collect(),
                _ => Vec::new(),
            },
        );
        let worker = controller.clone();
        runner::spawn_workers(
            "deployment",
            queue.clone(),
            controller.ctx.settings.workers.deployment,
            move |key| {
                let worker = worker.clone();
                async move { worker.reconcile(key).await }
            },
        );
        // Progress deadlines are checked by a periodic resync as well.
        let deployments = controller.deployments.clone();
        runner::resync_every(queue, Duration::from_secs(30), move || {
            deployments
                .list()
                .iter()
                .map(|d| ObjectKey::of(d.as_ref()))
                .collect()
        });
    });
}

impl Controller {
    /// The Deployment controlling a ReplicaSet, or for an orphan every Deployment selecting it.
    fn owners_of_rs(&self, rs: &ReplicaSet) -> Vec<ObjectKey> {
        let namespace = rs.namespace().unwrap_or_default();
        if let Some(reference) = podutil::controller_of(&rs.metadata) {
            if reference.kind == "Deployment" {
                return vec![ObjectKey::new(&namespace, &reference.name)];
            }
            return Vec::new();
        }
        self.deployments
            .list_in(&namespace)
            .iter()
            .filter(|d| {
                d.spec
                    .as_ref()
                    .and_then(|s| Selector::from_label_selector(&s.selector).ok())
                    .is_some_and(|s| !s.is_empty() && s.matches(rs.labels()))
            })
            .map(|d| ObjectKey::of(d.as_ref()))
            .collect()
    }

    fn owner_of_pod(&self, pod: &Pod) -> Option<ObjectKey> {
        let namespace = pod.namespace().unwrap_or_default();
        let reference = podutil::controller_of(&pod.metadata)?;
        if reference.kind != "ReplicaSet" {
            return None;
        }
        let rs = self.replicasets.get(Some(&namespace), &reference.name)?;
        let owner = podutil::controller_of(&rs.metadata)?;
        (owner.kind == "Deployment").then(|| ObjectKey::new(&namespace, &owner.name))
    }

    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(cached) = self.deployments.get(key.namespace(), &key.name) else {
            return Ok(None);
        };
        let mut sync = Sync {
            controller: self,
            original_status: cached.status.clone(),
            stored_spec: cached.spec.clone(),
            d: util::with_defaults((*cached).clone()),
            key,
            now: jiff::Timestamp::now(),
        };
        sync.run().await
    }
}
