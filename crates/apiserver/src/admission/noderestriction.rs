//! NodeRestriction admission, as upstream's: a node identity (`system:node:<name>`) may only
//! modify its own Node (and not its taints, podCIDRs or labels outside the kubelet set), create
//! only mirror pods bound to itself, delete and update the status of pods bound to itself, evict
//! only those, and create only its own Lease. Other users are not affected.

use serde_json::Value;

use super::plugins::{forbidden, Operation, Request};
use crate::authz::node::node_name;
use crate::status::ApiError;

/// The annotation that marks a mirror pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Labels in the kubernetes.io / k8s.io namespaces a kubelet may set on its Node.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

/// Label namespaces a kubelet may use freely.
const KUBELET_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

/// Whether a kubelet may not set the label `key` on its Node.
pub fn forbidden_label(key: &str) -> bool {
    let Some((namespace, _)) = key.split_once('/') else {
        return false;
    };
    let namespace = namespace.to_ascii_lowercase();
    if namespace == "node-restriction.kubernetes.io"
        || namespace.ends_with(".node-restriction.kubernetes.io")
    {
        return true;
    }
    let restricted = namespace == "kubernetes.io"
        || namespace == "k8s.io"
        || namespace.ends_with(".kubernetes.io")
        || namespace.ends_with(".k8s.io");
    if !restricted {
        return false;
    }
    let allowed = KUBELET_LABELS.contains(&key)
        || KUBELET_NAMESPACES
            .iter()
            .any(|ns| namespace == *ns || namespace.ends_with(&format!(".{ns}")));
    !allowed
}

fn labels(object: Option<&Value>) -> serde_json::Map<String, Value> {
    object
        .and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn node_of(pod: Option<&Value>) -> &str {
    pod.and_then(|p| p.pointer("/spec/nodeName"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Checks `req` (`object` is the new object of a create or update).
pub fn admit(req: &Request<'_>, object: Option<&Value>) -> Result<(), ApiError> {
    let Some(node) = node_name(req.user) else {
        return Ok(());
    };
    match (req.resource.group, req.resource.plural) {
        ("", "pods") => admit_pod(req, node, object),
        ("", "nodes") => admit_node(req, node, object),
        ("coordination.k8s.io", "leases") => {
            if req.operation == Operation::Create
                && (req.namespace != Some(crate::authz::node::NODE_LEASE_NAMESPACE)
                    || req.name != node)
            {
                return Err(forbidden(
                    req,
                    req.name,
                    "can only access node lease with the same name as the requesting node",
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn admit_pod(req: &Request<'_>, node: &str, object: Option<&Value>) -> Result<(), ApiError> {
    match (req.sub(), req.operation) {
        ("", Operation::Create) => {
            let pod = object.unwrap_or(&Value::Null);
            let mirror = pod
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(MIRROR_ANNOTATION))
                .is_some();
            if !mirror {
                return Err(forbidden(
                    req,
                    req.name,
                    format!("pod does not have \"{MIRROR_ANNOTATION}\" annotation, node \"{node}\" can only create mirror pods"),
                ));
            }
            if node_of(object) != node {
                return Err(forbidden(
                    req,
                    req.name,
                    format!("node \"{node}\" can only create pods with spec.nodeName set to itself"),
                ));
            }
            let refs = crate::authz::node::pod_references(pod);
            if refs
                .iter()
                .any(|(k, _)| *k != crate::authz::node::Kind::ServiceAccount)
            {
                return Err(forbidden(
                    req,
                    req.name,
                    "node may not create pods that reference secrets, configmaps or persistentvolumeclaims",
                ));
            }
            Ok(())
        }
        ("", Operation::Delete) => {
            if node_of(req.old) != node {
                return Err(forbidden(
                    req,
                    req.name,
                    format!("node \"{node}\" can only delete pods with spec.nodeName set to itself"),
                ));
            }
            Ok(())
        }
        ("", Operation::Update) => Err(forbidden(
            req,
            req.name,
            format!("unexpected operation UPDATE, node \"{node}\" can only create and delete mirror pods"),
        )),
        ("status", _) => {
            if node_of(req.old) != node {
                return Err(forbidden(
                    req,
                    req.name,
                    format!("node \"{node}\" can only update pod status for pods with spec.nodeName set to itself"),
                ));
            }
            Ok(())
        }
        ("eviction", _) => {
            if node_of(req.old) != node {
                return Err(forbidden(
                    req,
                    req.name,
                    format!("node \"{node}\" can only evict pods with spec.nodeName set to itself"),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn admit_node(req: &Request<'_>, node: &str, object: Option<&Value>) -> Result<(), ApiError> {
    if req.name != node {
        return Err(forbidden(
            req,
            req.name,
            format!(
                "node \"{node}\" is not allowed to modify node \"{}\"",
                req.name
            ),
        ));
    }
    match req.operation {
        Operation::Create => {
            let bad: Vec<String> = labels(object)
                .keys()
                .filter(|k| forbidden_label(k))
                .cloned()
                .collect();
            if !bad.is_empty() {
                return Err(forbidden(
                    req,
                    req.name,
                    format!(
                        "node \"{node}\" is not allowed to set the following labels: {}",
                        bad.join(", ")
                    ),
                ));
            }
            Ok(())
        }
        Operation::Update => {
            let (old, new) = (labels(req.old), labels(object));
            let mut bad: Vec<String> = old
                .keys()
                .chain(new.keys())
                .filter(|k| old.get(*k) != new.get(*k) && forbidden_label(k))
                .cloned()
                .collect();
            bad.sort();
            bad.dedup();
            if !bad.is_empty() {
                return Err(forbidden(
                    req,
                    req.name,
                    format!(
                        "node \"{node}\" is not allowed to modify labels: {}",
                        bad.join(", ")
                    ),
                ));
            }
            let field = |o: Option<&Value>, p: &str| o.and_then(|o| o.pointer(p)).cloned();
            if field(req.old, "/spec/taints") != field(object, "/spec/taints") {
                return Err(forbidden(
                    req,
                    req.name,
                    format!("node \"{node}\" is not allowed to modify taints"),
                ));
            }
            if field(req.old, "/spec/podCIDRs") != field(object, "/spec/podCIDRs")
                && field(object, "/spec/podCIDRs").is_some()
                && field(req.old, "/spec/podCIDRs").is_some()
            {
                return Err(forbidden(
                    req,
                    req.name,
                    format!("node \"{node}\" is not allowed to modify podCIDRs"),
                ));
            }
            Ok(())
        }
        Operation::Delete => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_labels_follow_upstream() {
        for ok in [
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
            "node.kubernetes.io/foo",
            "kubelet.kubernetes.io/x",
            "example.com/anything",
            "plain",
        ] {
            assert!(!forbidden_label(ok), "{ok}");
        }
        for bad in [
            "node-restriction.kubernetes.io/x",
            "node-role.kubernetes.io/control-plane",
            "kubernetes.io/other",
            "foo.k8s.io/x",
        ] {
            assert!(forbidden_label(bad), "{bad}");
        }
    }
}
