//! Smoke test of every kube-perf scenario at a tiny size: each prints its table with sane numbers.
//! Ignored by default: it starts etcd and the release binaries of the components (build them
//! with `cargo build --release -p kube-apiserver -p kube-scheduler -p kube-controller-manager
//! -p kube-certs`, or point KUBE_BIN_DIR at them). kube-proxy-sync runs only as root;
//! pod-startup only with KUBE_PERF_POD_STARTUP=1 and a running hack/local-up-cluster.sh cluster.
//!
//! Run: `cargo test -p kube-perf --test smoke -- --ignored --test-threads 1`

use std::path::PathBuf;
use std::process::Command;

fn bin_dir() -> PathBuf {
    std::env::var_os("KUBE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release"))
}

/// Runs kube-perf with `args`; returns stdout (the table).
fn kube_perf(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kube-perf"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(args)
        .output()
        .expect("kube-perf runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "kube-perf {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The `ours` column of the row whose metric starts with `metric`.
fn ours(table: &str, metric: &str) -> f64 {
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {metric}")))
        .unwrap_or_else(|| panic!("no row {metric:?} in\n{table}"));
    let cell = line.split('|').nth(2).expect("ours column").trim();
    cell.parse()
        .unwrap_or_else(|_| panic!("{metric}: {cell:?} is not a number"))
}

fn has_process(table: &str, name: &str) {
    assert!(
        table.lines().any(|l| l.starts_with(&format!("| {name} |"))),
        "no process row {name} in\n{table}"
    );
}

#[test]
#[ignore = "starts etcd and the release binaries"]
fn density_runs_every_pod_on_hollow_nodes() {
    let t = kube_perf(&["density", "--nodes", "3", "--pods", "10", "--qps", "20"]);
    assert_eq!(ours(&t, "pods Running"), 10.0, "{t}");
    let p99 = ours(&t, "pod startup (create -> Running seen) p99 (ms)");
    assert!(p99 > 0.0 && p99 < 60_000.0, "{t}");
    for p in [
        "etcd",
        "kube-apiserver",
        "kube-scheduler",
        "kube-controller-manager",
    ] {
        has_process(&t, p);
    }
}

#[test]
#[ignore = "starts etcd and the release binaries"]
fn density_with_deployments_runs_every_replica() {
    let t = kube_perf(&[
        "density",
        "--nodes",
        "2",
        "--pods",
        "6",
        "--qps",
        "20",
        "--deployments",
        "--replicas",
        "3",
    ]);
    assert_eq!(ours(&t, "pods Running"), 6.0, "{t}");
}

#[test]
#[ignore = "starts etcd and the release binaries"]
fn api_load_measures_every_verb() {
    let t = kube_perf(&["api-load", "--qps", "40", "--duration", "2", "--pods", "50"]);
    assert!(ours(&t, "pod creates per second") > 0.0, "{t}");
    for metric in [
        "GET pods (single object) p99",
        "LIST pods (namespace) p99",
        "POST configmaps (single object) p99",
        "PUT configmaps (single object) p99",
        "PATCH configmaps (single object) p99",
        "DELETE configmaps (single object) p99",
    ] {
        let v = ours(&t, metric);
        assert!(v > 0.0 && v < 60_000.0, "{metric}: {t}");
    }
}

#[test]
#[ignore = "starts etcd and the release binaries"]
fn scale_fills_holds_and_measures_the_slis() {
    let t = kube_perf(&[
        "scale",
        "--nodes",
        "3",
        "--fill-pods",
        "40",
        "--namespaces",
        "4",
        "--qps",
        "5",
        "--api-qps",
        "20",
        "--duration",
        "4",
        "--cluster-lists",
        "1",
    ]);
    assert!(ours(&t, "saturation: pods created per second") > 0.0, "{t}");
    for metric in [
        "pod startup at 5 pods/s churn (create -> Running seen) p99",
        "GET pods (single object) p99",
        "LIST pods (namespace) p99",
        "LIST pods (cluster, unpaginated) p99",
        "LIST pods (cluster, resourceVersion=0, unpaginated) p99",
    ] {
        let v = ours(&t, metric);
        assert!(v > 0.0 && v < 60_000.0, "{metric}: {t}");
    }
    // 40 held pods and the churn pods, about 1 KiB each.
    assert!(
        ours(&t, "LIST pods (cluster) answer size (MiB)") > 0.01,
        "{t}"
    );
    has_process(&t, "kube-apiserver");
}

#[test]
#[ignore = "starts etcd and the release binaries"]
fn scheduler_schedules_every_pod() {
    for workload in ["basic", "anti-affinity", "topology-spread"] {
        let t = kube_perf(&[
            "scheduler",
            "--nodes",
            "10",
            "--pods",
            "10",
            "--workload",
            workload,
        ]);
        assert_eq!(ours(&t, "pods scheduled |"), 10.0, "{t}");
        assert!(ours(&t, "pods scheduled per second") > 0.0, "{t}");
    }
}

#[test]
#[ignore = "starts etcd and the release binaries"]
fn watch_fanout_delivers_every_event() {
    let t = kube_perf(&[
        "watch-fanout",
        "--watchers",
        "5",
        "--events",
        "20",
        "--rate",
        "50",
    ]);
    assert_eq!(ours(&t, "events delivered |"), 100.0, "{t}");
}

#[test]
#[ignore = "needs root and nft"]
fn kube_proxy_sync_applies_and_removes_its_table() {
    if !nix_is_root() {
        return;
    }
    let t = kube_perf(&[
        "kube-proxy-sync",
        "--services",
        "20",
        "--endpoints",
        "2",
        "--rounds",
        "1",
    ]);
    assert!(ours(&t, "rules in the table") > 20.0, "{t}");
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("kube-perf-"));
}

#[test]
#[ignore = "needs a running local cluster (hack/local-up-cluster.sh)"]
fn pod_startup_runs_on_the_real_node() {
    if std::env::var_os("KUBE_PERF_POD_STARTUP").is_none() {
        return;
    }
    let t = kube_perf(&["pod-startup", "--pods", "2"]);
    assert!(
        ours(&t, "pod startup (create -> Running seen) p99 (ms)") > 0.0,
        "{t}"
    );
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}
