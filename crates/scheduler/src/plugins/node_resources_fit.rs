//! NodeResourcesFit: the pod's requests plus what the node's pods request must fit allocatable
//! cpu, memory and pod count. Scores with the configured [`ScoringStrategy`] (upstream
//! `scoringStrategy`): LeastAllocated (default: more free capacity scores higher),
//! MostAllocated (bin packing) or RequestedToCapacityRatio (a piecewise-linear shape over
//! utilisation), each a weighted mean over the strategy's resources (`cpu` and `memory`; other
//! resource names are not tracked per node and are skipped).

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

/// MostAllocated for one resource: used share after placing the pod, 0-100 (requests beyond
/// capacity count as full).
pub fn most_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// Upstream's highest score in a RequestedToCapacityRatio shape (scaled to 0-100 when used).
pub const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;

/// A point of a RequestedToCapacityRatio shape: at `utilization` percent the score is `score`
/// (0-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapePoint {
    /// Utilisation in percent, 0-100, strictly increasing along the shape.
    pub utilization: i64,
    /// Score at that utilisation, 0-10.
    pub score: i64,
}

/// The broken-line function through `shape` (scores already scaled to 0-100), constant before
/// the first and after the last point.
pub fn broken_linear(shape: &[ShapePoint], utilization: i64) -> i64 {
    let Some(first) = shape.first() else {
        return 0;
    };
    if utilization <= first.utilization {
        return first.score;
    }
    for pair in shape.windows(2) {
        let (low, high) = (pair[0], pair[1]);
        if utilization <= high.utilization {
            let span = high.utilization - low.utilization;
            if span <= 0 {
                return high.score;
            }
            return low.score + (high.score - low.score) * (utilization - low.utilization) / span;
        }
    }
    shape.last().map_or(0, |p| p.score)
}

/// How NodeResourcesFit scores (upstream `scoringStrategy.type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrategyKind {
    /// Prefer nodes with more free capacity (spreading).
    LeastAllocated,
    /// Prefer nodes with less free capacity (bin packing).
    MostAllocated,
    /// Score by the shape over utilisation; scores in the points are 0-10.
    RequestedToCapacityRatio(Vec<ShapePoint>),
}

/// The scoring strategy: the kind and the weighted resources it looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoringStrategy {
    /// The kind.
    pub kind: StrategyKind,
    /// (resource name, weight) pairs.
    pub resources: Vec<(String, i64)>,
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        ScoringStrategy {
            kind: StrategyKind::LeastAllocated,
            resources: vec![("cpu".into(), 1), ("memory".into(), 1)],
        }
    }
}

impl ScoringStrategy {
    /// The node's score for the pod: the weighted mean of the per-resource scores over the
    /// resources the node has (as upstream's `resourceAllocationScorer`).
    pub fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let allocatable = node.allocatable();
        let shape: Vec<ShapePoint> = match &self.kind {
            StrategyKind::RequestedToCapacityRatio(shape) => shape
                .iter()
                .map(|p| ShapePoint {
                    utilization: p.utilization,
                    score: p.score * (MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE),
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut total = 0;
        let mut weights = 0;
        for (name, weight) in &self.resources {
            let (requested, capacity) = match name.as_str() {
                "cpu" => (
                    node.non_zero_requested.milli_cpu + pod.non_zero_requests.milli_cpu,
                    allocatable.milli_cpu,
                ),
                "memory" => (
                    node.non_zero_requested.memory + pod.non_zero_requests.memory,
                    allocatable.memory,
                ),
                _ => continue,
            };
            if capacity == 0 {
                continue;
            }
            let score = match &self.kind {
                StrategyKind::LeastAllocated => least_allocated(requested, capacity),
                StrategyKind::MostAllocated => most_allocated(requested, capacity),
                StrategyKind::RequestedToCapacityRatio(_) => {
                    let utilization = if requested > capacity {
                        100
                    } else {
                        requested * 100 / capacity
                    };
                    let score = broken_linear(&shape, utilization);
                    // Upstream leaves resources scoring 0 out of the mean for this strategy.
                    if score <= 0 {
                        continue;
                    }
                    score
                }
            };
            total += score * weight;
            weights += weight;
        }
        if weights == 0 {
            return 0;
        }
        match self.kind {
            StrategyKind::RequestedToCapacityRatio(_) => (total + weights / 2) / weights,
            _ => total / weights,
        }
    }
}

/// The NodeResourcesFit plugin.
#[derive(Debug, Clone, Default)]
pub struct NodeResourcesFit {
    /// How it scores.
    pub strategy: ScoringStrategy,
}

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
        self.strategy.score(pod, node)
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
                &NodeResourcesFit::default(),
                &CycleState::default(),
                &candidate,
                &empty
            ) > ScorePlugin::score(
                &NodeResourcesFit::default(),
                &CycleState::default(),
                &candidate,
                &busy
            )
        );
        assert_eq!(least_allocated(0, 100), 100);
        assert_eq!(least_allocated(150, 100), 0);
    }

    fn strategy(kind: StrategyKind, resources: &[(&str, i64)]) -> ScoringStrategy {
        ScoringStrategy {
            kind,
            resources: resources.iter().map(|(n, w)| (n.to_string(), *w)).collect(),
        }
    }

    #[test]
    fn strategies_score_as_upstream() {
        // Upstream's table cases: node 4000m / 10000 bytes with 3000m / 5000 requested by the
        // pod and its node-mates; pods here request all of it themselves.
        let node_info = node("n", "4", "10000", "110");
        let candidate = pod("p", Some("3"), Some("5000"));
        let least = strategy(StrategyKind::LeastAllocated, &[("cpu", 1), ("memory", 1)]);
        let most = strategy(StrategyKind::MostAllocated, &[("cpu", 1), ("memory", 1)]);
        // cpu: (4000-3000)*100/4000 = 25, memory: 5000*100/10000 = 50.
        assert_eq!(least.score(&candidate, &node_info), (25 + 50) / 2);
        // cpu 75, memory 50.
        assert_eq!(most.score(&candidate, &node_info), (75 + 50) / 2);
        let weighted = strategy(StrategyKind::MostAllocated, &[("cpu", 3), ("memory", 1)]);
        assert_eq!(weighted.score(&candidate, &node_info), (75 * 3 + 50) / 4);
        // Unknown resources are skipped, not scored as zero.
        let extended = strategy(
            StrategyKind::LeastAllocated,
            &[("cpu", 1), ("example.com/gpu", 5)],
        );
        assert_eq!(extended.score(&candidate, &node_info), 25);
    }

    #[test]
    fn requested_to_capacity_ratio_follows_its_shape() {
        let shape = vec![
            ShapePoint {
                utilization: 0,
                score: 0,
            },
            ShapePoint {
                utilization: 100,
                score: 10,
            },
        ];
        assert_eq!(
            broken_linear(
                &[
                    ShapePoint {
                        utilization: 10,
                        score: 20
                    },
                    ShapePoint {
                        utilization: 50,
                        score: 60
                    }
                ],
                30
            ),
            40
        );
        assert_eq!(
            broken_linear(
                &[ShapePoint {
                    utilization: 10,
                    score: 20
                }],
                0
            ),
            20
        );
        let bin_packing = strategy(
            StrategyKind::RequestedToCapacityRatio(shape),
            &[("cpu", 1), ("memory", 1)],
        );
        let node_info = node("n", "4", "10000", "110");
        // cpu 75% -> 75, memory 50% -> 50; rounded mean.
        let candidate = pod("p", Some("3"), Some("5000"));
        assert_eq!(bin_packing.score(&candidate, &node_info), 63);
        let fuller = pod("q", Some("4"), Some("10000"));
        assert_eq!(bin_packing.score(&fuller, &node_info), 100);
    }
}
