//! One scheduling decision as a pure function: filter every node, score the feasible ones with
//! the weighted score plugins, pick the highest (ties broken at random).

use std::collections::BTreeMap;
use std::fmt;

use rand::Rng;

use crate::framework::{NodeInfo, PodInfo, Registry};

/// No node fits: how many nodes there were and why each failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    /// Nodes considered.
    pub nodes: usize,
    /// Reason -> number of nodes that failed for it.
    pub reasons: BTreeMap<String, usize>,
}

impl fmt::Display for FitError {
    /// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector.`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        parts.sort();
        if parts.is_empty() {
            write!(f, "0/{} nodes are available.", self.nodes)
        } else {
            write!(
                f,
                "0/{} nodes are available: {}.",
                self.nodes,
                parts.join(", ")
            )
        }
    }
}

/// Nodes that pass every filter, and the reasons for the others.
pub fn filter<'a>(
    registry: &Registry,
    pod: &PodInfo,
    nodes: &'a [NodeInfo],
) -> (Vec<&'a NodeInfo>, BTreeMap<String, usize>) {
    let mut feasible = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for node in nodes {
        let failure = registry
            .filters
            .iter()
            .find_map(|plugin| plugin.filter(pod, node).err());
        match failure {
            None => feasible.push(node),
            Some(unfit) => {
                for reason in unfit {
                    *reasons.entry(reason).or_default() += 1;
                }
            }
        }
    }
    (feasible, reasons)
}

/// Weighted total score per feasible node, in the same order.
pub fn score(registry: &Registry, pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let mut totals = vec![0i64; nodes.len()];
    for (plugin, weight) in &registry.scores {
        let mut scores: Vec<i64> = nodes.iter().map(|n| plugin.score(pod, n)).collect();
        plugin.normalize(&mut scores);
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
    let (feasible, reasons) = filter(registry, pod, nodes);
    if feasible.is_empty() {
        return Err(FitError {
            nodes: nodes.len(),
            reasons,
        });
    }
    if feasible.len() == 1 {
        return Ok(feasible[0].name());
    }
    let scores = score(registry, pod, &feasible);
    let best = scores.iter().copied().max().unwrap_or(0);
    let top: Vec<&NodeInfo> = feasible
        .iter()
        .zip(&scores)
        .filter(|(_, s)| **s == best)
        .map(|(n, _)| *n)
        .collect();
    let chosen = top[rng.random_range(0..top.len())];
    Ok(chosen.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::test_util::*;
    use k8s_openapi::api::core::v1::NodeCondition;

    fn ready(info: NodeInfo) -> NodeInfo {
        with_node(info, |n| {
            n.status.get_or_insert_with(Default::default).conditions = Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..NodeCondition::default()
            }]);
        })
    }

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
    fn no_nodes_at_all_is_a_fit_error() {
        let result = schedule(
            &Registry::default(),
            &pod("p", None, None),
            &[],
            &mut rand::rng(),
        );
        assert_eq!(
            result.err().map(|e| e.to_string()).as_deref(),
            Some("0/0 nodes are available.")
        );
    }
}
