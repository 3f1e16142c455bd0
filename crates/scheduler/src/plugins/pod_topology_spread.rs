//! PodTopologySpread: `spec.topologySpreadConstraints` keep matching pods evenly spread over
//! topology domains. DoNotSchedule constraints filter (skew = pods in the node's domain + the pod
//! itself - the smallest domain's pods, at most `maxSkew`; with fewer than `minDomains` domains
//! the smallest counts as 0); ScheduleAnyway constraints, or upstream's default constraints for
//! pods owned by a Service/ReplicaSet/StatefulSet, score domains with fewer matching pods higher.
//! `nodeAffinityPolicy` (default Honor) and `nodeTaintsPolicy` (default Ignore) decide which
//! nodes' pods count; `matchLabelKeys` narrow the selector to the pod's own label values.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use api_types::selector::{Operator, Requirement, Selector};
use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Unfit, MAX_NODE_SCORE,
};
use crate::plugins::{node_affinity, taint_toleration};

/// Upstream reason when a node lacks a constraint's topology label.
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
/// Upstream reason when placing the pod would exceed `maxSkew`.
pub const REASON_SKEW: &str = "node(s) didn't match pod topology spread constraints";
/// The hostname label (counted per node while scoring).
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// The zone label.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

const FILTER_KEY: &str = "PodTopologySpread/filter";
const SCORE_KEY: &str = "PodTopologySpread/score";

/// A constraint resolved for counting.
#[derive(Debug, Clone)]
pub struct Constraint {
    /// Largest allowed skew.
    pub max_skew: i64,
    /// The topology key.
    pub topology_key: String,
    /// Which pods count (`None`: none).
    pub selector: Option<Selector>,
    /// Fewer eligible domains than this make the global minimum 0.
    pub min_domains: i64,
    /// Count only nodes matching the pod's node affinity/selector.
    pub honor_node_affinity: bool,
    /// Count only nodes whose taints the pod tolerates.
    pub honor_node_taints: bool,
}

fn selector_with_keys(
    selector: Option<&LabelSelector>,
    keys: &[String],
    pod: &Pod,
) -> Option<Selector> {
    let base = Selector::from_label_selector(selector?).ok()?;
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut requirements = base.requirements().to_vec();
    for key in keys {
        if let Some(value) = labels.get(key) {
            requirements.push(Requirement::new(key, Operator::In, [value.clone()]).ok()?);
        }
    }
    Some(Selector::from_requirements(requirements))
}

impl Constraint {
    fn from_api(c: &TopologySpreadConstraint, pod: &Pod) -> Self {
        Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector: selector_with_keys(
                c.label_selector.as_ref(),
                c.match_label_keys.as_deref().unwrap_or_default(),
                pod,
            ),
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// Whether the node's pods count for this constraint (the inclusion policies).
    fn includes(&self, pod: &PodInfo, node: &Node) -> bool {
        if self.honor_node_affinity && !node_affinity::fits(pod, node) {
            return false;
        }
        if self.honor_node_taints {
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_deref())
                .unwrap_or_default();
            let tolerations = pod
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or_default();
            if taint_toleration::untolerated(taints, tolerations).is_some() {
                return false;
            }
        }
        true
    }

    fn matches(&self, pod: &Pod) -> bool {
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }

    /// Pods on the node in `namespace` that match, not terminating.
    fn count(&self, node: &NodeInfo, namespace: &str) -> i64 {
        let count = node
            .pods
            .values()
            .filter(|p| p.pod.metadata.deletion_timestamp.is_none())
            .filter(|p| p.pod.metadata.namespace.as_deref().unwrap_or("default") == namespace)
            .filter(|p| self.matches(&p.pod))
            .count();
        i64::try_from(count).unwrap_or(i64::MAX)
    }
}

/// The pod's constraints with the given `whenUnsatisfiable`.
pub fn constraints(pod: &Pod, when_unsatisfiable: &str) -> Vec<Constraint> {
    pod.spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when_unsatisfiable)
        .map(|c| Constraint::from_api(c, pod))
        .collect()
}

/// Upstream's system default constraints (zone maxSkew 5, hostname maxSkew 3, ScheduleAnyway)
/// over the pod's default selector; none when the pod belongs to no Service or controller.
pub fn default_constraints(pod: &PodInfo) -> Vec<Constraint> {
    let Some(selector) = pod
        .default_selector
        .as_ref()
        .and_then(|s| Selector::from_label_selector(s).ok())
        .filter(|s| !s.is_empty())
    else {
        return Vec::new();
    };
    [(LABEL_ZONE, 5), (LABEL_HOSTNAME, 3)]
        .into_iter()
        .map(|(key, max_skew)| Constraint {
            max_skew,
            topology_key: key.to_string(),
            selector: Some(selector.clone()),
            min_domains: 1,
            honor_node_affinity: true,
            honor_node_taints: false,
        })
        .collect()
}

fn node_has_keys(node: &Node, constraints: &[Constraint]) -> bool {
    let labels = node.metadata.labels.as_ref();
    constraints
        .iter()
        .all(|c| labels.is_some_and(|l| l.contains_key(&c.topology_key)))
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// Whether the pod restricts its nodes (a node selector or required node affinity); when not,
/// the `nodeAffinityPolicy: Honor` inclusion check passes every node.
fn has_node_constraints(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.node_selector.as_ref().is_some_and(|m| !m.is_empty())
            || s.affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .is_some_and(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .is_some()
                })
    })
}

/// Per constraint: topology domain -> pods matching it, over every node carrying all the
/// constraints' keys whose pods the inclusion policies count (upstream's PreFilter pass).
/// One pass over the nodes; domain keys borrow the node labels and are copied only once per
/// domain at the end, and nodes without pods are not searched.
fn domain_counts(
    constraints: &[Constraint],
    pod: &PodInfo,
    nodes: &[NodeInfo],
) -> Vec<HashMap<String, i64>> {
    let ns = namespace(&pod.pod);
    let node_constrained = has_node_constraints(&pod.pod);
    let mut counts: Vec<HashMap<&str, i64>> = vec![HashMap::new(); constraints.len()];
    for node in nodes {
        let Some(n) = node.node.as_deref() else {
            continue;
        };
        let Some(labels) = n.metadata.labels.as_ref() else {
            continue;
        };
        if !constraints
            .iter()
            .all(|c| labels.contains_key(&c.topology_key))
        {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            let included = (!node_constrained && !c.honor_node_taints) || c.includes(pod, n);
            if !included {
                continue;
            }
            let Some(value) = labels.get(&c.topology_key) else {
                continue;
            };
            let here = if node.pods.is_empty() {
                0
            } else {
                c.count(node, ns)
            };
            *counts[i].entry(value.as_str()).or_default() += here;
        }
    }
    counts
        .into_iter()
        .map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        .collect()
}

#[derive(Debug, Clone, Default)]
struct FilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: domain value -> matching pods.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: the smallest domain count (upstream's critical path).
    minimum: Vec<i64>,
    /// Per constraint: whether the pod itself matches its selector.
    self_match: Vec<bool>,
}

impl FilterState {
    fn refresh_minimum(&mut self) {
        self.minimum = self
            .counts
            .iter()
            .map(|c| c.values().copied().min().unwrap_or(0))
            .collect();
    }

    fn update(&mut self, pod: &PodInfo, other: &Pod, node: &NodeInfo, delta: i64) {
        let Some(n) = node.node.as_deref() else {
            return;
        };
        if !node_has_keys(n, &self.constraints) || namespace(other) != namespace(&pod.pod) {
            return;
        }
        let labels = node.labels();
        for (i, c) in self.constraints.iter().enumerate() {
            if !c.includes(pod, n) || !c.matches(other) {
                continue;
            }
            if let Some(value) = labels.get(&c.topology_key) {
                *self.counts[i].entry(value.clone()).or_default() += delta;
            }
        }
        self.refresh_minimum();
    }
}

/// One constraint's matching pods per node, kept across cycles (by snapshot position). An entry
/// is reused while its node and its pod map are the very same objects (`Arc::ptr_eq`; the entry
/// holds both, so a changed node or pod map, which the cache always replaces rather than
/// mutates while shared, is recounted), so a cycle counts only the nodes that changed.
#[derive(Debug, Default)]
struct NodeCounts {
    entries: Vec<Option<CountEntry>>,
    /// Domain values seen, indexed by [`CountEntry::domain`].
    domains: Vec<String>,
    /// Domain value -> its index in `domains`.
    index: HashMap<String, usize>,
}

#[derive(Debug)]
struct CountEntry {
    node: Arc<Node>,
    pods: Arc<HashMap<String, PodInfo>>,
    /// The node's domain for the constraint's key (`None`: the node lacks the label).
    domain: Option<usize>,
    /// Matching pods on the node.
    count: i64,
}

/// What a [`NodeCounts`] depends on besides the nodes: namespace, selector, topology key.
type CountKey = (String, Option<Selector>, String);

/// At most this many constraint memos are kept (more are dropped all at once).
const MAX_MEMOS: usize = 32;

impl NodeCounts {
    /// Brings the entries up to date with `nodes`, recounting only changed nodes.
    fn update(&mut self, c: &Constraint, ns: &str, nodes: &[NodeInfo]) {
        if self.domains.len() > 2 * nodes.len() + 16 {
            *self = NodeCounts::default();
        }
        let NodeCounts {
            entries,
            domains,
            index,
        } = self;
        entries.truncate(nodes.len());
        entries.resize_with(nodes.len(), || None);
        for (slot, node) in entries.iter_mut().zip(nodes) {
            let Some(n) = node.node.as_ref() else {
                *slot = None;
                continue;
            };
            if slot
                .as_ref()
                .is_some_and(|e| Arc::ptr_eq(&e.node, n) && Arc::ptr_eq(&e.pods, &node.pods))
            {
                continue;
            }
            let domain = n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(&c.topology_key))
                .map(|value| match index.get(value) {
                    Some(&i) => i,
                    None => {
                        domains.push(value.clone());
                        index.insert(value.clone(), domains.len() - 1);
                        domains.len() - 1
                    }
                });
            let count = if domain.is_some() && !node.pods.is_empty() {
                c.count(node, ns)
            } else {
                0
            };
            *slot = Some(CountEntry {
                node: n.clone(),
                pods: node.pods.clone(),
                domain,
                count,
            });
        }
    }
}

/// [`domain_counts`] from the cross-cycle memo; only valid when every node's pods count
/// whatever the pod (no node selector/affinity, taints ignored).
fn memo_domain_counts(
    memo: &mut HashMap<CountKey, NodeCounts>,
    constraints: &[Constraint],
    ns: &str,
    nodes: &[NodeInfo],
) -> Vec<HashMap<String, i64>> {
    let keys: Vec<CountKey> = constraints
        .iter()
        .map(|c| (ns.to_string(), c.selector.clone(), c.topology_key.clone()))
        .collect();
    if keys.iter().any(|k| !memo.contains_key(k)) && memo.len() >= MAX_MEMOS {
        memo.clear();
    }
    for (key, c) in keys.iter().zip(constraints) {
        memo.entry(key.clone()).or_default().update(c, ns, nodes);
    }
    let tables: Vec<&NodeCounts> = keys.iter().filter_map(|k| memo.get(k)).collect();
    let mut sums: Vec<Vec<Option<i64>>> =
        tables.iter().map(|t| vec![None; t.domains.len()]).collect();
    for position in 0..nodes.len() {
        let entries: Option<Vec<(usize, i64)>> = tables
            .iter()
            .map(|t| {
                let e = t.entries.get(position)?.as_ref()?;
                Some((e.domain?, e.count))
            })
            .collect();
        let Some(entries) = entries else {
            continue;
        };
        for (sum, (domain, count)) in sums.iter_mut().zip(entries) {
            if let Some(slot) = sum.get_mut(domain) {
                *slot.get_or_insert(0) += count;
            }
        }
    }
    sums.into_iter()
        .zip(&tables)
        .map(|(sum, t)| {
            sum.into_iter()
                .zip(&t.domains)
                .filter_map(|(count, domain)| Some((domain.clone(), count?)))
                .collect()
        })
        .collect()
}

/// The PodTopologySpread plugin.
#[derive(Debug, Default)]
pub struct PodTopologySpread {
    /// Per-node counts kept across cycles, per constraint.
    memo: Mutex<HashMap<CountKey, NodeCounts>>,
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[NodeInfo],
    ) -> Result<(), Unfit> {
        let hard = constraints(&pod.pod, "DoNotSchedule");
        if hard.is_empty() {
            return Ok(());
        }
        let memoizable =
            !has_node_constraints(&pod.pod) && hard.iter().all(|c| !c.honor_node_taints);
        let counts = if memoizable {
            let mut memo = match self.memo.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            memo_domain_counts(&mut memo, &hard, namespace(&pod.pod), nodes)
        } else {
            domain_counts(&hard, pod, nodes)
        };
        let self_match = hard.iter().map(|c| c.matches(&pod.pod)).collect();
        let mut data = FilterState {
            counts,
            constraints: hard,
            minimum: Vec::new(),
            self_match,
        };
        data.refresh_minimum();
        state.write(FILTER_KEY, data);
        Ok(())
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let Some(data) = state.read::<FilterState>(FILTER_KEY) else {
            return Ok(());
        };
        let empty = BTreeMap::new();
        let labels = node
            .node
            .as_deref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(&empty);
        for (i, c) in data.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                return Err(vec![REASON_MISSING_LABEL.into()]);
            };
            let domains = i64::try_from(data.counts[i].len()).unwrap_or(i64::MAX);
            let minimum = if domains < c.min_domains {
                0
            } else {
                data.minimum[i]
            };
            let self_match = i64::from(data.self_match.get(i).copied().unwrap_or(false));
            let here = data.counts[i].get(value).copied().unwrap_or(0);
            if here + self_match - minimum > c.max_skew {
                return Err(vec![REASON_SKEW.into()]);
            }
        }
        Ok(())
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, added: &PodInfo, node: &NodeInfo) {
        if let Some(data) = state.read_mut::<FilterState>(FILTER_KEY) {
            data.update(pod, &added.pod, node, 1);
        }
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) {
        if let Some(data) = state.read_mut::<FilterState>(FILTER_KEY) {
            data.update(pod, &removed.pod, node, -1);
        }
    }

    fn unresolvable(&self, reason: &str) -> bool {
        reason == REASON_MISSING_LABEL
    }
}

#[derive(Debug, Clone, Default)]
struct ScoreState {
    constraints: Vec<Constraint>,
    /// Per constraint (not hostname): domain value -> matching pods.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: `ln(domains + 2)`.
    weights: Vec<f64>,
    /// Feasible nodes lacking a required topology label (score 0).
    ignored: HashSet<String>,
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        feasible: &[&NodeInfo],
        all: &[NodeInfo],
    ) {
        let explicit = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let soft = if explicit {
            constraints(&pod.pod, "ScheduleAnyway")
        } else {
            default_constraints(pod)
        };
        if soft.is_empty() || feasible.is_empty() {
            return;
        }
        // System defaults do not require every key, so nodes without a zone still spread by host.
        let require_all = explicit;
        let mut data = ScoreState {
            counts: vec![HashMap::new(); soft.len()],
            weights: Vec::new(),
            constraints: soft,
            ignored: HashSet::new(),
        };
        let mut sizes = vec![0usize; data.constraints.len()];
        for node in feasible {
            let Some(n) = node.node.as_deref() else {
                continue;
            };
            if require_all && !node_has_keys(n, &data.constraints) {
                data.ignored.insert(node.name().to_string());
                continue;
            }
            let labels = node.labels();
            for (i, c) in data.constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                if let Some(value) = labels.get(&c.topology_key) {
                    if !data.counts[i].contains_key(value) {
                        data.counts[i].insert(value.clone(), 0);
                        sizes[i] += 1;
                    }
                }
            }
        }
        data.weights = data
            .constraints
            .iter()
            .zip(&sizes)
            .map(|(c, size)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    feasible.len() - data.ignored.len()
                } else {
                    *size
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let ns = namespace(&pod.pod);
        for node in all {
            let Some(n) = node.node.as_deref() else {
                continue;
            };
            if require_all && !node_has_keys(n, &data.constraints) {
                continue;
            }
            let labels = node.labels();
            for (i, c) in data.constraints.iter().enumerate() {
                if !c.includes(pod, n) {
                    continue;
                }
                let Some(value) = labels.get(&c.topology_key) else {
                    continue;
                };
                if let Some(count) = data.counts[i].get_mut(value) {
                    *count += c.count(node, ns);
                }
            }
        }
        state.write(SCORE_KEY, data);
    }

    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(data) = state.read::<ScoreState>(SCORE_KEY) else {
            return 0;
        };
        if data.ignored.contains(node.name()) {
            return 0;
        }
        let empty = BTreeMap::new();
        let labels = node
            .node
            .as_deref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(&empty);
        let mut score = 0f64;
        for (i, c) in data.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == LABEL_HOSTNAME {
                c.count(node, namespace(&pod.pod))
            } else {
                data.counts[i].get(value).copied().unwrap_or(0)
            };
            score += count as f64 * data.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    fn normalize(&self, state: &CycleState, nodes: &[&NodeInfo], scores: &mut [i64]) {
        let Some(data) = state.read::<ScoreState>(SCORE_KEY) else {
            return;
        };
        let ignored: Vec<bool> = nodes
            .iter()
            .map(|n| data.ignored.contains(n.name()))
            .collect();
        let counted = || {
            scores
                .iter()
                .zip(&ignored)
                .filter(|(_, i)| !**i)
                .map(|(s, _)| *s)
        };
        let min = counted().min().unwrap_or(0);
        let max = counted().max().unwrap_or(0).max(0);
        for (score, ignored) in scores.iter_mut().zip(ignored) {
            *score = if ignored {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm;
    use crate::framework::test_util::*;
    use crate::framework::Registry;

    fn zoned(name: &str, zone: Option<&str>) -> NodeInfo {
        ready(with_node(node(name, "4", "8Gi", "110"), |n| {
            let mut labels: BTreeMap<String, String> =
                [(LABEL_HOSTNAME.to_string(), name.to_string())].into();
            if let Some(zone) = zone {
                labels.insert(LABEL_ZONE.to_string(), zone.to_string());
            }
            n.metadata.labels = Some(labels);
        }))
    }

    fn spread_pod(name: &str, constraint: serde_json::Value) -> PodInfo {
        let mut p = (*pod(name, None, None).pod).clone();
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        if let Some(spec) = p.spec.as_mut() {
            spec.topology_spread_constraints =
                serde_json::from_value(serde_json::json!([constraint])).ok();
        }
        PodInfo::new(std::sync::Arc::new(p))
    }

    fn zone_constraint(max_skew: i32, min_domains: Option<i32>) -> serde_json::Value {
        serde_json::json!({"maxSkew": max_skew, "topologyKey": LABEL_ZONE, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}, "minDomains": min_domains})
    }

    fn zone_counts(nodes: &[NodeInfo]) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for n in nodes {
            let zone = n
                .node
                .as_ref()
                .and_then(|n| n.metadata.labels.as_ref())
                .and_then(|l| l.get(LABEL_ZONE))
                .cloned()
                .unwrap_or_default();
            *counts.entry(zone).or_default() += n.pods.len();
        }
        counts
    }

    #[test]
    fn max_skew_one_over_three_zones_spreads_evenly() {
        let registry = Registry::default();
        let mut nodes = vec![
            zoned("a1", Some("z1")),
            zoned("a2", Some("z1")),
            zoned("b1", Some("z2")),
            zoned("c1", Some("z3")),
        ];
        for i in 0..6 {
            let p = spread_pod(&format!("web-{i}"), zone_constraint(1, None));
            let chosen =
                algorithm::schedule(&registry, &p, &nodes, &mut rand::rng()).unwrap_or_default();
            let index = nodes
                .iter()
                .position(|n| n.name() == chosen)
                .unwrap_or(usize::MAX);
            nodes[index].add_pod(p);
            let counts = zone_counts(&nodes);
            let max = counts.values().max().copied().unwrap_or(0);
            let min = counts.values().min().copied().unwrap_or(0);
            assert!(max - min <= 1, "after {} pods: {counts:?}", i + 1);
        }
        assert_eq!(
            zone_counts(&nodes).values().copied().collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
    }

    #[test]
    fn skew_violations_and_missing_labels_are_reported_as_upstream() {
        let registry = Registry::default();
        let mut nodes = vec![
            zoned("a", Some("z1")),
            zoned("b", Some("z2")),
            zoned("c", None),
        ];
        nodes[0].add_pod(spread_pod("x", serde_json::Value::Null));
        let p = spread_pod("p", zone_constraint(1, None));
        assert_eq!(
            algorithm::schedule(&registry, &p, &nodes, &mut rand::rng()),
            Ok("b".to_string())
        );
        nodes[1].add_pod(spread_pod("y", serde_json::Value::Null));
        nodes[1].add_pod(spread_pod("z", serde_json::Value::Null));
        let error = algorithm::schedule(&registry, &p, &nodes, &mut rand::rng()).err();
        // z1 has 1, z2 has 2: z2 would reach skew 2; z1 is fine.
        assert!(error.is_none());
        nodes[0].add_pod(spread_pod("w", serde_json::Value::Null));
        nodes[0].add_pod(spread_pod("v", serde_json::Value::Null));
        let error = algorithm::schedule(&registry, &p, &nodes, &mut rand::rng())
            .err()
            .map(|e| e.to_string());
        // z1 has 3, z2 has 2: z1 is at skew 2, z2 fits.
        assert!(error.is_none(), "{error:?}");
        let wide = spread_pod("q", zone_constraint(1, Some(3)));
        let error = algorithm::schedule(&registry, &wide, &nodes, &mut rand::rng()).err();
        assert_eq!(
            error.map(|e| e.to_string()).as_deref(),
            Some("0/3 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required label), 2 node(s) didn't match pod topology spread constraints.")
        );
    }

    #[test]
    fn match_label_keys_narrow_the_selector_to_the_pods_own_values() {
        let mut p = (*spread_pod("p", serde_json::Value::Null).pod).clone();
        p.metadata.labels = Some(
            [
                ("app".to_string(), "web".to_string()),
                ("hash".to_string(), "v2".to_string()),
            ]
            .into(),
        );
        let api: TopologySpreadConstraint = serde_json::from_value(serde_json::json!({
            "maxSkew": 1, "topologyKey": LABEL_ZONE, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["hash"]}))
        .unwrap_or_default();
        let c = Constraint::from_api(&api, &p);
        assert!(c.matches(&p));
        let mut old = p.clone();
        old.metadata.labels = Some(
            [
                ("app".to_string(), "web".to_string()),
                ("hash".to_string(), "v1".to_string()),
            ]
            .into(),
        );
        assert!(!c.matches(&old));
    }

    #[test]
    fn default_constraints_prefer_the_emptier_host_for_controlled_pods() {
        let nodes = vec![zoned("a", Some("z1")), zoned("b", Some("z1"))];
        let mut nodes = nodes;
        nodes[0].add_pod(spread_pod("x", serde_json::Value::Null));
        let mut p = spread_pod("p", serde_json::Value::Null);
        p.default_selector =
            serde_json::from_value(serde_json::json!({"matchLabels": {"app": "web"}})).ok();
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let mut state = CycleState::default();
        ScorePlugin::pre_score(
            &PodTopologySpread::default(),
            &mut state,
            &p,
            &feasible,
            &nodes,
        );
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| ScorePlugin::score(&PodTopologySpread::default(), &state, &p, n))
            .collect();
        ScorePlugin::normalize(
            &PodTopologySpread::default(),
            &state,
            &feasible,
            &mut scores,
        );
        assert!(scores[1] > scores[0], "{scores:?}");
        assert_eq!(scores[1], MAX_NODE_SCORE);
        // Without a default selector there is nothing to spread.
        let plain = spread_pod("q", serde_json::Value::Null);
        assert!(default_constraints(&plain).is_empty());
    }

    fn sorted(counts: Vec<HashMap<String, i64>>) -> Vec<BTreeMap<String, i64>> {
        counts
            .into_iter()
            .map(|m| m.into_iter().collect())
            .collect()
    }

    #[test]
    fn memoized_counts_follow_pods_nodes_and_labels_and_never_go_stale() {
        let web = |name: &str| spread_pod(name, serde_json::Value::Null);
        let p = spread_pod("p", zone_constraint(1, None));
        let hard = constraints(&p.pod, "DoNotSchedule");
        let mut memo = HashMap::new();
        let mut nodes = vec![
            zoned("a", Some("z1")),
            zoned("b", Some("z2")),
            zoned("c", Some("z3")),
            zoned("d", None),
        ];
        nodes[0].add_pod(web("w1"));
        nodes[3].add_pod(web("w2"));
        let check = |memo: &mut HashMap<CountKey, NodeCounts>, nodes: &[NodeInfo]| {
            let memoized = sorted(memo_domain_counts(memo, &hard, "default", nodes));
            assert_eq!(memoized, sorted(domain_counts(&hard, &p, nodes)));
            memoized
        };
        let expect = |pairs: &[(&str, i64)]| -> Vec<BTreeMap<String, i64>> {
            vec![pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()]
        };
        assert_eq!(
            check(&mut memo, &nodes),
            expect(&[("z1", 1), ("z2", 0), ("z3", 0)])
        );
        // A pod added to a node already counted (its pod map is shared with the memo).
        nodes[1].add_pod(web("w3"));
        nodes[1].add_pod(web("w4"));
        assert_eq!(
            check(&mut memo, &nodes),
            expect(&[("z1", 1), ("z2", 2), ("z3", 0)])
        );
        // Removed again; a pod of another namespace or selector does not count.
        nodes[1].remove_pod("w3-uid");
        let mut other = (*web("x").pod).clone();
        other.metadata.namespace = Some("other".into());
        nodes[2].add_pod(PodInfo::new(Arc::new(other)));
        nodes[2].add_pod(PodInfo::new(Arc::new({
            let mut plain = (*web("y").pod).clone();
            plain.metadata.labels = None;
            plain
        })));
        assert_eq!(
            check(&mut memo, &nodes),
            expect(&[("z1", 1), ("z2", 1), ("z3", 0)])
        );
        // A node moved to another zone, and the unlabelled node given one.
        let relabel = |info: &mut NodeInfo, zone: &str| {
            let mut node = info.node.as_deref().cloned().unwrap_or_default();
            node.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(LABEL_ZONE.to_string(), zone.to_string());
            info.set_node(Arc::new(node));
        };
        relabel(&mut nodes[0], "z2");
        relabel(&mut nodes[3], "z4");
        assert_eq!(
            check(&mut memo, &nodes),
            expect(&[("z2", 2), ("z3", 0), ("z4", 1)])
        );
        // Nodes gone (the list shrinks and shifts).
        nodes.remove(0);
        assert_eq!(
            check(&mut memo, &nodes),
            expect(&[("z2", 1), ("z3", 0), ("z4", 1)])
        );
        nodes.truncate(1);
        assert_eq!(check(&mut memo, &nodes), expect(&[("z2", 1)]));
        // The plugin's PreFilter agrees (through the memo) with the filter's verdicts.
        let plugin = PodTopologySpread::default();
        let mut nodes = vec![zoned("a", Some("z1")), zoned("b", Some("z2"))];
        nodes[0].add_pod(web("w1"));
        nodes[0].add_pod(web("w2"));
        for round in 0..2 {
            let mut state = CycleState::default();
            assert!(plugin.pre_filter(&mut state, &p, &nodes).is_ok());
            let fits: Vec<bool> = nodes
                .iter()
                .map(|n| plugin.filter(&state, &p, n).is_ok())
                .collect();
            if round == 0 {
                assert_eq!(fits, [false, true]);
                nodes[1].add_pod(web("w3"));
                nodes[1].add_pod(web("w4"));
            } else {
                assert_eq!(fits, [true, true]);
            }
        }
    }
}
