//! Lists and watches through the watch cache of an in-process apiserver: consistent lists see
//! every write, `resourceVersion` semantics (too large -> 504 ResourceVersionTooLarge), pages
//! with continue tokens, kubelet-style `spec.nodeName` watches, and `--watch-cache=false`.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube_apiserver::testing::TestServer;
use serde_json::{json, Value};

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1.35"}]},
    }))
    .expect("pod")
}

async fn started(server: &TestServer) {
    let cache = server.state.watch_cache.as_ref().expect("the cache is on");
    assert!(
        cache.wait_ready(Duration::from_secs(30)).await,
        "cache never filled"
    );
}

/// A client that does not retry 504s (kube-rs retries them by default).
async fn raw_client(server: &TestServer) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig)?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}

/// GET `path`: status code and JSON body.
async fn get(client: &kube::Client, path: &str) -> anyhow::Result<(u16, Value)> {
    let request = http::Request::get(path).body(kube::client::Body::empty())?;
    let response = client.send(request).await?;
    let code = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((code, serde_json::from_slice(&body)?))
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn lists_from_the_cache_are_consistent_paged_and_honour_resource_versions(
) -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    started(&server).await;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, node) in [("a", "n1"), ("b", "n2"), ("c", "n1")] {
        pods.create(&PostParams::default(), &pod(name, node))
            .await?;
    }
    // A list right after the writes (no resourceVersion: a consistent read) sees all of them.
    let base = "/api/v1/namespaces/default/pods";
    let (code, list) = get(&client, base).await?;
    assert_eq!(code, 200);
    assert_eq!(names(&list), vec!["a", "b", "c"]);
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"][0]["kind"], "Pod");
    let rv: i64 = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()?;

    let (_, on_n1) = get(&client, &format!("{base}?fieldSelector=spec.nodeName%3Dn1")).await?;
    assert_eq!(names(&on_n1), vec!["a", "c"]);
    let (code, any) = get(&client, &format!("{base}?resourceVersion=0")).await?;
    assert_eq!(code, 200);
    assert!(names(&any).len() <= 3);
    let (code, not_older) = get(
        &client,
        &format!("{base}?resourceVersion={rv}&resourceVersionMatch=NotOlderThan"),
    )
    .await?;
    assert_eq!(code, 200);
    assert_eq!(names(&not_older), vec!["a", "b", "c"]);

    // Pages in key order; a continue token of an older revision is answered from storage.
    let (_, first) = get(&client, &format!("{base}?limit=2")).await?;
    assert_eq!(names(&first), vec!["a", "b"]);
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    pods.create(&PostParams::default(), &pod("d", "n2")).await?;
    let (code, rest) = get(&client, &format!("{base}?limit=2&continue={token}")).await?;
    assert_eq!(code, 200);
    assert_eq!(
        names(&rest),
        vec!["c"],
        "the page reflects the first page's revision"
    );
    let (_, fresh) = get(&client, &format!("{base}?limit=3")).await?;
    let token = fresh["metadata"]["continue"].as_str().expect("continue");
    let (_, last) = get(&client, &format!("{base}?limit=3&continue={token}")).await?;
    assert_eq!(names(&last), vec!["d"]);
    assert!(last["metadata"].get("continue").is_none());

    // A revision the cache does not reach: upstream's ResourceVersionTooLarge.
    let (code, status) = get(
        &raw_client(&server).await?,
        &format!("{base}?resourceVersion={}", rv + 1_000_000),
    )
    .await?;
    assert_eq!(code, 504);
    assert_eq!(status["reason"], "Timeout");
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
    assert_eq!(status["details"]["retryAfterSeconds"], 1);
    Ok(())
}

#[tokio::test]
async fn node_watches_see_only_their_pods_from_a_resource_version() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    started(&server).await;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let all: Api<Pod> = Api::all(client.clone());
    pods.create(&PostParams::default(), &pod("early", "n1"))
        .await?;
    let list = all
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await?;
    let rv = list.metadata.resource_version.expect("rv");
    let mut events = all
        .watch(&WatchParams::default().fields("spec.nodeName=n1"), &rv)
        .await?
        .boxed();
    pods.create(&PostParams::default(), &pod("other", "n2"))
        .await?;
    pods.create(&PostParams::default(), &pod("mine", "n1"))
        .await?;
    pods.delete("mine", &DeleteParams::default().grace_period(0))
        .await?;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(20), events.try_next())
            .await??
            .expect("stream open");
        match event {
            WatchEvent::Added(p) => seen.push(("ADDED", p.metadata.name.unwrap_or_default())),
            WatchEvent::Modified(p) => seen.push(("MODIFIED", p.metadata.name.unwrap_or_default())),
            WatchEvent::Deleted(p) => seen.push(("DELETED", p.metadata.name.unwrap_or_default())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => anyhow::bail!("watch error {e:?}"),
        }
    }
    assert_eq!(seen[0], ("ADDED", "mine".to_string()));
    assert!(seen.iter().all(|(_, name)| name == "mine"), "{seen:?}");

    // resourceVersion=0: the current state as ADDED events first.
    let mut from_zero = all
        .watch(&WatchParams::default().fields("spec.nodeName=n1"), "0")
        .await?
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(20), from_zero.try_next())
        .await??
        .expect("stream open");
    assert!(
        matches!(&first, WatchEvent::Added(p) if p.metadata.name.as_deref() == Some("early")),
        "{first:?}"
    );
    let watchers = server
        .state
        .watch_cache
        .as_ref()
        .expect("cache")
        .metrics()
        .watchers();
    assert!(watchers >= 2, "{watchers} watchers registered");
    Ok(())
}

#[tokio::test]
async fn without_the_watch_cache_lists_and_watches_read_storage() -> anyhow::Result<()> {
    let server = TestServer::start_with(|o| o.watch_cache = false).await?;
    assert!(server.state.watch_cache.is_none());
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("a", "n1")).await?;
    let list = pods.list(&ListParams::default()).await?;
    assert_eq!(list.items.len(), 1);
    let mut events = pods.watch(&WatchParams::default(), "0").await?.boxed();
    let first = tokio::time::timeout(Duration::from_secs(20), events.try_next())
        .await??
        .expect("stream open");
    assert!(matches!(first, WatchEvent::Added(_)), "{first:?}");
    Ok(())
}

#[tokio::test]
async fn gets_with_a_resource_version_are_served_from_the_cache_and_selectors_apply(
) -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    started(&server).await;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut labelled = pod("a", "n1");
    labelled.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
    let created = pods.create(&PostParams::default(), &labelled).await?;
    pods.create(&PostParams::default(), &pod("b", "n2")).await?;
    let rv = created
        .metadata
        .resource_version
        .expect("a resourceVersion");
    let raw = raw_client(&server).await?;
    let base = "/api/v1/namespaces/default/pods";

    // Not older than rv: once the cache reaches it, the object as created.
    let (code, at_rv) = get(&raw, &format!("{base}/a?resourceVersion={rv}")).await?;
    assert_eq!(code, 200, "{at_rv}");
    assert_eq!(at_rv["kind"], "Pod");
    assert_eq!(at_rv["apiVersion"], "v1");
    assert_eq!(at_rv["metadata"]["resourceVersion"], json!(rv));
    assert_eq!(at_rv["metadata"]["labels"]["app"], "web");
    assert_eq!(at_rv["spec"]["nodeName"], "n1");
    // Any version, and the storage read, answer the same object.
    let (code, any) = get(&raw, &format!("{base}/a?resourceVersion=0")).await?;
    assert_eq!((code, &any), (200, &at_rv));
    let (code, stored) = get(&raw, &format!("{base}/a")).await?;
    assert_eq!((code, &stored), (200, &at_rv));
    let (code, missing) = get(&raw, &format!("{base}/nope?resourceVersion=0")).await?;
    assert_eq!(code, 404);
    assert_eq!(missing["reason"], "NotFound");
    // A revision the cache does not reach: ResourceVersionTooLarge, as for lists (a storage
    // read would have answered 200).
    let too_large: i64 = rv.parse::<i64>()? + 1_000_000;
    let (code, status) = get(&raw, &format!("{base}/a?resourceVersion={too_large}")).await?;
    assert_eq!(code, 504);
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );

    // Label and field selectors on lists served from the cache read the cached bytes.
    let cases = [
        ("labelSelector=app%3Dweb", vec!["a"]),
        ("labelSelector=app%21%3Dweb", vec!["b"]),
        ("fieldSelector=spec.nodeName%3Dn2", vec!["b"]),
        (
            "fieldSelector=metadata.name%3Da,spec.nodeName%3Dn1",
            vec!["a"],
        ),
        ("fieldSelector=status.phase%3DRunning", vec![]),
        (
            "labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3Dn2",
            vec![],
        ),
    ];
    for (query, expected) in cases {
        let (code, list) = get(&raw, &format!("{base}?resourceVersion=0&{query}")).await?;
        assert_eq!(code, 200, "{query}: {list}");
        assert_eq!(names(&list), expected, "{query}");
        assert_eq!(list["kind"], "PodList");
    }
    Ok(())
}
