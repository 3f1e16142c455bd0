//! InterPodAffinity's PreFilter counts kept across scheduling cycles, so a cycle visits only the
//! nodes whose pods changed instead of every pod with affinity terms.
//!
//! Per snapshot position the memo keeps the node and its pod map it was computed for (reused
//! while both are the very same objects, `Arc::ptr_eq`, as PodTopologySpread's memo does; the
//! cache replaces a node's pod map whenever a pod comes or goes) and:
//! - the required anti-affinity terms of the node's pods, as indexes into a table of distinct
//!   terms with how many pods carry each: a cycle matches each distinct term against the
//!   incoming pod once, not once per pod;
//! - the same for the terms existing pods add to the incoming pod's score (required affinity
//!   with `hardPodAffinityWeight`, preferred affinity and anti-affinity with their signed
//!   weights), with per distinct term how many pods carry it per topology value, kept up to
//!   date as nodes change, so a PreScore costs one match per distinct term whatever the number
//!   of existing pods;
//! - per set of incoming terms (namespaces and selectors, no namespace selector), how many of
//!   the node's pods match them all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use api_types::selector::Selector;
use k8s_openapi::api::core::v1::Node;

use super::inter_pod_affinity::{bump, AffinityTerm, Counts, PodTerms, HARD_POD_AFFINITY_WEIGHT};
use crate::framework::{NodeInfo, PodInfo};

/// What a term matches on, besides the incoming pod: namespaces (sorted), namespace selector,
/// label selector, topology key.
type Signature = (Vec<String>, Option<Selector>, Option<Selector>, String);

fn signature(term: &AffinityTerm) -> Signature {
    let mut namespaces: Vec<String> = term.namespaces.iter().cloned().collect();
    namespaces.sort();
    (
        namespaces,
        term.namespace_selector.clone(),
        term.selector.clone(),
        term.topology_key.clone(),
    )
}

/// At most this many incoming term sets are memoized (more are dropped all at once).
const MAX_MATCHING: usize = 32;
/// At most this many distinct existing terms are kept before the memo starts over.
const MAX_TERMS: usize = 4096;

/// A node's distinct required anti-affinity terms (index into the term table, pods carrying it).
type TermCounts = Vec<(usize, i64)>;

#[derive(Debug)]
struct Entry<T> {
    node: Arc<Node>,
    pods: Arc<HashMap<String, PodInfo>>,
    value: T,
}

/// Brings `entries` up to date with `nodes`, computing `value` only for changed nodes.
fn refresh<T>(
    entries: &mut Vec<Option<Entry<T>>>,
    nodes: &[NodeInfo],
    mut value: impl FnMut(&NodeInfo) -> T,
) {
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
        *slot = Some(Entry {
            node: n.clone(),
            pods: node.pods.clone(),
            value: value(node),
        });
    }
}

/// Topology value -> pods carrying a term, for the term's topology key.
pub type ValueCounts = HashMap<String, i64>;

/// A matching existing term: topology key, signed weight, pods per topology value.
pub type ScoreTerm = (String, i64, Arc<ValueCounts>);

/// An existing pod's terms that weigh on the incoming pod's score, with signed weights.
fn score_terms(terms: &PodTerms) -> Vec<(&AffinityTerm, i64)> {
    let required = terms
        .required_affinity
        .iter()
        .map(|t| (t, HARD_POD_AFFINITY_WEIGHT));
    let preferred = terms.preferred_affinity.iter().map(|t| (t, t.weight));
    let anti = terms.preferred_anti_affinity.iter().map(|t| (t, -t.weight));
    required.chain(preferred).chain(anti).collect()
}

/// A distinct term with its signed weight and pods carrying it per topology value.
type TableTerm = (AffinityTerm, i64, Arc<ValueCounts>);

/// Distinct (term, signed weight) of existing pods, per node which of them its pods carry, and
/// per term how many pods carry it per topology value.
#[derive(Debug, Default)]
struct TermTable {
    terms: Vec<TableTerm>,
    index: HashMap<(Signature, i64), usize>,
    existing: Vec<Option<Entry<TermCounts>>>,
}

/// Adds `sign` times a node's term counts to the terms' per-value counts.
fn account(terms: &mut [TableTerm], entry: &Entry<TermCounts>, sign: i64) {
    let Some(labels) = entry.node.metadata.labels.as_ref() else {
        return;
    };
    for &(i, count) in &entry.value {
        let Some((term, _, values)) = terms.get_mut(i) else {
            continue;
        };
        let Some(value) = labels.get(&term.topology_key) else {
            continue;
        };
        let values = Arc::make_mut(values);
        let total = values.entry(value.clone()).or_default();
        *total += sign * count;
        if *total == 0 {
            values.remove(value);
        }
    }
}

impl TermTable {
    /// The terms some pod carries that `matches` accepts.
    fn matching(&self, matches: impl Fn(&AffinityTerm) -> bool) -> Vec<ScoreTerm> {
        self.terms
            .iter()
            .filter(|(term, _, values)| !values.is_empty() && matches(term))
            .map(|(term, weight, values)| (term.topology_key.clone(), *weight, values.clone()))
            .collect()
    }

    /// Brings the table up to date with `nodes`; `of` picks a pod's terms with signed weights.
    fn refresh(&mut self, nodes: &[NodeInfo], of: fn(&PodTerms) -> Vec<(&AffinityTerm, i64)>) {
        if self.terms.len() > MAX_TERMS {
            *self = TermTable::default();
        }
        let TermTable {
            terms,
            index,
            existing,
        } = self;
        let keep = nodes.len().min(existing.len());
        for old in existing.drain(keep..).flatten() {
            account(terms, &old, -1);
        }
        existing.resize_with(nodes.len(), || None);
        for (slot, node) in existing.iter_mut().zip(nodes) {
            let Some(n) = node.node.as_ref() else {
                if let Some(old) = slot.take() {
                    account(terms, &old, -1);
                }
                continue;
            };
            if slot
                .as_ref()
                .is_some_and(|e| Arc::ptr_eq(&e.node, n) && Arc::ptr_eq(&e.pods, &node.pods))
            {
                continue;
            }
            if let Some(old) = slot.take() {
                account(terms, &old, -1);
            }
            let mut counts: BTreeMap<usize, i64> = BTreeMap::new();
            if node.pods_with_affinity > 0 {
                for pod in node.pods.values() {
                    let Some(theirs) = pod.affinity_terms.as_deref() else {
                        continue;
                    };
                    for (term, weight) in of(theirs) {
                        let key = (signature(term), weight);
                        let i = match index.get(&key) {
                            Some(&i) => i,
                            None => {
                                terms.push((term.clone(), weight, Arc::default()));
                                index.insert(key, terms.len() - 1);
                                terms.len() - 1
                            }
                        };
                        *counts.entry(i).or_default() += 1;
                    }
                }
            }
            let entry = Entry {
                node: n.clone(),
                pods: node.pods.clone(),
                value: counts.into_iter().collect(),
            };
            account(terms, &entry, 1);
            *slot = Some(entry);
        }
    }
}

/// The memo; one per InterPodAffinity plugin instance.
#[derive(Debug, Default)]
pub struct AffinityCounts {
    /// Distinct required anti-affinity terms of existing pods.
    anti: TermTable,
    /// Distinct terms of existing pods that weigh on scores.
    score: TermTable,
    /// Per incoming term set: per node, pods matching every term of the set.
    matching: HashMap<Vec<Signature>, Vec<Option<Entry<i64>>>>,
    /// Per incoming term set: per node, pods matching every term of the set, and their sum per
    /// (term's topology key, node's value), kept up to date as nodes change.
    counts: HashMap<Vec<Signature>, SetCounts>,
}

/// The per-node matches of one incoming term set and their sums per topology pair.
#[derive(Debug, Default)]
struct SetCounts {
    entries: Vec<Option<Entry<i64>>>,
    counts: Arc<Counts>,
}

/// Adds `sign` times an entry's matching pods to every term's (key, node value) pair.
fn account_set(counts: &mut Counts, set: &[AffinityTerm], entry: &Entry<i64>, sign: i64) {
    if entry.value == 0 {
        return;
    }
    let Some(labels) = entry.node.metadata.labels.as_ref() else {
        return;
    };
    for term in set {
        bump(counts, &term.topology_key, labels, sign * entry.value);
    }
}

/// Whether the counts of pods matching `terms` do not depend on namespace labels.
pub fn memoizable(terms: &[AffinityTerm]) -> bool {
    terms.iter().all(|t| t.namespace_selector.is_none())
}

impl AffinityCounts {
    /// The existing pods' required anti-affinity terms that `matches` accepts (asked once per
    /// distinct term) and that some pod carries, with pods per topology value.
    pub fn existing_anti_affinity(
        &mut self,
        nodes: &[NodeInfo],
        matches: impl Fn(&AffinityTerm) -> bool,
    ) -> Vec<ScoreTerm> {
        self.anti.refresh(nodes, |t| {
            t.required_anti_affinity.iter().map(|t| (t, 1)).collect()
        });
        self.anti.matching(matches)
    }

    /// The existing pods' terms that `matches` accepts (asked once per distinct term) and that
    /// some pod carries, with their signed weights and pods per topology value.
    pub fn existing_score_terms(
        &mut self,
        nodes: &[NodeInfo],
        matches: impl Fn(&AffinityTerm) -> bool,
    ) -> Vec<ScoreTerm> {
        self.score.refresh(nodes, score_terms);
        self.score.matching(matches)
    }

    /// Per (topology key of a term of `set`, value) the pods matching every term of `set`
    /// (which must be [`memoizable`]), summed over the nodes with that value: what a full
    /// scan bumping each term's key per matching pod gives, updated only for the nodes that
    /// changed since the last call.
    pub fn matching_counts(&mut self, set: &[AffinityTerm], nodes: &[NodeInfo]) -> Arc<Counts> {
        let key: Vec<Signature> = set.iter().map(signature).collect();
        if !self.counts.contains_key(&key) && self.counts.len() >= MAX_MATCHING {
            self.counts.clear();
        }
        let SetCounts { entries, counts } = self.counts.entry(key).or_default();
        let no_labels = HashMap::new();
        let keep = nodes.len().min(entries.len());
        for old in entries.drain(keep..).flatten() {
            account_set(Arc::make_mut(counts), set, &old, -1);
        }
        entries.resize_with(nodes.len(), || None);
        for (slot, node) in entries.iter_mut().zip(nodes) {
            let Some(n) = node.node.as_ref() else {
                if let Some(old) = slot.take() {
                    account_set(Arc::make_mut(counts), set, &old, -1);
                }
                continue;
            };
            if slot
                .as_ref()
                .is_some_and(|e| Arc::ptr_eq(&e.node, n) && Arc::ptr_eq(&e.pods, &node.pods))
            {
                continue;
            }
            if let Some(old) = slot.take() {
                account_set(Arc::make_mut(counts), set, &old, -1);
            }
            let matching = node
                .pods
                .values()
                .filter(|p| set.iter().all(|t| t.matches(&p.pod, &no_labels)))
                .count();
            let entry = Entry {
                node: n.clone(),
                pods: node.pods.clone(),
                value: i64::try_from(matching).unwrap_or(i64::MAX),
            };
            account_set(Arc::make_mut(counts), set, &entry, 1);
            *slot = Some(entry);
        }
        counts.clone()
    }

    /// Calls `visit(node, pods)` for every node with pods matching every term of `set` (which
    /// must be [`memoizable`]).
    pub fn matching(
        &mut self,
        set: &[AffinityTerm],
        nodes: &[NodeInfo],
        mut visit: impl FnMut(&NodeInfo, i64),
    ) {
        let key: Vec<Signature> = set.iter().map(signature).collect();
        if !self.matching.contains_key(&key) && self.matching.len() >= MAX_MATCHING {
            self.matching.clear();
        }
        let entries = self.matching.entry(key).or_default();
        let no_labels = HashMap::new();
        refresh(entries, nodes, |node| {
            let matching = node
                .pods
                .values()
                .filter(|p| set.iter().all(|t| t.matches(&p.pod, &no_labels)))
                .count();
            i64::try_from(matching).unwrap_or(i64::MAX)
        });
        for (entry, node) in entries.iter().zip(nodes) {
            if let Some(entry) = entry.as_ref().filter(|e| e.value > 0) {
                visit(node, entry.value);
            }
        }
    }
}
