//! The DaemonSet controller with an in-process apiserver, the real scheduler and a fake kubelet
//! on three fake nodes: node-0 and node-1 have `disk=ssd`, node-1 carries a `dedicated=infra`
//! NoSchedule taint, node-2 has `disk=hdd`. One pod per eligible node, pinned with `matchFields`;
//! a toleration added by a rolling update (maxUnavailable 1) brings node-1 in and replaces every
//! pod, never running two daemon pods on one node; a nodeSelector limits another DaemonSet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_apiserver::testing::TestServer;
use kube_controller_manager::context::Settings;

mod support;

use support::{create_node, wait_for, NodeOptions};

/// How long `wait_for` polls.
const WAIT: Duration = Duration::from_secs(90);

fn daemon_set(name: &str, node_selector: serde_json::Value) -> anyhow::Result<DaemonSet> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": node_selector,
                    "containers": [{"name": "agent", "image": "busybox:1.35",
                                    "command": ["sleep", "3600"]}]
                }
            }
        }
    }))?)
}

/// Non-terminating pods of `app`, by the node they are bound to (unbound under "").
async fn pods_by_node(client: &Client, app: &str) -> anyhow::Result<BTreeMap<String, Vec<Pod>>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut out: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items
    {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        out.entry(node).or_default().push(pod);
    }
    Ok(out)
}

/// Records every observed state with two live `agent` pods on one node.
fn spawn_surge_observer(client: Client) -> Arc<Mutex<Vec<String>>> {
    let violations = Arc::new(Mutex::new(Vec::new()));
    let out = violations.clone();
    tokio::spawn(async move {
        loop {
            if let Ok(by_node) = pods_by_node(&client, "agent").await {
                for (node, pods) in by_node {
                    if !node.is_empty() && pods.len() > 1 {
                        if let Ok(mut v) = out.lock() {
                            v.push(format!("{} pods on {node}", pods.len()));
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    violations
}

async fn settled(sets: &Api<DaemonSet>, name: &str, desired: i32) -> anyhow::Result<bool> {
    let ds = sets.get(name).await?;
    let status = ds.status.clone().unwrap_or_default();
    Ok(status.observed_generation >= ds.metadata.generation
        && status.desired_number_scheduled == desired
        && status.current_number_scheduled == desired
        && status.number_ready == desired
        && status.number_available == Some(desired)
        && status.updated_number_scheduled == Some(desired)
        && status.number_misscheduled == 0)
}

fn pinned_node(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .first()?
        .match_fields
        .as_ref()?
        .iter()
        .find(|r| r.key == "metadata.name" && r.operator == "In")?
        .values
        .as_ref()?
        .first()
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_set_runs_one_pod_per_eligible_node_and_rolls_out() -> anyhow::Result<()> {
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    create_node(
        &client,
        "node-0",
        NodeOptions {
            labels: Some(serde_json::json!({"disk": "ssd"})),
            taints: Some(serde_json::json!([])),
            ..NodeOptions::default()
        },
    )
    .await?;
    create_node(
        &client,
        "node-1",
        NodeOptions {
            labels: Some(serde_json::json!({"disk": "ssd"})),
            taints: Some(
                serde_json::json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]),
            ),
            ..NodeOptions::default()
        },
    )
    .await?;
    create_node(
        &client,
        "node-2",
        NodeOptions {
            labels: Some(serde_json::json!({"disk": "hdd"})),
            taints: Some(serde_json::json!([])),
            ..NodeOptions::default()
        },
    )
    .await?;
    kube_controller_manager::testing::start(client.clone(), Settings::default(), &["daemonset"]);
    let _scheduler = support::start_scheduler_and_kubelet(&client, support::spread_pod_ip).await;
    let violations = spawn_surge_observer(client.clone());

    // No toleration: node-1's taint keeps it out.
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    sets.create(
        &PostParams::default(),
        &daemon_set("agent", serde_json::json!({}))?,
    )
    .await?;
    wait_for(WAIT, "agent on 2 nodes", || settled(&sets, "agent", 2)).await?;
    let by_node = pods_by_node(&client, "agent").await?;
    assert_eq!(
        by_node.keys().cloned().collect::<Vec<_>>(),
        ["node-0", "node-2"]
    );
    for (node, pods) in &by_node {
        assert_eq!(pods.len(), 1, "one pod on {node}");
        assert_eq!(pinned_node(&pods[0]).as_ref(), Some(node));
        let tolerations = pods[0]
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        assert!(tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready")));
    }
    let first_hash: BTreeSet<String> = by_node
        .values()
        .flatten()
        .filter_map(|p| p.labels().get("controller-revision-hash").cloned())
        .collect();
    assert_eq!(first_hash.len(), 1);

    // Tolerate the taint: a rolling update replaces both pods and node-1 gets one.
    sets.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"spec": {"template": {"spec": {"tolerations": [
                {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
            ]}}}}),
        ),
    )
    .await?;
    wait_for(WAIT, "agent updated on 3 nodes", || {
        settled(&sets, "agent", 3)
    })
    .await?;
    let by_node = pods_by_node(&client, "agent").await?;
    assert_eq!(
        by_node.keys().cloned().collect::<Vec<_>>(),
        ["node-0", "node-1", "node-2"]
    );
    for (node, pods) in &by_node {
        assert_eq!(pods.len(), 1, "one pod on {node}");
        let hash = pods[0]
            .labels()
            .get("controller-revision-hash")
            .cloned()
            .unwrap_or_default();
        assert!(
            !first_hash.contains(&hash),
            "pod on {node} still has the old revision"
        );
    }
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let owned = revisions
        .list(&ListParams::default().labels("app=agent"))
        .await?
        .items
        .len();
    assert_eq!(owned, 2);

    // A nodeSelector: only node-0 has disk=ssd without an untolerated taint.
    sets.create(
        &PostParams::default(),
        &daemon_set("ssd", serde_json::json!({"disk": "ssd"}))?,
    )
    .await?;
    wait_for(WAIT, "ssd on node-0", || settled(&sets, "ssd", 1)).await?;
    let by_node = pods_by_node(&client, "ssd").await?;
    assert_eq!(by_node.keys().cloned().collect::<Vec<_>>(), ["node-0"]);

    let seen = violations.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(seen.is_empty(), "more than one pod per node: {seen:?}");
    drop(server);
    Ok(())
}
