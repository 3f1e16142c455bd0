//! NodeResourcesFit: the pod's requests plus what the node's pods request must fit allocatable
//! cpu, memory and pod count; scores with LeastAllocated (more free capacity scores higher).

use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Unfit, MAX_NODE_SCORE,
};

/// The reasons the pod does not fit (empty when it fits), worded as upstream.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    let allocatable = node.allocatable();
    let mut reasons = Vec::new();
    if node.requested.pods + 1 > allocatable.pods {
        reasons.push("Too many pods".to_string());
    }
    let requests = pod.requests;
    if requests.milli_cpu == 0 && requests.memory == 0 {
        return reasons;
    }
    if requests.milli_cpu > 0
        && node.requested.milli_cpu + requests.milli_cpu > allocatable.milli_cpu
    {
        reasons.push("Insufficient cpu".to_string());
    }
    if requests.memory > 0 && node.requested.memory + requests.memory > allocatable.memory {
        reasons.push("Insufficient memory".to_string());
    }
    reasons
}

/// LeastAllocated for one resource: free share after placing the pod, 0-100.
pub fn least_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// The NodeResourcesFit plugin.
pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let reasons = insufficient(pod, node);
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let allocatable = node.allocatable();
        let cpu = least_allocated(
            node.non_zero_requested.milli_cpu + pod.non_zero_requests.milli_cpu,
            allocatable.milli_cpu,
        );
        let memory = least_allocated(
            node.non_zero_requested.memory + pod.non_zero_requests.memory,
            allocatable.memory,
        );
        (cpu + memory) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::test_util::*;

    #[test]
    fn requests_must_fit_what_is_left() {
        let mut busy = node("n", "1", "1Gi", "2");
        busy.add_pod(pod("a", Some("800m"), Some("512Mi")));
        let cases: [(PodInfo, Vec<&str>); 4] = [
            (pod("fits", Some("200m"), Some("256Mi")), vec![]),
            (pod("cpu", Some("300m"), None), vec!["Insufficient cpu"]),
            (
                pod("both", Some("300m"), Some("1Gi")),
                vec!["Insufficient cpu", "Insufficient memory"],
            ),
            (pod("none", None, None), vec![]),
        ];
        for (candidate, expected) in cases {
            assert_eq!(
                insufficient(&candidate, &busy),
                expected,
                "{:?}",
                candidate.pod.metadata.name
            );
        }
        busy.add_pod(pod("b", None, None));
        assert_eq!(
            insufficient(&pod("c", None, None), &busy),
            ["Too many pods"]
        );
    }

    #[test]
    fn emptier_nodes_score_higher() {
        let empty = node("e", "2", "4Gi", "110");
        let mut busy = node("b", "2", "4Gi", "110");
        busy.add_pod(pod("a", Some("1500m"), Some("3Gi")));
        let candidate = pod("p", Some("100m"), Some("100Mi"));
        assert!(
            ScorePlugin::score(
                &NodeResourcesFit,
                &CycleState::default(),
                &candidate,
                &empty
            ) > ScorePlugin::score(&NodeResourcesFit, &CycleState::default(), &candidate, &busy)
        );
        assert_eq!(least_allocated(0, 100), 100);
        assert_eq!(least_allocated(150, 100), 0);
    }
}
