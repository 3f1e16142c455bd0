//! The eviction manager against the in-process apiserver (fake runtime and network, fake
//! signals): under memory pressure the pod using the most above its request is evicted —
//! stopped, `Failed` with reason `Evicted` and upstream's message, not restarted — the node
//! reports `MemoryPressure` with its NoSchedule taint and records upstream's node events, the
//! well-behaved pod keeps running, and deleting the evicted pod removes it for good.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::Api;
use kubelet::app::start_with_features;
use kubelet::node::eviction::{
    parse_thresholds, Observation, Observations, PodUsage, Signal, SignalSource,
    DEFAULT_EVICTION_HARD,
};
use kubelet::node::features::{EvictionSettings, NodeFeatures};
use kubelet::pod::PodEntry;

mod support;

use support::{apiserver, eventually, fake_dependencies, fake_runtime, node_events, NODE};

/// Memory is short while the pod `hog` runs (it uses 3Gi); plenty once it is gone.
struct HogSignals;

impl SignalSource for HogSignals {
    fn observe(&self, pods: &[PodEntry]) -> Observations {
        let mut observations = Observations::default();
        let mut hog_running = false;
        for entry in pods {
            let name = entry.pod.metadata.name.clone().unwrap_or_default();
            let memory: u64 = if name == "hog" { 3 << 30 } else { 50 << 20 };
            hog_running |= name == "hog";
            observations.pods.insert(
                entry.pod.metadata.uid.clone().unwrap_or_default(),
                PodUsage {
                    memory,
                    disk: 0,
                    containers: vec![("c".into(), memory, 0)],
                },
            );
        }
        let available = if hog_running { 64 << 20 } else { 2 << 30 };
        observations.signals.insert(
            Signal::MemoryAvailable,
            Observation {
                available,
                capacity: 4 << 30,
            },
        );
        observations
    }
}

fn pod(name: &str, memory_request: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(NODE.into()),
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox:1.35".into()),
                resources: memory_request.map(|m| ResourceRequirements {
                    requests: Some([("memory".to_string(), Quantity(m.into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

#[tokio::test]
async fn memory_pressure_evicts_the_pod_over_its_request_and_taints_the_node() {
    let (_server, client) = apiserver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = fake_runtime();
    let mut eviction = EvictionSettings::new(
        parse_thresholds(DEFAULT_EVICTION_HARD).expect("thresholds"),
        Duration::from_secs(300),
    );
    eviction.interval = Duration::from_millis(200);
    eviction.source = Some(Arc::new(HogSignals));
    let _kubelet = start_with_features(
        fake_dependencies(
            client.clone(),
            runtime.clone(),
            dir.path(),
            Duration::from_millis(300),
        ),
        None,
        NodeFeatures {
            eviction: Some(eviction),
            ..Default::default()
        },
    )
    .await
    .expect("kubelet");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for p in [pod("calm", Some("1Gi")), pod("hog", None)] {
        pods.create(&PostParams::default(), &p)
            .await
            .expect("create pod");
    }

    let evicted = eventually("hog evicted", || {
        let pods = pods.clone();
        async move {
            let pod = pods.get("hog").await.ok()?;
            let status = pod.status.clone()?;
            (status.reason.as_deref() == Some("Evicted")).then_some(pod)
        }
    })
    .await;
    let status = evicted.status.expect("status");
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 64Mi. \
             Container c was using 3Gi, request is 0, has larger consumption of memory. "
        )
    );
    assert!(status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "DisruptionTarget"
            && c.reason.as_deref() == Some("TerminationByKubelet")));

    let nodes: Api<Node> = Api::all(client.clone());
    eventually("MemoryPressure and its taint", || {
        let nodes = nodes.clone();
        async move {
            let node = nodes.get(NODE).await.ok()?;
            let pressure = node
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "MemoryPressure" && c.status == "True");
            let taint =
                node.spec?.taints?.iter().any(|t| {
                    t.key == "node.kubernetes.io/memory-pressure" && t.effect == "NoSchedule"
                });
            (pressure && taint).then_some(())
        }
    })
    .await;
    // As upstream: a warning that the kubelet reclaims memory, and the condition's change.
    eventually("eviction and pressure node events", || {
        let client = client.clone();
        async move {
            let events = node_events(&client, NODE).await;
            let has = |e: &str| events.iter().any(|x| x == e);
            (has("Warning EvictionThresholdMet: Attempting to reclaim memory")
                && has("Normal NodeHasInsufficientMemory: Node node-0 status is now: NodeHasInsufficientMemory"))
            .then_some(())
        }
    })
    .await;

    // The hog's container is gone and stays gone; calm keeps running.
    eventually("hog's container removed", || {
        let runtime = runtime.clone();
        async move {
            let names: Vec<String> = runtime
                .containers()
                .values()
                .filter_map(|c| c.config.labels.get("io.kubernetes.pod.name").cloned())
                .collect();
            (names == vec!["calm".to_string()]).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calm = pods.get("calm").await.expect("calm");
    assert_eq!(
        calm.status.and_then(|s| s.phase).as_deref(),
        Some("Running")
    );
    assert_eq!(
        pods.get("hog")
            .await
            .expect("hog")
            .status
            .and_then(|s| s.phase)
            .as_deref(),
        Some("Failed"),
        "an evicted pod is not started again"
    );
    assert_eq!(runtime.containers().len(), 1);

    // Deleting the evicted pod removes it for good.
    pods.delete("hog", &DeleteParams::default())
        .await
        .expect("delete hog");
    eventually("hog deleted", || {
        let pods = pods.clone();
        async move { pods.get_opt("hog").await.ok()?.is_none().then_some(()) }
    })
    .await;
}
