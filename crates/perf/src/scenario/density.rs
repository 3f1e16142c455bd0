//! `density`: N hollow nodes with the real scheduler and controller-manager; pods (or
//! Deployments) are created at a given QPS and pod startup latency is measured from creation to
//! Running as seen by a watch (upstream's pod startup SLI: p99 <= 5 s).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use tokio::sync::Semaphore;

use super::{api_err, pause_pod, wait_count, watch_pods, ScenarioError};
use crate::cluster::{ensure_namespace, Cluster, ClusterOptions};
use crate::report::{Latencies, Report};
use crate::{floors, procs};

/// Density settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DensityOptions {
    /// Hollow nodes.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Pods in total.
    #[arg(long, default_value_t = 1000)]
    pub pods: usize,
    /// Pod creations per second.
    #[arg(long, default_value_t = 20.0)]
    pub qps: f64,
    /// Create Deployments (of --replicas pods each) instead of bare pods.
    #[arg(long)]
    pub deployments: bool,
    /// Replicas per Deployment with --deployments.
    #[arg(long, default_value_t = 10)]
    pub replicas: usize,
    /// Node status period of the hollow nodes (seconds; the kubelet default is 10).
    #[arg(long, default_value_t = 10)]
    pub node_status_period: u64,
    /// Longest time between two node status PATCHes of an unchanged status (seconds; upstream
    /// `nodeStatusReportFrequency`, kubemark's default 300).
    #[arg(long, default_value_t = 300)]
    pub node_status_report_period: u64,
}

impl DensityOptions {
    /// The hollow nodes' status timings from the flags.
    pub fn status_timings(&self) -> crate::hollow::StatusTimings {
        super::status_timings(self.node_status_period, self.node_status_report_period)
    }
}

const NAMESPACE: &str = "density";

/// Fewest pods for which the apiserver's RSS growth per pod is reported.
pub const MIN_PODS_FOR_RSS: usize = 1000;

/// Runs the scenario.
pub async fn run(
    cluster_options: &ClusterOptions,
    o: &DensityOptions,
) -> Result<Report, ScenarioError> {
    let mut options = cluster_options.clone();
    options.scheduler = true;
    options.controller_manager = true;
    let mut cluster = Cluster::start(&options).await?;
    let client = cluster.client.clone();
    let mut report = Report::new(format!(
        "density: {} hollow nodes, {} pods{} at {} pods/s",
        o.nodes,
        o.pods,
        if o.deployments {
            format!(" in Deployments of {}", o.replicas)
        } else {
            String::new()
        },
        o.qps
    ));
    ensure_namespace(&client, NAMESPACE)
        .await
        .map_err(api_err("creating namespace"))?;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);

    // Floor: a pod reaches Running after at least three serial writes (create, binding, status).
    let labels = BTreeMap::from([("kube-perf".to_string(), "density".to_string())]);
    let probe = pods_api
        .create(
            &PostParams::default(),
            &pause_pod("probe", &BTreeMap::new()),
        )
        .await
        .map_err(api_err("creating the probe pod"))?;
    let payload = super::json_size(&probe);
    let etcd_floor = match &cluster.etcd_endpoint {
        Some(endpoint) => Some(floors::etcd(endpoint, payload, 5000).await?),
        None => None,
    };

    let (hollow_dir, nodes, took) =
        super::ready_hollow_nodes(&client, o.nodes, o.status_timings()).await?;
    report.row(
        "hollow nodes registered per second",
        o.nodes as f64 / took.as_secs_f64(),
        None,
        "",
    );
    cluster.check_alive()?;
    let apiserver_idle = cluster
        .pid("kube-apiserver")
        .and_then(|p| procs::read("a", p));

    let (timeline, watch) = watch_pods(&client, Some(NAMESPACE), "kube-perf=density");
    let created: Arc<std::sync::Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let in_flight = Arc::new(Semaphore::new(64));
    let objects = if o.deployments {
        o.pods.div_ceil(o.replicas.max(1))
    } else {
        o.pods
    };
    let per_object = if o.deployments {
        o.replicas.max(1) as f64
    } else {
        1.0
    };
    let period = Duration::from_secs_f64(per_object / o.qps.max(0.001));
    let mut ticker = tokio::time::interval(period);
    let started = Instant::now();
    let mut errors = 0usize;
    let mut tasks = Vec::with_capacity(objects);
    for i in 0..objects {
        ticker.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let client = client.clone();
        let labels = labels.clone();
        let created = created.clone();
        let replicas = o.replicas;
        let deployments = o.deployments;
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let name = format!("density-{i}");
            if let Ok(mut m) = created.lock() {
                m.insert(name.clone(), Instant::now());
            }
            if deployments {
                let api: Api<Deployment> = Api::namespaced(client, NAMESPACE);
                api.create(
                    &PostParams::default(),
                    &deployment(&name, replicas, &labels),
                )
                .await
                .map(|_| ())
            } else {
                let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
                api.create(&PostParams::default(), &pause_pod(&name, &labels))
                    .await
                    .map(|_| ())
            }
        }));
    }
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                errors += 1;
                tracing::warn!(%error, "create failed");
            }
            Err(error) => tracing::warn!(%error, "create task failed"),
        }
    }
    let create_rate = objects as f64 / started.elapsed().as_secs_f64();
    tracing::info!(
        objects,
        errors,
        rate = create_rate,
        "created; waiting for Running"
    );
    let want = if o.deployments {
        objects * o.replicas
    } else {
        o.pods
    };
    let timeout = Duration::from_secs(120 + want as u64 / 20);
    let running = wait_count(&timeline, want, timeout, |t| t.running.is_some()).await;
    let all_running = started.elapsed();
    watch.abort();
    cluster.check_alive()?;

    let mut startup = Latencies::new();
    let mut scheduling = Latencies::new();
    if let (Ok(times), Ok(created)) = (timeline.lock(), created.lock()) {
        for (name, t) in times.iter() {
            let origin = if o.deployments {
                t.seen
            } else {
                created.get(name).copied()
            };
            if let (Some(origin), Some(running)) = (origin, t.running) {
                startup.push(running.saturating_duration_since(origin));
            }
            if let (Some(origin), Some(bound)) = (origin, t.bound) {
                scheduling.push(bound.saturating_duration_since(origin));
            }
        }
    }
    let write_floor = etcd_floor.as_ref().map(|f| {
        let p50 = f.put_latency.ms(0.5) / 1000.0;
        Latencies::from_samples(vec![Duration::from_secs_f64(3.0 * p50)])
    });
    report.latency_rows(
        "pod startup (create -> Running seen)",
        &startup,
        write_floor.as_ref(),
        "5000 ms (SLO)",
    );
    report.latency_rows("create -> bound seen", &scheduling, None, "");
    report.row("pods Running", running as f64, Some(want as f64), "");
    report.row(
        if o.deployments {
            "Deployments created per second"
        } else {
            "pods created per second"
        },
        create_rate,
        None,
        &format!("asked {}", o.qps / per_object),
    );
    report.row(
        "all pods Running after (s)",
        all_running.as_secs_f64(),
        None,
        "",
    );
    report.row("create errors", errors as f64, None, "");
    // Below ~1,000 pods the growth is noise (allocator, buffers), not a per-pod cost.
    let idle = apiserver_idle.filter(|_| want >= MIN_PODS_FOR_RSS);
    if let (Some(idle), Some(pid)) = (idle, cluster.pid("kube-apiserver")) {
        if let Some(now) = procs::read("a", pid) {
            let grown = now.rss_kib.saturating_sub(idle.rss_kib) as f64 / 1024.0;
            report.row(
                "apiserver RSS growth per 10,000 pods (MiB)",
                grown * 10_000.0 / want.max(1) as f64,
                None,
                "",
            );
        }
    }
    if let Some(f) = &etcd_floor {
        report.notes.push(format!(
            "startup floor = 3 serial etcd puts (create, binding, status) at the measured p50 put latency of a {} B pod; {} etcd puts/s with {} clients",
            f.payload,
            f.put_per_sec.round(),
            floors::ETCD_CLIENTS
        ));
    }
    if o.deployments {
        report.notes.push("with --deployments, startup is measured from the pod's first watch event (the ReplicaSet creates it)".into());
    }
    report.processes = cluster.usage();
    drop(nodes);
    report.hollow_dirs.push(std::sync::Arc::new(hollow_dir));
    Ok(report)
}

fn deployment(name: &str, replicas: usize, labels: &BTreeMap<String, String>) -> Deployment {
    let mut selector = labels.clone();
    selector.insert("app".into(), name.to_string());
    let pod = pause_pod("", &selector);
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(selector),
                    ..Default::default()
                }),
                spec: pod.spec,
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}
