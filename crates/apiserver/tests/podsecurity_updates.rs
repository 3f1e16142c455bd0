//! PodSecurity warnings of updates reach the client as upstream's `Warning: 299 - "..."`
//! headers, printed by the upstream `kubectl` as `Warning: ...`: a workload updated by
//! `kubectl apply` (a strategic merge PATCH) or `kubectl replace` (a PUT) is judged again, a pod
//! only on a significant update (a changed image), never on a label change.

use std::path::Path;

use kube_apiserver::testing::TestServer;
use serde_json::{json, Value};

mod support;
use support::{call, code};

const KUBECTL: &str = "/usr/bin/kubectl";

const WARNING: &str = "Warning: would violate PodSecurity \"restricted:latest\": \
    allowPrivilegeEscalation != false (container \"c\" must set \
    securityContext.allowPrivilegeEscalation=false)";

/// Runs kubectl with `manifest` written to a file named `file`; returns success and stderr.
async fn kubectl(
    server: &TestServer,
    args: &[&str],
    file: &str,
    manifest: &Value,
) -> anyhow::Result<(bool, String)> {
    std::fs::write(server.dir().join(file), serde_json::to_vec(manifest)?)?;
    let output = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .arg("-f")
        .arg(file)
        .current_dir(server.dir())
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

fn deployment(image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "warned"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image}]}}}})
}

fn pod(image: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "warned", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": image}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_carry_pod_security_warnings_to_kubectl() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("note: {KUBECTL} not installed; skipping");
        return Ok(());
    }
    let server = TestServer::start().await?;
    let admin = server.client().await?;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "warned",
        "labels": {"pod-security.kubernetes.io/warn": "restricted"}}});
    let r = call(&admin, "POST", "/api/v1/namespaces", Some(ns)).await;
    assert_eq!(code(&r), 200, "{r:?}");

    // Workloads: the create, then each apply (PATCH) and replace (PUT) warns again.
    let (ok, stderr) = kubectl(&server, &["apply"], "d.json", &deployment("busybox:1.35")).await?;
    assert!(ok, "{stderr}");
    assert!(stderr.contains(WARNING), "create: {stderr}");
    let (ok, stderr) = kubectl(&server, &["apply"], "d.json", &deployment("busybox:1.36")).await?;
    assert!(ok, "{stderr}");
    assert!(stderr.contains(WARNING), "apply: {stderr}");
    assert_eq!(stderr.matches("would violate").count(), 1, "{stderr}");
    let (ok, stderr) =
        kubectl(&server, &["replace"], "d.json", &deployment("busybox:1.37")).await?;
    assert!(ok, "{stderr}");
    assert!(stderr.contains(WARNING), "replace: {stderr}");
    let (ok, stderr) = kubectl(
        &server,
        &["apply", "--server-side", "--force-conflicts"],
        "d.json",
        &deployment("busybox:1.38"),
    )
    .await?;
    assert!(ok, "{stderr}");
    assert!(stderr.contains(WARNING), "server-side apply: {stderr}");

    // Pods: only a significant update (a new image) is judged; a label change is not.
    let (ok, stderr) = kubectl(
        &server,
        &["apply"],
        "p.json",
        &pod("busybox:1.35", json!({"v": "1"})),
    )
    .await?;
    assert!(ok, "{stderr}");
    assert!(stderr.contains(WARNING), "pod create: {stderr}");
    let (ok, stderr) = kubectl(
        &server,
        &["apply"],
        "p.json",
        &pod("busybox:1.35", json!({"v": "2"})),
    )
    .await?;
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("would violate"), "label change: {stderr}");
    let (ok, stderr) = kubectl(
        &server,
        &["apply"],
        "p.json",
        &pod("busybox:1.36", json!({"v": "2"})),
    )
    .await?;
    assert!(ok, "{stderr}");
    assert!(stderr.contains(WARNING), "image change: {stderr}");

    // A compliant template updates silently.
    let mut hardened = deployment("busybox:1.38");
    hardened["spec"]["template"]["spec"]["securityContext"] =
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
    hardened["spec"]["template"]["spec"]["containers"][0]["securityContext"] =
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    let (ok, stderr) = kubectl(&server, &["apply"], "d.json", &hardened).await?;
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("would violate"), "hardened: {stderr}");
    Ok(())
}
