//! The kubelet (fake runtime, fake network) against the in-process apiserver: the node
//! registers and turns Ready, its Lease is renewed, a pod bound to it reaches Running with an
//! IP (and is Ready again after another writer marks it NotReady), and a graceful delete ends
//! with the kubelet removing the pod for good.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use std::sync::Arc;

use kube::Api;
use kubelet::app::start;
use kubelet::network::fake::FakeNetwork;
use kubelet::runtime::fake::FakeRuntime;
use kubelet::testing::{fake_dependencies, start_fake};

mod support;

use support::{apiserver, eventually, node_events};

#[tokio::test]
async fn a_pod_bound_to_the_node_runs_and_is_deleted_by_the_kubelet() {
    let (_server, client) = apiserver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = start_fake(client.clone(), "node-0", dir.path())
        .await
        .expect("kubelet");

    let nodes: Api<Node> = Api::all(client.clone());
    let node = eventually("node Ready", || {
        let nodes = nodes.clone();
        async move {
            let node = nodes.get_opt("node-0").await.ok()??;
            let ready = node
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(node)
        }
    })
    .await;
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["kubernetes.io/hostname"], "node-0");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    let status = node.status.expect("status");
    assert_eq!(status.node_info.expect("info").kubelet_version, "v1.33.0");
    assert_eq!(
        status
            .daemon_endpoints
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port),
        Some(i32::from(kubelet.kubelet.api_addr.port()))
    );

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = eventually("node lease", || {
        let leases = leases.clone();
        async move { leases.get_opt("node-0").await.ok()? }
    })
    .await;
    let spec = lease.spec.expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("node-0"));
    assert_eq!(spec.lease_duration_seconds, Some(40));

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {
            "nodeName": "node-0",
            "containers": [{"name": "httpd", "image": "busybox:1.35",
                            "command": ["httpd", "-f", "-p", "80"]}]
        }
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let running = eventually("pod Running", || {
        let pods = pods.clone();
        async move {
            let pod = pods.get_opt("web").await.ok()??;
            let status = pod.status.clone()?;
            (status.phase.as_deref() == Some("Running")).then_some(status)
        }
    })
    .await;
    assert_eq!(running.pod_ip.as_deref(), Some("10.244.0.2"));
    assert_eq!(running.host_ip.as_deref(), Some("127.0.0.1"));
    let container = &running.container_statuses.expect("statuses")[0];
    assert!(container.ready);
    assert!(container
        .state
        .as_ref()
        .and_then(|s| s.running.as_ref())
        .is_some());
    assert_eq!(kubelet.kubelet.store.pods().len(), 1);
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    eventually("Started event", || {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("Started")
                        && e.involved_object.name.as_deref() == Some("web")
                })
                .then_some(())
        }
    })
    .await;

    // The node lifecycle controller marks the pod NotReady (as when the node's heartbeats were
    // lost for a while): the kubelet, which still sees it ready, posts Ready again.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    let patch = serde_json::json!({"status": {"conditions": [
        {"type": "Ready", "status": "False", "lastTransitionTime": later.to_string()}
    ]}});
    pods.patch_status("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("mark NotReady");
    eventually("pod Ready again", || {
        let pods = pods.clone();
        async move {
            let pod = pods.get_opt("web").await.ok()??;
            pod.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        }
    })
    .await;

    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("pod gone", || {
        let pods = pods.clone();
        async move {
            match pods.get_opt("web").await {
                Ok(None) => Some(()),
                _ => None,
            }
        }
    })
    .await;
    assert!(kubelet.runtime.containers().is_empty());
    assert!(kubelet.network.namespaces().is_empty());
}

/// Merge-patches Node `node-0` with `patch`, as a controller would.
async fn merge_into_node(client: &kube::Client, patch: serde_json::Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            "node-0",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("patch node");
}

#[tokio::test]
async fn the_kubelet_takes_its_object_cache_ttl_from_the_node_annotation() {
    let (_server, client) = apiserver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = start_fake(client.clone(), "node-0", dir.path())
        .await
        .expect("kubelet");
    assert_eq!(kubelet.kubelet.objects.ttl(), std::time::Duration::ZERO);
    // As the controller-manager's TTL controller does at 1,800 nodes and more.
    let annotation =
        serde_json::json!({"metadata": {"annotations": {"node.alpha.kubernetes.io/ttl": "300"}}});
    merge_into_node(&client, annotation).await;
    // Seen on the kubelet's next read of its Node (here the pod CIDR poll: nothing allocates one).
    eventually("ttl taken from the node", || async {
        (kubelet.kubelet.objects.ttl() == std::time::Duration::from_secs(300)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_kubelet_records_its_start_and_each_node_condition_change_as_node_events() {
    let (_server, client) = apiserver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The network waits for the node's pod CIDR, so the first status is NotReady.
    let mut deps = fake_dependencies(
        client.clone(),
        Arc::new(FakeRuntime::with_auto_pull()),
        Arc::new(FakeNetwork::new()),
        "node-0",
        dir.path(),
    );
    // The status is computed and re-posted several times a second.
    deps.status_period = std::time::Duration::from_millis(100);
    deps.status_report_period = std::time::Duration::from_millis(200);
    let _kubelet = start(deps).await.expect("kubelet");
    let first = [
        "Normal Starting: Starting kubelet.",
        "Normal NodeHasSufficientMemory: Node node-0 status is now: NodeHasSufficientMemory",
        "Normal NodeHasNoDiskPressure: Node node-0 status is now: NodeHasNoDiskPressure",
        "Normal NodeHasSufficientPID: Node node-0 status is now: NodeHasSufficientPID",
    ];
    eventually("start and pressure events", || {
        let client = client.clone();
        async move {
            let events = node_events(&client, "node-0").await;
            let mut sorted = events.clone();
            sorted.sort();
            let mut expected = first.map(String::from).to_vec();
            expected.sort();
            (sorted == expected).then_some(events)
        }
    })
    .await;

    // As the controller-manager's IPAM would: the network comes up and the node turns Ready.
    merge_into_node(
        &client,
        serde_json::json!({"spec": {"podCIDR": "10.244.3.0/24"}}),
    )
    .await;
    let events = eventually("NodeReady", || {
        let client = client.clone();
        async move {
            let events = node_events(&client, "node-0").await;
            (events.len() > first.len()).then_some(events)
        }
    })
    .await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("Normal NodeReady: Node node-0 status is now: NodeReady")
    );
    // Nothing else changes: the status is re-posted, but no more events are recorded.
    let heartbeat = |node: Node| {
        node.status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .and_then(|c| c.last_heartbeat_time)
            .map(|t| t.0)
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let before = heartbeat(nodes.get("node-0").await.expect("node"));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let after = heartbeat(nodes.get("node-0").await.expect("node"));
    assert!(after > before, "status re-posted: {before:?} -> {after:?}");
    assert_eq!(
        node_events(&client, "node-0").await.len(),
        first.len() + 1,
        "unchanged conditions record nothing"
    );
}
