//! The scheduler against an in-process apiserver: a pod that fits is bound with a `Scheduled`
//! event; one that does not gets `FailedScheduling` in upstream words and `PodScheduled=False`
//! (one event, counted again when a retry fails the same way), and is bound once a node with
//! room appears.

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
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

    // More room on node-0, still too little: the pod is retried and fails for the same reason,
    // which bumps the count of its one FailedScheduling event (upstream's recorder).
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            "node-0",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"allocatable": {"cpu": "1200m"}}})),
        )
        .await?;
    let failures = || async {
        let list = events.list(&ListParams::default()).await?;
        Ok::<_, anyhow::Error>(
            list.items
                .into_iter()
                .filter(|e| {
                    e.reason.as_deref() == Some("FailedScheduling")
                        && e.involved_object.name.as_deref() == Some("big")
                })
                .map(|e| e.count.unwrap_or_default())
                .collect::<Vec<i32>>(),
        )
    };
    wait_for("FailedScheduling counted twice", || async {
        Ok(failures().await?.iter().any(|c| *c >= 2))
    })
    .await?;
    let counts = failures().await?;
    assert_eq!(
        counts.len(),
        1,
        "one FailedScheduling event for big: {counts:?}"
    );

    // A node with room appears: the pod is retried and bound there.
    create_node(&client, "node-1", "2", &[]).await?;
    wait_for("big bound to node-1", || async {
        Ok(node_of(&pods.get("big").await?).as_deref() == Some("node-1"))
    })
    .await?;
    Ok(())
}
