//! The taint eviction controller (upstream's NoExecute taint manager): a pod bound to a node with
//! a `NoExecute` taint it does not tolerate is deleted at once; one that tolerates every such
//! taint is deleted after the smallest `tolerationSeconds` of the tolerations it uses, counted from
//! when this controller first saw it tainted (tolerations without `tolerationSeconds` tolerate
//! forever). Before deleting, the pod gets the `DisruptionTarget` condition (reason
//! `DeletionByTaintManager`) and a `TaintManagerEviction` event is recorded.
//!
//! Upstream's apiserver admission plugin DefaultTolerationSeconds gives every pod without its own
//! toleration for `node.kubernetes.io/not-ready` / `unreachable` (NoExecute) one for 300 seconds.
//! Our apiserver has no such plugin yet, so [`with_default_tolerations`] adds the same tolerations
//! here, keeping a brief NotReady blip from evicting every pod at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::daemonset::tolerates;
use crate::events::{EventType, Recorder};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::queue::WorkQueue;
use crate::runner;

/// Why a pod could not be evicted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Adding the DisruptionTarget condition failed.
    #[error("marking pod {pod} for eviction: {source}")]
    Mark {
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting the pod failed.
    #[error("deleting pod {pod}: {source}")]
    Delete {
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// When a pod on a node with `taints` must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No NoExecute taint: the pod stays.
    Stay,
    /// Some NoExecute taint is not tolerated: evict now.
    EvictNow,
    /// Every taint is tolerated for at least this many seconds.
    EvictAfter(i64),
    /// Every taint is tolerated forever.
    Tolerated,
}

/// Upstream's eviction decision for a pod's tolerations against a node's taints.
pub fn verdict(taints: &[Taint], tolerations: &[Toleration]) -> Verdict {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return Verdict::Stay;
    }
    let mut min: Option<i64> = None;
    for taint in no_execute {
        let used: Vec<&Toleration> = tolerations
            .iter()
            .filter(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "NoExecute")
                    && tolerates(t, taint)
            })
            .collect();
        if used.is_empty() {
            return Verdict::EvictNow;
        }
        for toleration in used {
            if let Some(seconds) = toleration.toleration_seconds {
                let seconds = seconds.max(0);
                min = Some(min.map_or(seconds, |m| m.min(seconds)));
            }
        }
    }
    match min {
        Some(seconds) => Verdict::EvictAfter(seconds),
        None => Verdict::Tolerated,
    }
}

/// Upstream's `--default-not-ready-toleration-seconds` / `--default-unreachable-toleration-seconds`.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The pod's tolerations plus the DefaultTolerationSeconds ones it lacks.
pub fn with_default_tolerations(tolerations: &[Toleration]) -> Vec<Toleration> {
    let mut all = tolerations.to_vec();
    for key in [
        crate::nodelifecycle::NOT_READY,
        crate::nodelifecycle::UNREACHABLE,
    ] {
        let probe = Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            ..Taint::default()
        };
        if !tolerations.iter().any(|t| tolerates(t, &probe)) {
            all.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
    all
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    nodes: Informer<Node>,
    pods: Informer<Pod>,
    recorder: Recorder,
    /// When each pod was first seen on a tainted node it tolerates for a while.
    first_seen: Arc<Mutex<HashMap<ObjectKey, jiff::Timestamp>>>,
}

/// Starts the taint eviction controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        nodes: ctx.informers.get::<Node>(),
        pods: ctx.informers.get::<Pod>(),
        recorder: ctx.recorder.for_component("taint-eviction-controller"),
        first_seen: Arc::default(),
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.nodes.ready().await;
        controller.pods.ready().await;
        runner::forward(&controller.pods, queue.clone(), |change| match change {
            Change::Applied { new, .. } => {
                let bound = new
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                if bound {
                    vec![ObjectKey::of(new.as_ref())]
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        });
        let pods = controller.pods.clone();
        runner::forward(&controller.nodes, queue.clone(), move |change| {
            let Change::Applied { old, new } = change else {
                return Vec::new();
            };
            let taints = |n: &Node| n.spec.as_ref().and_then(|s| s.taints.clone());
            if old.as_ref().is_some_and(|o| taints(o) == taints(new)) && old.as_ref() != Some(new) {
                return Vec::new();
            }
            let name = new.name_any();
            pods.list()
                .iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&name))
                .map(|p| ObjectKey::of(p.as_ref()))
                .collect()
        });
        let worker = controller.clone();
        runner::spawn_workers("taint-eviction-controller", queue, 2, move |key| {
            let worker = worker.clone();
            async move { worker.reconcile(key).await }
        });
    });
}

impl Controller {
    fn forget(&self, key: &ObjectKey) {
        let mut seen = match self.first_seen.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        seen.remove(key);
    }

    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(pod) = self.pods.get(key.namespace(), &key.name) else {
            self.forget(&key);
            return Ok(None);
        };
        if pod.metadata.deletion_timestamp.is_some() {
            self.forget(&key);
            return Ok(None);
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(|n| self.nodes.get(None, n));
        let Some(node) = node else {
            self.forget(&key);
            return Ok(None);
        };
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        match verdict(&taints, &with_default_tolerations(&tolerations)) {
            Verdict::Stay | Verdict::Tolerated => {
                self.forget(&key);
                Ok(None)
            }
            Verdict::EvictNow => self.evict(&pod, &key).await.map(|()| None),
            Verdict::EvictAfter(seconds) => {
                let now = jiff::Timestamp::now();
                let since = {
                    let mut seen = match self.first_seen.lock() {
                        Ok(guard) => guard,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    *seen.entry(key.clone()).or_insert(now)
                };
                let deadline = since + jiff::SignedDuration::from_secs(seconds);
                if deadline <= now {
                    self.evict(&pod, &key).await.map(|()| None)
                } else {
                    let wait = Duration::try_from(deadline.duration_since(now))
                        .unwrap_or(Duration::from_secs(1));
                    Ok(Some(wait))
                }
            }
        }
    }

    async fn evict(&self, pod: &Pod, key: &ObjectKey) -> Result<(), Error> {
        let name = pod.name_any();
        self.forget(key);
        self.recorder
            .record(
                pod,
                EventType::Normal,
                "TaintManagerEviction",
                &format!("Marking for deletion Pod {key}"),
            )
            .await;
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(Time(jiff::Timestamp::now())),
            ..PodCondition::default()
        });
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(source) => return Err(Error::Mark { pod: name, source }),
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::Delete { pod: name, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn untolerated_no_execute_taints_evict_at_once() {
        let taints = [taint("node.kubernetes.io/not-ready", "NoExecute")];
        assert_eq!(verdict(&taints, &[]), Verdict::EvictNow);
        assert_eq!(verdict(&[taint("x", "NoSchedule")], &[]), Verdict::Stay);
    }

    #[test]
    fn the_smallest_toleration_seconds_wins_and_none_means_forever() {
        let taints = [
            taint("node.kubernetes.io/not-ready", "NoExecute"),
            taint("node.kubernetes.io/unreachable", "NoExecute"),
        ];
        let tolerations = [
            toleration("node.kubernetes.io/not-ready", Some(300)),
            toleration("node.kubernetes.io/unreachable", Some(30)),
        ];
        assert_eq!(verdict(&taints, &tolerations), Verdict::EvictAfter(30));
        let forever = [
            toleration("node.kubernetes.io/not-ready", None),
            toleration("node.kubernetes.io/unreachable", None),
        ];
        assert_eq!(verdict(&taints, &forever), Verdict::Tolerated);
        assert_eq!(verdict(&taints, &forever[..1]), Verdict::EvictNow);
    }

    #[test]
    fn pods_without_lifecycle_tolerations_get_the_default_300_seconds() {
        let taints = [taint("node.kubernetes.io/unreachable", "NoExecute")];
        assert_eq!(
            verdict(&taints, &with_default_tolerations(&[])),
            Verdict::EvictAfter(300)
        );
        let own = [toleration("node.kubernetes.io/unreachable", Some(5))];
        assert_eq!(
            verdict(&taints, &with_default_tolerations(&own)),
            Verdict::EvictAfter(5)
        );
        let custom = [taint("example.com/maintenance", "NoExecute")];
        assert_eq!(
            verdict(&custom, &with_default_tolerations(&[])),
            Verdict::EvictNow
        );
    }
}
