//! SchedulingGates (upstream's PreEnqueue plugin): a pod with a non-empty
//! `spec.schedulingGates` is not tried at all; it waits in the queue's gated set (counted as
//! `scheduler_pending_pods{queue="gated"}`) with `PodScheduled=False`, reason
//! `SchedulingGated`, until its last gate is removed.

use k8s_openapi::api::core::v1::Pod;

/// The `PodScheduled` condition's reason for a gated pod.
pub const REASON: &str = "SchedulingGated";
/// The `PodScheduled` condition's message for a gated pod.
pub const MESSAGE: &str = "Scheduling is blocked due to non-empty scheduling gates";

/// The pod's scheduling gate names.
pub fn gates(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .map(|gates| gates.iter().map(|g| g.name.clone()).collect())
        .unwrap_or_default()
}

/// Whether the pod must not be scheduled yet.
pub fn gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|gates| !gates.is_empty())
}

/// Whether a gated pod still lacks the `PodScheduled=False/SchedulingGated` condition.
pub fn needs_condition(pod: &Pod) -> bool {
    gated(pod)
        && !pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some(REASON))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap_or_default()
    }

    #[test]
    fn pods_with_gates_are_gated_until_the_last_one_goes() {
        let open = pod(serde_json::json!({"spec": {"containers": []}}));
        let empty = pod(serde_json::json!({"spec": {"containers": [], "schedulingGates": []}}));
        let closed = pod(serde_json::json!({"spec": {"containers": [],
            "schedulingGates": [{"name": "example.com/a"}, {"name": "example.com/b"}]}}));
        assert!(!gated(&open) && !gated(&empty));
        assert!(gated(&closed));
        assert_eq!(gates(&closed), ["example.com/a", "example.com/b"]);
        assert!(needs_condition(&closed));
        assert!(!needs_condition(&open));
        let mut marked = closed.clone();
        marked.status = Some(
            serde_json::from_value(serde_json::json!({"conditions": [{"type": "PodScheduled",
                "status": "False", "reason": REASON, "message": MESSAGE}]}))
            .unwrap_or_default(),
        );
        assert!(!needs_condition(&marked));
    }
}
