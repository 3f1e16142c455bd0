//! NodeName: a pod that names a node in `spec.nodeName` fits only that node.

use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Unfit};

/// Upstream's reason when the node is not the one the pod asks for.
pub const REASON: &str = "node(s) didn't match the requested node name";

/// Whether the pod may go to the node named `node`.
pub fn fits(pod: &PodInfo, node: &str) -> bool {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_none_or(|wanted| wanted.is_empty() || wanted == node)
}

/// The NodeName filter.
pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn unresolvable(&self, _reason: &str) -> bool {
        true
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if fits(pod, node.name()) {
            Ok(())
        } else {
            Err(vec![REASON.into()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::test_util::*;

    #[test]
    fn only_the_named_node_fits_a_pod_that_names_one() {
        let free = pod("free", None, None);
        let pinned = with_spec(pod("pinned", None, None), |s| {
            s.node_name = Some("node-b".into())
        });
        let a = node("node-a", "1", "1Gi", "110");
        let b = node("node-b", "1", "1Gi", "110");
        let state = CycleState::default();
        assert!(NodeName.filter(&state, &free, &a).is_ok());
        assert!(NodeName.filter(&state, &pinned, &b).is_ok());
        assert_eq!(
            NodeName.filter(&state, &pinned, &a),
            Err(vec![REASON.to_string()])
        );
        assert!(NodeName.unresolvable(REASON));
    }
}
