//! Scheduling constraints and preemption against an in-process apiserver with fake nodes (node
//! objects only, no kubelets): anti-affinity keeps one pod per node, topology spread keeps zones
//! within maxSkew, and a high-priority pod preempts a low one.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;

mod support;

use support::{create_node, has_event, node_of, wait_for};

fn pod(name: &str, app: &str, cpu: &str, extra_spec: serde_json::Value) -> anyhow::Result<Pod> {
    let mut spec = serde_json::json!({"containers": [{"name": "c", "image": "busybox:1.35",
        "resources": {"requests": {"cpu": cpu}}}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": spec
    }))?)
}

async fn bound_nodes(pods: &Api<Pod>, app: &str) -> anyhow::Result<Vec<Option<String>>> {
    Ok(pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items
        .iter()
        .map(node_of)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_and_topology_spread_are_honoured() -> anyhow::Result<()> {
    let (_server, client) = support::start().await?;
    for (name, zone) in [
        ("node-a", "z1"),
        ("node-b", "z2"),
        ("node-c", "z3"),
        ("node-d", "z1"),
    ] {
        create_node(
            &client,
            name,
            "8",
            &[
                ("kubernetes.io/hostname", name),
                ("topology.kubernetes.io/zone", zone),
            ],
        )
        .await?;
    }
    let _scheduler = kube_scheduler::scheduler::Scheduler::start(client.clone()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Topology spread, maxSkew 1 over three zones (z1 has two nodes): six pods, two per zone.
    let spread = serde_json::json!({"topologySpreadConstraints": [{"maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "spread"}}}]});
    for i in 0..6 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("spread-{i}"), "spread", "100m", spread.clone())?,
        )
        .await?;
        // One at a time, so each decision sees the previous placements.
        wait_for("spread pod bound", || async {
            Ok(node_of(&pods.get(&format!("spread-{i}")).await?).is_some())
        })
        .await?;
    }
    let zone = |node: &str| {
        if node == "node-a" || node == "node-d" {
            "z1"
        } else if node == "node-b" {
            "z2"
        } else {
            "z3"
        }
    };
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for node in bound_nodes(&pods, "spread").await?.into_iter().flatten() {
        *per_zone.entry(zone(&node)).or_default() += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{per_zone:?}"
    );

    // Anti-affinity to itself per host: one per node, the fifth stays pending.
    let anti = serde_json::json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    for i in 0..5 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("solo-{i}"), "solo", "100m", anti.clone())?,
        )
        .await?;
    }
    wait_for("four solo pods bound", || async {
        Ok(bound_nodes(&pods, "solo").await?.iter().flatten().count() == 4)
    })
    .await?;
    let mut nodes: Vec<String> = bound_nodes(&pods, "solo")
        .await?
        .into_iter()
        .flatten()
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["node-a", "node-b", "node-c", "node-d"]);
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for("FailedScheduling for the fifth", || {
        has_event(&events, "FailedScheduling", |m| {
            m.starts_with(
                "0/4 nodes are available: 4 node(s) didn't match pod anti-affinity rules.",
            )
        })
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_preempts_a_low_priority_one() -> anyhow::Result<()> {
    let (_server, client) = support::start().await?;
    create_node(
        &client,
        "node-0",
        "1",
        &[
            ("kubernetes.io/hostname", "node-0"),
            ("topology.kubernetes.io/zone", "z1"),
        ],
    )
    .await?;
    let _scheduler = kube_scheduler::scheduler::Scheduler::start(client.clone()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    pods.create(
        &PostParams::default(),
        &pod("low", "low", "800m", serde_json::json!({"priority": 0}))?,
    )
    .await?;
    wait_for("low bound", || async {
        Ok(node_of(&pods.get("low").await?).is_some())
    })
    .await?;

    pods.create(
        &PostParams::default(),
        &pod(
            "high",
            "high",
            "800m",
            serde_json::json!({"priority": 1000}),
        )?,
    )
    .await?;
    wait_for("high nominated to node-0", || async {
        let high = pods.get("high").await?;
        Ok(high.status.and_then(|s| s.nominated_node_name).as_deref() == Some("node-0"))
    })
    .await?;
    // A low-priority pod arriving meanwhile must not take the room made for "high".
    pods.create(
        &PostParams::default(),
        &pod(
            "sneaky",
            "sneaky",
            "800m",
            serde_json::json!({"priority": 0}),
        )?,
    )
    .await?;
    // No kubelet runs here: finish the victim's graceful deletion as a kubelet would.
    wait_for("low deleted", || async {
        match pods.get_opt("low").await? {
            None => Ok(true),
            Some(low) if low.metadata.deletion_timestamp.is_some() => {
                pods.delete("low", &DeleteParams::default().grace_period(0))
                    .await?;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    })
    .await?;
    wait_for("high bound to node-0", || async {
        Ok(node_of(&pods.get("high").await?).as_deref() == Some("node-0"))
    })
    .await?;

    assert_eq!(node_of(&pods.get("sneaky").await?), None);

    // A pod of equal priority cannot preempt: upstream's suffix says why.
    pods.create(
        &PostParams::default(),
        &pod(
            "peer",
            "peer",
            "800m",
            serde_json::json!({"priority": 1000}),
        )?,
    )
    .await?;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for("FailedScheduling with the preemption suffix", || async {
        Ok(events.list(&ListParams::default()).await?.items.iter().any(|e| {
            e.reason.as_deref() == Some("FailedScheduling")
                && e.message.as_deref() == Some("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")
        }))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemptors_arriving_together_are_nominated_to_different_nodes() -> anyhow::Result<()> {
    let (_server, client) = support::start().await?;
    let names = ["node-a", "node-b", "node-c", "node-d"];
    for name in names {
        create_node(&client, name, "1", &[("kubernetes.io/hostname", name)]).await?;
    }
    let _scheduler = kube_scheduler::scheduler::Scheduler::start(client.clone()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let immediate = serde_json::json!({"priority": 0, "terminationGracePeriodSeconds": 0});
    for i in 0..4 {
        let name = format!("low-{i}");
        pods.create(
            &PostParams::default(),
            &pod(&name, "low", "800m", immediate.clone())?,
        )
        .await?;
    }
    wait_for("the low pods bound, one per node", || async {
        let mut nodes: Vec<Option<String>> = bound_nodes(&pods, "low").await?;
        nodes.sort();
        nodes.dedup();
        Ok(nodes.len() == 4 && nodes.iter().all(Option::is_some))
    })
    .await?;
    // Every nomination the preemptors get, in the order the watch sees them.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, Vec<String>>::new()));
    let recorder = seen.clone();
    let watched = pods.clone();
    let watch = tokio::spawn(async move {
        use futures::StreamExt;
        let config = kube::runtime::watcher::Config::default().labels("app=high");
        let stream = kube::runtime::watcher(watched, config);
        futures::pin_mut!(stream);
        while let Some(Ok(event)) = stream.next().await {
            if let kube::runtime::watcher::Event::Apply(p)
            | kube::runtime::watcher::Event::InitApply(p) = event
            {
                let node = p
                    .status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.clone());
                if let (Some(name), Some(node)) = (p.metadata.name.clone(), node) {
                    if let Ok(mut seen) = recorder.lock() {
                        seen.entry(name).or_default().push(node);
                    }
                }
            }
        }
    });
    let high = serde_json::json!({"priority": 1000, "terminationGracePeriodSeconds": 0});
    for i in 0..4 {
        let name = format!("high-{i}");
        pods.create(
            &PostParams::default(),
            &pod(&name, "high", "800m", high.clone())?,
        )
        .await?;
    }
    wait_for("the high pods bound", || async {
        Ok(bound_nodes(&pods, "high")
            .await?
            .iter()
            .all(Option::is_some))
    })
    .await?;
    watch.abort();
    let mut bound: Vec<Option<String>> = bound_nodes(&pods, "high").await?;
    bound.sort();
    bound.dedup();
    assert_eq!(bound.len(), 4, "one high pod per node: {bound:?}");
    // Each preemptor saw the others' nominations at once: no node was nominated twice, so
    // no victim beyond the one per node was evicted.
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let mut first: Vec<&String> = seen.values().filter_map(|nodes| nodes.first()).collect();
    first.sort();
    first.dedup();
    assert_eq!(first.len(), seen.len(), "nominations: {seen:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_from_a_configuration_file_schedule_their_own_pods() -> anyhow::Result<()> {
    let (server, client) = support::start().await?;
    create_node(
        &client,
        "node-0",
        "4",
        &[
            ("kubernetes.io/hostname", "node-0"),
            ("topology.kubernetes.io/zone", "z1"),
        ],
    )
    .await?;
    let path = server.dir().join("scheduler-config.yaml");
    std::fs::write(
        &path,
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
         profiles:\n- schedulerName: default-scheduler\n- schedulerName: custom\n  plugins:\n    \
         score:\n      disabled:\n      - name: '*'\n",
    )?;
    let profiles = kube_scheduler::config::KubeSchedulerConfiguration::load(&path)?.registries()?;
    let _scheduler =
        kube_scheduler::scheduler::Scheduler::start_with_profiles(client.clone(), profiles).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "foreign",
            "foreign",
            "100m",
            serde_json::json!({"schedulerName": "elsewhere"}),
        )?,
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod(
            "mine",
            "mine",
            "100m",
            serde_json::json!({"schedulerName": "custom"}),
        )?,
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod("plain", "plain", "100m", serde_json::json!({}))?,
    )
    .await?;
    wait_for("custom and default pods bound", || async {
        Ok(node_of(&pods.get("mine").await?).is_some()
            && node_of(&pods.get("plain").await?).is_some())
    })
    .await?;
    assert_eq!(node_of(&pods.get("foreign").await?), None);
    Ok(())
}
