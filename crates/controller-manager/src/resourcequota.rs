//! The resource quota controller (`resourcequota`): keeps every ResourceQuota's
//! `status.hard` equal to `spec.hard` and recomputes `status.used` from the objects in its
//! namespace (pods and their compute requests/limits, services, node ports, load balancers,
//! claims and storage, `count/<resource>[.<group>]`). It reacts to quota changes and to pods
//! and services coming and going (replenishment), and resyncs every quota periodically as
//! upstream's `--resource-quota-sync-period` does. Admission (`ResourceQuota` in the apiserver)
//! charges creates in between; a status write is a compare-and-swap on the quota's
//! resourceVersion, so it never overwrites a newer charge.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use api_types::quantity::Quantity;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota, ResourceQuotaStatus, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::context::Context;
use crate::informer::{Change, Informer};
use crate::queue::WorkQueue;
use crate::runner;

/// Upstream's default `--resource-quota-sync-period`.
pub const SYNC_PERIOD: Duration = Duration::from_secs(300);

/// Why a quota could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Listing the objects a quota counts failed.
    #[error("listing {resource} in {namespace}: {source}")]
    List {
        /// The resource.
        resource: String,
        /// The namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the quota status failed.
    #[error("updating status of resourcequota {key}: {source}")]
    UpdateStatus {
        /// `namespace/name`.
        key: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// The API resource (group, version, kind, plural) whose objects a quota resource name counts.
pub fn source_of(name: &str) -> Option<(&'static str, &'static str, &'static str, &'static str)> {
    let counted = name.strip_prefix("count/").unwrap_or(name);
    Some(match counted {
        "pods" | "cpu" | "memory" => ("", "v1", "Pod", "pods"),
        n if n.starts_with("requests.") && n != "requests.storage" => ("", "v1", "Pod", "pods"),
        n if n.starts_with("limits.") => ("", "v1", "Pod", "pods"),
        "services" | "services.nodeports" | "services.loadbalancers" => {
            ("", "v1", "Service", "services")
        }
        "persistentvolumeclaims" | "requests.storage" => {
            ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims")
        }
        "configmaps" => ("", "v1", "ConfigMap", "configmaps"),
        "secrets" => ("", "v1", "Secret", "secrets"),
        "replicationcontrollers" => ("", "v1", "ReplicationController", "replicationcontrollers"),
        "resourcequotas" => ("", "v1", "ResourceQuota", "resourcequotas"),
        "deployments.apps" => ("apps", "v1", "Deployment", "deployments"),
        "replicasets.apps" => ("apps", "v1", "ReplicaSet", "replicasets"),
        "statefulsets.apps" => ("apps", "v1", "StatefulSet", "statefulsets"),
        "daemonsets.apps" => ("apps", "v1", "DaemonSet", "daemonsets"),
        "jobs.batch" => ("batch", "v1", "Job", "jobs"),
        "cronjobs.batch" => ("batch", "v1", "CronJob", "cronjobs"),
        "ingresses.networking.k8s.io" => ("networking.k8s.io", "v1", "Ingress", "ingresses"),
        "leases.coordination.k8s.io" => ("coordination.k8s.io", "v1", "Lease", "leases"),
        _ => return None,
    })
}

fn quantity(v: Option<&Value>) -> Option<Quantity> {
    match v? {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

fn units(n: usize) -> Quantity {
    Quantity::from_milli(1000 * n as i128)
}

fn add(usage: &mut BTreeMap<String, Quantity>, name: &str, q: Quantity) {
    let e = usage.entry(name.to_string()).or_insert(Quantity::ZERO);
    *e = *e + q;
}

/// What one object of `plural` (in `group`) uses, by quota resource name (upstream's evaluators).
pub fn usage(group: &str, plural: &str, object: &Value) -> BTreeMap<String, Quantity> {
    let mut u = BTreeMap::new();
    let count = if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    };
    match (group, plural) {
        ("", "pods") => {
            let phase = object.pointer("/status/phase").and_then(Value::as_str);
            if matches!(phase, Some("Succeeded" | "Failed")) {
                return u;
            }
            add(&mut u, &count, units(1));
            add(&mut u, "pods", units(1));
            for (field, prefix) in [("requests", "requests."), ("limits", "limits.")] {
                for (k, q) in pod_totals(object, field) {
                    if field == "requests" && (k == "cpu" || k == "memory") {
                        add(&mut u, &k, q);
                    }
                    add(&mut u, &format!("{prefix}{k}"), q);
                }
            }
        }
        ("", "services") => {
            add(&mut u, &count, units(1));
            add(&mut u, "services", units(1));
            let ty = object
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            if ty == "NodePort" || ty == "LoadBalancer" {
                let ports = object
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                add(&mut u, "services.nodeports", units(ports));
            }
            if ty == "LoadBalancer" {
                add(&mut u, "services.loadbalancers", units(1));
            }
        }
        ("", "persistentvolumeclaims") => {
            add(&mut u, &count, units(1));
            add(&mut u, plural, units(1));
            if let Some(q) = quantity(object.pointer("/spec/resources/requests/storage")) {
                add(&mut u, "requests.storage", q);
            }
        }
        ("", "secrets" | "configmaps" | "replicationcontrollers" | "resourcequotas") => {
            add(&mut u, &count, units(1));
            add(&mut u, plural, units(1));
        }
        _ => add(&mut u, &count, units(1)),
    }
    u
}

/// A pod's requests or limits: containers summed, each init container as a floor.
fn pod_totals(pod: &Value, field: &str) -> BTreeMap<String, Quantity> {
    let list = |name: &str| {
        pod.pointer(&format!("/spec/{name}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let resources = |c: &Value| {
        c.pointer(&format!("/resources/{field}"))
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| quantity(Some(v)).map(|q| (k.clone(), q)))
            .collect::<Vec<_>>()
    };
    let mut total = BTreeMap::new();
    for c in list("containers") {
        for (k, q) in resources(&c) {
            add(&mut total, &k, q);
        }
    }
    for c in list("initContainers") {
        for (k, q) in resources(&c) {
            let e = total.entry(k).or_insert(Quantity::ZERO);
            if q > *e {
                *e = q;
            }
        }
    }
    total
}

/// Usage of `hard`'s resource names over `objects` (grouped by source), zero where nothing
/// counts.
pub fn used_for(
    hard: &BTreeSet<String>,
    objects: &BTreeMap<(&'static str, &'static str), Vec<Value>>,
) -> BTreeMap<String, Quantity> {
    let mut used: BTreeMap<String, Quantity> = hard
        .iter()
        .filter(|n| source_of(n).is_some())
        .map(|n| (n.clone(), Quantity::ZERO))
        .collect();
    for ((group, plural), items) in objects {
        for item in items {
            for (k, q) in usage(group, plural, item) {
                if let Some(e) = used.get_mut(&k) {
                    *e = *e + q;
                }
            }
        }
    }
    used
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    quotas: Informer<ResourceQuota>,
}

fn key_of(q: &ResourceQuota) -> String {
    format!("{}/{}", q.namespace().unwrap_or_default(), q.name_any())
}

/// Starts the resource quota controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        quotas: ctx.informers.get::<ResourceQuota>(),
        ctx,
    };
    let pods = controller.ctx.informers.get::<Pod>();
    let services = controller.ctx.informers.get::<Service>();
    let queue: WorkQueue<String> = WorkQueue::new();
    tokio::spawn(async move {
        controller.quotas.ready().await;
        pods.ready().await;
        services.ready().await;
        runner::forward(&controller.quotas, queue.clone(), |change| match change {
            Change::Applied { new, .. } => vec![key_of(new)],
            _ => Vec::new(),
        });
        let quotas = controller.quotas.clone();
        let in_namespace = move |ns: Option<String>| -> Vec<String> {
            ns.map(|ns| quotas.list_in(&ns).iter().map(|q| key_of(q)).collect())
                .unwrap_or_default()
        };
        let for_pods = in_namespace.clone();
        runner::forward(&pods, queue.clone(), move |change| match change {
            Change::Deleted(old) => for_pods(old.namespace()),
            Change::Applied { old: None, new } => for_pods(new.namespace()),
            Change::Applied {
                old: Some(old),
                new,
            } => {
                let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
                if phase(old) != phase(new) {
                    for_pods(new.namespace())
                } else {
                    Vec::new()
                }
            }
            Change::Resynced => Vec::new(),
        });
        let for_services = in_namespace;
        runner::forward(&services, queue.clone(), move |change| match change {
            Change::Deleted(old) => for_services(old.namespace()),
            Change::Applied { old: None, new } => for_services(new.namespace()),
            Change::Applied {
                old: Some(old),
                new,
            } => {
                let ty = |s: &Service| s.spec.as_ref().and_then(|s| s.type_.clone());
                if ty(old) != ty(new) {
                    for_services(new.namespace())
                } else {
                    Vec::new()
                }
            }
            Change::Resynced => Vec::new(),
        });
        let all = controller.quotas.clone();
        runner::resync_every(queue.clone(), SYNC_PERIOD, move || {
            all.list().iter().map(|q| key_of(q)).collect()
        });
        let worker = controller.clone();
        runner::spawn_workers("resourcequota", queue, 5, move |key| {
            let worker = worker.clone();
            async move { worker.reconcile(key).await }
        });
    });
}

impl Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>, Error> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(None);
        };
        if self.quotas.get(Some(ns), name).is_none() {
            return Ok(None);
        }
        // Read the quota fresh before counting: a charge by admission after this read changes
        // its resourceVersion, so the status write below conflicts and is retried.
        let api = Api::<ResourceQuota>::namespaced(self.ctx.client.clone(), ns);
        let quota = match api.get_opt(name).await {
            Ok(Some(quota)) => quota,
            Ok(None) => return Ok(None),
            Err(source) => {
                return Err(Error::List {
                    resource: "resourcequotas".into(),
                    namespace: ns.to_string(),
                    source,
                })
            }
        };
        let spec_hard: BTreeMap<String, ApiQuantity> = quota
            .spec
            .as_ref()
            .and_then(|s| s.hard.clone())
            .unwrap_or_default();
        let names: BTreeSet<String> = spec_hard.keys().cloned().collect();
        let mut objects = BTreeMap::new();
        let sources: BTreeSet<_> = names.iter().filter_map(|n| source_of(n)).collect();
        for (group, version, kind, plural) in sources {
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, kind),
                plural,
            );
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.ctx.client.clone(), ns, &resource);
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|source| Error::List {
                    resource: plural.to_string(),
                    namespace: ns.to_string(),
                    source,
                })?;
            let items = list
                .items
                .into_iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect();
            objects.insert((group, plural), items);
        }
        let used: BTreeMap<String, ApiQuantity> = used_for(&names, &objects)
            .into_iter()
            .map(|(k, q)| (k, ApiQuantity(q.to_string())))
            .collect();
        let status = ResourceQuotaStatus {
            hard: Some(spec_hard),
            used: Some(used),
        };
        if quota.status.as_ref() == Some(&status) {
            return Ok(None);
        }
        let mut updated = quota;
        updated.status = Some(status);
        api.replace_status(name, &PostParams::default(), &updated)
            .await
            .map_err(|source| Error::UpdateStatus {
                key: key.clone(),
                source,
            })?;
        tracing::debug!(quota = %key, "resource quota status updated");
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_counts_running_pods_services_and_generic_objects() {
        let hard: BTreeSet<String> = [
            "pods",
            "requests.cpu",
            "limits.memory",
            "services",
            "services.nodeports",
            "count/deployments.apps",
            "count/widgets.example.com",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut objects = BTreeMap::new();
        objects.insert(
            ("", "pods"),
            vec![
                json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "250m"},
                    "limits": {"memory": "1Gi"}}}]}, "status": {"phase": "Running"}}),
                json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "250m"}}}]},
                    "status": {"phase": "Succeeded"}}),
            ],
        );
        objects.insert(
            ("", "services"),
            vec![json!({"spec": {"type": "NodePort", "ports": [{"port": 1}, {"port": 2}]}})],
        );
        objects.insert(("apps", "deployments"), vec![json!({}), json!({})]);
        let used = used_for(&hard, &objects);
        let s = |k: &str| used.get(k).map(|q| q.to_string());
        assert_eq!(s("pods").as_deref(), Some("1"));
        assert_eq!(s("requests.cpu").as_deref(), Some("250m"));
        assert_eq!(s("limits.memory").as_deref(), Some("1Gi"));
        assert_eq!(s("services").as_deref(), Some("1"));
        assert_eq!(s("services.nodeports").as_deref(), Some("2"));
        assert_eq!(s("count/deployments.apps").as_deref(), Some("2"));
        assert_eq!(s("count/widgets.example.com"), None);
    }
}
