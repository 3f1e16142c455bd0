//! Two in-process apiservers on one real etcd (the apiserver is stateless): a write through one
//! is seen by a watch and a list on the other, both served from the other's watch cache. Skipped
//! with a note when the `etcd` binary is missing.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube_apiserver::testing::TestServer;
use kube_apiserver::StorageBackend;
use serde_json::json;

mod support;

async fn on_etcd(url: &str) -> anyhow::Result<TestServer> {
    let url = url.to_string();
    let server = TestServer::start_with(move |o| {
        o.storage_backend = StorageBackend::Etcd3;
        o.etcd_servers = vec![url];
    })
    .await?;
    let cache = server.state.watch_cache.as_ref().expect("cache on");
    assert!(cache.wait_ready(Duration::from_secs(30)).await);
    Ok(server)
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"k": "v"},
    }))
    .expect("configmap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_apiserver_is_seen_by_a_watch_and_a_list_on_the_other(
) -> anyhow::Result<()> {
    let Some(etcd) = support::etcd::start("the two-apiserver test").await? else {
        return Ok(());
    };
    let a = on_etcd(&etcd.url).await?;
    let b = on_etcd(&etcd.url).await?;
    let on_a: Api<ConfigMap> = Api::namespaced(a.client().await?, "default");
    let on_b: Api<ConfigMap> = Api::namespaced(b.client().await?, "default");

    let start = on_b.list(&ListParams::default()).await?;
    let rv = start.metadata.resource_version.expect("rv");
    let mut events = on_b.watch(&WatchParams::default(), &rv).await?.boxed();

    let created = on_a
        .create(&PostParams::default(), &config_map("shared"))
        .await?;
    let event = loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.try_next())
            .await??
            .expect("stream open");
        if !matches!(event, WatchEvent::Bookmark(_)) {
            break event;
        }
    };
    match event {
        WatchEvent::Added(cm) => {
            assert_eq!(cm.metadata.name.as_deref(), Some("shared"));
            assert_eq!(
                cm.metadata.resource_version,
                created.metadata.resource_version
            );
        }
        other => anyhow::bail!("expected ADDED, got {other:?}"),
    }

    // A consistent list on B right after a write through A includes it.
    on_a.create(&PostParams::default(), &config_map("second"))
        .await?;
    let names: Vec<_> = on_b
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .collect();
    assert!(names.contains(&"shared".to_string()), "{names:?}");
    assert!(names.contains(&"second".to_string()), "{names:?}");
    Ok(())
}

/// Updates start from the watch cache's copy; a copy that lags behind a write through the
/// other apiserver must cost a retry from storage, never a wrong 409 or a lost write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_alternating_between_apiservers_follow_each_others_writes() -> anyhow::Result<()> {
    let Some(etcd) = support::etcd::start("the two-apiserver test").await? else {
        return Ok(());
    };
    let a = on_etcd(&etcd.url).await?;
    let b = on_etcd(&etcd.url).await?;
    let on_a: Api<ConfigMap> = Api::namespaced(a.client().await?, "default");
    let on_b: Api<ConfigMap> = Api::namespaced(b.client().await?, "default");
    let mut current = on_a
        .create(&PostParams::default(), &config_map("alternating"))
        .await?;
    let first_rv = current.metadata.resource_version.clone().expect("rv");
    for round in 0..30 {
        let api = if round % 2 == 0 { &on_b } else { &on_a };
        let mut next = current.clone();
        next.data = Some([("k".to_string(), format!("v{round}"))].into());
        // The answer of the other apiserver's write is the precondition: its cache may not
        // have seen that write yet.
        current = api
            .replace("alternating", &PostParams::default(), &next)
            .await
            .map_err(|e| anyhow::anyhow!("round {round}: {e}"))?;
    }
    for api in [&on_a, &on_b] {
        let mut stale = current.clone();
        stale.metadata.resource_version = Some(first_rv.clone());
        let refused = api
            .replace("alternating", &PostParams::default(), &stale)
            .await
            .expect_err("stale resourceVersion");
        assert!(
            matches!(refused, kube::Error::Api(ref s) if s.code == 409),
            "{refused:?}"
        );
    }
    let stored = on_a.get("alternating").await?;
    assert_eq!(
        stored.data.and_then(|d| d.get("k").cloned()).as_deref(),
        Some("v29")
    );
    assert_eq!(
        stored.metadata.resource_version,
        current.metadata.resource_version
    );
    Ok(())
}
