//! `GET /stats/summary` through the kubelet API over TLS with client certificates: callers
//! without a certificate are refused; with one, the summary has upstream's `v1alpha1` shape
//! with the node's figures and, for a pod, the figures of its cgroups (a fixture cgroup v1
//! tree), its network namespace (`/proc/<pid>/net/dev` of a process of the pod), its log
//! files and emptyDir volumes.

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::ObjectMeta;
use kubelet::node::stats::{StatsCollector, StatsPaths};
use kubelet::pod::{PodEntry, PodStore};
use kubelet::runtime::fake::FakeRuntime;
use kubelet::server::{serve_with_stats, ServerState, TlsFiles};

mod support;

use support::{get, write_pki};

fn write(root: &Path, path: &str, text: &str) {
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(file, text).expect("write");
}

#[tokio::test]
async fn the_summary_reports_node_pod_and_container_figures_in_the_upstream_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let pki = write_pki(root);
    let (with_cert, without_cert) = (pki.connector(true), pki.connector(false));
    // A Burstable pod (it requests memory) with one container, as cgroup v1 shows it.
    let cg = root.join("cgroup");
    let pod_cg = "kubepods/burstable/poduid-1";
    write(
        &cg,
        &format!("cpuacct/{pod_cg}/cpuacct.usage"),
        "5000000000\n",
    );
    write(
        &cg,
        &format!("memory/{pod_cg}/memory.usage_in_bytes"),
        "10485760\n",
    );
    write(
        &cg,
        &format!("memory/{pod_cg}/memory.stat"),
        "total_inactive_file 1048576\ntotal_rss 8388608\ntotal_pgfault 12\ntotal_pgmajfault 1\n",
    );
    write(
        &cg,
        &format!("cpuacct/{pod_cg}/cid-1/cpuacct.usage"),
        "4000000000\n",
    );
    write(
        &cg,
        &format!("memory/{pod_cg}/cid-1/memory.usage_in_bytes"),
        "8388608\n",
    );
    write(
        &cg,
        &format!("memory/{pod_cg}/cid-1/memory.stat"),
        "total_inactive_file 0\n",
    );
    write(&cg, &format!("pids/{pod_cg}/cid-1/cgroup.procs"), "4242\n");
    let proc_root = root.join("proc");
    write(
        &proc_root,
        "4242/net/dev",
        "Inter-| Receive | Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n  eth0: 4096 10 0 0 0 0 0 0 2048 5 0 0 0 0 0 0\n",
    );
    write(
        &proc_root,
        "meminfo",
        "MemTotal: 4194304 kB\nMemFree: 1048576 kB\nInactive(file): 1048576 kB\nAnonPages: 524288 kB\n",
    );
    write(&proc_root, "stat", "cpu  100 0 100 1000 0 0 0 0 0 0\n");
    write(
        &proc_root,
        "net/dev",
        "h\nh\n  eth0: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n",
    );
    write(
        &root.join("logs"),
        "default_web_uid-1/httpd/0.log",
        "hello world\n",
    );
    write(
        &root.join("root"),
        "pods/uid-1/volumes/kubernetes.io~empty-dir/cache/data",
        "some bytes",
    );
    let collector = Arc::new(StatsCollector::new(StatsPaths {
        node_name: "node-0".into(),
        cgroup_root: cg,
        proc_root,
        root_dir: root.join("root"),
        pod_logs_dir: root.join("logs"),
    }));
    let store = PodStore::new();
    let mut requests = std::collections::BTreeMap::new();
    requests.insert(
        "memory".to_string(),
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("64Mi".into()),
    );
    store.upsert(
        "uid-1",
        PodEntry {
            pod: Pod {
                metadata: ObjectMeta {
                    name: Some("web".into()),
                    namespace: Some("default".into()),
                    uid: Some("uid-1".into()),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "httpd".into(),
                        resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                            requests: Some(requests),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                status: None,
            },
            containers: [("httpd".to_string(), "cid-1".to_string())].into(),
        },
    );
    let addr = serve_with_stats(
        "127.0.0.1:0".parse().expect("addr"),
        &TlsFiles {
            cert: Some(root.join("kubelet.crt")),
            key: Some(root.join("kubelet.key")),
            client_ca: Some(root.join("ca.crt")),
            self_signed_names: vec![],
        },
        ServerState {
            store,
            runtime: Arc::new(FakeRuntime::new()),
            pod_logs_dir: root.join("logs"),
        },
        None,
        Some(collector),
    )
    .await
    .expect("serve");

    let (status, _) = get(addr, &without_cert, "/stats/summary", None).await;
    assert_eq!(status, 401, "no client certificate, no stats");

    let (status, body) = get(addr, &with_cert, "/stats/summary", None).await;
    assert_eq!(status, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).expect("json");
    let node = &summary["node"];
    assert_eq!(node["nodeName"], "node-0");
    assert_eq!(node["memory"]["workingSetBytes"], 2u64 << 30);
    assert_eq!(node["memory"]["availableBytes"], 2u64 << 30);
    assert_eq!(node["cpu"]["usageCoreNanoSeconds"], 2_000_000_000u64);
    assert_eq!(node["network"]["name"], "eth0");
    assert_eq!(node["network"]["txBytes"], 200);
    assert!(node["fs"]["capacityBytes"].as_u64() > Some(0));
    assert!(node["runtime"]["imageFs"]["availableBytes"].as_u64() > Some(0));
    assert!(node["rlimit"]["maxpid"].is_null() || node["rlimit"]["maxpid"].is_u64());

    let pod = &summary["pods"][0];
    assert_eq!(pod["podRef"]["name"], "web");
    assert_eq!(pod["podRef"]["namespace"], "default");
    assert_eq!(pod["podRef"]["uid"], "uid-1");
    assert_eq!(pod["cpu"]["usageCoreNanoSeconds"], 5_000_000_000u64);
    assert_eq!(pod["memory"]["usageBytes"], 10u64 << 20);
    assert_eq!(pod["memory"]["workingSetBytes"], 9u64 << 20);
    assert_eq!(pod["memory"]["rssBytes"], 8u64 << 20);
    assert_eq!(pod["network"]["name"], "eth0");
    assert_eq!(pod["network"]["rxBytes"], 4096);
    assert_eq!(pod["network"]["interfaces"][0]["txBytes"], 2048);
    assert_eq!(pod["volume"][0]["name"], "cache");
    assert!(pod["volume"][0]["usedBytes"].as_u64() > Some(0));
    assert!(pod["ephemeral-storage"]["usedBytes"].as_u64() > Some(0));
    assert_eq!(pod["process_stats"]["process_count"], 1);
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "httpd");
    assert_eq!(container["cpu"]["usageCoreNanoSeconds"], 4_000_000_000u64);
    assert_eq!(container["memory"]["workingSetBytes"], 8u64 << 20);
    assert!(container["logs"]["usedBytes"].as_u64() > Some(0));
    assert!(container["rootfs"].is_object());

    // A second read reports nanocores from the difference (no new CPU time: zero).
    let (_, body) = get(addr, &with_cert, "/stats/summary", None).await;
    let summary: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(summary["pods"][0]["cpu"]["usageNanoCores"], 0);
}
