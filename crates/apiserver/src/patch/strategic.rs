//! Strategic merge patch (`application/strategic-merge-patch+json`) on JSON objects, with the
//! merge keys of the list fields that matter (containers by `name`, volumeMounts by
//! `mountPath`, ports by `containerPort`/`port`, conditions by `type`, ...) and the directives
//! `$patch: delete|replace`, `$setElementOrder/<field>`, `$retainKeys` and
//! `$deleteFromPrimitiveList/<field>`. Lists without a merge key are replaced; `null` deletes.

use serde_json::{Map, Value};

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    /// The patch is not a JSON object.
    #[error("strategic merge patch must be a JSON object")]
    NotAnObject,
    /// A list element of a merge-keyed list lacks its merge key.
    #[error("map: {0} does not contain declared merge key: {1}")]
    MissingMergeKey(String, String),
    /// An unknown `$patch` directive.
    #[error("Unknown patch type: {0}")]
    UnknownDirective(String),
}

/// Field names whose lists merge by a key.
fn merge_key(field: &str, original: &[Value], patch: &[Value]) -> Option<&'static str> {
    let has = |k: &str| {
        original
            .iter()
            .chain(patch.iter())
            .any(|v| v.get(k).is_some())
    };
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" if has("containerPort") => Some("containerPort"),
        "ports" if has("port") => Some("port"),
        "ownerReferences" => Some("uid"),
        "conditions" => Some("type"),
        "taints" => Some("key"),
        "addresses" if has("type") => Some("type"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        _ => None,
    }
}

/// The merge key of the list `field` holding `items` (one source of truth for server-side
/// apply's associative lists).
pub fn list_merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    merge_key(field, items, &[])
}

/// The merge key of the list `field` whose items are those of `a` and `b` together.
pub fn lists_merge_key(field: &str, a: &[Value], b: &[Value]) -> Option<&'static str> {
    merge_key(field, a, b)
}

/// Whether the list of scalars `field` merges as a set.
pub fn is_set_list(field: &str) -> bool {
    primitive_merge(field)
}

/// Lists of strings that merge as sets.
fn primitive_merge(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Applies `patch` to `original`.
pub fn apply(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let patch = patch.as_object().ok_or(PatchError::NotAnObject)?;
    let original = original.as_object().cloned().unwrap_or_default();
    Ok(merge_map(original, patch)?
        .map(Value::Object)
        .unwrap_or(Value::Null))
}

/// Removes directive keys from a value that is inserted as-is.
fn strip(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|v| v.get("$patch").is_none())
                .map(strip)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Merges `patch` into `original`; `None` means the map is deleted (`$patch: delete`).
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            return Ok(match strip(&Value::Object(patch.clone())) {
                Value::Object(m) => Some(m),
                _ => None,
            })
        }
        Some("delete") => return Ok(None),
        Some("merge") | None => {}
        Some(other) => return Err(PatchError::UnknownDirective(other.into())),
    }
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            if let Some(order) = value.as_array() {
                orders.push((field.to_string(), order.clone()));
            }
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) =
                (original.get_mut(field), value.as_array())
            {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        match value {
            Value::Null => {
                original.remove(key);
            }
            Value::Object(p) => match original.remove(key) {
                Some(Value::Object(o)) => {
                    if let Some(m) = merge_map(o, p)? {
                        original.insert(key.clone(), Value::Object(m));
                    }
                }
                _ => {
                    if p.get("$patch").and_then(Value::as_str) != Some("delete") {
                        original.insert(key.clone(), strip(value));
                    }
                }
            },
            Value::Array(p) => {
                let merged = match original.remove(key) {
                    Some(Value::Array(o)) => merge_list(key, o, p)?,
                    _ => merge_list(key, Vec::new(), p)?,
                };
                original.insert(key.clone(), Value::Array(merged));
            }
            other => {
                original.insert(key.clone(), other.clone());
            }
        }
    }
    for (field, order) in orders {
        if let Some(Value::Array(list)) = original.get_mut(&field) {
            reorder(&field, list, &order);
        }
    }
    Ok(Some(original))
}

fn merge_list(
    field: &str,
    original: Vec<Value>,
    patch: &[Value],
) -> Result<Vec<Value>, PatchError> {
    if patch
        .iter()
        .any(|v| v.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|v| v.get("$patch").is_none())
            .map(strip)
            .collect());
    }
    if primitive_merge(field) {
        let mut out = original;
        for v in patch {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        return Ok(out);
    }
    let Some(key) = merge_key(field, &original, patch) else {
        return Ok(patch.iter().map(strip).collect());
    };
    let mut out = original;
    for item in patch {
        let Some(obj) = item.as_object() else {
            return Ok(patch.iter().map(strip).collect());
        };
        let Some(id) = obj.get(key) else {
            if obj.get("$patch").is_some() {
                continue;
            }
            return Err(PatchError::MissingMergeKey(
                Value::Object(obj.clone()).to_string(),
                key.to_string(),
            ));
        };
        let pos = out.iter().position(|o| o.get(key) == Some(id));
        if obj.get("$patch").and_then(Value::as_str) == Some("delete") {
            out.retain(|o| o.get(key) != Some(id));
            continue;
        }
        match pos {
            Some(i) => {
                let current = out[i].as_object().cloned().unwrap_or_default();
                match merge_map(current, obj)? {
                    Some(m) => out[i] = Value::Object(m),
                    None => {
                        out.remove(i);
                    }
                }
            }
            None => out.push(strip(item)),
        }
    }
    Ok(out)
}

/// Orders `list` as `order` says (elements named in it first, in its order; the rest after).
fn reorder(field: &str, list: &mut Vec<Value>, order: &[Value]) {
    let key = merge_key(field, list, order);
    let id = |v: &Value| -> Value {
        match key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let wanted: Vec<Value> = order.iter().map(id).collect();
    let mut indexed: Vec<(usize, Value)> = list
        .drain(..)
        .enumerate()
        .map(|(i, v)| {
            let rank = wanted
                .iter()
                .position(|w| *w == id(&v))
                .unwrap_or(wanted.len() + i);
            (rank, v)
        })
        .collect();
    indexed.sort_by_key(|(rank, _)| *rank);
    list.extend(indexed.into_iter().map(|(_, v)| v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "web", "image": "busybox:1.35", "env": [{"name": "A", "value": "1"}],
                 "ports": [{"containerPort": 80}]},
                {"name": "side", "image": "busybox:1.35"}]}}}})
    }

    #[test]
    fn containers_merge_by_name() {
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "busybox:1.36"}]}}}});
        let out = apply(&deployment(), &p).expect("patch");
        let cs = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers");
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0]["image"], "busybox:1.36");
        assert_eq!(cs[0]["env"][0]["name"], "A");
        assert_eq!(cs[1]["name"], "side");
    }

    #[test]
    fn delete_directive_removes_list_element() {
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}});
        let out = apply(&deployment(), &p).expect("patch");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn replace_directive_replaces_maps_and_lists() {
        let p = json!({"metadata": {"labels": {"$patch": "replace", "x": "y"}}});
        let out = apply(&deployment(), &p).expect("patch");
        assert_eq!(out["metadata"]["labels"], json!({"x": "y"}));
        let p = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "i"}]}}}});
        let out = apply(&deployment(), &p).expect("patch");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "i"}])
        );
    }

    #[test]
    fn null_deletes_and_scalars_replace() {
        let p = json!({"metadata": {"labels": {"app": null}}, "spec": {"replicas": 3}});
        let out = apply(&deployment(), &p).expect("patch");
        assert_eq!(out["metadata"]["labels"], json!({}));
        assert_eq!(out["spec"]["replicas"], 3);
    }

    #[test]
    fn set_element_order_reorders() {
        let p = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
            "containers": [{"name": "side", "image": "x"}]}}}});
        let out = apply(&deployment(), &p).expect("patch");
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["name"], "side");
        assert_eq!(cs[0]["image"], "x");
        assert_eq!(cs[1]["name"], "web");
    }

    #[test]
    fn primitive_lists_merge_and_delete() {
        let p = json!({"metadata": {"finalizers": ["b"]}});
        let out = apply(&deployment(), &p).expect("patch");
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let p = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = apply(&deployment(), &p).expect("patch");
        assert_eq!(out["metadata"]["finalizers"], json!([]));
    }

    #[test]
    fn retain_keys_drops_other_fields() {
        let orig = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let p = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = apply(&orig, &p).expect("patch");
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn conditions_merge_by_type_and_unknown_lists_replace() {
        let orig = json!({"status": {"conditions": [{"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True"}], "podIPs": [{"ip": "1.1.1.1"}]}});
        let p = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "podIPs": [{"ip": "2.2.2.2"}]}});
        let out = apply(&orig, &p).expect("patch");
        assert_eq!(out["status"]["conditions"][0]["status"], "True");
        assert_eq!(
            out["status"]["conditions"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(out["status"]["podIPs"], json!([{"ip": "2.2.2.2"}]));
    }

    #[test]
    fn service_ports_merge_by_port() {
        let orig = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        let p = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        let out = apply(&orig, &p).expect("patch");
        assert_eq!(out["spec"]["ports"][0]["targetPort"], 8080);
        assert_eq!(out["spec"]["ports"].as_array().map(Vec::len), Some(2));
    }
}
