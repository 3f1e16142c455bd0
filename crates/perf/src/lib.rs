//! kube-perf: benchmarks of the cluster with the physical floors measured beside them (issue 10).
//!
//! Each subcommand is one scenario (in [`scenario`]); it starts what it needs ([`cluster`]: etcd,
//! kube-apiserver, scheduler, controller-manager from the release binaries, or the cluster of
//! `--kubeconfig`), hollow nodes in this process ([`hollow`]), measures its floors ([`floors`])
//! and prints a [`report::Report`] table with the component processes' peak RSS and CPU
//! ([`procs`]). Start at [`run`].

pub mod cluster;
pub mod floors;
pub mod hollow;
pub mod procs;
pub mod report;
pub mod scenario;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use cluster::{ClusterOptions, Storage};
use scenario::ScenarioError;

/// kube-perf: density, API load, scheduler, watch, kube-proxy and pod startup benchmarks.
#[derive(Debug, Parser)]
#[command(name = "kube-perf", version)]
pub struct Options {
    /// Directory of the release binaries (default: the directory of kube-perf itself).
    #[arg(long, global = true, env = "KUBE_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Benchmark this running cluster instead of starting one (density needs its own).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Apiserver storage of the cluster kube-perf starts.
    #[arg(long, global = true, value_enum, default_value_t = Storage::Etcd3)]
    pub storage_backend: Storage,
    /// RUST_LOG of the components kube-perf starts.
    #[arg(long, global = true, default_value = "warn")]
    pub component_log_level: String,
    /// Also append the table to this file.
    #[arg(long, global = true)]
    pub output: Option<PathBuf>,
    /// Keep the started cluster's state dir (logs) after the run.
    #[arg(long, global = true)]
    pub keep: bool,
    /// The scenario.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N hollow nodes, pods or Deployments created at a QPS: pod startup latency.
    Density(scenario::density::DensityOptions),
    /// D Deployments x R replicas on hollow nodes: time until all are Available, controller-manager cost.
    Deployments(scenario::deployments::DeploymentsOptions),
    /// Issue 10's target: fill N hollow nodes with P pods, then hold them under churn and the
    /// API-call SLI mix: pod startup and API latency percentiles against upstream's SLOs.
    Scale(scenario::scale::ScaleOptions),
    /// Mixed API verbs at a QPS: latency per verb/resource/scope, pod create throughput.
    ApiLoad(scenario::api_load::ApiLoadOptions),
    /// scheduler_perf-like workloads: pods scheduled per second.
    Scheduler(scenario::scheduler::SchedulerOptions),
    /// W watchers on one resource: event delivery latency and throughput.
    WatchFanout(scenario::watch_fanout::WatchFanoutOptions),
    /// Full sync of kube-proxy's nftables rules vs raw `nft -f` (root).
    KubeProxySync(scenario::kube_proxy_sync::KubeProxySyncOptions),
    /// A queries per second of in-process kube-dns over UDP vs a UDP echo.
    DnsQps(scenario::dns_qps::DnsQpsOptions),
    /// Pod startup on a real node vs raw `ctr run` (needs a running local cluster).
    PodStartup(scenario::pod_startup::PodStartupOptions),
    /// `kubectl get pods -A` over P pods: ours vs upstream kubectl, wall time and peak RSS.
    KubectlGet(scenario::kubectl_get::KubectlGetOptions),
}

/// Why kube-perf failed.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    /// The scenario failed.
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    /// Writing the output failed.
    #[error("writing {path}: {source}")]
    Output {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

fn default_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

/// Runs the chosen scenario, prints its table (and appends it to `--output`).
pub async fn run(options: Options) -> Result<(), PerfError> {
    let cluster = ClusterOptions {
        bin_dir: options.bin_dir.clone().unwrap_or_else(default_bin_dir),
        kubeconfig: options.kubeconfig.clone(),
        storage: options.storage_backend,
        scheduler: false,
        controller_manager: false,
        log_level: options.component_log_level.clone(),
        keep: options.keep,
    };
    let mut report = match &options.scenario {
        Scenario::Density(o) => scenario::density::run(&cluster, o).await?,
        Scenario::Deployments(o) => scenario::deployments::run(&cluster, o).await?,
        Scenario::Scale(o) => scenario::scale::run(&cluster, o).await?,
        Scenario::ApiLoad(o) => scenario::api_load::run(&cluster, o).await?,
        Scenario::Scheduler(o) => scenario::scheduler::run(&cluster, o).await?,
        Scenario::WatchFanout(o) => scenario::watch_fanout::run(&cluster, o).await?,
        Scenario::KubeProxySync(o) => scenario::kube_proxy_sync::run(o).await?,
        Scenario::DnsQps(o) => scenario::dns_qps::run(o).await?,
        Scenario::PodStartup(o) => scenario::pod_startup::run(&cluster, o).await?,
        Scenario::KubectlGet(o) => scenario::kubectl_get::run(&cluster, o).await?,
    };
    let uses_cluster = !matches!(
        options.scenario,
        Scenario::KubeProxySync(_) | Scenario::DnsQps(_)
    );
    if uses_cluster {
        report.title = match &options.kubeconfig {
            Some(path) => format!("{} (cluster of {})", report.title, path.display()),
            None => format!(
                "{} (apiserver storage: {:?})",
                report.title, options.storage_backend
            ),
        };
    }
    let text = report.to_string();
    println!("{text}");
    if let Some(path) = &options.output {
        let err = |source| PerfError::Output {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        writeln!(file, "{text}").map_err(err)?;
    }
    Ok(())
}
