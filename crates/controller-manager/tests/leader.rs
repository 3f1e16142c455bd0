//! Two controller-managers ([`kube_controller_manager::run_until`], each on its own runtime so
//! that one can be killed) against an in-process apiserver with RBAC on, as
//! `system:kube-controller-manager`: only the holder of the `kube-controller-manager` Lease runs
//! controllers and exports workqueue metrics; both pass the `leaderElection` check on
//! `/healthz`; when the leader dies the other takes over and reconciles what came meanwhile; a
//! graceful stop releases the Lease.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use kube_apiserver::testing::TestServer;
use support::wait_for;
use tokio::sync::oneshot;

const LIMIT: Duration = Duration::from_secs(60);

async fn lease_spec(
    client: &Client,
) -> anyhow::Result<k8s_openapi::api::coordination::v1::LeaseSpec> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    Ok(leases
        .get_opt("kube-controller-manager")
        .await?
        .and_then(|l| l.spec)
        .unwrap_or_default())
}

async fn holder(client: &Client) -> anyhow::Result<String> {
    Ok(lease_spec(client)
        .await?
        .holder_identity
        .unwrap_or_default())
}

/// One controller-manager process stand-in: its own runtime on its own thread.
struct Instance {
    stop: Option<oneshot::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    port: u16,
}

impl Instance {
    fn start(kubeconfig: &Path, identity: &str) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let options = kube_controller_manager::Options::try_parse_from([
            "kube-controller-manager",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            &port.to_string(),
            "--controllers",
            "replicaset",
            "--leader-elect-lease-duration",
            "3s",
            "--leader-elect-renew-deadline",
            "2s",
            "--leader-elect-retry-period",
            "500ms",
        ])?;
        let identity = identity.to_string();
        let (stop, stopped) = oneshot::channel::<bool>();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let result = runtime.block_on(async move {
                let (graceful, shutdown) = oneshot::channel::<()>();
                let run = kube_controller_manager::run_until(options, Some(identity), async {
                    shutdown.await.ok();
                });
                tokio::pin!(run);
                tokio::select! {
                    result = &mut run => Ok(result?),
                    // true: SIGTERM-like shutdown; false (or dropped): the process is killed.
                    message = stopped => match message {
                        Ok(true) => {
                            graceful.send(()).ok();
                            Ok(run.await?)
                        }
                        _ => Ok(()),
                    },
                }
            });
            runtime.shutdown_background();
            result
        });
        Ok(Instance {
            stop: Some(stop),
            thread: Some(thread),
            port,
        })
    }

    fn stop(&mut self, graceful: bool) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            stop.send(graceful).ok();
        }
        match self.thread.take() {
            Some(thread) => match thread.join() {
                Ok(result) => result,
                Err(_) => bail!("controller-manager thread panicked"),
            },
            None => Ok(()),
        }
    }

    /// The raw HTTP/1.1 response to `GET <path>` on the health port.
    async fn get(&self, path: &str) -> anyhow::Result<String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        Ok(component_base::health::http_get(addr, path).await?)
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        self.get("/metrics").await
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Err(error) = self.stop(false) {
            tracing::warn!(%error, "stopping a controller-manager instance");
        }
    }
}

fn replica_set(name: &str, replicas: i32) -> anyhow::Result<ReplicaSet> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}
            }
        }
    }))?)
}

async fn pods_of(pods: &Api<Pod>, app: &str) -> anyhow::Result<usize> {
    Ok(pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items
        .len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_follower_takes_over_when_it_dies() -> anyhow::Result<()> {
    let server =
        TestServer::start_with(|o| o.authorization_mode = vec!["Node".into(), "RBAC".into()])
            .await?;
    let admin = server.client().await?;
    let kubeconfig = server.kubeconfig_for("system:kube-controller-manager", &[])?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(admin.clone(), "default");

    let mut a = Instance::start(&kubeconfig, "host_a")?;
    wait_for(LIMIT, "a leads", || async {
        Ok(holder(&admin).await? == "host_a")
    })
    .await?;
    let mut b = Instance::start(&kubeconfig, "host_b")?;
    wait_for(LIMIT, "b serves metrics", || async {
        Ok(b.metrics().await?.contains("leader_election_master_status"))
    })
    .await?;

    sets.create(&PostParams::default(), &replica_set("first", 3)?)
        .await?;
    wait_for(LIMIT, "3 pods of first", || async {
        Ok(pods_of(&pods, "first").await? == 3)
    })
    .await?;
    let a_metrics = a.metrics().await?;
    let b_metrics = b.metrics().await?;
    assert!(
        a_metrics.contains("leader_election_master_status{name=\"kube-controller-manager\"} 1"),
        "{a_metrics}"
    );
    assert!(
        a_metrics.contains("workqueue_adds_total{name=\"replicaset\"}"),
        "{a_metrics}"
    );
    assert!(
        b_metrics.contains("leader_election_master_status{name=\"kube-controller-manager\"} 0"),
        "{b_metrics}"
    );
    // The follower started no controller, so it exports no queue.
    assert!(!b_metrics.contains("workqueue_"), "{b_metrics}");
    // Leader and follower both pass the leaderElection check.
    for instance in [&a, &b] {
        let healthz = instance.get("/healthz?verbose").await?;
        assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
        assert!(
            healthz.ends_with("\r\n\r\n[+]leaderElection ok\nhealthz check passed\n"),
            "{healthz}"
        );
    }

    // Kill the leader (no release): b takes over once the lease expires and reconciles.
    a.stop(false)?;
    sets.create(&PostParams::default(), &replica_set("second", 2)?)
        .await?;
    wait_for(LIMIT, "b leads", || async {
        Ok(holder(&admin).await? == "host_b")
    })
    .await?;
    wait_for(LIMIT, "2 pods of second", || async {
        Ok(pods_of(&pods, "second").await? == 2)
    })
    .await?;
    assert_eq!(lease_spec(&admin).await?.lease_transitions, Some(1));
    assert_eq!(pods_of(&pods, "first").await?, 3);

    // A graceful stop releases the lease.
    b.stop(true)?;
    assert_eq!(holder(&admin).await?, "");
    Ok(())
}
