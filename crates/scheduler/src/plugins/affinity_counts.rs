//! InterPodAffinity's PreFilter counts kept across scheduling cycles, so a cycle visits only the
//! nodes whose pods changed instead of every pod with affinity terms.
//!
//! Per snapshot position the memo keeps the node and its pod map it was computed for (reused
//! while both are the very same objects, `Arc::ptr_eq`, as PodTopologySpread's memo does; the
//! cache replaces a node's pod map whenever a pod comes or goes) and:
//! - the required anti-affinity terms of the node's pods, as indexes into a table of distinct
//!   terms with how many pods carry each: a cycle matches each distinct term against the
//!   incoming pod once, not once per pod;
//! - per set of incoming terms (namespaces and selectors, no namespace selector), how many of
//!   the node's pods match them all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use api_types::selector::Selector;
use k8s_openapi::api::core::v1::Node;

use super::inter_pod_affinity::AffinityTerm;
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

/// The memo; one per InterPodAffinity plugin instance.
#[derive(Debug, Default)]
pub struct AffinityCounts {
    /// Distinct required anti-affinity terms of existing pods.
    terms: Vec<AffinityTerm>,
    index: HashMap<Signature, usize>,
    /// Per node: (term index, pods carrying it).
    existing: Vec<Option<Entry<TermCounts>>>,
    /// Per incoming term set: per node, pods matching every term of the set.
    matching: HashMap<Vec<Signature>, Vec<Option<Entry<i64>>>>,
}

/// Whether the counts of pods matching `terms` do not depend on namespace labels.
pub fn memoizable(terms: &[AffinityTerm]) -> bool {
    terms.iter().all(|t| t.namespace_selector.is_none())
}

impl AffinityCounts {
    /// Calls `visit(node, term, pods)` for every node and every distinct required
    /// anti-affinity term of its pods that `matches` accepts (asked once per distinct term).
    pub fn existing_anti_affinity(
        &mut self,
        nodes: &[NodeInfo],
        matches: impl Fn(&AffinityTerm) -> bool,
        mut visit: impl FnMut(&NodeInfo, &AffinityTerm, i64),
    ) {
        if self.terms.len() > MAX_TERMS {
            self.terms.clear();
            self.index.clear();
            self.existing.clear();
        }
        let AffinityCounts {
            terms,
            index,
            existing,
            ..
        } = self;
        refresh(existing, nodes, |node| {
            if node.pods_with_affinity == 0 {
                return Vec::new();
            }
            let mut counts: BTreeMap<usize, i64> = BTreeMap::new();
            for pod in node.pods.values() {
                let Some(theirs) = pod.affinity_terms.as_deref() else {
                    continue;
                };
                for term in &theirs.required_anti_affinity {
                    let key = signature(term);
                    let i = match index.get(&key) {
                        Some(&i) => i,
                        None => {
                            terms.push(term.clone());
                            index.insert(key, terms.len() - 1);
                            terms.len() - 1
                        }
                    };
                    *counts.entry(i).or_default() += 1;
                }
            }
            counts.into_iter().collect()
        });
        let mut verdicts: Vec<Option<bool>> = vec![None; terms.len()];
        for (entry, node) in existing.iter().zip(nodes) {
            let Some(entry) = entry else {
                continue;
            };
            for &(i, count) in &entry.value {
                let term = &terms[i];
                if *verdicts[i].get_or_insert_with(|| matches(term)) {
                    visit(node, term, count);
                }
            }
        }
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
