//! BalancedAllocation: prefers nodes where cpu and memory would be used in similar proportions.

use crate::framework::{CycleState, NodeInfo, PodInfo, ScorePlugin, MAX_NODE_SCORE};

/// The score for cpu and memory fractions (each capped at 1): `(1 - std deviation) * 100`.
pub fn balance_score(cpu_fraction: f64, memory_fraction: f64) -> i64 {
    let cpu = cpu_fraction.min(1.0);
    let memory = memory_fraction.min(1.0);
    // With two resources the standard deviation is half their difference.
    let std = (cpu - memory).abs() / 2.0;
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// The BalancedAllocation plugin.
pub struct BalancedAllocation;

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let allocatable = node.allocatable();
        if allocatable.milli_cpu <= 0 || allocatable.memory <= 0 {
            return 0;
        }
        let cpu = (node.non_zero_requested.milli_cpu + pod.non_zero_requests.milli_cpu) as f64
            / allocatable.milli_cpu as f64;
        let memory = (node.non_zero_requested.memory + pod.non_zero_requests.memory) as f64
            / allocatable.memory as f64;
        balance_score(cpu, memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::test_util::*;

    #[test]
    fn equal_fractions_score_full_marks() {
        assert_eq!(balance_score(0.5, 0.5), 100);
        assert_eq!(balance_score(1.0, 0.0), 50);
        assert_eq!(balance_score(2.0, 1.0), 100);
    }

    #[test]
    fn a_node_that_stays_balanced_scores_higher() {
        let mut cpu_heavy = node("a", "2", "2Gi", "110");
        cpu_heavy.add_pod(pod("x", Some("1500m"), Some("100Mi")));
        let balanced = node("b", "2", "2Gi", "110");
        let candidate = pod("p", Some("500m"), Some("512Mi"));
        assert!(
            BalancedAllocation.score(&CycleState::default(), &candidate, &balanced)
                > BalancedAllocation.score(&CycleState::default(), &candidate, &cpu_heavy)
        );
    }
}
