//! Validation where a wrong object would break a component: containers need a name and an
//! image, workload selectors must match their template labels, service ports need a port,
//! immutable fields stay put. Failures are 422 Invalid with causes, as upstream.

use api_types::registry::Resource;
use serde_json::Value;

use crate::objects;
use crate::selectors::LabelSelector;
use crate::status::{ApiError, Cause};

fn required(field: String) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        message: "Required value".into(),
        field,
    }
}

fn invalid(field: String, message: String) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        message,
        field,
    }
}

fn pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec else {
        causes.push(required(path.to_string()));
        return;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => causes.push(required(format!("{path}.containers"))),
        Some(cs) if cs.is_empty() => causes.push(required(format!("{path}.containers"))),
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    causes.push(required(format!("{path}.containers[{i}].name")));
                } else if !objects::is_dns1123_label(name) {
                    causes.push(invalid(
                        format!("{path}.containers[{i}].name"),
                        format!("Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
                    ));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    causes.push(required(format!("{path}.containers[{i}].image")));
                }
            }
            let mut names: Vec<&str> = cs
                .iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect();
            names.sort_unstable();
            for w in names.windows(2) {
                if w[0] == w[1] {
                    causes.push(Cause {
                        reason: "FieldValueDuplicate",
                        message: format!("Duplicate value: \"{}\"", w[0]),
                        field: format!("{path}.containers[1].name"),
                    });
                }
            }
        }
    }
}

fn selector_matches_template(object: &Value, causes: &mut Vec<Cause>) {
    let Some(selector) = object.pointer("/spec/selector") else {
        causes.push(required("spec.selector".into()));
        return;
    };
    let text = crate::handlers::selector_string(Some(selector));
    if text.is_empty() {
        causes.push(invalid(
            "spec.selector".into(),
            "Invalid value: \"null\": empty selector is invalid for deployment".into(),
        ));
        return;
    }
    let labels = object.pointer("/spec/template/metadata/labels");
    match LabelSelector::parse(&text) {
        Ok(sel) if sel.matches(labels) => {}
        _ => causes.push(invalid(
            "spec.template.metadata.labels".into(),
            format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                labels
                    .map(Value::to_string)
                    .unwrap_or_else(|| "null".into())
            ),
        )),
    }
}

fn validate(resource: &Resource, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match (resource.group, resource.plural) {
        ("", "pods") => pod_spec(object.get("spec"), "spec", &mut causes),
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") => {
            selector_matches_template(object, &mut causes);
            pod_spec(
                object.pointer("/spec/template/spec"),
                "spec.template.spec",
                &mut causes,
            );
            if let Some(r) = object.pointer("/spec/replicas").and_then(Value::as_i64) {
                if r < 0 {
                    causes.push(invalid(
                        "spec.replicas".into(),
                        format!("Invalid value: {r}: must be greater than or equal to 0"),
                    ));
                }
            }
        }
        ("", "replicationcontrollers") => {
            pod_spec(
                object.pointer("/spec/template/spec"),
                "spec.template.spec",
                &mut causes,
            );
        }
        ("batch", "jobs") => {
            pod_spec(
                object.pointer("/spec/template/spec"),
                "spec.template.spec",
                &mut causes,
            );
        }
        ("", "services") => {
            if let Some(ports) = object.pointer("/spec/ports").and_then(Value::as_array) {
                for (i, p) in ports.iter().enumerate() {
                    match p.get("port").and_then(Value::as_i64) {
                        None => causes.push(required(format!("spec.ports[{i}].port"))),
                        Some(port) if !(1..=65535).contains(&port) => causes.push(invalid(
                            format!("spec.ports[{i}].port"),
                            format!(
                                "Invalid value: {port}: must be between 1 and 65535, inclusive"
                            ),
                        )),
                        Some(_) => {}
                    }
                    if ports.len() > 1
                        && p.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .is_empty()
                    {
                        causes.push(required(format!("spec.ports[{i}].name")));
                    }
                }
            }
        }
        _ => {}
    }
    causes
}

fn result(resource: &Resource, object: &Value, causes: Vec<Cause>) -> Result<(), ApiError> {
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            resource.kind,
            resource.group,
            objects::name(object).unwrap_or(""),
            causes,
        ))
    }
}

/// Validates a new object.
pub fn validate_create(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    result(resource, object, validate(resource, object))
}

/// Validates an update of `old` to `new` (also immutable fields).
pub fn validate_update(resource: &Resource, old: &Value, new: &Value) -> Result<(), ApiError> {
    let mut causes = validate(resource, new);
    if resource.group == "apps"
        && matches!(
            resource.plural,
            "deployments" | "replicasets" | "statefulsets" | "daemonsets"
        )
    {
        let (a, b) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
        if a.is_some() && a != b {
            causes.push(invalid(
                "spec.selector".into(),
                format!(
                    "Invalid value: {}: field is immutable",
                    b.map(Value::to_string).unwrap_or_else(|| "null".into())
                ),
            ));
        }
    }
    if resource.group.is_empty() && resource.plural == "nodes" {
        // As upstream: a pod CIDR may be set once, never changed or removed.
        for (path, field) in [
            ("/spec/podCIDR", "spec.podCIDR"),
            ("/spec/podCIDRs", "spec.podCIDRs"),
        ] {
            let (a, b) = (old.pointer(path), new.pointer(path));
            let set = |v: Option<&Value>| {
                v.is_some_and(|v| v.as_str().map_or(!v.is_null(), |s| !s.is_empty()))
                    && v != Some(&Value::Array(Vec::new()))
            };
            if set(a) && a != b {
                causes.push(Cause {
                    reason: "FieldValueForbidden",
                    message: format!(
                        "Forbidden: node updates may not change {field} except from \"\" to valid"
                    ),
                    field: field.into(),
                });
            }
        }
    }
    if resource.group.is_empty() && resource.plural == "pods" {
        let (a, b) = (old.pointer("/spec/nodeName"), new.pointer("/spec/nodeName"));
        if a.and_then(Value::as_str).is_some_and(|s| !s.is_empty()) && a != b {
            causes.push(invalid("spec.nodeName".into(), "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into()));
        }
    }
    result(resource, new, causes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find(g: &str, p: &str) -> &'static Resource {
        api_types::registry::find(g, "v1", p).expect("resource")
    }

    #[test]
    fn pods_need_container_name_and_image() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
        let e = validate_create(find("", "pods"), &pod).expect_err("invalid");
        assert_eq!(e.code, 422);
        assert!(
            e.message
                .contains("spec.containers[0].image: Required value"),
            "{}",
            e.message
        );
    }

    #[test]
    fn deployment_selector_must_match_template() {
        let d = json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "other"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let e = validate_create(find("apps", "deployments"), &d).expect_err("invalid");
        assert!(e
            .message
            .contains("`selector` does not match template `labels`"));
    }

    #[test]
    fn a_node_pod_cidr_is_set_once() {
        let nodes = find("", "nodes");
        let unset = json!({"metadata": {"name": "n"}, "spec": {}});
        let set = json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}});
        let moved = json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"]}});
        assert!(validate_update(nodes, &unset, &set).is_ok());
        assert!(validate_update(nodes, &set, &set).is_ok());
        for new in [&moved, &unset] {
            let error = validate_update(nodes, &set, new).expect_err("changed pod CIDR");
            assert_eq!(error.status_code().as_u16(), 422, "{error:?}");
            assert!(format!("{error:?}").contains("spec.podCIDR"), "{error:?}");
        }
    }

    #[test]
    fn valid_deployment_passes() {
        let d = json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        validate_create(find("apps", "deployments"), &d).expect("valid");
    }
}
