//! Starts a kubelet inside a test (or a hollow node): the real node agent, pod manager and
//! kubelet API against a real apiserver, over the fake runtime and the fake network.
//!
//! [`start_fake`] is a whole kubelet (with its API listener); [`start_hollow`] is the lighter
//! variant kube-perf starts by the thousand: the same node agent (registration, status, Lease)
//! and pod manager code paths, but no kubelet API listener or TLS, and machine facts read once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use tokio::task::JoinHandle;

use crate::app::{start, Dependencies, RunError, RunningKubelet};
use crate::network::fake::FakeNetwork;
use crate::network::Network;
use crate::node::agent::{NodeAgent, NodeError};
use crate::node::info::MachineInfo;
use crate::node::status::NodeConfig;
use crate::pod::files::DnsSettings;
use crate::pod::manager::PodManager;
use crate::pod::objects::ObjectCache;
use crate::pod::{
    KubePodApi, ObjectLister, PodApi, PodContext, PodSettings, PodStore, ServiceLister,
};
use crate::runtime::fake::FakeRuntime;
use crate::runtime::ContainerRuntime;
use crate::server::TlsFiles;

/// A kubelet running in-process on fakes.
pub struct TestKubelet {
    /// The running kubelet (its API on an ephemeral 127.0.0.1 port, reported in the node
    /// status; self-signed TLS, no client auth).
    pub kubelet: RunningKubelet,
    /// The fake runtime (has `busybox:1.35`, auto-pulls other images).
    pub runtime: Arc<FakeRuntime>,
    /// The fake network (ready from the start).
    pub network: Arc<FakeNetwork>,
}

/// Starts a kubelet for node `node_name` with its files under `dir`.
pub async fn start_fake(
    client: Client,
    node_name: &str,
    dir: &Path,
) -> Result<TestKubelet, RunError> {
    let runtime = Arc::new(FakeRuntime::with_auto_pull());
    runtime.add_image("busybox:1.35");
    let network = Arc::new(FakeNetwork::ready_network());
    let kubelet = start(fake_dependencies(
        client,
        runtime.clone(),
        network.clone(),
        node_name,
        dir,
    ))
    .await?;
    Ok(TestKubelet {
        kubelet,
        runtime,
        network,
    })
}

/// What [`start_fake`] starts a kubelet with: `runtime` and `network`, node `node_name` on
/// 127.0.0.1 with its files under `dir`, its API on an ephemeral port (self-signed TLS, no
/// client auth), upstream's status timings (computed every 10 s, an unchanged status posted
/// every 5 min) and fake mounts. Tests change what they need before calling
/// [`crate::app::start`].
pub fn fake_dependencies(
    client: Client,
    runtime: Arc<FakeRuntime>,
    network: Arc<FakeNetwork>,
    node_name: &str,
    dir: &Path,
) -> Dependencies {
    let node_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Dependencies {
        client,
        runtime,
        network,
        node: NodeConfig {
            name: node_name.to_string(),
            node_ip,
            port: 0,
            max_pods: 110,
        },
        pods: PodSettings {
            node_name: node_name.to_string(),
            node_ip,
            root_dir: dir.join("root"),
            pod_logs_dir: dir.join("logs"),
            dns: DnsSettings {
                cluster_dns: vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))],
                cluster_domain: "cluster.local".into(),
                host_resolv_conf: String::new(),
            },
        },
        api_addr: SocketAddr::new(node_ip, 0),
        tls: TlsFiles {
            self_signed_names: vec![node_name.to_string(), "127.0.0.1".into()],
            ..Default::default()
        },
        status_period: Duration::from_secs(10),
        status_report_period: Duration::from_secs(300),
        mounter: Arc::new(crate::pod::mounts::FakeMounter::new()),
    }
}

/// How a hollow node is set up (shared by every hollow node of a run).
#[derive(Debug, Clone)]
pub struct HollowConfig {
    /// Machine facts reported in the node status (read once with
    /// [`crate::node::info::machine_info`], not per node).
    pub machine: MachineInfo,
    /// How often the node status is posted (upstream kubemark keeps the kubelet's 10 s; larger
    /// values lighten the apiserver when thousands of nodes run).
    pub status_period: Duration,
    /// The longest time between two status PATCHes when nothing changed (upstream
    /// `nodeStatusReportFrequency`; kubemark: 5 min). The status is computed every
    /// `status_period` and PATCHed only when it changed or this much time passed.
    pub status_report_period: Duration,
    /// `status.capacity.pods`.
    pub max_pods: u32,
    /// How often a running pod is re-synced (upstream `syncFrequency`: one minute; fake
    /// containers change only when a pod does, which wakes its worker at once).
    pub sync_frequency: Duration,
    /// Kubelet port reported in `status.daemonEndpoints` (nothing listens there).
    pub port: u16,
    /// The Services every hollow node reads pod environments from (one watch for the fleet);
    /// without it each pod start lists its namespace's Services.
    pub services: Option<ServiceLister>,
    /// The ConfigMaps and Secrets every hollow node refreshes pod volumes from (one watch each
    /// for the fleet); without it each node reads them from the apiserver once its cache's TTL
    /// has passed.
    pub objects: Option<ObjectLister>,
}

/// A hollow node: the kubelet's node agent and pod manager over fakes, without a kubelet API.
pub struct HollowNode {
    /// The node name.
    pub name: String,
    /// The kubelet's pods.
    pub store: PodStore,
    /// The fake runtime.
    pub runtime: Arc<FakeRuntime>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for HollowNode {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts hollow node `node_name`: registers the Node (one attempt; the caller retries), posts
/// its first status, then runs the status, Lease, pod CIDR and pod manager loops. Pod files go
/// under `dir`.
pub async fn start_hollow(
    client: Client,
    node_name: &str,
    dir: &Path,
    config: &HollowConfig,
) -> Result<HollowNode, NodeError> {
    let runtime = Arc::new(FakeRuntime::with_auto_pull());
    runtime.add_image("busybox:1.35");
    let network = Arc::new(FakeNetwork::ready_network());
    let node_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let dyn_runtime: Arc<dyn ContainerRuntime> = runtime.clone();
    let dyn_network: Arc<dyn Network> = network;
    let objects = Arc::new(ObjectCache::new());
    let agent = Arc::new(
        NodeAgent::new(
            client.clone(),
            NodeConfig {
                name: node_name.to_string(),
                node_ip,
                port: config.port,
                max_pods: config.max_pods,
            },
            config.machine.clone(),
            dyn_runtime.clone(),
            dyn_network.clone(),
        )
        .with_object_cache(objects.clone()),
    );
    agent.register().await?;
    if let Err(error) = agent.post_status().await {
        tracing::warn!(node = node_name, %error, "first node status update failed");
    }
    let store = PodStore::new();
    let mut api = KubePodApi::new(client.clone(), node_name);
    if let Some(lister) = &config.services {
        api = api.with_service_lister(lister.clone());
    }
    if let Some(lister) = &config.objects {
        api = api.with_object_lister(lister.clone());
    }
    let api: Arc<dyn PodApi> = Arc::new(api);
    let ctx = Arc::new(PodContext {
        runtime: dyn_runtime,
        network: dyn_network,
        api,
        settings: PodSettings {
            node_name: node_name.to_string(),
            node_ip,
            root_dir: dir.join("root"),
            pod_logs_dir: dir.join("logs"),
            dns: DnsSettings {
                cluster_dns: vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))],
                cluster_domain: "cluster.local".into(),
                host_resolv_conf: String::new(),
            },
        },
        store: store.clone(),
        mounter: Arc::new(crate::pod::mounts::FakeMounter::new()),
        resync: config.sync_frequency,
        objects,
    });
    let manager = PodManager::new(ctx).await;
    let tasks = vec![
        tokio::spawn(
            agent
                .clone()
                .status_report_loop(config.status_period, config.status_report_period),
        ),
        tokio::spawn(agent.clone().lease_loop()),
        tokio::spawn(agent.clone().pod_cidr_loop()),
        tokio::spawn(manager.run(client, node_name.to_string())),
    ];
    Ok(HollowNode {
        name: node_name.to_string(),
        store,
        runtime,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, Service};
    use kube::api::{ObjectMeta, PostParams};
    use kube::Api;
    use kube_apiserver::testing::TestServer;

    async fn eventually<T, Fut: std::future::Future<Output = Option<T>>>(
        what: &str,
        mut check: impl FnMut() -> Fut,
    ) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn hollow_nodes_register_heartbeat_and_run_their_pods() {
        let server = TestServer::start().await.expect("apiserver");
        let client = server.client().await.expect("client");
        let dir = tempfile::tempdir().expect("tempdir");
        let lister = ServiceLister::spawn(client.clone());
        let config = HollowConfig {
            machine: MachineInfo::default(),
            status_period: Duration::from_secs(60),
            status_report_period: Duration::from_secs(300),
            max_pods: 110,
            sync_frequency: Duration::from_secs(60),
            port: 10250,
            services: Some(lister.clone()),
            objects: Some(ObjectLister::spawn(client.clone())),
        };
        let mut nodes = Vec::new();
        for name in ["hollow-0", "hollow-1"] {
            let node = start_hollow(client.clone(), name, &dir.path().join(name), &config)
                .await
                .expect("hollow node");
            nodes.push(node);
        }
        let node_api: Api<Node> = Api::all(client.clone());
        let node = node_api.get("hollow-1").await.expect("node registered");
        let endpoint = node
            .status
            .and_then(|s| s.daemon_endpoints)
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port);
        assert_eq!(endpoint, Some(10250));
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        eventually("lease", || {
            let leases = leases.clone();
            async move { leases.get_opt("hollow-0").await.ok()? }
        })
        .await;

        // The pod's service link variables come from the fleet's Service watch.
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let web: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80}]}
        }))
        .expect("service");
        let web = services
            .create(&PostParams::default(), &web)
            .await
            .expect("service created");
        let web_ip = web.spec.and_then(|s| s.cluster_ip).expect("cluster IP");
        eventually("the lister sees web", || {
            let lister = lister.clone();
            async move {
                let services = lister.services("default")?;
                services
                    .iter()
                    .any(|s| s.metadata.name.as_deref() == Some("web"))
                    .then_some(())
            }
        })
        .await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("hollow-1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("busybox:1.35".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("pod");
        eventually("pod Running", || {
            let pods = pods.clone();
            async move {
                let pod = pods.get("p").await.ok()?;
                (pod.status?.phase.as_deref() == Some("Running")).then_some(())
            }
        })
        .await;
        assert!(
            nodes[1].store.find("default", "p").is_some(),
            "the pod runs on hollow-1"
        );
        let env: Vec<(String, String)> = nodes[1]
            .runtime
            .containers()
            .into_values()
            .flat_map(|c| c.config.env)
            .collect();
        for (name, value) in [
            ("WEB_SERVICE_HOST", web_ip.as_str()),
            ("WEB_SERVICE_PORT", "80"),
        ] {
            assert!(
                env.contains(&(name.to_string(), value.to_string())),
                "{name}={value} in {env:?}"
            );
        }
        assert!(
            env.iter()
                .any(|(name, _)| name == "KUBERNETES_SERVICE_HOST"),
            "KUBERNETES_SERVICE_HOST in {env:?}"
        );
        assert!(
            nodes[0].store.find("default", "p").is_none(),
            "and not on hollow-0"
        );
    }

    #[tokio::test]
    async fn refreshes_read_the_fleet_object_watch_and_the_apiserver_only_for_misses() {
        use k8s_openapi::api::core::v1::{ConfigMap, Secret};
        let server = TestServer::start().await.expect("apiserver");
        let client = server.client().await.expect("client");
        let lister = ObjectLister::spawn(client.clone());
        // The pod API's own client reaches nothing: every answer below comes from the watch.
        let offline = kube::Client::try_from(kube::Config::new(
            "http://127.0.0.1:1".parse().expect("uri"),
        ))
        .expect("offline client");
        let api = KubePodApi::new(offline, "n").with_object_lister(lister.clone());
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let data = |v: &str| Some([("k".to_string(), v.to_string())].into());
        let mut cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("cm".into()),
                ..Default::default()
            },
            data: data("one"),
            ..Default::default()
        };
        cm = config_maps
            .create(&PostParams::default(), &cm)
            .await
            .expect("configmap");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            },
            string_data: Some([("k".to_string(), "v".to_string())].into()),
            ..Default::default()
        };
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("secret");
        let read = |api: &KubePodApi| {
            let api = api.clone();
            async move {
                let cm = api.config_map_any_version("default", "cm").await.ok()??;
                cm.data?.get("k").cloned()
            }
        };
        assert_eq!(eventually("the watch holds cm", || read(&api)).await, "one");
        cm.data = data("two");
        config_maps
            .replace("cm", &PostParams::default(), &cm)
            .await
            .expect("update");
        eventually("the watch holds the update", || {
            let next = read(&api);
            async move { (next.await? == "two").then_some(()) }
        })
        .await;
        let secret = eventually("the watch holds s", || {
            let api = api.clone();
            async move { api.secret_any_version("default", "s").await.ok()? }
        })
        .await;
        assert!(secret.data.is_some_and(|d| d.contains_key("k")));
        // An object the watch does not hold is read from the apiserver (here: unreachable).
        assert!(api
            .config_map_any_version("default", "other")
            .await
            .is_err());
    }

    #[tokio::test]
    async fn hollow_node_patches_an_unchanged_status_only_at_the_report_period() {
        let server = TestServer::start().await.expect("apiserver");
        let client = server.client().await.expect("client");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = HollowConfig {
            machine: MachineInfo::default(),
            status_period: Duration::from_millis(200),
            status_report_period: Duration::from_secs(300),
            max_pods: 110,
            sync_frequency: Duration::from_secs(60),
            port: 10250,
            services: None,
            objects: None,
        };
        let _node = start_hollow(client.clone(), "quiet", &dir.path().join("quiet"), &config)
            .await
            .expect("hollow node");
        let node_api: Api<Node> = Api::all(client.clone());
        let first = node_api.get("quiet").await.expect("node registered");
        // Several status periods pass: each computes the status, none changes it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let later = node_api.get("quiet").await.expect("node");
        assert_eq!(
            first.metadata.resource_version, later.metadata.resource_version,
            "the unchanged status was not PATCHed again"
        );
    }

    fn ready(node: &Node) -> Option<String> {
        node.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status.clone())
    }

    #[tokio::test]
    async fn a_kubelet_posts_its_node_status_when_it_changes_not_every_update_period() {
        let server = TestServer::start().await.expect("apiserver");
        let client = server.client().await.expect("client");
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Arc::new(FakeRuntime::new());
        let mut deps = fake_dependencies(
            client.clone(),
            runtime.clone(),
            Arc::new(FakeNetwork::ready_network()),
            "steady",
            dir.path(),
        );
        deps.status_period = Duration::from_millis(200);
        let _kubelet = start(deps).await.expect("kubelet");
        let node_api: Api<Node> = Api::all(client.clone());
        let first = node_api.get("steady").await.expect("node registered");
        assert_eq!(
            ready(&first).as_deref(),
            Some("True"),
            "Ready from the first PATCH, before any tick"
        );
        // Several update periods pass: each computes the status, none changes it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let later = node_api.get("steady").await.expect("node");
        assert_eq!(
            first.metadata.resource_version, later.metadata.resource_version,
            "the unchanged status was not PATCHed again"
        );
        // The runtime stops answering: NotReady is posted at the next ticks, long before the
        // report period.
        for _ in 0..1000 {
            runtime.fail_next(crate::runtime::fake::Method::Version, "runtime is down");
        }
        eventually("NotReady posted", || {
            let node_api = node_api.clone();
            async move {
                let node = node_api.get("steady").await.ok()?;
                (ready(&node).as_deref() == Some("False")).then_some(())
            }
        })
        .await;
    }
}
