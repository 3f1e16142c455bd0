//! Client-side apply's patch: a three-way merge of the last-applied configuration (`original`),
//! the new manifest (`modified`) and the live object (`current`), as upstream's
//! `CreateThreeWayMergePatch`: fields dropped since last-applied are deleted (`null`), fields that
//! differ from the live object are set, and server-filled fields are left alone. Lists are sent
//! whole when they change; for strategic merge patches, list items keyed by `name` that were
//! dropped since last-applied get a `$patch: delete` directive.

use serde_json::{Map, Value};

/// The annotation holding the last applied configuration.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Which patch flavour the patch will be sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/strategic-merge-patch+json` (built-in kinds).
    Strategic,
    /// `application/merge-patch+json` (custom resources).
    Merge,
}

/// Computes the patch; an empty object means nothing to change.
pub fn three_way(
    original: Option<&Value>,
    modified: &Value,
    current: &Value,
    kind: PatchKind,
) -> Value {
    let mut patch = Map::new();
    if let (Some(Value::Object(orig)), Value::Object(modi)) = (original, modified) {
        deletions(orig, modi, &mut patch, kind);
    }
    if let (Value::Object(modi), Value::Object(cur)) = (modified, current) {
        let delta = changes(modi, cur);
        merge_into(&mut patch, delta);
    } else if modified != current {
        return modified.clone();
    }
    Value::Object(patch)
}

fn deletions(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    out: &mut Map<String, Value>,
    kind: PatchKind,
) {
    for (key, old) in original {
        match (old, modified.get(key)) {
            (_, None) => {
                out.insert(key.clone(), Value::Null);
            }
            (Value::Object(o), Some(Value::Object(m))) => {
                let mut nested = Map::new();
                deletions(o, m, &mut nested, kind);
                if !nested.is_empty() {
                    out.insert(key.clone(), Value::Object(nested));
                }
            }
            (Value::Array(o), Some(Value::Array(m))) if kind == PatchKind::Strategic => {
                let removed: Vec<Value> = o
                    .iter()
                    .filter_map(|item| item.get("name").and_then(Value::as_str))
                    .filter(|name| {
                        !m.iter()
                            .any(|n| n.get("name").and_then(Value::as_str) == Some(name))
                    })
                    .map(|name| serde_json::json!({"$patch": "delete", "name": name}))
                    .collect();
                if !removed.is_empty() {
                    out.insert(key.clone(), Value::Array(removed));
                }
            }
            _ => {}
        }
    }
}

/// Fields of `modified` that the live object lacks or holds differently.
fn changes(modified: &Map<String, Value>, current: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, want) in modified {
        match (want, current.get(key)) {
            (Value::Object(w), Some(Value::Object(c))) => {
                let nested = changes(w, c);
                if !nested.is_empty() {
                    out.insert(key.clone(), Value::Object(nested));
                }
            }
            (want, Some(have)) if contained(want, have) => {}
            (want, _) => {
                out.insert(key.clone(), want.clone());
            }
        }
    }
    out
}

/// Whether `have` already says everything `want` says (extra server-filled fields allowed).
fn contained(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| contained(v, hv))),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| contained(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

fn merge_into(target: &mut Map<String, Value>, delta: Map<String, Value>) {
    for (key, value) in delta {
        match (target.get_mut(&key), value) {
            (Some(Value::Object(t)), Value::Object(v)) => merge_into(t, v),
            (Some(Value::Array(t)), Value::Array(v)) => {
                // Set the whole new list, then the delete directives for dropped items.
                let deletes: Vec<Value> = std::mem::take(t);
                let mut combined = v;
                combined.extend(deletes);
                *t = combined;
            }
            (_, value) => {
                target.insert(key, value);
            }
        }
    }
}

/// The manifest as apply sends it: the object plus the last-applied annotation holding the
/// object itself (without that annotation, but with an `annotations` map, empty if need be, as
/// upstream records it), as compact JSON with a trailing newline.
pub fn with_last_applied(object: &Value) -> Value {
    let bare = without_last_applied(object);
    let mut text = bare.to_string();
    text.push('\n');
    let mut out = bare;
    if let Some(meta) = out.as_object_mut().map(|o| {
        o.entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()))
    }) {
        if let Some(meta) = meta.as_object_mut() {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(LAST_APPLIED.to_string(), Value::String(text));
            }
        }
    }
    out
}

/// The object without the last-applied annotation but with an `annotations` map (empty if need
/// be): what upstream's `GetModifiedConfiguration` encodes (and what `diff` merges).
pub fn without_last_applied(object: &Value) -> Value {
    let mut bare = object.clone();
    if let Some(meta) = bare.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.remove(LAST_APPLIED);
        } else {
            *annotations = Value::Object(Map::new());
        }
    }
    bare
}

/// The last-applied configuration recorded on a live object.
pub fn last_applied(live: &Value) -> Option<Value> {
    live.pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str(text).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i64, image: &str, extra_label: bool) -> Value {
        let mut labels = json!({"app": "web"});
        if extra_label {
            labels["tier"] = json!("front");
        }
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": labels},
               "spec": {"replicas": replicas,
                        "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn live(of: &Value) -> Value {
        let mut live = with_last_applied(of);
        live["metadata"]["uid"] = json!("u1");
        live["metadata"]["resourceVersion"] = json!("7");
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] =
            json!("IfNotPresent");
        live["status"] = json!({"replicas": 1});
        live
    }

    #[test]
    fn unchanged_manifests_produce_an_empty_patch() {
        let applied = deployment(1, "busybox:1.35", true);
        let current = live(&applied);
        let modified = with_last_applied(&applied);
        let patch = three_way(
            last_applied(&current).as_ref(),
            &modified,
            &current,
            PatchKind::Strategic,
        );
        assert_eq!(patch, json!({}));
    }

    #[test]
    fn changed_and_dropped_fields_are_patched() {
        let old = deployment(1, "busybox:1.35", true);
        let current = live(&old);
        let new = deployment(3, "busybox:1.36", false);
        let modified = with_last_applied(&new);
        let patch = three_way(
            last_applied(&current).as_ref(),
            &modified,
            &current,
            PatchKind::Strategic,
        );
        assert_eq!(patch["spec"]["replicas"], json!(3));
        assert_eq!(patch["metadata"]["labels"], json!({"tier": null}));
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c", "image": "busybox:1.36"}])
        );
        assert!(patch["metadata"]["annotations"][LAST_APPLIED].is_string());
        assert!(patch.get("status").is_none());
    }

    #[test]
    fn dropped_named_list_items_are_deleted_in_strategic_patches() {
        let mut old = deployment(1, "a", false);
        old["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "c", "image": "a"}, {"name": "sidecar", "image": "b"}]);
        let current = live(&old);
        let new = deployment(1, "a", false);
        let patch = three_way(
            last_applied(&current).as_ref(),
            &with_last_applied(&new),
            &current,
            PatchKind::Strategic,
        );
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c", "image": "a"}, {"$patch": "delete", "name": "sidecar"}])
        );
        let merge = three_way(
            last_applied(&current).as_ref(),
            &with_last_applied(&new),
            &current,
            PatchKind::Merge,
        );
        assert_eq!(
            merge["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c", "image": "a"}])
        );
    }

    #[test]
    fn last_applied_excludes_itself() {
        let object = with_last_applied(&with_last_applied(
            &json!({"kind": "Pod", "metadata": {"name": "p"}}),
        ));
        // As upstream records it: an empty annotations map stays in.
        assert_eq!(
            object["metadata"]["annotations"][LAST_APPLIED],
            json!("{\"kind\":\"Pod\",\"metadata\":{\"annotations\":{},\"name\":\"p\"}}\n")
        );
    }

    #[test]
    fn user_changes_outside_the_manifest_are_kept() {
        let applied = deployment(1, "x", false);
        let mut current = live(&applied);
        current["metadata"]["labels"]["added-by-hand"] = json!("yes");
        let patch = three_way(
            last_applied(&current).as_ref(),
            &with_last_applied(&applied),
            &current,
            PatchKind::Strategic,
        );
        assert_eq!(patch, json!({}));
    }
}
