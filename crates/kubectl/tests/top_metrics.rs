//! `kubectl top` when the metrics API is served: a small plain-HTTP stand-in for an apiserver
//! with metrics-server answers discovery (`metrics.k8s.io/v1beta1` listed), node and pod metrics
//! and the node list, and the upstream `kubectl` and ours must print the same tables and errors.
//! Skipped when `/usr/bin/kubectl` is absent.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const UPSTREAM: &str = "/usr/bin/kubectl";
const OURS: &str = env!("CARGO_BIN_EXE_kubectl");

fn node_metrics(name: &str, cpu: &str, memory: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"pool": "a"}}, "timestamp": "2026-01-01T00:00:00Z",
           "window": "10s", "usage": {"cpu": cpu, "memory": memory}})
}

fn pod_metrics(ns: &str, name: &str, containers: &[(&str, &str, &str)]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(n, cpu, memory)| json!({"name": n, "usage": {"cpu": cpu, "memory": memory}}))
        .collect();
    json!({"metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
           "timestamp": "2026-01-01T00:00:00Z", "window": "10s", "containers": containers})
}

fn node(name: &str, cpu: &str, memory: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"pool": "a"}},
           "status": {"allocatable": {"cpu": cpu, "memory": memory},
                      "capacity": {"cpu": "8", "memory": "16Gi"}}})
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn resource(name: &str, kind: &str, namespaced: bool) -> Value {
    json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
           "verbs": ["get", "list"]})
}

/// What the stand-in answers for a path (query ignored except `labelSelector`).
fn answer(path: &str, query: &str) -> Option<Value> {
    let all_nodes = [
        node_metrics("n1", "250m", "1Gi"),
        node_metrics("n2", "1500000n", "524288Ki"),
    ];
    let pods = [
        pod_metrics(
            "default",
            "web",
            &[("httpd", "5m", "20Mi"), ("side", "1m", "4Mi")],
        ),
        pod_metrics("default", "api", &[("main", "120m", "300Mi")]),
        pod_metrics("other", "db", &[("pg", "40m", "1Gi")]),
    ];
    let selected = |items: &[Value]| -> Vec<Value> {
        items
            .iter()
            .filter(|_| {
                !query.contains("labelSelector=pool%3Db")
                    && !query.contains("labelSelector=app%3Dnone")
            })
            .cloned()
            .collect()
    };
    let nodes = [
        node("n1", "2", "4Gi"),
        node("n2", "1", "2Gi"),
        node("n3", "1", "2Gi"),
    ];
    Some(match path {
        "/api" => json!({"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        "/apis" => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
            "name": "metrics.k8s.io",
            "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}],
            "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}}]}),
        "/api/v1" => json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            resource("nodes", "Node", false), resource("pods", "Pod", true),
            resource("namespaces", "Namespace", false)]}),
        "/apis/metrics.k8s.io/v1beta1" => json!({"kind": "APIResourceList",
            "groupVersion": "metrics.k8s.io/v1beta1", "resources": [
            resource("nodes", "NodeMetrics", false), resource("pods", "PodMetrics", true)]}),
        "/apis/metrics.k8s.io/v1beta1/nodes" => list(
            "NodeMetricsList",
            "metrics.k8s.io/v1beta1",
            selected(&all_nodes),
        ),
        "/apis/metrics.k8s.io/v1beta1/nodes/n1" => all_nodes[0].clone(),
        "/api/v1/nodes" => list("NodeList", "v1", selected(&nodes)),
        "/api/v1/nodes/n1" => nodes[0].clone(),
        "/apis/metrics.k8s.io/v1beta1/pods" => {
            list("PodMetricsList", "metrics.k8s.io/v1beta1", selected(&pods))
        }
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods" => list(
            "PodMetricsList",
            "metrics.k8s.io/v1beta1",
            selected(&pods[..2]),
        ),
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web" => pods[0].clone(),
        "/apis/metrics.k8s.io/v1beta1/namespaces/empty/pods" => {
            list("PodMetricsList", "metrics.k8s.io/v1beta1", vec![])
        }
        "/api/v1/namespaces/empty/pods" | "/api/v1/namespaces/default/pods" => {
            list("PodList", "v1", vec![])
        }
        _ => return None,
    })
}

async fn serve_one(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (status, body) = match answer(path, query) {
        Some(body) => ("200 OK", body),
        None => (
            "404 Not Found",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": "the server could not find the requested resource", "reason": "NotFound", "code": 404}),
        ),
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn run(
    binary: &str,
    kubeconfig: &Path,
    home: &Path,
    args: &[&str],
) -> anyhow::Result<String> {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(binary)
            .args(args)
            .env_clear()
            .env("HOME", home)
            .env("KUBECONFIG", kubeconfig)
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    Ok(format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

#[tokio::test]
async fn top_prints_the_metrics_tables_as_upstream() -> anyhow::Result<()> {
    if !Path::new(UPSTREAM).exists() {
        eprintln!("skipping: {UPSTREAM} not installed");
        return Ok(());
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Err(e) = serve_one(stream).await {
                    eprintln!("stand-in apiserver: {e}");
                }
            });
        }
    });
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: default\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )?;
    let lines: [&[&str]; 14] = [
        &["top", "node"],
        &["top", "node", "--sort-by=cpu"],
        &["top", "node", "--sort-by=memory", "--no-headers"],
        &["top", "node", "--show-capacity"],
        &["top", "node", "n1"],
        &["top", "node", "-l", "pool=b"],
        &["top", "pod"],
        &["top", "pod", "--containers"],
        &["top", "pod", "-A", "--sort-by=memory"],
        &["top", "pod", "web", "--containers"],
        &["top", "pod", "-A", "--sum"],
        &["top", "pod", "-n", "empty"],
        &["top", "pod", "-l", "app=none"],
        &["top", "pod", "--sort-by=name"],
    ];
    let mut report = String::new();
    let mut seen = String::new();
    for line in lines {
        let upstream = run(UPSTREAM, &kubeconfig, dir.path(), line).await?;
        let ours = run(OURS, &kubeconfig, dir.path(), line).await?;
        seen.push_str(&upstream);
        if upstream != ours {
            report.push_str(&format!(
                "==== kubectl {}\n---- upstream: {upstream}\n---- ours: {ours}\n",
                line.join(" ")
            ));
        }
    }
    assert!(report.is_empty(), "ours differs from upstream:\n{report}");
    // The stand-in really served tables (not the same error twice).
    for expected in [
        "NAME   CPU(cores)   CPU(%)      MEMORY(bytes)   MEMORY(%)",
        "n2     2m           0%          512Mi           25%",
        "n3     <unknown>",
        "web   httpd   5m           20Mi",
        "other       db     40m          1024Mi",
        "166m         1348Mi",
        "No resources found in empty namespace.",
    ] {
        assert!(seen.contains(expected), "{expected:?} not in:\n{seen}");
    }
    Ok(())
}
