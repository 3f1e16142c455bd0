//! Priority admission: a pod's `spec.priority` (and `preemptionPolicy`) come from its
//! `priorityClassName`'s PriorityClass, or from the `globalDefault` class, else 0. An unknown
//! class name is 403 Forbidden, as upstream. The two system classes are created at bootstrap.

use serde_json::{json, Value};

use crate::objects;
use crate::state::ApiState;
use crate::status::ApiError;

/// `system-cluster-critical`'s value.
pub const SYSTEM_CLUSTER_CRITICAL: i64 = 2_000_000_000;
/// `system-node-critical`'s value.
pub const SYSTEM_NODE_CRITICAL: i64 = 2_000_001_000;

const PREFIX: &str = "/registry/scheduling.k8s.io/priorityclasses/";

/// Sets `spec.priority` and `spec.preemptionPolicy` of a new pod.
pub async fn admit(state: &ApiState, pod: &mut Value) -> Result<(), ApiError> {
    let Some(spec) = pod.get("spec").filter(|s| s.is_object()) else {
        return Ok(());
    };
    let class_name = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let class = match &class_name {
        Some(name) => {
            let class = super::lister::get(state, &format!("{PREFIX}{name}"))
                .await
                .map_err(ApiError::internal)?;
            let Some(class) = class else {
                return Err(ApiError::forbidden(format!(
                    "pods \"{}\" is forbidden: no PriorityClass with name {name} was found",
                    objects::name(pod).unwrap_or("")
                )));
            };
            Some(class)
        }
        None => {
            // Only classes that set globalDefault are decoded (every pod create asks).
            let list = super::lister::list_with_field(state, PREFIX, &["globalDefault"])
                .await
                .map_err(ApiError::internal)?;
            list.into_iter()
                .map(|listed| listed.value)
                .find(|pc| pc.get("globalDefault").and_then(Value::as_bool) == Some(true))
                .map(std::sync::Arc::new)
        }
    };
    let (value, policy) = match &class {
        Some(pc) => (
            pc.get("value").and_then(Value::as_i64).unwrap_or(0),
            pc.get("preemptionPolicy")
                .and_then(Value::as_str)
                .unwrap_or("PreemptLowerPriority")
                .to_string(),
        ),
        None => (0, "PreemptLowerPriority".to_string()),
    };
    // Upstream rejects a pod whose explicit priority differs from its class's; we keep an
    // explicit priority when no class is named (tests and tools set it directly).
    if class_name.is_none() && class.is_none() && spec.get("priority").is_some_and(Value::is_i64) {
        if pod.pointer("/spec/preemptionPolicy").is_none() {
            objects::put(pod, &["spec", "preemptionPolicy"], json!(policy));
        }
        return Ok(());
    }
    if let Some(asked) = spec.get("priority").and_then(Value::as_i64) {
        if asked != value {
            return Err(ApiError::forbidden(format!(
                "pods \"{}\" is forbidden: the integer value of priority ({asked}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name",
                objects::name(pod).unwrap_or("")
            )));
        }
    }
    objects::put(pod, &["spec", "priority"], json!(value));
    if pod.pointer("/spec/preemptionPolicy").is_none() {
        objects::put(pod, &["spec", "preemptionPolicy"], json!(policy));
    }
    if let (Some(pc), None) = (&class, &class_name) {
        if let Some(name) = objects::name(pc) {
            objects::put(pod, &["spec", "priorityClassName"], json!(name));
        }
    }
    Ok(())
}

/// The built-in PriorityClasses created at bootstrap.
pub fn system_classes() -> Vec<Value> {
    [
        ("system-cluster-critical", SYSTEM_CLUSTER_CRITICAL, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
        ("system-node-critical", SYSTEM_NODE_CRITICAL, "Used for system critical pods that must not be moved from their current node."),
    ]
    .iter()
    .map(|(name, value, description)| {
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value, "description": description,
            "preemptionPolicy": "PreemptLowerPriority"})
    })
    .collect()
}
