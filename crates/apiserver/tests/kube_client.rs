//! The in-process apiserver driven by kube-rs: CRUD, conflicts, patches, finalizers, graceful
//! pod deletion, binding, scale, status, watch and discovery.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Binding, ConfigMap, Namespace, Node, Pod, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube_apiserver::testing::TestServer;
use serde_json::json;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]},
    }))
    .expect("pod")
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}},
    }))
    .expect("deployment")
}

#[tokio::test]
async fn create_get_list_update_and_conflict() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = pods.create(&PostParams::default(), &pod("a")).await?;
    let meta = &created.metadata;
    assert!(meta.uid.is_some());
    assert!(meta.creation_timestamp.is_some());
    let spec = created.spec.as_ref().expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
    assert_eq!(
        created.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );

    let err = pods
        .create(&PostParams::default(), &pod("a"))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err:?}"
    );

    let got = pods.get("a").await?;
    assert_eq!(got.metadata.resource_version, meta.resource_version);

    pods.create(&PostParams::default(), &pod("b")).await?;
    let list = pods.list(&ListParams::default().labels("app=web")).await?;
    assert_eq!(list.items.len(), 2);
    let page = pods.list(&ListParams::default().limit(1)).await?;
    assert_eq!(page.items.len(), 1);
    let token = page.metadata.continue_.clone().expect("continue token");
    let rest = pods
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await?;
    assert_eq!(rest.items.len(), 1);
    assert_ne!(rest.items[0].metadata.name, page.items[0].metadata.name);
    let by_field = pods
        .list(&ListParams::default().fields("metadata.name=b"))
        .await?;
    assert_eq!(by_field.items.len(), 1);

    let mut stale = got.clone();
    let mut fresh = got.clone();
    fresh
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("v".into(), "1".into());
    let updated = pods.replace("a", &PostParams::default(), &fresh).await?;
    assert_ne!(
        updated.metadata.resource_version,
        got.metadata.resource_version
    );
    stale
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("v".into(), "2".into());
    let err = pods
        .replace("a", &PostParams::default(), &stale)
        .await
        .expect_err("conflict");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );

    let all: Api<Pod> = Api::all(client.clone());
    assert_eq!(all.list(&ListParams::default()).await?.items.len(), 2);
    let missing = pods.get("nope").await.expect_err("missing");
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 404 && s.message == "pods \"nope\" not found")
    );
    let other: Api<ConfigMap> = Api::namespaced(client, "no-such-ns");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}}))?;
    let err = other
        .create(&PostParams::default(), &cm)
        .await
        .expect_err("namespace missing");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn three_patch_kinds_apply() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let deploys: Api<Deployment> = Api::namespaced(server.client().await?, "default");
    deploys
        .create(&PostParams::default(), &deployment("web"))
        .await?;
    let pp = PatchParams::default();
    let d = deploys
        .patch("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await?;
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(d.metadata.generation, Some(2));
    let d = deploys
        .patch(
            "web",
            &pp,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "busybox:1.36"}]}}}})),
        )
        .await?;
    let containers = &d
        .spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod spec")
        .containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("busybox:1.36"));
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/replicas", "value": 1}]))?;
    let d = deploys.patch("web", &pp, &Patch::Json::<()>(patch)).await?;
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(1));
    // Status is not written through the main resource, spec not through /status.
    let d = deploys
        .patch_status(
            "web",
            &pp,
            &Patch::Merge(json!({"spec": {"replicas": 7}, "status": {"replicas": 5}})),
        )
        .await?;
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert_eq!(d.status.as_ref().and_then(|s| s.replicas), Some(5));
    let d = deploys
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"status": {"replicas": 9}})),
        )
        .await?;
    assert_eq!(d.status.as_ref().and_then(|s| s.replicas), Some(5));
    Ok(())
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_replicas() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let deploys: Api<Deployment> = Api::namespaced(server.client().await?, "default");
    deploys
        .create(&PostParams::default(), &deployment("web"))
        .await?;
    let scale = deploys.get_scale("web").await?;
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert_eq!(
        scale.status.as_ref().and_then(|s| s.selector.as_deref()),
        Some("app=web")
    );
    deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await?;
    assert_eq!(
        deploys.get("web").await?.spec.and_then(|s| s.replicas),
        Some(4)
    );
    Ok(())
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await?, "default");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}}),
    )?;
    cms.create(&PostParams::default(), &cm).await?;
    cms.delete("f", &DeleteParams::default()).await?;
    let held = cms.get("f").await?;
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    assert!(cms.get_opt("f").await?.is_none());

    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "g"}}))?;
    cms.create(&PostParams::default(), &cm).await?;
    cms.delete("g", &DeleteParams::foreground()).await?;
    let held = cms.get("g").await?;
    assert_eq!(
        held.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    Ok(())
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully_and_binding_is_once() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let pods: Api<Pod> = Api::namespaced(server.client().await?, "default");
    let created = pods.create(&PostParams::default(), &pod("p")).await?;
    let binding: Binding = serde_json::from_value(json!({
        "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}}))?;
    let pp = PostParams::default();
    let _: kube::core::Status = pods
        .create_subresource("binding", "p", &pp, &binding)
        .await?;
    let bound = pods.get("p").await?;
    assert_eq!(
        bound.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("n1")
    );
    // As upstream, a binding adds no field manager entry: the creator's is the only one.
    assert!(created.metadata.managed_fields.is_some());
    assert_eq!(
        bound.metadata.managed_fields,
        created.metadata.managed_fields
    );
    let again = pods
        .create_subresource::<_, kube::core::Status>("binding", "p", &pp, &binding)
        .await
        .expect_err("already bound");
    assert!(
        matches!(again, kube::Error::Api(ref s) if s.code == 409),
        "{again:?}"
    );

    pods.delete("p", &DeleteParams::default()).await?;
    let terminating = pods.get("p").await?;
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete("p", &DeleteParams::default().grace_period(0))
        .await?;
    assert!(pods.get_opt("p").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn watch_streams_events_with_selectors() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let pods: Api<Pod> = Api::namespaced(server.client().await?, "default");
    let first = pods.create(&PostParams::default(), &pod("w1")).await?;
    let rv = first.metadata.resource_version.clone().expect("rv");
    let mut stream = pods
        .watch(&WatchParams::default().labels("app=web").timeout(10), &rv)
        .await?
        .boxed();
    pods.create(&PostParams::default(), &pod("w2")).await?;
    pods.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await?;
    pods.delete("w2", &DeleteParams::default()).await?;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await??;
        match event {
            Some(WatchEvent::Added(p)) => {
                seen.push(format!("ADDED {}", p.metadata.name.unwrap_or_default()))
            }
            Some(WatchEvent::Modified(p)) => {
                seen.push(format!("MODIFIED {}", p.metadata.name.unwrap_or_default()))
            }
            Some(WatchEvent::Deleted(p)) => {
                seen.push(format!("DELETED {}", p.metadata.name.unwrap_or_default()))
            }
            Some(WatchEvent::Bookmark(_)) => {}
            Some(WatchEvent::Error(e)) => anyhow::bail!("watch error {e:?}"),
            None => break,
        }
    }
    assert_eq!(seen, vec!["ADDED w2", "DELETED w1", "DELETED w2"]);
    Ok(())
}

#[tokio::test]
async fn kube_runtime_watcher_lists_then_watches() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let ns: Api<Namespace> = Api::all(client.clone());
    let mut events = watcher(ns, watcher::Config::default()).boxed();
    let mut names = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await?? {
            Some(watcher::Event::InitApply(n)) => names.push(n.metadata.name.unwrap_or_default()),
            Some(watcher::Event::InitDone) => break,
            _ => {}
        }
    }
    names.sort();
    assert_eq!(
        names,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    let nodes: Api<Node> = Api::all(client);
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}}))?;
    nodes.create(&PostParams::default(), &node).await?;
    let ns2: Api<Namespace> = Api::all(server.client().await?);
    let created: Namespace = serde_json::from_value(json!({"metadata": {"name": "later"}}))?;
    ns2.create(&PostParams::default(), &created).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await?? {
            Some(watcher::Event::Apply(n)) => {
                assert_eq!(n.metadata.name.as_deref(), Some("later"));
                break;
            }
            Some(_) => {}
            None => anyhow::bail!("watch ended"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn services_get_cluster_ips_and_the_kubernetes_service_exists() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let svcs: Api<Service> = Api::namespaced(server.client().await?, "default");
    let k = svcs.get("kubernetes").await?;
    assert_eq!(
        k.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()),
        Some("10.96.0.1")
    );
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))?;
    let created = svcs.create(&PostParams::default(), &svc).await?;
    let spec = created.spec.expect("spec");
    let ip = spec.cluster_ip.expect("cluster ip");
    assert!(ip.starts_with("10."), "{ip}");
    assert_ne!(ip, "10.96.0.1");
    let fixed: Service = serde_json::from_value(json!({"metadata": {"name": "dup"},
        "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}))?;
    let err = svcs
        .create(&PostParams::default(), &fixed)
        .await
        .expect_err("ip taken");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err:?}"
    );
    svcs.delete("web", &DeleteParams::default()).await?;
    svcs.create(&PostParams::default(), &fixed).await?;
    Ok(())
}

#[tokio::test]
async fn anonymous_requests_are_unauthorized_except_health() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut config = kube::Config::new(server.url.parse()?);
    use rustls_pki_types::pem::PemObject;
    let ca = rustls_pki_types::CertificateDer::from_pem_slice(server.pki.ca_pem.as_bytes())?;
    config.root_cert = Some(vec![ca.to_vec()]);
    let anon = kube::Client::try_from(config)?;
    let version = anon.apiserver_version().await?;
    assert_eq!(version.git_version, "v1.33.0");
    let pods: Api<Pod> = Api::namespaced(anon, "default");
    let err = pods
        .list(&ListParams::default())
        .await
        .expect_err("anonymous");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 401),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn discovery_finds_groups_and_resources() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let discovery = kube::Discovery::new(server.client().await?).run().await?;
    let apps = discovery.get("apps").expect("apps group");
    let (ar, caps) = apps
        .recommended_resources()
        .into_iter()
        .find(|(ar, _)| ar.kind == "Deployment")
        .expect("deployments");
    assert_eq!(ar.plural, "deployments");
    assert!(caps.supports_operation("watch"));
    assert!(caps
        .subresources
        .iter()
        .any(|(s, _)| s.plural == "deployments/scale" || s.plural == "scale"));
    Ok(())
}

#[tokio::test]
async fn new_events_show_up_as_core_events() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let e: Event = serde_json::from_value(json!({"metadata": {"name": "e1"},
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
        "note": "Successfully assigned default/p to n1", "reason": "Scheduled", "type": "Normal",
        "action": "Binding", "reportingController": "default-scheduler",
        "reportingInstance": "default-scheduler-1", "eventTime": "2024-01-01T00:00:00.000000Z"}))?;
    events.create(&PostParams::default(), &e).await?;
    let core: Api<CoreEvent> = Api::namespaced(client, "default");
    let listed = core
        .list(&ListParams::default().fields("involvedObject.name=p"))
        .await?;
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].message.as_deref(),
        Some("Successfully assigned default/p to n1")
    );
    let back = events.get("e1").await?;
    assert_eq!(
        back.note.as_deref(),
        Some("Successfully assigned default/p to n1")
    );
    Ok(())
}

#[tokio::test]
async fn tables_are_served_when_asked_for() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("t1")).await?;
    let request = http::Request::get("/api/v1/namespaces/default/pods")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())?;
    let table: serde_json::Value = client.request(request).await?;
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        columns,
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert_eq!(table["rows"][0]["cells"][0], "t1");
    assert_eq!(table["rows"][0]["cells"][2], "Pending");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    Ok(())
}

#[tokio::test]
async fn malformed_bodies_get_client_errors_not_crashes() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let cases: Vec<(&str, &str, &str, Vec<u8>)> = vec![
        (
            "POST",
            "/api/v1/namespaces/default/services",
            "application/json",
            br#"{"metadata":{"name":"s"},"spec":"oops"}"#.to_vec(),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            b"[1,2]".to_vec(),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            b"{not json".to_vec(),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/vnd.kubernetes.protobuf",
            b"k8s\x00\x0a\xff\xff".to_vec(),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/services",
            "application/json",
            br#"{"metadata":{"name":"t"},"spec":{"type":"NodePort","ports":[5]}}"#.to_vec(),
        ),
    ];
    for (method, path, content_type, body) in cases {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("Content-Type", content_type)
            .body(body)?;
        let err = client.request::<serde_json::Value>(request).await;
        match err {
            Err(kube::Error::Api(s)) => assert!((400..500).contains(&s.code), "{path}: {s:?}"),
            other => anyhow::bail!("{path}: expected a client error, got {other:?}"),
        }
    }
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let ok: Service = serde_json::from_value(
        json!({"metadata": {"name": "ok"}, "spec": {"ports": [{"port": 80}]}}),
    )?;
    svcs.create(&PostParams::default(), &ok).await?;
    let patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "", "value": "x"}]))?;
    let err = svcs
        .patch("ok", &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .expect_err("non-object");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 400),
        "{err:?}"
    );
    assert!(svcs.get("ok").await.is_ok());
    Ok(())
}

#[tokio::test]
async fn pod_priority_comes_from_its_priority_class() -> anyhow::Result<()> {
    use k8s_openapi::api::scheduling::v1::PriorityClass;
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let classes: Api<PriorityClass> = Api::all(client.clone());
    assert_eq!(
        classes.get("system-node-critical").await?.value,
        2_000_001_000
    );
    let high: PriorityClass =
        serde_json::from_value(json!({"metadata": {"name": "high"}, "value": 1000}))?;
    classes.create(&PostParams::default(), &high).await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut p = pod("prio");
    if let Some(spec) = p.spec.as_mut() {
        spec.priority_class_name = Some("high".into());
    }
    let created = pods.create(&PostParams::default(), &p).await?;
    assert_eq!(created.spec.as_ref().and_then(|s| s.priority), Some(1000));
    let plain = pods.create(&PostParams::default(), &pod("plain")).await?;
    assert_eq!(plain.spec.as_ref().and_then(|s| s.priority), Some(0));
    let mut missing = pod("missing");
    if let Some(spec) = missing.spec.as_mut() {
        spec.priority_class_name = Some("nope".into());
    }
    let err = pods
        .create(&PostParams::default(), &missing)
        .await
        .expect_err("unknown class");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn streaming_list_watches_send_initial_events_then_a_bookmark() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    // The client asks for `resourceVersion=0`, which the cache answers as it stands: a server
    // starts serving only once its cache holds what bootstrap wrote (the cache may have filled
    // before those writes; CI once saw this watch start empty).
    let cache = server.state.watch_cache.as_ref().expect("watch cache on");
    assert!(cache.revision() >= server.state.storage.current_revision().await?);
    let ns: Api<Namespace> = Api::all(server.client().await?);
    let mut events = watcher(ns, watcher::Config::default().streaming_lists()).boxed();
    let mut names = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await?? {
            Some(watcher::Event::InitApply(n)) => names.push(n.metadata.name.unwrap_or_default()),
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => anyhow::bail!("watch ended"),
        }
    }
    assert_eq!(names.len(), 4, "{names:?}");
    Ok(())
}

#[tokio::test]
async fn metadata_only_lists_and_watches_answer_partial_object_metadata() -> anyhow::Result<()> {
    use kube::core::PartialObjectMeta;
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("m1")).await?;
    let list = pods.list_metadata(&ListParams::default()).await?;
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("m1"));
    let request = http::Request::get("/api/v1/namespaces/default/pods")
        .header(
            "Accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())?;
    let raw: serde_json::Value = client.request(request).await?;
    assert_eq!(raw["kind"], "PartialObjectMetadataList");
    assert!(raw["items"][0].get("spec").is_none());
    let meta: Api<PartialObjectMeta<Pod>> = Api::namespaced(client.clone(), "default");
    let mut events = watcher(meta, watcher::Config::default()).boxed();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await?? {
            Some(watcher::Event::InitApply(p)) => {
                assert_eq!(p.metadata.name.as_deref(), Some("m1"));
                break;
            }
            Some(_) => {}
            None => anyhow::bail!("watch ended"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_put_creates_a_missing_lease_but_not_a_missing_configmap() -> anyhow::Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let holder = |lease: Lease| lease.spec.and_then(|s| s.holder_identity);
    let lease: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "holder"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 40},
    }))?;
    let created = leases
        .replace("holder", &PostParams::default(), &lease)
        .await?;
    let first_rv = created.metadata.resource_version.clone();
    assert!(first_rv.is_some());

    let mut renewed = created.clone();
    renewed.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    let renewed = leases
        .replace("holder", &PostParams::default(), &renewed)
        .await?;
    assert_eq!(holder(renewed.clone()).as_deref(), Some("b"));
    assert_ne!(renewed.metadata.resource_version, first_rv);

    // The first version's resourceVersion is stale now: 409, and nothing is written.
    let err = leases
        .replace("holder", &PostParams::default(), &created)
        .await
        .expect_err("stale resourceVersion");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err}"
    );
    assert_eq!(holder(leases.get("holder").await?).as_deref(), Some("b"));

    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "absent"},
    }))?;
    let err = config_maps
        .replace("absent", &PostParams::default(), &cm)
        .await
        .expect_err("configmaps are not created by PUT");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err}"
    );
    Ok(())
}
