//! Strict field validation (`fieldValidation=Strict`, what kubectl sends): fields that the
//! object's schema does not declare are rejected with 400, as upstream. The schema is the
//! upstream protobuf schema (`proto/k8s-schema.proto`), whose field names are the JSON names.
//! Kinds missing from it, and values with special JSON forms, are not checked.

use api_types::registry::Resource;
use serde_json::Value;

use crate::protobuf::{is_special, message_fields, message_for, FieldShape};
use crate::status::ApiError;

fn walk(message: &str, value: &Value, path: &str, top: bool, unknown: &mut Vec<String>) {
    if is_special(message) {
        return;
    }
    let (Some(fields), Some(object)) = (message_fields(message), value.as_object()) else {
        return;
    };
    for (key, child) in object {
        if top && (key == "apiVersion" || key == "kind") {
            continue;
        }
        let field_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let Some((_, shape, repeated)) = fields.iter().find(|(name, _, _)| name == key) else {
            unknown.push(field_path);
            continue;
        };
        match shape {
            FieldShape::Opaque => {}
            FieldShape::Message(m) if *repeated => {
                for (i, item) in child.as_array().into_iter().flatten().enumerate() {
                    walk(m, item, &format!("{field_path}[{i}]"), false, unknown);
                }
            }
            FieldShape::Message(m) => walk(m, child, &field_path, false, unknown),
            FieldShape::MapOf(m) => {
                for (k, item) in child.as_object().into_iter().flatten() {
                    walk(m, item, &format!("{field_path}[{k}]"), false, unknown);
                }
            }
        }
    }
}

/// Fields of `object` (of `resource`) that its schema does not declare.
pub fn unknown_fields(resource: &Resource, object: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(message) = message_for(&resource.api_version(), resource.kind) {
        walk(&message, object, "", true, &mut unknown);
    }
    unknown
}

/// Rejects unknown fields when the request asked for `fieldValidation=Strict`.
pub fn check(resource: &Resource, object: &Value, directive: Option<&str>) -> Result<(), ApiError> {
    if directive != Some("Strict") {
        return Ok(());
    }
    let unknown = unknown_fields(resource, object);
    if unknown.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    Err(ApiError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
        resource.kind,
        resource.version,
        resource.kind,
        list.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typos_are_found_with_their_paths() {
        let r = api_types::registry::find("apps", "v1", "deployments").expect("deployments");
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"a": "b"}, "creationTimestamp": null},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                    {"name": "c", "imagee": "x", "ports": [{"containerPort": 80}],
                     "resources": {"limits": {"cpu": "1"}}}]}}}});
        assert_eq!(
            unknown_fields(r, &d),
            vec!["spec.template.spec.containers[0].imagee"]
        );
        let e = check(r, &d, Some("Strict")).expect_err("strict");
        assert_eq!(e.code, 400);
        assert!(
            e.message.contains(
                "strict decoding error: unknown field \"spec.template.spec.containers[0].imagee\""
            ),
            "{}",
            e.message
        );
        assert!(check(r, &d, None).is_ok());
    }

    #[test]
    fn valid_objects_pass() {
        let r = api_types::registry::find("", "v1", "services").expect("services");
        let s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}});
        assert!(unknown_fields(r, &s).is_empty());
    }
}
