//! A server to poke at by hand: `cargo test -p kube-apiserver --test manual -- --ignored --nocapture`
//! prints the kubeconfig path and serves for `KUBE_MANUAL_SECONDS` (default 600) seconds.

#[tokio::test]
#[ignore]
async fn serve_for_manual_testing() -> anyhow::Result<()> {
    let server = kube_apiserver::testing::TestServer::start().await?;
    let path = std::env::temp_dir().join("kube-apiserver-manual.kubeconfig");
    std::fs::copy(&server.kubeconfig, &path)?;
    eprintln!("KUBECONFIG={}", path.display());
    let secs: u64 = std::env::var("KUBE_MANUAL_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    Ok(())
}

/// Rough throughput numbers: `cargo test -p kube-apiserver --test manual -- --ignored --nocapture create_throughput`.
#[tokio::test]
#[ignore]
async fn create_throughput() -> anyhow::Result<()> {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, PostParams};
    let server = kube_apiserver::testing::TestServer::start().await?;
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await?, "default");
    let n = 1000;
    let started = std::time::Instant::now();
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("cm-{i}")}, "data": {"k": "v"}}))?;
                cms.create(&PostParams::default(), &cm).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let created = started.elapsed();
    assert!(results.iter().all(|r| r.is_ok()));
    let started = std::time::Instant::now();
    let list = cms.list(&ListParams::default()).await?;
    let listed = started.elapsed();
    eprintln!(
        "created {n} configmaps in {created:?} ({:.0}/s); listed {} in {listed:?}",
        n as f64 / created.as_secs_f64(),
        list.items.len()
    );
    Ok(())
}
