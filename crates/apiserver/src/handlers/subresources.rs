//! Subresources with their own shapes: `scale` (autoscaling/v1 Scale), `pods/binding` (and the
//! `bindings` resource) and `pods/eviction`. `status` and `namespaces/finalize` go through the
//! ordinary update path.

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::update::{apply_patch, guaranteed_update, guaranteed_update_tracked};
use super::{json_response, parse_object, read, Ctx};
use crate::objects;
use crate::request::ResourcePath;
use crate::status::ApiError;

/// The string form of a label selector object (`matchLabels` + `matchExpressions`) or of a plain
/// map selector (replication controllers).
pub fn selector_string(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return String::new();
    };
    let mut parts = Vec::new();
    let labels = selector
        .get("matchLabels")
        .or(if selector.get("matchExpressions").is_none() {
            Some(selector)
        } else {
            None
        });
    if let Some(map) = labels.and_then(Value::as_object) {
        let mut kv: Vec<_> = map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
            .collect();
        kv.sort();
        parts.extend(kv);
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => parts.push(format!("{key} in ({})", values.join(","))),
                Some("NotIn") => parts.push(format!("{key} notin ({})", values.join(","))),
                Some("Exists") => parts.push(key.to_string()),
                Some("DoesNotExist") => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

/// The Scale of an object.
pub fn scale_of(object: &Value) -> Value {
    let meta = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut m = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            m[f] = v.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": m,
        "spec": {"replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(object.pointer("/spec/selector")),
        },
    })
}

/// GET `.../scale`.
pub async fn get_scale(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let (object, _) = read::load(ctx, ctx.name()?).await?;
    Ok(json_response(StatusCode::OK, &scale_of(&object)))
}

async fn set_replicas(ctx: &Ctx, scale: Value) -> Result<Response<Body>, ApiError> {
    let name = ctx.name()?.to_string();
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            &name,
            vec![crate::status::Cause {
                reason: "FieldValueInvalid",
                message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                field: "spec.replicas".into(),
            }],
        ));
    }
    let precondition = objects::meta_str(&scale, "resourceVersion").map(str::to_string);
    let updated = guaranteed_update(ctx, &name, |current| {
        let mut new = current.clone();
        objects::put(&mut new, &["spec", "replicas"], json!(replicas));
        match &precondition {
            Some(rv) => {
                objects::meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
            }
            None => {
                objects::meta_mut(&mut new).remove("resourceVersion");
            }
        }
        Ok(new)
    })
    .await?;
    Ok(json_response(StatusCode::OK, &scale_of(&updated.object)))
}

/// PUT `.../scale`.
pub async fn put_scale(ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let scale = parse_object(body)?;
    set_replicas(ctx, scale).await
}

/// PATCH `.../scale`.
pub async fn patch_scale(
    ctx: &Ctx,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let (object, _) = read::load(ctx, ctx.name()?).await?;
    let current = scale_of(&object);
    let mut patched = apply_patch(&current, content_type, body)?;
    if objects::meta_str(&patched, "resourceVersion")
        == objects::meta_str(&current, "resourceVersion")
    {
        objects::meta_mut(&mut patched).remove("resourceVersion");
    }
    set_replicas(ctx, patched).await
}

fn pods_ctx(ctx: &Ctx, name: String) -> Result<Ctx, ApiError> {
    let pods = api_types::registry::find("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods are not registered"))?;
    Ok(Ctx {
        state: ctx.state.clone(),
        user: ctx.user.clone(),
        path: ResourcePath {
            resource: pods,
            namespace: ctx.path.namespace.clone(),
            name: Some(name),
            subresource: Some("binding".into()),
            watch: false,
        },
        query: ctx.query.clone(),
        output: ctx.output,
    })
}

/// POST `pods/<name>/binding` or `bindings`: sets `spec.nodeName` once.
pub async fn binding(ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let binding = parse_object(body)?;
    let name = match &ctx.path.name {
        Some(n) => n.clone(),
        None => objects::name(&binding)
            .ok_or_else(|| ApiError::bad_request("binding has no name"))?
            .to_string(),
    };
    if let Some(body_name) = objects::name(&binding) {
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
    }
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "Binding",
                "",
                &name,
                vec![crate::status::Cause {
                    reason: "FieldValueRequired",
                    message: "Required value".into(),
                    field: "target.name".into(),
                }],
            )
        })?
        .to_string();
    let pods = pods_ctx(ctx, name.clone())?;
    let uid = objects::meta_str(&binding, "uid").map(str::to_string);
    // As upstream's binding storage, the pod is written without a field manager entry: its
    // managedFields stay those of its creator and the kubelet.
    guaranteed_update_tracked(&pods, &name, false, |current| {
        if let Some(uid) = &uid {
            if objects::meta_str(current, "uid") != Some(uid.as_str()) {
                return Err(ApiError::conflict(
                    "pods",
                    "",
                    &name,
                    "the UID in the binding does not match the pod",
                ));
            }
        }
        if objects::is_deleting(current) {
            return Err(ApiError::conflict(
                "pods",
                "",
                &name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(existing) = current
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                "pods",
                "",
                &name,
                &format!("pod {name} is already assigned to node \"{existing}\""),
            ));
        }
        let mut new = current.clone();
        objects::put(&mut new, &["spec", "nodeName"], json!(node));
        objects::meta_mut(&mut new).remove("resourceVersion");
        set_condition(
            &mut new,
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                "lastTransitionTime": objects::now()}),
        );
        Ok(new)
    })
    .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// Replaces (or adds) a condition of the same type in `status.conditions`.
fn set_condition(object: &mut Value, condition: Value) {
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({});
    }
    let kind = condition.get("type").cloned();
    let conditions = object["status"]
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    if let Some(Value::Array(list)) = conditions {
        list.retain(|c| c.get("type") != kind.as_ref());
        list.push(condition);
    }
}

/// POST `pods/<name>/eviction`: deletes the pod with the eviction's DeleteOptions (no
/// PodDisruptionBudget check yet).
pub async fn eviction(ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let eviction = parse_object(body)?;
    let name = ctx.name()?.to_string();
    let opts_body = eviction
        .get("deleteOptions")
        .map(|o| serde_json::to_vec(o).unwrap_or_default())
        .unwrap_or_default();
    let mut pods = pods_ctx(ctx, name.clone())?;
    pods.path.subresource = None;
    let opts = super::delete::delete_options(&pods, &opts_body)?;
    super::delete::delete_one(&pods, &name, &opts).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_render_as_strings() {
        let s = json!({"matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]}]});
        assert_eq!(selector_string(Some(&s)), "a=1,b=2,t in (x,y)");
        assert_eq!(selector_string(Some(&json!({"app": "web"}))), "app=web");
    }

    #[test]
    fn scale_reports_spec_and_status_replicas() {
        let d = json!({"metadata": {"name": "d", "namespace": "n", "resourceVersion": "5"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web");
        assert_eq!(s["metadata"]["resourceVersion"], "5");
    }
}
