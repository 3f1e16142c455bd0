//! The scheduler against an in-process apiserver: a pod that fits is bound with a `Scheduled`
//! event; one that does not gets `FailedScheduling` in upstream words and `PodScheduled=False`,
//! and is bound once a node with room appears.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::PostParams;
use kube::Api;

mod support;

use support::{create_node, has_event, node_of, wait_for};

fn pod(name: &str, cpu: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.35",
            "resources": {"requests": {"cpu": cpu}}}]}
    }))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_or_reported_unschedulable_as_upstream() -> anyhow::Result<()> {
    let (_server, client) = support::start().await?;
    create_node(&client, "node-0", "1", &[]).await?;
    let _scheduler = kube_scheduler::scheduler::Scheduler::start(client.clone()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");

    pods.create(&PostParams::default(), &pod("small", "500m")?)
        .await?;
    wait_for("small bound", || async {
        Ok(node_of(&pods.get("small").await?).as_deref() == Some("node-0"))
    })
    .await?;
    wait_for("Scheduled event", || {
        has_event(&events, "Scheduled", |m| {
            m == "Successfully assigned default/small to node-0"
        })
    })
    .await?;

    // 500m of 1 CPU is taken: 800m does not fit.
    pods.create(&PostParams::default(), &pod("big", "800m")?)
        .await?;
    wait_for("FailedScheduling event", || {
        has_event(&events, "FailedScheduling", |m| m == "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")
    })
    .await?;
    wait_for("PodScheduled=False", || async {
        let big = pods.get("big").await?;
        Ok(big
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            }))
    })
    .await?;
    assert_eq!(node_of(&pods.get("big").await?), None);

    // A node with room appears: the pod is retried and bound there.
    create_node(&client, "node-1", "2", &[]).await?;
    wait_for("big bound to node-1", || async {
        Ok(node_of(&pods.get("big").await?).as_deref() == Some("node-1"))
    })
    .await?;
    Ok(())
}
