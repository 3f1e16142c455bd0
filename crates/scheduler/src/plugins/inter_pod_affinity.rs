//! InterPodAffinity: required pod affinity and anti-affinity of the incoming pod, and the required
//! anti-affinity of pods already running against it, decide where it may run (Filter); preferred
//! terms of both sides, and existing pods' required affinity, weigh where it should (Score).
//!
//! Start with [`AffinityTerm`]: a term resolved against its pod's namespace. PreFilter counts,
//! per topology pair (`key`, `value`), the pods matching each side's terms; Filter only reads the
//! counts, and AddPod/RemovePod keep them right while preemption tries evictions. The counts
//! come from [`AffinityCounts`], kept across cycles, unless the incoming pod's required terms
//! use namespace selectors (then every pod is visited).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use api_types::selector::Selector;
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};

use super::affinity_counts::{memoizable, AffinityCounts, ScoreTerm};
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Unfit, MAX_NODE_SCORE,
};

/// Upstream reason: the incoming pod's affinity found no matching pod in the node's domain.
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Upstream reason: the incoming pod's anti-affinity found a matching pod in the node's domain.
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// Upstream reason: a running pod's anti-affinity rejects the incoming pod in this domain.
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
/// Weight an existing pod's required affinity adds to a matching incoming pod's score
/// (upstream `hardPodAffinityWeight` default).
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

const FILTER_KEY: &str = "InterPodAffinity/filter";
const SCORE_KEY: &str = "InterPodAffinity/score";

/// A pod (anti-)affinity term resolved for matching.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    /// Namespaces listed (or the pod's own when neither list nor selector is given).
    pub namespaces: HashSet<String>,
    /// The namespace selector; `None` matches no namespace.
    pub namespace_selector: Option<Selector>,
    /// The label selector; `None` matches no pod.
    pub selector: Option<Selector>,
    /// The topology key.
    pub topology_key: String,
    /// The weight (1 for required terms).
    pub weight: i64,
}

impl AffinityTerm {
    /// Resolves an API term of a pod in `namespace`.
    pub fn new(term: &PodAffinityTerm, namespace: &str, weight: i64) -> Self {
        let mut namespaces: HashSet<String> = term.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.insert(namespace.to_string());
        }
        AffinityTerm {
            namespaces,
            namespace_selector: term
                .namespace_selector
                .as_ref()
                .and_then(|s| Selector::from_label_selector(s).ok()),
            selector: term
                .label_selector
                .as_ref()
                .and_then(|s| Selector::from_label_selector(s).ok()),
            topology_key: term.topology_key.clone(),
            weight,
        }
    }

    /// Whether `pod` (with its namespace's labels) matches the term.
    pub fn matches(
        &self,
        pod: &Pod,
        namespace_labels: &HashMap<String, BTreeMap<String, String>>,
    ) -> bool {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let in_namespace = self.namespaces.contains(namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                s.is_empty()
                    || namespace_labels
                        .get(namespace)
                        .is_some_and(|labels| s.matches(labels))
            });
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        in_namespace && self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }
}

/// The four term lists of a pod.
#[derive(Debug, Clone, Default)]
pub struct PodTerms {
    /// Required affinity.
    pub required_affinity: Vec<AffinityTerm>,
    /// Required anti-affinity.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// Preferred affinity (with weights).
    pub preferred_affinity: Vec<AffinityTerm>,
    /// Preferred anti-affinity (with weights).
    pub preferred_anti_affinity: Vec<AffinityTerm>,
}

impl PodTerms {
    /// Resolves a pod's `spec.affinity.podAffinity` and `podAntiAffinity`.
    pub fn of(pod: &Pod) -> Self {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(t, namespace, 1))
                .collect()
        };
        let preferred = |terms: Option<
            &Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>,
        >| {
            terms
                .into_iter()
                .flatten()
                .filter(|t| t.weight != 0)
                .map(|t| AffinityTerm::new(&t.pod_affinity_term, namespace, i64::from(t.weight)))
                .collect::<Vec<_>>()
        };
        PodTerms {
            required_affinity: required(pod_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: required(anti.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: preferred(pod_affinity.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: preferred(anti.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
        }
    }

    /// Whether the pod has no terms at all.
    pub fn is_empty(&self) -> bool {
        self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty()
    }
}

/// Whether the pod has pod affinity or anti-affinity at all.
pub fn has_pod_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

/// Topology key -> value -> number of pods.
pub(super) type Counts = HashMap<String, HashMap<String, i64>>;

#[derive(Debug, Clone, Default)]
struct FilterState {
    terms: Arc<PodTerms>,
    /// Whether the incoming pod matches all its own required affinity terms.
    self_affinity: bool,
    /// Pairs where running pods' required anti-affinity matches the incoming pod (all of them
    /// after a full scan; after the memo, what AddPod/RemovePod changed since).
    existing_anti_affinity: Counts,
    /// The memoized running pods' required anti-affinity terms matching the incoming pod.
    existing_anti_memo: Vec<ScoreTerm>,
    /// Pairs holding pods that match all the incoming pod's required affinity terms (shared
    /// with the memo until preemption changes them).
    affinity: Arc<Counts>,
    /// Pairs holding pods that match one of the incoming pod's required anti-affinity terms.
    anti_affinity: Arc<Counts>,
}

/// Adds `delta` to the count of (`key`, the node's value for it); entries reaching 0 go.
pub(super) fn bump(counts: &mut Counts, key: &str, node: &BTreeMap<String, String>, delta: i64) {
    let Some(value) = node.get(key) else {
        return;
    };
    if !counts.contains_key(key) {
        counts.insert(key.to_string(), HashMap::new());
    }
    let Some(values) = counts.get_mut(key) else {
        return;
    };
    let count = match values.get_mut(value) {
        Some(count) => count,
        None => values.entry(value.clone()).or_default(),
    };
    *count += delta;
    if *count == 0 {
        values.remove(value);
        if values.is_empty() {
            counts.remove(key);
        }
    }
}

/// The count of (`key`, the node's value for it).
fn count(counts: &Counts, key: &str, node: &BTreeMap<String, String>) -> i64 {
    node.get(key)
        .and_then(|value| counts.get(key)?.get(value))
        .copied()
        .unwrap_or(0)
}

impl FilterState {
    /// Accounts `existing` on a node with `node_labels` (`delta` +1 to add, -1 to remove).
    fn update(
        &mut self,
        incoming: &PodInfo,
        existing_info: &PodInfo,
        node_labels: &BTreeMap<String, String>,
        delta: i64,
    ) {
        let namespaces = &incoming.cluster.namespace_labels;
        let existing = existing_info.pod.as_ref();
        if let Some(theirs) = existing_info.affinity_terms.as_deref() {
            for term in &theirs.required_anti_affinity {
                if term.matches(&incoming.pod, namespaces) {
                    bump(
                        &mut self.existing_anti_affinity,
                        &term.topology_key,
                        node_labels,
                        delta,
                    );
                }
            }
        }
        let terms = &self.terms;
        if !terms.required_affinity.is_empty()
            && terms
                .required_affinity
                .iter()
                .all(|t| t.matches(existing, namespaces))
        {
            let affinity = Arc::make_mut(&mut self.affinity);
            for term in &terms.required_affinity {
                bump(affinity, &term.topology_key, node_labels, delta);
            }
        }
        for term in &terms.required_anti_affinity {
            if term.matches(existing, namespaces) {
                bump(
                    Arc::make_mut(&mut self.anti_affinity),
                    &term.topology_key,
                    node_labels,
                    delta,
                );
            }
        }
    }
}

impl FilterState {
    /// Whether running pods' required anti-affinity rejects the incoming pod on a node.
    fn existing_anti_rejects(&self, node_labels: &BTreeMap<String, String>) -> bool {
        let memoized = |key: &str| -> i64 {
            let Some(value) = node_labels.get(key) else {
                return 0;
            };
            self.existing_anti_memo
                .iter()
                .filter(|(k, _, _)| k == key)
                .filter_map(|(_, _, values)| values.get(value))
                .sum()
        };
        let changed = |key: &str| count(&self.existing_anti_affinity, key, node_labels);
        self.existing_anti_memo
            .iter()
            .map(|(key, _, _)| key.as_str())
            .chain(self.existing_anti_affinity.keys().map(String::as_str))
            .any(|key| memoized(key) + changed(key) > 0)
    }

    /// The pairs where running pods' required anti-affinity matches the incoming pod.
    #[cfg(test)]
    fn existing_anti_counts(&self) -> Counts {
        let mut counts = self.existing_anti_affinity.clone();
        for (key, _, values) in &self.existing_anti_memo {
            for (value, pods) in values.iter() {
                let labels = BTreeMap::from([(key.clone(), value.clone())]);
                bump(&mut counts, key, &labels, *pods);
            }
        }
        counts
    }
}

/// Fills the filter counts by visiting every pod that matters (the reference the memoized
/// path must agree with).
fn scan(data: &mut FilterState, pod: &PodInfo, nodes: &[NodeInfo]) {
    let incoming_has_required =
        !data.terms.required_affinity.is_empty() || !data.terms.required_anti_affinity.is_empty();
    for node in nodes {
        // Only nodes with pods that have terms matter unless the incoming pod has some.
        if node.node.is_none() || (!incoming_has_required && node.pods_with_affinity == 0) {
            continue;
        }
        let node_labels = node.labels();
        for existing in node.pods.values() {
            if incoming_has_required || existing.affinity_terms.is_some() {
                data.update(pod, existing, node_labels, 1);
            }
        }
    }
}

/// Fills the filter counts from the cross-cycle memo.
fn from_memo(data: &mut FilterState, pod: &PodInfo, nodes: &[NodeInfo], memo: &mut AffinityCounts) {
    let namespaces = &pod.cluster.namespace_labels;
    let terms = data.terms.clone();
    data.existing_anti_memo =
        memo.existing_anti_affinity(nodes, |term| term.matches(&pod.pod, namespaces));
    if !terms.required_affinity.is_empty() {
        data.affinity = memo.matching_counts(&terms.required_affinity, nodes);
    }
    for (i, term) in terms.required_anti_affinity.iter().enumerate() {
        let counts = memo.matching_counts(std::slice::from_ref(term), nodes);
        if i == 0 {
            data.anti_affinity = counts;
            continue;
        }
        // Several terms: their counts add up per topology pair.
        let anti = Arc::make_mut(&mut data.anti_affinity);
        for (key, values) in counts.iter() {
            for (value, pods) in values {
                let labels = BTreeMap::from([(key.clone(), value.clone())]);
                bump(anti, key, &labels, *pods);
            }
        }
    }
}

/// Adds to the score counts by visiting every pod: the incoming pod's preferred terms against
/// every pod and, with `existing`, every existing pod's terms against the incoming pod (the
/// reference the memoized path must agree with).
fn score_scan(data: &mut ScoreState, pod: &PodInfo, all: &[NodeInfo], existing: bool) {
    let incoming = pod.affinity_terms.clone().unwrap_or_default();
    let incoming_preferred =
        !incoming.preferred_affinity.is_empty() || !incoming.preferred_anti_affinity.is_empty();
    let namespaces = &pod.cluster.namespace_labels;
    for node in all {
        if node.node.is_none() || (!incoming_preferred && node.pods_with_affinity == 0) {
            continue;
        }
        let node_labels = node.labels();
        if node_labels.is_empty() {
            continue;
        }
        for existing_pod in node.pods.values() {
            for term in &incoming.preferred_affinity {
                if term.matches(&existing_pod.pod, namespaces) {
                    data.add(term, term.weight, node_labels);
                }
            }
            for term in &incoming.preferred_anti_affinity {
                if term.matches(&existing_pod.pod, namespaces) {
                    data.add(term, -term.weight, node_labels);
                }
            }
            if !existing {
                continue;
            }
            let Some(theirs) = existing_pod.affinity_terms.as_deref() else {
                continue;
            };
            for term in &theirs.required_affinity {
                if term.matches(&pod.pod, namespaces) {
                    data.add(term, HARD_POD_AFFINITY_WEIGHT, node_labels);
                }
            }
            for term in &theirs.preferred_affinity {
                if term.matches(&pod.pod, namespaces) {
                    data.add(term, term.weight, node_labels);
                }
            }
            for term in &theirs.preferred_anti_affinity {
                if term.matches(&pod.pod, namespaces) {
                    data.add(term, -term.weight, node_labels);
                }
            }
        }
    }
}

/// The InterPodAffinity plugin.
#[derive(Debug, Default)]
pub struct InterPodAffinity {
    /// PreFilter counts kept across cycles.
    memo: Mutex<AffinityCounts>,
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[NodeInfo],
    ) -> Result<(), Unfit> {
        let terms = pod.affinity_terms.clone().unwrap_or_default();
        let self_affinity = terms
            .required_affinity
            .iter()
            .all(|t| t.matches(&pod.pod, &pod.cluster.namespace_labels));
        let memo_applies =
            memoizable(&terms.required_affinity) && memoizable(&terms.required_anti_affinity);
        let mut data = FilterState {
            terms,
            self_affinity,
            ..FilterState::default()
        };
        if memo_applies {
            let mut memo = match self.memo.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            from_memo(&mut data, pod, nodes, &mut memo);
        } else {
            scan(&mut data, pod, nodes);
        }
        state.write(FILTER_KEY, data);
        Ok(())
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let Some(data) = state.read::<FilterState>(FILTER_KEY) else {
            return Ok(());
        };
        let node_labels = node.labels();
        let affinity = &data.terms.required_affinity;
        if !affinity.is_empty() {
            let pods_exist = affinity.iter().all(|t| {
                node_labels.contains_key(&t.topology_key)
                    && count(&data.affinity, &t.topology_key, node_labels) > 0
            });
            // The first pod of a group with affinity to itself may go anywhere.
            let first_of_its_kind = data.affinity.is_empty() && data.self_affinity;
            if !pods_exist && !first_of_its_kind {
                return Err(vec![REASON_AFFINITY.into()]);
            }
        }
        if data
            .terms
            .required_anti_affinity
            .iter()
            .any(|t| count(&data.anti_affinity, &t.topology_key, node_labels) > 0)
        {
            return Err(vec![REASON_ANTI_AFFINITY.into()]);
        }
        if data.existing_anti_rejects(node_labels) {
            return Err(vec![REASON_EXISTING_ANTI_AFFINITY.into()]);
        }
        Ok(())
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, added: &PodInfo, node: &NodeInfo) {
        if let Some(data) = state.read_mut::<FilterState>(FILTER_KEY) {
            data.update(pod, added, node.labels(), 1);
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
            data.update(pod, removed, node.labels(), -1);
        }
    }

    fn unresolvable(&self, reason: &str) -> bool {
        reason == REASON_AFFINITY
    }
}

/// Topology key -> value -> score, plus the memoized existing pods' terms matching the
/// incoming pod (each adds its weight times its pods in the node's topology value).
#[derive(Debug, Clone, Default)]
struct ScoreState {
    topology_score: Counts,
    existing_terms: Vec<ScoreTerm>,
}

impl ScoreState {
    fn add(&mut self, term: &AffinityTerm, weight: i64, node_labels: &BTreeMap<String, String>) {
        bump(
            &mut self.topology_score,
            &term.topology_key,
            node_labels,
            weight,
        );
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _feasible: &[&NodeInfo],
        all: &[NodeInfo],
    ) {
        let incoming = pod.affinity_terms.clone().unwrap_or_default();
        let mut data = ScoreState::default();
        let preferred: Vec<(&AffinityTerm, i64)> = incoming
            .preferred_affinity
            .iter()
            .map(|t| (t, t.weight))
            .chain(
                incoming
                    .preferred_anti_affinity
                    .iter()
                    .map(|t| (t, -t.weight)),
            )
            .collect();
        let memo_applies = preferred
            .iter()
            .all(|(t, _)| t.namespace_selector.is_none());
        let mut memo = match self.memo.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let namespaces = &pod.cluster.namespace_labels;
        data.existing_terms = memo.existing_score_terms(all, |t| t.matches(&pod.pod, namespaces));
        if memo_applies {
            for (term, weight) in preferred {
                let scores = &mut data.topology_score;
                memo.matching(std::slice::from_ref(term), all, |node, pods| {
                    bump(scores, &term.topology_key, node.labels(), weight * pods)
                });
            }
        } else {
            drop(memo);
            score_scan(&mut data, pod, all, false);
        }
        state.write(SCORE_KEY, data);
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(data) = state.read::<ScoreState>(SCORE_KEY) else {
            return 0;
        };
        let node_labels = node.labels();
        let memoized: i64 = data
            .existing_terms
            .iter()
            .filter_map(|(key, weight, values)| Some(weight * values.get(node_labels.get(key)?)?))
            .sum();
        memoized
            + data
                .topology_score
                .iter()
                .filter_map(|(key, values)| values.get(node_labels.get(key)?))
                .sum::<i64>()
    }

    fn normalize(&self, state: &CycleState, _nodes: &[&NodeInfo], scores: &mut [i64]) {
        if state
            .read::<ScoreState>(SCORE_KEY)
            .is_none_or(|d| d.topology_score.is_empty() && d.existing_terms.is_empty())
        {
            return;
        }
        let max = scores.iter().copied().max().unwrap_or(0);
        let min = scores.iter().copied().min().unwrap_or(0);
        let diff = max - min;
        for score in scores.iter_mut() {
            *score = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*score - min) as f64 / diff as f64)) as i64
            } else {
                0
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

    const HOSTNAME: &str = "kubernetes.io/hostname";

    fn labelled_pod(name: &str, labels: &[(&str, &str)], affinity: serde_json::Value) -> PodInfo {
        let mut p = (*pod(name, None, None).pod).clone();
        p.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        if let Some(spec) = p.spec.as_mut() {
            spec.affinity = serde_json::from_value(affinity).ok();
        }
        PodInfo::new(std::sync::Arc::new(p))
    }

    fn zoned(name: &str, zone: &str) -> NodeInfo {
        ready(with_node(node(name, "4", "8Gi", "110"), |n| {
            n.metadata.labels = Some(
                [
                    (HOSTNAME.to_string(), name.to_string()),
                    ("zone".to_string(), zone.to_string()),
                ]
                .into(),
            );
        }))
    }

    fn anti_to_self() -> serde_json::Value {
        serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOSTNAME}]}})
    }

    /// The memoized counts and a full scan agree for `incoming` on `nodes`.
    fn assert_counts_fresh(plugin: &InterPodAffinity, incoming: &PodInfo, nodes: &[NodeInfo]) {
        let mut state = CycleState::default();
        assert!(plugin.pre_filter(&mut state, incoming, nodes).is_ok());
        let memoized = state
            .read::<FilterState>(FILTER_KEY)
            .cloned()
            .unwrap_or_default();
        let mut scanned = FilterState {
            terms: incoming.affinity_terms.clone().unwrap_or_default(),
            ..FilterState::default()
        };
        scan(&mut scanned, incoming, nodes);
        assert_eq!(
            memoized.existing_anti_counts(),
            scanned.existing_anti_counts()
        );
        assert_eq!(memoized.affinity, scanned.affinity);
        assert_eq!(memoized.anti_affinity, scanned.anti_affinity);
    }

    #[test]
    fn memoized_counts_follow_pods_and_labels_across_cycles() {
        let plugin = InterPodAffinity::default();
        let affinity_to_db = serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}});
        let web = |name: &str| labelled_pod(name, &[("app", "web")], anti_to_self());
        let db = |name: &str| labelled_pod(name, &[("app", "db")], affinity_to_db.clone());
        let plain = |name: &str| labelled_pod(name, &[("app", "web")], serde_json::Value::Null);
        let incoming = [web("in-web"), db("in-db"), plain("in-plain")];
        let mut nodes = vec![zoned("a", "z1"), zoned("b", "z1"), zoned("c", "z2")];
        let check = |nodes: &[NodeInfo]| {
            for pod in &incoming {
                assert_counts_fresh(&plugin, pod, nodes);
            }
        };
        check(&nodes);
        nodes[0].add_pod(web("w1"));
        nodes[2].add_pod(db("d1"));
        check(&nodes);
        // The existing anti-affinity now rejects web pods on node a only.
        let mut state = CycleState::default();
        assert!(plugin.pre_filter(&mut state, &incoming[2], &nodes).is_ok());
        assert!(plugin.filter(&state, &incoming[2], &nodes[0]).is_err());
        assert!(plugin.filter(&state, &incoming[2], &nodes[1]).is_ok());
        // Preemption evicting w1 (RemovePod) lifts the memoized rejection; adding it back restores it.
        let w1 = web("w1");
        plugin.remove_pod(&mut state, &incoming[2], &w1, &nodes[0]);
        assert!(plugin.filter(&state, &incoming[2], &nodes[0]).is_ok());
        plugin.add_pod(&mut state, &incoming[2], &w1, &nodes[0]);
        assert!(plugin.filter(&state, &incoming[2], &nodes[0]).is_err());
        nodes[1].add_pod(web("w2"));
        nodes[1].add_pod(plain("p1"));
        check(&nodes);
        nodes[0].remove_pod("w1-uid");
        check(&nodes);
        let mut state = CycleState::default();
        assert!(plugin.pre_filter(&mut state, &incoming[2], &nodes).is_ok());
        assert!(plugin.filter(&state, &incoming[2], &nodes[0]).is_ok());
        // A node moving to another zone takes its pods' counts along.
        nodes[2] = with_node(nodes[2].clone(), |n| {
            if let Some(labels) = n.metadata.labels.as_mut() {
                labels.insert("zone".into(), "z1".into());
            }
        });
        check(&nodes);
        // Nodes come and go (snapshot positions shift).
        nodes.remove(0);
        check(&nodes);
        nodes.push(zoned("d", "z3"));
        nodes[2].add_pod(db("d2"));
        check(&nodes);
    }

    /// The memoized PreScore and a full scan give every node the same raw score for `incoming`.
    fn assert_scores_fresh(plugin: &InterPodAffinity, incoming: &PodInfo, nodes: &[NodeInfo]) {
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let mut state = CycleState::default();
        ScorePlugin::pre_score(plugin, &mut state, incoming, &feasible, nodes);
        let mut scanned = ScoreState::default();
        score_scan(&mut scanned, incoming, nodes, true);
        let mut reference = CycleState::default();
        reference.write(SCORE_KEY, scanned);
        for node in nodes {
            assert_eq!(
                ScorePlugin::score(plugin, &state, incoming, node),
                ScorePlugin::score(plugin, &reference, incoming, node),
                "{} for {}",
                node.name(),
                incoming.pod.metadata.name.as_deref().unwrap_or_default()
            );
        }
    }

    #[test]
    fn memoized_scores_follow_pods_labels_and_nodes_across_cycles() {
        let plugin = InterPodAffinity::default();
        let term = |app: &str, key: &str| serde_json::json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key});
        let weighted = |weight: i32, app: &str, key: &str| serde_json::json!({"weight": weight, "podAffinityTerm": term(app, key)});
        // Required affinity to web pods in the zone, preferred affinity and anti-affinity.
        let db_terms = serde_json::json!({
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [term("web", "zone")],
                "preferredDuringSchedulingIgnoredDuringExecution": [weighted(7, "web", HOSTNAME)]},
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [weighted(3, "cache", "zone")]}});
        let cache_terms = serde_json::json!({"podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [weighted(5, "cache", "zone")]}});
        let incoming_terms = serde_json::json!({"podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [weighted(2, "db", "zone")]}});
        let db = |name: &str| labelled_pod(name, &[("app", "db")], db_terms.clone());
        let cache = |name: &str| labelled_pod(name, &[("app", "cache")], cache_terms.clone());
        let incoming = [
            labelled_pod("in-web", &[("app", "web")], serde_json::Value::Null),
            labelled_pod("in-cache", &[("app", "cache")], incoming_terms.clone()),
            labelled_pod("in-db", &[("app", "db")], db_terms.clone()),
            labelled_pod("in-none", &[("app", "other")], serde_json::Value::Null),
        ];
        let mut nodes = vec![zoned("a", "z1"), zoned("b", "z1"), zoned("c", "z2")];
        let check = |nodes: &[NodeInfo]| {
            for pod in &incoming {
                assert_scores_fresh(&plugin, pod, nodes);
            }
        };
        check(&nodes);
        nodes[0].add_pod(db("d1"));
        nodes[1].add_pod(db("d2"));
        nodes[2].add_pod(cache("c1"));
        check(&nodes);
        // A web pod scores the zones of the db pods (hard weight) and their nodes (preferred).
        let mut state = CycleState::default();
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        ScorePlugin::pre_score(&plugin, &mut state, &incoming[0], &feasible, &nodes);
        let scores: Vec<i64> = nodes
            .iter()
            .map(|n| ScorePlugin::score(&plugin, &state, &incoming[0], n))
            .collect();
        assert_eq!(scores, vec![2 + 7, 2 + 7, 0]);
        nodes[2].add_pod(db("d3"));
        check(&nodes);
        nodes[0].remove_pod("d1-uid");
        check(&nodes);
        // A pod's labels change: the cache replaces it (same uid, other labels and terms).
        nodes[2].add_pod(labelled_pod("c1", &[("app", "web")], db_terms.clone()));
        check(&nodes);
        // A node moving to another zone takes its pods' counts along.
        nodes[1] = with_node(nodes[1].clone(), |n| {
            if let Some(labels) = n.metadata.labels.as_mut() {
                labels.insert("zone".into(), "z2".into());
            }
        });
        check(&nodes);
        // Nodes come and go (snapshot positions shift).
        nodes.remove(0);
        check(&nodes);
        nodes.push(zoned("d", "z3"));
        nodes[2].add_pod(cache("c2"));
        check(&nodes);
        nodes.truncate(1);
        check(&nodes);
    }

    #[test]
    fn anti_affinity_to_itself_spreads_one_pod_per_node() {
        let registry = Registry::default();
        let mut nodes = vec![zoned("a", "z1"), zoned("b", "z1"), zoned("c", "z2")];
        for i in 0..3 {
            let p = labelled_pod(&format!("web-{i}"), &[("app", "web")], anti_to_self());
            let chosen = algorithm::schedule(&registry, &p, &nodes, &mut rand::rng());
            let chosen = chosen.unwrap_or_default();
            let index = nodes
                .iter()
                .position(|n| n.name() == chosen)
                .unwrap_or(usize::MAX);
            assert!(nodes[index].pods.is_empty(), "{chosen} already had a pod");
            nodes[index].add_pod(p);
        }
        let fourth = labelled_pod("web-3", &[("app", "web")], anti_to_self());
        let error = algorithm::schedule(&registry, &fourth, &nodes, &mut rand::rng());
        assert_eq!(
            error.err().map(|e| e.to_string()).as_deref(),
            Some("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.")
        );
        // A pod without affinity but matching the label is kept off by the others' rules.
        let plain = labelled_pod("other", &[("app", "web")], serde_json::Value::Null);
        let error = algorithm::schedule(&registry, &plain, &nodes, &mut rand::rng());
        assert_eq!(
            error.err().map(|e| e.to_string()).as_deref(),
            Some("0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules.")
        );
    }

    #[test]
    fn required_affinity_follows_matching_pods_into_their_zone_and_the_first_may_go_anywhere() {
        let registry = Registry::default();
        let affinity = serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}});
        let mut nodes = vec![zoned("a", "z1"), zoned("b", "z2"), zoned("c", "z2")];
        // Self-affinity with no matching pod anywhere: allowed.
        let first = labelled_pod("db-0", &[("app", "db")], affinity.clone());
        assert!(algorithm::schedule(&registry, &first, &nodes, &mut rand::rng()).is_ok());
        // Not matching itself and no db pod: unresolvable everywhere.
        let client = labelled_pod("client", &[("app", "client")], affinity.clone());
        let error = algorithm::schedule(&registry, &client, &nodes, &mut rand::rng());
        assert!(
            error.as_ref().is_err_and(|e| e.unresolvable.len() == 3),
            "{error:?}"
        );
        nodes[1].add_pod(labelled_pod(
            "db",
            &[("app", "db")],
            serde_json::Value::Null,
        ));
        for _ in 0..10 {
            let chosen = algorithm::schedule(&registry, &client, &nodes, &mut rand::rng());
            assert!(matches!(chosen.as_deref(), Ok("b") | Ok("c")), "{chosen:?}");
        }
    }

    #[test]
    fn namespace_selector_widens_the_terms_namespaces() {
        let term = AffinityTerm::new(
            &serde_json::from_value(serde_json::json!({
                "labelSelector": {"matchLabels": {"app": "x"}},
                "namespaceSelector": {"matchLabels": {"team": "a"}},
                "topologyKey": HOSTNAME}))
            .unwrap_or_default(),
            "default",
            1,
        );
        let mut p = (*labelled_pod("x", &[("app", "x")], serde_json::Value::Null).pod).clone();
        p.metadata.namespace = Some("team-a".into());
        let labels: HashMap<String, BTreeMap<String, String>> = [(
            "team-a".to_string(),
            [("team".to_string(), "a".to_string())].into(),
        )]
        .into();
        assert!(term.matches(&p, &labels));
        assert!(!term.matches(&p, &HashMap::new()));
        // Without a selector only the pod's own namespace counts.
        let own = AffinityTerm::new(
            &serde_json::from_value(serde_json::json!({
                "labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": HOSTNAME}))
            .unwrap_or_default(),
            "default",
            1,
        );
        assert!(!own.matches(&p, &labels));
    }

    #[test]
    fn preferred_affinity_scores_the_matching_domain_highest() {
        let preferred = serde_json::json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}}]}});
        let mut nodes = vec![zoned("a", "z1"), zoned("b", "z2")];
        nodes[1].add_pod(labelled_pod(
            "cache",
            &[("app", "cache")],
            serde_json::Value::Null,
        ));
        let p = labelled_pod("p", &[], preferred);
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let mut state = CycleState::default();
        ScorePlugin::pre_score(
            &InterPodAffinity::default(),
            &mut state,
            &p,
            &feasible,
            &nodes,
        );
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| ScorePlugin::score(&InterPodAffinity::default(), &state, &p, n))
            .collect();
        assert_eq!(scores, vec![0, 50]);
        ScorePlugin::normalize(&InterPodAffinity::default(), &state, &feasible, &mut scores);
        assert_eq!(scores, vec![0, 100]);
    }
}
