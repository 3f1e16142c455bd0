//! One scheduling decision as a pure function: run PreFilter over the snapshot, filter nodes
//! (stopping once `percentageOfNodesToScore` feasible nodes are found, starting where the last
//! cycle stopped), score the feasible ones with the weighted score plugins, pick the highest
//! (ties broken at random).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rand::Rng;

use crate::framework::{CycleState, NodeInfo, PodInfo, Registry};

/// Upstream's whole message when the cluster has no node at all (`ErrNoNodesAvailable`).
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

/// Below this many nodes every node is scored (upstream `minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this (upstream `minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// No node fits: how many nodes there were and why each failed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FitError {
    /// Nodes considered.
    pub nodes: usize,
    /// Reason -> number of nodes that failed for it.
    pub reasons: BTreeMap<String, usize>,
    /// Nodes that failed for a reason evicting pods cannot fix.
    pub unresolvable: BTreeSet<String>,
    /// What PostFilter (preemption) said, e.g. `preemption: 0/3 nodes are available: ...`.
    pub post_filter: Option<String>,
    /// Why a PreFilter plugin rejected the pod on every node (upstream's `PreFilterMsg`), in
    /// place of the per-node histogram.
    pub pre_filter: Option<Box<str>>,
}

fn histogram(nodes: usize, reasons: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    parts.sort();
    if parts.is_empty() {
        format!("0/{nodes} nodes are available.")
    } else {
        format!("0/{nodes} nodes are available: {}.", parts.join(", "))
    }
}

impl FitError {
    /// The message without the PostFilter part (upstream's `ErrNoNodesAvailable` text when the
    /// cluster has no node).
    pub fn filter_message(&self) -> String {
        if self.nodes == 0 {
            return NO_NODES_AVAILABLE.to_string();
        }
        if let Some(message) = &self.pre_filter {
            return format!("0/{} nodes are available: {message}.", self.nodes);
        }
        histogram(self.nodes, &self.reasons)
    }
}

/// Upstream's reason histogram, e.g. `0/3 nodes are available: 1 No preemption victims found for
/// incoming pod, 2 Preemption is not helpful for scheduling.`
pub fn reason_histogram(nodes: usize, reasons: &BTreeMap<String, usize>) -> String {
    histogram(nodes, reasons)
}

impl fmt::Display for FitError {
    /// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector.`
    /// followed by ` <post filter message>` when preemption ran and failed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.filter_message())?;
        if let Some(post) = &self.post_filter {
            write!(f, " {post}")?;
        }
        Ok(())
    }
}

/// How many feasible nodes to look for among `all` (upstream `numFeasibleNodesToFind`).
pub fn feasible_nodes_to_find(percentage: Option<u32>, all: usize) -> usize {
    let percentage = percentage.map(|p| p as usize).filter(|p| *p > 0);
    if all < MIN_FEASIBLE_NODES_TO_FIND || percentage.is_some_and(|p| p >= 100) {
        return all;
    }
    let percentage = percentage
        .unwrap_or_else(|| (50usize.saturating_sub(all / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE));
    (all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Runs every PreFilter over the snapshot; `Err` with the reasons of the first that rejects
/// the pod.
pub fn pre_filter(
    registry: &Registry,
    pod: &PodInfo,
    nodes: &[NodeInfo],
) -> Result<CycleState, Vec<String>> {
    let mut state = CycleState::default();
    for plugin in &registry.filters {
        plugin.pre_filter(&mut state, pod, nodes)?;
    }
    Ok(state)
}

/// The fit error of a pod a PreFilter rejected: every node failed for those reasons, and none
/// can be fixed by preemption.
fn rejected(nodes: &[NodeInfo], reasons: Vec<String>) -> FitError {
    let mut fit = FitError {
        nodes: nodes.len(),
        pre_filter: Some(reasons.join(", ").into()),
        ..FitError::default()
    };
    for node in nodes {
        fit.unresolvable.insert(node.name().to_string());
    }
    for reason in reasons {
        fit.reasons.insert(reason, nodes.len());
    }
    fit
}

/// Runs the filters on one node: `Err((reasons, unresolvable))` at the first that fails.
pub fn filter_node(
    registry: &Registry,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Result<(), (Vec<String>, bool)> {
    for plugin in &registry.filters {
        if let Err(reasons) = plugin.filter(state, pod, node) {
            let unresolvable = reasons.iter().any(|r| plugin.unresolvable(r));
            return Err((reasons, unresolvable));
        }
    }
    Ok(())
}

/// Nodes that pass every filter (at most `limit`, scanning from `start`), and the failures.
pub fn filter<'a>(
    registry: &Registry,
    state: &CycleState,
    pod: &PodInfo,
    nodes: &'a [NodeInfo],
    start: usize,
    limit: usize,
) -> (Vec<&'a NodeInfo>, FitError, usize) {
    let mut feasible = Vec::new();
    let mut fit = FitError {
        nodes: nodes.len(),
        ..FitError::default()
    };
    let mut processed = 0;
    for offset in 0..nodes.len() {
        if feasible.len() >= limit {
            break;
        }
        let node = &nodes[(start + offset) % nodes.len()];
        processed += 1;
        match filter_node(registry, state, pod, node) {
            Ok(()) => feasible.push(node),
            Err((reasons, unresolvable)) => {
                for reason in reasons {
                    match fit.reasons.get_mut(&reason) {
                        Some(count) => *count += 1,
                        None => {
                            fit.reasons.insert(reason, 1);
                        }
                    }
                }
                if unresolvable {
                    fit.unresolvable.insert(node.name().to_string());
                }
            }
        }
    }
    (feasible, fit, processed)
}

/// Weighted total score per feasible node, in the same order.
pub fn score(
    registry: &Registry,
    pod: &PodInfo,
    feasible: &[&NodeInfo],
    all: &[NodeInfo],
) -> Vec<i64> {
    let mut state = CycleState::default();
    for (plugin, _) in &registry.scores {
        plugin.pre_score(&mut state, pod, feasible, all);
    }
    let mut totals = vec![0i64; feasible.len()];
    for (plugin, weight) in &registry.scores {
        let mut scores: Vec<i64> = feasible
            .iter()
            .map(|n| plugin.score(&state, pod, n))
            .collect();
        plugin.normalize(&state, feasible, &mut scores);
        for (total, score) in totals.iter_mut().zip(scores) {
            *total += score * weight;
        }
    }
    totals
}

/// Picks the node for the pod, or says why none fits.
pub fn schedule(
    registry: &Registry,
    pod: &PodInfo,
    nodes: &[NodeInfo],
    rng: &mut impl Rng,
) -> Result<String, FitError> {
    schedule_from(registry, pod, nodes, 0, rng).map(|(node, _)| node)
}

/// [`schedule`] scanning nodes from `start`; also returns how many nodes were filtered, so the
/// next cycle can start after them (upstream's `nextStartNodeIndex`).
pub fn schedule_from(
    registry: &Registry,
    pod: &PodInfo,
    nodes: &[NodeInfo],
    start: usize,
    rng: &mut impl Rng,
) -> Result<(String, usize), FitError> {
    let state = match pre_filter(registry, pod, nodes) {
        Ok(state) => state,
        Err(reasons) => return Err(rejected(nodes, reasons)),
    };
    let limit = feasible_nodes_to_find(registry.percentage_of_nodes_to_score, nodes.len());
    let (feasible, fit, processed) = filter(registry, &state, pod, nodes, start, limit);
    if feasible.is_empty() {
        return Err(fit);
    }
    if feasible.len() == 1 {
        return Ok((feasible[0].name().to_string(), processed));
    }
    let scores = score(registry, pod, &feasible, nodes);
    let best = scores.iter().copied().max().unwrap_or(0);
    let top: Vec<&NodeInfo> = feasible
        .iter()
        .zip(&scores)
        .filter(|(_, s)| **s == best)
        .map(|(n, _)| *n)
        .collect();
    let chosen = top[rng.random_range(0..top.len())];
    Ok((chosen.name().to_string(), processed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::test_util::*;

    #[test]
    fn the_emptier_node_wins() {
        let mut busy = ready(node("busy", "4", "8Gi", "110"));
        busy.add_pod(pod("x", Some("3"), Some("6Gi")));
        let empty = ready(node("empty", "4", "8Gi", "110"));
        let chosen = schedule(
            &Registry::default(),
            &pod("p", Some("100m"), Some("128Mi")),
            &[busy, empty],
            &mut rand::rng(),
        );
        assert_eq!(chosen, Ok("empty".to_string()));
    }

    #[test]
    fn failures_are_reported_in_upstream_words() {
        let small = ready(node("node-0", "1", "1Gi", "110"));
        let result = schedule(
            &Registry::default(),
            &pod("p", Some("2"), None),
            &[small],
            &mut rand::rng(),
        );
        let error = result.err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("0/1 nodes are available: 1 Insufficient cpu.")
        );
        let not_ready = node("node-1", "1", "1Gi", "110");
        let result = schedule(
            &Registry::default(),
            &pod("p", None, None),
            &[not_ready],
            &mut rand::rng(),
        );
        assert_eq!(
            result.err().map(|e| e.to_string()).as_deref(),
            Some("0/1 nodes are available: 1 node(s) were not ready.")
        );
    }

    #[test]
    fn percentage_of_nodes_to_score_is_adaptive_as_upstream() {
        assert_eq!(feasible_nodes_to_find(None, 50), 50);
        assert_eq!(feasible_nodes_to_find(None, 1000), 420);
        assert_eq!(feasible_nodes_to_find(None, 5000), 500);
        assert_eq!(feasible_nodes_to_find(None, 6000), 300);
        assert_eq!(feasible_nodes_to_find(Some(100), 6000), 6000);
        assert_eq!(feasible_nodes_to_find(Some(1), 1000), 100);
    }

    #[test]
    fn a_pre_filter_rejection_replaces_the_histogram_and_blocks_preemption() {
        use crate::plugins::volume_binding::tests::pod_with;
        let nodes = [
            ready(node("a", "1", "1Gi", "110")),
            ready(node("b", "1", "1Gi", "110")),
        ];
        let pod = pod_with(&["missing"], (vec![], vec![], vec![]));
        let registry = Registry::default();
        let fit = schedule(&registry, &pod, &nodes, &mut rand::rng()).err();
        assert_eq!(
            fit.as_ref().map(|f| f.to_string()).as_deref(),
            Some(r#"0/2 nodes are available: persistentvolumeclaim "missing" not found."#)
        );
        let fit = fit.unwrap_or_default();
        assert_eq!(fit.unresolvable.len(), 2);
        let preempted = crate::preemption::preempt(&registry, &pod, &nodes, &fit, &[]);
        assert_eq!(
            preempted.err().as_deref(),
            Some("0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
        );
    }

    #[test]
    fn the_default_filters_run_in_upstream_order() {
        let names: Vec<&str> = Registry::default()
            .filters
            .iter()
            .map(|p| p.name())
            .collect();
        assert_eq!(
            names,
            [
                "NodeUnschedulable",
                "NodeReady",
                "NodeName",
                "TaintToleration",
                "NodeAffinity",
                "NodePorts",
                "NodeResourcesFit",
                "VolumeRestrictions",
                "VolumeBinding",
                "PodTopologySpread",
                "InterPodAffinity"
            ]
        );
    }

    #[test]
    fn no_nodes_at_all_is_a_fit_error() {
        let result = schedule(
            &Registry::default(),
            &pod("p", None, None),
            &[],
            &mut rand::rng(),
        );
        assert_eq!(
            result.err().map(|e| e.to_string()).as_deref(),
            Some("no nodes available to schedule pods")
        );
    }
}
