//! The scheduler cache: every node with the pods bound or assumed to it. A pod is assumed on its
//! node the moment it is chosen, so the next decision sees it before the binding is observed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{NodeInfo, PodInfo};

/// Nodes and the pods on them, and the snapshot scheduling cycles read.
///
/// The snapshot (every node with a Node object, in name order) is kept up to date in place: a
/// pod added or removed replaces only its node's entry, so taking a snapshot costs one `Arc`
/// clone, not a copy of every node (upstream's generation-based `UpdateSnapshot`). It is
/// rebuilt only when nodes come or go.
#[derive(Debug, Default)]
pub struct Cache {
    /// Nodes by name, in name order (the order of every snapshot).
    nodes: BTreeMap<String, NodeInfo>,
    /// Pod uid -> node name, for every pod in the cache.
    pod_nodes: HashMap<String, String>,
    /// The current snapshot; `None` when it must be rebuilt.
    snapshot: Option<Arc<Vec<NodeInfo>>>,
    /// Node name -> its index in `snapshot`.
    positions: HashMap<String, usize>,
    /// Nodes changed while a cycle held the snapshot, and nodes a cycle's overlay
    /// ([`Cache::snapshot_with`]) added pods to: copied in from `nodes` by the next
    /// [`Cache::snapshot`] (so bindings observed mid-cycle do not copy the whole node list each,
    /// and an overlay lasts one cycle).
    stale: HashSet<String>,
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// Whether a pod still holds resources on its node (not finished).
fn holds_resources(pod: &Pod) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    phase != "Succeeded" && phase != "Failed"
}

impl Cache {
    /// Adds or updates a node.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let entry = self.nodes.entry(name.clone()).or_default();
        let added = entry.node.is_none();
        entry.set_node(node);
        if added {
            self.snapshot = None;
        } else {
            self.refresh(&name);
        }
    }

    /// The node called `name`, if known.
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(name).and_then(|n| n.node.clone())
    }

    /// Removes a node (its pods stay accounted until they go).
    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.get_mut(name) {
            info.clear_node();
            if info.pods.is_empty() {
                self.nodes.remove(name);
            }
            self.snapshot = None;
        }
    }

    /// Records a pod bound to a node (or removes it when finished or unbound).
    pub fn set_pod(&mut self, pod: Arc<Pod>) {
        let uid = uid(&pod);
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        match node {
            Some(node) if holds_resources(&pod) => {
                self.remove_pod(&uid);
                self.nodes
                    .entry(node.clone())
                    .or_default()
                    .add_pod(PodInfo::new(pod));
                self.refresh(&node);
                self.pod_nodes.insert(uid, node);
            }
            // An unbound pod may still be assumed: keep the assumption.
            None => {}
            Some(_) => self.remove_pod(&uid),
        }
    }

    /// Assumes `pod` runs on `node` until the binding is observed or fails.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        let mut assumed = pod.clone();
        assumed.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
        self.set_pod(Arc::new(assumed));
    }

    /// Forgets a pod (deleted, or its binding failed).
    pub fn remove_pod(&mut self, uid: &str) {
        if let Some(node) = self.pod_nodes.remove(uid) {
            if let Some(info) = self.nodes.get_mut(&node) {
                info.remove_pod(uid);
                if info.node.is_none() && info.pods.is_empty() {
                    self.nodes.remove(&node);
                }
            }
            self.refresh(&node);
        }
    }

    /// Whether the pod is in the cache (bound or assumed).
    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pod_nodes.contains_key(uid)
    }

    /// Copies node `name`'s entry into the snapshot; while a cycle still holds the snapshot the
    /// node is only marked stale, and the next [`Cache::snapshot`] copies it in.
    fn refresh(&mut self, name: &str) {
        let Some(snapshot) = self.snapshot.as_ref() else {
            return;
        };
        if !self.positions.contains_key(name) {
            return;
        }
        if Arc::strong_count(snapshot) > 1 {
            self.stale.insert(name.to_string());
            return;
        }
        self.copy_in(name);
    }

    /// Writes node `name`'s cache entry into the snapshot (dropping the snapshot when the node
    /// has gone).
    fn copy_in(&mut self, name: &str) {
        let (Some(snapshot), Some(&index)) = (self.snapshot.as_mut(), self.positions.get(name))
        else {
            return;
        };
        match self.nodes.get(name).filter(|n| n.node.is_some()) {
            Some(info) => {
                if let Some(slot) = Arc::make_mut(snapshot).get_mut(index) {
                    *slot = info.clone();
                }
            }
            None => self.snapshot = None,
        }
    }

    /// Every known node, in name order, for one scheduling cycle. Cheap: kept up to date as
    /// pods and nodes change; nodes and their pod maps are shared, not copied.
    pub fn snapshot(&mut self) -> Arc<Vec<NodeInfo>> {
        for name in std::mem::take(&mut self.stale) {
            self.copy_in(&name);
        }
        if let Some(snapshot) = &self.snapshot {
            return snapshot.clone();
        }
        let nodes: Vec<NodeInfo> = self
            .nodes
            .values()
            .filter(|n| n.node.is_some())
            .cloned()
            .collect();
        self.positions = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name().to_string(), i))
            .collect();
        let snapshot = Arc::new(nodes);
        self.snapshot = Some(snapshot.clone());
        snapshot
    }

    /// [`Cache::snapshot`] with `extra` pods (node name, pod) added for one cycle: the nominated
    /// pods a cycle must respect (upstream's `RunFilterPluginsWithNominatedPods`). Only the
    /// touched nodes change, in place while no other cycle holds the snapshot; they are
    /// restored from the cache by the next [`Cache::snapshot`], so the pods never count as
    /// bound or assumed.
    pub fn snapshot_with(&mut self, extra: Vec<(String, PodInfo)>) -> Arc<Vec<NodeInfo>> {
        let snapshot = self.snapshot();
        if extra.is_empty() {
            return snapshot;
        }
        drop(snapshot);
        let Some(shared) = self.snapshot.as_mut() else {
            return Arc::default();
        };
        let nodes = Arc::make_mut(shared);
        for (node, info) in extra {
            let Some(slot) = self.positions.get(&node).and_then(|&i| nodes.get_mut(i)) else {
                continue;
            };
            slot.add_pod(info);
            self.stale.insert(node);
        }
        shared.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::test_util::*;

    #[test]
    fn an_assumed_pod_counts_until_it_is_removed() {
        let mut cache = Cache::default();
        let node = node("node-0", "1", "1Gi", "110");
        cache.set_node(node.node.clone().unwrap_or_default());
        let pod = pod("p", Some("500m"), None);
        cache.assume(&pod.pod, "node-0");
        assert!(cache.contains_pod("p-uid"));
        assert_eq!(cache.snapshot()[0].requested.milli_cpu, 500);
        // The bound pod replaces the assumed one rather than doubling it.
        let mut bound = (*pod.pod).clone();
        bound.spec.get_or_insert_with(Default::default).node_name = Some("node-0".into());
        cache.set_pod(Arc::new(bound));
        assert_eq!(cache.snapshot()[0].requested.milli_cpu, 500);
        cache.remove_pod("p-uid");
        assert_eq!(cache.snapshot()[0].requested.milli_cpu, 0);
    }

    fn labelled(info: PodInfo, labels: &[(&str, &str)], affinity: serde_json::Value) -> Pod {
        let mut pod = (*info.pod).clone();
        pod.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        if let Some(spec) = pod.spec.as_mut() {
            spec.affinity = serde_json::from_value(affinity).ok();
        }
        pod
    }

    #[test]
    fn the_snapshot_follows_changes_and_a_held_snapshot_stays_as_taken() {
        let mut cache = Cache::default();
        for name in ["b", "a", "c"] {
            cache.set_node(
                ready(node(name, "1", "1Gi", "110"))
                    .node
                    .unwrap_or_default(),
            );
        }
        let before = cache.snapshot();
        let names: Vec<&str> = before.iter().map(|n| n.name()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        cache.assume(&pod("p", Some("300m"), None).pod, "b");
        // The cycle holding `before` still sees the old state; the next one sees the pod.
        assert_eq!(before[1].requested.milli_cpu, 0);
        let after = cache.snapshot();
        assert_eq!(after[1].requested.milli_cpu, 300);
        assert_eq!(after[1].pods.len(), 1);
        drop((before, after));
        // Updated in place once no cycle holds it.
        cache.assume(&pod("q", Some("200m"), None).pod, "b");
        assert_eq!(cache.snapshot()[1].requested.milli_cpu, 500);
        cache.remove_pod("p-uid");
        assert_eq!(cache.snapshot()[1].requested.milli_cpu, 200);
        // A node update (new allocatable) and a new node reach the snapshot.
        cache.set_node(ready(node("b", "2", "1Gi", "110")).node.unwrap_or_default());
        assert_eq!(cache.snapshot()[1].allocatable().milli_cpu, 2000);
        assert_eq!(cache.snapshot()[1].requested.milli_cpu, 200);
        cache.set_node(ready(node("0", "1", "1Gi", "110")).node.unwrap_or_default());
        let names: Vec<String> = cache
            .snapshot()
            .iter()
            .map(|n| n.name().to_string())
            .collect();
        assert_eq!(names, ["0", "a", "b", "c"]);
        cache.remove_node("a");
        assert_eq!(cache.snapshot().len(), 3);
        assert_eq!(cache.snapshot()[1].requested.milli_cpu, 200);
    }

    #[test]
    fn affinity_counts_follow_pods_added_and_removed() {
        let anti = serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        let mut cache = Cache::default();
        for name in ["a", "b"] {
            let info = with_node(ready(node(name, "1", "1Gi", "110")), |n| {
                n.metadata.labels =
                    Some([("kubernetes.io/hostname".to_string(), name.to_string())].into());
            });
            cache.set_node(info.node.unwrap_or_default());
        }
        let registry = crate::framework::Registry::default();
        let web = |name: &str| labelled(pod(name, None, None), &[("app", "web")], anti.clone());
        cache.assume(&web("w1"), "a");
        assert_eq!(cache.snapshot()[0].pods_with_affinity, 1);
        // A plain web pod may not join w1 (its anti-affinity) and must go to b.
        let plain = PodInfo::new(Arc::new(labelled(
            pod("p", None, None),
            &[("app", "web")],
            serde_json::Value::Null,
        )));
        for _ in 0..5 {
            let chosen =
                crate::algorithm::schedule(&registry, &plain, &cache.snapshot(), &mut rand::rng());
            assert_eq!(chosen.as_deref(), Ok("b"));
        }
        cache.assume(&web("w2"), "b");
        assert_eq!(cache.snapshot()[1].pods_with_affinity, 1);
        let chosen =
            crate::algorithm::schedule(&registry, &plain, &cache.snapshot(), &mut rand::rng());
        assert!(chosen.is_err(), "{chosen:?}");
        // Once w1 goes, a is free again and the count on a is back to 0.
        cache.remove_pod("w1-uid");
        assert_eq!(cache.snapshot()[0].pods_with_affinity, 0);
        let chosen =
            crate::algorithm::schedule(&registry, &plain, &cache.snapshot(), &mut rand::rng());
        assert_eq!(chosen.as_deref(), Ok("a"));
    }

    #[test]
    fn an_overlay_lasts_one_cycle_and_never_reaches_other_snapshots() {
        let mut cache = Cache::default();
        for name in ["a", "b", "c"] {
            cache.set_node(
                ready(node(name, "1", "1Gi", "110"))
                    .node
                    .unwrap_or_default(),
            );
        }
        cache.assume(&pod("bound", Some("100m"), None).pod, "b");
        let held = cache.snapshot();
        let cpu =
            |s: &[NodeInfo]| -> Vec<i64> { s.iter().map(|n| n.requested.milli_cpu).collect() };
        let nominated = vec![
            ("b".to_string(), pod("n1", Some("300m"), None)),
            ("c".to_string(), pod("n2", Some("500m"), None)),
            ("gone".to_string(), pod("n3", Some("700m"), None)),
        ];
        let overlaid = cache.snapshot_with(nominated.clone());
        assert_eq!(cpu(&overlaid), [0, 400, 500]);
        assert_eq!(overlaid[1].pods.len(), 2);
        // A snapshot held from before does not see the overlay, nor the pods' nodes in the cache.
        assert_eq!(cpu(&held), [0, 100, 0]);
        assert!(!cache.contains_pod("n1-uid"));
        drop((held, overlaid));
        // The next cycle without nominated pods sees the cache only.
        assert_eq!(cpu(&cache.snapshot()), [0, 100, 0]);
        // In place (no other holder), then a binding seen during the cycle: still restored.
        let overlaid = cache.snapshot_with(nominated);
        assert_eq!(cpu(&overlaid), [0, 400, 500]);
        drop(overlaid);
        cache.assume(&pod("late", Some("200m"), None).pod, "a");
        let next = cache.snapshot();
        assert_eq!(cpu(&next), [200, 100, 0]);
        assert_eq!(next[2].pods.len(), 0);
        drop(next);
        // An empty overlay is the plain snapshot.
        assert_eq!(cpu(&cache.snapshot_with(Vec::new())), [200, 100, 0]);
    }

    #[test]
    fn changes_made_while_a_cycle_holds_the_snapshot_all_reach_the_next_one() {
        let mut cache = Cache::default();
        for name in ["a", "b", "c"] {
            cache.set_node(
                ready(node(name, "1", "1Gi", "110"))
                    .node
                    .unwrap_or_default(),
            );
        }
        let held = cache.snapshot();
        cache.assume(&pod("p", Some("100m"), None).pod, "a");
        cache.assume(&pod("q", Some("200m"), None).pod, "c");
        cache.assume(&pod("r", Some("300m"), None).pod, "c");
        cache.remove_pod("q-uid");
        cache.set_node(ready(node("b", "2", "1Gi", "110")).node.unwrap_or_default());
        let cpu =
            |s: &[NodeInfo]| -> Vec<i64> { s.iter().map(|n| n.requested.milli_cpu).collect() };
        assert_eq!(cpu(&held), [0, 0, 0]);
        assert_eq!(held[1].allocatable().milli_cpu, 1000);
        drop(held);
        let next = cache.snapshot();
        assert_eq!(cpu(&next), [100, 0, 300]);
        assert_eq!(next[1].allocatable().milli_cpu, 2000);
        assert_eq!(next[2].pods.len(), 1);
        drop(next);
        // A node removed while held: the next snapshot is rebuilt without it.
        let held = cache.snapshot();
        cache.assume(&pod("s", Some("100m"), None).pod, "b");
        cache.remove_node("a");
        drop(held);
        let names: Vec<String> = cache
            .snapshot()
            .iter()
            .map(|n| n.name().to_string())
            .collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(cpu(&cache.snapshot()), [100, 300]);
    }
}
