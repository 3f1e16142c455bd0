//! The upstream `kubectl` working from the full `/openapi/v2` document (every verb per path):
//! with `KUBECTL_OPENAPIV3_PATCH=false` kubectl builds its strategic merge patches from the v2
//! (gnostic protobuf) document, so `apply` twice changing one container of a two-container
//! template keeps the other, and `edit` (EDITOR a script) patches the same way; `explain` reads
//! the v3 documents. Skipped with a note when kubectl is not installed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kube_apiserver::testing::TestServer;
use serde_json::Value;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn kubectl(server: &TestServer, args: &[&str], editor: Option<&Path>) -> anyhow::Result<Out> {
    let mut command = tokio::process::Command::new(KUBECTL);
    command
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .env("KUBECTL_OPENAPIV3_PATCH", "false")
        .current_dir(server.dir())
        .stdin(std::process::Stdio::null());
    if let Some(editor) = editor {
        command.env("KUBE_EDITOR", editor).env("EDITOR", editor);
    }
    let output = command.output().await?;
    Ok(Out {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

fn deployment(web_image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: {web_image}
      - name: side
        image: busybox:1.35
"
    )
}

async fn images(server: &TestServer) -> anyhow::Result<Vec<(String, String)>> {
    let out = kubectl(server, &["get", "deployment", "web", "-o", "json"], None).await?;
    anyhow::ensure!(out.ok, "{}", out.stderr);
    let d: Value = serde_json::from_str(&out.stdout)?;
    Ok(d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["image"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_and_edits_with_the_v2_document() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("note: {KUBECTL} not installed; skipping");
        return Ok(());
    }
    let server = TestServer::start().await?;
    let dir = server.dir();
    std::fs::write(dir.join("d.yaml"), deployment("nginx:1.25"))?;
    let out = kubectl(&server, &["apply", "-f", "d.yaml"], None).await?;
    assert!(out.ok, "{}", out.stderr);

    // The second apply downloads the v2 document (protobuf) and patches one container.
    std::fs::write(dir.join("d.yaml"), deployment("nginx:1.26"))?;
    let out = kubectl(&server, &["apply", "-f", "d.yaml", "-v=6"], None).await?;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("/openapi/v2") && l.contains("200 OK")),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr
            .to_lowercase()
            .contains("failed to download openapi"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout.trim(), "deployment.apps/web configured");
    assert_eq!(
        images(&server).await?,
        pairs(&[("web", "nginx:1.26"), ("side", "busybox:1.35")])
    );

    // edit: the editor rewrites the sidecar's image; the patch keeps the other container.
    let editor = dir.join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/busybox:1.35/busybox:1.36/' \"$1\"\n",
    )?;
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755))?;
    let out = kubectl(&server, &["edit", "deployment", "web"], Some(&editor)).await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "deployment.apps/web edited");
    assert_eq!(
        images(&server).await?,
        pairs(&[("web", "nginx:1.26"), ("side", "busybox:1.36")])
    );

    let out = kubectl(
        &server,
        &["explain", "deployment.spec.template.spec.containers.image"],
        None,
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("FIELD: image <string>"),
        "{}",
        out.stdout
    );
    Ok(())
}
