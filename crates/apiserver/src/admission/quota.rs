//! ResourceQuota admission, as upstream's: a create whose usage ([`usage`]) would take a
//! namespace's ResourceQuota past `status.hard` is refused with 403 `exceeded quota: ...`;
//! otherwise the usage is charged to the quota's `status.used` with a compare-and-swap write,
//! so two concurrent creates cannot both take the last unit. Quotas with scopes are not
//! enforced here. The resource quota controller (controller-manager) recomputes usage from the
//! objects and fills in `status` for new quotas; until then creates the quota tracks are refused
//! with `status unknown for quota`, as upstream.

use std::collections::BTreeMap;

use api_types::quantity::Quantity;
use api_types::registry::Resource;
use serde_json::{json, Value};

use super::plugins::{forbidden, Operation, Request};
use crate::status::ApiError;
use crate::storage::StorageError;

/// Resource names of the form `count/<resource>[.<group>]` for `resource`.
pub fn count_name(resource: &Resource) -> String {
    if resource.group.is_empty() {
        format!("count/{}", resource.plural)
    } else {
        format!("count/{}.{}", resource.plural, resource.group)
    }
}

fn quantity(v: Option<&Value>) -> Option<Quantity> {
    match v? {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

fn one() -> Quantity {
    Quantity::from_milli(1000)
}

/// Compute resources a pod's containers request or limit: `(requests, limits)` summed over the
/// containers and maxed with each init container, as upstream's pod usage.
pub fn pod_resources(pod: &Value) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let sum = |field: &str| {
        let mut total: BTreeMap<String, Quantity> = BTreeMap::new();
        for c in pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for (k, v) in c
                .pointer(&format!("/resources/{field}"))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(q) = quantity(Some(v)) {
                    let e = total.entry(k.clone()).or_insert(Quantity::ZERO);
                    *e = *e + q;
                }
            }
        }
        for c in pod
            .pointer("/spec/initContainers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for (k, v) in c
                .pointer(&format!("/resources/{field}"))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(q) = quantity(Some(v)) {
                    let e = total.entry(k.clone()).or_insert(Quantity::ZERO);
                    if q > *e {
                        *e = q;
                    }
                }
            }
        }
        total
    };
    (sum("requests"), sum("limits"))
}

/// What creating `object` of `resource` uses, by quota resource name.
pub fn usage(resource: &Resource, object: &Value) -> BTreeMap<String, Quantity> {
    let mut u = BTreeMap::new();
    u.insert(count_name(resource), one());
    match (resource.group, resource.plural) {
        ("", "pods") => {
            let phase = object.pointer("/status/phase").and_then(Value::as_str);
            if matches!(phase, Some("Succeeded" | "Failed")) {
                return u;
            }
            u.insert("pods".into(), one());
            let (requests, limits) = pod_resources(object);
            for (k, q) in requests {
                if k == "cpu" || k == "memory" {
                    u.insert(k.clone(), q);
                }
                u.insert(format!("requests.{k}"), q);
            }
            for (k, q) in limits {
                u.insert(format!("limits.{k}"), q);
            }
        }
        ("", "services") => {
            u.insert("services".into(), one());
            let ty = object
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            if ty == "NodePort" || ty == "LoadBalancer" {
                let ports = object
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                u.insert(
                    "services.nodeports".into(),
                    Quantity::from_milli(1000 * ports as i128),
                );
            }
            if ty == "LoadBalancer" {
                u.insert("services.loadbalancers".into(), one());
            }
        }
        ("", "persistentvolumeclaims") => {
            u.insert("persistentvolumeclaims".into(), one());
            if let Some(q) = quantity(object.pointer("/spec/resources/requests/storage")) {
                u.insert("requests.storage".into(), q);
            }
        }
        ("", plural @ ("secrets" | "configmaps" | "replicationcontrollers" | "resourcequotas")) => {
            u.insert(plural.to_string(), one());
        }
        _ => {}
    }
    u
}

/// For pods: `must specify <resource> for: <containers>` when a quota tracks a compute
/// resource that some container does not set.
fn missing_compute(object: &Value, hard: &BTreeMap<String, Quantity>) -> Option<String> {
    let mut parts = Vec::new();
    for (name, field, res) in [
        ("requests.cpu", "requests", "cpu"),
        ("cpu", "requests", "cpu"),
        ("requests.memory", "requests", "memory"),
        ("memory", "requests", "memory"),
        ("limits.cpu", "limits", "cpu"),
        ("limits.memory", "limits", "memory"),
    ] {
        if !hard.contains_key(name) {
            continue;
        }
        let missing: Vec<&str> = ["initContainers", "containers"]
            .iter()
            .flat_map(|l| {
                object
                    .pointer(&format!("/spec/{l}"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter(|c| c.pointer(&format!("/resources/{field}/{res}")).is_none())
            .map(|c| c.get("name").and_then(Value::as_str).unwrap_or(""))
            .collect();
        if !missing.is_empty() {
            parts.push(format!("{name} for: {}", missing.join(",")));
        }
    }
    (!parts.is_empty()).then(|| format!("must specify {}", parts.join("; ")))
}

fn resource_list(v: Option<&Value>) -> BTreeMap<String, Quantity> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| quantity(Some(v)).map(|q| (k.clone(), q)))
        .collect()
}

fn pretty(list: &BTreeMap<String, Quantity>, keys: &[String]) -> String {
    keys.iter()
        .filter_map(|k| list.get(k).map(|q| format!("{k}={q}")))
        .collect::<Vec<_>>()
        .join(",")
}

fn scoped(quota: &Value) -> bool {
    quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty())
        || quota.pointer("/spec/scopeSelector").is_some()
}

/// Checks and charges a create.
pub async fn admit(req: &Request<'_>, object: Option<&Value>) -> Result<(), ApiError> {
    let (Operation::Create, None, Some(object), Some(ns)) =
        (req.operation, req.subresource, object, req.namespace)
    else {
        return Ok(());
    };
    let Some(rq) = api_types::registry::find("", "v1", "resourcequotas") else {
        return Ok(());
    };
    // What the object uses is worked out only once a quota applies (most namespaces have none).
    let usage_of_object = std::cell::OnceCell::new();
    let prefix = crate::objects::list_prefix(rq, Some(ns));
    let mut charged: Vec<String> = Vec::new();
    for attempt in 0..32 {
        // The first attempt reads the watch cache; after a conflict, storage.
        let list = if attempt == 0 {
            super::lister::list(req.state, &prefix).await
        } else {
            super::lister::live_list(req.state, &prefix).await
        }
        .map_err(ApiError::internal)?;
        let mut writes = Vec::new();
        for listed in list {
            if charged.contains(&listed.key) {
                continue;
            }
            let mut quota = listed.value;
            if scoped(&quota) {
                continue;
            }
            let name = crate::objects::name(&quota).unwrap_or("").to_string();
            let mut hard = resource_list(quota.pointer("/status/hard"));
            if hard.is_empty() {
                hard = resource_list(quota.pointer("/spec/hard"));
            }
            let delta = usage_of_object.get_or_init(|| usage(req.resource, object));
            let interesting: Vec<String> = delta
                .keys()
                .filter(|k| hard.contains_key(*k))
                .cloned()
                .collect();
            if req.is("", "pods") {
                if let Some(msg) = missing_compute(object, &hard) {
                    return Err(forbidden(
                        req,
                        req.name,
                        format!("failed quota: {name}: {msg}"),
                    ));
                }
            }
            if interesting.is_empty() {
                continue;
            }
            let used = resource_list(quota.pointer("/status/used"));
            let unknown: Vec<&str> = interesting
                .iter()
                .filter(|k| !used.contains_key(*k))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(forbidden(
                    req,
                    req.name,
                    format!(
                        "status unknown for quota: {name}, resources: {}",
                        unknown.join(",")
                    ),
                ));
            }
            let mut new_used = used.clone();
            let mut exceeded = Vec::new();
            for k in &interesting {
                let total = used[k] + delta[k];
                if total > hard[k] {
                    exceeded.push(k.clone());
                }
                new_used.insert(k.clone(), total);
            }
            if !exceeded.is_empty() {
                return Err(forbidden(
                    req,
                    req.name,
                    format!(
                        "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                        pretty(delta, &exceeded),
                        pretty(&used, &exceeded),
                        pretty(&hard, &exceeded)
                    ),
                ));
            }
            if !quota.get("status").is_some_and(Value::is_object) {
                quota["status"] = json!({});
            }
            let used_json: serde_json::Map<String, Value> = new_used
                .iter()
                .map(|(k, q)| (k.clone(), json!(q.to_string())))
                .collect();
            quota["status"]["used"] = Value::Object(used_json);
            writes.push((listed.key, listed.revision, quota));
        }
        if req.dry_run {
            return Ok(());
        }
        let mut conflict = false;
        for (key, revision, quota) in writes {
            let value = crate::objects::encode_as(rq, &quota)?;
            match req.state.storage.update(&key, revision, value).await {
                Ok(_) => charged.push(key),
                Err(StorageError::Conflict { .. }) => {
                    conflict = true;
                    break;
                }
                Err(StorageError::NotFound { .. }) => {}
                Err(e) => return Err(ApiError::internal(e)),
            }
        }
        if !conflict {
            return Ok(());
        }
        tracing::debug!(
            namespace = ns,
            "resource quota changed while charging; retrying"
        );
    }
    Err(ApiError::conflict(
        rq.plural,
        rq.group,
        "",
        "too many concurrent quota updates, please retry",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_usage_counts_requests_limits_and_objects() {
        let pods = api_types::registry::find("", "v1", "pods").expect("pods");
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "200m"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}]}});
        let u = usage(pods, &pod);
        assert_eq!(u["pods"].to_string(), "1");
        assert_eq!(u["count/pods"].to_string(), "1");
        assert_eq!(u["requests.cpu"].to_string(), "1");
        assert_eq!(u["cpu"].to_string(), "1");
        assert_eq!(u["limits.memory"].to_string(), "64Mi");
        let hard = resource_list(Some(&json!({"limits.cpu": "1"})));
        assert_eq!(
            missing_compute(&pod, &hard).as_deref(),
            Some("must specify limits.cpu for: i,a,b")
        );
    }
}
