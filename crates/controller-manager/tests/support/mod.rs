//! Shared scaffolding for the controller-manager integration tests: a polling helper, fake nodes,
//! a fake kubelet that marks bound pods Running/Ready, and the in-process cluster start-up.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

/// Polls `check` every 200ms until it returns `Ok(true)` or `limit` passes; errors are logged
/// and retried.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => tracing::debug!(%error, what, "check failed"),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How a fake node is created.
#[derive(Default)]
pub struct NodeOptions {
    /// Labels besides `kubernetes.io/hostname` (a JSON object), if any.
    pub labels: Option<serde_json::Value>,
    /// `spec.taints` (a JSON array); no `spec` at all when `None`.
    pub taints: Option<serde_json::Value>,
    /// Whether the Ready condition carries a `lastHeartbeatTime` of now.
    pub heartbeat: bool,
}

/// Creates a Ready node `name` (4 CPUs, 8Gi, 110 pods) and sets its status.
pub async fn create_node(client: &Client, name: &str, options: NodeOptions) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut labels = options.labels.unwrap_or_else(|| serde_json::json!({}));
    labels["kubernetes.io/hostname"] = serde_json::json!(name);
    let mut ready = serde_json::json!(
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}
    );
    if options.heartbeat {
        ready["lastHeartbeatTime"] = serde_json::json!(jiff::Timestamp::now().to_string());
    }
    let mut value = serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [ready]
        }
    });
    if let Some(taints) = options.taints {
        value["spec"] = serde_json::json!({"taints": taints});
    }
    let node: Node = serde_json::from_value(value)?;
    let created = nodes.create(&PostParams::default(), &node).await?;
    let mut with_status = created.clone();
    with_status.status = node.status;
    nodes
        .replace_status(name, &PostParams::default(), &with_status)
        .await?;
    Ok(())
}

/// Pod IPs `10.244.0.<n>` for the n-th pod (n from 2).
pub fn flat_pod_ip(n: u32) -> String {
    format!("10.244.0.{n}")
}

/// Pod IPs spread over `10.244.<n / 250>.<n % 250 + 2>` for the n-th pod (n from 2).
pub fn spread_pod_ip(n: u32) -> String {
    format!("10.244.{}.{}", n / 250, n % 250 + 2)
}

/// Plays the kubelet: bound pods become Running and Ready with an IP from `pod_ip`; deleted
/// pods go away.
pub fn spawn_fake_kubelet(client: Client, pod_ip: fn(u32) -> String) {
    let counter = Arc::new(AtomicU32::new(2));
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::all(client.clone());
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for pod in list.items {
                    let namespace = pod.namespace().unwrap_or_default();
                    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
                    if pod.metadata.deletion_timestamp.is_some() {
                        let _ = api
                            .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                            .await;
                        continue;
                    }
                    let bound = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .is_some();
                    let has_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).is_some();
                    if bound && !has_ip {
                        let ip = pod_ip(counter.fetch_add(1, Ordering::SeqCst));
                        let now = jiff::Timestamp::now().to_string();
                        let patch = serde_json::json!({"status": {
                            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                            "conditions": [
                                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                                {"type": "Ready", "status": "True", "lastTransitionTime": now}
                            ]
                        }});
                        let _ = api
                            .patch_status(
                                &pod.name_any(),
                                &PatchParams::default(),
                                &Patch::Merge(&patch),
                            )
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
}

/// Starts the real scheduler and the fake kubelet (IPs from `pod_ip`) against `client`; keep the
/// returned scheduler alive for the test.
pub async fn start_scheduler_and_kubelet(
    client: &Client,
    pod_ip: fn(u32) -> String,
) -> kube_scheduler::scheduler::Scheduler {
    let scheduler = kube_scheduler::scheduler::Scheduler::start(client.clone()).await;
    spawn_fake_kubelet(client.clone(), pod_ip);
    scheduler
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
