//! The PersistentVolume binder against an in-process apiserver: claims bind to the best matching
//! volume by size, class, access modes and selector; both sides carry the upstream annotations,
//! phases and claim status; a claim with no match stays Pending with the upstream event and
//! binds when a volume appears; volumes and claims pre-bound by the user are honoured; reclaim
//! policy Retain releases the volume, Delete deletes it; a claim whose class waits for its first
//! consumer binds only to the volume the scheduler pre-bound.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_apiserver::testing::TestServer;
use kube_controller_manager::context::Settings;
use serde_json::json;

mod support;

use support::wait_for;

const WAIT: Duration = Duration::from_secs(60);

async fn start() -> anyhow::Result<(TestServer, Client)> {
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    kube_controller_manager::testing::start(
        client.clone(),
        Settings::default(),
        &["persistentvolume-binder"],
    );
    Ok((server, client))
}

async fn create_pv(
    client: &Client,
    name: &str,
    size: &str,
    modes: &[&str],
    class: &str,
    extra: serde_json::Value,
) -> anyhow::Result<()> {
    let mut value = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": modes,
                 "storageClassName": class, "hostPath": {"path": format!("/tmp/{name}")},
                 "persistentVolumeReclaimPolicy": "Retain"}
    });
    merge(&mut value, extra);
    let pv: PersistentVolume = serde_json::from_value(value)?;
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await?;
    Ok(())
}

async fn create_claim(
    client: &Client,
    name: &str,
    size: &str,
    modes: &[&str],
    class: &str,
    extra: serde_json::Value,
) -> anyhow::Result<()> {
    let mut value = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"accessModes": modes, "storageClassName": class,
                 "resources": {"requests": {"storage": size}}}
    });
    merge(&mut value, extra);
    let claim: PersistentVolumeClaim = serde_json::from_value(value)?;
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &claim)
        .await?;
    Ok(())
}

/// A JSON merge of `extra` into `value` (objects merge key by key).
fn merge(value: &mut serde_json::Value, extra: serde_json::Value) {
    match (value, extra) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn pv_phase(pv: &PersistentVolume) -> String {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn claim_phase(claim: &PersistentVolumeClaim) -> String {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

/// Waits until claim `name` is Bound, checks both sides of the binding and returns the
/// volume's name.
async fn wait_bound(client: &Client, name: &str) -> anyhow::Result<String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    wait_for(WAIT, &format!("claim {name} Bound"), || async {
        let claim = claims.get(name).await?;
        let Some(volume) = claim.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
            return Ok(false);
        };
        Ok(claim_phase(&claim) == "Bound" && pv_phase(&volumes.get(&volume).await?) == "Bound")
    })
    .await?;
    let claim = claims.get(name).await?;
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .context("volumeName")?;
    let pv = volumes.get(&volume_name).await?;
    let reference = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.clone())
        .context("claimRef")?;
    assert_eq!(reference.name.as_deref(), Some(name));
    assert_eq!(reference.namespace.as_deref(), Some("default"));
    assert_eq!(reference.uid, claim.metadata.uid);
    assert_eq!(reference.kind.as_deref(), Some("PersistentVolumeClaim"));
    assert_eq!(
        claim
            .annotations()
            .get("pv.kubernetes.io/bind-completed")
            .map(String::as_str),
        Some("yes")
    );
    let status = claim.status.clone().unwrap_or_default();
    let spec = pv.spec.clone().unwrap_or_default();
    assert_eq!(status.capacity, spec.capacity, "claim capacity of {name}");
    assert_eq!(
        status.access_modes, spec.access_modes,
        "claim modes of {name}"
    );
    Ok(volume_name)
}

fn bound_by_controller<K: ResourceExt>(object: &K) -> bool {
    object
        .annotations()
        .get("pv.kubernetes.io/bound-by-controller")
        .is_some_and(|v| v == "yes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_bind_to_the_best_matching_volume() -> anyhow::Result<()> {
    let (_server, client) = start().await?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let rwo = ["ReadWriteOnce"];
    create_pv(&client, "pv-1g", "1Gi", &rwo, "", json!({})).await?;
    create_pv(&client, "pv-2g", "2Gi", &rwo, "", json!({})).await?;
    create_pv(&client, "pv-10g", "10Gi", &rwo, "", json!({})).await?;
    create_pv(&client, "pv-fast", "5Gi", &rwo, "fast", json!({})).await?;
    create_pv(
        &client,
        "pv-rwx",
        "5Gi",
        &["ReadWriteOnce", "ReadWriteMany"],
        "",
        json!({}),
    )
    .await?;
    create_pv(
        &client,
        "pv-gold",
        "20Gi",
        &rwo,
        "",
        json!({"metadata": {"labels": {"tier": "gold"}}}),
    )
    .await?;
    wait_for(WAIT, "volumes Available", || async {
        let list = volumes.list(&ListParams::default()).await?.items;
        Ok(list.len() == 6 && list.iter().all(|pv| pv_phase(pv) == "Available"))
    })
    .await?;

    // Size: the smallest volume that fits.
    create_claim(&client, "c-size", "1500Mi", &rwo, "", json!({})).await?;
    assert_eq!(wait_bound(&client, "c-size").await?, "pv-2g");
    let pv = volumes.get("pv-2g").await?;
    assert!(bound_by_controller(&pv), "pv annotation");
    assert!(
        bound_by_controller(&claims.get("c-size").await?),
        "claim annotation"
    );
    // Class.
    create_claim(&client, "c-class", "1Gi", &rwo, "fast", json!({})).await?;
    assert_eq!(wait_bound(&client, "c-class").await?, "pv-fast");
    // Access modes.
    create_claim(&client, "c-mode", "1Gi", &["ReadWriteMany"], "", json!({})).await?;
    assert_eq!(wait_bound(&client, "c-mode").await?, "pv-rwx");
    // Selector.
    create_claim(
        &client,
        "c-selector",
        "1Gi",
        &rwo,
        "",
        json!({"spec": {"selector": {"matchLabels": {"tier": "gold"}}}}),
    )
    .await?;
    assert_eq!(wait_bound(&client, "c-selector").await?, "pv-gold");
    // Smallest again, among what is left.
    create_claim(&client, "c-next", "1Mi", &rwo, "", json!({})).await?;
    assert_eq!(wait_bound(&client, "c-next").await?, "pv-1g");

    // No match: Pending with the upstream event, then bound once a volume appears.
    create_claim(&client, "c-none", "100Gi", &rwo, "", json!({})).await?;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "FailedBinding event", || async {
        let pending = claim_phase(&claims.get("c-none").await?) == "Pending";
        let found = events.list(&ListParams::default()).await?.items.iter().any(|e| {
            e.involved_object.name.as_deref() == Some("c-none")
                && e.reason.as_deref() == Some("FailedBinding")
                && e.message.as_deref()
                    == Some("no persistent volumes available for this claim and no storage class is set")
        });
        Ok(pending && found)
    })
    .await?;
    assert_eq!(pv_phase(&volumes.get("pv-10g").await?), "Available");
    create_pv(&client, "pv-100g", "100Gi", &rwo, "", json!({})).await?;
    assert_eq!(wait_bound(&client, "c-none").await?, "pv-100g");
    assert_eq!(pv_phase(&volumes.get("pv-10g").await?), "Available");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_bound_volumes_and_claims_and_reclaim_policies() -> anyhow::Result<()> {
    let (_server, client) = start().await?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let rwo = ["ReadWriteOnce"];

    // A volume pre-bound by the user to a claim name gets that claim, not the equal free one.
    create_pv(&client, "pv-free", "1Gi", &rwo, "", json!({})).await?;
    create_pv(
        &client,
        "pv-pre",
        "1Gi",
        &rwo,
        "",
        json!({"spec": {"claimRef": {"namespace": "default", "name": "c-pre"}}}),
    )
    .await?;
    wait_for(WAIT, "pre-bound volume Available", || async {
        Ok(pv_phase(&volumes.get("pv-pre").await?) == "Available")
    })
    .await?;
    create_claim(&client, "c-pre", "1Gi", &rwo, "", json!({})).await?;
    assert_eq!(wait_bound(&client, "c-pre").await?, "pv-pre");
    assert!(
        !bound_by_controller(&volumes.get("pv-pre").await?),
        "the user bound the volume"
    );
    assert!(bound_by_controller(&claims.get("c-pre").await?));

    // A claim naming its volume gets it, though a smaller one would fit.
    create_pv(&client, "pv-named", "5Gi", &rwo, "", json!({})).await?;
    create_claim(
        &client,
        "c-named",
        "1Gi",
        &rwo,
        "",
        json!({"spec": {"volumeName": "pv-named"}}),
    )
    .await?;
    assert_eq!(wait_bound(&client, "c-named").await?, "pv-named");
    assert!(bound_by_controller(&volumes.get("pv-named").await?));
    assert!(
        !bound_by_controller(&claims.get("c-named").await?),
        "the user bound the claim"
    );
    assert_eq!(pv_phase(&volumes.get("pv-free").await?), "Available");

    // Retain: the volume is Released and kept when its claim goes.
    create_pv(&client, "pv-retain", "1Gi", &rwo, "retain", json!({})).await?;
    create_claim(&client, "c-retain", "1Gi", &rwo, "retain", json!({})).await?;
    assert_eq!(wait_bound(&client, "c-retain").await?, "pv-retain");
    claims.delete("c-retain", &DeleteParams::default()).await?;
    wait_for(WAIT, "retained volume Released", || async {
        Ok(pv_phase(&volumes.get("pv-retain").await?) == "Released")
    })
    .await?;
    // A new claim of the class does not get the Released volume.
    create_claim(&client, "c-retain-2", "1Gi", &rwo, "retain", json!({})).await?;
    wait_for(WAIT, "second claim Pending", || async {
        Ok(claim_phase(&claims.get("c-retain-2").await?) == "Pending")
    })
    .await?;
    let second = claims.get("c-retain-2").await?;
    assert_eq!(
        second.spec.as_ref().and_then(|s| s.volume_name.clone()),
        None
    );
    assert_eq!(pv_phase(&volumes.get("pv-retain").await?), "Released");

    // Delete: the volume goes with its claim.
    create_pv(
        &client,
        "pv-delete",
        "1Gi",
        &rwo,
        "delete",
        json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
    )
    .await?;
    create_claim(&client, "c-delete", "1Gi", &rwo, "delete", json!({})).await?;
    assert_eq!(wait_bound(&client, "c-delete").await?, "pv-delete");
    claims.delete("c-delete", &DeleteParams::default()).await?;
    wait_for(WAIT, "deleted volume gone", || async {
        Ok(volumes.get_opt("pv-delete").await?.is_none())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_first_consumer_claims_bind_only_to_volumes_the_scheduler_picked(
) -> anyhow::Result<()> {
    let (_server, client) = start().await?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let class: k8s_openapi::api::storage::v1::StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local"},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer"
    }))?;
    Api::<k8s_openapi::api::storage::v1::StorageClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await?;
    let rwo = ["ReadWriteOnce"];
    create_pv(&client, "local-a", "1Gi", &rwo, "local", json!({})).await?;
    create_pv(&client, "local-b", "1Gi", &rwo, "local", json!({})).await?;
    create_claim(&client, "data", "1Gi", &rwo, "local", json!({})).await?;

    // A matching volume exists, but the claim waits for its first pod, with the upstream event.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "WaitForFirstConsumer event", || async {
        let pending = claim_phase(&claims.get("data").await?) == "Pending";
        let found = events
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|e| {
                e.involved_object.name.as_deref() == Some("data")
                    && e.reason.as_deref() == Some("WaitForFirstConsumer")
                    && e.message.as_deref()
                        == Some("waiting for first consumer to be created before binding")
            });
        Ok(pending && found)
    })
    .await?;
    for name in ["local-a", "local-b"] {
        let pv = volumes.get(name).await?;
        assert_eq!(pv_phase(&pv), "Available", "{name}");
        assert!(pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_none());
    }

    // The scheduler pre-binds the volume on the chosen node; the binder completes that binding.
    let claim = claims.get("data").await?;
    let patch = json!({
        "metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
        "spec": {"claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                              "namespace": "default", "name": "data",
                              "uid": claim.metadata.uid}}
    });
    volumes
        .patch(
            "local-b",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    assert_eq!(wait_bound(&client, "data").await?, "local-b");
    assert_eq!(pv_phase(&volumes.get("local-a").await?), "Available");
    Ok(())
}
