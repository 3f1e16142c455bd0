//! ReplicationController, PodGC, the root CA publisher, the disruption controller, taint-based
//! eviction and the node lifecycle controller's pod marking and node events against an in-process apiserver, with a fake kubelet that marks bound pods Running and
//! Ready and finishes deletions.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_apiserver::testing::TestServer;
use kube_controller_manager::context::Settings;

mod support;

use support::{create_node, is_ready, wait_for, NodeOptions};

/// How long `wait_for` polls.
const WAIT: Duration = Duration::from_secs(60);

/// An apiserver with node-0, the named controllers, the scheduler and the fake kubelet.
async fn start_cluster(
    settings: Settings,
    controllers: &[&str],
) -> anyhow::Result<(TestServer, Client)> {
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    create_node(
        &client,
        "node-0",
        NodeOptions {
            heartbeat: true,
            ..NodeOptions::default()
        },
    )
    .await?;
    kube_controller_manager::testing::start(client.clone(), settings, controllers);
    let _scheduler = support::start_scheduler_and_kubelet(&client, support::flat_pod_ip).await;
    Ok((server, client))
}

async fn live_pods(client: &Client, selector: &str) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    Ok(pods
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replication_controller_keeps_its_replicas_and_reports_status() -> anyhow::Result<()> {
    let (_server, client) = start_cluster(
        Settings::default(),
        &["replicationcontroller", "garbagecollector"],
    )
    .await?;
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let rc: ReplicationController = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "legacy", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"app": "legacy"},
            "template": {
                "metadata": {"labels": {"app": "legacy"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}
            }
        }
    }))?;
    rcs.create(&PostParams::default(), &rc).await?;
    wait_for(WAIT, "3 ready replicas", || async {
        let rc = rcs.get("legacy").await?;
        let status = rc.status.unwrap_or_default();
        Ok(status.replicas == 3
            && status.ready_replicas == Some(3)
            && status.available_replicas == Some(3)
            && status.observed_generation == rc.metadata.generation)
    })
    .await?;
    let pods = live_pods(&client, "app=legacy").await?;
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        let reference = pod
            .owner_references()
            .iter()
            .find(|r| r.controller == Some(true))
            .context("controller reference")?;
        assert_eq!(
            (reference.api_version.as_str(), reference.kind.as_str()),
            ("v1", "ReplicationController")
        );
        assert!(pod.name_any().starts_with("legacy-"));
    }

    // A deleted pod is replaced; scaling down removes pods.
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods_api
        .delete(&pods[0].name_any(), &DeleteParams::default())
        .await?;
    wait_for(WAIT, "replacement", || async {
        let live = live_pods(&client, "app=legacy").await?;
        Ok(live.len() == 3 && live.iter().all(|p| p.name_any() != pods[0].name_any()))
    })
    .await?;
    let scale = serde_json::json!({"spec": {"replicas": 1}});
    rcs.patch("legacy", &PatchParams::default(), &Patch::Merge(&scale))
        .await?;
    wait_for(WAIT, "1 replica", || async {
        let status = rcs.get("legacy").await?.status.unwrap_or_default();
        Ok(live_pods(&client, "app=legacy").await?.len() == 1 && status.replicas == 1)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pod_gc_removes_excess_terminated_and_orphaned_pods() -> anyhow::Result<()> {
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    let ctx = kube_controller_manager::testing::start(client.clone(), Settings::default(), &[]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = |name: &str, node: &str| -> anyhow::Result<Pod> {
        Ok(serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"gc": "yes"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1.35"}]}
        }))?)
    };
    create_node(
        &client,
        "node-0",
        NodeOptions {
            heartbeat: true,
            ..NodeOptions::default()
        },
    )
    .await?;
    for name in ["done-a", "done-b", "done-c", "done-d"] {
        pods.create(&PostParams::default(), &pod(name, "node-0")?)
            .await?;
        let patch = serde_json::json!({"status": {"phase": "Succeeded"}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        // Distinct creation seconds are not needed: ties break by name.
    }
    pods.create(&PostParams::default(), &pod("running", "node-0")?)
        .await?;
    pods.create(&PostParams::default(), &pod("orphan", "ghost-node")?)
        .await?;
    kube_controller_manager::podgc::start_with(
        ctx,
        kube_controller_manager::podgc::PodGcSettings {
            period: Duration::from_millis(300),
            terminated_threshold: 2,
        },
    );
    wait_for(WAIT, "PodGC", || async {
        let mut names: Vec<String> = pods
            .list(&ListParams::default().labels("gc=yes"))
            .await?
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        names.sort();
        Ok(names == ["done-c", "done-d", "running"])
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_namespace_gets_the_root_ca_config_map() -> anyhow::Result<()> {
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
    kube_controller_manager::testing::start(
        client.clone(),
        Settings {
            root_ca: Some(pem.to_string()),
            ..Settings::default()
        },
        &["root-ca-cert-publisher"],
    );
    let published = |namespace: &str| {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        async move {
            Ok(api
                .get_opt("kube-root-ca.crt")
                .await?
                .and_then(|c| c.data)
                .and_then(|d| d.get("ca.crt").cloned())
                .as_deref()
                == Some(pem))
        }
    };
    wait_for(WAIT, "default namespace", || published("default")).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}
    }))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    wait_for(WAIT, "new namespace", || published("team-a")).await?;

    // Edits are reverted and deletions undone.
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    let edit = serde_json::json!({"data": {"ca.crt": "tampered"}});
    api.patch(
        "kube-root-ca.crt",
        &PatchParams::default(),
        &Patch::Merge(&edit),
    )
    .await?;
    wait_for(WAIT, "edit reverted", || published("team-a")).await?;
    api.delete("kube-root-ca.crt", &DeleteParams::default())
        .await?;
    wait_for(WAIT, "recreated", || published("team-a")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disruption_budgets_report_healthy_and_allowed_disruptions() -> anyhow::Result<()> {
    let (_server, client) = start_cluster(
        Settings::default(),
        &["deployment", "replicaset", "disruption"],
    )
    .await?;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "default");
    let deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}
            }
        }
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    for (name, budget) in [
        ("min", serde_json::json!({"minAvailable": 2})),
        ("max", serde_json::json!({"maxUnavailable": "50%"})),
    ] {
        let mut spec = budget;
        spec["selector"] = serde_json::json!({"matchLabels": {"app": "web"}});
        let pdb = serde_json::from_value(serde_json::json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec
        }))?;
        pdbs.create(&PostParams::default(), &pdb).await?;
    }
    let status_of = |name: &'static str| {
        let pdbs = pdbs.clone();
        async move {
            let status = pdbs.get(name).await?.status.unwrap_or_default();
            let condition = status
                .conditions
                .clone()
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "DisruptionAllowed");
            anyhow::Ok((
                status.expected_pods,
                status.current_healthy,
                status.desired_healthy,
                status.disruptions_allowed,
                condition.map(|c| (c.status, c.reason)),
            ))
        }
    };
    wait_for(WAIT, "min budget", || async {
        Ok(status_of("min").await? == (3, 3, 2, 1, Some(("True".into(), "SufficientPods".into()))))
    })
    .await?;
    // 50% of 3 rounds up to 2 unavailable: 1 must stay healthy.
    wait_for(WAIT, "max budget", || async {
        Ok(status_of("max").await? == (3, 3, 1, 2, Some(("True".into(), "SufficientPods".into()))))
    })
    .await?;
    assert!(live_pods(&client, "app=web").await?.iter().all(is_ready));

    // A budget that asks for more than there is allows nothing.
    let strict = serde_json::json!({"spec": {"minAvailable": 5}});
    pdbs.patch("min", &PatchParams::default(), &Patch::Merge(&strict))
        .await?;
    wait_for(WAIT, "strict budget", || async {
        Ok(status_of("min").await?
            == (
                3,
                3,
                5,
                0,
                Some(("False".into(), "InsufficientPods".into())),
            ))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn not_ready_nodes_are_tainted_and_their_pods_evicted_after_toleration_seconds(
) -> anyhow::Result<()> {
    let (_server, client) = start_cluster(
        Settings {
            node_monitor_period: Duration::from_millis(200),
            ..Settings::default()
        },
        &["nodelifecycle", "taint-eviction-controller"],
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = |name: &str, tolerations: serde_json::Value| -> anyhow::Result<Pod> {
        Ok(serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"taint": "test"}},
            "spec": {"nodeName": "node-0", "tolerations": tolerations,
                     "containers": [{"name": "c", "image": "busybox:1.35"}]}
        }))?)
    };
    let not_ready = "node.kubernetes.io/not-ready";
    pods.create(
        &PostParams::default(),
        &pod("intolerant", serde_json::json!([]))?,
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod(
            "patient",
            serde_json::json!([{"key": not_ready, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3}]),
        )?,
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod(
            "forever",
            serde_json::json!([
                {"key": not_ready, "operator": "Exists", "effect": "NoExecute"},
                {"key": "example.com/maintenance", "operator": "Exists", "effect": "NoExecute"}
            ]),
        )?,
    )
    .await?;
    wait_for(WAIT, "pods running", || async {
        Ok(live_pods(&client, "taint=test")
            .await?
            .iter()
            .filter(|p| is_ready(p))
            .count()
            == 3)
    })
    .await?;

    // The kubelet reports NotReady.
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = nodes.get("node-0").await?;
    for condition in node
        .status
        .as_mut()
        .and_then(|s| s.conditions.as_mut())
        .context("conditions")?
    {
        if condition.type_ == "Ready" {
            condition.status = "False".into();
            condition.reason = Some("KubeletNotReady".into());
            condition.last_heartbeat_time = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
            );
        }
    }
    nodes
        .replace_status("node-0", &PostParams::default(), &node)
        .await?;
    wait_for(WAIT, "not-ready taints", || async {
        let taints = nodes
            .get("node-0")
            .await?
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default();
        let has = |effect: &str| {
            taints
                .iter()
                .any(|t| t.key == not_ready && t.effect == effect)
        };
        Ok(has("NoSchedule") && has("NoExecute"))
    })
    .await?;
    let names = || async {
        let mut names: Vec<String> = live_pods(&client, "taint=test")
            .await?
            .iter()
            .map(|p| p.name_any())
            .collect();
        names.sort();
        anyhow::Ok(names)
    };
    wait_for(WAIT, "patient pod evicted after its toleration", || async {
        Ok(names().await? == ["forever", "intolerant"])
    })
    .await?;
    let evicted = pods.get_opt("patient").await?;
    assert!(evicted.is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
    // "intolerant" got the default 300s toleration (DefaultTolerationSeconds), but a NoExecute
    // taint it does not tolerate at all evicts it at once; "forever" tolerates that one too.
    wait_for(WAIT, "maintenance taint added", || async {
        let mut node = nodes.get("node-0").await?;
        let mut taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        taints.push(serde_json::from_value(
            serde_json::json!({"key": "example.com/maintenance", "effect": "NoExecute"}),
        )?);
        node.spec.get_or_insert_with(Default::default).taints = Some(taints);
        // A conflict with the lifecycle controller is retried.
        Ok(nodes
            .replace("node-0", &PostParams::default(), &node)
            .await
            .is_ok())
    })
    .await?;
    wait_for(WAIT, "intolerant pod evicted", || async {
        Ok(names().await? == ["forever"])
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(names().await?, ["forever"]);
    Ok(())
}

/// The `reason` and `message` of every event in `default` about `kind` objects named `name`.
async fn events_about(
    client: &Client,
    kind: &str,
    name: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(name)
        })
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_nodes_pods_become_not_ready_and_the_node_events_are_recorded() -> anyhow::Result<()>
{
    let (_server, client) = start_cluster(
        Settings {
            node_monitor_period: Duration::from_millis(200),
            node_monitor_grace_period: Duration::from_secs(3),
            ..Settings::default()
        },
        &["nodelifecycle"],
    )
    .await?;
    // The kubelet's Lease, renewed until the test stops it.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renew = |lease_client: Api<Lease>| async move {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node-0", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "node-0", "leaseDurationSeconds": 40,
                     "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now())}
        }))?;
        match lease_client.get_opt("node-0").await? {
            Some(mut old) => {
                old.spec = lease.spec;
                lease_client
                    .replace("node-0", &PostParams::default(), &old)
                    .await?;
            }
            None => {
                lease_client.create(&PostParams::default(), &lease).await?;
            }
        }
        anyhow::Ok(())
    };
    let beating = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let heart = {
        let beating = beating.clone();
        let leases = leases.clone();
        tokio::spawn(async move {
            while beating.load(std::sync::atomic::Ordering::SeqCst) {
                if let Err(error) = renew(leases.clone()).await {
                    eprintln!("lease renewal failed: {error:#}");
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["web-0", "web-1"] {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"lost": "test"}},
            "spec": {"nodeName": "node-0", "containers": [{"name": "c", "image": "busybox:1.35"}]}
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
    }
    wait_for(WAIT, "pods ready", || async {
        Ok(live_pods(&client, "lost=test")
            .await?
            .iter()
            .filter(|p| is_ready(p))
            .count()
            == 2)
    })
    .await?;
    wait_for(WAIT, "RegisteredNode event", || async {
        Ok(events_about(&client, "Node", "node-0").await?.contains(&(
            "Normal".into(),
            "RegisteredNode".into(),
            "Node node-0 event: Registered Node node-0 in Controller".into(),
        )))
    })
    .await?;
    // Ready pods stay Ready while the node is.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        live_pods(&client, "lost=test")
            .await?
            .iter()
            .filter(|p| is_ready(p))
            .count(),
        2
    );

    // The kubelet goes silent.
    beating.store(false, std::sync::atomic::Ordering::SeqCst);
    heart.await?;
    wait_for(WAIT, "pods marked NotReady", || async {
        Ok(live_pods(&client, "lost=test")
            .await?
            .iter()
            .all(|p| !is_ready(p)))
    })
    .await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get("node-0").await?;
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone());
    assert_eq!(ready.as_deref(), Some("Unknown"));
    for pod in live_pods(&client, "lost=test").await? {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .context("Ready condition")?;
        assert_eq!(ready.status, "False");
        // The other conditions are untouched.
        assert!(pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c
                .iter()
                .any(|c| c.type_ == "PodScheduled" && c.status == "True")));
        wait_for(WAIT, "NodeNotReady event on the pod", || async {
            Ok(events_about(&client, "Pod", &pod.name_any())
                .await?
                .contains(&(
                    "Warning".into(),
                    "NodeNotReady".into(),
                    "Node is not ready".into(),
                )))
        })
        .await?;
    }
    wait_for(WAIT, "NodeNotReady event on the node", || async {
        Ok(events_about(&client, "Node", "node-0").await?.contains(&(
            "Normal".into(),
            "NodeNotReady".into(),
            "Node node-0 status is now: NodeNotReady".into(),
        )))
    })
    .await?;

    nodes.delete("node-0", &DeleteParams::default()).await?;
    wait_for(WAIT, "RemovingNode event", || async {
        Ok(events_about(&client, "Node", "node-0").await?.contains(&(
            "Normal".into(),
            "RemovingNode".into(),
            "Node node-0 event: Removing Node node-0 from Controller".into(),
        )))
    })
    .await?;
    let node_events = events_about(&client, "Node", "node-0").await?;
    let count = |reason: &str| node_events.iter().filter(|e| e.1 == reason).count();
    assert_eq!(
        (
            count("RegisteredNode"),
            count("NodeNotReady"),
            count("RemovingNode")
        ),
        (1, 1, 1),
        "{node_events:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_pod_creations_surface_as_replica_failure() -> anyhow::Result<()> {
    // No namespace controller: a deleted namespace stays Terminating, and pod creation in it is
    // refused with 403.
    let (_server, client) =
        start_cluster(Settings::default(), &["deployment", "replicaset"]).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}
    }))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "doomed");
    let deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "doomed"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}
            }
        }
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    let replicasets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(client.clone(), "doomed");
    wait_for(WAIT, "replica set", || async {
        Ok(!replicasets
            .list(&ListParams::default())
            .await?
            .items
            .is_empty())
    })
    .await?;
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await?;
    let scale = serde_json::json!({"spec": {"replicas": 2}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&scale))
        .await?;
    wait_for(WAIT, "ReplicaFailure on the deployment", || async {
        let d = deployments.get("web").await?;
        Ok(d.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| {
                c.type_ == "ReplicaFailure"
                    && c.status == "True"
                    && c.reason.as_deref() == Some("FailedCreate")
                    && c.message
                        .as_deref()
                        .is_some_and(|m| m.contains("being terminated"))
            }))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ttl_controller_annotates_nodes_by_cluster_size() -> anyhow::Result<()> {
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let ttl_of = |name: &'static str| {
        let nodes = nodes.clone();
        async move {
            Ok::<_, anyhow::Error>(
                nodes
                    .get(name)
                    .await?
                    .annotations()
                    .get("node.alpha.kubernetes.io/ttl")
                    .cloned(),
            )
        }
    };
    create_node(&client, "node-0", NodeOptions::default()).await?;
    kube_controller_manager::testing::start(client.clone(), Settings::default(), &["ttl"]);
    wait_for(WAIT, "node-0 annotated 0", || async {
        Ok(ttl_of("node-0").await?.as_deref() == Some("0"))
    })
    .await?;

    // A hand edit is put back.
    let edit =
        serde_json::json!({"metadata": {"annotations": {"node.alpha.kubernetes.io/ttl": "9"}}});
    nodes
        .patch("node-0", &PatchParams::default(), &Patch::Merge(&edit))
        .await?;
    wait_for(WAIT, "node-0 back to 0", || async {
        Ok(ttl_of("node-0").await?.as_deref() == Some("0"))
    })
    .await?;

    // Past 100 nodes the TTL is 15 s: new nodes get it at once, old ones when next updated.
    // (Created bare: a status written by replace would race the controller's annotation.)
    for i in 1..=101 {
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{i}")}
        }))?;
        nodes.create(&PostParams::default(), &node).await?;
    }
    wait_for(WAIT, "node-101 annotated 15", || async {
        Ok(ttl_of("node-101").await?.as_deref() == Some("15"))
    })
    .await?;
    let touch = serde_json::json!({"metadata": {"labels": {"touched": "yes"}}});
    nodes
        .patch("node-0", &PatchParams::default(), &Patch::Merge(&touch))
        .await?;
    wait_for(WAIT, "node-0 annotated 15 after an update", || async {
        Ok(ttl_of("node-0").await?.as_deref() == Some("15"))
    })
    .await?;
    Ok(())
}
