//! Invariants checked on every state a watch observes, against an in-process apiserver with the
//! real scheduler and a fake kubelet: during a rolling update, ready pods never drop below
//! `replicas - maxUnavailable` and pods never exceed `replicas + maxSurge`; Foreground deletion
//! removes the dependents before the owner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use kube_apiserver::testing::TestServer;
use kube_controller_manager::context::Settings;
use serde_json::json;

mod support;

use support::{create_node, is_ready, wait_for, NodeOptions};

const WAIT: Duration = Duration::from_secs(90);
const REPLICAS: usize = 6;
const MAX_SURGE: usize = 2;
const MAX_UNAVAILABLE: usize = 1;

fn deployment(version: &str) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "inv", "namespace": "default"},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "inv"}},
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": MAX_SURGE, "maxUnavailable": MAX_UNAVAILABLE}},
            "template": {
                "metadata": {"labels": {"app": "inv"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35",
                    "command": ["sleep", version]}]}
            }
        }
    }))?)
}

async fn rolled_out(deployments: &Api<Deployment>) -> anyhow::Result<bool> {
    let d = deployments.get("inv").await?;
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(s) = d.status else { return Ok(false) };
    let want = i32::try_from(REPLICAS)?;
    Ok(s.observed_generation.unwrap_or(0) >= generation
        && s.updated_replicas == Some(want)
        && s.ready_replicas == Some(want)
        && s.available_replicas == Some(want)
        && s.replicas == Some(want))
}

/// Pods (not terminating) and ready pods of the app, after each watch event.
#[derive(Default)]
struct Observed {
    states: usize,
    max_pods: usize,
    min_ready: usize,
    violations: Vec<String>,
}

fn spawn_observer(client: Client) -> Arc<Mutex<Observed>> {
    let observed = Arc::new(Mutex::new(Observed {
        min_ready: usize::MAX,
        ..Observed::default()
    }));
    let record = observed.clone();
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let config = watcher::Config::default().labels("app=inv");
        let mut stream = watcher(pods, config).boxed();
        let mut current: HashMap<String, Pod> = HashMap::new();
        let mut initial: HashMap<String, Pod> = HashMap::new();
        let mut listed = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => initial.clear(),
                Ok(watcher::Event::InitApply(pod)) => {
                    initial.insert(pod.name_any(), pod);
                }
                Ok(watcher::Event::InitDone) => {
                    current = std::mem::take(&mut initial);
                    listed = true;
                }
                Ok(watcher::Event::Apply(pod)) => {
                    current.insert(pod.name_any(), pod);
                }
                Ok(watcher::Event::Delete(pod)) => {
                    current.remove(&pod.name_any());
                }
                Err(_) => continue,
            }
            if !listed {
                continue;
            }
            let live: Vec<&Pod> = current
                .values()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ready = live.iter().filter(|p| is_ready(p)).count();
            let Ok(mut o) = record.lock() else { return };
            o.states += 1;
            o.max_pods = o.max_pods.max(live.len());
            o.min_ready = o.min_ready.min(ready);
            if live.len() > REPLICAS + MAX_SURGE || ready < REPLICAS - MAX_UNAVAILABLE {
                let state = format!("state {}: {} pods, {ready} ready", o.states, live.len());
                o.violations.push(state);
            }
        }
    });
    observed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_updates_keep_availability_and_surge_on_every_observed_state() -> anyhow::Result<()>
{
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    create_node(&client, "node-0", NodeOptions::default()).await?;
    kube_controller_manager::testing::start(
        client.clone(),
        Settings::default(),
        &["deployment", "replicaset", "garbagecollector"],
    );
    let _scheduler = support::start_scheduler_and_kubelet(&client, support::flat_pod_ip).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("3600")?)
        .await?;
    wait_for(WAIT, "first rollout", || rolled_out(&deployments)).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Only the deployment's pods, all ready, before the observer starts.
    wait_for(WAIT, "old pods settled", || async {
        let list = pods.list(&Default::default()).await?.items;
        Ok(list.len() == REPLICAS && list.iter().all(is_ready))
    })
    .await?;

    let observed = spawn_observer(client.clone());
    wait_for(WAIT, "observer listed", || async {
        Ok(observed.lock().map(|o| o.states > 0).unwrap_or(false))
    })
    .await?;
    // Two rollouts back to back: the second starts while the first is under way.
    for version in ["3601", "3602"] {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox:1.35", "command": ["sleep", version]}
        ]}}}});
        deployments
            .patch("inv", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for(WAIT, "second rollout", || async {
        let done = rolled_out(&deployments).await?;
        let list = pods.list(&Default::default()).await?.items;
        let all_new = list.iter().all(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.command.as_ref())
                .is_some_and(|c| c.iter().any(|a| a == "3602"))
        });
        Ok(done && all_new && list.len() == REPLICAS)
    })
    .await?;
    let o = observed
        .lock()
        .map_err(|_| anyhow::anyhow!("observer poisoned"))?;
    assert!(o.states > REPLICAS, "observed only {} states", o.states);
    assert!(
        o.violations.is_empty(),
        "invariants broken: {:?}",
        o.violations
    );
    // The rollout did surge (else the surge bound was not tested).
    assert!(o.max_pods > REPLICAS, "max pods {}", o.max_pods);
    tracing::info!(
        states = o.states,
        max_pods = o.max_pods,
        min_ready = o.min_ready,
        "observed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_removes_dependents_before_the_owner() -> anyhow::Result<()> {
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    kube_controller_manager::testing::start(
        client.clone(),
        Settings::default(),
        &["garbagecollector"],
    );
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "owner"},
        "spec": {"ports": [{"port": 80}]}
    }))?;
    let service = services.create(&PostParams::default(), &service).await?;
    // The dependent holds a finalizer of its own, so it stays (terminating) until the test
    // lets it go: the owner must outlive it.
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "dependent", "finalizers": ["test.example.com/hold"],
            "labels": {"endpointslice.kubernetes.io/managed-by": "test"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "owner",
                "uid": service.uid(), "controller": true, "blockOwnerDeletion": true}]},
        "addressType": "IPv4", "endpoints": []
    }))?;
    slices.create(&PostParams::default(), &slice).await?;

    services
        .delete("owner", &DeleteParams::foreground())
        .await?;
    wait_for(WAIT, "dependent deleted by the collector", || async {
        Ok(slices
            .get_opt("dependent")
            .await?
            .is_some_and(|s| s.metadata.deletion_timestamp.is_some()))
    })
    .await?;
    // Give the collector time to (wrongly) finish the owner; it must wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let owner = services
        .get_opt("owner")
        .await?
        .context("the owner went before its dependent")?;
    assert!(owner.metadata.deletion_timestamp.is_some());
    assert!(
        owner.finalizers().iter().any(|f| f == "foregroundDeletion"),
        "{:?}",
        owner.finalizers()
    );

    slices
        .patch(
            "dependent",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await?;
    wait_for(WAIT, "owner gone after its dependent", || async {
        Ok(slices.get_opt("dependent").await?.is_none()
            && services.get_opt("owner").await?.is_none())
    })
    .await?;
    Ok(())
}
