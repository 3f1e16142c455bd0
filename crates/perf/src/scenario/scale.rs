//! `scale`: issue 10's headline target in the shape of upstream's density and load tests. N
//! hollow nodes; a saturation phase fills the cluster with `--fill-pods` pause pods over
//! `--namespaces` namespaces (64 creates in flight, retried on 429, 5xx and timeouts) and waits
//! until they run; then, while they are held, a churn of `--qps` pods/s (each create deletes an
//! older churn pod) measures pod startup latency, and the API-call SLI mix of `api-load`
//! ([`super::api_calls`]) plus a few unpaginated cluster-wide pod LISTs run beside it.
//! The table: each metric with the upstream SLO (1 s single object, 5 s namespace list, 30 s
//! cluster list, 5 s pod startup), apiserver RSS growth per 10,000 pods, hollow-node memory,
//! storage size, and every process's peak RSS and CPU.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::DeleteParams;
use kube::{Api, Client};

use super::api_calls::{self, MixTarget, Op, MIX};
use super::{api_err, pause_pod, watch_pods, PodTimeline, PodTimes, ScenarioError};
use crate::cluster::{ensure_namespace, Cluster, ClusterOptions};
use crate::report::{Latencies, Report};
use crate::{floors, procs};

/// Scale settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleOptions {
    /// Hollow nodes.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Pods created in the saturation phase and held during the measurement.
    #[arg(long, default_value_t = 3000)]
    pub fill_pods: usize,
    /// Namespaces the pods (and the API mix) are spread over.
    #[arg(long, default_value_t = 100)]
    pub namespaces: usize,
    /// Churn while the pods are held: pod creations per second (each deletes an older churn pod).
    #[arg(long, default_value_t = 20.0)]
    pub qps: f64,
    /// Calls per second of the API-call SLI mix while the pods are held.
    #[arg(long, default_value_t = 20.0)]
    pub api_qps: f64,
    /// Length of the held phase (seconds).
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Unpaginated cluster-wide pod LISTs during the held phase (each done twice: without and
    /// with resourceVersion=0).
    #[arg(long, default_value_t = 3)]
    pub cluster_lists: usize,
    /// Most pods of the saturation phase created but not yet seen Running; further creates
    /// wait (0: no limit). Bounds what a backlog of bound pods costs the hollow nodes and the
    /// components while the fleet starts them.
    #[arg(long, default_value_t = 3000)]
    pub fill_max_pending: usize,
    /// Fail when the saturation phase makes no progress (no pod created or Running) this long
    /// (seconds).
    #[arg(long, default_value_t = 300)]
    pub stall_timeout: u64,
    /// Hollow nodes' status period (seconds; kubemark's nodeStatusUpdateFrequency is 10).
    #[arg(long, default_value_t = 10)]
    pub node_status_period: u64,
    /// Hollow nodes' longest gap between PATCHes of an unchanged status (seconds; kubemark's
    /// nodeStatusReportFrequency is 300).
    #[arg(long, default_value_t = 300)]
    pub node_status_report_period: u64,
}

/// Label of every pod this scenario creates.
const LABEL: (&str, &str) = ("kube-perf", "scale");
/// Creates in flight during the saturation phase (as upstream's saturation step).
const FILL_IN_FLIGHT: usize = 64;
/// Attempts per pod create in the saturation phase.
const FILL_ATTEMPTS: u32 = 10;
/// A create that takes longer than this is abandoned and retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A churn pod is deleted this long after its creation (longer than a slow startup, so the
/// latencies are not only those of the pods that started before their deletion).
const CHURN_LIFETIME: Duration = Duration::from_secs(30);
/// Pods a hollow node accepts (`status.capacity.pods`).
const PODS_PER_NODE: usize = 110;
/// Progress is logged this often.
const PROGRESS: Duration = Duration::from_secs(10);

fn ns(i: usize) -> String {
    format!("scale-{i}")
}

fn churn_name(i: usize) -> String {
    format!("churn-{i}")
}

/// Runs the scenario.
pub async fn run(
    cluster_options: &ClusterOptions,
    o: &ScaleOptions,
) -> Result<Report, ScenarioError> {
    let namespaces = o.namespaces.max(1);
    let churn_live = (o.qps * CHURN_LIFETIME.as_secs_f64()).ceil() as usize + FILL_IN_FLIGHT;
    if o.fill_pods + churn_live > o.nodes * PODS_PER_NODE {
        return Err(ScenarioError::Unsupported(format!(
            "{} pods (+{churn_live} churning) do not fit on {} nodes of {PODS_PER_NODE} pods",
            o.fill_pods, o.nodes
        )));
    }
    let mut options = cluster_options.clone();
    options.scheduler = true;
    options.controller_manager = true;
    let mut cluster = Cluster::start(&options).await?;
    let client = cluster.client.clone();
    let mut report = Report::new(format!(
        "scale: {} hollow nodes, {} pods held in {namespaces} namespaces; {} pods/s churn and {} API calls/s for {} s",
        o.nodes, o.fill_pods, o.qps, o.api_qps, o.duration
    ));
    let names: Vec<String> = (0..namespaces).map(ns).collect();
    let setup: Vec<Result<(), ScenarioError>> = futures::stream::iter(names.clone())
        .map(|name| {
            let client = client.clone();
            async move {
                ensure_namespace(&client, &name)
                    .await
                    .map_err(api_err("creating namespace"))?;
                api_calls::create_configmaps(&client, &name).await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    setup.into_iter().collect::<Result<Vec<()>, _>>()?;
    let labels = BTreeMap::from([(LABEL.0.to_string(), LABEL.1.to_string())]);
    // The floor's payload is a pod as stored (with the server's fields), unlabelled so that
    // the watch below ignores it.
    let probe = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &names[0])
        .create(
            &kube::api::PostParams::default(),
            &pause_pod("probe", &BTreeMap::new()),
        )
        .await
        .map_err(api_err("creating the probe pod"))?;
    let payload = super::json_size(&probe);
    let etcd_floor = match &cluster.etcd_endpoint {
        Some(endpoint) => Some(floors::etcd(endpoint, payload, 5000).await?),
        None => None,
    };

    // Hollow nodes (upstream kubemark's status timings unless asked otherwise).
    let perf_before = procs::read_self("kube-perf");
    let (hollow_dir, nodes, took) = super::ready_hollow_nodes(
        &client,
        o.nodes,
        super::status_timings(o.node_status_period, o.node_status_report_period),
    )
    .await?;
    report.row(
        "hollow nodes registered per second",
        o.nodes as f64 / took.as_secs_f64(),
        None,
        "",
    );
    if let (Some(before), Some(after)) = (perf_before, procs::read_self("kube-perf")) {
        report.row(
            "kube-perf RSS per hollow node, idle (KiB)",
            after.rss_kib.saturating_sub(before.rss_kib) as f64 / o.nodes.max(1) as f64,
            None,
            "",
        );
    }
    cluster.check_alive()?;
    let apiserver_idle = cluster
        .pid("kube-apiserver")
        .and_then(|p| procs::read("a", p));

    // Saturation phase.
    let (timeline, watch) = watch_pods(&client, None, &format!("{}={}", LABEL.0, LABEL.1));
    let fill = fill(&client, o, &names, &labels, &timeline).await;
    cluster.check_alive()?;
    let fill = fill?;
    let pending = match o.fill_max_pending {
        0 => String::new(),
        n => format!(", at most {n} not Running"),
    };
    report.row(
        format!("saturation: pods created per second ({FILL_IN_FLIGHT} in flight{pending})"),
        o.fill_pods as f64 / fill.created.as_secs_f64(),
        etcd_floor.as_ref().map(|f| f.put_per_sec),
        "raw etcd puts/s beside",
    );
    report.row(
        "saturation: all pods Running after (s)",
        fill.running.as_secs_f64(),
        None,
        "",
    );
    report.row(
        "saturation: pods Running per second",
        o.fill_pods as f64 / fill.running.as_secs_f64(),
        None,
        "",
    );
    report.row("saturation: create retries", fill.retries as f64, None, "");
    let held_rss = cluster
        .pid("kube-apiserver")
        .and_then(|p| procs::read("a", p));
    if let (Some(idle), Some(now)) = (apiserver_idle, held_rss) {
        let grown = now.rss_kib.saturating_sub(idle.rss_kib) as f64 / 1024.0;
        report.row(
            "apiserver RSS growth per 10,000 pods (MiB)",
            grown * 10_000.0 / o.fill_pods.max(1) as f64,
            None,
            "",
        );
    }
    if let Some(perf) = procs::read_self("kube-perf") {
        report.row(
            "kube-perf RSS with the pods held (MiB)",
            perf.rss_kib as f64 / 1024.0,
            None,
            "hollow nodes + watch + load",
        );
    }

    // Held phase: churn, the API-call mix and cluster-wide lists at the same time.
    let duration = Duration::from_secs(o.duration);
    let target = MixTarget {
        namespaces: names.clone(),
        pods: o.fill_pods,
    };
    // Cluster-wide lists are timed on their own (few, big, decoded by nobody).
    let mix: Vec<(Op, usize)> = MIX
        .iter()
        .copied()
        .filter(|(op, _)| *op != Op::ListPodsCluster)
        .collect();
    let (churn, mix_result, lists) = tokio::join!(
        churn(&client, o, &names, &labels, duration),
        api_calls::run_mix(&client, &mix, &target, o.api_qps, duration),
        cluster_lists(&client, o.cluster_lists, duration),
    );
    cluster.check_alive()?;
    // Let the last churn pods start before reading their latencies.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && pending_churn(&timeline, &churn) > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    watch.abort();

    let mut startup = Latencies::new();
    let mut scheduling = Latencies::new();
    let mut never_running = 0usize;
    if let Ok(times) = timeline.lock() {
        for (name, created) in &churn.created {
            let t = times.get(name).copied().unwrap_or_default();
            match t.running {
                Some(running) => startup.push(running.saturating_duration_since(*created)),
                None => never_running += 1,
            }
            if let Some(bound) = t.bound {
                scheduling.push(bound.saturating_duration_since(*created));
            }
        }
    }
    report.latency_rows(
        &format!(
            "pod startup at {} pods/s churn (create -> Running seen)",
            o.qps
        ),
        &startup,
        None,
        "5000 ms (SLO)",
    );
    report.latency_rows("churn: create -> bound seen", &scheduling, None, "");
    report.row(
        "churn: pods created per second",
        churn.created.len() as f64 / duration.as_secs_f64().max(0.001),
        None,
        &format!("asked {}", o.qps),
    );
    report.row(
        "churn: pods not seen Running (deleted first or slow)",
        never_running as f64,
        None,
        "",
    );
    report.row("churn: create/delete errors", churn.errors as f64, None, "");
    report.row(
        "API mix: calls per second",
        mix_result.achieved,
        None,
        &format!("asked {}", o.api_qps),
    );
    mix_result.rows(&mut report, |_| None);
    for (cached, samples) in [(false, &lists.plain), (true, &lists.cached)] {
        let label = if cached {
            "LIST pods (cluster, resourceVersion=0, unpaginated)"
        } else {
            "LIST pods (cluster, unpaginated)"
        };
        for (q_label, q) in [("p50", 0.5), ("p99", 0.99)] {
            report.row(
                format!("{label} {q_label} (ms)"),
                samples.ms(q),
                None,
                if q_label == "p99" {
                    "30000 ms (SLO)"
                } else {
                    ""
                },
            );
        }
    }
    if lists.bytes > 0 {
        report.row(
            "LIST pods (cluster) answer size (MiB)",
            lists.bytes as f64 / 1_048_576.0,
            None,
            "",
        );
    }
    if let Some(dir) = cluster.dir() {
        let (what, path) = match cluster.etcd_endpoint {
            Some(_) => ("etcd data dir", dir.join("etcd")),
            None => ("sqlite database", dir.join("apiserver")),
        };
        report.row(
            format!("{what} on disk (MiB)"),
            dir_size(&path) as f64 / 1_048_576.0,
            None,
            "",
        );
    }
    if lists.errors > 0 {
        report
            .notes
            .push(format!("{} cluster-wide LISTs failed", lists.errors));
    }
    if let Some(f) = &etcd_floor {
        report.notes.push(format!(
            "saturation floor = raw etcd puts/s of a {} B value with {} clients; the API-call rows follow upstream's SLI (p99 per verb, resource and scope); cluster-wide LISTs are read to the last byte without decoding",
            f.payload,
            floors::ETCD_CLIENTS
        ));
    }
    report.notes.push(format!(
        "hollow nodes: Lease renewed every 10 s, node status computed every {} s and PATCHed when changed or every {} s (upstream kubemark: 10 s / 300 s)",
        o.node_status_period, o.node_status_report_period.max(o.node_status_period)
    ));
    report.processes = cluster.usage();
    drop(nodes);
    report.hollow_dirs.push(std::sync::Arc::new(hollow_dir));
    Ok(report)
}

/// How the saturation phase went.
struct Fill {
    /// Time until every create was answered.
    created: Duration,
    /// Time until every pod was seen Running.
    running: Duration,
    /// Creates retried.
    retries: usize,
}

/// Creates `o.fill_pods` pods, [`FILL_IN_FLIGHT`] at a time and at most
/// `--fill-max-pending` ahead of those Running, and waits until all are Running; fails when nothing progresses for `--stall-timeout`.
async fn fill(
    client: &Client,
    o: &ScaleOptions,
    names: &[String],
    labels: &BTreeMap<String, String>,
    timeline: &PodTimeline,
) -> Result<Fill, ScenarioError> {
    let created = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let create_all = async {
        let results: Vec<Result<(), ScenarioError>> = futures::stream::iter(0..o.fill_pods)
            .then(|i| {
                let running = running.clone();
                async move {
                    // Creates sent so far (`i`) minus pods Running: the backlog.
                    while o.fill_max_pending > 0
                        && i.saturating_sub(running.load(Ordering::Relaxed)) >= o.fill_max_pending
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    i
                }
            })
            .map(|i| {
                let pod = pause_pod(&api_calls::pod_name(i), labels);
                let namespace = names[i % names.len()].clone();
                let created = created.clone();
                let retries = retries.clone();
                async move {
                    create_with_retries(client, &namespace, &pod, &retries).await?;
                    created.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            })
            .buffer_unordered(FILL_IN_FLIGHT)
            .collect()
            .await;
        let took = started.elapsed();
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        tracing::info!(
            pods = o.fill_pods,
            seconds = took.as_secs_f64(),
            "saturation: all pods created"
        );
        Ok::<Duration, ScenarioError>(took)
    };
    let want = o.fill_pods;
    let stall = Duration::from_secs(o.stall_timeout.max(10));
    let monitor = async {
        let mut last = (0, 0);
        let mut last_change = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        let mut logged = Instant::now();
        loop {
            ticker.tick().await;
            let now = (
                created.load(Ordering::Relaxed),
                count(timeline, |name, t| {
                    t.running.is_some() && !name.starts_with("churn-")
                }),
            );
            running.store(now.1, Ordering::Relaxed);
            if now.1 >= want {
                return Ok::<Duration, ScenarioError>(started.elapsed());
            }
            if now != last {
                last = now;
                last_change = Instant::now();
            } else if last_change.elapsed() > stall {
                return Err(ScenarioError::Timeout {
                    what: format!(
                        "saturation stalled: {} of {want} pods created, {} Running, no progress for {} s (run with --keep to read the component logs)",
                        now.0,
                        now.1,
                        stall.as_secs()
                    ),
                    seconds: started.elapsed().as_secs(),
                });
            }
            if logged.elapsed() >= PROGRESS {
                logged = Instant::now();
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(
                    created = now.0,
                    running = now.1,
                    want,
                    seconds = secs.round(),
                    created_per_sec = (now.0 as f64 / secs).round(),
                    retries = retries.load(Ordering::Relaxed),
                    "saturation progress"
                );
            }
        }
    };
    let (created_after, running_after) = tokio::try_join!(create_all, monitor)?;
    Ok(Fill {
        created: created_after,
        running: running_after,
        retries: retries.load(Ordering::Relaxed),
    })
}

/// Whether a failed create is worth another try (overload, server error, transport trouble).
fn retriable(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::SerdeError(_) | kube::Error::HttpError(_) | kube::Error::BuildRequest(_) => {
            false
        }
        _ => true,
    }
}

/// POSTs `pod`, retrying on 429, 5xx, transport errors and [`REQUEST_TIMEOUT`]; an AlreadyExists
/// answer to a retry means an earlier attempt got through.
async fn create_with_retries(
    client: &Client,
    namespace: &str,
    pod: &k8s_openapi::api::core::v1::Pod,
    retries: &AtomicUsize,
) -> Result<(), ScenarioError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match tokio::time::timeout(
            REQUEST_TIMEOUT,
            api_calls::post_pod(client, namespace, pod),
        )
        .await
        {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(kube::Error::Api(s))) if s.code == 409 && attempt > 1 => return Ok(()),
            Ok(Err(error)) if retriable(&error) && attempt < FILL_ATTEMPTS => error.to_string(),
            Ok(Err(source)) => {
                return Err(ScenarioError::Api {
                    what: format!("creating pod {namespace}/{name} (attempt {attempt})"),
                    source,
                })
            }
            Err(_) if attempt < FILL_ATTEMPTS => {
                format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
            }
            Err(_) => {
                return Err(ScenarioError::Timeout {
                    what: format!("creating pod {namespace}/{name} ({attempt} attempts)"),
                    seconds: REQUEST_TIMEOUT.as_secs(),
                })
            }
        };
        retries.fetch_add(1, Ordering::Relaxed);
        let backoff = Duration::from_millis((100u64 << attempt.min(6)).min(5000));
        tracing::debug!(pod = %name, attempt, %error, "pod create failed; retrying");
        tokio::time::sleep(backoff).await;
    }
}

/// Pods of `timeline` for which `f(name, times)` holds.
fn count(timeline: &PodTimeline, f: impl Fn(&str, &PodTimes) -> bool) -> usize {
    timeline
        .lock()
        .map(|m| m.iter().filter(|(n, t)| f(n, t)).count())
        .unwrap_or(0)
}

/// What the churn did.
#[derive(Default)]
struct Churn {
    /// Churn pods in creation order, with when their create was sent.
    created: Vec<(String, Instant)>,
    /// How many churn pods live at once (each create deletes the one this many creates older).
    lifetime: usize,
    /// Failed creates and deletes.
    errors: usize,
}

/// Churn pods not deleted yet and not yet seen Running.
fn pending_churn(timeline: &PodTimeline, churn: &Churn) -> usize {
    let Ok(times) = timeline.lock() else {
        return 0;
    };
    churn
        .created
        .iter()
        .rev()
        .take(churn.lifetime)
        .filter(|(n, _)| times.get(n).is_none_or(|t| t.running.is_none()))
        .count()
}

/// Creates `churn-<i>` pods at `o.qps` for `duration`; each create also deletes the churn pod
/// created [`CHURN_LIFETIME`] earlier, so the number of pods stays about constant.
async fn churn(
    client: &Client,
    o: &ScaleOptions,
    names: &[String],
    labels: &BTreeMap<String, String>,
    duration: Duration,
) -> Churn {
    let total = (o.qps * duration.as_secs_f64()).round() as usize;
    let lifetime = ((o.qps * CHURN_LIFETIME.as_secs_f64()).round() as usize).max(1);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / o.qps.max(0.001)));
    let errors = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(FILL_IN_FLIGHT));
    let mut created = Vec::with_capacity(total);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let name = churn_name(i);
        let namespace = names[i % names.len()].clone();
        let old = i
            .checked_sub(lifetime)
            .map(|j| (names[j % names.len()].clone(), churn_name(j)));
        let pod = pause_pod(&name, labels);
        created.push((name, Instant::now()));
        let client = client.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = api_calls::post_pod(&client, &namespace, &pod).await {
                tracing::debug!(%error, "churn create failed");
                errors.fetch_add(1, Ordering::Relaxed);
            }
            if let Some((namespace, name)) = old {
                let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, &namespace);
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(error) => {
                        tracing::debug!(%error, "churn delete failed");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in tasks {
        if let Err(error) = task.await {
            tracing::warn!(%error, "churn task failed");
        }
    }
    Churn {
        created,
        lifetime,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// Latencies of the cluster-wide LISTs.
#[derive(Default)]
struct ClusterLists {
    plain: Latencies,
    cached: Latencies,
    bytes: u64,
    errors: usize,
}

/// `count` pairs of unpaginated cluster-wide pod LISTs (without, then with resourceVersion=0),
/// spread over `duration`.
async fn cluster_lists(client: &Client, count: usize, duration: Duration) -> ClusterLists {
    let mut out = ClusterLists::default();
    if count == 0 {
        return out;
    }
    let gap = duration / (count as u32 + 1);
    for _ in 0..count {
        tokio::time::sleep(gap).await;
        for cached in [false, true] {
            match api_calls::list_all(client, cached).await {
                Ok((took, bytes)) => {
                    tracing::info!(
                        cached,
                        ms = took.as_millis() as u64,
                        mib = bytes / 1_048_576,
                        "cluster-wide pod list"
                    );
                    out.bytes = out.bytes.max(bytes);
                    if cached {
                        out.cached.push(took);
                    } else {
                        out.plain.push(took);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, cached, "cluster-wide pod list failed");
                    out.errors += 1;
                }
            }
        }
    }
    out
}

/// Bytes of the files under `path` (0 when unreadable).
fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_and_transport_errors_are_retried_but_refusals_are_not() {
        let status = |code| {
            kube::Error::Api(Box::new(
                kube::core::Status::failure("x", "y").with_code(code),
            ))
        };
        assert!(retriable(&status(429)));
        assert!(retriable(&status(503)));
        assert!(retriable(&status(500)));
        assert!(!retriable(&status(403)));
        assert!(!retriable(&status(422)));
        assert!(retriable(&kube::Error::ReadEvents(std::io::Error::other(
            "reset"
        ))));
    }

    #[test]
    fn dir_size_adds_up_nested_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), vec![0u8; 100]).expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/b"), vec![0u8; 50]).expect("write");
        assert_eq!(dir_size(dir.path()), 150);
        assert_eq!(dir_size(&dir.path().join("missing")), 0);
    }
}
