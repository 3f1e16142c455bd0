//! `pod-startup`: pod startup on a real node (containerd, runc, CNI) of a running cluster
//! (hack/local-up-cluster.sh), creation to Running seen by a watch, one pod at a time; the floor
//! is raw `ctr run -d` of the same image and command on the same containerd (create + start, no
//! pod network), measured right after each pod so both see the same machine load, then the
//! kubelet's RSS with `--rss-pods` pods running.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::Api;

use super::{api_err, pause_pod, wait_count, watch_pods, ScenarioError};
use crate::cluster::{ensure_namespace, Cluster, ClusterOptions};
use crate::report::{Latencies, Report};

/// Real-node pod startup settings.
#[derive(Debug, Clone, clap::Args)]
pub struct PodStartupOptions {
    /// Pods, started one after the other.
    #[arg(long, default_value_t = 5)]
    pub pods: usize,
    /// The cluster's containerd socket (for the `ctr run` floor).
    #[arg(long, default_value = "/tmp/kube-local/containerd/containerd.sock")]
    pub containerd_socket: PathBuf,
    /// Image (must be in containerd's k8s.io namespace already, as the kubelet imports it).
    #[arg(long, default_value = "docker.io/library/busybox:1.35")]
    pub image: String,
    /// After the latency runs, bring the node to this many running pods (created concurrently)
    /// and report the kubelet's RSS; 0 skips it.
    #[arg(long, default_value_t = 0)]
    pub rss_pods: usize,
}

const NAMESPACE: &str = "kube-perf-startup";

/// Runs the scenario against the cluster of `--kubeconfig` (default: the local cluster's).
pub async fn run(
    cluster_options: &ClusterOptions,
    o: &PodStartupOptions,
) -> Result<Report, ScenarioError> {
    let mut options = cluster_options.clone();
    if options.kubeconfig.is_none() {
        let local = PathBuf::from(
            std::env::var("KUBE_LOCAL_DIR").unwrap_or_else(|_| "/tmp/kube-local".into()),
        )
        .join("admin.kubeconfig");
        if !local.exists() {
            return Err(ScenarioError::Unsupported(format!(
                "pod-startup needs a running cluster with a real node: start one with `sudo hack/local-up-cluster.sh -d` or pass --kubeconfig ({} not found)",
                local.display()
            )));
        }
        options.kubeconfig = Some(local);
    }
    let cluster = Cluster::start(&options).await?;
    let client = cluster.client.clone();
    let mut report = Report::new(format!(
        "pod-startup: {} pods one at a time on a real node",
        o.pods
    ));
    ensure_namespace(&client, NAMESPACE)
        .await
        .map_err(api_err("creating namespace"))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let labels = BTreeMap::from([("kube-perf".to_string(), "startup".to_string())]);
    let (timeline, watch) = watch_pods(&client, Some(NAMESPACE), "kube-perf=startup");
    let mut latencies = Latencies::new();
    let mut floor = Latencies::new();
    for i in 0..o.pods {
        let name = format!("startup-{i}-{}", std::process::id());
        let t = Instant::now();
        pods.create(&PostParams::default(), &pause_pod(&name, &labels))
            .await
            .map_err(api_err("creating a pod"))?;
        let want = i + 1;
        if wait_count(&timeline, want, Duration::from_secs(60), |t| {
            t.running.is_some()
        })
        .await
            < want
        {
            watch.abort();
            return Err(ScenarioError::Timeout {
                what: format!("pod {name} Running"),
                seconds: 60,
            });
        }
        if let Some(running) = timeline
            .lock()
            .ok()
            .and_then(|m| m.get(&name).and_then(|t| t.running))
        {
            latencies.push(running.saturating_duration_since(t));
        }
        floor.push(ctr_run_floor(o, i).await?);
    }
    let total = o.rss_pods.max(o.pods);
    if o.rss_pods > 0 {
        let creates = (o.pods..total).map(|i| {
            let pods = pods.clone();
            let labels = labels.clone();
            async move {
                let name = format!("startup-{i}-{}", std::process::id());
                pods.create(&PostParams::default(), &pause_pod(&name, &labels))
                    .await
                    .map_err(api_err("creating a pod"))
            }
        });
        for created in futures::future::join_all(creates).await {
            created?;
        }
        let seconds = 60 + total as u64;
        if wait_count(&timeline, total, Duration::from_secs(seconds), |t| {
            t.running.is_some()
        })
        .await
            < total
        {
            watch.abort();
            return Err(ScenarioError::Timeout {
                what: format!("{total} pods Running"),
                seconds,
            });
        }
        // Let the pod workers settle into their steady state (probes, status posts).
        tokio::time::sleep(Duration::from_secs(5)).await;
        let kubelet = cluster
            .usage()
            .into_iter()
            .filter(|p| p.name == "kubelet")
            .max_by_key(|p| p.rss_kib);
        match kubelet {
            Some(usage) => report.row(
                format!("kubelet RSS with {total} pods running (MB)"),
                usage.rss_kib as f64 / 1024.0,
                None,
                "40 MB (target)",
            ),
            None => report
                .notes
                .push("kubelet RSS: no kubelet process found on this host".into()),
        }
    }
    watch.abort();
    for i in 0..total {
        let name = format!("startup-{i}-{}", std::process::id());
        if let Err(error) = pods.delete(&name, &DeleteParams::default()).await {
            tracing::warn!(%error, pod = %name, "deleting the pod failed");
        }
    }
    report.latency_rows(
        "pod startup (create -> Running seen)",
        &latencies,
        Some(&floor),
        "5000 ms (SLO)",
    );
    report.notes.push("floor: raw `ctr run -d` of the same image and command after each pod (create + start; no pod network), removed untimed".into());
    report
        .notes
        .push("targets (issue 7): startup p50 < 300 ms, p99 < 1 s; kubelet RSS < 40 MB".into());
    report.processes = cluster.usage();
    Ok(report)
}

/// Runs `ctr` against the cluster's containerd in the `k8s.io` namespace.
async fn ctr(o: &PodStartupOptions, args: &[&str]) -> Result<(), ScenarioError> {
    let output = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(&o.containerd_socket)
        .args(["--namespace", "k8s.io"])
        .args(args)
        .output()
        .await
        .map_err(|e| ScenarioError::Command {
            what: format!("ctr {}", args.first().copied().unwrap_or_default()),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(ScenarioError::Command {
            what: format!("ctr {}", args.join(" ")),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// One floor sample: `ctr run -d` of the pods' image and command (returns once the task
/// runs), then removal, untimed.
async fn ctr_run_floor(o: &PodStartupOptions, i: usize) -> Result<Duration, ScenarioError> {
    let id = format!("kube-perf-floor-{}-{i}", std::process::id());
    let t = Instant::now();
    ctr(o, &["run", "-d", &o.image, &id, "sleep", "3600"]).await?;
    let took = t.elapsed();
    ctr(o, &["tasks", "delete", "--force", &id]).await?;
    ctr(o, &["containers", "delete", &id]).await?;
    Ok(took)
}
