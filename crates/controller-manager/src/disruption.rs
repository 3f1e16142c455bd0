//! The disruption controller: writes each PodDisruptionBudget's status — `expectedPods`,
//! `currentHealthy`, `desiredHealthy`, `disruptionsAllowed` and the `DisruptionAllowed` condition —
//! from the pods its selector matches and the scale of their controllers, as upstream does.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use api_types::selector::Selector;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::podutil;
use crate::queue::WorkQueue;
use crate::runner;

/// Why a PodDisruptionBudget could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the status failed.
    #[error("updating status of {pdb}: {source}")]
    UpdateStatus {
        /// The budget.
        pdb: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    pdbs: Informer<PodDisruptionBudget>,
    pods: Informer<Pod>,
    replicasets: Informer<ReplicaSet>,
    deployments: Informer<Deployment>,
    statefulsets: Informer<StatefulSet>,
    rcs: Informer<ReplicationController>,
}

/// Starts the disruption controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        pdbs: ctx.informers.get::<PodDisruptionBudget>(),
        pods: ctx.informers.get::<Pod>(),
        replicasets: ctx.informers.get::<ReplicaSet>(),
        deployments: ctx.informers.get::<Deployment>(),
        statefulsets: ctx.informers.get::<StatefulSet>(),
        rcs: ctx.informers.get::<ReplicationController>(),
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.pdbs.ready().await;
        controller.pods.ready().await;
        controller.replicasets.ready().await;
        controller.deployments.ready().await;
        controller.statefulsets.ready().await;
        controller.rcs.ready().await;
        runner::forward(&controller.pdbs, queue.clone(), |change| match change {
            Change::Applied { new, .. } => vec![ObjectKey::of(new.as_ref())],
            _ => Vec::new(),
        });
        let handler = controller.clone();
        runner::forward(
            &controller.pods,
            queue.clone(),
            move |change| match change {
                Change::Applied { new, .. } => handler.budgets_for(new),
                Change::Deleted(old) => handler.budgets_for(old),
                Change::Resynced => Vec::new(),
            },
        );
        // Controller scale changes alter expectedPods: look at every budget of the namespace.
        fn namespace_budgets<K: kube::Resource>(
            pdbs: &Informer<PodDisruptionBudget>,
            change: &Change<K>,
        ) -> Vec<ObjectKey> {
            let namespace = match change {
                Change::Applied { new, .. } => new.meta().namespace.clone(),
                Change::Deleted(old) => old.meta().namespace.clone(),
                Change::Resynced => None,
            };
            namespace
                .map(|ns| {
                    pdbs.list_in(&ns)
                        .iter()
                        .map(|p| ObjectKey::of(p.as_ref()))
                        .collect()
                })
                .unwrap_or_default()
        }
        let pdbs = controller.pdbs.clone();
        runner::forward(&controller.replicasets, queue.clone(), move |c| {
            namespace_budgets(&pdbs, c)
        });
        let pdbs = controller.pdbs.clone();
        runner::forward(&controller.deployments, queue.clone(), move |c| {
            namespace_budgets(&pdbs, c)
        });
        let pdbs = controller.pdbs.clone();
        runner::forward(&controller.statefulsets, queue.clone(), move |c| {
            namespace_budgets(&pdbs, c)
        });
        let pdbs = controller.pdbs.clone();
        runner::forward(&controller.rcs, queue.clone(), move |c| {
            namespace_budgets(&pdbs, c)
        });
        let worker = controller.clone();
        runner::spawn_workers("disruption", queue, 2, move |key| {
            let worker = worker.clone();
            async move { worker.reconcile(key).await }
        });
    });
}

/// The number an IntOrString resolves to against `total` (percentages round up).
pub fn scaled_value(value: &IntOrString, total: i32) -> Option<i32> {
    match value {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.trim().parse().ok()?;
            let scaled = (percent * i64::from(total) + 99) / 100;
            i32::try_from(scaled).ok()
        }
    }
}

/// `(expectedPods, desiredHealthy)` for a budget given the pods it covers and the summed scale
/// of their controllers (`None` when a pod's controller is unknown).
pub fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pod_count: i32,
    controller_scale: Option<i32>,
) -> Option<(i32, i32)> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max_unavailable) = &spec.max_unavailable {
        let expected = controller_scale?;
        let max = scaled_value(max_unavailable, expected)?;
        return Some((expected, (expected - max).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Some((pod_count, *n)),
        Some(percent @ IntOrString::String(_)) => {
            let expected = controller_scale?;
            Some((expected, scaled_value(percent, expected)?))
        }
        None => Some((pod_count, pod_count)),
    }
}

/// A status for a budget with its `DisruptionAllowed` condition.
pub fn build_status(
    pdb: &PodDisruptionBudget,
    expected: i32,
    desired: i32,
    healthy: i32,
    sync_failed: bool,
    now: jiff::Timestamp,
) -> PodDisruptionBudgetStatus {
    let previous = pdb.status.clone().unwrap_or_default();
    let allowed = if sync_failed || expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    };
    let (status, reason) = if sync_failed {
        ("False", "SyncFailed")
    } else if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let previous_condition = previous
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed");
    let transition = match previous_condition {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        disruptions_allowed: allowed,
        expected_pods: expected,
        observed_generation: pdb.metadata.generation,
        disrupted_pods: previous.disrupted_pods,
        conditions: Some(vec![Condition {
            type_: "DisruptionAllowed".into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: pdb.metadata.generation,
            last_transition_time: transition,
        }]),
    }
}

impl Controller {
    fn budgets_for(&self, pod: &Pod) -> Vec<ObjectKey> {
        let namespace = pod.namespace().unwrap_or_default();
        self.pdbs
            .list_in(&namespace)
            .iter()
            .filter(|pdb| {
                pdb.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .and_then(|s| Selector::from_label_selector(s).ok())
                    .is_some_and(|s| !s.is_empty() && s.matches(pod.labels()))
            })
            .map(|pdb| ObjectKey::of(pdb.as_ref()))
            .collect()
    }

    /// The scale of a pod's controller (uid, replicas), following ReplicaSets to Deployments.
    fn controller_scale(&self, pod: &Pod) -> Option<(String, i32)> {
        let reference = podutil::controller_of(&pod.metadata)?;
        let namespace = pod.namespace().unwrap_or_default();
        let ns = Some(namespace.as_str());
        match reference.kind.as_str() {
            "ReplicaSet" => {
                let rs = self.replicasets.get(ns, &reference.name)?;
                if rs.metadata.uid.as_deref() != Some(reference.uid.as_str()) {
                    return None;
                }
                if let Some(owner) =
                    podutil::controller_of(&rs.metadata).filter(|o| o.kind == "Deployment")
                {
                    let d = self.deployments.get(ns, &owner.name)?;
                    return (d.metadata.uid.as_deref() == Some(owner.uid.as_str())).then(|| {
                        (
                            owner.uid.clone(),
                            d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        )
                    });
                }
                Some((
                    reference.uid.clone(),
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ))
            }
            "StatefulSet" => {
                let set = self.statefulsets.get(ns, &reference.name)?;
                (set.metadata.uid.as_deref() == Some(reference.uid.as_str())).then(|| {
                    (
                        reference.uid.clone(),
                        set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )
                })
            }
            "ReplicationController" => {
                let rc = self.rcs.get(ns, &reference.name)?;
                (rc.metadata.uid.as_deref() == Some(reference.uid.as_str())).then(|| {
                    (
                        reference.uid.clone(),
                        rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )
                })
            }
            _ => None,
        }
    }

    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(pdb) = self.pdbs.get(key.namespace(), &key.name) else {
            return Ok(None);
        };
        let selector = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| Selector::from_label_selector(s).ok());
        let pods: Vec<Arc<Pod>> = match &selector {
            Some(selector) if !selector.is_empty() => self
                .pods
                .list_in(&key.namespace)
                .into_iter()
                .filter(|p| selector.matches(p.labels()))
                .collect(),
            _ => Vec::new(),
        };
        // Sum each distinct controller's scale once; any pod without a known controller fails
        // the computation where a scale is needed.
        let mut seen = HashSet::new();
        let mut scale = Some(0i32);
        for pod in &pods {
            match self.controller_scale(pod) {
                Some((uid, replicas)) => {
                    if seen.insert(uid) {
                        scale = scale.map(|s| s.saturating_add(replicas));
                    }
                }
                None => scale = None,
            }
        }
        let disrupted: BTreeMap<String, Time> = pdb
            .status
            .as_ref()
            .and_then(|s| s.disrupted_pods.clone())
            .unwrap_or_default();
        let healthy = pods
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && podutil::is_pod_ready(p)
                    && !disrupted.contains_key(&p.name_any())
            })
            .count();
        let healthy = i32::try_from(healthy).unwrap_or(i32::MAX);
        let pod_count = i32::try_from(pods.len()).unwrap_or(i32::MAX);
        let now = jiff::Timestamp::now();
        let status = match expected_and_desired(&pdb, pod_count, scale) {
            Some((expected, desired)) => build_status(&pdb, expected, desired, healthy, false, now),
            None => build_status(&pdb, 0, 0, healthy, true, now),
        };
        let unchanged = pdb.status.as_ref().is_some_and(|old| {
            let mut old = old.clone();
            let mut new = status.clone();
            for s in [&mut old, &mut new] {
                for c in s.conditions.iter_mut().flatten() {
                    c.last_transition_time = Time(jiff::Timestamp::UNIX_EPOCH);
                }
            }
            old == new
        });
        if !unchanged {
            let mut updated = (*pdb).clone();
            updated.status = Some(status);
            Api::<PodDisruptionBudget>::namespaced(self.ctx.client.clone(), &key.namespace)
                .replace_status(&key.name, &PostParams::default(), &updated)
                .await
                .map_err(|source| Error::UpdateStatus {
                    pdb: key.to_string(),
                    source,
                })?;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;

    fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                ..PodDisruptionBudgetSpec::default()
            }),
            ..PodDisruptionBudget::default()
        }
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled_value(&IntOrString::String("50%".into()), 3), Some(2));
        assert_eq!(scaled_value(&IntOrString::Int(2), 10), Some(2));
        assert_eq!(scaled_value(&IntOrString::String("x".into()), 3), None);
    }

    #[test]
    fn budgets_resolve_like_upstream() {
        let min_int = pdb(Some(IntOrString::Int(2)), None);
        assert_eq!(expected_and_desired(&min_int, 3, None), Some((3, 2)));
        let max_int = pdb(None, Some(IntOrString::Int(1)));
        assert_eq!(expected_and_desired(&max_int, 3, Some(4)), Some((4, 3)));
        assert_eq!(expected_and_desired(&max_int, 3, None), None);
        let min_pct = pdb(Some(IntOrString::String("50%".into())), None);
        assert_eq!(expected_and_desired(&min_pct, 3, Some(3)), Some((3, 2)));
    }

    #[test]
    fn status_allows_disruptions_only_above_the_desired_count() {
        let budget = pdb(Some(IntOrString::Int(2)), None);
        let now = jiff::Timestamp::UNIX_EPOCH;
        let ok = build_status(&budget, 3, 2, 3, false, now);
        assert_eq!(ok.disruptions_allowed, 1);
        let condition = &ok.conditions.unwrap_or_default()[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("True", "SufficientPods")
        );
        let short = build_status(&budget, 3, 2, 2, false, now);
        assert_eq!(short.disruptions_allowed, 0);
        let failed = build_status(&budget, 0, 0, 3, true, now);
        assert_eq!(
            failed.conditions.unwrap_or_default()[0].reason,
            "SyncFailed"
        );
    }
}
