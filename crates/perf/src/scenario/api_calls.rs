//! The upstream API-call SLI measure that `api-load` and `scale` share: a read-heavy mix of
//! single-object GET/PUT/PATCH/POST/DELETE, namespace LISTs and WATCHes of pods and configmaps
//! sent at a target QPS ([`run_mix`]), latency percentiles per verb, resource and scope
//! ([`MixResult::rows`]), and timed cluster-wide LISTs read to the last byte without decoding
//! ([`list_all`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    DeleteParams, GetParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchParams,
};
use kube::{Api, Client};
use tokio::sync::Semaphore;

use super::{api_err, ScenarioError};
use crate::report::{Latencies, Report};

/// One kind of API call of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// GET a pod (quorum read).
    GetPod,
    /// GET a pod with resourceVersion=0 (served from the cache).
    GetPodCached,
    /// LIST the pods of a namespace.
    ListPodsNamespace,
    /// LIST every pod, decoded by the client.
    ListPodsCluster,
    /// POST a configmap.
    CreateConfigMap,
    /// GET a configmap.
    GetConfigMap,
    /// PUT a configmap (read first; only the PUT is timed).
    UpdateConfigMap,
    /// Merge-PATCH a configmap.
    PatchConfigMap,
    /// DELETE a configmap created 40 calls earlier.
    DeleteConfigMap,
    /// LIST the configmaps of a namespace.
    ListConfigMapsNamespace,
    /// WATCH the pods of a namespace, timed until the response headers.
    WatchPodsNamespace,
}

impl Op {
    /// The row label.
    pub fn label(self) -> &'static str {
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

    /// The upstream SLO of its p99.
    pub fn slo(self) -> &'static str {
        match self {
            Op::ListPodsNamespace | Op::ListConfigMapsNamespace => "5000 ms (SLO)",
            Op::ListPodsCluster => "30000 ms (SLO)",
            Op::WatchPodsNamespace => "",
            _ => "1000 ms (SLO)",
        }
    }

    /// Whether it writes (its floor is an etcd put).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Op::CreateConfigMap | Op::UpdateConfigMap | Op::PatchConfigMap | Op::DeleteConfigMap
        )
    }
}

/// The mix (per 40 requests), roughly the read-heavy shape of upstream's load test.
pub const MIX: &[(Op, usize)] = &[
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

/// Configmaps `cm-0..CONFIGMAPS` each namespace holds for the GET/PUT/PATCH calls.
pub const CONFIGMAPS: usize = 10;

/// Name of pod `i` of the data set (pod `i` lives in namespace `i % namespaces`).
pub fn pod_name(i: usize) -> String {
    format!("pod-{i}")
}

/// A configmap with one key.
pub fn configmap(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("value".to_string(), value.to_string())])),
        ..Default::default()
    }
}

/// Creates the [`CONFIGMAPS`] configmaps the mix reads and writes in `namespace`.
pub async fn create_configmaps(client: &Client, namespace: &str) -> Result<(), ScenarioError> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for j in 0..CONFIGMAPS {
        match cms
            .create(&PostParams::default(), &configmap(&format!("cm-{j}"), "0"))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(api_err("creating configmaps")(e)),
        }
    }
    Ok(())
}

/// What the mix runs against.
#[derive(Debug, Clone)]
pub struct MixTarget {
    /// The namespaces (each with the [`CONFIGMAPS`] configmaps).
    pub namespaces: Vec<String>,
    /// Pods `pod-0..pods`, pod `i` in namespace `i % namespaces.len()`.
    pub pods: usize,
}

/// Latencies and errors per op of one mix run.
#[derive(Debug, Clone, Default)]
pub struct MixResult {
    /// Latencies of the calls that succeeded.
    pub latencies: HashMap<Op, Latencies>,
    /// Failed calls.
    pub errors: HashMap<Op, usize>,
    /// Requests per second sent.
    pub achieved: f64,
}

impl MixResult {
    /// p50/p99 rows per op (floor from `floor(op)`, SLO on p99), and a note per op with errors.
    pub fn rows<'a>(&'a self, report: &mut Report, floor: impl Fn(Op) -> Option<&'a Latencies>) {
        let mut ops: Vec<Op> = self
            .latencies
            .keys()
            .chain(self.errors.keys())
            .copied()
            .collect();
        ops.sort();
        ops.dedup();
        for op in ops {
            let l = self.latencies.get(&op).cloned().unwrap_or_default();
            let floor = floor(op);
            for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
                report.row(
                    format!("{} {label} (ms)", op.label()),
                    l.ms(q),
                    floor.map(|f| f.ms(q)),
                    if label == "p99" { op.slo() } else { "" },
                );
            }
            let failed = self.errors.get(&op).copied().unwrap_or(0);
            if failed > 0 {
                report
                    .notes
                    .push(format!("{}: {failed} errors", op.label()));
            }
        }
    }
}

/// Sends `qps * duration` calls of `mix` against `target` at `qps` (at most 256 in flight).
pub async fn run_mix(
    client: &Client,
    mix: &[(Op, usize)],
    target: &MixTarget,
    qps: f64,
    duration: Duration,
) -> MixResult {
    let schedule: Vec<Op> = mix
        .iter()
        .flat_map(|(op, n)| std::iter::repeat_n(*op, *n))
        .collect();
    if schedule.is_empty() || target.namespaces.is_empty() {
        return MixResult::default();
    }
    let namespaces = target.namespaces.len();
    let latencies: Arc<Mutex<HashMap<Op, Latencies>>> = Arc::default();
    let errors: Arc<Mutex<HashMap<Op, usize>>> = Arc::default();
    let in_flight = Arc::new(Semaphore::new(256));
    let total = (qps * duration.as_secs_f64()).round() as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / qps.max(0.001)));
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
        let namespace = target.namespaces[i % namespaces].clone();
        let pods = target.pods.max(1);
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let (elapsed, result) = call(&client, op, i, &namespace, namespaces, pods).await;
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
    MixResult {
        latencies: latencies.lock().map(|m| m.clone()).unwrap_or_default(),
        errors: errors.lock().map(|m| m.clone()).unwrap_or_default(),
        achieved,
    }
}

/// Makes call `i` (an `op`) in `namespace`; returns its latency and result.
async fn call(
    client: &Client,
    op: Op,
    i: usize,
    namespace: &str,
    namespaces: usize,
    pods: usize,
) -> (Duration, Result<(), kube::Error>) {
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = format!("cm-{}", i % CONFIGMAPS);
    // Creates and deletes pair up: delete the one created 40 requests ago, same namespace.
    let mut t = Instant::now();
    let result: Result<(), kube::Error> = match op {
        Op::GetPod | Op::GetPodCached => {
            let name = pod_name((i / namespaces * namespaces + i % namespaces) % pods);
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
    (t.elapsed(), result)
}

/// POSTs `pod` to `namespace` as JSON and checks the status without decoding the answer: on
/// two cores the load generator shares the CPU with the apiserver and etcd, and its own
/// decoding is no part of what is measured (the etcd floor's client does not decode either).
pub async fn post_pod(client: &Client, namespace: &str, pod: &Pod) -> Result<(), kube::Error> {
    let body = serde_json::to_vec(pod).map_err(kube::Error::SerdeError)?;
    let request = http::Request::post(format!("/api/v1/namespaces/{namespace}/pods"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(kube::Error::HttpError)?;
    client.request_text(request).await.map(drop)
}

/// One unpaginated LIST of every pod (`resourceVersion=0` when `cached`), read to the last
/// byte without decoding (a 150,000-pod answer is hundreds of MB: the SLI is the apiserver's
/// time to send it, not the client's to parse it). Returns its latency and size in bytes.
pub async fn list_all(client: &Client, cached: bool) -> Result<(Duration, u64), kube::Error> {
    let path = if cached {
        "/api/v1/pods?resourceVersion=0"
    } else {
        "/api/v1/pods"
    };
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    let started = Instant::now();
    let body = client.request_stream(request).await?;
    let mut sink = futures::io::sink();
    let bytes = futures::io::copy_buf(body, &mut sink)
        .await
        .map_err(kube::Error::ReadEvents)?;
    Ok((started.elapsed(), bytes))
}
