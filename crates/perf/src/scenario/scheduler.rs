//! `scheduler`: the scheduler_perf workloads against the real kube-scheduler. Nodes are plain
//! Node objects (Ready, 4 CPU / 32 GiB / 110 pods, no kubelet) labelled with a zone, and the pods
//! follow upstream's templates (test/integration/scheduler_perf/config): 100m / 500Mi requests,
//! the same affinity terms, spread constraints and priorities. Each workload first creates its
//! init pods (in `sched-setup`, waiting until they are bound), then the measured pods (in
//! `sched`), 64 creates in flight. The throughput is reported as upstream's
//! SchedulingThroughput: the average and the percentiles of per-second samples of pods bound.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeCondition, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, NodeStatus, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity,
    ResourceRequirements, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::{api_err, pause_pod, wait_count, watch_pods, ScenarioError};
use crate::cluster::{ensure_namespace, Cluster, ClusterOptions};
use crate::floors;
use crate::report::{Latencies, Report};

/// The workload (upstream's scheduler_perf test case names in the docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// SchedulingBasic: plain pods (100m / 500Mi).
    Basic,
    /// SchedulingNodeAffinity: required node affinity to zones zone1/zone2 (nodes in zone1).
    NodeAffinity,
    /// TopologySpreading: maxSkew 5 over three zones, DoNotSchedule, after plain init pods.
    TopologySpread,
    /// SchedulingPodAntiAffinity: required anti-affinity on the host name among the pods.
    AntiAffinity,
    /// SchedulingPodAffinity: required affinity to the pods' own label in the zone.
    PodAffinity,
    /// PreemptionBasic: low-priority pods (900m) fill the nodes, then priority-10 pods (3000m)
    /// preempt them.
    Preemption,
}

impl Workload {
    /// Upstream's scheduler_perf test case name.
    pub fn upstream_name(self) -> &'static str {
        match self {
            Workload::Basic => "SchedulingBasic",
            Workload::NodeAffinity => "SchedulingNodeAffinity",
            Workload::TopologySpread => "TopologySpreading",
            Workload::AntiAffinity => "SchedulingPodAntiAffinity",
            Workload::PodAffinity => "SchedulingPodAffinity",
            Workload::Preemption => "PreemptionBasic",
        }
    }

    /// Upstream's CI threshold on 5000 nodes (pods/s, SchedulingThroughput average).
    pub fn upstream_floor(self) -> Option<f64> {
        match self {
            Workload::Basic => Some(270.0),
            Workload::NodeAffinity => Some(220.0),
            Workload::TopologySpread => Some(85.0),
            Workload::AntiAffinity => Some(60.0),
            Workload::PodAffinity => Some(35.0),
            Workload::Preemption => None,
        }
    }

    /// Init pods when `--init-pods` is not given: the low-priority pods that fill every node
    /// (4 x 900m on 4 CPU) for Preemption, none otherwise.
    fn default_init_pods(self, nodes: usize) -> usize {
        match self {
            Workload::Preemption => nodes * 4,
            _ => 0,
        }
    }

    /// How many measured pods can be scheduled at all: one per free node for anti-affinity,
    /// one per node for preemption (a 3000m pod on a 4 CPU node).
    fn measurable(self, nodes: usize, init: usize, pods: usize) -> usize {
        match self {
            Workload::AntiAffinity => pods.min(nodes.saturating_sub(init)),
            Workload::Preemption => pods.min(nodes),
            _ => pods,
        }
    }
}

/// Scheduler settings.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerOptions {
    /// Nodes.
    #[arg(long, default_value_t = 500)]
    pub nodes: usize,
    /// Pods to schedule (measured).
    #[arg(long, default_value_t = 1000)]
    pub pods: usize,
    /// Pods scheduled before the measurement (default: nodes x 4 for preemption, else 0).
    #[arg(long)]
    pub init_pods: Option<usize>,
    /// Workload.
    #[arg(long, value_enum, default_value_t = Workload::Basic)]
    pub workload: Workload,
}

const NAMESPACE: &str = "sched";
const SETUP_NAMESPACE: &str = "sched-setup";
const ZONE: &str = "topology.kubernetes.io/zone";
const HOSTNAME: &str = "kubernetes.io/hostname";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn node(name: &str, index: usize, workload: Workload) -> Node {
    // TopologySpreading labels nodes over three zones; the affinity cases put all in zone1.
    let zone = match workload {
        Workload::TopologySpread => format!("moon-{}", index % 3 + 1),
        _ => "zone1".to_string(),
    };
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels(&[
                (HOSTNAME, name),
                ("kubernetes.io/os", "linux"),
                (ZONE, &zone),
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

fn selector(color: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(&[("color", color)])),
        ..Default::default()
    }
}

fn requests(cpu: &str) -> ResourceRequirements {
    let r = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.into())),
        ("memory".to_string(), Quantity("500Mi".into())),
    ]);
    ResourceRequirements {
        limits: Some(r.clone()),
        requests: Some(r),
        ..Default::default()
    }
}

/// A pod of `workload` as upstream's templates have it; `init` picks the init template
/// (plain pods for NodeAffinity/TopologySpreading, low-priority pods for Preemption).
fn workload_pod(name: &str, workload: Workload, init: bool) -> Pod {
    let color = match workload {
        Workload::AntiAffinity => Some("green"),
        Workload::PodAffinity => Some("blue"),
        Workload::TopologySpread if !init => Some("blue"),
        _ => None,
    };
    let mut pod_labels = labels(&[("kube-perf", "sched")]);
    if let Some(color) = color {
        pod_labels.insert("color".into(), color.into());
    }
    let mut pod = pause_pod(name, &pod_labels);
    let namespaces = Some(vec![NAMESPACE.to_string(), SETUP_NAMESPACE.to_string()]);
    let Some(spec) = pod.spec.as_mut() else {
        return pod;
    };
    let cpu = match (workload, init) {
        (Workload::Preemption, true) => "900m",
        (Workload::Preemption, false) => "3000m",
        _ => "100m",
    };
    for container in &mut spec.containers {
        container.resources = Some(requests(cpu));
    }
    match (workload, init) {
        (Workload::Basic, _) | (Workload::NodeAffinity, true) => {}
        (Workload::TopologySpread, true) | (Workload::Preemption, true) => {}
        (Workload::NodeAffinity, false) => {
            spec.affinity = Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: ZONE.into(),
                                operator: "In".into(),
                                values: Some(vec!["zone1".into(), "zone2".into()]),
                            }]),
                            ..Default::default()
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        (Workload::TopologySpread, false) => {
            spec.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
                max_skew: 5,
                topology_key: ZONE.into(),
                when_unsatisfiable: "DoNotSchedule".into(),
                label_selector: Some(selector("blue")),
                ..Default::default()
            }]);
        }
        (Workload::AntiAffinity, _) => {
            spec.affinity = Some(Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![
                        PodAffinityTerm {
                            label_selector: Some(selector("green")),
                            topology_key: HOSTNAME.into(),
                            namespaces,
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        (Workload::PodAffinity, _) => {
            spec.affinity = Some(Affinity {
                pod_affinity: Some(PodAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![
                        PodAffinityTerm {
                            label_selector: Some(selector("blue")),
                            topology_key: ZONE.into(),
                            namespaces,
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        (Workload::Preemption, false) => {
            spec.priority = Some(10);
        }
    }
    pod
}

/// Per-second throughput samples (pods/s) of pods bound at `bound` since `start`, as upstream's
/// throughput collector takes them: one sample a second; a second in which nothing was bound
/// is folded into the next sample (its time counts, it adds no zero sample); a last partial
/// second shorter than half a second is folded into the previous sample.
pub fn throughput_samples(start: Instant, bound: &[Instant]) -> Vec<f64> {
    let Some(last) = bound.iter().max() else {
        return Vec::new();
    };
    let span = last.saturating_duration_since(start).as_secs_f64();
    let buckets = span.floor() as usize + 1;
    let mut counts = vec![0usize; buckets];
    for at in bound {
        let i = at.saturating_duration_since(start).as_secs_f64().floor() as usize;
        if let Some(c) = counts.get_mut(i.min(buckets - 1)) {
            *c += 1;
        }
    }
    // The last bucket only lasts until the last binding.
    let last_len = span - (buckets - 1) as f64;
    let mut samples: Vec<(usize, f64)> = Vec::new();
    let mut pending = 0.0;
    for (i, count) in counts.iter().enumerate() {
        let len = if i + 1 == buckets { last_len } else { 1.0 };
        if *count == 0 {
            pending += len;
            continue;
        }
        let folded_into_previous = i + 1 == buckets && len + pending < 0.5 && !samples.is_empty();
        match samples.last_mut() {
            Some((c, l)) if folded_into_previous => {
                *c += count;
                *l += len + pending;
            }
            _ => samples.push((*count, len + pending)),
        }
        pending = 0.0;
    }
    samples
        .into_iter()
        .map(|(count, len)| count as f64 / len.max(1e-3))
        .collect()
}

/// Upstream's percentile of throughput samples: sorted ascending, the value at
/// `ceil(n * q) - 1`.
pub fn sample_percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Creates `count` pods of `workload` named `{prefix}-{i}` in `namespace`, 64 in flight;
/// returns the created names with their creation start times.
async fn create_pods(
    client: &Client,
    namespace: &str,
    prefix: &str,
    count: usize,
    workload: Workload,
    init: bool,
) -> Vec<(String, Instant)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    futures::stream::iter(0..count)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let name = format!("{prefix}-{i}");
                let at = Instant::now();
                match pods
                    .create(&PostParams::default(), &workload_pod(&name, workload, init))
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
        .await
}

fn timeout_for(pods: usize) -> Duration {
    Duration::from_secs(60 + pods as u64 / 5)
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
    let init_pods = o
        .init_pods
        .unwrap_or_else(|| o.workload.default_init_pods(o.nodes));
    let measured = o.workload.measurable(o.nodes, init_pods, o.pods);
    let mut report = Report::new(format!(
        "scheduler: {} ({:?}), {} nodes, {} init pods, {} pods",
        o.workload.upstream_name(),
        o.workload,
        o.nodes,
        init_pods,
        measured
    ));
    if measured < o.pods {
        report.notes.push(format!(
            "{} of the {} pods asked can be scheduled on {} nodes; measuring {measured}",
            measured, o.pods, o.nodes
        ));
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let workload = o.workload;
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(0..o.nodes)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                let name = format!("sched-node-{i}");
                nodes
                    .create(&PostParams::default(), &node(&name, i, workload))
                    .await?;
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
    for namespace in [NAMESPACE, SETUP_NAMESPACE] {
        ensure_namespace(&client, namespace)
            .await
            .map_err(api_err("creating namespace"))?;
    }
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

    if init_pods > 0 {
        let (setup, setup_watch) = watch_pods(&client, Some(SETUP_NAMESPACE), "kube-perf=sched");
        let init_started = Instant::now();
        let created = create_pods(
            &client,
            SETUP_NAMESPACE,
            "init",
            init_pods,
            o.workload,
            true,
        )
        .await;
        let timeout = timeout_for(created.len());
        let done = wait_count(&setup, created.len(), timeout, |t| t.bound.is_some()).await;
        setup_watch.abort();
        if done < created.len() {
            return Err(ScenarioError::Timeout {
                what: format!("{done} of {} init pods bound", created.len()),
                seconds: timeout.as_secs(),
            });
        }
        report.row(
            "init pods scheduled per second",
            done as f64 / init_started.elapsed().as_secs_f64().max(1e-3),
            None,
            "",
        );
    }

    let (timeline, watch) = watch_pods(&client, Some(NAMESPACE), "kube-perf=sched");
    let started = Instant::now();
    let created_at = create_pods(&client, NAMESPACE, "sched", measured, o.workload, false).await;
    let created_secs = started.elapsed().as_secs_f64();
    let want = created_at.len();
    let scheduled = wait_count(&timeline, want, timeout_for(want), |t| t.bound.is_some()).await;
    watch.abort();
    cluster.check_alive()?;
    let mut latency = Latencies::new();
    let mut bound_at = Vec::with_capacity(want);
    if let Ok(times) = timeline.lock() {
        for (name, at) in &created_at {
            if let Some(bound) = times.get(name).and_then(|t| t.bound) {
                latency.push(bound.saturating_duration_since(*at));
                bound_at.push(bound);
            }
        }
    }
    let samples = throughput_samples(started, &bound_at);
    let average = if samples.is_empty() {
        0.0
    } else {
        samples.iter().sum::<f64>() / samples.len() as f64
    };
    let floor_text = match o.workload.upstream_floor() {
        Some(floor) => format!(
            "scheduler_perf CI threshold {floor:.0} pods/s at 5000 nodes (ours {:.2}x)",
            average / floor
        ),
        None => "no upstream CI threshold".to_string(),
    };
    let etcd_put = etcd_floor.as_ref().map(|f| f.put_per_sec);
    report.row(
        "SchedulingThroughput average (pods/s)",
        average,
        etcd_put,
        &floor_text,
    );
    for (label, q) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)] {
        report.row(
            format!("SchedulingThroughput {label} (pods/s, per-second samples)"),
            sample_percentile(&samples, q),
            etcd_put,
            "",
        );
    }
    let span = bound_at
        .iter()
        .max()
        .map(|last| last.saturating_duration_since(started).as_secs_f64())
        .unwrap_or(0.0);
    report.row(
        "pods scheduled per second (bound / wall time)",
        if span > 0.0 {
            scheduled as f64 / span
        } else {
            0.0
        },
        etcd_put,
        "",
    );
    report.row(
        "pods created per second (64 in flight)",
        want as f64 / created_secs.max(1e-3),
        None,
        "",
    );
    report.row("pods scheduled", scheduled as f64, Some(want as f64), "");
    report.latency_rows("create -> bound seen", &latency, None, "");
    report.notes.push(format!(
        "{} per-second throughput samples (seconds with no binding fold into the next, as upstream)",
        samples.len()
    ));
    if etcd_floor.is_some() {
        report.notes.push(format!(
            "floor: raw etcd puts/s ({} clients, {payload} B), one write per binding",
            floors::ETCD_CLIENTS
        ));
    }
    report.processes = cluster.usage();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_fold_idle_seconds_and_take_upstream_percentiles() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // 10 pods in second 0, none in second 1, 20 in second 2, 4 in a last 0.2 s.
        let mut bound: Vec<Instant> = (0..10).map(|i| at(i * 50)).collect();
        bound.extend((0..20).map(|i| at(2000 + i * 40)));
        bound.extend((0..4).map(|i| at(3050 + i * 50)));
        let samples = throughput_samples(start, &bound);
        assert_eq!(samples.len(), 2);
        assert!((samples[0] - 10.0).abs() < 1e-9);
        // Second 1 (idle) and 2 fold together; the short tail folds into them too.
        assert!((samples[1] - 24.0 / 2.2).abs() < 1e-6, "{samples:?}");
        assert_eq!(sample_percentile(&[5.0, 1.0, 3.0, 2.0], 0.5), 2.0);
        assert_eq!(sample_percentile(&[5.0, 1.0, 3.0, 2.0], 0.99), 5.0);
        assert_eq!(sample_percentile(&[], 0.99), 0.0);
    }

    #[test]
    fn pods_follow_the_upstream_templates() {
        let high = workload_pod("p", Workload::Preemption, false);
        let spec = high.spec.as_ref().expect("spec");
        assert_eq!(spec.priority, Some(10));
        let low = workload_pod("p", Workload::Preemption, true);
        assert_eq!(low.spec.as_ref().expect("spec").priority, None);
        let affinity = workload_pod("p", Workload::PodAffinity, false);
        let term = affinity
            .spec
            .and_then(|s| s.affinity)
            .and_then(|a| a.pod_affinity)
            .and_then(|a| a.required_during_scheduling_ignored_during_execution)
            .expect("required pod affinity");
        assert_eq!(term[0].topology_key, ZONE);
        let spread = workload_pod("p", Workload::TopologySpread, false);
        let constraints = spread
            .spec
            .and_then(|s| s.topology_spread_constraints)
            .expect("constraints");
        assert_eq!(constraints[0].max_skew, 5);
        assert_eq!(
            node("n", 4, Workload::TopologySpread)
                .metadata
                .labels
                .and_then(|l| l.get(ZONE).cloned())
                .as_deref(),
            Some("moon-2")
        );
        assert_eq!(Workload::AntiAffinity.measurable(5000, 1000, 10000), 4000);
        assert_eq!(Workload::Preemption.default_init_pods(10), 40);
    }
}
