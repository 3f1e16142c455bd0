//! SchedulingGates against an in-process apiserver: a gated pod is never tried (no attempt
//! counted, `PodScheduled=False` with reason `SchedulingGated`, counted as a gated pending pod)
//! and is bound once its last gate is removed.

use std::time::Duration;

use component_base::metrics::SharedRegistry;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use kube_scheduler::metrics::AttemptResult;
use kube_scheduler::scheduler::{Scheduler, SCHEDULER_NAME};

mod support;

use support::{create_node, wait_for};

fn condition(pod: &Pod) -> Option<(String, String, String)> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_pod_waits_untried_until_its_last_gate_is_removed() -> anyhow::Result<()> {
    let (_server, client) = support::start().await?;
    create_node(&client, "node-0", "4", &[]).await?;
    let scheduler = Scheduler::start(client.clone()).await;
    let registry = SharedRegistry::default();
    scheduler.register_metrics(&registry);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gated", "namespace": "default"},
        "spec": {
            "schedulingGates": [{"name": "example.com/a"}, {"name": "example.com/b"}],
            "containers": [{"name": "c", "image": "busybox:1.35"}]
        }
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    wait_for("SchedulingGated condition", || async {
        Ok(condition(&pods.get("gated").await?)
            == Some((
                "False".into(),
                "SchedulingGated".into(),
                "Scheduling is blocked due to non-empty scheduling gates".into(),
            )))
    })
    .await?;
    let text = component_base::metrics::encode(&registry)?;
    assert!(
        text.contains("scheduler_pending_pods{queue=\"gated\"} 1"),
        "{text}"
    );
    let metrics = scheduler.metrics();
    let tried = |m: &kube_scheduler::metrics::Metrics| {
        m.attempts(AttemptResult::Scheduled, SCHEDULER_NAME)
            + m.attempts(AttemptResult::Unschedulable, SCHEDULER_NAME)
    };
    assert_eq!(tried(metrics), 0);

    let one_gate = serde_json::json!({"spec": {"schedulingGates": [{"name": "example.com/b"}]}});
    pods.patch("gated", &PatchParams::default(), &Patch::Merge(&one_gate))
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pods
        .get("gated")
        .await?
        .spec
        .and_then(|s| s.node_name)
        .is_none());
    assert_eq!(tried(metrics), 0);

    let no_gates = serde_json::json!({"spec": {"schedulingGates": null}});
    pods.patch("gated", &PatchParams::default(), &Patch::Merge(&no_gates))
        .await?;
    wait_for("gated pod bound", || async {
        Ok(pods
            .get("gated")
            .await?
            .spec
            .and_then(|s| s.node_name)
            .as_deref()
            == Some("node-0"))
    })
    .await?;
    // The attempt is counted once the binding call returns, just after the pod shows bound.
    wait_for("one scheduled attempt", || async {
        Ok(metrics.attempts(AttemptResult::Scheduled, SCHEDULER_NAME) == 1)
    })
    .await?;
    assert_eq!(tried(metrics), 1);
    let text = component_base::metrics::encode(&registry)?;
    assert!(
        text.contains("scheduler_pending_pods{queue=\"gated\"} 0"),
        "{text}"
    );
    Ok(())
}
