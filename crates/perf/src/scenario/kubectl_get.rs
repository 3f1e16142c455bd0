//! `kubectl-get`: P pods (created straight through the API, spread over a few namespaces), then
//! `kubectl get pods -A` timed for our kubectl (`<bin-dir>/kubectl`) and the upstream one, a few
//! rounds each, alternating: wall time p50 and peak RSS (`VmHWM`, read until the process exits).
//! The floor is the same list fetched in this process: the server-side Table pages kubectl asks
//! for (`limit=500`), raw JSON, nothing printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::Api;

use super::{api_err, pause_pod, ScenarioError};
use crate::cluster::{ensure_namespace, Cluster, ClusterOptions};
use crate::report::{Latencies, Report};

/// kubectl-get settings.
#[derive(Debug, Clone, clap::Args)]
pub struct KubectlGetOptions {
    /// Pods to list.
    #[arg(long, default_value_t = 5000)]
    pub pods: usize,
    /// Namespaces the pods are spread over.
    #[arg(long, default_value_t = 5)]
    pub namespaces: usize,
    /// Timed runs of each kubectl (after one untimed warm-up run).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// The upstream kubectl (skipped, with a note, when absent).
    #[arg(long, default_value = "/usr/bin/kubectl")]
    pub upstream_kubectl: PathBuf,
}

/// Concurrent pod creations.
const CREATORS: usize = 32;

/// What the runs of one kubectl measured.
#[derive(Default)]
struct Runs {
    wall: Latencies,
    peak_rss_kib: u64,
    lines: usize,
}

/// Runs the scenario.
pub async fn run(
    cluster_options: &ClusterOptions,
    o: &KubectlGetOptions,
) -> Result<Report, ScenarioError> {
    let mut options = cluster_options.clone();
    options.scheduler = false;
    options.controller_manager = false;
    let mut cluster = Cluster::start(&options).await?;
    let client = cluster.client.clone();
    let mut report = Report::new(format!(
        "kubectl-get: `kubectl get pods -A` with {} pods in {} namespaces, {} rounds",
        o.pods, o.namespaces, o.rounds
    ));
    let namespaces: Vec<String> = (0..o.namespaces.max(1))
        .map(|i| format!("kubectl-get-{i}"))
        .collect();
    for ns in &namespaces {
        ensure_namespace(&client, ns)
            .await
            .map_err(api_err("creating namespace"))?;
    }
    let started = Instant::now();
    let labels = [("app".to_string(), "kubectl-get".to_string())].into();
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(0..o.pods)
        .map(|i| {
            let api: Api<Pod> = Api::namespaced(client.clone(), &namespaces[i % namespaces.len()]);
            let pod = pause_pod(&format!("pod-{i}"), &labels);
            async move { api.create(&PostParams::default(), &pod).await.map(drop) }
        })
        .buffer_unordered(CREATORS)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        return Err(api_err("creating pods")(e));
    }
    report.notes.push(format!(
        "{} pods created in {:.1}s ({CREATORS} concurrent creates)",
        o.pods,
        started.elapsed().as_secs_f64()
    ));

    let home = tempfile::tempdir().map_err(|e| command_err("creating a temp HOME", e))?;
    let ours_bin = options.bin_dir.join("kubectl");
    let upstream = o.upstream_kubectl.exists().then_some(&o.upstream_kubectl);
    let mut ours = Runs::default();
    let mut theirs = Runs::default();
    // Warm-up (discovery caches), then alternate so both see the same machine noise.
    for round in 0..=o.rounds {
        let timed = round > 0;
        let run = kubectl_get(&ours_bin, &cluster.kubeconfig, home.path()).await?;
        if timed {
            ours.record(run);
        }
        if let Some(bin) = upstream {
            let run = kubectl_get(bin, &cluster.kubeconfig, home.path()).await?;
            if timed {
                theirs.record(run);
            }
        }
    }
    let mut floor = Latencies::new();
    for _ in 0..o.rounds {
        let started = Instant::now();
        list_tables(&client).await?;
        floor.push(started.elapsed());
    }
    cluster.check_alive()?;

    let upstream_text = |v: String| {
        if upstream.is_some() {
            format!("upstream kubectl: {v}")
        } else {
            "upstream kubectl not found".into()
        }
    };
    report.row(
        "wall time p50 (ms)",
        ours.wall.ms(0.5),
        Some(floor.ms(0.5)),
        &upstream_text(format!("{:.0} ms", theirs.wall.ms(0.5))),
    );
    report.row(
        "wall time max (ms)",
        ours.wall.ms(1.0),
        Some(floor.ms(1.0)),
        &upstream_text(format!("{:.0} ms", theirs.wall.ms(1.0))),
    );
    report.row(
        "peak RSS (MiB)",
        ours.peak_rss_kib as f64 / 1024.0,
        None,
        &upstream_text(format!("{:.1} MiB", theirs.peak_rss_kib as f64 / 1024.0)),
    );
    report.row(
        "output lines",
        ours.lines as f64,
        Some(o.pods as f64 + 1.0),
        &upstream_text(theirs.lines.to_string()),
    );
    report.notes.push(format!(
        "ours: {}; upstream: {}; floor: the same Table pages (limit=500) fetched by kube-perf's client, not printed",
        ours_bin.display(),
        o.upstream_kubectl.display()
    ));
    report.processes = cluster.usage();
    Ok(report)
}

impl Runs {
    fn record(&mut self, run: Measured) {
        self.wall.push(run.wall);
        self.peak_rss_kib = self.peak_rss_kib.max(run.peak_rss_kib);
        self.lines = run.lines;
    }
}

/// One timed kubectl run.
struct Measured {
    wall: Duration,
    peak_rss_kib: u64,
    lines: usize,
}

fn command_err(what: &str, e: impl std::fmt::Display) -> ScenarioError {
    ScenarioError::Command {
        what: what.into(),
        detail: e.to_string(),
    }
}

/// Runs `<binary> get pods -A`, polling its `VmHWM` (a high-water mark, so any read after the
/// peak is exact) until it exits.
async fn kubectl_get(
    binary: &Path,
    kubeconfig: &Path,
    home: &Path,
) -> Result<Measured, ScenarioError> {
    let binary = binary.to_path_buf();
    let kubeconfig = kubeconfig.to_path_buf();
    let home = home.to_path_buf();
    let what = format!("{} get pods -A", binary.display());
    let task = tokio::task::spawn_blocking(move || -> Result<Measured, ScenarioError> {
        let out = tempfile::tempfile().map_err(|e| command_err("creating output file", e))?;
        let out_copy = out
            .try_clone()
            .map_err(|e| command_err("creating output file", e))?;
        let started = Instant::now();
        let mut child = Command::new(&binary)
            .args(["get", "pods", "-A"])
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", &home)
            .stdin(Stdio::null())
            .stdout(out_copy)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| command_err(&binary.display().to_string(), e))?;
        let status_path = PathBuf::from(format!("/proc/{}/status", child.id()));
        let mut peak = 0;
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| command_err("waiting for kubectl", e))?
            {
                break status;
            }
            if let Ok(text) = std::fs::read_to_string(&status_path) {
                peak = peak.max(crate::procs::parse_status(&text).0);
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let wall = started.elapsed();
        if !status.success() {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                std::io::Read::read_to_string(&mut stderr, &mut err).ok();
            }
            return Err(command_err(&binary.display().to_string(), err.trim()));
        }
        let mut text = String::new();
        let mut out = out;
        std::io::Seek::rewind(&mut out).map_err(|e| command_err("reading output", e))?;
        std::io::Read::read_to_string(&mut out, &mut text)
            .map_err(|e| command_err("reading output", e))?;
        Ok(Measured {
            wall,
            peak_rss_kib: peak,
            lines: text.lines().count(),
        })
    });
    task.await.map_err(|e| command_err(&what, e))?
}

/// The floor: every page of the pod list as server-side Tables, as kubectl requests them.
async fn list_tables(client: &kube::Client) -> Result<(), ScenarioError> {
    let mut continue_token: Option<String> = None;
    loop {
        let mut uri = "/api/v1/pods?limit=500".to_string();
        if let Some(token) = &continue_token {
            uri.push_str("&continue=");
            for byte in token.bytes() {
                if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                    uri.push(char::from(byte));
                } else {
                    uri.push_str(&format!("%{byte:02X}"));
                }
            }
        }
        let request = http::Request::get(uri)
            .header(
                "Accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )
            .body(Vec::new())
            .map_err(|e| command_err("building the list request", e))?;
        let page: serde_json::Value = client
            .request(request)
            .await
            .map_err(api_err("listing pods as a Table"))?;
        continue_token = page
            .pointer("/metadata/continue")
            .and_then(|c| c.as_str())
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        if continue_token.is_none() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_is_timed_with_its_peak_memory_and_output() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        // A stand-in kubectl that lives long enough to be sampled and prints two lines.
        let fake = home.path().join("kubectl");
        std::fs::write(&fake, "#!/bin/sh\nsleep 0.3\nprintf 'NAME\\npod-0\\n'\n")?;
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let run = kubectl_get(&fake, Path::new("/dev/null"), home.path()).await?;
        assert_eq!(run.lines, 2);
        assert!(run.peak_rss_kib > 0);
        assert!(run.wall >= Duration::from_millis(300));
        Ok(())
    }

    #[tokio::test]
    async fn a_failing_kubectl_is_an_error_with_its_stderr() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let err = kubectl_get(Path::new("/bin/false"), Path::new("/dev/null"), home.path())
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("expected an error"))?;
        assert!(err.to_string().starts_with("/bin/false"), "{err}");
        Ok(())
    }
}
