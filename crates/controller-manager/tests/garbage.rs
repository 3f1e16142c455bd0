//! The garbage collector against an in-process apiserver: background, foreground and orphan
//! deletion of an owner with a dependent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    PropagationPolicy,
};
use kube::{Api, Client, ResourceExt};
use kube_apiserver::testing::TestServer;
use kube_controller_manager::context::{Context, Settings};
use kube_controller_manager::events::Recorder;
use kube_controller_manager::informer::{Informer, Informers};

async fn wait_for<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(true) = check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A selector-less Service and an EndpointSlice it owns (not managed by the slice controller).
async fn owner_and_dependent(client: &Client, name: &str) -> anyhow::Result<()> {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"ports": [{"port": 80}]}
    }))?;
    let service = services.create(&PostParams::default(), &service).await?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-dep"), "labels": {"endpointslice.kubernetes.io/managed-by": "test"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                "uid": service.uid(), "controller": true, "blockOwnerDeletion": true}]},
        "addressType": "IPv4", "endpoints": []
    }))?;
    slices.create(&PostParams::default(), &slice).await?;
    Ok(())
}

/// Deletes a Service orphaning its dependents and waits until it is gone.
async fn delete_orphaning(services: &Api<Service>, name: &str) -> anyhow::Result<()> {
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    services.delete(name, &orphan).await?;
    wait_for("orphaning owner gone", || async {
        Ok(services.get_opt(name).await?.is_none())
    })
    .await
}

/// Starts the garbage collector with a fixed EndpointSlice cache holding `slices` (other kinds
/// are watched as usual).
fn start_collector_with_slice_cache(client: &Client, slices: Vec<DynamicObject>) {
    let informers = Informers::new(client.clone());
    let slice_kind = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("discovery.k8s.io", "v1", "EndpointSlice"),
        "endpointslices",
    );
    informers.set_dynamic(
        &slice_kind,
        Informer::fixed_with(slices, slice_kind.clone()),
    );
    let ctx = Arc::new(Context {
        informers,
        recorder: Recorder::new(client.clone(), "controller-manager"),
        client: client.clone(),
        settings: Settings::default(),
    });
    kube_controller_manager::start_controllers(ctx, &["garbagecollector"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_deleted_in_each_propagation_mode_treat_dependents_as_upstream() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let client = server.client().await?;
    kube_controller_manager::testing::start(
        client.clone(),
        Settings::default(),
        &["garbagecollector"],
    );
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    owner_and_dependent(&client, "background").await?;
    services
        .delete("background", &DeleteParams::background())
        .await?;
    wait_for("background dependent collected", || async {
        Ok(slices.get_opt("background-dep").await?.is_none())
    })
    .await?;

    owner_and_dependent(&client, "foreground").await?;
    services
        .delete("foreground", &DeleteParams::foreground())
        .await?;
    wait_for("foreground owner and dependent gone", || async {
        Ok(slices.get_opt("foreground-dep").await?.is_none()
            && services.get_opt("foreground").await?.is_none())
    })
    .await?;

    owner_and_dependent(&client, "orphan").await?;
    delete_orphaning(&services, "orphan").await?;
    let dependent = slices.get("orphan-dep").await?;
    assert!(
        dependent.owner_references().is_empty(),
        "owner reference should be stripped"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        slices.get_opt("orphan-dep").await?.is_some(),
        "orphaned dependent must survive"
    );
    Ok(())
}

/// The collector's EndpointSlice cache never sees the dependent (as when a dependent is created
/// just before its owner is deleted and its kind's watch lags): orphaning and foreground deletion
/// must still find it by reading the apiserver before they let the owner go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_wait_for_dependents_their_caches_have_not_seen() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    start_collector_with_slice_cache(&client, Vec::new());
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    owner_and_dependent(&client, "orphan").await?;
    delete_orphaning(&services, "orphan").await?;
    assert!(
        slices
            .get("orphan-dep")
            .await?
            .owner_references()
            .is_empty(),
        "owner reference should be stripped"
    );

    owner_and_dependent(&client, "foreground").await?;
    services
        .delete("foreground", &DeleteParams::foreground())
        .await?;
    wait_for("blocking dependent deleted in the foreground", || async {
        let dependent = slices.get("foreground-dep").await?;
        Ok(dependent.metadata.deletion_timestamp.is_some())
    })
    .await?;
    // The dependent waits on its own foreground finalizer, which this collector cannot see to
    // remove; its owner must wait for it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        services.get_opt("foreground").await?.is_some(),
        "owner deleted before its blocking dependent"
    );
    slices
        .patch(
            "foreground-dep",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await?;
    wait_for("foreground owner gone after its dependent", || async {
        Ok(services.get_opt("foreground").await?.is_none())
    })
    .await
}

/// The collector's EndpointSlice cache still shows an owner reference that an orphaning owner
/// removed just before it went (as when the strip's watch event lags): the collector must act
/// on the apiserver's copy, not delete the orphan. A slice whose live copy still names the gone
/// owner shows that the collector ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_the_cache_still_shows_does_not_doom_an_orphan() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let gone_owner = serde_json::json!([{"apiVersion": "v1", "kind": "Service", "name": "gone",
        "uid": "6a0c3a7e-0000-4000-8000-00000000dead", "controller": true}]);
    let slice = |name: &str, owners: &serde_json::Value| -> anyhow::Result<EndpointSlice> {
        Ok(serde_json::from_value(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default", "ownerReferences": owners,
                "labels": {"endpointslice.kubernetes.io/managed-by": "test"}},
            "addressType": "IPv4", "endpoints": []
        }))?)
    };
    let orphan = slices
        .create(
            &PostParams::default(),
            &slice("orphan", &serde_json::json!([]))?,
        )
        .await?;
    let dangling = slices
        .create(&PostParams::default(), &slice("dangling", &gone_owner)?)
        .await?;
    // The cache's copies: both still name the gone owner.
    let cached = |live: &EndpointSlice| -> anyhow::Result<DynamicObject> {
        let mut value = serde_json::to_value(live)?;
        value["metadata"]["ownerReferences"] = gone_owner.clone();
        Ok(serde_json::from_value(value)?)
    };
    start_collector_with_slice_cache(&client, vec![cached(&orphan)?, cached(&dangling)?]);
    wait_for("the dangling slice collected", || async {
        Ok(slices.get_opt("dangling").await?.is_none())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        slices.get_opt("orphan").await?.is_some(),
        "the orphan was deleted for a reference only the cache had"
    );
    Ok(())
}
