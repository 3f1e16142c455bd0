//! `scheduler`: scheduler_perf-like workloads against the real kube-scheduler. Nodes are plain
//! Node objects (Ready, 4 CPU / 32 GiB / 110 pods, no kubelet), as scheduler_perf does; pods are
//! created 64 at a time and the throughput is pods bound per second as seen by a watch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeCondition, NodeStatus, Pod, PodAffinityTerm, PodAntiAffinity,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::Api;

use super::{api_err, pause_pod, wait_count, watch_pods, ScenarioError};
use crate::cluster::{ensure_namespace, Cluster, ClusterOptions};
use crate::floors;
use crate::report::{Latencies, Report};

/// The workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// SchedulingBasic: plain pods.
    Basic,
    /// SchedulingPodAntiAffinity: required anti-affinity on the host name among the pods.
    AntiAffinity,
    /// SchedulingTopologySpreading-like: maxSkew 1 over host names, DoNotSchedule.
    TopologySpread,
}

/// Scheduler settings.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerOptions {
    /// Nodes.
    #[arg(long, default_value_t = 500)]
    pub nodes: usize,
    /// Pods to schedule.
    #[arg(long, default_value_t = 1000)]
    pub pods: usize,
    /// Workload.
    #[arg(long, value_enum, default_value_t = Workload::Basic)]
    pub workload: Workload,
}

const NAMESPACE: &str = "sched";

fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), name.to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
            ])),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn node_status() -> NodeStatus {
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity("4".into())),
        ("memory".to_string(), Quantity("32Gi".into())),
        ("pods".to_string(), Quantity("110".into())),
    ]);
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn workload_pod(name: &str, workload: Workload) -> Pod {
    let labels = BTreeMap::from([
        ("kube-perf".to_string(), "sched".to_string()),
        ("color".to_string(), "green".to_string()),
    ]);
    let mut pod = pause_pod(name, &labels);
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([("color".to_string(), "green".to_string())])),
        ..Default::default()
    };
    if let Some(spec) = pod.spec.as_mut() {
        match workload {
            Workload::Basic => {}
            Workload::AntiAffinity => {
                spec.affinity = Some(Affinity {
                    pod_anti_affinity: Some(PodAntiAffinity {
                        required_during_scheduling_ignored_during_execution: Some(vec![
                            PodAffinityTerm {
                                label_selector: Some(selector),
                                topology_key: "kubernetes.io/hostname".into(),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            Workload::TopologySpread => {
                spec.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: "kubernetes.io/hostname".into(),
                    when_unsatisfiable: "DoNotSchedule".into(),
                    label_selector: Some(selector),
                    ..Default::default()
                }]);
            }
        }
    }
    pod
}

/// Runs the scenario.
pub async fn run(
    cluster_options: &ClusterOptions,
    o: &SchedulerOptions,
) -> Result<Report, ScenarioError> {
    let mut options = cluster_options.clone();
    options.scheduler = true;
    options.controller_manager = false;
    let mut cluster = Cluster::start(&options).await?;
    let client = cluster.client.clone();
    let mut report = Report::new(format!(
        "scheduler: {:?}, {} nodes, {} pods",
        o.workload, o.nodes, o.pods
    ));
    let nodes: Api<Node> = Api::all(client.clone());
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(0..o.nodes)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                let name = format!("sched-node-{i}");
                nodes.create(&PostParams::default(), &node(&name)).await?;
                let status = serde_json::json!({ "status": node_status() });
                nodes
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    if let Some(Err(error)) = results.into_iter().find(|r| r.is_err()) {
        return Err(api_err("creating nodes")(error));
    }
    ensure_namespace(&client, NAMESPACE)
        .await
        .map_err(api_err("creating namespace"))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let probe = pods
        .create(
            &PostParams::default(),
            &pause_pod("probe", &BTreeMap::new()),
        )
        .await
        .map_err(api_err("creating the probe pod"))?;
    let payload = super::json_size(&probe);
    // The scheduler has seen the nodes once it binds the probe.
    let (probe_times, probe_watch) = watch_pods(&client, Some(NAMESPACE), "");
    let bound = wait_count(&probe_times, 1, Duration::from_secs(60), |t| {
        t.bound.is_some()
    })
    .await;
    probe_watch.abort();
    if bound == 0 {
        return Err(ScenarioError::Timeout {
            what: "the scheduler binding a probe pod".into(),
            seconds: 60,
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let etcd_floor = match &cluster.etcd_endpoint {
        Some(endpoint) => Some(floors::etcd(endpoint, payload, 5000).await?),
        None => None,
    };

    let (timeline, watch) = watch_pods(&client, Some(NAMESPACE), "kube-perf=sched");
    let started = Instant::now();
    let created_at: Vec<(String, Instant)> = futures::stream::iter(0..o.pods)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let name = format!("sched-{i}");
                let at = Instant::now();
                match pods
                    .create(&PostParams::default(), &workload_pod(&name, o.workload))
                    .await
                {
                    Ok(_) => Some((name, at)),
                    Err(error) => {
                        tracing::warn!(%error, "pod create failed");
                        None
                    }
                }
            }
        })
        .buffer_unordered(64)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    let created_secs = started.elapsed().as_secs_f64();
    let want = created_at.len();
    let timeout = Duration::from_secs(60 + want as u64 / 5);
    let scheduled = wait_count(&timeline, want, timeout, |t| t.bound.is_some()).await;
    watch.abort();
    cluster.check_alive()?;
    let mut latency = Latencies::new();
    let mut last = started;
    if let Ok(times) = timeline.lock() {
        for (name, at) in &created_at {
            if let Some(bound) = times.get(name).and_then(|t| t.bound) {
                latency.push(bound.saturating_duration_since(*at));
                last = last.max(bound);
            }
        }
    }
    let span = last.saturating_duration_since(started).as_secs_f64();
    report.row(
        "pods scheduled per second",
        if span > 0.0 {
            scheduled as f64 / span
        } else {
            0.0
        },
        etcd_floor.as_ref().map(|f| f.put_per_sec),
        "scheduler_perf on perf-dash (no fixed SLO)",
    );
    report.row(
        "pods created per second (64 in flight)",
        want as f64 / created_secs,
        None,
        "",
    );
    report.row("pods scheduled", scheduled as f64, Some(want as f64), "");
    report.latency_rows("create -> bound seen", &latency, None, "");
    if etcd_floor.is_some() {
        report.notes.push(format!(
            "floor: raw etcd puts/s ({} clients, {payload} B), one write per binding",
            floors::ETCD_CLIENTS
        ));
    }
    report.processes = cluster.usage();
    Ok(report)
}
