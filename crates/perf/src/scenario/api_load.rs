//! `api-load`: mixed create, get, list, update, patch, delete and watch of pods and configmaps
//! at a target QPS, with latency percentiles per verb, resource and scope (the upstream API-call
//! SLI: p99 <= 1 s single object, 5 s namespace list, 30 s cluster list), plus the throughput of
//! pod creates against the raw etcd put floor.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::Api;

use super::api_calls::{self, MixTarget, MIX};
use super::{api_err, pause_pod, ScenarioError};
use crate::cluster::{ensure_namespace, Cluster, ClusterOptions};
use crate::report::Report;
use crate::{floors, procs};

/// API load settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiLoadOptions {
    /// Target requests per second of the mixed phase.
    #[arg(long, default_value_t = 100.0)]
    pub qps: f64,
    /// Duration of the mixed phase (seconds).
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Pods created (64 at a time) before the mixed phase: the create-throughput measurement,
    /// and the data the lists return.
    #[arg(long, default_value_t = 2000)]
    pub pods: usize,
    /// Namespaces the objects are spread over.
    #[arg(long, default_value_t = 10)]
    pub namespaces: usize,
}

fn ns(i: usize) -> String {
    format!("load-{i}")
}

/// Runs the scenario.
pub async fn run(
    cluster_options: &ClusterOptions,
    o: &ApiLoadOptions,
) -> Result<Report, ScenarioError> {
    let mut options = cluster_options.clone();
    options.scheduler = false;
    options.controller_manager = false;
    let mut cluster = Cluster::start(&options).await?;
    let client = cluster.client.clone();
    let namespaces = o.namespaces.max(1);
    let mut report = Report::new(format!(
        "api-load: {} pods in {namespaces} namespaces, then {} req/s for {} s",
        o.pods, o.qps, o.duration
    ));
    for i in 0..namespaces {
        ensure_namespace(&client, &ns(i))
            .await
            .map_err(api_err("creating namespace"))?;
        api_calls::create_configmaps(&client, &ns(i)).await?;
    }
    let labels = BTreeMap::from([("kube-perf".to_string(), "load".to_string())]);
    let probe = Api::<Pod>::namespaced(client.clone(), &ns(0))
        .create(&PostParams::default(), &pause_pod("pod-probe", &labels))
        .await
        .map_err(api_err("creating the probe pod"))?;
    let payload = super::json_size(&probe);
    let http = floors::http_round_trip(2000, payload).await?;
    // On SQLite the raw etcd floors come from an etcd started only for them, stopped before
    // the load (the target compares pod creates with raw etcd puts whatever the storage).
    let floor_etcd = match cluster.etcd_endpoint {
        Some(_) => None,
        None => cluster.floor_etcd().await,
    };
    let floor_endpoint = cluster
        .etcd_endpoint
        .clone()
        .or_else(|| floor_etcd.as_ref().map(|e| e.endpoint.clone()));
    let etcd_floor = match &floor_endpoint {
        Some(endpoint) => Some(floors::etcd(endpoint, payload, 10_000).await?),
        None => None,
    };
    drop(floor_etcd);
    let txn_floor = match &cluster.etcd_endpoint {
        Some(endpoint) => Some((
            floors::etcd_create_txn(endpoint, payload, 10_000, 1).await?,
            floors::etcd_create_txn(endpoint, payload, 10_000, floors::ETCD_CLIENTS).await?,
        )),
        None => None,
    };
    // The embedded storage's own floor, on the disk the apiserver's database is on.
    let sqlite_floor = match (cluster.dir(), &cluster.etcd_endpoint) {
        (Some(dir), None) => Some(floors::sqlite_insert(dir, payload, 10_000).await?),
        _ => None,
    };
    let apiserver_idle = cluster
        .pid("kube-apiserver")
        .and_then(|p| procs::read("a", p));
    // CPU seconds of the three processes a create runs through, around the create phase.
    let cpu_parts = ["kube-apiserver", "etcd", "kube-perf"];
    let cpu_now = |cluster: &Cluster| -> Vec<Option<f64>> {
        cpu_parts
            .iter()
            .map(|name| match *name {
                "kube-perf" => procs::read_self(name),
                _ => cluster.pid(name).and_then(|p| procs::read(name, p)),
            })
            .map(|u| u.map(|u| u.cpu_seconds))
            .collect()
    };
    let cpu_before = cpu_now(&cluster);

    // Phase 1: pod create throughput, 64 in flight (posted without decoding the answers).
    let started = Instant::now();
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(0..o.pods)
        .map(|i| {
            let client = client.clone();
            let pod = pause_pod(&api_calls::pod_name(i), &labels);
            let namespace = ns(i % namespaces);
            async move { api_calls::post_pod(&client, &namespace, &pod).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let create_secs = started.elapsed().as_secs_f64();
    let cpu_after = cpu_now(&cluster);
    let create_errors = results.iter().filter(|r| r.is_err()).count();
    let created = o.pods - create_errors;
    report.row(
        "pod creates per second (64 in flight)",
        created as f64 / create_secs,
        etcd_floor.as_ref().map(|f| f.put_per_sec),
        ">= 0.5x etcd put floor (issue 10 target)",
    );
    for ((name, before), after) in cpu_parts.iter().zip(&cpu_before).zip(&cpu_after) {
        if let (Some(before), Some(after), true) = (before, after, created > 0) {
            report.row(
                format!("CPU per pod create: {name} (µs)"),
                (after - before) * 1e6 / created as f64,
                None,
                match *name {
                    "kube-perf" => "the load client (kube-rs, JSON over TLS)",
                    _ => "",
                },
            );
        }
    }
    if let Some(floor) = sqlite_floor {
        report.row(
            "pod creates per second vs raw SQLite inserts (1 transaction each)",
            created as f64 / create_secs,
            Some(floor),
            "the embedded storage's write floor",
        );
    }
    if let Some((one, many)) = txn_floor {
        report.row(
            "pod creates per second vs etcd create txns (1 connection + watch)",
            created as f64 / create_secs,
            Some(one),
            "what one create costs etcd",
        );
        report.row(
            format!(
                "pod creates per second vs etcd create txns ({} connections + watch)",
                floors::ETCD_CLIENTS
            ),
            created as f64 / create_secs,
            Some(many),
            "-",
        );
    }
    if let (Some(floor), Some(_)) = (&etcd_floor, &cluster.etcd_endpoint) {
        // What a GET without resourceVersion (a quorum read) must at least wait for, beside the
        // HTTP round trip of the read floor.
        for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
            report.row(
                format!("raw etcd range of one key, 1 client {label} (ms)"),
                floor.get_latency.ms(q),
                None,
                "floor part of a GET without resourceVersion",
            );
        }
        for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
            report.row(
                format!("raw etcd serializable range of one key, 1 client {label} (ms)"),
                floor.serializable_get_latency.ms(q),
                None,
                "",
            );
        }
    }
    cluster.check_alive()?;
    let idle = apiserver_idle.filter(|_| created >= super::density::MIN_PODS_FOR_RSS);
    if let (Some(idle), Some(pid)) = (idle, cluster.pid("kube-apiserver")) {
        if let Some(now) = procs::read("a", pid) {
            let grown = now.rss_kib.saturating_sub(idle.rss_kib) as f64 / 1024.0;
            report.row(
                "apiserver RSS growth per 10,000 pods stored (MiB)",
                grown * 10_000.0 / created.max(1) as f64,
                None,
                "",
            );
        }
    }

    // Phase 2: the mix at the target QPS.
    let target = MixTarget {
        namespaces: (0..namespaces).map(ns).collect(),
        pods: o.pods,
    };
    let mix = api_calls::run_mix(
        &client,
        MIX,
        &target,
        o.qps,
        Duration::from_secs(o.duration),
    )
    .await;
    cluster.check_alive()?;
    report.row(
        "mixed requests per second",
        mix.achieved,
        None,
        &format!("asked {}", o.qps),
    );
    mix.rows(&mut report, |op| {
        if op.is_write() {
            etcd_floor.as_ref().map(|f| &f.put_latency)
        } else {
            Some(&http)
        }
    });
    report.notes.push(format!(
        "floors: reads = raw HTTP/1.1 round trip on loopback with a {payload} B body; writes and pod creates = raw etcd put (latency: 1 client; throughput: {} clients, {payload} B values); create txn floor = put-if-absent transactions, 64 in flight through one etcd connection (and through 64), with a watch on their prefix; SQLite floor = single-row inserts of {payload} B values into a fresh WAL database (synchronous=NORMAL) beside the apiserver's, one transaction each; the create client posts JSON and does not decode the answers{}",
        floors::ETCD_CLIENTS,
        match (&cluster.etcd_endpoint, &etcd_floor) {
            (Some(_), _) => "",
            (None, Some(_)) => " (sqlite storage: the etcd floors come from an etcd started only for them and stopped before the load)",
            (None, None) => " (no etcd floor: kube-perf did not start an etcd for this run)",
        }
    ));
    report
        .notes
        .push(format!("{create_errors} pod create errors"));
    report.processes = cluster.usage();
    Ok(report)
}
