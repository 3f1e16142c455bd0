//! VolumeBinding against an in-process apiserver with fake nodes: a pod whose claim has a
//! `WaitForFirstConsumer` class lands on the node of the local volume that can serve it, and
//! the scheduler binds the volume to the claim (`spec.claimRef`, completed here the way the PV
//! controller does); a pod whose claim is missing gets upstream's FailedScheduling message and
//! is scheduled once the claim appears.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

mod support;

use support::{create_node, has_event, node_of, wait_for};

/// A local volume of class `local` on `node`, Available (as the PV controller would mark it).
async fn create_local_volume(client: &Client, name: &str, node: &str) -> anyhow::Result<()> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "storageClassName": "local",
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "local": {"path": "/mnt/disks/one"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
        }
    }))?;
    let mut created = volumes.create(&PostParams::default(), &pv).await?;
    created.status = serde_json::from_value(serde_json::json!({"phase": "Available"}))?;
    volumes
        .replace_status(name, &PostParams::default(), &created)
        .await?;
    Ok(())
}

async fn create_claim(client: &Client, name: &str) -> anyhow::Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"storageClassName": "local", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}
    }))?;
    claims.create(&PostParams::default(), &claim).await?;
    Ok(())
}

fn pod_with_claim(name: &str, claim: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox:1.35",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        }
    }))?)
}

/// What the PV controller does once the scheduler has set a volume's claimRef (with the
/// claim's UID): the claim gets `spec.volumeName` and `bind-completed`, both sides are Bound.
async fn complete_bindings(client: Client) -> anyhow::Result<()> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client, "default");
    loop {
        for pv in volumes.list(&ListParams::default()).await?.items {
            let Some(reference) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
                continue;
            };
            let (Some(claim_name), Some(uid)) = (reference.name, reference.uid) else {
                continue;
            };
            let Some(mut claim) = claims.get_opt(&claim_name).await? else {
                continue;
            };
            if claim.metadata.uid.as_deref() != Some(uid.as_str())
                || claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .is_some()
            {
                continue;
            }
            let pv_name = pv.metadata.name.clone().unwrap_or_default();
            claim.spec.get_or_insert_with(Default::default).volume_name = Some(pv_name.clone());
            let annotations = claim
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            annotations.insert("pv.kubernetes.io/bind-completed".into(), "yes".into());
            annotations.insert("pv.kubernetes.io/bound-by-controller".into(), "yes".into());
            let mut claim = claims
                .replace(&claim_name, &PostParams::default(), &claim)
                .await?;
            claim.status = serde_json::from_value(serde_json::json!({"phase": "Bound"}))?;
            claims
                .replace_status(&claim_name, &PostParams::default(), &claim)
                .await?;
            let mut pv = pv;
            pv.status = serde_json::from_value(serde_json::json!({"phase": "Bound"}))?;
            volumes
                .replace_status(&pv_name, &PostParams::default(), &pv)
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_first_consumer_claims_bind_to_the_volume_on_the_chosen_node() -> anyhow::Result<()>
{
    let (_server, client) = support::start().await?;
    create_node(
        &client,
        "node-0",
        "4",
        &[("kubernetes.io/hostname", "node-0")],
    )
    .await?;
    create_node(
        &client,
        "node-1",
        "4",
        &[("kubernetes.io/hostname", "node-1")],
    )
    .await?;
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class: StorageClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local"},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer"
    }))?;
    classes.create(&PostParams::default(), &class).await?;
    create_local_volume(&client, "local-pv", "node-1").await?;
    create_claim(&client, "data").await?;
    let _scheduler = kube_scheduler::scheduler::Scheduler::start(client.clone()).await;
    let binder = tokio::spawn(complete_bindings(client.clone()));

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod_with_claim("consumer", "data")?)
        .await?;
    wait_for("consumer bound to node-1", || async {
        Ok(node_of(&pods.get("consumer").await?).as_deref() == Some("node-1"))
    })
    .await?;
    let pv = volumes.get("local-pv").await?;
    let claim = claims.get("data").await?;
    let reference = pv.spec.as_ref().and_then(|s| s.claim_ref.clone());
    assert_eq!(
        reference.as_ref().and_then(|r| r.name.as_deref()),
        Some("data")
    );
    assert_eq!(
        reference.as_ref().and_then(|r| r.uid.clone()),
        claim.metadata.uid
    );
    assert_eq!(
        pv.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("pv.kubernetes.io/bound-by-controller"))
            .map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        claim.spec.and_then(|s| s.volume_name).as_deref(),
        Some("local-pv")
    );

    // A missing claim: upstream's PreFilter message, and preemption cannot help.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod_with_claim("orphan", "later")?)
        .await?;
    wait_for("FailedScheduling for the missing claim", || {
        has_event(&events, "FailedScheduling", |m| m == "0/2 nodes are available: persistentvolumeclaim \"later\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    })
    .await?;
    assert_eq!(node_of(&pods.get("orphan").await?), None);

    // The claim and a volume on node-0 appear: the pod is retried and lands there.
    create_local_volume(&client, "local-pv-0", "node-0").await?;
    create_claim(&client, "later").await?;
    wait_for("orphan bound to node-0", || async {
        Ok(node_of(&pods.get("orphan").await?).as_deref() == Some("node-0"))
    })
    .await?;
    binder.abort();
    Ok(())
}
