//! Services end to end on a real one-node cluster (issue 8): kube-proxy's nftables rules and
//! kube-dns with real containers. From a pod and from the host a ClusterIP answers by VIP and by
//! name and spreads requests over every ready endpoint; a pod that turns unready stops receiving
//! traffic; a NodePort answers on the node IP; ClientIP affinity sticks; a Service without
//! endpoints is refused at once; deleting a Service removes its rules.
//!
//! Needs root and the release binaries, so it is ignored by default; `hack/test.sh` runs it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::{field, items, pod_ready, run, run_ok, wait_for, Cluster, Kubectl};
use serde_json::Value;

const SECOND: Duration = Duration::from_secs(1);

/// Three httpd pods answering `<hostname>`, ready while /tmp/ready exists; the Services under
/// test; a client pod.
const MANIFEST: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
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
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox:1.35
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && touch /tmp/ready && exec httpd -f -p 8080 -h /www"]
        ports:
        - name: http
          containerPort: 8080
        readinessProbe:
          exec:
            command: ["cat", "/tmp/ready"]
          periodSeconds: 1
          failureThreshold: 1
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
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: web-nodeport
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: sticky
spec:
  selector:
    app: web
  sessionAffinity: ClientIP
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: empty
spec:
  selector:
    app: nothing
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: busybox:1.35
    command: ["sleep", "3600"]
"#;

/// Fetches `url` from the host with busybox wget (under `timeout`: busybox 1.35's own `wget -T`
/// crashes in the static build).
fn host_get(url: &str) -> Result<String> {
    run_ok(Command::new("busybox").args(["timeout", "5", "busybox", "wget", "-qO-", url]))
}

/// `count` fetches of `url` from the host; the backends (hostnames) that answered.
fn host_backends(url: &str, count: usize) -> Result<Vec<String>> {
    (0..count)
        .map(|_| host_get(url).map(|page| page.trim().to_string()))
        .collect()
}

/// `count` fetches of `url` from the client pod; the backends that answered (FAIL on errors).
fn pod_backends(k: &Kubectl, url: &str, count: usize) -> Result<Vec<String>> {
    let script =
        format!("for i in $(seq {count}); do timeout 5 wget -qO- {url} || echo FAIL; done");
    let out = k.ok(&["exec", "client", "--", "sh", "-c", &script])?;
    Ok(out.lines().map(|l| l.trim().to_string()).collect())
}

/// Asks the cluster DNS (10.96.0.10) for `name` from the host and returns the addresses answered.
fn host_lookup(name: &str) -> Result<Vec<String>> {
    let out = run_ok(Command::new("busybox").args(["nslookup", name, "10.96.0.10"]))?;
    Ok(out
        .split_once("Name:")
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .map(|a| a.trim().to_string())
        .collect())
}

fn distinct(backends: &[String]) -> BTreeSet<String> {
    backends.iter().cloned().collect()
}

/// The ready web pods by name, once exactly `n` exist and all are ready.
fn wait_web_ready(k: &Kubectl, n: usize) -> Result<BTreeSet<String>> {
    wait_for(&format!("{n} ready web pods"), 120 * SECOND, SECOND, || {
        let all = items(&k.json(&["get", "pods", "-l", "app=web"])?);
        let ready: BTreeSet<String> = all
            .iter()
            .filter(|p| pod_ready(p))
            .map(|p| field(p, "/metadata/name"))
            .collect();
        Ok((all.len() == n && ready.len() == n).then_some(ready))
    })
}

fn nft_table() -> Result<String> {
    run_ok(Command::new("nft").args(["list", "table", "ip", "kube-proxy"]))
}

/// Whether `text` mentions the address `ip` (as a whole token, so 10.96.0.5 is not 10.96.0.50).
fn mentions(text: &str, ip: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|token| token == ip)
}

fn flow(k: &Kubectl) -> Result<()> {
    k.ok_with_stdin(&["apply", "-f", "-"], MANIFEST)?;
    let pods = wait_web_ready(k, 3)?;
    wait_for("the client pod", 90 * SECOND, SECOND, || {
        Ok(pod_ready(&k.json(&["get", "pod", "client"])?).then_some(()))
    })?;
    let vip = field(&k.json(&["get", "service", "web"])?, "/spec/clusterIP");
    let url = format!("http://{vip}/");

    // ClusterIP by VIP from the host: every ready endpoint answers.
    wait_for("the VIP to reach every pod", 30 * SECOND, SECOND, || {
        let seen = distinct(&host_backends(&url, 30)?);
        ensure!(seen.is_subset(&pods), "{seen:?} are not all of {pods:?}");
        Ok((seen == pods).then_some(()))
    })?;
    // By name from the host (through the cluster DNS), and from a pod by name and VIP.
    let name = "web.default.svc.cluster.local";
    let answers = wait_for("DNS to answer", 30 * SECOND, SECOND, || {
        let a = host_lookup(name)?;
        Ok((!a.is_empty()).then_some(a))
    })?;
    ensure!(answers == [vip.clone()], "{name} resolved to {answers:?}");
    ensure!(pods.contains(host_get(&format!("http://{}/", answers[0]))?.trim()));
    let from_pod = pod_backends(k, &format!("http://{name}/"), 30)?;
    ensure!(
        distinct(&from_pod) == pods,
        "30 requests from a pod by name reached {:?}, pods are {pods:?}",
        distinct(&from_pod)
    );
    let by_vip = pod_backends(k, &url, 5)?;
    ensure!(
        distinct(&by_vip).is_subset(&pods),
        "requests by VIP from a pod: {by_vip:?}"
    );
    let short = pod_backends(k, "http://web/", 1)?;
    ensure!(
        distinct(&short).is_subset(&pods),
        "the search path: {short:?}"
    );

    // NodePort on the node IP, from the host and from a pod.
    let node = items(&k.json(&["get", "nodes"])?)
        .into_iter()
        .next()
        .context("no node")?;
    let node_ip = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| field(a, "/type") == "InternalIP"))
        .map(|a| field(a, "/address"))
        .context("the node has no InternalIP")?;
    let node_port = k
        .json(&["get", "service", "web-nodeport"])?
        .pointer("/spec/ports/0/nodePort")
        .and_then(Value::as_i64)
        .context("web-nodeport has no nodePort")?;
    let node_url = format!("http://{node_ip}:{node_port}/");
    let answered = wait_for("the NodePort to answer", 30 * SECOND, SECOND, || {
        host_get(&node_url).map(Some)
    })?;
    ensure!(
        pods.contains(answered.trim()),
        "NodePort answered {answered}"
    );
    let from_pod = pod_backends(k, &node_url, 3)?;
    ensure!(
        distinct(&from_pod).is_subset(&pods),
        "NodePort from a pod: {from_pod:?}"
    );

    // ClientIP affinity: the same client always reaches the same pod.
    let sticky = field(&k.json(&["get", "service", "sticky"])?, "/spec/clusterIP");
    let sticky_url = format!("http://{sticky}/");
    wait_for("the sticky VIP", 30 * SECOND, SECOND, || {
        host_get(&sticky_url).map(Some)
    })?;
    let seen = distinct(&host_backends(&sticky_url, 15)?);
    ensure!(
        seen.len() == 1,
        "ClientIP affinity from the host reached {seen:?}"
    );
    let seen = distinct(&pod_backends(k, &sticky_url, 15)?);
    ensure!(
        seen.len() == 1 && seen.is_subset(&pods),
        "ClientIP affinity from a pod reached {seen:?}"
    );

    // A Service without endpoints is refused at once (not a timeout, which exits 124).
    let empty = field(&k.json(&["get", "service", "empty"])?, "/spec/clusterIP");
    for (who, output) in [
        (
            "host",
            run(Command::new("busybox").args([
                "timeout",
                "20",
                "busybox",
                "wget",
                "-qO-",
                &format!("http://{empty}/"),
            ]))?,
        ),
        (
            "pod",
            k.output(&[
                "exec",
                "client",
                "--",
                "timeout",
                "20",
                "wget",
                "-qO-",
                &format!("http://{empty}/"),
            ])?,
        ),
    ] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            !output.status.success() && stderr.contains("refused"),
            "from the {who}, a service without endpoints gave {:?}: {stderr}",
            output.status
        );
    }

    // A pod that turns unready stops receiving traffic.
    let victim = pods.iter().next().context("no pod")?.clone();
    k.ok(&["exec", &victim, "--", "rm", "/tmp/ready"])?;
    wait_for(
        &format!("{victim} to turn unready"),
        30 * SECOND,
        SECOND,
        || Ok((!pod_ready(&k.json(&["get", "pod", &victim])?)).then_some(())),
    )?;
    let rest: BTreeSet<String> = pods.iter().filter(|p| **p != victim).cloned().collect();
    wait_for(
        "traffic to avoid the unready pod",
        30 * SECOND,
        SECOND,
        || Ok((distinct(&host_backends(&url, 20)?) == rest).then_some(())),
    )?;
    let from_pod = distinct(&pod_backends(k, &url, 20)?);
    ensure!(
        from_pod == rest,
        "after {victim} turned unready, pods reached {from_pod:?}"
    );

    // Deleting a Service removes its rules.
    ensure!(mentions(&nft_table()?, &vip), "the table never had {vip}");
    k.ok(&["delete", "service", "web"])?;
    wait_for("the service rules to go", 30 * SECOND, SECOND, || {
        Ok((!mentions(&nft_table()?, &vip)).then_some(()))
    })?;
    let gone =
        run(Command::new("busybox").args(["timeout", "10", "busybox", "wget", "-qO-", &url]))?;
    ensure!(!gone.status.success(), "the deleted service still answered");
    Ok(())
}

#[test]
#[ignore = "needs root, the release binaries and a whole cluster; hack/test.sh runs it"]
fn services_load_balance_through_nftables_and_dns() -> Result<()> {
    let storage = std::env::var("KUBE_STORAGE").unwrap_or_else(|_| "sqlite".to_string());
    let dir = PathBuf::from(format!("/tmp/kube-e2e-services-{storage}"));
    let cluster = Cluster::up(&dir, &storage)?;
    let k = Kubectl {
        binary: PathBuf::from("/usr/bin/kubectl"),
        kubeconfig: cluster.kubeconfig(),
        namespace: "default".to_string(),
    };
    if let Err(error) = flow(&k) {
        bail!("{error:#}\n\ncomponent logs:\n{}", cluster.component_logs());
    }
    let said = cluster.down()?;
    eprintln!("{said}");
    Ok(())
}
