//! `kubectl describe TYPE [NAME...]`: a readable subset of upstream's describers, one file per
//! kind ([`pod`], [`deployment`], [`service`], [`node`], [`generic`] for namespaces and the rest),
//! each followed by the object's Events, laid out with upstream's tab-aligned `Key:  value` blocks.
//! Helpers here write one line at a nesting level; the caller aligns the text at the end.

mod deployment;
mod generic;
mod node;
mod pod;
mod service;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kube::Client;
use serde_json::Value;

use super::create::finish;
use super::{get_object, list_objects, list_params, parse_targets, resolve_targets, scope};
use crate::cli::DescribeArgs;
use crate::error::{Error, Result};
use crate::printers::age::age_of;
use crate::printers::tabwriter::align_text;
use crate::session::Session;

/// Runs `kubectl describe`.
pub async fn run(s: &mut Session, args: DescribeArgs) -> Result<()> {
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = if args.all_namespaces {
        None
    } else {
        Some(s.namespace().await?)
    };
    let targets = parse_targets(&args.args)?;
    let mut errors = Vec::new();
    let mut first = true;
    for (info, names) in resolve_targets(&catalog, &targets)? {
        let ns = scope(&info, namespace.as_deref());
        let mut objects = Vec::new();
        if names.is_empty() {
            objects = list_objects(
                &client,
                &info,
                ns.as_deref(),
                &list_params(args.selector.as_deref(), None),
            )
            .await?;
        }
        for name in &names {
            match get_object(&client, &info, ns.as_deref(), name).await {
                Ok(o) => objects.push(o),
                Err(e) => errors.push(e),
            }
        }
        if objects.is_empty() && names.is_empty() && errors.is_empty() {
            let where_ = namespace
                .as_deref()
                .map(|n| format!(" in {n} namespace"))
                .unwrap_or_default();
            s.eprint(&format!("No resources found{where_}.\n"))?;
        }
        for object in objects {
            let events = events_for(&client, &object).await;
            let extra = match object["kind"].as_str() {
                Some("Service") => service::endpoints_for(&client, &object).await,
                Some("Deployment") => replicasets_for(&client, &catalog, &object).await,
                Some("Node") => node_extra(&client, &catalog, &object).await,
                Some("ReplicaSet") => selected_pods(&client, &catalog, &object).await,
                _ => None,
            };
            let text = describe(&object, &events, extra.as_ref());
            if !first {
                s.print("\n\n")?;
            }
            first = false;
            s.print(&align_text(&text))?;
        }
    }
    finish(errors)
}

async fn events_for(client: &Client, object: &Value) -> Vec<Event> {
    let ns = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let uid = object["metadata"]["uid"].as_str().unwrap_or("");
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    match api.list(&ListParams::default()).await {
        Ok(list) => {
            let mut events: Vec<Event> = list
                .items
                .into_iter()
                .filter(|e| {
                    let io = &e.involved_object;
                    io.uid.as_deref() == Some(uid)
                        || (io.name.as_deref() == Some(name) && io.kind.as_deref() == Some(kind))
                })
                .collect();
            events.sort_by_key(|e| {
                e.last_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .or(e.event_time.as_ref().map(|t| t.0))
            });
            events
        }
        Err(e) => {
            tracing::debug!(error = %Error::from(e), "listing events");
            Vec::new()
        }
    }
}

/// The ReplicaSets of a Deployment, split into old and new (None when they cannot be listed).
async fn replicasets_for(
    client: &Client,
    catalog: &crate::discovery::Catalog,
    deployment: &Value,
) -> Option<Value> {
    let info = catalog.resolve("replicasets").ok()?.clone();
    let ns = deployment["metadata"]["namespace"].as_str();
    match list_objects(client, &info, ns, &list_params(None, None)).await {
        Ok(all) => Some(deployment::split_replicasets(deployment, &all)),
        Err(e) => {
            tracing::debug!(error = %e, "listing replicasets");
            None
        }
    }
}

/// The pods in the object's namespace matching its `spec.selector.matchLabels`.
async fn selected_pods(
    client: &Client,
    catalog: &crate::discovery::Catalog,
    object: &Value,
) -> Option<Value> {
    let mut labels: Vec<String> = object["spec"]["selector"]["matchLabels"]
        .as_object()?
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    labels.sort();
    let info = catalog.resolve("pods").ok()?.clone();
    let ns = object["metadata"]["namespace"].as_str();
    let selector = labels.join(",");
    match list_objects(client, &info, ns, &list_params(Some(&selector), None)).await {
        Ok(pods) => Some(Value::Array(pods)),
        Err(e) => {
            tracing::debug!(error = %e, "listing pods");
            None
        }
    }
}

/// A Node's Lease (or why it could not be read) and its non-terminated pods.
async fn node_extra(
    client: &Client,
    catalog: &crate::discovery::Catalog,
    node: &Value,
) -> Option<Value> {
    let name = node["metadata"]["name"].as_str()?;
    let lease = match catalog.resolve("leases.coordination.k8s.io") {
        Ok(info) => match get_object(client, &info.clone(), Some("kube-node-lease"), name).await {
            Ok(lease) => lease,
            Err(Error::Api(status)) => serde_json::json!({"error": status.message}),
            Err(e) => serde_json::json!({"error": e.to_string()}),
        },
        Err(e) => serde_json::json!({"error": e.to_string()}),
    };
    let pods_info = catalog.resolve("pods").ok()?.clone();
    let selector = format!("spec.nodeName={name},status.phase!=Failed,status.phase!=Succeeded");
    let pods = match list_objects(
        client,
        &pods_info,
        None,
        &list_params(None, Some(&selector)),
    )
    .await
    {
        Ok(pods) => pods,
        Err(e) => {
            tracing::debug!(error = %e, "listing the node's pods");
            return None;
        }
    };
    Some(serde_json::json!({"lease": lease, "pods": pods}))
}

/// The aligned `Pod Template:` block of a pod template (for `rollout history --revision`).
pub fn pod_template_text(template: &Value) -> String {
    let mut w = String::new();
    deployment::pod_template(template, &mut w);
    align_text(&w)
}

/// The describe text for an object (tab-separated; aligned by the caller). `extra` is what the
/// kind's describer needs besides the object: a Service's Endpoints, a Deployment's
/// ReplicaSets (`{"old": [...], "new": ...}`).
pub fn describe(object: &Value, events: &[Event], extra: Option<&Value>) -> String {
    let mut w = String::new();
    match object["kind"].as_str().unwrap_or("") {
        "Pod" => pod::pod(object, &mut w),
        "Deployment" => deployment::deployment(object, extra, &mut w),
        "Service" => service::service(object, extra, &mut w),
        "ConfigMap" => generic::configmap(object, &mut w),
        "Secret" => {
            // Upstream describes a Secret without its events.
            generic::secret(object, &mut w);
            return w;
        }
        "Node" => node::node(object, extra, &mut w),
        "ReplicaSet" => deployment::replicaset(object, extra, &mut w),
        "Namespace" => {
            generic::namespace(object, &mut w);
            return w;
        }
        _ => generic::generic(object, &mut w),
    }
    events_section(events, &mut w);
    w
}

pub(super) fn line(w: &mut String, level: usize, text: &str) {
    w.push_str(&"  ".repeat(level));
    w.push_str(text);
    w.push('\n');
}

pub(super) fn str_of<'a>(v: &'a Value, fallback: &'a str) -> &'a str {
    v.as_str().filter(|s| !s.is_empty()).unwrap_or(fallback)
}

pub(super) fn map_lines(w: &mut String, level: usize, title: &str, map: &Value, sep: &str) {
    let mut pairs: Vec<String> = map
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    format!(
                        "{k}{sep}{}",
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    if pairs.is_empty() {
        line(w, level, &format!("{title}:\t<none>"));
        return;
    }
    for (i, pair) in pairs.iter().enumerate() {
        if i == 0 {
            line(w, level, &format!("{title}:\t{pair}"));
        } else {
            line(w, level, &format!("\t{pair}"));
        }
    }
}

pub(super) fn metadata(object: &Value, w: &mut String, with_namespace: bool) {
    let meta = &object["metadata"];
    line(w, 0, &format!("Name:\t{}", str_of(&meta["name"], "")));
    if with_namespace {
        line(
            w,
            0,
            &format!("Namespace:\t{}", str_of(&meta["namespace"], "")),
        );
    }
}

pub(super) fn annotations_without_last_applied(meta: &Value) -> Value {
    let mut annotations = meta["annotations"].clone();
    if let Some(map) = annotations.as_object_mut() {
        map.remove(crate::patch::LAST_APPLIED);
    }
    annotations
}

/// RFC 1123 with numeric zone, as upstream prints times in describe.
pub(super) fn time(v: &Value) -> String {
    v.as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string())
        .unwrap_or_else(|| "<unset>".into())
}

pub(super) fn controlled_by(meta: &Value) -> Option<String> {
    meta["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true))
        .map(|r| format!("{}/{}", str_of(&r["kind"], ""), str_of(&r["name"], "")))
}

fn events_section(events: &[Event], w: &mut String) {
    if events.is_empty() {
        line(w, 0, "Events:\t<none>");
        return;
    }
    line(w, 0, "Events:");
    line(w, 1, "Type\tReason\tAge\tFrom\tMessage");
    line(w, 1, "----\t------\t----\t----\t-------");
    for e in events {
        let last = e
            .last_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()));
        let first = e.first_timestamp.as_ref().map(|t| t.0.to_string());
        let count = e.count.unwrap_or(1);
        let age = if count > 1 {
            format!(
                "{} (x{count} over {})",
                age_of(last.as_deref()),
                age_of(first.as_deref())
            )
        } else {
            age_of(last.as_deref())
        };
        let from = e
            .source
            .as_ref()
            .and_then(|s| s.component.clone())
            .or_else(|| e.reporting_component.clone())
            .unwrap_or_default();
        line(
            w,
            1,
            &format!(
                "{}\t{}\t{age}\t{from}\t{}",
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default().trim()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_describe_in_upstream_layout() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1", "controller": true}]},
            "spec": {"nodeName": "node-0", "containers": [{"name": "c", "image": "busybox:1.35", "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Running", "hostIP": "192.0.2.2", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-11-22T04:00:00Z"}}}],
                "conditions": [{"type": "Ready", "status": "True"}]}});
        let text = align_text(&describe(&pod, &[], None));
        let expect_lines = [
            "Name:             web",
            "Namespace:        default",
            "Node:             node-0/192.0.2.2",
            "Labels:           app=web",
            "Status:           Running",
            "Controlled By:  ReplicaSet/web-1",
            "    Port:           80/TCP",
            "      Started:      Sun, 22 Nov 2026 04:00:00 +0000",
            "    Ready:          True",
            "  Type           Status",
            "  Ready          True",
            "  IP:           10.244.0.5",
            "Events:          <none>",
        ];
        for want in expect_lines {
            assert!(
                text.lines().any(|l| l == want),
                "missing {want:?} in\n{text}"
            );
        }
    }

    #[test]
    fn deployments_and_services_describe() {
        let d = json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2, "unavailableReplicas": 1}});
        let text = align_text(&describe(&d, &[], None));
        assert!(
            text.contains("3 desired | 3 updated | 3 total | 2 available | 1 unavailable"),
            "{text}"
        );
        assert!(text.contains("25% max unavailable, 25% max surge"));
        let svc = json!({"kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
        let text = align_text(&describe(&svc, &[], None));
        assert!(
            text.lines()
                .any(|l| l.starts_with("IP:") && l.ends_with("10.96.0.20")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("TargetPort:") && l.ends_with("8080/TCP")),
            "{text}"
        );
    }
}
