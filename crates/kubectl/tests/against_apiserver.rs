//! Our kubectl against the in-process apiserver (`kube_apiserver::testing::TestServer`):
//! each test runs kubectl commands as a user would and checks stdout, stderr and the outcome.

use std::path::Path;

use clap::Parser;
use kube_apiserver::testing::TestServer;
use kubectl::session::{Io, Session};
use kubectl::Options;

/// What one kubectl invocation produced.
struct Run {
    out: String,
    err: String,
    code: i32,
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<Run> {
    let mut argv = vec![
        "kubectl".to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let options = Options::try_parse_from(&argv)?;
    let (io, out, err) = Io::buffers();
    let mut session = Session::new(options.global.clone(), io);
    let result = kubectl::execute(&mut session, options.command).await;
    let (mut err_text, code) = (err.contents(), 0);
    let code = match result {
        Ok(()) => code,
        Err(e) => {
            err_text.push_str(&e.report());
            err_text.push('\n');
            e.exit_code()
        }
    };
    Ok(Run {
        out: out.contents(),
        err: err_text,
        code,
    })
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: httpd
        image: busybox:1.35
        command: [\"httpd\", \"-f\", \"-p\", \"80\"]
";

#[tokio::test]
async fn apply_creates_then_reports_unchanged_then_configures() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    let file = write(server.dir(), "web.yaml", DEPLOYMENT)?;

    let run = kubectl(&kc, &["apply", "-f", &file]).await?;
    assert_eq!(
        (run.out.as_str(), run.code),
        ("deployment.apps/web created\n", 0),
        "{}",
        run.err
    );

    let run = kubectl(&kc, &["apply", "-f", &file]).await?;
    assert_eq!(
        (run.out.as_str(), run.code),
        ("deployment.apps/web unchanged\n", 0),
        "{}",
        run.err
    );

    let file = write(
        server.dir(),
        "web.yaml",
        &DEPLOYMENT.replace("replicas: 1", "replicas: 3"),
    )?;
    let run = kubectl(&kc, &["apply", "-f", &file]).await?;
    assert_eq!(
        (run.out.as_str(), run.code),
        ("deployment.apps/web configured\n", 0),
        "{}",
        run.err
    );

    let run = kubectl(
        &kc,
        &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
    )
    .await?;
    assert_eq!(run.out, "3");
    let run = kubectl(
        &kc,
        &[
            "get",
            "deployment.apps/web",
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
    )
    .await?;
    assert!(
        run.out.contains("last-applied-configuration"),
        "{}",
        run.out
    );
    Ok(())
}

#[tokio::test]
async fn get_prints_tables_names_and_upstream_errors() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();

    let run = kubectl(&kc, &["get", "pods"]).await?;
    assert_eq!(
        (run.out.as_str(), run.err.as_str(), run.code),
        ("", "No resources found in default namespace.\n", 0)
    );

    let run = kubectl(&kc, &["get", "pods", "nope"]).await?;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.err,
        "Error from server (NotFound): pods \"nope\" not found\n"
    );

    let run = kubectl(&kc, &["get", "frobs"]).await?;
    assert_eq!(
        run.err,
        "error: the server doesn't have a resource type \"frobs\"\n"
    );
    assert_eq!(run.code, 1);

    let file = write(server.dir(), "cm.yaml", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: a\n  data:\n    k: v\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: b\n")?;
    let run = kubectl(&kc, &["create", "-f", &file]).await?;
    assert_eq!(
        run.out, "configmap/a created\nconfigmap/b created\n",
        "{}",
        run.err
    );

    let run = kubectl(&kc, &["create", "-f", &file]).await?;
    assert_eq!(run.code, 1);
    assert!(
        run.err
            .starts_with("Error from server (AlreadyExists): error when creating"),
        "{}",
        run.err
    );

    let run = kubectl(&kc, &["get", "cm", "-o", "name", "-l", "!nothing"]).await?;
    assert!(
        run.out.contains("configmap/a\nconfigmap/b\n"),
        "{} {}",
        run.out,
        run.err
    );

    let run = kubectl(&kc, &["get", "configmaps", "a", "b"]).await?;
    let lines: Vec<&str> = run.out.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("AGE"),
        "{}",
        run.out
    );
    assert!(lines[1].starts_with("a "), "{}", run.out);

    let run = kubectl(&kc, &["get", "cm", "a", "-o", "json"]).await?;
    let value: serde_json::Value = serde_json::from_str(&run.out)?;
    assert_eq!(value["kind"], "ConfigMap");
    assert_eq!(value["data"]["k"], "v");

    let run = kubectl(
        &kc,
        &["get", "ns", "-o", "custom-columns=NAME:.metadata.name"],
    )
    .await?;
    assert!(
        run.out.lines().any(|l| l.trim() == "default"),
        "{}",
        run.out
    );

    let run = kubectl(&kc, &["get", "cm/a", "ns/default", "-o", "name"]).await?;
    assert_eq!(run.out, "configmap/a\nnamespace/default\n");
    Ok(())
}

#[tokio::test]
async fn delete_waits_and_prints_like_upstream() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    let run = kubectl(
        &kc,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox:1.35",
            "--replicas=2",
        ],
    )
    .await?;
    assert_eq!(run.out, "deployment.apps/web created\n", "{}", run.err);

    let run = kubectl(&kc, &["delete", "deployment", "web"]).await?;
    assert_eq!(
        (run.out.as_str(), run.code),
        ("deployment.apps \"web\" deleted\n", 0),
        "{}",
        run.err
    );

    let run = kubectl(&kc, &["get", "deploy", "web"]).await?;
    assert_eq!(
        run.err,
        "Error from server (NotFound): deployments.apps \"web\" not found\n"
    );

    let run = kubectl(&kc, &["delete", "cm", "missing", "--ignore-not-found"]).await?;
    assert_eq!(run.code, 0, "{}", run.err);
    let run = kubectl(&kc, &["delete", "cm", "missing"]).await?;
    assert_eq!(
        run.err,
        "Error from server (NotFound): configmaps \"missing\" not found\n"
    );
    Ok(())
}

#[tokio::test]
async fn scale_label_annotate_patch_and_set_image_change_objects() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    let run = kubectl(
        &kc,
        &["create", "deployment", "web", "--image=busybox:1.35"],
    )
    .await?;
    assert_eq!(run.code, 0, "{}", run.err);

    let run = kubectl(&kc, &["scale", "deployment/web", "--replicas=4"]).await?;
    assert_eq!(run.out, "deployment.apps/web scaled\n", "{}", run.err);
    let run = kubectl(
        &kc,
        &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
    )
    .await?;
    assert_eq!(run.out, "4");

    let run = kubectl(&kc, &["label", "deployment", "web", "tier=front"]).await?;
    assert_eq!(run.out, "deployment.apps/web labeled\n", "{}", run.err);
    let run = kubectl(&kc, &["label", "deployment", "web", "tier=back"]).await?;
    assert_eq!(
        run.err,
        "error: 'tier' already has a value (front), and --overwrite is false\n"
    );
    let run = kubectl(&kc, &["annotate", "deploy/web", "note=hi"]).await?;
    assert_eq!(run.out, "deployment.apps/web annotated\n", "{}", run.err);

    let run = kubectl(
        &kc,
        &[
            "patch",
            "deployment",
            "web",
            "--type=merge",
            "-p",
            "{\"spec\":{\"replicas\":2}}",
        ],
    )
    .await?;
    assert_eq!(run.out, "deployment.apps/web patched\n", "{}", run.err);

    let run = kubectl(
        &kc,
        &["set", "image", "deployment/web", "busybox=busybox:1.36"],
    )
    .await?;
    assert_eq!(
        run.out, "deployment.apps/web image updated\n",
        "{}",
        run.err
    );
    let run = kubectl(&kc, &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.metadata.labels.tier} {.spec.template.spec.containers[0].image}"]).await?;
    assert_eq!(run.out, "2 front busybox:1.36");

    let run = kubectl(
        &kc,
        &[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
        ],
    )
    .await?;
    assert_eq!(run.out, "service/web exposed\n", "{}", run.err);
    let run = kubectl(
        &kc,
        &[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}",
        ],
    )
    .await?;
    assert_eq!(run.out, "8080");
    Ok(())
}

#[tokio::test]
async fn discovery_backed_commands_work() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    let run = kubectl(&kc, &["api-resources"]).await?;
    assert!(
        run.out
            .lines()
            .any(|l| l.starts_with("pods ") && l.contains("po")),
        "{}",
        run.out
    );
    assert!(
        run.out
            .lines()
            .any(|l| l.starts_with("deployments ") && l.contains("apps/v1")),
        "{}",
        run.out
    );

    let run = kubectl(&kc, &["version"]).await?;
    assert!(
        run.out
            .starts_with("Client Version: v1.33.0\nServer Version: v"),
        "{} {}",
        run.out,
        run.err
    );

    let run = kubectl(
        &kc,
        &[
            "run",
            "one",
            "--image=busybox:1.35",
            "--restart=Never",
            "--",
            "sleep",
            "1",
        ],
    )
    .await?;
    assert_eq!(run.out, "pod/one created\n", "{}", run.err);
    let run = kubectl(&kc, &["get", "po"]).await?;
    assert!(run.out.starts_with("NAME"), "{}", run.out);
    assert!(run.out.contains("one"), "{}", run.out);
    let run = kubectl(&kc, &["describe", "pod", "one"]).await?;
    assert!(run.out.starts_with("Name:"), "{} {}", run.out, run.err);
    assert!(
        run.out.contains("Image:") && run.out.contains("busybox:1.35"),
        "{}",
        run.out
    );

    let run = kubectl(
        &kc,
        &["wait", "--for=delete", "pod/never-existed", "--timeout=2s"],
    )
    .await?;
    assert_eq!(run.code, 0, "{}", run.err);

    let run = kubectl(&kc, &["config", "current-context"]).await?;
    assert_eq!(run.out, "test\n");
    let run = kubectl(&kc, &["config", "view"]).await?;
    assert!(
        run.out.contains("client-key-data: DATA+OMITTED"),
        "{}",
        run.out
    );
    Ok(())
}

/// Manual comparison aid: `KUBECTL_HOLD_SERVER=1 cargo test -p kubectl --test against_apiserver
/// hold_server -- --ignored --nocapture` starts a server and keeps it up for side-by-side runs of
/// our kubectl and the upstream one.
#[tokio::test]
#[ignore]
async fn hold_server() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    std::fs::write(
        "/tmp/kubectl-hold.kubeconfig",
        std::fs::read(&server.kubeconfig)?,
    )?;
    eprintln!("kubeconfig at /tmp/kubectl-hold.kubeconfig");
    let secs: u64 = std::env::var("KUBECTL_HOLD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    Ok(())
}

/// Runs the upstream kubectl (when installed) and returns stdout + stderr + status.
async fn upstream(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<Option<Run>> {
    let binary = Path::new("/usr/bin/kubectl");
    if !binary.exists() {
        return Ok(None);
    }
    // Async, so the in-process server on this runtime keeps serving while upstream runs.
    let output = tokio::process::Command::new(binary)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .output()
        .await?;
    Ok(Some(Run {
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code().unwrap_or(-1),
    }))
}

#[tokio::test]
async fn output_matches_the_upstream_kubectl_byte_for_byte() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    let file = write(server.dir(), "web.yaml", DEPLOYMENT)?;
    let odd = write(
        server.dir(),
        "odd.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: odd\ndata:\n  a: \"10\"\n  b: \"yes\"\n  c: \"- dash\"\n  d: \"two\\nlines\\n\"\n  e: \"\"\n  f: \"2021-01-01\"\n  g: \"a long value that keeps going well past the eighty column limit so that go-yaml folds it\"\n",
    )?;
    for f in [&file, &odd] {
        let run = kubectl(&kc, &["apply", "-f", f]).await?;
        assert_eq!(run.code, 0, "{}", run.err);
    }
    let run = kubectl(&kc, &["expose", "deployment", "web", "--port=80"]).await?;
    assert_eq!(run.code, 0, "{}", run.err);
    let commands: [&[&str]; 12] = [
        &["get", "deploy", "web", "-o", "yaml"],
        &["get", "deploy", "web", "-o", "json"],
        &["get", "cm", "odd", "-o", "yaml"],
        &["get", "all", "-o", "name"],
        &["get", "svc", "web", "-o", "jsonpath={.spec.ports[0].port}"],
        &[
            "get",
            "deploy,svc",
            "-o",
            "custom-columns=NAME:.metadata.name,KIND:.kind",
        ],
        &["describe", "deployment", "web"],
        &["describe", "service", "web"],
        &["describe", "namespace", "default"],
        &["api-resources"],
        &["get", "pods", "nope"],
        &["get", "frobs"],
    ];
    for args in commands {
        let Some(theirs) = upstream(&kc, args).await? else {
            return Ok(());
        };
        let ours = kubectl(&kc, args).await?;
        assert_eq!(ours.out, theirs.out, "stdout of {args:?}");
        assert_eq!(ours.err, theirs.err, "stderr of {args:?}");
        assert_eq!(ours.code, theirs.code, "status of {args:?}");
    }
    Ok(())
}

/// Starts a kubectl command in the background; the returned handles read its output.
fn spawn_kubectl(
    kubeconfig: &Path,
    args: &[&str],
) -> anyhow::Result<(
    tokio::task::JoinHandle<kubectl::Result<()>>,
    kubectl::session::SharedBuf,
)> {
    let mut argv = vec![
        "kubectl".to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let options = Options::try_parse_from(&argv)?;
    let (io, out, _err) = Io::buffers();
    let task = tokio::spawn(async move {
        let mut session = Session::new(options.global.clone(), io);
        kubectl::execute(&mut session, options.command).await
    });
    Ok((task, out))
}

async fn until_contains(buf: &kubectl::session::SharedBuf, needle: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if buf.contents().contains(needle) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("{needle:?} never appeared in {:?}", buf.contents())
}

#[tokio::test]
async fn get_watch_prints_rows_as_objects_change() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    let file = write(
        server.dir(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w\n",
    )?;
    kubectl(&kc, &["create", "-f", &file]).await?;
    let (task, out) = spawn_kubectl(&kc, &["get", "cm", "w", "-w", "--request-timeout=3s"])?;
    until_contains(&out, "NAME").await?;
    let run = kubectl(&kc, &["label", "cm", "w", "x=y"]).await?;
    assert_eq!(run.code, 0, "{}", run.err);
    task.await??;
    let text = out.contents();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("NAME   DATA   AGE"), "{text}");
    assert!(
        lines[1].starts_with("w      0      ") && lines[2].starts_with("w      0      "),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn rollout_status_follows_the_deployment_until_available() -> anyhow::Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};

    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    kubectl(
        &kc,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox:1.35",
            "--replicas=2",
        ],
    )
    .await?;
    let (task, out) = spawn_kubectl(
        &kc,
        &["rollout", "status", "deployment/web", "--timeout=20s"],
    )?;
    let api: Api<Deployment> = Api::namespaced(server.client().await?, "default");
    let status = |updated: i32, available: i32| {
        serde_json::json!({"status": {"observedGeneration": 1, "replicas": 2,
            "updatedReplicas": updated, "availableReplicas": available}})
    };
    api.patch_status("web", &PatchParams::default(), &Patch::Merge(status(2, 1)))
        .await?;
    until_contains(&out, "1 of 2 updated replicas are available").await?;
    api.patch_status("web", &PatchParams::default(), &Patch::Merge(status(2, 2)))
        .await?;
    task.await??;
    assert!(
        out.contents().ends_with(
            "Waiting for deployment \"web\" rollout to finish: 1 of 2 updated replicas are available...\ndeployment \"web\" successfully rolled out\n"
        ),
        "{}",
        out.contents()
    );
    Ok(())
}

#[tokio::test]
async fn wait_returns_once_the_condition_holds() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, Patch, PatchParams};

    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    kubectl(&kc, &["run", "p", "--image=busybox:1.35"]).await?;
    let (task, out) = spawn_kubectl(
        &kc,
        &["wait", "--for=condition=Ready", "pod/p", "--timeout=20s"],
    )?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let api: Api<Pod> = Api::namespaced(server.client().await?, "default");
    let ready =
        serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    api.patch_status("p", &PatchParams::default(), &Patch::Merge(ready))
        .await?;
    task.await??;
    assert_eq!(out.contents(), "pod/p condition met\n");

    let run = kubectl(
        &kc,
        &[
            "wait",
            "--for=condition=Ready=False",
            "pod/p",
            "--timeout=1s",
        ],
    )
    .await?;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.err,
        "error: timed out waiting for the condition on pods/p\n"
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_connection_is_reported_like_upstream() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let text = std::fs::read_to_string(&server.kubeconfig)?
        .replace(&server.url, &format!("https://127.0.0.1:{port}"));
    let kc = server.dir().join("closed.kubeconfig");
    std::fs::write(&kc, text)?;
    let run = kubectl(&kc, &["get", "pods"]).await?;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.err,
        format!("The connection to the server 127.0.0.1:{port} was refused - did you specify the right host or port?\n")
    );
    Ok(())
}
