//! The scheduler cache: every node with the pods bound or assumed to it. A pod is assumed on its
//! node the moment it is chosen, so the next decision sees it before the binding is observed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{NodeInfo, PodInfo};

/// Nodes and the pods on them.
#[derive(Debug, Default)]
pub struct Cache {
    /// Nodes by name, in name order (the order of every snapshot).
    nodes: BTreeMap<String, NodeInfo>,
    /// Pod uid -> node name, for every pod in the cache.
    pod_nodes: HashMap<String, String>,
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
        let entry = self.nodes.entry(name).or_default();
        entry.node = Some(node);
    }

    /// The node called `name`, if known.
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(name).and_then(|n| n.node.clone())
    }

    /// Removes a node (its pods stay accounted until they go).
    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.get_mut(name) {
            info.node = None;
            if info.pods.is_empty() {
                self.nodes.remove(name);
            }
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
        }
    }

    /// Whether the pod is in the cache (bound or assumed).
    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pod_nodes.contains_key(uid)
    }

    /// A copy of every known node, in name order, for one scheduling cycle. Cheap: nodes and
    /// their pod maps are shared, not copied.
    pub fn snapshot(&self) -> Vec<NodeInfo> {
        self.nodes
            .values()
            .filter(|n| n.node.is_some())
            .cloned()
            .collect()
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
}
