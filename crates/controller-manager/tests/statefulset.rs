//! The StatefulSet controller with an in-process apiserver, the real scheduler and a fake kubelet
//! that marks bound pods Running/Ready: ordered scale up to 3 and down to 1 with stable names and
//! claims, scale through the `/scale` subresource, and a partitioned rolling update. An observer
//! checks on every listed state that pod `web-i` only exists while `web-(i-1)` exists and is
//! Ready (OrderedReady).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_apiserver::testing::TestServer;
use kube_controller_manager::context::Settings;

mod support;

use support::{create_node, is_ready, wait_for, NodeOptions};

/// How long `wait_for` polls.
const WAIT: Duration = Duration::from_secs(90);

fn stateful_set() -> anyhow::Result<StatefulSet> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "httpd", "image": "busybox:1.35",
                    "command": ["httpd", "-f", "-p", "8080"]
                }]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }))?)
}

/// Pods of the set by ordinal (non-terminating only).
async fn pods_by_ordinal(client: &Client) -> anyhow::Result<BTreeMap<i32, Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut out = BTreeMap::new();
    for pod in pods
        .list(&ListParams::default().labels("app=web"))
        .await?
        .items
    {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(ordinal) = pod
            .name_any()
            .strip_prefix("web-")
            .and_then(|s| s.parse::<i32>().ok())
        {
            out.insert(ordinal, pod);
        }
    }
    Ok(out)
}

/// Checks the OrderedReady invariant on every observed state; returns the violations seen.
/// Only while `checking` is set (a rolling update legitimately replaces lower ordinals while
/// higher ones run).
fn spawn_order_observer(client: Client, checking: Arc<AtomicBool>) -> Arc<Mutex<Vec<String>>> {
    let violations = Arc::new(Mutex::new(Vec::new()));
    let out = violations.clone();
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        loop {
            if !checking.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            if let Ok(list) = pods.list(&ListParams::default().labels("app=web")).await {
                let by_name: BTreeMap<String, Pod> =
                    list.items.into_iter().map(|p| (p.name_any(), p)).collect();
                for name in by_name.keys() {
                    let Some(ordinal) = name
                        .strip_prefix("web-")
                        .and_then(|s| s.parse::<i32>().ok())
                    else {
                        continue;
                    };
                    if ordinal == 0 {
                        continue;
                    }
                    let previous = by_name.get(&format!("web-{}", ordinal - 1));
                    if !previous.is_some_and(is_ready) {
                        if let Ok(mut v) = out.lock() {
                            v.push(format!(
                                "{name} exists while web-{} is missing or not ready",
                                ordinal - 1
                            ));
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    violations
}

async fn status_is(
    sets: &Api<StatefulSet>,
    replicas: i32,
    ready: i32,
    updated: i32,
) -> anyhow::Result<bool> {
    let set = sets.get("web").await?;
    let status = set.status.clone().unwrap_or_default();
    Ok(status.observed_generation >= set.metadata.generation
        && status.replicas == replicas
        && status.ready_replicas == Some(ready)
        && status.updated_replicas == Some(updated))
}

/// `count` hostPath volumes for the claims of the set's volumeClaimTemplates: the scheduler
/// places a pod only once its (Immediate) claims are bound, as upstream.
async fn create_volumes(client: &kube::Client, count: usize) -> anyhow::Result<()> {
    let volumes: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
    for i in 0..count {
        let pv = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": format!("pv-{i}")},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": format!("/tmp/pv-{i}")},
                     "persistentVolumeReclaimPolicy": "Retain"}
        }))?;
        volumes.create(&PostParams::default(), &pv).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stateful_set_scales_in_order_and_rolls_out_by_partition() -> anyhow::Result<()> {
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    create_node(
        &client,
        "node-0",
        NodeOptions {
            labels: Some(serde_json::json!({})),
            taints: Some(serde_json::json!([])),
            ..NodeOptions::default()
        },
    )
    .await?;
    kube_controller_manager::testing::start(
        client.clone(),
        Settings::default(),
        &["statefulset", "persistentvolume-binder"],
    );
    create_volumes(&client, 6).await?;
    let _scheduler = support::start_scheduler_and_kubelet(&client, support::spread_pod_ip).await;
    let checking = Arc::new(AtomicBool::new(true));
    let violations = spawn_order_observer(client.clone(), checking.clone());

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &stateful_set()?)
        .await?;
    wait_for(WAIT, "3 ready replicas", || status_is(&sets, 3, 3, 3)).await?;

    // Stable identity.
    let pods = pods_by_ordinal(&client).await?;
    assert_eq!(pods.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
    let first_revision = sets
        .get("web")
        .await?
        .status
        .and_then(|s| s.update_revision)
        .context("update revision")?;
    for (ordinal, pod) in &pods {
        let labels = pod.labels();
        let name = format!("web-{ordinal}");
        assert_eq!(
            labels.get("statefulset.kubernetes.io/pod-name"),
            Some(&name)
        );
        assert_eq!(
            labels.get("apps.kubernetes.io/pod-index"),
            Some(&ordinal.to_string())
        );
        assert_eq!(
            labels.get("controller-revision-hash"),
            Some(&first_revision)
        );
        let spec = pod.spec.clone().unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for ordinal in 0..3 {
        assert!(claims
            .get_opt(&format!("data-web-{ordinal}"))
            .await?
            .is_some());
    }

    // Scale down to 1 through the scale subresource: web-2 then web-1 go, the claims stay.
    sets.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await?;
    wait_for(WAIT, "1 replica", || async {
        Ok(status_is(&sets, 1, 1, 1).await?
            && pods_by_ordinal(&client)
                .await?
                .keys()
                .copied()
                .collect::<Vec<_>>()
                == [0])
    })
    .await?;
    for ordinal in 0..3 {
        assert!(claims
            .get_opt(&format!("data-web-{ordinal}"))
            .await?
            .is_some());
    }

    // Back to 3, then a partitioned rolling update: only ordinals >= 1 move.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await?;
    wait_for(WAIT, "3 ready replicas again", || status_is(&sets, 3, 3, 3)).await?;
    checking.store(false, Ordering::SeqCst);
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            "template": {"metadata": {"annotations": {"rollout": "2"}}}
        }})),
    )
    .await?;
    wait_for(WAIT, "ordinals 1 and 2 updated", || async {
        let status = sets.get("web").await?.status.unwrap_or_default();
        Ok(status.update_revision.as_ref() != Some(&first_revision)
            && status.current_revision.as_ref() == Some(&first_revision)
            && status.updated_replicas == Some(2)
            && status.ready_replicas == Some(3))
    })
    .await?;
    let set = sets.get("web").await?;
    let update_revision = set
        .status
        .and_then(|s| s.update_revision)
        .context("update revision")?;
    let pods = pods_by_ordinal(&client).await?;
    let revision_of = |ordinal: i32| {
        pods.get(&ordinal)
            .and_then(|p| p.labels().get("controller-revision-hash").cloned())
    };
    assert_eq!(revision_of(0), Some(first_revision.clone()));
    assert_eq!(revision_of(1), Some(update_revision.clone()));
    assert_eq!(revision_of(2), Some(update_revision.clone()));

    // Partition 0 finishes the rollout; the update revision becomes current.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
        }})),
    )
    .await?;
    wait_for(WAIT, "rollout complete", || async {
        let status = sets.get("web").await?.status.unwrap_or_default();
        Ok(status.current_revision.as_ref() == Some(&update_revision)
            && status.updated_replicas == Some(3)
            && status.current_replicas == Some(3)
            && status.ready_replicas == Some(3))
    })
    .await?;
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let names: Vec<String> = revisions
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|r| r.name_any())
        .collect();
    assert!(names.contains(&first_revision) && names.contains(&update_revision));

    let seen = violations.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(seen.is_empty(), "OrderedReady violated: {seen:?}");
    drop(server);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_on_delete_set_waits_for_deletions_and_drops_claims_on_scale_down(
) -> anyhow::Result<()> {
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    create_node(
        &client,
        "node-0",
        NodeOptions {
            labels: Some(serde_json::json!({})),
            taints: Some(serde_json::json!([])),
            ..NodeOptions::default()
        },
    )
    .await?;
    kube_controller_manager::testing::start(
        client.clone(),
        Settings::default(),
        &["statefulset", "persistentvolume-binder"],
    );
    create_volumes(&client, 6).await?;
    let _scheduler = support::start_scheduler_and_kubelet(&client, support::spread_pod_ip).await;

    let mut set = stateful_set()?;
    if let Some(spec) = set.spec.as_mut() {
        spec.pod_management_policy = Some("Parallel".into());
        spec.update_strategy = Some(serde_json::from_value(
            serde_json::json!({"type": "OnDelete"}),
        )?);
        spec.persistent_volume_claim_retention_policy = Some(serde_json::from_value(
            serde_json::json!({"whenDeleted": "Retain", "whenScaled": "Delete"}),
        )?);
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &set).await?;
    wait_for(WAIT, "3 ready replicas", || status_is(&sets, 3, 3, 3)).await?;
    let first_revision = sets
        .get("web")
        .await?
        .status
        .and_then(|s| s.update_revision)
        .context("update revision")?;

    // OnDelete: a new template changes nothing until a pod is deleted.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {
            "template": {"metadata": {"annotations": {"rollout": "2"}}}
        }})),
    )
    .await?;
    wait_for(WAIT, "new update revision", || async {
        let status = sets.get("web").await?.status.unwrap_or_default();
        Ok(status.update_revision.as_ref() != Some(&first_revision)
            && status.updated_replicas == Some(0))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        status_is(&sets, 3, 3, 0).await?,
        "OnDelete pods were replaced"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete("web-1", &DeleteParams::default()).await?;
    wait_for(WAIT, "web-1 recreated from the update revision", || {
        status_is(&sets, 3, 3, 1)
    })
    .await?;
    let update_revision = sets
        .get("web")
        .await?
        .status
        .and_then(|s| s.update_revision)
        .context("update revision")?;
    let web1 = pods.get("web-1").await?;
    assert_eq!(
        web1.labels().get("controller-revision-hash"),
        Some(&update_revision)
    );

    // whenScaled: Delete removes the claims of the condemned pods.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "scaled to 1 without its claims", || async {
        Ok(pods_by_ordinal(&client)
            .await?
            .keys()
            .copied()
            .collect::<Vec<_>>()
            == [0]
            && claims.get_opt("data-web-1").await?.is_none()
            && claims.get_opt("data-web-2").await?.is_none())
    })
    .await?;
    assert!(claims.get_opt("data-web-0").await?.is_some());

    // Back to the first template: its revision is reused and renumbered as the newest.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {
            "template": {"metadata": {"annotations": null}}
        }})),
    )
    .await?;
    wait_for(
        WAIT,
        "the first revision is the update revision again",
        || async {
            let status = sets.get("web").await?.status.unwrap_or_default();
            Ok(status.update_revision.as_ref() == Some(&first_revision))
        },
    )
    .await?;
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    assert_eq!(revisions.get(&first_revision).await?.revision, 3);
    assert_eq!(revisions.list(&ListParams::default()).await?.items.len(), 2);
    drop(server);
    Ok(())
}
