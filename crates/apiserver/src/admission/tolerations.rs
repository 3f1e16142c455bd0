//! DefaultTolerationSeconds admission: a new pod that does not tolerate the
//! `node.kubernetes.io/not-ready` and `node.kubernetes.io/unreachable` NoExecute taints gets
//! tolerations for them with `tolerationSeconds: 300` (upstream's defaults).

use serde_json::{json, Value};

use super::plugins::{Operation, Request};

/// The not-ready taint key.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The unreachable taint key.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Upstream's `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`.
pub const DEFAULT_SECONDS: i64 = 300;

/// Adds the default tolerations to a pod being created.
pub fn admit(req: &Request<'_>, pod: &mut Value) {
    if req.operation != Operation::Create || !req.is("", "pods") || req.subresource.is_some() {
        return;
    }
    add_default_tolerations(pod);
}

/// Adds the two tolerations unless the pod already tolerates the taint (NoExecute or any effect).
pub fn add_default_tolerations(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = list.as_array_mut() else {
        return;
    };
    for key in [NOT_READY, UNREACHABLE] {
        let tolerated = list.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let tkey = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            (effect.is_empty() || effect == "NoExecute")
                && (tkey == key || (tkey.is_empty() && op == "Exists"))
        });
        if !tolerated {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_SECONDS}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tolerations_are_added_and_existing_ones_kept() {
        let mut pod = json!({"spec": {"containers": []}});
        add_default_tolerations(&mut pod);
        let t = pod["spec"]["tolerations"].as_array().expect("list");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 300);
        let mut pod = json!({"spec": {"tolerations": [{"key": NOT_READY, "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 10}]}});
        add_default_tolerations(&mut pod);
        let t = pod["spec"]["tolerations"].as_array().expect("list");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 10);
        assert_eq!(t[1]["key"], UNREACHABLE);
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        add_default_tolerations(&mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(1));
    }
}
