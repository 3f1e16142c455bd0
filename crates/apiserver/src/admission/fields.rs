//! Schema checks of request bodies against the upstream protobuf schema
//! (`src/protobuf/schema.tsv`, whose field names are the JSON names): a value of the wrong JSON
//! type where an object or a list belongs is always a 400 (upstream fails to decode it), and with
//! `fieldValidation=Strict` (what kubectl sends) undeclared fields are a 400 too. Kinds missing
//! from the schema, and values with special JSON forms, are not checked.

use api_types::registry::Resource;
use serde_json::Value;

use crate::protobuf::{is_special, message_fields_ref, message_for, FieldShape};
use crate::status::ApiError;

/// What a walk found.
#[derive(Default)]
struct Findings {
    unknown: Vec<String>,
    wrong_type: Vec<String>,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Where a value sits in the walked object, rendered (`spec.containers[0].image`) only when
/// something is found there.
#[derive(Clone, Copy)]
enum At<'a> {
    Root,
    Field(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
    Key(&'a At<'a>, &'a str),
}

impl At<'_> {
    fn render(&self) -> String {
        match self {
            At::Root => String::new(),
            At::Field(At::Root, name) => (*name).to_string(),
            At::Field(parent, name) => format!("{}.{name}", parent.render()),
            At::Index(parent, i) => format!("{}[{i}]", parent.render()),
            At::Key(parent, k) => format!("{}[{k}]", parent.render()),
        }
    }
}

fn walk(message: &str, value: &Value, path: &At, top: bool, found: &mut Findings) {
    if is_special(message) {
        return;
    }
    let (Some(fields), Some(object)) = (message_fields_ref(message), value.as_object()) else {
        return;
    };
    for (key, child) in object {
        if top && (key == "apiVersion" || key == "kind") {
            continue;
        }
        let field_path = At::Field(path, key);
        let Some((_, shape, repeated)) = fields.iter().find(|(name, _, _)| name == key) else {
            found.unknown.push(field_path.render());
            continue;
        };
        if child.is_null() {
            continue;
        }
        if *repeated && !child.is_array() {
            found.wrong_type.push(format!(
                "cannot unmarshal {} into field {} of type array",
                json_type(child),
                field_path.render()
            ));
            continue;
        }
        let scalar_ok = |v: &Value| match shape {
            FieldShape::Text => v.is_string(),
            FieldShape::Integer => v.is_i64() || v.is_u64(),
            FieldShape::Boolean => v.is_boolean(),
            _ => true,
        };
        let scalar_name = match shape {
            FieldShape::Text => "string",
            FieldShape::Integer => "integer",
            _ => "bool",
        };
        let mut check_scalar = |at: &At, v: &Value| {
            if !v.is_null() && !scalar_ok(v) {
                found.wrong_type.push(format!(
                    "cannot unmarshal {} into field {} of type {scalar_name}",
                    json_type(v),
                    at.render()
                ));
            }
        };
        match shape {
            FieldShape::Opaque => {}
            FieldShape::Text | FieldShape::Integer | FieldShape::Boolean if *repeated => {
                for (i, v) in child.as_array().into_iter().flatten().enumerate() {
                    check_scalar(&At::Index(&field_path, i), v);
                }
            }
            FieldShape::Text | FieldShape::Integer | FieldShape::Boolean => {
                check_scalar(&field_path, child);
            }
            FieldShape::Message(m) if *repeated => {
                for (i, item) in child.as_array().into_iter().flatten().enumerate() {
                    walk_message(m, item, &At::Index(&field_path, i), found);
                }
            }
            FieldShape::Message(m) => walk_message(m, child, &field_path, found),
            FieldShape::MapOf(m) => match child.as_object() {
                Some(map) => {
                    for (k, item) in map {
                        walk_message(m, item, &At::Key(&field_path, k), found);
                    }
                }
                None => found.wrong_type.push(format!(
                    "cannot unmarshal {} into field {} of type map",
                    json_type(child),
                    field_path.render()
                )),
            },
        }
    }
}

/// Walks a nested message value, which must be an object unless it has a special JSON form.
fn walk_message(message: &str, value: &Value, path: &At, found: &mut Findings) {
    if is_special(message) || value.is_null() {
        return;
    }
    if !value.is_object() {
        found.wrong_type.push(format!(
            "cannot unmarshal {} into field {} of type object",
            json_type(value),
            path.render()
        ));
        return;
    }
    walk(message, value, path, false, found);
}

fn findings(resource: &Resource, object: &Value) -> Findings {
    let mut found = Findings::default();
    if let Some(message) = message_for(&resource.api_version(), resource.kind) {
        walk(&message, object, &At::Root, true, &mut found);
    }
    found
}

/// Fields of `object` (of `resource`) that its schema does not declare.
pub fn unknown_fields(resource: &Resource, object: &Value) -> Vec<String> {
    findings(resource, object).unknown
}

/// Rejects values of the wrong JSON type, and unknown fields when the request asked for
/// `fieldValidation=Strict`; otherwise answers the unknown fields (for warnings), from the
/// same walk.
pub fn check(
    resource: &Resource,
    object: &Value,
    directive: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let found = findings(resource, object);
    if let Some(first) = found.wrong_type.first() {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: json: {first}",
            resource.kind, resource.version, resource.kind
        )));
    }
    let unknown = found.unknown;
    if directive != Some("Strict") || unknown.is_empty() {
        return Ok(unknown);
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
    fn wrong_json_types_are_rejected_without_strict() {
        let r = api_types::registry::find("", "v1", "services").expect("services");
        let e = check(r, &json!({"metadata": {"name": "s"}, "spec": "oops"}), None)
            .expect_err("wrong type");
        assert_eq!(e.code, 400);
        assert!(
            e.message
                .contains("cannot unmarshal string into field spec of type object"),
            "{}",
            e.message
        );
        let e = check(r, &json!({"spec": {"ports": [5]}}), None).expect_err("wrong type");
        assert!(e.message.contains("spec.ports[0]"), "{}", e.message);
        let e =
            check(r, &json!({"spec": {"ports": [{"port": "80"}]}}), None).expect_err("string port");
        assert!(
            e.message.contains("spec.ports[0].port of type integer"),
            "{}",
            e.message
        );
        let e = check(r, &json!({"spec": {"clusterIPs": [1]}}), None).expect_err("number ip");
        assert!(
            e.message.contains("spec.clusterIPs[0] of type string"),
            "{}",
            e.message
        );
    }

    #[test]
    fn valid_objects_pass() {
        let r = api_types::registry::find("", "v1", "services").expect("services");
        let s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}});
        assert!(unknown_fields(r, &s).is_empty());
    }

    #[test]
    fn fields_of_inline_embedded_structs_are_known() {
        let r = api_types::registry::find("", "v1", "pods").expect("pods");
        let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "x",
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                "livenessProbe": {"exec": {"command": ["true"]}},
                "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}],
                "envFrom": [{"secretRef": {"name": "s"}}]}],
              "volumes": [{"name": "v", "emptyDir": {}},
                          {"name": "w", "configMap": {"name": "cm"}}]}});
        assert!(
            unknown_fields(r, &p).is_empty(),
            "{:?}",
            unknown_fields(r, &p)
        );
        let typo = json!({"spec": {"containers": [{"name": "c",
            "readinessProbe": {"httpGett": {"port": 1}}}]}});
        assert_eq!(
            unknown_fields(r, &typo),
            vec!["spec.containers[0].readinessProbe.httpGett"]
        );
    }
}
