//! The pod garbage collector (upstream's PodGC): every check period it
//! - deletes the oldest terminated (Succeeded/Failed) pods beyond `--terminated-pod-gc-threshold`,
//! - marks pods bound to nodes that no longer exist Failed (condition `DisruptionTarget`, reason
//!   `DeletionByPodGC`) and force-deletes them, after checking the node is gone with the API,
//! - force-deletes terminating pods that were never scheduled (no kubelet will finish them),
//! - force-deletes terminating pods on NotReady nodes tainted `node.kubernetes.io/out-of-service`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::informer::Informer;
use crate::podutil;

/// The taint that lets PodGC delete terminating pods of a node that is shut down.
pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// Why PodGC could not clean a pod.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Marking a pod Failed failed.
    #[error("marking pod {pod} failed: {source}")]
    MarkFailed {
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting a pod failed.
    #[error("deleting pod {pod}: {source}")]
    Delete {
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Checking a node with the API failed.
    #[error("getting node {node}: {source}")]
    GetNode {
        /// The node.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Tunables of PodGC.
#[derive(Debug, Clone)]
pub struct PodGcSettings {
    /// How often pods are looked at (upstream: 20s).
    pub period: Duration,
    /// `--terminated-pod-gc-threshold` (0 disables deleting terminated pods).
    pub terminated_threshold: usize,
}

/// Starts PodGC with upstream's period and the command line's threshold.
pub fn start(ctx: Arc<Context>) {
    let settings = PodGcSettings {
        period: Duration::from_secs(20),
        terminated_threshold: ctx.settings.terminated_pod_gc_threshold,
    };
    start_with(ctx, settings);
}

/// Starts PodGC with `settings`.
pub fn start_with(ctx: Arc<Context>, settings: PodGcSettings) {
    let controller = Controller {
        pods: ctx.informers.get::<Pod>(),
        nodes: ctx.informers.get::<Node>(),
        ctx,
        settings,
    };
    tokio::spawn(async move {
        controller.pods.ready().await;
        controller.nodes.ready().await;
        let mut interval = tokio::time::interval(controller.settings.period);
        loop {
            interval.tick().await;
            controller.gc().await;
        }
    });
}

struct Controller {
    ctx: Arc<Context>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    settings: PodGcSettings,
}

/// Whether a pod reached a terminal phase.
pub fn is_terminated(pod: &Pod) -> bool {
    matches!(podutil::phase(pod), "Succeeded" | "Failed")
}

/// The terminated pods to delete: the oldest ones beyond `threshold` (none when 0).
pub fn terminated_to_delete(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut terminated: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| is_terminated(p) && p.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    if terminated.len() <= threshold {
        return Vec::new();
    }
    let excess = terminated.len() - threshold;
    terminated.sort_by(|a, b| {
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    terminated.truncate(excess);
    terminated
}

/// Whether a pod is terminating and was never bound to a node.
pub fn is_unscheduled_terminating(pod: &Pod) -> bool {
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    pod.metadata.deletion_timestamp.is_some() && node.is_none_or(str::is_empty)
}

/// Whether a node is NotReady (or Unknown) and tainted out-of-service with NoExecute.
pub fn is_out_of_service(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| {
            t.iter()
                .any(|t| t.key == OUT_OF_SERVICE && t.effect == "NoExecute")
        });
    !ready && tainted
}

impl Controller {
    async fn gc(&self) {
        let pods = self.pods.list();
        for pod in terminated_to_delete(&pods, self.settings.terminated_threshold) {
            tracing::info!(pod = %pod.name_any(), "PodGC deleting terminated pod");
            self.report(self.force_delete(&pod, None).await);
        }
        let nodes: HashSet<String> = self.nodes.list().iter().map(|n| n.name_any()).collect();
        let mut checked: HashSet<String> = HashSet::new();
        let mut gone: HashSet<String> = HashSet::new();
        for pod in &pods {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            if node.is_empty() || nodes.contains(&node) {
                continue;
            }
            // The cache may lag: confirm with the API before acting (upstream quarantines).
            if checked.insert(node.clone()) {
                match Api::<Node>::all(self.ctx.client.clone())
                    .get_opt(&node)
                    .await
                {
                    Ok(None) => {
                        gone.insert(node.clone());
                    }
                    Ok(Some(_)) => {}
                    Err(source) => self.report(Err(Error::GetNode {
                        node: node.clone(),
                        source,
                    })),
                }
            }
            if gone.contains(&node) {
                tracing::info!(pod = %pod.name_any(), node, "PodGC deleting orphaned pod");
                self.report(
                    self.force_delete(pod, Some("PodGC: node no longer exists"))
                        .await,
                );
            }
        }
        for pod in pods.iter().filter(|p| is_unscheduled_terminating(p)) {
            tracing::info!(pod = %pod.name_any(), "PodGC deleting unscheduled terminating pod");
            self.report(self.force_delete(pod, None).await);
        }
        for pod in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
        {
            let out_of_service = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .and_then(|n| self.nodes.get(None, n))
                .is_some_and(|n| is_out_of_service(&n));
            if out_of_service {
                tracing::info!(pod = %pod.name_any(), "PodGC deleting pod on out-of-service node");
                self.report(
                    self.force_delete(pod, Some("PodGC: node is out of service"))
                        .await,
                );
            }
        }
    }

    fn report(&self, result: Result<(), Error>) {
        if let Err(error) = result {
            tracing::warn!(%error, "PodGC failed");
        }
    }

    /// Marks a non-terminal pod Failed with a DisruptionTarget condition (when `message` is
    /// given) and deletes it with grace period 0.
    async fn force_delete(&self, pod: &Pod, message: Option<&str>) -> Result<(), Error> {
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        if let Some(message) = message.filter(|_| !is_terminated(pod)) {
            let mut conditions = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            conditions.retain(|c| c.type_ != "DisruptionTarget");
            conditions.push(k8s_openapi::api::core::v1::PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("DeletionByPodGC".into()),
                message: Some(message.into()),
                last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::now(),
                )),
                ..Default::default()
            });
            let patch =
                serde_json::json!({"status": {"phase": "Failed", "conditions": conditions}});
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
                Err(source) => return Err(Error::MarkFailed { pod: name, source }),
            }
        }
        match api
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::Delete { pod: name, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, phase: &str, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: jiff::Timestamp::from_second(created).ok().map(Time),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn oldest_terminated_pods_beyond_the_threshold_are_deleted() {
        let pods = vec![
            pod("new-done", "Succeeded", 30),
            pod("running", "Running", 1),
            pod("old-failed", "Failed", 10),
            pod("mid-done", "Succeeded", 20),
        ];
        let names = |v: Vec<Arc<Pod>>| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(
            names(terminated_to_delete(&pods, 1)),
            ["old-failed", "mid-done"]
        );
        assert!(terminated_to_delete(&pods, 3).is_empty());
        assert!(terminated_to_delete(&pods, 0).is_empty());
    }

    #[test]
    fn only_terminating_pods_without_a_node_are_unscheduled_terminating() {
        let mut terminating = (*pod("a", "Pending", 1)).clone();
        terminating.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert!(is_unscheduled_terminating(&terminating));
        terminating.spec = Some(PodSpec {
            node_name: Some("n".into()),
            ..PodSpec::default()
        });
        assert!(!is_unscheduled_terminating(&terminating));
        assert!(!is_unscheduled_terminating(&pod("b", "Pending", 1)));
    }
}
