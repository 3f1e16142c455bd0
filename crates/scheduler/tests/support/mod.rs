//! What the scheduler's integration tests share: an in-process apiserver with an admin client,
//! polling until a condition holds, and fake nodes (Node objects with Ready status and
//! allocatable resources, no kubelet behind them).

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use kube_apiserver::testing::TestServer;

/// An in-process apiserver and an admin client for it.
pub async fn start() -> anyhow::Result<(TestServer, Client)> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    Ok((server, client))
}

/// Polls `check` every 100ms until it returns `Ok(true)`, for at most 60 seconds.
pub async fn wait_for<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(true) = check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a Ready node `name` with `cpu` allocatable (and 4Gi, 110 pods) and these labels.
pub async fn create_node(
    client: &Client,
    name: &str,
    cpu: &str,
    labels: &[(&str, &str)],
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
        .collect();
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    }))?;
    let mut created = nodes.create(&PostParams::default(), &node).await?;
    created.status = node.status;
    nodes
        .replace_status(name, &PostParams::default(), &created)
        .await?;
    Ok(())
}

/// The node a pod is bound to.
pub fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// Whether an event with `reason` and a message that `message` accepts has been recorded.
pub async fn has_event(
    events: &Api<Event>,
    reason: &str,
    message: impl Fn(&str) -> bool,
) -> anyhow::Result<bool> {
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .any(|e| e.reason.as_deref() == Some(reason) && e.message.as_deref().is_some_and(&message)))
}
