//! Leader election against an in-process apiserver with RBAC on, as `system:kube-scheduler`.
//!
//! First the elector itself ([`component_base::leaderelection`]) on tokio's paused clock: the
//! Lease record it writes, a second candidate waiting for expiry, release on shutdown, giving up
//! when renewing fails past the deadline, and the `leaderElection` health check failing when
//! the renew loop is stuck. Then whole schedulers ([`kube_scheduler::run_until`], each on its own
//! runtime so that one can be killed): the leader's `/healthz` passes its `leaderElection` check;
//! only the leader schedules, and when it dies the other takes over and schedules the next pod.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;
use component_base::health::{Health, HealthCheck};
use component_base::leaderelection::{LeaderElectionConfig, LeaderElector, Outcome};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use kube_apiserver::testing::TestServer;
use tokio::sync::oneshot;

mod support;

use support::{create_node, wait_for};

async fn rbac_server() -> anyhow::Result<TestServer> {
    Ok(
        TestServer::start_with(|o| o.authorization_mode = vec!["Node".into(), "RBAC".into()])
            .await?,
    )
}

async fn scheduler_client(server: &TestServer) -> anyhow::Result<Client> {
    let path = server.kubeconfig_for("system:kube-scheduler", &[])?;
    Ok(component_base::client::from_kubeconfig(Some(&path)).await?)
}

fn config(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        namespace: "kube-system".into(),
        name: "kube-scheduler".into(),
        identity: identity.into(),
        component: "kube-scheduler".into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
        release_on_cancel: true,
    }
}

async fn lease(client: &Client) -> anyhow::Result<Option<Lease>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    Ok(leases.get_opt("kube-scheduler").await?)
}

async fn holder(client: &Client) -> anyhow::Result<String> {
    Ok(lease(client)
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .unwrap_or_default())
}

async fn transitions(client: &Client) -> anyhow::Result<i32> {
    Ok(lease(client)
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.lease_transitions)
        .unwrap_or(-1))
}

#[tokio::test(start_paused = true)]
async fn the_first_candidate_writes_an_upstream_lease_record_and_an_event() -> anyhow::Result<()> {
    let server = rbac_server().await?;
    let client = scheduler_client(&server).await?;
    let mut a = LeaderElector::new(client.clone(), config("host_a"));
    let status = a.status();
    assert!(!status.is_leader());
    a.acquire().await;
    assert!(status.is_leader());
    let spec = lease(&client)
        .await?
        .and_then(|l| l.spec)
        .context("lease has a spec")?;
    assert_eq!(spec.holder_identity.as_deref(), Some("host_a"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    let events: Api<Event> = Api::namespaced(server.client().await?, "kube-system");
    let events = events.list(&ListParams::default()).await?;
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("LeaderElection")
                && e.message.as_deref() == Some("host_a became leader")
                && e.involved_object.kind.as_deref() == Some("Lease")),
        "{:?}",
        events.items
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_second_candidate_takes_over_only_after_the_lease_expires() -> anyhow::Result<()> {
    let server = rbac_server().await?;
    let client = scheduler_client(&server).await?;
    let mut a = LeaderElector::new(client.clone(), config("host_a"));
    a.acquire().await;
    let a_task = tokio::spawn(async move {
        a.renew().await;
    });
    let mut b = LeaderElector::new(client.clone(), config("host_b"));
    let b_status = b.status();
    let b_task = tokio::spawn(async move {
        b.acquire().await;
        b
    });
    // A renews every 2s, so B keeps seeing a fresh record and waits.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!b_status.is_leader());
    assert_eq!(holder(&client).await?, "host_a");
    // A dies without releasing: B takes over once the record is 15s old.
    a_task.abort();
    let b = b_task.await?;
    assert!(b.status().is_leader());
    assert_eq!(holder(&client).await?, "host_b");
    assert_eq!(transitions(&client).await?, 1);
    Ok(())
}

// Real time: nothing here waits out a period, and with the clock paused a write answered by
// the apiserver's SQLite writer thread let the idle runtime jump past the 5 s bound.
#[tokio::test]
async fn a_cancelled_leader_releases_the_lease_for_its_successor() -> anyhow::Result<()> {
    let server = rbac_server().await?;
    let client = scheduler_client(&server).await?;
    let mut a = LeaderElector::new(client.clone(), config("host_a"));
    let (stop, stopped) = oneshot::channel::<()>();
    let (led, leading) = oneshot::channel::<()>();
    let a_task = tokio::spawn(async move {
        a.run(
            async {
                stopped.await.ok();
            },
            async {
                led.send(()).ok();
                std::future::pending::<()>().await;
            },
        )
        .await
    });
    leading.await?;
    stop.send(()).ok();
    assert_eq!(a_task.await?, Outcome::Cancelled);
    let spec = lease(&client)
        .await?
        .and_then(|l| l.spec)
        .context("lease has a spec")?;
    assert_eq!(spec.holder_identity.as_deref(), Some(""));
    assert_eq!(spec.lease_duration_seconds, Some(1));
    // The successor does not wait for the 15s expiry: an empty holder is free at once.
    let mut b = LeaderElector::new(client.clone(), config("host_b"));
    tokio::time::timeout(Duration::from_secs(5), b.acquire()).await?;
    assert_eq!(holder(&client).await?, "host_b");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_gives_up_after_the_renew_deadline() -> anyhow::Result<()> {
    let server = rbac_server().await?;
    let client = scheduler_client(&server).await?;
    let mut a = LeaderElector::new(client.clone(), config("host_a"));
    let (led, leading) = oneshot::channel::<()>();
    let a_task = tokio::spawn(async move {
        a.run(std::future::pending(), async {
            led.send(()).ok();
            std::future::pending::<()>().await;
        })
        .await
    });
    leading.await?;
    // Someone else writes the record (as a partitioned leader would see): A's renewals fail.
    let admin = server.client().await?;
    let leases: Api<Lease> = Api::namespaced(admin, "kube-system");
    let mut current = leases.get("kube-scheduler").await?;
    if let Some(spec) = current.spec.as_mut() {
        spec.holder_identity = Some("intruder".into());
    }
    leases
        .replace("kube-scheduler", &PostParams::default(), &current)
        .await?;
    let outcome = tokio::time::timeout(Duration::from_secs(60), a_task).await??;
    assert_eq!(outcome, Outcome::Lost);
    Ok(())
}

/// The raw HTTP/1.1 response to `GET <path>` from a plain-HTTP server on 127.0.0.1:`port`.
async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Ok(component_base::health::http_get(addr, path).await?)
}

/// The status code and body of an HTTP/1.1 response.
fn status_and_body(response: &str) -> anyhow::Result<(u16, &str)> {
    let status = response
        .split(' ')
        .nth(1)
        .context("response has a status line")?
        .parse()?;
    let (_, body) = response
        .split_once("\r\n\r\n")
        .context("response has a body")?;
    Ok((status, body))
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_renew_loop_is_stuck_fails_healthz_after_lease_duration_and_tolerance(
) -> anyhow::Result<()> {
    let server = rbac_server().await?;
    let client = scheduler_client(&server).await?;
    let mut a = LeaderElector::new(client.clone(), config("host_a"));
    let health = Health::default();
    let check = a.health_check();
    health.add_check(check.clone());
    let port = component_base::health::serve("127.0.0.1:0".parse()?, health)
        .await?
        .port();
    // A follower passes the check.
    assert!(check.check().is_ok());
    a.acquire().await;
    // A leader that renewed recently passes too.
    let fresh = http_get(port, "/healthz?verbose").await?;
    let (status, body) = status_and_body(&fresh)?;
    assert_eq!(
        (status, body),
        (200, "[+]leaderElection ok\nhealthz check passed\n")
    );
    // Nothing renews from here on, as when the renew loop is stuck: the check holds out for the
    // lease duration (15s) plus the 20s tolerance after the last renewal, then fails.
    let renewed_at = a.status().last_renewal().context("a leads")?;
    tokio::time::advance(Duration::from_secs(34).saturating_sub(renewed_at.elapsed())).await;
    assert!(check.check().is_ok());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(check.check().is_err());
    assert!(
        a.status().is_leader(),
        "the elector still believes it leads"
    );

    let stale = http_get(port, "/healthz").await?;
    let (status, body) = status_and_body(&stale)?;
    assert_eq!(
        (status, body),
        (
            500,
            "[-]leaderElection failed: reason withheld\nhealthz check failed\n"
        )
    );
    let one = http_get(port, "/healthz/leaderElection").await?;
    let (status, body) = status_and_body(&one)?;
    assert_eq!(status, 500, "{one}");
    assert!(body.contains("kube-system/kube-scheduler"), "{one}");
    Ok(())
}

/// One scheduler process stand-in: its own runtime on its own thread.
struct Instance {
    stop: Option<oneshot::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    port: u16,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Instance {
    fn start(kubeconfig: &Path, identity: &str) -> anyhow::Result<Self> {
        let port = free_port()?;
        let options = kube_scheduler::Options::try_parse_from([
            "kube-scheduler",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            &port.to_string(),
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
                let run = kube_scheduler::run_until(options, Some(identity), async {
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
                Err(_) => bail!("scheduler thread panicked"),
            },
            None => Ok(()),
        }
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        http_get(self.port, "/metrics").await
    }

    /// Status and body of `GET <path>` on the health port.
    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let response = http_get(self.port, path).await?;
        let (status, body) = status_and_body(&response)?;
        Ok((status, body.to_string()))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Err(error) = self.stop(false) {
            tracing::warn!(%error, "stopping a scheduler instance");
        }
    }
}

async fn create_pod(pods: &Api<Pod>, name: &str) -> anyhow::Result<()> {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    Ok(())
}

async fn bound(pods: &Api<Pod>, name: &str) -> anyhow::Result<bool> {
    Ok(pods
        .get(name)
        .await?
        .spec
        .and_then(|s| s.node_name)
        .is_some())
}

fn scheduled_attempts(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("scheduler_schedule_attempts_total{result=\"scheduled\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_passes_its_leader_election_check_on_healthz() -> anyhow::Result<()> {
    let server = rbac_server().await?;
    let admin = server.client().await?;
    let kubeconfig = server.kubeconfig_for("system:kube-scheduler", &[])?;
    let a = Instance::start(&kubeconfig, "host_a")?;
    wait_for("a leads", || async {
        Ok(holder(&admin).await? == "host_a")
    })
    .await?;
    wait_for("a's metrics say it leads", || async {
        Ok(a.metrics()
            .await?
            .contains("leader_election_master_status{name=\"kube-scheduler\"} 1"))
    })
    .await?;
    assert_eq!(a.get("/healthz").await?, (200, "ok".to_string()));
    assert_eq!(
        a.get("/healthz?verbose").await?,
        (
            200,
            "[+]leaderElection ok\nhealthz check passed\n".to_string()
        )
    );
    assert_eq!(
        a.get("/healthz/leaderElection").await?,
        (200, "ok".to_string())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_schedules_and_a_follower_takes_over_when_it_dies() -> anyhow::Result<()> {
    let server = rbac_server().await?;
    let admin = server.client().await?;
    let kubeconfig = server.kubeconfig_for("system:kube-scheduler", &[])?;
    create_node(&admin, "node-0", "4", &[]).await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");

    let mut a = Instance::start(&kubeconfig, "host_a")?;
    wait_for("a leads", || async {
        Ok(holder(&admin).await? == "host_a")
    })
    .await?;
    let mut b = Instance::start(&kubeconfig, "host_b")?;
    wait_for("b serves metrics", || async {
        Ok(b.metrics().await?.contains("leader_election_master_status"))
    })
    .await?;
    create_pod(&pods, "first").await?;
    wait_for("first bound", || bound(&pods, "first")).await?;

    // Attempts are counted once the binding call returns, just after the pod shows bound.
    wait_for("a counts its attempt", || async {
        Ok(scheduled_attempts(&a.metrics().await?) >= 1)
    })
    .await?;
    let a_metrics = a.metrics().await?;
    let b_metrics = b.metrics().await?;
    assert!(a_metrics.contains("leader_election_master_status{name=\"kube-scheduler\"} 1"));
    assert_eq!(scheduled_attempts(&b_metrics), 0, "{b_metrics}");
    assert!(b_metrics.contains("leader_election_master_status{name=\"kube-scheduler\"} 0"));
    // A follower passes the check: it has no Lease to keep fresh.
    assert_eq!(
        b.get("/healthz?verbose").await?,
        (
            200,
            "[+]leaderElection ok\nhealthz check passed\n".to_string()
        )
    );
    assert_eq!(holder(&admin).await?, "host_a");

    // Kill the leader (no release): b takes over once the lease expires.
    a.stop(false)?;
    create_pod(&pods, "second").await?;
    wait_for("b leads", || async {
        Ok(holder(&admin).await? == "host_b")
    })
    .await?;
    wait_for("second bound", || bound(&pods, "second")).await?;
    assert_eq!(transitions(&admin).await?, 1);
    wait_for("b counts its attempt", || async {
        Ok(scheduled_attempts(&b.metrics().await?) >= 1)
    })
    .await?;

    // A graceful stop releases the lease.
    b.stop(true)?;
    assert_eq!(holder(&admin).await?, "");
    Ok(())
}
