//! `api-load`: mixed create, get, list, update, patch, delete and watch of pods and configmaps
//! at a target QPS, with latency percentiles per verb, resource and scope (the upstream API-call
//! SLI: p99 <= 1 s single object, 5 s namespace list, 30 s cluster list), plus the throughput of
//! pod creates against the raw etcd put floor.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    DeleteParams, GetParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchParams,
};
use kube::Api;
use tokio::sync::Semaphore;

use super::{api_err, pause_pod, ScenarioError};
use crate::cluster::{ensure_namespace, Cluster, ClusterOptions};
use crate::report::{Latencies, Report};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Op {
    GetPod,
    GetPodCached,
    ListPodsNamespace,
    ListPodsCluster,
    CreateConfigMap,
    GetConfigMap,
    UpdateConfigMap,
    PatchConfigMap,
    DeleteConfigMap,
    ListConfigMapsNamespace,
    WatchPodsNamespace,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::GetPod => "GET pods (single object)",
            Op::GetPodCached => "GET pods (single object, resourceVersion=0)",
            Op::ListPodsNamespace => "LIST pods (namespace)",
            Op::ListPodsCluster => "LIST pods (cluster)",
            Op::CreateConfigMap => "POST configmaps (single object)",
            Op::GetConfigMap => "GET configmaps (single object)",
            Op::UpdateConfigMap => "PUT configmaps (single object)",
            Op::PatchConfigMap => "PATCH configmaps (single object)",
            Op::DeleteConfigMap => "DELETE configmaps (single object)",
            Op::ListConfigMapsNamespace => "LIST configmaps (namespace)",
            Op::WatchPodsNamespace => "WATCH pods (namespace, until headers)",
        }
    }

    fn slo(self) -> &'static str {
        match self {
            Op::ListPodsNamespace | Op::ListConfigMapsNamespace => "5000 ms (SLO)",
            Op::ListPodsCluster => "30000 ms (SLO)",
            Op::WatchPodsNamespace => "",
            _ => "1000 ms (SLO)",
        }
    }

    fn is_write(self) -> bool {
        matches!(
            self,
            Op::CreateConfigMap | Op::UpdateConfigMap | Op::PatchConfigMap | Op::DeleteConfigMap
        )
    }
}

/// The mix (per 40 requests), roughly the read-heavy shape of upstream's load test.
const MIX: &[(Op, usize)] = &[
    (Op::GetPod, 5),
    (Op::GetPodCached, 5),
    (Op::GetConfigMap, 6),
    (Op::ListPodsNamespace, 3),
    (Op::ListConfigMapsNamespace, 3),
    (Op::CreateConfigMap, 4),
    (Op::UpdateConfigMap, 4),
    (Op::PatchConfigMap, 4),
    (Op::DeleteConfigMap, 4),
    (Op::WatchPodsNamespace, 1),
    (Op::ListPodsCluster, 1),
];

fn ns(i: usize) -> String {
    format!("load-{i}")
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("value".to_string(), value.to_string())])),
        ..Default::default()
    }
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
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns(i));
        for j in 0..10 {
            cms.create(&PostParams::default(), &configmap(&format!("cm-{j}"), "0"))
                .await
                .map_err(api_err("creating configmaps"))?;
        }
    }
    let labels = BTreeMap::from([("kube-perf".to_string(), "load".to_string())]);
    let probe = Api::<Pod>::namespaced(client.clone(), &ns(0))
        .create(&PostParams::default(), &pause_pod("pod-probe", &labels))
        .await
        .map_err(api_err("creating the probe pod"))?;
    let payload = super::json_size(&probe);
    let http = floors::http_round_trip(2000, payload).await?;
    let etcd_floor = match &cluster.etcd_endpoint {
        Some(endpoint) => Some(floors::etcd(endpoint, payload, 10_000).await?),
        None => None,
    };
    let txn_floor = match &cluster.etcd_endpoint {
        Some(endpoint) => Some(floors::etcd_create_txn(endpoint, payload, 10_000).await?),
        None => None,
    };
    let apiserver_idle = cluster
        .pid("kube-apiserver")
        .and_then(|p| procs::read("a", p));

    // Phase 1: pod create throughput, 64 in flight. The client posts JSON and checks the
    // status without decoding the answer into a `Pod`: on two cores the load generator shares
    // the CPU with the apiserver and etcd, and its own decoding is no part of what is measured
    // (the etcd floor's client does not decode either).
    let started = Instant::now();
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(0..o.pods)
        .map(|i| {
            let client = client.clone();
            let pod = pause_pod(&format!("pod-{i}"), &labels);
            let path = format!("/api/v1/namespaces/{}/pods", ns(i % namespaces));
            async move {
                let body = serde_json::to_vec(&pod).map_err(kube::Error::SerdeError)?;
                let request = http::Request::post(path)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .map_err(kube::Error::HttpError)?;
                client.request_text(request).await.map(drop)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let create_secs = started.elapsed().as_secs_f64();
    let create_errors = results.iter().filter(|r| r.is_err()).count();
    let created = o.pods - create_errors;
    report.row(
        "pod creates per second (64 in flight)",
        created as f64 / create_secs,
        etcd_floor.as_ref().map(|f| f.put_per_sec),
        ">= 0.5x etcd put floor (issue 10 target)",
    );
    if let Some(txn_floor) = txn_floor {
        report.row(
            "pod creates per second vs etcd create txns (1 connection + watch)",
            created as f64 / create_secs,
            Some(txn_floor),
            "what one create costs etcd",
        );
    }
    if let Some(floor) = &etcd_floor {
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
    let schedule: Vec<Op> = MIX
        .iter()
        .flat_map(|(op, n)| std::iter::repeat_n(*op, *n))
        .collect();
    let latencies: Arc<Mutex<HashMap<Op, Latencies>>> = Arc::default();
    let errors: Arc<Mutex<HashMap<Op, usize>>> = Arc::default();
    let in_flight = Arc::new(Semaphore::new(256));
    let total = (o.qps * o.duration as f64).round() as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / o.qps.max(0.001)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let op = schedule[(i * 7) % schedule.len()];
        let client = client.clone();
        let latencies = latencies.clone();
        let errors = errors.clone();
        let namespace = ns(i % namespaces);
        let pods = o.pods.max(1);
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
            let cm = format!("cm-{}", i % 10);
            // Creates and deletes pair up: delete the one created 40 requests ago, same namespace.
            let mut t = Instant::now();
            let result: Result<(), kube::Error> = match op {
                Op::GetPod | Op::GetPodCached => {
                    let name = format!(
                        "pod-{}",
                        (i / namespaces * namespaces + i % namespaces) % pods
                    );
                    // resourceVersion=0: any version, which the apiserver serves from its cache.
                    let params = if op == Op::GetPodCached {
                        GetParams::any()
                    } else {
                        GetParams::default()
                    };
                    match pods_api.get_with(&name, &params).await {
                        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                        r => r.map(|_| ()),
                    }
                }
                Op::ListPodsNamespace => pods_api.list(&ListParams::default()).await.map(|_| ()),
                Op::ListPodsCluster => Api::<Pod>::all(client.clone())
                    .list(&ListParams::default())
                    .await
                    .map(|_| ()),
                Op::CreateConfigMap => cms
                    .create(
                        &PostParams::default(),
                        &configmap(&format!("load-{i}"), "x"),
                    )
                    .await
                    .map(|_| ()),
                Op::DeleteConfigMap => match cms
                    .delete(
                        &format!("load-{}", i.saturating_sub(40)),
                        &DeleteParams::default(),
                    )
                    .await
                {
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    r => r.map(|_| ()),
                },
                Op::GetConfigMap => cms.get(&cm).await.map(|_| ()),
                Op::UpdateConfigMap => match cms.get(&cm).await {
                    Ok(mut current) => {
                        current.data = Some(BTreeMap::from([("value".into(), i.to_string())]));
                        t = Instant::now();
                        match cms.replace(&cm, &PostParams::default(), &current).await {
                            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                            r => r.map(|_| ()),
                        }
                    }
                    Err(e) => Err(e),
                },
                Op::PatchConfigMap => cms
                    .patch(
                        &cm,
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({"data": {"patched": i.to_string()}})),
                    )
                    .await
                    .map(|_| ()),
                Op::ListConfigMapsNamespace => cms.list(&ListParams::default()).await.map(|_| ()),
                Op::WatchPodsNamespace => pods_api
                    .watch(&WatchParams::default().timeout(1), "0")
                    .await
                    .map(drop),
            };
            let elapsed = t.elapsed();
            match result {
                Ok(()) => {
                    if let Ok(mut m) = latencies.lock() {
                        m.entry(op).or_default().push(elapsed);
                    }
                }
                Err(error) => {
                    tracing::debug!(?op, %error, "request failed");
                    if let Ok(mut m) = errors.lock() {
                        *m.entry(op).or_default() += 1;
                    }
                }
            }
        }));
    }
    for task in tasks {
        if let Err(error) = task.await {
            tracing::warn!(%error, "request task failed");
        }
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    cluster.check_alive()?;
    report.row(
        "mixed requests per second",
        achieved,
        None,
        &format!("asked {}", o.qps),
    );
    let latencies = latencies.lock().map(|m| m.clone()).unwrap_or_default();
    let errors = errors.lock().map(|m| m.clone()).unwrap_or_default();
    let mut ops: Vec<Op> = latencies.keys().chain(errors.keys()).copied().collect();
    ops.sort();
    ops.dedup();
    for op in ops {
        let l = latencies.get(&op).cloned().unwrap_or_default();
        let floor = if op.is_write() {
            etcd_floor.as_ref().map(|f| &f.put_latency)
        } else {
            Some(&http)
        };
        for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
            report.row(
                format!("{} {label} (ms)", op.label()),
                l.ms(q),
                floor.map(|f| f.ms(q)),
                if label == "p99" { op.slo() } else { "" },
            );
        }
        let failed = errors.get(&op).copied().unwrap_or(0);
        if failed > 0 {
            report
                .notes
                .push(format!("{}: {failed} errors", op.label()));
        }
    }
    report.notes.push(format!(
        "floors: reads = raw HTTP/1.1 round trip on loopback with a {payload} B body; writes and pod creates = raw etcd put (latency: 1 client; throughput: {} clients, {payload} B values); create txn floor = put-if-absent transactions through ONE etcd connection, 64 in flight, with a watch on their prefix; the create client posts JSON and does not decode the answers{}",
        floors::ETCD_CLIENTS,
        if etcd_floor.is_none() { " (no etcd: sqlite storage)" } else { "" }
    ));
    report
        .notes
        .push(format!("{create_errors} pod create errors"));
    report.processes = cluster.usage();
    Ok(report)
}
