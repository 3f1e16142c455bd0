//! The namespace and ServiceAccount controllers against an in-process apiserver: a new namespace
//! gets its `default` ServiceAccount; deleting a namespace empties it and removes it.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use kube_apiserver::testing::TestServer;
use kube_controller_manager::context::Settings;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_is_emptied_and_finalized() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    kube_controller_manager::testing::start(
        client.clone(),
        Settings::default(),
        &["namespace", "serviceaccount"],
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}),
    )?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "doomed");
    wait_for("default service account", || async {
        Ok(accounts.get_opt("default").await?.is_some())
    })
    .await?;

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let cm: ConfigMap = serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "b"}}),
    )?;
    configmaps.create(&PostParams::default(), &cm).await?;

    namespaces
        .delete("doomed", &DeleteParams::default())
        .await?;
    wait_for("namespace gone", || async {
        Ok(namespaces.get_opt("doomed").await?.is_none())
    })
    .await?;
    assert!(configmaps.get_opt("settings").await?.is_none());
    Ok(())
}
