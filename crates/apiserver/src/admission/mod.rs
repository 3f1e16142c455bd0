//! Built-in admission for the skeleton: defaulting (pods and pod templates, workloads,
//! services, namespaces), validation where a wrong object would break a component, and
//! allocation of Service ClusterIPs and NodePorts.

pub mod fields;
pub mod lifecycle;
pub mod limitranger;
pub mod lister;
pub mod noderestriction;
pub mod plugins;
mod pods;
pub mod podsecurity;
pub mod priority;
pub mod quota;
pub mod serviceaccount;
pub mod services;
pub mod tolerations;
mod validation;
mod workloads;

use api_types::registry::Resource;
use serde_json::Value;

use crate::state::ApiState;
use crate::status::ApiError;

pub use validation::{validate_create, validate_update};

/// Applies the defaults of `resource` to `object` (create and update).
pub fn default_object(resource: &Resource, object: &mut Value) {
    match (resource.group, resource.plural) {
        ("", "pods") => {
            if let Some(spec) = object.get_mut("spec") {
                pods::default_pod_spec(spec);
            }
            if object.pointer("/status/phase").is_none() && object.get("spec").is_some() {
                if !object.get("status").is_some_and(Value::is_object) {
                    object["status"] = serde_json::json!({});
                }
                object["status"]["phase"] = serde_json::json!("Pending");
            }
            if object.pointer("/status/qosClass").is_none() {
                if let Some(spec) = object.get("spec") {
                    let qos = pods::qos_class(spec);
                    if object.get("status").is_some_and(Value::is_object) {
                        object["status"]["qosClass"] = serde_json::json!(qos);
                    }
                }
            }
        }
        ("", "podtemplates") => pods::default_template(object.get_mut("template")),
        ("", "replicationcontrollers") => workloads::default_rc(object),
        ("apps", "deployments") => workloads::default_deployment(object),
        ("apps", "replicasets") => workloads::default_replicaset(object),
        ("apps", "statefulsets") => workloads::default_statefulset(object),
        ("apps", "daemonsets") => workloads::default_daemonset(object),
        ("batch", "jobs") => workloads::default_job(object),
        ("batch", "cronjobs") => workloads::default_cronjob(object),
        ("", "services") => services::default_service(object),
        ("", "limitranges") => limitranger::default_limit_range(object),
        ("", "secrets") => default_secret(object),
        _ => {}
    }
}

/// Secret defaults: type `Opaque`, and the write-only `stringData` folded into `data` (its
/// values, base64-encoded, win over `data` entries of the same key), as upstream's conversion
/// does.
fn default_secret(object: &mut Value) {
    use base64::Engine;
    if object
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        object["type"] = serde_json::json!("Opaque");
    }
    let Some(Value::Object(string_data)) =
        object.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    if !object.get("data").is_some_and(Value::is_object) {
        object["data"] = serde_json::json!({});
    }
    for (key, value) in string_data {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        object["data"][key] =
            Value::String(base64::engine::general_purpose::STANDARD.encode(text.as_bytes()));
    }
}

/// Resources whose status a create may not set (upstream's `PrepareForCreate` resets it).
fn status_reset_on_create(resource: &Resource) -> bool {
    matches!(
        (resource.group, resource.plural),
        ("", "pods")
            | ("", "services")
            | ("", "replicationcontrollers")
            | (
                "apps",
                "deployments" | "replicasets" | "statefulsets" | "daemonsets"
            )
            | ("batch", "jobs" | "cronjobs")
            | ("autoscaling", "horizontalpodautoscalers")
            | ("policy", "poddisruptionbudgets")
    )
}

/// Defaults that apply only when an object is created (status reset, namespace finalizer and
/// phase).
pub fn default_on_create(resource: &Resource, object: &mut Value) {
    if status_reset_on_create(resource) {
        if let Some(o) = object.as_object_mut() {
            o.insert("status".into(), serde_json::json!({}));
        }
    }
    if resource.group.is_empty() && resource.plural == "namespaces" {
        let name = crate::objects::name(object).unwrap_or("").to_string();
        if object.pointer("/spec/finalizers").is_none() {
            object["spec"] = serde_json::json!({"finalizers": ["kubernetes"]});
        }
        object["status"] = serde_json::json!({"phase": "Active"});
        let meta = crate::objects::meta_mut(object);
        let labels = meta
            .entry("labels")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert(
                "kubernetes.io/metadata.name".into(),
                serde_json::json!(name),
            );
        }
    }
}

/// Allocates what `object` needs from shared ranges (Service ClusterIPs and NodePorts); `old`
/// is the current object on update.
pub async fn allocate(
    state: &ApiState,
    resource: &Resource,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if resource.group.is_empty() && resource.plural == "services" {
        services::allocate(state, object, old).await?;
    }
    if resource.group.is_empty()
        && resource.plural == "pods"
        && old.is_none()
        && state.admission.enabled("ServiceAccount")
    {
        let namespace = objects_namespace(object);
        let name = crate::objects::name(object).unwrap_or("").to_string();
        serviceaccount::admit(state, &namespace, &name, object).await?;
    }
    if resource.group.is_empty()
        && resource.plural == "pods"
        && old.is_none()
        && state.admission.enabled("Priority")
    {
        priority::admit(state, object).await?;
    }
    Ok(())
}

/// The namespace of `object`.
fn objects_namespace(object: &Value) -> String {
    crate::objects::meta_str(object, "namespace")
        .unwrap_or("")
        .to_string()
}

/// Releases what `object` holds and `keep` (the object that stays, if any) does not.
pub async fn release(state: &ApiState, resource: &Resource, object: &Value, keep: Option<&Value>) {
    if resource.group.is_empty() && resource.plural == "services" {
        services::release(state, object, keep).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn secret_string_data_is_folded_into_data() {
        let mut secret = json!({
            "metadata": {"name": "s"},
            "data": {"a": "eA==", "b": "eQ=="},
            "stringData": {"b": "hello", "c": "wörld"},
        });
        super::default_secret(&mut secret);
        assert_eq!(secret["type"], "Opaque");
        assert!(secret.get("stringData").is_none());
        assert_eq!(
            secret["data"],
            json!({"a": "eA==", "b": "aGVsbG8=", "c": "d8O2cmxk"})
        );
    }
}
