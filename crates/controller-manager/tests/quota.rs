//! The resource quota controller against an in-process apiserver: a new quota gets
//! `status.hard` and `status.used` computed from the objects already there, usage is replenished
//! when a pod goes away, pods admitted later are counted, and a change of `spec.hard`
//! shows up in `status.hard`.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_apiserver::testing::TestServer;
use kube_controller_manager::context::Settings;
use serde_json::json;

mod support;

use support::wait_for;

const WAIT: Duration = Duration::from_secs(60);

fn pod(name: &str, cpu: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.35",
            "resources": {"requests": {"cpu": cpu}}}]}}))?)
}

async fn used(quotas: &Api<ResourceQuota>, resource: &str) -> anyhow::Result<Option<String>> {
    let q = quotas.get("q").await?;
    Ok(q.status
        .and_then(|s| s.used)
        .and_then(|u| u.get(resource).map(|q| q.0.clone())))
}

async fn wait_used(
    quotas: &Api<ResourceQuota>,
    want: &[(&str, &str)],
    what: &str,
) -> anyhow::Result<()> {
    wait_for(WAIT, what, || async {
        for (resource, value) in want {
            if used(quotas, resource).await?.as_deref() != Some(*value) {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_status_follows_the_objects_in_its_namespace() -> anyhow::Result<()> {
    let server = TestServer::start().await.context("starting apiserver")?;
    let client: Client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    pods.create(&pp, &pod("p1", "500m")?).await?;
    pods.create(&pp, &pod("p2", "250m")?).await?;
    config_maps
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "cm"}}))?,
        )
        .await?;
    kube_controller_manager::testing::start(
        client.clone(),
        Settings::default(),
        &["resourcequota"],
    );
    let quota: ResourceQuota = serde_json::from_value(json!({"metadata": {"name": "q"},
        "spec": {"hard": {"pods": "3", "requests.cpu": "2", "count/configmaps": "10"}}}))?;
    quotas.create(&pp, &quota).await?;
    wait_used(
        &quotas,
        &[
            ("pods", "2"),
            ("requests.cpu", "750m"),
            ("count/configmaps", "1"),
        ],
        "initial usage",
    )
    .await?;
    let q = quotas.get("q").await?;
    let hard = q.status.and_then(|s| s.hard).unwrap_or_default();
    assert_eq!(hard.get("pods").map(|q| q.0.as_str()), Some("3"));

    // Replenishment: a deleted pod gives its share back.
    pods.delete("p1", &DeleteParams::default().grace_period(0))
        .await?;
    wait_used(
        &quotas,
        &[("pods", "1"), ("requests.cpu", "250m")],
        "replenished usage",
    )
    .await?;

    // A pod created through admission is counted too.
    pods.create(&pp, &pod("p3", "1")?).await?;
    wait_used(
        &quotas,
        &[("pods", "2"), ("requests.cpu", "1250m")],
        "charged usage",
    )
    .await?;

    // A new hard limit shows up in the status.
    quotas
        .patch(
            "q",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"hard": {"pods": "5"}}})),
        )
        .await?;
    wait_for(WAIT, "status.hard follows spec.hard", || async {
        let q = quotas.get("q").await?;
        let hard = q.status.and_then(|s| s.hard).unwrap_or_default();
        Ok(hard.get("pods").map(|q| q.0.as_str()) == Some("5"))
    })
    .await?;
    Ok(())
}
