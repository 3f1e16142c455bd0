//! ServiceAccount admission (pod creates), as upstream: `spec.serviceAccountName` defaults to
//! `default`; the service account must exist (else 403 "error looking up service account");
//! unless `automountServiceAccountToken` is false on the pod (or, when the pod does not say, on
//! the service account), every container and init container gets a read-only mount of a
//! projected `kube-api-access-xxxxx` volume (bound token, `kube-root-ca.crt` `ca.crt`, the
//! namespace) at `/var/run/secrets/kubernetes.io/serviceaccount`; containers that already mount
//! something there are left alone. The service account's `imagePullSecrets` are copied to a pod
//! that has none. Mirror pods are not touched. Runs when the `ServiceAccount` admission plugin
//! is enabled (upstream default; the in-process test server disables it).

use serde_json::{json, Value};

use crate::objects;
use crate::state::ApiState;
use crate::status::ApiError;

/// Where the token volume is mounted.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Prefix of the projected volume's name.
pub const VOLUME_PREFIX: &str = "kube-api-access-";
/// `expirationSeconds` of the projected token (upstream's warn-only bound token lifetime).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The mirror-pod annotation.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The projected volume upstream adds.
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]
        }
    })
}

/// Adds the token volume and mounts (see the module docs) to a pod `spec`.
pub fn mount_token(spec: &mut Value) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .find(|n| n.starts_with(VOLUME_PREFIX))
                .map(str::to_string)
        });
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| objects::generate_name(VOLUME_PREFIX));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut() {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let taken = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH));
            if !taken {
                mounts.push(mount.clone());
                needed = true;
            }
        }
    }
    if needed && existing.is_none() {
        if let Some(spec) = spec.as_object_mut() {
            let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
            if let Some(vs) = volumes.as_array_mut() {
                vs.push(token_volume(&volume_name));
            }
        }
    }
}

/// Admits the new pod `pod` named `name` in `namespace`.
pub async fn admit(
    state: &ApiState,
    namespace: &str,
    name: &str,
    pod: &mut Value,
) -> Result<(), ApiError> {
    if pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_ANNOTATION))
        .is_some()
    {
        return Ok(());
    }
    let Some(spec) = pod.get_mut("spec").filter(|s| s.is_object()) else {
        return Ok(());
    };
    let sa_name = match spec.get("serviceAccountName").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            spec["serviceAccountName"] = json!("default");
            "default".to_string()
        }
    };
    let resource = api_types::registry::find("", "v1", "serviceaccounts")
        .ok_or_else(|| ApiError::internal("serviceaccounts are not registered"))?;
    let key = objects::key(resource, Some(namespace), &sa_name);
    // The `default` account is created by a controller just after its namespace: wait for it a
    // little, as upstream does.
    let attempts = if sa_name == "default" { 10 } else { 1 };
    let mut kv = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            let jitter = rand::random_range(100..200);
            tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
        }
        kv = super::lister::get(state, &key)
            .await
            .map_err(|e| crate::handlers::map_storage_error(resource, e, &sa_name))?;
        if kv.is_some() {
            break;
        }
    }
    let Some(sa) = kv else {
        let mut e = ApiError::forbidden(format!(
            "pods \"{name}\" is forbidden: error looking up service account {namespace}/{sa_name}: serviceaccount \"{sa_name}\" not found"
        ));
        e.details = Some(json!({"name": name, "kind": "pods"}));
        return Err(e);
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
    let pod_secrets_empty = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if pod_secrets_empty {
        if let Some(secrets) = sa
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .filter(|s| !s.is_empty())
        {
            spec["imagePullSecrets"] = json!(secrets);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_mounts_one_projected_volume() {
        let mut spec = json!({
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [
                {"name": "a", "image": "busybox"},
                {"name": "b", "image": "busybox",
                 "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]}
            ]
        });
        mount_token(&mut spec);
        let volumes = spec["volumes"].as_array().expect("volumes");
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().expect("name");
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(
            volumes[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        let expected = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([expected]));
        assert_eq!(spec["containers"][0]["volumeMounts"], json!([expected]));
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        // A second pass (idempotent) changes nothing.
        let before = spec.clone();
        mount_token(&mut spec);
        assert_eq!(spec, before);
    }

    #[test]
    fn containers_that_all_mount_the_path_get_no_volume() {
        let mut spec = json!({"containers": [{"name": "a",
            "volumeMounts": [{"name": "x", "mountPath": TOKEN_MOUNT_PATH}]}]});
        mount_token(&mut spec);
        assert!(spec.get("volumes").is_none());
    }
}
