//! The in-process apiserver driven by the upstream `kubectl` (`/usr/bin/kubectl`): create
//! (protobuf bodies), apply twice, get with server-side tables, scale, set image, describe,
//! watch, api-resources, delete. Skipped with a note when kubectl is not installed.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use kube_apiserver::testing::TestServer;

const KUBECTL: &str = "/usr/bin/kubectl";

const MANIFEST: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: httpd
        image: busybox:1.35
        command: ["httpd", "-f", "-p", "8080"]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"#;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn kubectl(server: &TestServer, args: &[&str]) -> anyhow::Result<Out> {
    let output = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .current_dir(server.dir())
        .stdin(Stdio::null())
        .output()
        .await?;
    Ok(Out {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

async fn ok(server: &TestServer, args: &[&str]) -> anyhow::Result<String> {
    let out = kubectl(server, args).await?;
    anyhow::ensure!(
        out.ok,
        "kubectl {args:?} failed: {}{}",
        out.stdout,
        out.stderr
    );
    Ok(out.stdout)
}

fn have_kubectl() -> bool {
    if Path::new(KUBECTL).exists() {
        true
    } else {
        eprintln!("note: {KUBECTL} not installed; skipping");
        false
    }
}

#[tokio::test]
async fn apply_twice_is_unchanged_and_get_scale_set_image_work() -> anyhow::Result<()> {
    if !have_kubectl() {
        return Ok(());
    }
    let server = TestServer::start().await?;
    let manifest = server.dir().join("web.yaml");
    std::fs::write(&manifest, MANIFEST)?;
    let path = manifest.to_string_lossy().into_owned();
    let first = ok(&server, &["apply", "-f", &path]).await?;
    assert!(first.contains("deployment.apps/web created"), "{first}");
    assert!(first.contains("service/web created"), "{first}");
    let second = ok(&server, &["apply", "-f", &path]).await?;
    assert!(second.contains("deployment.apps/web unchanged"), "{second}");
    assert!(second.contains("service/web unchanged"), "{second}");

    let deploys = ok(&server, &["get", "deploy", "-o", "wide"]).await?;
    let header: Vec<&str> = deploys
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert!(
        deploys.contains("0/2") && deploys.contains("app=web"),
        "{deploys}"
    );
    let svcs = ok(&server, &["get", "svc"]).await?;
    assert!(
        svcs.contains("kubernetes") && svcs.contains("10.96.0.1") && svcs.contains("80/TCP"),
        "{svcs}"
    );

    let scaled = ok(&server, &["scale", "deploy/web", "--replicas=3"]).await?;
    assert!(scaled.contains("scaled"), "{scaled}");
    let replicas = ok(
        &server,
        &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
    )
    .await?;
    assert_eq!(replicas, "3");
    ok(
        &server,
        &["set", "image", "deploy/web", "httpd=busybox:1.36"],
    )
    .await?;
    let image = ok(
        &server,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    )
    .await?;
    assert_eq!(image, "busybox:1.36");
    let described = ok(&server, &["describe", "deploy", "web"]).await?;
    assert!(
        described.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
        "{described}"
    );
    let patched = ok(
        &server,
        &["patch", "deploy", "web", "-p", r#"{"spec":{"replicas":1}}"#],
    )
    .await?;
    assert!(patched.contains("patched"), "{patched}");
    let deleted = ok(&server, &["delete", "-f", &path]).await?;
    assert!(deleted.contains("deleted"), "{deleted}");
    Ok(())
}

#[tokio::test]
async fn imperative_creates_send_protobuf_and_work() -> anyhow::Result<()> {
    if !have_kubectl() {
        return Ok(());
    }
    let server = TestServer::start().await?;
    ok(&server, &["create", "namespace", "demo"]).await?;
    ok(
        &server,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox:1.35",
            "-n",
            "demo",
            "--replicas=2",
        ],
    )
    .await?;
    ok(
        &server,
        &[
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=b",
            "-n",
            "demo",
        ],
    )
    .await?;
    ok(
        &server,
        &[
            "run",
            "p1",
            "--image=busybox:1.35",
            "-n",
            "demo",
            "--labels=app=x",
            "--",
            "sleep",
            "100",
        ],
    )
    .await?;
    let pods = ok(&server, &["get", "pods", "-n", "demo", "-o", "wide"]).await?;
    let header: Vec<&str> = pods
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    assert!(pods.contains("p1") && pods.contains("Pending"), "{pods}");
    let cmd = ok(
        &server,
        &[
            "get",
            "pod",
            "p1",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.containers[0].args}",
        ],
    )
    .await?;
    assert_eq!(cmd, r#"["sleep","100"]"#);
    let replicas = ok(
        &server,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    )
    .await?;
    assert_eq!(replicas, "2");
    let cms = ok(&server, &["get", "cm", "-n", "demo"]).await?;
    assert!(cms.contains("cfg") && cms.contains("DATA"), "{cms}");
    ok(&server, &["delete", "pod", "p1", "-n", "demo"]).await?;
    let missing = kubectl(&server, &["get", "pod", "p1", "-n", "demo"]).await?;
    assert!(
        !missing.ok && missing.stderr.contains("pods \"p1\" not found"),
        "{}",
        missing.stderr
    );
    Ok(())
}

#[tokio::test]
async fn discovery_commands_work() -> anyhow::Result<()> {
    if !have_kubectl() {
        return Ok(());
    }
    let server = TestServer::start().await?;
    let resources = ok(&server, &["api-resources"]).await?;
    for needle in [
        "deployments",
        "deploy",
        "apps/v1",
        "endpointslices",
        "leases",
        "horizontalpodautoscalers",
    ] {
        assert!(
            resources.contains(needle),
            "{needle} missing in {resources}"
        );
    }
    let version = ok(&server, &["version"]).await?;
    assert!(version.contains("Server Version: v1.33.0"), "{version}");
    let info = ok(&server, &["cluster-info"]).await?;
    assert!(info.contains("is running at"), "{info}");
    let can = ok(&server, &["auth", "can-i", "create", "pods"]).await?;
    assert_eq!(can.trim(), "yes");
    let whoami = ok(&server, &["auth", "whoami"]).await?;
    assert!(whoami.contains("kubernetes-admin"), "{whoami}");
    let ns = ok(&server, &["get", "ns"]).await?;
    assert!(ns.contains("kube-system") && ns.contains("Active"), "{ns}");
    Ok(())
}

#[tokio::test]
async fn get_watch_prints_changes() -> anyhow::Result<()> {
    if !have_kubectl() {
        return Ok(());
    }
    let server = TestServer::start().await?;
    ok(&server, &["create", "configmap", "w", "--from-literal=a=b"]).await?;
    let watch = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["get", "cm", "w", "-w", "--request-timeout=8s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ok(&server, &["label", "cm", "w", "x=y"]).await?;
    ok(&server, &["delete", "cm", "w"]).await?;
    let output = tokio::time::timeout(Duration::from_secs(20), watch.wait_with_output()).await??;
    let text = String::from_utf8_lossy(&output.stdout);
    let rows = text.lines().filter(|l| l.starts_with("w ")).count();
    assert!(
        rows >= 3,
        "expected the initial row and two changes:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn strict_field_validation_rejects_typos() -> anyhow::Result<()> {
    if !have_kubectl() {
        return Ok(());
    }
    let server = TestServer::start().await?;
    let manifest = server.dir().join("typo.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndatta:\n  a: b\n",
    )?;
    let out = kubectl(&server, &["apply", "-f", &manifest.to_string_lossy()]).await?;
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains("unknown field \"datta\""),
        "{}",
        out.stderr
    );
    Ok(())
}
