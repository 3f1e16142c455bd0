//! Controllers and the scheduler against an in-process apiserver, with a fake kubelet that marks
//! bound pods Running/Ready and finishes deletions: Deployment -> ReplicaSet -> Pods -> bound,
//! Service -> Endpoints + EndpointSlice, scale, rolling update, delete with garbage collection,
//! node IPAM and the default ServiceAccount.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_apiserver::testing::TestServer;
use kube_controller_manager::context::Settings;

mod support;

use support::{create_node, wait_for, NodeOptions};

/// How long `wait_for` polls.
const WAIT: Duration = Duration::from_secs(60);

fn deployment(replicas: i32, command: &str) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "httpd", "image": "busybox:1.35",
                    "command": ["sh", "-c", command],
                    "ports": [{"name": "http", "containerPort": 8080}]
                }]}
            }
        }
    }))?)
}

async fn running_pods(client: &Client) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    Ok(pods
        .list(&ListParams::default().labels("app=web"))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

async fn rollout_complete(deployments: &Api<Deployment>, replicas: i32) -> anyhow::Result<bool> {
    let d = deployments.get("web").await?;
    let status = d.status.clone().unwrap_or_default();
    let progressing = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        .and_then(|c| c.reason.clone());
    Ok(status.observed_generation >= d.metadata.generation
        && status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas
        && status.available_replicas.unwrap_or(0) == replicas
        && progressing.as_deref() == Some("NewReplicaSetAvailable"))
}

/// Starts an apiserver with one node, every controller, the scheduler and the fake kubelet.
async fn start_cluster() -> anyhow::Result<(TestServer, Client)> {
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    create_node(&client, "node-0", NodeOptions::default()).await?;
    kube_controller_manager::testing::start(
        client.clone(),
        Settings {
            cluster_cidr: Some("10.244.0.0/16".parse()?),
            allocate_node_cidrs: true,
            ..Settings::default()
        },
        kube_controller_manager::KNOWN_CONTROLLERS,
    );
    let _scheduler = support::start_scheduler_and_kubelet(&client, support::flat_pod_ip).await;
    Ok((server, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_runs_scales_rolls_out_and_is_collected() -> anyhow::Result<()> {
    let (server, client) = start_cluster().await?;

    // Node IPAM gives the first node the first /24.
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(WAIT, "podCIDR", || async {
        let node = nodes.get("node-0").await?;
        Ok(node.spec.and_then(|s| s.pod_cidr).as_deref() == Some("10.244.0.0/24"))
    })
    .await?;

    // The default ServiceAccount appears.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "default service account", || async {
        Ok(accounts.get_opt("default").await?.is_some())
    })
    .await?;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment(3, "httpd -f -p 8080")?)
        .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))?;
    services.create(&PostParams::default(), &service).await?;

    wait_for(WAIT, "3 replicas available", || {
        rollout_complete(&deployments, 3)
    })
    .await?;
    let pods = running_pods(&client).await?;
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some("node-0")
        );
        let owner = pod.owner_references().first().map(|r| r.kind.clone());
        assert_eq!(owner.as_deref(), Some("ReplicaSet"));
    }
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs_list = replicasets.list(&ListParams::default()).await?.items;
    assert_eq!(rs_list.len(), 1);
    let rs = &rs_list[0];
    let hash = rs
        .labels()
        .get("pod-template-hash")
        .cloned()
        .unwrap_or_default();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(
        rs.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );

    // Endpoints and EndpointSlices list the three ready pods on the named port.
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "endpoints", || async {
        let ep = endpoints.get_opt("web").await?;
        let subsets = ep.and_then(|e| e.subsets).unwrap_or_default();
        Ok(subsets.len() == 1
            && subsets[0].addresses.as_ref().map(Vec::len) == Some(3)
            && subsets[0]
                .ports
                .as_ref()
                .and_then(|p| p.first())
                .map(|p| p.port)
                == Some(8080))
    })
    .await?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "endpoint slice", || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await?;
        Ok(list.items.len() == 1
            && list.items[0].endpoints.len() == 3
            && list.items[0]
                .endpoints
                .iter()
                .all(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true)))
    })
    .await?;

    // Scale up and down.
    let scale = |n: i32| serde_json::json!({"spec": {"replicas": n}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&scale(5)))
        .await?;
    wait_for(WAIT, "5 replicas", || rollout_complete(&deployments, 5)).await?;
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&scale(1)))
        .await?;
    wait_for(WAIT, "1 replica", || async {
        Ok(rollout_complete(&deployments, 1).await? && running_pods(&client).await?.len() == 1)
    })
    .await?;
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&scale(3)))
        .await?;
    wait_for(WAIT, "back to 3", || rollout_complete(&deployments, 3)).await?;

    // Rolling update: a new ReplicaSet takes over; ready pods never drop below 3 (maxUnavailable 0).
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{
        "name": "httpd", "image": "busybox:1.35", "command": ["sh", "-c", "httpd -f -p 8080 -v"],
        "ports": [{"name": "http", "containerPort": 8080}]
    }]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    // The upstream kubectl agrees the rollout finishes (when it is installed).
    let kubectl = std::path::Path::new("/usr/bin/kubectl");
    let rollout_status = kubectl.exists().then(|| {
        let mut command = tokio::process::Command::new(kubectl);
        command.arg("--kubeconfig").arg(&server.kubeconfig).args([
            "rollout",
            "status",
            "deployment/web",
            "--timeout=60s",
        ]);
        tokio::spawn(async move { command.output().await })
    });
    let min_ready = Arc::new(std::sync::atomic::AtomicI32::new(i32::MAX));
    wait_for(WAIT, "rolling update", || {
        let deployments = deployments.clone();
        let client = client.clone();
        let min = min_ready.clone();
        async move {
            let ready = running_pods(&client)
                .await?
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            min.fetch_min(i32::try_from(ready)?, Ordering::SeqCst);
            let d = deployments.get("web").await?;
            let revision = d
                .annotations()
                .get("deployment.kubernetes.io/revision")
                .cloned();
            Ok(revision.as_deref() == Some("2") && rollout_complete(&deployments, 3).await?)
        }
    })
    .await?;
    if let Some(status) = rollout_status {
        let output = status.await??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "kubectl rollout status failed: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("successfully rolled out"), "{stdout}");
    }
    let min_ready = min_ready.load(Ordering::SeqCst);
    assert!(min_ready >= 3, "ready pods dropped to {min_ready}");
    let rs_list = replicasets.list(&ListParams::default()).await?.items;
    assert_eq!(rs_list.len(), 2);
    let old = rs_list
        .iter()
        .find(|rs| {
            rs.annotations()
                .get("deployment.kubernetes.io/revision")
                .map(String::as_str)
                == Some("1")
        })
        .context("old replica set")?;
    assert_eq!(old.spec.as_ref().and_then(|s| s.replicas), Some(0));

    // Deleting the Deployment lets the garbage collector remove ReplicaSets and pods.
    deployments.delete("web", &DeleteParams::default()).await?;
    wait_for(WAIT, "replica sets collected", || async {
        Ok(replicasets
            .list(&ListParams::default())
            .await?
            .items
            .is_empty())
    })
    .await?;
    wait_for(WAIT, "pods collected", || async {
        Ok(running_pods(&client).await?.is_empty())
    })
    .await?;
    wait_for(WAIT, "endpoints emptied", || async {
        Ok(endpoints
            .get("web")
            .await?
            .subsets
            .unwrap_or_default()
            .is_empty())
    })
    .await?;
    services.delete("web", &DeleteParams::default()).await?;
    wait_for(WAIT, "slices collected", || async {
        Ok(slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await?
            .items
            .is_empty())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recreate_replaces_all_pods_and_paused_deployments_do_not_roll_out() -> anyhow::Result<()> {
    let (_server, client) = start_cluster().await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment(2, "httpd -f -p 8080")?;
    if let Some(spec) = d.spec.as_mut() {
        spec.strategy = Some(serde_json::from_value(
            serde_json::json!({"type": "Recreate"}),
        )?);
    }
    deployments.create(&PostParams::default(), &d).await?;
    wait_for(WAIT, "2 replicas", || rollout_complete(&deployments, 2)).await?;
    let first: Vec<String> = running_pods(&client)
        .await?
        .iter()
        .map(|p| p.name_any())
        .collect();

    // Paused: a template change makes no new ReplicaSet.
    let pause = serde_json::json!({"spec": {"paused": true}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&pause))
        .await?;
    let change =
        serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&change))
        .await?;
    wait_for(WAIT, "paused condition", || async {
        let d = deployments.get("web").await?;
        Ok(d.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused")))
    })
    .await?;
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        replicasets.list(&ListParams::default()).await?.items.len(),
        1
    );

    // Resumed: Recreate swaps every pod.
    let resume = serde_json::json!({"spec": {"paused": false}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&resume))
        .await?;
    wait_for(WAIT, "recreated", || async {
        let pods = running_pods(&client).await?;
        Ok(rollout_complete(&deployments, 2).await?
            && pods.len() == 2
            && pods.iter().all(|p| !first.contains(&p.name_any())))
    })
    .await?;
    Ok(())
}

/// The command of the Deployment's first container.
fn template_command(d: &Deployment) -> Vec<String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.command.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_rollout_undo_restores_the_previous_template() -> anyhow::Result<()> {
    let kubectl = std::path::Path::new("/usr/bin/kubectl");
    if !kubectl.exists() {
        return Ok(());
    }
    let (server, client) = start_cluster().await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment(2, "httpd -f -p 8080")?)
        .await?;
    wait_for(WAIT, "revision 1", || rollout_complete(&deployments, 2)).await?;
    let first = template_command(&deployments.get("web").await?);
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{
        "name": "httpd", "image": "busybox:1.35", "command": ["sh", "-c", "httpd -f -p 8080 -v"],
        "ports": [{"name": "http", "containerPort": 8080}]
    }]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_for(WAIT, "revision 2", || async {
        let d = deployments.get("web").await?;
        Ok(d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str)
            == Some("2")
            && rollout_complete(&deployments, 2).await?)
    })
    .await?;
    assert_ne!(template_command(&deployments.get("web").await?), first);

    let output = tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["rollout", "undo", "deployment/web"])
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl rollout undo failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("rolled back"), "{stdout}");

    // The first ReplicaSet becomes revision 3 and remembers it was revision 1.
    wait_for(WAIT, "revision 3", || async {
        let d = deployments.get("web").await?;
        Ok(d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str)
            == Some("3")
            && rollout_complete(&deployments, 2).await?)
    })
    .await?;
    assert_eq!(template_command(&deployments.get("web").await?), first);
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let all = replicasets.list(&ListParams::default()).await?.items;
    assert_eq!(all.len(), 2, "rollback reuses the old replica set");
    let current = all
        .iter()
        .find(|rs| rs.spec.as_ref().and_then(|s| s.replicas) == Some(2))
        .context("scaled-up replica set")?;
    let annotations = current.annotations();
    assert_eq!(
        annotations
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("3")
    );
    assert_eq!(
        annotations
            .get("deployment.kubernetes.io/revision-history")
            .map(String::as_str),
        Some("1")
    );
    for pod in running_pods(&client).await? {
        let command = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.command.clone())
            .unwrap_or_default();
        assert_eq!(command, first);
    }
    Ok(())
}
