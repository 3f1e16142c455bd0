//! `deployments`: the controller-manager benchmark of issue 6. D Deployments of R replicas are
//! created on N hollow nodes; the scenario reports the time until every Deployment is Available
//! (the `Available` condition True and `availableReplicas == replicas`, as seen by a watch), the
//! pods per second that reached, and the controller-manager's CPU seconds and peak RSS. The floor
//! is the rate at which the same apiserver accepts pods created directly (64 in flight) in the
//! same run, and the raw etcd put rate.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};

use super::{api_err, pause_pod, ScenarioError};
use crate::cluster::{ensure_namespace, Cluster, ClusterOptions};
use crate::report::{Latencies, Report};
use crate::{floors, procs};

/// Deployments settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DeploymentsOptions {
    /// Hollow nodes (each takes at most 110 pods).
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Deployments.
    #[arg(long, default_value_t = 1000)]
    pub deployments: usize,
    /// Replicas per Deployment.
    #[arg(long, default_value_t = 10)]
    pub replicas: usize,
    /// Deployment creations per second (0: as fast as 32 in flight allow).
    #[arg(long, default_value_t = 0.0)]
    pub qps: f64,
    /// Pods created directly for the floor (0: none; capped at the Deployments' pod count).
    #[arg(long, default_value_t = 2000)]
    pub floor_pods: usize,
    /// Node status period of the hollow nodes (seconds; the kubelet default is 10).
    #[arg(long, default_value_t = 10)]
    pub node_status_period: u64,
    /// Longest time between two node status PATCHes of an unchanged status (seconds; upstream
    /// `nodeStatusReportFrequency`, kubemark's default 300).
    #[arg(long, default_value_t = 300)]
    pub node_status_report_period: u64,
}

impl DeploymentsOptions {
    /// The hollow nodes' status timings from the flags.
    pub fn status_timings(&self) -> crate::hollow::StatusTimings {
        super::status_timings(self.node_status_period, self.node_status_report_period)
    }
}

const NAMESPACE: &str = "deployments";
const FLOOR_NAMESPACE: &str = "deployments-floor";
/// A node name no hollow node has: floor pods bound to it are never run or scheduled.
const FLOOR_NODE: &str = "kube-perf-floor-nowhere";
const IN_FLIGHT: usize = 32;

/// Runs the scenario.
pub async fn run(
    cluster_options: &ClusterOptions,
    o: &DeploymentsOptions,
) -> Result<Report, ScenarioError> {
    let pods_per_node = (o.deployments * o.replicas).div_ceil(o.nodes.max(1));
    if pods_per_node > 110 {
        return Err(ScenarioError::Unsupported(format!(
            "{} pods do not fit on {} hollow nodes of 110 pods",
            o.deployments * o.replicas,
            o.nodes
        )));
    }
    let mut options = cluster_options.clone();
    options.scheduler = true;
    options.controller_manager = true;
    let mut cluster = Cluster::start(&options).await?;
    let client = cluster.client.clone();
    let want_pods = o.deployments * o.replicas;
    let mut report = Report::new(format!(
        "deployments: {} Deployments x {} replicas on {} hollow nodes",
        o.deployments, o.replicas, o.nodes
    ));
    ensure_namespace(&client, NAMESPACE)
        .await
        .map_err(api_err("creating namespace"))?;
    ensure_namespace(&client, FLOOR_NAMESPACE)
        .await
        .map_err(api_err("creating the floor namespace"))?;

    // Floors: direct pod creates through the same apiserver, and raw etcd puts.
    let floor_count = o.floor_pods.min(want_pods);
    let (floor_rate, payload) = direct_create_rate(&client, floor_count).await?;
    let etcd_floor = match &cluster.etcd_endpoint {
        Some(endpoint) => Some(floors::etcd(endpoint, payload, 5000).await?),
        None => None,
    };

    let (hollow_dir, nodes, _) =
        super::ready_hollow_nodes(&client, o.nodes, o.status_timings()).await?;
    cluster.check_alive()?;
    let cm_before = cluster
        .pid("kube-controller-manager")
        .and_then(|p| procs::read("kube-controller-manager", p));

    let (available, watch) = watch_available(&client);
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    let errors = create_deployments(&client, o, &created).await;
    let create_took = started.elapsed();
    tracing::info!(
        deployments = o.deployments,
        errors,
        seconds = create_took.as_secs_f64(),
        "created; waiting for Available"
    );
    let timeout = Duration::from_secs(180 + want_pods as u64 / 10);
    let deadline = Instant::now() + timeout;
    let mut progress = Instant::now();
    let done = loop {
        let n = available.lock().map(|m| m.len()).unwrap_or(0);
        if n >= o.deployments || Instant::now() > deadline {
            break n;
        }
        if progress.elapsed() > Duration::from_secs(10) {
            tracing::info!(available = n, want = o.deployments, "waiting");
            cluster.check_alive()?;
            progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let all_available = started.elapsed();
    watch.abort();
    cluster.check_alive()?;
    let cm_after = cluster
        .pid("kube-controller-manager")
        .and_then(|p| procs::read("kube-controller-manager", p));

    let mut latency = Latencies::new();
    if let (Ok(available), Ok(created)) = (available.lock(), created.lock()) {
        for (name, at) in available.iter() {
            if let Some(origin) = created.get(name) {
                latency.push(at.saturating_duration_since(*origin));
            }
        }
    }
    report.row(
        "Deployments Available",
        done as f64,
        Some(o.deployments as f64),
        "",
    );
    report.row(
        "all Deployments Available after (s)",
        all_available.as_secs_f64(),
        None,
        "",
    );
    report.row(
        "Deployments created per second",
        o.deployments as f64 / create_took.as_secs_f64().max(1e-9),
        None,
        &if o.qps > 0.0 {
            format!("asked {}", o.qps)
        } else {
            format!("{IN_FLIGHT} in flight")
        },
    );
    report.latency_rows("Deployment create -> Available", &latency, None, "");
    let available_pods = done * o.replicas;
    report.row(
        "pods Available per second (create start -> all Available)",
        available_pods as f64 / all_available.as_secs_f64().max(1e-9),
        floor_rate,
        "",
    );
    if let (Some(before), Some(after)) = (&cm_before, &cm_after) {
        report.row(
            "controller-manager CPU during the run (s)",
            after.cpu_seconds - before.cpu_seconds,
            None,
            "",
        );
        report.row(
            "controller-manager CPU per 1,000 pods (ms)",
            (after.cpu_seconds - before.cpu_seconds) * 1e6 / available_pods.max(1) as f64,
            None,
            "",
        );
        report.row(
            "controller-manager peak RSS (MiB)",
            after.peak_rss_kib as f64 / 1024.0,
            None,
            "",
        );
    }
    report.row("create errors", errors as f64, None, "");
    if let Some(rate) = floor_rate {
        report.notes.push(format!(
            "floor = {floor_count} pods created directly through the same apiserver ({} in flight, bound to no node) before the run: {} pods/s",
            64,
            rate.round()
        ));
    }
    if let Some(f) = &etcd_floor {
        report.notes.push(format!(
            "raw etcd: {} puts/s of a {} B pod with {} clients (each Available pod costs at least create, binding, status writes plus ReplicaSet/Deployment status)",
            f.put_per_sec.round(),
            f.payload,
            floors::ETCD_CLIENTS
        ));
    }
    report.processes = cluster.usage();
    drop(nodes);
    report.hollow_dirs.push(std::sync::Arc::new(hollow_dir));
    Ok(report)
}

/// Creates `count` pods bound to a node that does not exist, 64 in flight, and returns the
/// creation rate (None when `count` is 0) and the stored pod's size; then deletes them.
async fn direct_create_rate(
    client: &Client,
    count: usize,
) -> Result<(Option<f64>, usize), ScenarioError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), FLOOR_NAMESPACE);
    let labels = BTreeMap::from([("kube-perf".to_string(), "deployments-floor".to_string())]);
    let floor_pod = |name: String| {
        let mut pod = pause_pod(&name, &labels);
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(FLOOR_NODE.into());
        }
        pod
    };
    let probe = api
        .create(&PostParams::default(), &floor_pod("probe".into()))
        .await
        .map_err(api_err("creating the probe pod"))?;
    let payload = super::json_size(&probe);
    if count == 0 {
        return Ok((None, payload));
    }
    let started = Instant::now();
    let failed = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let pod = floor_pod(format!("floor-{i}"));
            async move { api.create(&PostParams::default(), &pod).await.is_err() }
        })
        .buffer_unordered(64)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    let rate = (count - failed) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(count, failed, rate, "floor pods created");
    let delete = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    if let Err(error) = api.delete_collection(&delete, &ListParams::default()).await {
        tracing::warn!(%error, "deleting the floor pods failed");
    }
    Ok((Some(rate), payload))
}

/// Creates the Deployments (`o.qps` per second, or as fast as [`IN_FLIGHT`] allow), recording
/// each creation time in `created`; returns the number of failed creates.
async fn create_deployments(
    client: &Client,
    o: &DeploymentsOptions,
    created: &Arc<Mutex<HashMap<String, Instant>>>,
) -> usize {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let period = (o.qps > 0.0).then(|| Duration::from_secs_f64(1.0 / o.qps));
    let replicas = o.replicas;
    futures::stream::iter(0..o.deployments)
        .then(|i| async move {
            if let Some(period) = period {
                tokio::time::sleep(period).await;
            }
            i
        })
        .map(|i| {
            let api = api.clone();
            let created = created.clone();
            async move {
                let name = format!("deploy-{i}");
                if let Ok(mut m) = created.lock() {
                    m.insert(name.clone(), Instant::now());
                }
                match api
                    .create(&PostParams::default(), &deployment(&name, replicas))
                    .await
                {
                    Ok(_) => false,
                    Err(error) => {
                        tracing::warn!(%error, deployment = %name, "create failed");
                        true
                    }
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await
}

/// Watches the scenario's Deployments and records when each was first seen Available.
fn watch_available(
    client: &Client,
) -> (
    Arc<Mutex<HashMap<String, Instant>>>,
    tokio::task::JoinHandle<()>,
) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let available: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let recorded = available.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let deployment = match event {
                Ok(watcher::Event::Apply(d)) | Ok(watcher::Event::InitApply(d)) => d,
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%error, "deployment watch error");
                    continue;
                }
            };
            if !is_available(&deployment) {
                continue;
            }
            let Some(name) = deployment.metadata.name.clone() else {
                continue;
            };
            let Ok(mut map) = recorded.lock() else {
                return;
            };
            map.entry(name).or_insert_with(Instant::now);
        }
    });
    (available, task)
}

/// Whether the Deployment's status is current, has every replica available and its
/// `Available` condition True.
pub fn is_available(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = d.status.as_ref() else {
        return false;
    };
    let current = status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let condition = status.conditions.as_ref().is_some_and(|c| {
        c.iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    });
    current
        && condition
        && status.available_replicas.unwrap_or(0) >= want
        && status.updated_replicas.unwrap_or(0) >= want
}

fn deployment(name: &str, replicas: usize) -> Deployment {
    let labels = BTreeMap::from([
        ("kube-perf".to_string(), "deployments".to_string()),
        ("app".to_string(), name.to_string()),
    ]);
    let pod = pause_pod("", &labels);
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: pod.spec,
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};

    fn with_status(generation: i64, observed: i64, available: i32, condition: &str) -> Deployment {
        let mut d = deployment("d", 3);
        d.metadata.generation = Some(generation);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(observed),
            available_replicas: Some(available),
            updated_replicas: Some(available),
            conditions: Some(vec![DeploymentCondition {
                type_: "Available".into(),
                status: condition.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        d
    }

    #[test]
    fn available_needs_condition_replicas_and_current_status() {
        assert!(is_available(&with_status(1, 1, 3, "True")));
        assert!(!is_available(&with_status(1, 1, 2, "True")));
        assert!(!is_available(&with_status(1, 1, 3, "False")));
        assert!(!is_available(&with_status(2, 1, 3, "True")));
        assert!(!is_available(&deployment("d", 3)));
    }
}
