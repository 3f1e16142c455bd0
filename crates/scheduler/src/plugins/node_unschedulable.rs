//! NodeUnschedulable (a cordoned node takes no pods unless they tolerate the
//! `node.kubernetes.io/unschedulable` taint) and NodeReady (the node's Ready condition is True).

use k8s_openapi::api::core::v1::{Node, Taint};

use super::taint_toleration::tolerates;
use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Unfit};

/// The taint a cordoned node implicitly has.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Whether the pod may go to the node as far as `spec.unschedulable` is concerned.
pub fn fits(pod: &PodInfo, node: &Node) -> bool {
    if !node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        return true;
    }
    let taint = Taint {
        key: UNSCHEDULABLE_TAINT.into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    let tolerations = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    tolerations.iter().any(|t| tolerates(t, &taint))
}

/// Whether the node reports Ready=True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The NodeUnschedulable filter.
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn unresolvable(&self, _reason: &str) -> bool {
        true
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        match node.node.as_deref() {
            Some(n) if fits(pod, n) => Ok(()),
            Some(_) => Err(vec!["node(s) were unschedulable".into()]),
            None => Err(vec!["node(s) not found".into()]),
        }
    }
}

/// The NodeReady filter.
pub struct NodeReady;

impl FilterPlugin for NodeReady {
    fn name(&self) -> &'static str {
        "NodeReady"
    }

    fn unresolvable(&self, _reason: &str) -> bool {
        true
    }

    fn filter(&self, _state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if node.ready() {
            Ok(())
        } else {
            Err(vec!["node(s) were not ready".into()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::test_util::*;
    use k8s_openapi::api::core::v1::{NodeCondition, Toleration};

    #[test]
    fn cordoned_nodes_take_only_tolerating_pods() {
        let cordoned = with_node(node("n", "1", "1Gi", "10"), |n| {
            n.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
        });
        let plain = pod("p", None, None);
        let tolerant = with_spec(pod("t", None, None), |s| {
            s.tolerations = Some(vec![Toleration {
                key: Some(UNSCHEDULABLE_TAINT.into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Toleration::default()
            }]);
        });
        assert!(NodeUnschedulable
            .filter(&CycleState::default(), &plain, &cordoned)
            .is_err());
        assert!(NodeUnschedulable
            .filter(&CycleState::default(), &tolerant, &cordoned)
            .is_ok());
        assert!(NodeUnschedulable
            .filter(&CycleState::default(), &plain, &node("m", "1", "1Gi", "10"))
            .is_ok());
    }

    #[test]
    fn only_ready_nodes_pass() {
        let ready = with_node(node("n", "1", "1Gi", "10"), |n| {
            n.status.get_or_insert_with(Default::default).conditions = Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..NodeCondition::default()
            }]);
        });
        assert!(NodeReady
            .filter(&CycleState::default(), &pod("p", None, None), &ready)
            .is_ok());
        assert!(NodeReady
            .filter(
                &CycleState::default(),
                &pod("p", None, None),
                &node("m", "1", "1Gi", "10")
            )
            .is_err());
    }
}
