//! CPU-only microbenchmark of the scheduling cycle: a cache with 5,000 fake nodes (and init pods
//! already placed, as scheduler_perf has them), then N pods scheduled one by one through the real
//! framework (snapshot, PreFilter, Filter, Score, assume) with no apiserver. Prints pods/s per
//! workload shape (the kube-perf `scheduler` scenario's templates). `preemption` fills the
//! nodes with 900m init pods (give 4 per node) and schedules priority-10 3000m pods: each fails,
//! preempts (the victims leave the cache, the pod is nominated) and is scheduled on the next
//! attempt with the other nominated pods overlaid, as the scheduler's loop does.
//!
//! `cargo run --release -p kube-scheduler --example cycle -- [nodes] [init] [pods] [workload...]`

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube_scheduler::cache::Cache;
use kube_scheduler::framework::{ClusterInfo, PodInfo, Registry};
use kube_scheduler::{algorithm, preemption};

const ZONE: &str = "topology.kubernetes.io/zone";
const HOSTNAME: &str = "kubernetes.io/hostname";

fn node(index: usize, workload: &str) -> Node {
    let name = format!("sched-node-{index}");
    let zone = if workload == "topology-spread" {
        format!("moon-{}", index % 3 + 1)
    } else {
        "zone1".to_string()
    };
    let resources = serde_json::json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {HOSTNAME: name, "kubernetes.io/os": "linux", ZONE: zone}},
        "status": {"capacity": resources, "allocatable": resources,
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap_or_default()
}

fn pod(name: &str, namespace: &str, workload: &str, init: bool) -> Pod {
    let color = match workload {
        "anti-affinity" => Some("green"),
        "pod-affinity" => Some("blue"),
        "topology-spread" if !init => Some("blue"),
        _ => None,
    };
    let mut labels = serde_json::json!({"kube-perf": "sched"});
    if let Some(color) = color {
        labels["color"] = serde_json::json!(color);
    }
    let namespaces = serde_json::json!(["sched", "sched-setup"]);
    let cpu = match (workload, init) {
        ("preemption", true) => "900m",
        ("preemption", false) => "3000m",
        _ => "100m",
    };
    let mut spec = serde_json::json!({"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
        "resources": {"requests": {"cpu": cpu, "memory": "500Mi"},
                      "limits": {"cpu": cpu, "memory": "500Mi"}}}]});
    match (workload, init) {
        ("preemption", false) => spec["priority"] = serde_json::json!(10),
        ("node-affinity", false) => {
            spec["affinity"] = serde_json::json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["zone1", "zone2"]}]}]}}});
        }
        ("topology-spread", false) => {
            spec["topologySpreadConstraints"] = serde_json::json!([{"maxSkew": 5, "topologyKey": ZONE,
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"color": "blue"}}}]);
        }
        ("anti-affinity", _) => {
            spec["affinity"] = serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"color": "green"}}, "topologyKey": HOSTNAME, "namespaces": namespaces}]}});
        }
        ("pod-affinity", _) => {
            spec["affinity"] = serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"color": "blue"}}, "topologyKey": ZONE, "namespaces": namespaces}]}});
        }
        _ => {}
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": namespace, "uid": format!("{namespace}-{name}"), "labels": labels},
        "spec": spec,
    }))
    .unwrap_or_default()
}

/// Schedules `pods` like the scheduler's loop does (cluster info, snapshot, decide, assume).
fn schedule_all(
    cache: &mut Cache,
    registry: &Registry,
    cluster: &Arc<ClusterInfo>,
    pods: Vec<Pod>,
    next_start: &mut usize,
) -> (usize, usize) {
    let mut rng = rand::rng();
    let (mut ok, mut failed) = (0, 0);
    // Nominated pods (uid -> node, pod), as the scheduler keeps them.
    let mut nominated: HashMap<String, (String, PodInfo)> = HashMap::new();
    for pod in pods {
        let pod = Arc::new(pod);
        let mut info = PodInfo::new(pod.clone());
        info.cluster = cluster.clone();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        // A pod that preempted gets a second attempt, as once its victims are gone.
        for _attempt in 0..2 {
            let extra = nominated
                .iter()
                .filter(|(other, (_, n))| **other != uid && n.priority >= info.priority)
                .map(|(_, (node, n))| (node.clone(), n.clone()))
                .collect();
            let nodes = cache.snapshot_with(extra);
            match algorithm::schedule_from(registry, &info, &nodes, *next_start, &mut rng) {
                Ok((node, processed)) => {
                    *next_start = (*next_start + processed) % nodes.len().max(1);
                    drop(nodes);
                    nominated.remove(&uid);
                    cache.assume(&pod, &node);
                    ok += 1;
                    break;
                }
                Err(fit) => {
                    let start = rng.random_range(0..nodes.len().max(1));
                    let preempted =
                        preemption::preempt_from(registry, &info, &nodes, &fit, &[], start);
                    drop(nodes);
                    let Ok(candidate) = preempted else {
                        failed += 1;
                        break;
                    };
                    for victim in &candidate.victims {
                        cache.remove_pod(victim.metadata.uid.as_deref().unwrap_or_default());
                    }
                    nominated.insert(uid.clone(), (candidate.node, info.clone()));
                }
            }
        }
    }
    (ok, failed)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let nodes = number(0, 5000);
    let init = number(1, 1000);
    let count = number(2, 1000);
    let mut workloads: Vec<String> = args.iter().skip(3).cloned().collect();
    if workloads.is_empty() {
        workloads = [
            "basic",
            "node-affinity",
            "topology-spread",
            "anti-affinity",
            "pod-affinity",
        ]
        .map(String::from)
        .to_vec();
    }
    let registry = Registry::default();
    let namespaces: HashMap<String, BTreeMap<String, String>> = ["sched", "sched-setup"]
        .into_iter()
        .map(|n| (n.to_string(), BTreeMap::new()))
        .collect();
    let cluster = Arc::new(ClusterInfo {
        namespace_labels: namespaces,
    });
    for workload in &workloads {
        let mut cache = Cache::default();
        for i in 0..nodes {
            cache.set_node(Arc::new(node(i, workload)));
        }
        let mut next_start = 0;
        let init_pods = (0..init)
            .map(|i| pod(&format!("init-{i}"), "sched-setup", workload, true))
            .collect();
        let started = Instant::now();
        let (init_ok, _) =
            schedule_all(&mut cache, &registry, &cluster, init_pods, &mut next_start);
        let init_rate = init_ok as f64 / started.elapsed().as_secs_f64();
        let measured = (0..count)
            .map(|i| pod(&format!("sched-{i}"), "sched", workload, false))
            .collect();
        let started = Instant::now();
        let (ok, failed) = schedule_all(&mut cache, &registry, &cluster, measured, &mut next_start);
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{workload:>16}: {nodes} nodes, {init_ok} init ({init_rate:.0}/s), {ok} scheduled, {failed} unschedulable: {:.0} pods/s ({:.2} ms/pod)",
            ok as f64 / elapsed,
            elapsed * 1000.0 / (ok + failed).max(1) as f64
        );
    }
}
