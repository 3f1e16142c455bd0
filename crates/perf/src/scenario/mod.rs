//! The scenarios, one module each, and what they share: the error type, pod builders and a
//! watch that records when each pod was first seen, bound and Running.

pub mod api_calls;
pub mod api_load;
pub mod density;
pub mod deployments;
pub mod dns_qps;
pub mod kube_proxy_sync;
pub mod kubectl_get;
pub mod pod_startup;
pub mod scale;
pub mod scheduler;
pub mod watch_fanout;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::ObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::cluster::ClusterError;
use crate::floors::FloorError;
use crate::hollow::HollowError;

/// Why a scenario failed.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The cluster could not start.
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    /// Hollow nodes failed.
    #[error("{0}")]
    Hollow(#[from] HollowError),
    /// A floor could not be measured.
    #[error("{0}")]
    Floor(#[from] FloorError),
    /// An API call the scenario depends on failed.
    #[error("{what}: {source}")]
    Api {
        /// The step.
        what: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// The scenario needs something this machine lacks.
    #[error("{0}")]
    Unsupported(String),
    /// A local command failed.
    #[error("{what}: {detail}")]
    Command {
        /// The command.
        what: String,
        /// stderr or the I/O error.
        detail: String,
    },
    /// The workload did not finish in time.
    #[error("timed out after {seconds}s: {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// Timeout.
        seconds: u64,
    },
}

/// Maps a kube error into [`ScenarioError::Api`] naming `what`.
pub fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ScenarioError {
    let what = what.into();
    move |source| ScenarioError::Api { what, source }
}

/// A pause pod like upstream's density pods (busybox sleeping; no resource requests).
pub fn pause_pod(name: &str, labels: &BTreeMap<String, String>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![pause_container()],
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container of [`pause_pod`].
pub fn pause_container() -> Container {
    Container {
        name: "pause".into(),
        image: Some("busybox:1.35".into()),
        command: Some(vec!["sleep".into(), "3600".into()]),
        ..Default::default()
    }
}

/// When a pod was first seen, bound and seen Running by the watch.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodTimes {
    /// First event.
    pub seen: Option<Instant>,
    /// First event with `spec.nodeName`.
    pub bound: Option<Instant>,
    /// First event with phase Running.
    pub running: Option<Instant>,
}

/// Pod times by pod name, fed by [`watch_pods`].
pub type PodTimeline = Arc<Mutex<HashMap<String, PodTimes>>>;

/// Watches pods in `namespace` (all namespaces when None) matching `labels` and records
/// [`PodTimes`]; runs until the returned task is aborted.
pub fn watch_pods(
    client: &Client,
    namespace: Option<&str>,
    labels: &str,
) -> (PodTimeline, tokio::task::JoinHandle<()>) {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let timeline: PodTimeline = Arc::default();
    let recorded = timeline.clone();
    let config = if labels.is_empty() {
        watcher::Config::default()
    } else {
        watcher::Config::default().labels(labels)
    };
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, config).boxed();
        while let Some(event) = stream.next().await {
            let pods = match event {
                Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => vec![pod],
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%error, "pod watch error");
                    continue;
                }
            };
            let now = Instant::now();
            let Ok(mut map) = recorded.lock() else {
                return;
            };
            for pod in pods {
                let Some(name) = pod.metadata.name.clone() else {
                    continue;
                };
                let entry = map.entry(name).or_default();
                entry.seen.get_or_insert(now);
                let spec_node = pod.spec.as_ref().and_then(|s| s.node_name.as_ref());
                if spec_node.is_some() {
                    entry.bound.get_or_insert(now);
                }
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if phase == Some("Running") {
                    entry.running.get_or_insert(now);
                }
            }
        }
    });
    (timeline, task)
}

/// Waits until `done(timeline)` reaches `want` or `timeout` passes; returns the count reached.
pub async fn wait_count(
    timeline: &PodTimeline,
    want: usize,
    timeout: Duration,
    count: impl Fn(&PodTimes) -> bool,
) -> usize {
    let deadline = Instant::now() + timeout;
    let mut progress = Instant::now();
    loop {
        let n = timeline
            .lock()
            .map(|m| m.values().filter(|t| count(t)).count())
            .unwrap_or(0);
        if n >= want || Instant::now() > deadline {
            return n;
        }
        if progress.elapsed() > Duration::from_secs(10) {
            tracing::info!(done = n, want, "waiting");
            progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Size in bytes of `pod` as stored (JSON), for floors with the same payload.
pub fn json_size<T: serde::Serialize>(object: &T) -> usize {
    serde_json::to_vec(object).map(|v| v.len()).unwrap_or(1024)
}

/// Hollow node status timings from `--node-status-period` / `--node-status-report-period`
/// (seconds).
pub fn status_timings(update_secs: u64, report_secs: u64) -> crate::hollow::StatusTimings {
    crate::hollow::StatusTimings {
        update: Duration::from_secs(update_secs.max(1)),
        report: Duration::from_secs(report_secs.max(update_secs).max(1)),
    }
}

/// Starts `count` hollow nodes (64 registering at a time) and waits until all are Ready.
/// Returns their state dir (keep it alive as long as the nodes), the nodes, and how long
/// registration took.
pub async fn ready_hollow_nodes(
    client: &Client,
    count: usize,
    timings: crate::hollow::StatusTimings,
) -> Result<
    (
        tempfile::TempDir,
        Vec<kubelet::testing::HollowNode>,
        Duration,
    ),
    ScenarioError,
> {
    let state = tempfile::tempdir().map_err(|e| ScenarioError::Command {
        what: "creating the hollow node dir".into(),
        detail: e.to_string(),
    })?;
    let (nodes, took) =
        crate::hollow::start_nodes(client, count, state.path(), timings, 64).await?;
    tracing::info!(
        nodes = count,
        seconds = took.as_secs_f64(),
        "hollow nodes registered"
    );
    crate::hollow::wait_ready(client, count, Duration::from_secs(120 + count as u64 / 10)).await?;
    Ok((state, nodes, took))
}
