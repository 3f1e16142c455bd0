//! DefaultPreemption (PostFilter): when no node fits, find the node where evicting the fewest,
//! least important pods of strictly lower priority makes the pod fit, as upstream does. Pure:
//! [`preempt`] returns the [`Candidate`] (node and victims) or upstream's message for why
//! preemption cannot help; the scheduler nominates the node and deletes the victims.
//!
//! Per node (upstream `SelectVictimsOnNode`): remove every lower-priority pod; if the pod still
//! does not fit, the node is out. Otherwise add pods back, most important first (those whose
//! eviction would violate a PodDisruptionBudget before the others), keeping each that still lets
//! the pod fit. Among candidates pick the fewest PDB violations, then the lowest highest victim
//! priority, the lowest priority sum, the fewest victims, the latest-started victims.

use std::collections::BTreeMap;
use std::sync::Arc;

use api_types::selector::Selector;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::algorithm::{self, reason_histogram, FitError};
use crate::framework::{CycleState, NodeInfo, PodInfo, Registry};

/// Upstream status for a node without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// Upstream status for a node whose failure eviction cannot fix.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// The condition type set on victims before they are deleted.
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
/// The condition reason set on victims.
pub const PREEMPTION_BY_SCHEDULER: &str = "PreemptionByScheduler";

/// Where to preempt and whom.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node to nominate.
    pub node: String,
    /// The pods to evict, most important first.
    pub victims: Vec<Arc<Pod>>,
    /// How many victims' eviction violates a PodDisruptionBudget.
    pub pdb_violations: usize,
}

fn start_time(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(pod.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

/// Upstream `MoreImportantPod`: higher priority, then the one that started earlier.
fn more_important_first(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    b.priority.cmp(&a.priority).then_with(|| {
        let (ta, tb) = (start_time(&a.pod), start_time(&b.pod));
        match (ta, tb) {
            (Some(ta), Some(tb)) => ta.cmp(&tb),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    })
}

/// Whether the pod is being deleted because the scheduler preempted it.
pub fn terminating_by_preemption(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == DISRUPTION_TARGET
                        && c.reason.as_deref() == Some(PREEMPTION_BY_SCHEDULER)
                })
            })
}

/// Upstream `PodEligibleToPreemptOthers`: `Err(message)` when the pod may not preempt.
pub fn eligible(pod: &PodInfo, nodes: &[NodeInfo], fit: &FitError) -> Result<(), String> {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never.".into());
    }
    let nominated = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty());
    if let Some(nominated) = nominated {
        if fit.unresolvable.contains(nominated) {
            return Ok(());
        }
        let terminating = nodes
            .iter()
            .filter(|n| n.name() == nominated)
            .flat_map(|n| n.pods.values())
            .any(|p| p.priority < pod.priority && terminating_by_preemption(&p.pod));
        if terminating {
            return Err("not eligible due to a terminating pod on the nominated node.".into());
        }
    }
    Ok(())
}

/// Splits pods into those whose eviction would violate a PDB and the others (upstream
/// `filterPodsWithPDBViolation`), keeping the order.
pub fn split_by_pdb_violation(
    pods: Vec<PodInfo>,
    pdbs: &[PodDisruptionBudget],
) -> (Vec<PodInfo>, Vec<PodInfo>) {
    if pdbs.is_empty() {
        return (Vec::new(), pods);
    }
    let mut allowed: Vec<i32> = pdbs
        .iter()
        .map(|p| {
            p.status
                .as_ref()
                .map(|s| s.disruptions_allowed)
                .unwrap_or(0)
        })
        .collect();
    let selectors: Vec<Option<Selector>> = pdbs
        .iter()
        .map(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| Selector::from_label_selector(s).ok())
                .filter(|s| !s.is_empty())
        })
        .collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for pod in pods {
        let no_labels = BTreeMap::new();
        let labels = pod.pod.metadata.labels.as_ref().unwrap_or(&no_labels);
        let mut violated = false;
        if !labels.is_empty() {
            for (i, pdb) in pdbs.iter().enumerate() {
                if pdb.metadata.namespace != pod.pod.metadata.namespace {
                    continue;
                }
                let Some(selector) = &selectors[i] else {
                    continue;
                };
                if !selector.matches(labels) {
                    continue;
                }
                let name = pod.pod.metadata.name.clone().unwrap_or_default();
                let disrupted = pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .is_some_and(|d| d.contains_key(&name));
                if disrupted {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated {
            violating.push(pod);
        } else {
            fine.push(pod);
        }
    }
    (violating, fine)
}

/// Upstream `SelectVictimsOnNode`: the victims and PDB violations, or why the node cannot help.
pub fn select_victims(
    registry: &Registry,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    pdbs: &[PodDisruptionBudget],
) -> Result<(Vec<Arc<Pod>>, usize), Vec<String>> {
    let mut state = state.clone();
    let mut node = node.clone();
    let mut potential: Vec<PodInfo> = node
        .pods
        .values()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(vec![NO_VICTIMS.into()]);
    }
    for victim in &potential {
        node.remove_pod(victim.pod.metadata.uid.as_deref().unwrap_or_default());
        for plugin in &registry.filters {
            plugin.remove_pod(&mut state, pod, victim, &node);
        }
    }
    if let Err((reasons, _)) = algorithm::filter_node(registry, &state, pod, &node) {
        return Err(reasons);
    }
    potential.sort_by(more_important_first);
    let (violating, fine) = split_by_pdb_violation(potential, pdbs);
    let mut victims = Vec::new();
    let mut violations = 0;
    for (is_violating, candidate) in violating
        .into_iter()
        .map(|p| (true, p))
        .chain(fine.into_iter().map(|p| (false, p)))
    {
        node.add_pod(candidate.clone());
        for plugin in &registry.filters {
            plugin.add_pod(&mut state, pod, &candidate, &node);
        }
        if algorithm::filter_node(registry, &state, pod, &node).is_err() {
            node.remove_pod(candidate.pod.metadata.uid.as_deref().unwrap_or_default());
            for plugin in &registry.filters {
                plugin.remove_pod(&mut state, pod, &candidate, &node);
            }
            if is_violating {
                violations += 1;
            }
            victims.push(candidate.pod.clone());
        }
    }
    Ok((victims, violations))
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Upstream `pickOneNodeForPreemption`.
fn pick(candidates: Vec<Candidate>) -> Option<Candidate> {
    let key = |c: &Candidate| {
        let highest = c.victims.first().map(|v| priority(v)).unwrap_or(i32::MIN);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| i64::from(priority(v)) + i64::from(i32::MAX) + 1)
            .sum();
        let earliest_of_highest = c
            .victims
            .iter()
            .filter(|v| priority(v) == highest)
            .filter_map(|v| start_time(v))
            .min();
        (
            c.pdb_violations,
            highest,
            sum,
            c.victims.len(),
            // Later start wins: order descending.
            std::cmp::Reverse(earliest_of_highest),
        )
    };
    candidates.into_iter().min_by_key(key)
}

/// At least this share of nodes is dry-run (upstream `minCandidateNodesPercentage`).
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// At least this many nodes are dry-run (upstream `minCandidateNodesAbsolute`).
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// How many candidates to collect before choosing (upstream `calculateNumCandidates`).
pub fn candidates_to_find(nodes: usize) -> usize {
    (nodes * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(nodes)
}

/// Runs preemption for a pod no node fits: the chosen candidate, or upstream's message (without
/// the `preemption: ` prefix, with its final period) for why none exists. The dry run starts at
/// the first node; see [`preempt_from`].
pub fn preempt(
    registry: &Registry,
    pod: &PodInfo,
    nodes: &[NodeInfo],
    fit: &FitError,
    pdbs: &[PodDisruptionBudget],
) -> Result<Candidate, String> {
    preempt_from(registry, pod, nodes, fit, pdbs, 0)
}

/// [`preempt`] with the dry run starting at node `start` and wrapping around (upstream starts
/// at a random offset, so concurrent preemptors spread over the cluster), stopping once
/// [`candidates_to_find`] candidates are found.
pub fn preempt_from(
    registry: &Registry,
    pod: &PodInfo,
    nodes: &[NodeInfo],
    fit: &FitError,
    pdbs: &[PodDisruptionBudget],
    start: usize,
) -> Result<Candidate, String> {
    eligible(pod, nodes, fit)?;
    let Ok(state) = algorithm::pre_filter(registry, pod, nodes) else {
        // A PreFilter rejects the pod whatever runs where: no node can help.
        return Err(reason_histogram(
            nodes.len(),
            &[(NOT_HELPFUL.to_string(), nodes.len())].into(),
        ));
    };
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    let wanted = candidates_to_find(nodes.len());
    let start = start.checked_rem(nodes.len()).unwrap_or(0);
    for node in nodes[start..].iter().chain(&nodes[..start]) {
        // Enough candidates, one of them violating no PDB: stop the dry run (as upstream).
        if candidates.len() >= wanted && candidates.iter().any(|c| c.pdb_violations == 0) {
            break;
        }
        if fit.unresolvable.contains(node.name()) || node.node.is_none() {
            *statuses.entry(NOT_HELPFUL.into()).or_default() += 1;
            continue;
        }
        match select_victims(registry, &state, pod, node, pdbs) {
            Ok((victims, pdb_violations)) => candidates.push(Candidate {
                node: node.name().to_string(),
                victims,
                pdb_violations,
            }),
            Err(reasons) => {
                for reason in reasons {
                    *statuses.entry(reason).or_default() += 1;
                }
            }
        }
    }
    pick(candidates).ok_or_else(|| reason_histogram(nodes.len(), &statuses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::test_util::*;

    fn prioritized(name: &str, cpu: &str, priority: i32, labels: &[(&str, &str)]) -> PodInfo {
        let mut p = (*pod(name, Some(cpu), None).pod).clone();
        p.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        if let Some(spec) = p.spec.as_mut() {
            spec.priority = Some(priority);
        }
        PodInfo::new(Arc::new(p))
    }

    fn run(
        pod: &PodInfo,
        nodes: &[NodeInfo],
        pdbs: &[PodDisruptionBudget],
    ) -> Result<Candidate, String> {
        let registry = Registry::default();
        let fit = algorithm::schedule(&registry, pod, nodes, &mut rand::rng())
            .err()
            .unwrap_or_default();
        preempt(&registry, pod, nodes, &fit, pdbs)
    }

    fn names(c: &Candidate) -> Vec<String> {
        c.victims
            .iter()
            .filter_map(|v| v.metadata.name.clone())
            .collect()
    }

    #[test]
    fn the_node_needing_the_fewest_lowest_priority_victims_is_chosen() {
        let mut a = ready(node("a", "2", "4Gi", "110"));
        a.add_pod(prioritized("a-low-1", "1", 1, &[]));
        a.add_pod(prioritized("a-low-2", "1", 1, &[]));
        let mut b = ready(node("b", "2", "4Gi", "110"));
        b.add_pod(prioritized("b-mid", "1", 50, &[]));
        b.add_pod(prioritized("b-high", "1", 200, &[]));
        let incoming = prioritized("p", "1", 100, &[]);
        let chosen = run(&incoming, &[a, b], &[]);
        let chosen = chosen.unwrap_or_else(|m| panic!("{m}"));
        // a needs one victim of priority 1; b one of priority 50: lower highest priority wins.
        assert_eq!(chosen.node, "a");
        assert_eq!(names(&chosen).len(), 1);
    }

    #[test]
    fn pods_of_equal_or_higher_priority_are_never_victims() {
        let mut a = ready(node("a", "1", "4Gi", "110"));
        a.add_pod(prioritized("same", "1", 100, &[]));
        let mut b = ready(node("b", "1", "4Gi", "110"));
        b.add_pod(prioritized("tainted-low", "1", 0, &[]));
        let b = with_node(b, |n| {
            n.spec.get_or_insert_with(Default::default).taints =
                Some(vec![k8s_openapi::api::core::v1::Taint {
                    key: "k".into(),
                    effect: "NoSchedule".into(),
                    ..Default::default()
                }]);
        });
        let incoming = prioritized("p", "1", 100, &[]);
        let error = run(&incoming, &[a, b], &[]).err();
        assert_eq!(
            error.as_deref(),
            Some("0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.")
        );
        let never = with_spec(incoming, |s| s.preemption_policy = Some("Never".into()));
        let error = run(&never, &[ready(node("c", "0", "0", "110"))], &[]).err();
        assert_eq!(
            error.as_deref(),
            Some("not eligible due to preemptionPolicy=Never.")
        );
    }

    #[test]
    fn a_victim_protected_by_a_pdb_is_spared_when_another_node_will_do() {
        let mut a = ready(node("a", "1", "4Gi", "110"));
        a.add_pod(prioritized("guarded", "1", 0, &[("app", "db")]));
        let mut b = ready(node("b", "1", "4Gi", "110"));
        b.add_pod(prioritized("free", "1", 0, &[("app", "web")]));
        let pdb: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "db"}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
        }))
        .unwrap_or_default();
        let incoming = prioritized("p", "1", 100, &[]);
        let chosen = run(&incoming, &[a, b], &[pdb]).unwrap_or_else(|m| panic!("{m}"));
        assert_eq!((chosen.node.as_str(), chosen.pdb_violations), ("b", 0));
        assert_eq!(names(&chosen), vec!["free".to_string()]);
    }

    #[test]
    fn lower_priority_pods_that_can_stay_are_reprieved() {
        let mut a = ready(node("a", "3", "4Gi", "110"));
        a.add_pod(prioritized("keep", "1", 10, &[]));
        a.add_pod(prioritized("evict", "2", 5, &[]));
        let incoming = prioritized("p", "2", 100, &[]);
        let chosen = run(&incoming, &[a], &[]).unwrap_or_else(|m| panic!("{m}"));
        assert_eq!(names(&chosen), vec!["evict".to_string()]);
    }
}
