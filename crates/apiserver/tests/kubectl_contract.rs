//! The client contract of issue 3 driven by the upstream `kubectl` (`/usr/bin/kubectl`) against
//! the in-process apiserver, on both storage backends (SQLite, and a real etcd started for the
//! test when the `etcd` binary is installed): create -f (multi-document file and directory), get
//! in every output format with label and field selectors, describe, client-side apply of a
//! two-container template, server-side apply with managedFields, a field-manager conflict and
//! `--force-conflicts`, edit through an EDITOR script, label, annotate, patch of every type,
//! scale, delete with each cascade, `get -w` streaming changes, the pod table columns (and
//! `-o wide`), explain, api-resources, and `--dry-run=server`. Skipped with
//! a note when kubectl is not installed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kube_apiserver::options::StorageBackend;
use kube_apiserver::testing::TestServer;
use serde_json::Value;
use support::etcd::Etcd;

mod support;

const KUBECTL: &str = "/usr/bin/kubectl";

fn have_kubectl() -> bool {
    if Path::new(KUBECTL).exists() {
        true
    } else {
        eprintln!("note: {KUBECTL} not installed; skipping");
        false
    }
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn kubectl_env(
    server: &TestServer,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Out> {
    let output = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .envs(env.iter().copied())
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

async fn kubectl(server: &TestServer, args: &[&str]) -> anyhow::Result<Out> {
    kubectl_env(server, args, &[]).await
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

async fn get_json(server: &TestServer, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    Ok(serde_json::from_str(&ok(server, &all).await?)?)
}

/// Starts etcd and an apiserver on it; `None` when etcd is not installed.
async fn etcd_server() -> anyhow::Result<Option<(TestServer, Etcd)>> {
    let Some(etcd) = support::etcd::start("the etcd half of this test").await? else {
        return Ok(None);
    };
    let endpoints = vec![etcd.url.clone()];
    let server = TestServer::start_with(|o| {
        o.storage_backend = StorageBackend::Etcd3;
        o.etcd_servers = endpoints;
    })
    .await?;
    Ok(Some((server, etcd)))
}

const MULTI: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: one
  labels: {tier: a}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: two
  labels: {tier: b}
data: {k: w}
"#;

fn two_containers(image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: pair
spec:
  replicas: 1
  selector:
    matchLabels: {{app: pair}}
  template:
    metadata:
      labels: {{app: pair}}
    spec:
      containers:
      - name: main
        image: {image}
      - name: side
        image: busybox:1.35
"#
    )
}

const SSA: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa
spec:
  replicas: 2
  selector:
    matchLabels: {app: ssa}
  template:
    metadata:
      labels: {app: ssa}
    spec:
      containers:
      - name: main
        image: busybox:1.35
"#;

async fn create_and_get(server: &TestServer) -> anyhow::Result<()> {
    let dir = server.dir().join("manifests");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(server.dir().join("multi.yaml"), MULTI)?;
    std::fs::write(
        dir.join("a.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: three\ndata: {x: y}\n",
    )?;
    std::fs::write(
        dir.join("b.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: four\ndata: {p: cQ==}\n",
    )?;
    let out = ok(server, &["create", "-f", "multi.yaml"]).await?;
    assert!(out.contains("configmap/one created"), "{out}");
    assert!(out.contains("configmap/two created"), "{out}");
    let out = ok(server, &["create", "-f", "manifests"]).await?;
    assert!(out.contains("configmap/three created"), "{out}");
    assert!(out.contains("secret/four created"), "{out}");

    let names = ok(server, &["get", "cm", "-o", "name", "-l", "tier"]).await?;
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        ["configmap/one", "configmap/two"]
    );
    let b = ok(server, &["get", "cm", "-l", "tier=b", "-o", "name"]).await?;
    assert_eq!(b.trim(), "configmap/two");
    let by_field = ok(
        server,
        &[
            "get",
            "cm",
            "--field-selector",
            "metadata.name=three",
            "-o",
            "name",
        ],
    )
    .await?;
    assert_eq!(by_field.trim(), "configmap/three");
    let jp = ok(server, &["get", "cm", "one", "-o", "jsonpath={.data.k}"]).await?;
    assert_eq!(jp, "v");
    let yaml = ok(server, &["get", "cm", "one", "-o", "yaml"]).await?;
    assert!(
        yaml.contains("name: one") && yaml.contains("k: v"),
        "{yaml}"
    );
    assert!(!yaml.contains("managedFields"), "hidden by default: {yaml}");
    let shown = ok(
        server,
        &["get", "cm", "one", "-o", "yaml", "--show-managed-fields"],
    )
    .await?;
    assert!(shown.contains("manager: kubectl-create"), "{shown}");
    assert!(shown.contains("operation: Update"), "{shown}");
    let json = get_json(server, &["secret", "four"]).await?;
    assert_eq!(json["data"]["p"], "cQ==");
    let wide = ok(server, &["get", "cm", "-o", "wide"]).await?;
    assert!(wide.starts_with("NAME"), "{wide}");
    let described = ok(server, &["describe", "cm", "one"]).await?;
    assert!(
        described.contains("Name:") && described.contains("one"),
        "{described}"
    );
    Ok(())
}

async fn client_side_apply(server: &TestServer) -> anyhow::Result<()> {
    let file = server.dir().join("pair.yaml");
    std::fs::write(&file, two_containers("busybox:1.35"))?;
    let path = file.to_string_lossy().into_owned();
    ok(server, &["apply", "-f", &path]).await?;
    std::fs::write(&file, two_containers("busybox:1.36"))?;
    let out = ok(server, &["apply", "-f", &path]).await?;
    assert!(out.contains("deployment.apps/pair configured"), "{out}");
    let d = get_json(server, &["deploy", "pair"]).await?;
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(containers.len(), 2, "{d}");
    assert_eq!(containers[0]["image"], "busybox:1.36");
    assert_eq!(containers[1]["name"], "side");
    assert_eq!(containers[1]["image"], "busybox:1.35");
    let managers: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["manager"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        managers.contains(&"kubectl-client-side-apply"),
        "{managers:?}"
    );
    // Upgrading to server-side apply takes the client-side fields without conflicts.
    std::fs::write(&file, two_containers("busybox:1.37"))?;
    let out = ok(server, &["apply", "--server-side", "-f", &path]).await?;
    assert!(out.contains("serverside-applied"), "{out}");
    let d = get_json(server, &["deploy", "pair"]).await?;
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.37"
    );
    Ok(())
}

async fn server_side_apply(server: &TestServer) -> anyhow::Result<()> {
    let file = server.dir().join("ssa.yaml");
    std::fs::write(&file, SSA)?;
    let path = file.to_string_lossy().into_owned();
    let out = ok(server, &["apply", "--server-side", "-f", &path]).await?;
    assert!(
        out.contains("deployment.apps/ssa serverside-applied"),
        "{out}"
    );
    let d = get_json(server, &["deploy", "ssa"]).await?;
    let entry = d["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == "kubectl"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(entry["operation"], "Apply", "{d}");
    assert!(
        entry["fieldsV1"]["f:spec"]["f:replicas"].is_object(),
        "{entry}"
    );
    // Another manager changes a field kubectl applied: a conflict.
    let bumped = SSA.replace("replicas: 2", "replicas: 3");
    let other = server.dir().join("other.yaml");
    std::fs::write(&other, &bumped)?;
    let other = other.to_string_lossy().into_owned();
    let out = kubectl(
        server,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            &other,
        ],
    )
    .await?;
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{}",
        out.stderr
    );
    let forced = ok(
        server,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            &other,
        ],
    )
    .await?;
    assert!(forced.contains("serverside-applied"), "{forced}");
    let d = get_json(server, &["deploy", "ssa"]).await?;
    assert_eq!(d["spec"]["replicas"], 3);
    // Server-side dry run stores nothing.
    let dry = SSA.replace("replicas: 2", "replicas: 7");
    std::fs::write(&file, dry)?;
    ok(
        server,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            &path,
        ],
    )
    .await?;
    let after = get_json(server, &["deploy", "ssa"]).await?;
    assert_eq!(after["spec"]["replicas"], 3);
    assert_eq!(
        after["metadata"]["resourceVersion"],
        d["metadata"]["resourceVersion"]
    );
    Ok(())
}

async fn edit_label_annotate_patch_scale(server: &TestServer) -> anyhow::Result<()> {
    let editor = server.dir().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/k: v$/k: edited/' \"$1\"\n")?;
    Command::new("chmod").arg("+x").arg(&editor).status()?;
    let editor = editor.to_string_lossy().into_owned();
    let out = kubectl_env(server, &["edit", "cm", "one"], &[("EDITOR", &editor)]).await?;
    assert!(out.ok, "{}{}", out.stdout, out.stderr);
    let cm = get_json(server, &["cm", "one"]).await?;
    assert_eq!(cm["data"]["k"], "edited", "{cm}");
    ok(server, &["label", "cm", "one", "color=red"]).await?;
    ok(server, &["annotate", "cm", "one", "note=hi"]).await?;
    let cm = get_json(server, &["cm", "one"]).await?;
    assert_eq!(cm["metadata"]["labels"]["color"], "red");
    assert_eq!(cm["metadata"]["annotations"]["note"], "hi");
    ok(
        server,
        &[
            "patch",
            "cm",
            "one",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"m":"1"}}"#,
        ],
    )
    .await?;
    ok(
        server,
        &[
            "patch",
            "cm",
            "one",
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/data/j","value":"2"}]"#,
        ],
    )
    .await?;
    ok(
        server,
        &[
            "patch",
            "deploy",
            "pair",
            "--type",
            "strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox:1.36"}]}}}}"#,
        ],
    )
    .await?;
    let cm = get_json(server, &["cm", "one"]).await?;
    assert_eq!(cm["data"]["m"], "1");
    assert_eq!(cm["data"]["j"], "2");
    let d = get_json(server, &["deploy", "pair"]).await?;
    let containers = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[1]["image"], "busybox:1.36", "{d}");
    assert_eq!(containers[0]["name"], "main");
    ok(server, &["scale", "deploy", "pair", "--replicas=4"]).await?;
    let d = get_json(server, &["deploy", "pair"]).await?;
    assert_eq!(d["spec"]["replicas"], 4);
    Ok(())
}

async fn delete_cascades(server: &TestServer) -> anyhow::Result<()> {
    let out = ok(server, &["delete", "cm", "two", "--cascade=background"]).await?;
    assert!(out.contains("configmap \"two\" deleted"), "{out}");
    let dry = ok(server, &["delete", "cm", "three", "--dry-run=server"]).await?;
    assert!(dry.contains("(server dry run)"), "{dry}");
    ok(server, &["get", "cm", "three"]).await?;
    ok(
        server,
        &[
            "delete",
            "deploy",
            "pair",
            "--cascade=orphan",
            "--wait=false",
        ],
    )
    .await?;
    ok(
        server,
        &[
            "delete",
            "deploy",
            "ssa",
            "--cascade=foreground",
            "--wait=false",
        ],
    )
    .await?;
    for (name, finalizer) in [("pair", "orphan"), ("ssa", "foregroundDeletion")] {
        let out = kubectl(server, &["get", "deploy", name, "-o", "json"]).await?;
        if out.ok {
            // Without a garbage collector the finalizer stays: the object is marked deleting.
            let d: Value = serde_json::from_str(&out.stdout)?;
            assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
            let fins = d["metadata"]["finalizers"].to_string();
            assert!(fins.contains(finalizer), "{d}");
        }
    }
    Ok(())
}

/// `kubectl get -w --output-watch-events` prints each change as it happens: every step waits
/// for the line of the previous one, so the order is certain.
async fn watch_streams_changes(server: &TestServer) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let mut watch = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args([
            "get",
            "cm",
            "-l",
            "watched=yes",
            "-w",
            "--output-watch-events",
            "-o",
            r#"jsonpath={.type} {.object.metadata.name} {.object.data.k}{"\n"}"#,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = watch
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut next_line = async || -> anyhow::Result<String> {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await??
            .ok_or_else(|| anyhow::anyhow!("kubectl get -w ended"))?;
        Ok(line)
    };
    let file = server.dir().join("watched.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\n  labels: {watched: \"yes\"}\ndata: {k: first}\n",
    )?;
    let path = file.to_string_lossy().into_owned();
    ok(server, &["create", "-f", &path]).await?;
    assert_eq!(next_line().await?, "ADDED watched first");
    ok(
        server,
        &[
            "patch",
            "cm",
            "watched",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"k":"second"}}"#,
        ],
    )
    .await?;
    assert_eq!(next_line().await?, "MODIFIED watched second");
    ok(server, &["delete", "cm", "watched"]).await?;
    assert_eq!(next_line().await?, "DELETED watched second");
    watch.kill().await?;
    Ok(())
}

/// Pods print the upstream columns; `-o wide` adds IP and NODE.
async fn pod_columns(server: &TestServer) -> anyhow::Result<()> {
    ok(
        server,
        &["run", "solo", "--image=busybox:1.35", "--restart=Never"],
    )
    .await?;
    let table = ok(server, &["get", "pods"]).await?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("solo ") && l.contains("0/1")),
        "{table}"
    );
    let wide = ok(server, &["get", "pods", "-o", "wide"]).await?;
    let header = wide.lines().next().unwrap_or_default();
    for column in ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"] {
        assert!(
            header.split_whitespace().any(|c| c == column),
            "{column} missing: {wide}"
        );
    }
    ok(
        server,
        &["delete", "pod", "solo", "--grace-period=0", "--force"],
    )
    .await?;
    Ok(())
}

async fn discovery_and_explain(server: &TestServer) -> anyhow::Result<()> {
    let resources = ok(server, &["api-resources"]).await?;
    assert!(resources.contains("deployments"), "{resources}");
    let explain = ok(server, &["explain", "pods.spec.containers"]).await?;
    assert!(
        explain.contains("KIND:") && explain.contains("Pod"),
        "{explain}"
    );
    assert!(explain.contains("image"), "{explain}");
    // The upstream descriptions of the field and of its children are printed.
    assert!(
        explain.contains("DESCRIPTION:")
            && explain.contains("List of containers belonging to the pod"),
        "{explain}"
    );
    assert!(explain.contains("Container image name"), "{explain}");
    Ok(())
}

async fn contract(server: &TestServer) -> anyhow::Result<()> {
    create_and_get(server).await?;
    client_side_apply(server).await?;
    server_side_apply(server).await?;
    edit_label_annotate_patch_scale(server).await?;
    delete_cascades(server).await?;
    watch_streams_changes(server).await?;
    pod_columns(server).await?;
    discovery_and_explain(server).await?;
    Ok(())
}

#[tokio::test]
async fn kubectl_contract_on_sqlite() -> anyhow::Result<()> {
    if !have_kubectl() {
        return Ok(());
    }
    let server = TestServer::start().await?;
    contract(&server).await
}

#[tokio::test]
async fn kubectl_contract_on_etcd() -> anyhow::Result<()> {
    if !have_kubectl() {
        return Ok(());
    }
    let Some((server, _etcd)) = etcd_server().await? else {
        return Ok(());
    };
    contract(&server).await
}
