//! The one-node walking-skeleton flow, end to end, on a real cluster: real containerd, runc, CNI
//! bridge, nftables, and the storage named by `$KUBE_STORAGE` (`sqlite` or `etcd`).
//!
//! It needs root and the release binaries, so it is ignored by default; `hack/test.sh` runs it with
//! `--run-ignored only`. The same flow runs twice: with the upstream kubectl in `default` and with
//! ours in a namespace of its own.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e::{bin_dir, field, items, pod_ready, run, run_ok, wait_for, Cluster, Kubectl};
use serde_json::Value;

const SECOND: Duration = Duration::from_secs(1);

fn web_manifest(version: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: httpd
        image: busybox:1.35
        command: ["sh", "-c", "mkdir -p /www && echo \"{version} $(hostname)\" > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports:
        - name: http
          containerPort: 8080
        readinessProbe:
          httpGet:
            path: /
            port: 8080
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
"#
    )
}

const COUNTER: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: counter
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: count
    image: busybox:1.35
    command: ["sh", "-c", "i=0; while true; do echo \"$i: $(date)\"; i=$((i+1)); sleep 1; done"]
"#;

const CLIENT: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: client
    image: busybox:1.35
    command: ["sleep", "3600"]
"#;

/// Pods of the `web` Deployment that are not terminating.
fn web_pods(k: &Kubectl) -> Result<Vec<Value>> {
    let list = k.json(&["get", "pods", "-l", "app=web"])?;
    Ok(items(&list)
        .into_iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .collect())
}

/// Waits until exactly `n` web pods exist and all are ready; returns them.
fn wait_web_ready(k: &Kubectl, n: usize, timeout: Duration) -> Result<Vec<Value>> {
    wait_for(&format!("{n} ready web pods"), timeout, SECOND, || {
        let all = items(&k.json(&["get", "pods", "-l", "app=web"])?);
        let ready: Vec<Value> = all.iter().filter(|p| pod_ready(p)).cloned().collect();
        Ok((all.len() == n && ready.len() == n).then_some(ready))
    })
}

fn wait_pod_ready(k: &Kubectl, name: &str) -> Result<Value> {
    wait_for(&format!("pod {name} ready"), 90 * SECOND, SECOND, || {
        let pod = k.json(&["get", "pod", name])?;
        Ok(pod_ready(&pod).then_some(pod))
    })
}

/// Fetches `url` from the host with busybox wget (under `timeout`: busybox 1.35's own `wget -T`
/// crashes in the static build).
fn host_get(url: &str) -> Result<String> {
    run_ok(Command::new("busybox").args(["timeout", "5", "busybox", "wget", "-qO-", url]))
}

/// Asks the cluster DNS (10.96.0.10) for `name` from the host and returns the addresses answered.
fn host_lookup(name: &str) -> Result<Vec<String>> {
    let out = run_ok(Command::new("busybox").args(["nslookup", name, "10.96.0.10"]))?;
    // busybox prints the server first, then "Name: ..." followed by "Address: ..." lines.
    let answers = out
        .split_once("Name:")
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .map(|a| a.trim().to_string())
        .collect();
    Ok(answers)
}

/// Whether `ip` is in 10.96.0.0/12.
fn in_service_range(ip: &str) -> bool {
    let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
    octets.len() == 4 && octets[0] == 10 && (96..=111).contains(&octets[1])
}

fn distinct_backends(responses: &str) -> BTreeSet<String> {
    responses
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .collect()
}

/// The whole skeleton flow with one kubectl binary in one namespace.
fn skeleton_flow(k: &Kubectl, cluster: &Cluster, node: &str) -> Result<()> {
    let ns = k.namespace.clone();
    eprintln!("--- flow with {} in namespace {ns}", k.binary.display());
    if ns != "default" {
        k.ok_with_stdin(
            &["apply", "-f", "-"],
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
        )?;
    }

    // 1. Deployment + Service; three pods Running, scheduled, created through a ReplicaSet.
    let applied = k.ok_with_stdin(&["apply", "-f", "-"], &web_manifest("v1"))?;
    ensure!(
        applied.contains("deployment.apps/web created") && applied.contains("service/web created"),
        "apply output: {applied}"
    );
    let again = k.ok_with_stdin(&["apply", "-f", "-"], &web_manifest("v1"))?;
    ensure!(
        again.contains("deployment.apps/web unchanged"),
        "second apply should change nothing: {again}"
    );
    let pods = wait_web_ready(k, 3, 120 * SECOND)?;
    let deploy = k.json(&["get", "deployment", "web"])?;
    let deploy_uid = field(&deploy, "/metadata/uid");
    let mut hostnames = BTreeSet::new();
    for pod in &pods {
        let name = field(pod, "/metadata/name");
        let ip = field(pod, "/status/podIP");
        ensure!(
            ip.starts_with("10.244.0."),
            "pod {name} IP {ip} not in 10.244.0.0/24"
        );
        ensure!(
            field(pod, "/spec/nodeName") == node,
            "pod {name} not on {node}"
        );
        let owner = pod
            .pointer("/metadata/ownerReferences/0")
            .context("pod has no owner")?;
        ensure!(field(owner, "/kind") == "ReplicaSet", "pod owner: {owner}");
        let rs = k.json(&["get", "replicaset", &field(owner, "/name")])?;
        ensure!(
            field(&rs, "/metadata/ownerReferences/0/uid") == deploy_uid,
            "replicaset not owned by the deployment"
        );
        let scheduled = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .any(|c| field(c, "/type") == "PodScheduled" && field(c, "/status") == "True")
            })
            .unwrap_or(false);
        ensure!(scheduled, "pod {name} has no PodScheduled=True condition");
        hostnames.insert(name);
    }
    let events = items(&k.json(&["get", "events"])?);
    for name in &hostnames {
        ensure!(
            events
                .iter()
                .any(|e| field(e, "/reason") == "Scheduled"
                    && field(e, "/involvedObject/name") == *name),
            "no Scheduled event for pod {name}"
        );
    }

    // 2. The Service answers by VIP from the host, by DNS name from the host and from a pod.
    let svc = k.json(&["get", "service", "web"])?;
    let vip = field(&svc, "/spec/clusterIP");
    ensure!(
        in_service_range(&vip),
        "ClusterIP {vip} outside 10.96.0.0/12"
    );
    // kube-proxy programs endpoints as their slices change (pods just turned Ready), so rounds of
    // 30 requests are repeated until one of them spreads; every answer must come from a pod.
    let mut backends = BTreeSet::new();
    let spread = wait_for(
        "the VIP to spread over the pods",
        30 * SECOND,
        SECOND,
        || {
            let mut from_host = String::new();
            for _ in 0..30 {
                from_host.push_str(&wait_for("the VIP to answer", 30 * SECOND, SECOND, || {
                    host_get(&format!("http://{vip}/")).map(Some)
                })?);
            }
            backends = distinct_backends(&from_host);
            ensure!(
                backends.iter().all(|b| hostnames.contains(b)),
                "requests from the host reached {backends:?}; pods are {hostnames:?}"
            );
            Ok((backends.len() > 1).then_some(()))
        },
    );
    ensure!(
        spread.is_ok(),
        "30 requests from the host reached {backends:?}; pods are {hostnames:?}"
    );
    let dns_name = format!("web.{ns}.svc.cluster.local");
    let answers = wait_for("DNS to answer", 30 * SECOND, SECOND, || {
        let a = host_lookup(&dns_name)?;
        Ok((!a.is_empty()).then_some(a))
    })?;
    ensure!(
        answers.contains(&vip),
        "{dns_name} resolved to {answers:?}, not {vip}"
    );
    k.ok_with_stdin(&["apply", "-f", "-"], CLIENT)?;
    wait_pod_ready(k, "client")?;
    let loop_cmd =
        format!("for i in $(seq 30); do timeout 5 wget -qO- http://{dns_name}/ || echo FAIL; done");
    let from_pod = k.ok(&["exec", "client", "--", "sh", "-c", &loop_cmd])?;
    ensure!(
        !from_pod.contains("FAIL"),
        "requests from a pod failed:\n{from_pod}"
    );
    let backends = distinct_backends(&from_pod);
    ensure!(
        backends.len() > 1,
        "30 requests from a pod by name reached only {backends:?}"
    );
    let by_vip = k.ok(&[
        "exec",
        "client",
        "--",
        "timeout",
        "5",
        "wget",
        "-qO-",
        &format!("http://{vip}/"),
    ])?;
    ensure!(
        by_vip.starts_with("v1 "),
        "request by VIP from a pod: {by_vip}"
    );

    // 3. The counter pod: logs grow, exec runs commands and passes exit codes back.
    k.ok_with_stdin(&["apply", "-f", "-"], COUNTER)?;
    wait_pod_ready(k, "counter")?;
    std::thread::sleep(3 * SECOND);
    let first = k.ok(&["logs", "counter"])?;
    std::thread::sleep(3 * SECOND);
    let second = k.ok(&["logs", "counter"])?;
    let last_index = |logs: &str| -> Result<u64> {
        let line = logs.lines().last().context("no log lines")?;
        let n = line.split(':').next().unwrap_or_default();
        n.parse().with_context(|| format!("log line {line:?}"))
    };
    ensure!(first.starts_with("0: "), "first log line: {first}");
    ensure!(
        last_index(&second)? > last_index(&first)?,
        "logs did not grow:\n{first}\n---\n{second}"
    );
    let tail = k.ok(&["logs", "counter", "--tail=1"])?;
    ensure!(tail.lines().count() == 1, "--tail=1 gave {tail:?}");
    let echoed = k.ok(&["exec", "counter", "--", "echo", "hello-from-exec"])?;
    ensure!(
        echoed.trim() == "hello-from-exec",
        "exec printed {echoed:?}"
    );
    let failed = k.output(&["exec", "counter", "--", "sh", "-c", "exit 3"])?;
    ensure!(
        failed.status.code() == Some(3),
        "exec of 'exit 3' ended with {:?}",
        failed.status
    );

    // 4. Scale up and down.
    k.ok(&["scale", "deployment/web", "--replicas=5"])?;
    wait_web_ready(k, 5, 120 * SECOND)?;
    k.ok(&["scale", "deployment/web", "--replicas=1"])?;
    wait_web_ready(k, 1, 120 * SECOND)?;

    // 5. Rolling update of the command; never fewer than replicas - maxUnavailable ready pods.
    k.ok(&["scale", "deployment/web", "--replicas=4"])?;
    wait_web_ready(k, 4, 120 * SECOND)?;
    let min_ready = Arc::new(Mutex::new(usize::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (k, min_ready, stop) = (k.clone(), min_ready.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(pods) = web_pods(&k) {
                    let ready = pods.iter().filter(|p| pod_ready(p)).count();
                    if let Ok(mut min) = min_ready.lock() {
                        *min = (*min).min(ready);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let patch = r#"{"spec":{"template":{"spec":{"containers":[{"name":"httpd","command":["sh","-c","mkdir -p /www && echo \"v2 $(hostname)\" > /www/index.html && exec httpd -f -p 8080 -h /www"]}]}}}}"#;
    k.ok(&["patch", "deployment", "web", "-p", patch])?;
    let status = k.ok(&["rollout", "status", "deployment/web", "--timeout=180s"])?;
    stop.store(true, Ordering::Relaxed);
    watcher.join().ok();
    ensure!(
        status.contains("successfully rolled out"),
        "rollout status said: {status}"
    );
    let min = *min_ready.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    // maxUnavailable defaults to 25% of 4 = 1.
    ensure!(
        min >= 3,
        "only {min} web pods were ready at one point of the rollout"
    );
    let pods = wait_web_ready(k, 4, 120 * SECOND)?;
    for pod in &pods {
        let ip = field(pod, "/status/podIP");
        let page = host_get(&format!("http://{ip}:8080/"))?;
        ensure!(page.starts_with("v2 "), "pod {ip} still serves {page:?}");
    }

    // 6. Delete everything: pods, containers, service rules and network namespaces go away.
    k.ok(&["delete", "deployment", "web"])?;
    k.ok(&["delete", "service", "web"])?;
    k.ok(&["delete", "pod", "counter", "client", "--grace-period=1"])?;
    wait_for("all pods gone", 120 * SECOND, SECOND, || {
        let left = items(&k.json(&["get", "pods"])?);
        Ok(left.is_empty().then_some(()))
    })?;
    wait_for("replicasets gone", 60 * SECOND, SECOND, || {
        let left = items(&k.json(&["get", "replicasets"])?);
        Ok(left.is_empty().then_some(()))
    })?;
    let socket = cluster.containerd_socket();
    wait_for(
        "containers gone from containerd",
        60 * SECOND,
        SECOND,
        || {
            let out = run_ok(Command::new("ctr").arg("-a").arg(&socket).args([
                "-n",
                "k8s.io",
                "containers",
                "ls",
                "-q",
            ]))?;
            Ok(out.trim().is_empty().then_some(()))
        },
    )?;
    wait_for("service rules gone", 30 * SECOND, SECOND, || {
        let table = run_ok(Command::new("nft").args(["list", "table", "ip", "kube-proxy"]))?;
        Ok((!table.contains(&vip)).then_some(()))
    })?;
    wait_for("pod network namespaces gone", 30 * SECOND, SECOND, || {
        let list = run_ok(Command::new("ip").args(["netns", "list"]))?;
        Ok((!list.lines().any(|l| l.starts_with("kube-"))).then_some(()))
    })?;
    Ok(())
}

/// `describe node` shows the kubelet's node events, which upstream's kubectl finds by the
/// node's name standing as their UID, and the node lifecycle controller's, which name the
/// node's real UID.
fn node_events_described(k: &Kubectl, node: &str) -> Result<()> {
    let what = format!("node events in describe node with {}", k.binary.display());
    wait_for(&what, 30 * SECOND, SECOND, || {
        let text = k.ok(&["describe", "node", node])?;
        let events = text.split_once("\nEvents:").map_or("", |(_, e)| e);
        let expected = [
            "Starting kubelet.",
            "status is now: NodeHasSufficientMemory",
            "status is now: NodeReady",
            // The node lifecycle controller's, about the node's UID rather than its name.
            "Registered Node",
        ];
        Ok(expected.iter().all(|e| events.contains(e)).then_some(()))
    })
}

fn node_name(k: &Kubectl) -> Result<String> {
    let nodes = items(&k.json(&["get", "nodes"])?);
    ensure!(nodes.len() == 1, "expected one node, got {}", nodes.len());
    Ok(field(&nodes[0], "/metadata/name"))
}

#[test]
#[ignore = "needs root, the release binaries and a whole cluster; hack/test.sh runs it"]
fn skeleton_flow_runs_on_a_one_node_cluster() -> Result<()> {
    let storage = std::env::var("KUBE_STORAGE").unwrap_or_else(|_| "sqlite".to_string());
    let dir = PathBuf::from(format!("/tmp/kube-e2e-{storage}"));
    let cluster = Cluster::up(&dir, &storage)?;
    eprintln!(
        "bring-up on {storage}: {:.1} s (build excluded)",
        cluster.bring_up.as_secs_f64()
    );
    let upstream = Kubectl {
        binary: PathBuf::from("/usr/bin/kubectl"),
        kubeconfig: cluster.kubeconfig(),
        namespace: "default".to_string(),
    };
    let ours = Kubectl {
        binary: bin_dir().join("kubectl"),
        kubeconfig: cluster.kubeconfig(),
        namespace: "e2e-ours".to_string(),
    };
    let node = node_name(&upstream)?;
    for k in [&upstream, &ours] {
        node_events_described(k, &node)?;
    }
    for k in [&upstream, &ours] {
        let start = Instant::now();
        if let Err(error) = skeleton_flow(k, &cluster, &node) {
            bail!("{error:#}\n\ncomponent logs:\n{}", cluster.component_logs());
        }
        eprintln!(
            "flow with {} on {storage}: {:.1} s",
            k.binary.display(),
            start.elapsed().as_secs_f64()
        );
    }
    let said = cluster.down()?;
    eprintln!("{said}");
    let netns = run_ok(Command::new("ip").args(["netns", "list"]))?;
    ensure!(
        !netns.lines().any(|l| l.starts_with("kube-")),
        "network namespaces left: {netns}"
    );
    let bridge = run(Command::new("ip").args(["link", "show", "cni0"]))?;
    ensure!(!bridge.status.success(), "the cni0 bridge is still there");
    let table = run(Command::new("nft").args(["list", "table", "ip", "kube-proxy"]))?;
    ensure!(
        !table.status.success(),
        "the kube-proxy nft table is still there"
    );
    Ok(())
}
