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
            let report = e.report();
            if !report.is_empty() {
                err_text.push_str(&report);
                err_text.push('\n');
            }
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

/// Runs `args` with our kubectl on the object named `ours` and, when installed, with the upstream
/// one on `theirs` (`{}` in the arguments is the name); their output, with the name swapped back,
/// must equal ours (stdout lines compared sorted when `sorted`).
async fn both(
    kc: &Path,
    args: &[&str],
    ours: &str,
    theirs: &str,
    sorted: bool,
) -> anyhow::Result<Run> {
    let with = |name: &str| -> Vec<String> { args.iter().map(|a| a.replace("{}", name)).collect() };
    let our_args = with(ours);
    let our_refs: Vec<&str> = our_args.iter().map(String::as_str).collect();
    let run = kubectl(kc, &our_refs).await?;
    let their_args = with(theirs);
    let their_refs: Vec<&str> = their_args.iter().map(String::as_str).collect();
    if let Some(them) = upstream(kc, &their_refs).await? {
        let fix = |s: &str| s.replace(theirs, ours);
        let lines = |s: &str| {
            let mut l: Vec<String> = s.lines().map(str::to_string).collect();
            if sorted {
                l.sort();
            }
            l
        };
        assert_eq!(
            lines(&run.out),
            lines(&fix(&them.out)),
            "stdout of {args:?}; stderr ours {:?} theirs {:?}",
            run.err,
            them.err
        );
        // Upstream groups some messages in Go map order behind one `Warning: ` prefix: compare
        // those pieces sorted, without the prefix that goes with whichever comes first.
        let pieces = |s: &str| {
            let mut p: Vec<String> = if sorted {
                s.split(['\n', ';'])
                    .map(|p| p.trim())
                    .map(|p| sort_bracketed_list(p.strip_prefix("Warning: ").unwrap_or(p)))
                    .collect()
            } else {
                vec![s.to_string()]
            };
            p.sort();
            p
        };
        assert_eq!(
            pieces(&run.err),
            pieces(&fix(&them.err)),
            "stderr of {args:?}"
        );
        assert_eq!(
            run.err.matches("Warning: ").count(),
            them.err.matches("Warning: ").count(),
            "warnings in the stderr of {args:?}"
        );
        assert_eq!(run.code, them.code, "status of {args:?}");
    }
    Ok(run)
}

#[tokio::test]
async fn create_generators_build_what_upstream_builds() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    let file = write(server.dir(), "app.conf", "port=80\n")?;
    let env = write(server.dir(), "vars.env", "# c\nA=1\nB=two\n")?;
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "create".into(),
                "configmap".into(),
                "{}".into(),
                "--from-literal=k=v".into(),
                format!("--from-file={file}"),
            ],
            "{.data}",
        ),
        (
            vec![
                "create".into(),
                "configmap".into(),
                "{}-env".into(),
                format!("--from-env-file={env}"),
            ],
            "{.data}",
        ),
        (
            vec![
                "create".into(),
                "secret".into(),
                "generic".into(),
                "{}".into(),
                "--from-literal=user=admin".into(),
                format!("--from-file=conf={file}"),
            ],
            "{.data} {.type}",
        ),
        (
            vec![
                "create".into(),
                "secret".into(),
                "docker-registry".into(),
                "{}-reg".into(),
                "--docker-username=u".into(),
                "--docker-password=p".into(),
                "--docker-email=e@x".into(),
            ],
            "{.data} {.type}",
        ),
        (
            vec![
                "create".into(),
                "job".into(),
                "{}".into(),
                "--image=busybox:1.35".into(),
                "--".into(),
                "date".into(),
            ],
            "{.spec.template.spec.containers} {.spec.template.spec.restartPolicy}",
        ),
        (
            vec![
                "create".into(),
                "cronjob".into(),
                "{}".into(),
                "--image=busybox:1.35".into(),
                "--schedule=*/5 * * * *".into(),
            ],
            "{.spec.schedule} {.spec.jobTemplate.spec.template.spec.containers[0].image}",
        ),
        (
            vec!["create".into(), "serviceaccount".into(), "{}".into()],
            "{.metadata.name}",
        ),
        (
            vec![
                "create".into(),
                "role".into(),
                "{}".into(),
                "--verb=get,list".into(),
                "--resource=pods,deployments.apps,pods/log".into(),
            ],
            "{.rules}",
        ),
        (
            vec![
                "create".into(),
                "clusterrole".into(),
                "{}".into(),
                "--verb=get".into(),
                "--resource=nodes".into(),
                "--resource-name=n1".into(),
            ],
            "{.rules}",
        ),
        (
            vec![
                "create".into(),
                "rolebinding".into(),
                "{}".into(),
                "--clusterrole=view".into(),
                "--user=alice".into(),
                "--group=devs".into(),
                "--serviceaccount=default:robot".into(),
            ],
            "{.roleRef} {.subjects}",
        ),
        (
            vec![
                "create".into(),
                "clusterrolebinding".into(),
                "{}".into(),
                "--clusterrole=view".into(),
                "--user=alice".into(),
            ],
            "{.roleRef} {.subjects}",
        ),
    ];
    for (args, fields) in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = both(&kc, &refs, "gen-a", "gen-b", false).await?;
        assert_eq!(run.code, 0, "{args:?}: {}", run.err);
        assert!(run.out.ends_with(" created\n"), "{}", run.out);
        let kind = if args[1] == "secret" {
            "secret"
        } else {
            args[1].as_str()
        };
        let jsonpath = format!("jsonpath={fields}");
        let get = [
            "get",
            kind,
            &args[if kind == "secret" { 3 } else { 2 }],
            "-o",
            &jsonpath,
        ];
        let run = both(&kc, &get, "gen-a", "gen-b", false).await?;
        assert_eq!(run.code, 0, "{get:?}: {}", run.err);
    }
    let run = kubectl(
        &kc,
        &["create", "role", "bad", "--verb=frob", "--resource=pods"],
    )
    .await?;
    assert_eq!(
        (run.err.as_str(), run.code),
        ("error: invalid verb: 'frob'\n", 1)
    );
    let junk = write(server.dir(), "junk.pem", "not pem\n")?;
    let tls = [
        "create",
        "secret",
        "tls",
        "{}",
        "--cert",
        junk.as_str(),
        "--key",
        junk.as_str(),
    ];
    let run = both(&kc, &tls, "tls-a", "tls-b", false).await?;
    assert_eq!(run.code, 1);
    let run = kubectl(
        &kc,
        &[
            "create",
            "cm",
            "dry",
            "--from-literal=a=b",
            "--dry-run=client",
            "-o",
            "name",
        ],
    )
    .await?;
    assert_eq!(run.out, "configmap/dry\n");
    let run = kubectl(&kc, &["get", "cm", "dry"]).await?;
    assert_eq!(run.code, 1);
    Ok(())
}

fn replicaset(deployment: &str, uid: &str, revision: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: {deployment}-r{revision}
  labels: {{app: web, pod-template-hash: h{revision}}}
  annotations: {{deployment.kubernetes.io/revision: \"{revision}\"}}
  ownerReferences:
  - {{apiVersion: apps/v1, kind: Deployment, name: {deployment}, uid: {uid}, controller: true}}
spec:
  replicas: 0
  selector:
    matchLabels: {{app: web, pod-template-hash: h{revision}}}
  template:
    metadata:
      labels: {{app: web, pod-template-hash: h{revision}}}
    spec:
      containers:
      - name: httpd
        image: {image}
        command: [\"httpd\", \"-f\", \"-p\", \"80\"]
"
    )
}

#[tokio::test]
async fn rollout_history_undo_pause_and_resume_work_client_side() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    for name in ["web-a", "web-b"] {
        let file = write(
            server.dir(),
            "d.yaml",
            &DEPLOYMENT.replace(
                "name: web\n",
                &format!(
                    "name: {name}\n  annotations: {{deployment.kubernetes.io/revision: \"2\"}}\n"
                ),
            ),
        )?;
        let run = kubectl(&kc, &["create", "-f", &file]).await?;
        assert_eq!(run.code, 0, "{}", run.err);
        let uid = kubectl(
            &kc,
            &["get", "deploy", name, "-o", "jsonpath={.metadata.uid}"],
        )
        .await?;
        for (revision, image) in [(1, "busybox:1.34"), (2, "busybox:1.35")] {
            let file = write(
                server.dir(),
                "rs.yaml",
                &replicaset(name, &uid.out, revision, image),
            )?;
            let run = kubectl(&kc, &["create", "-f", &file]).await?;
            assert_eq!(run.code, 0, "{}", run.err);
        }
    }
    let run = both(
        &kc,
        &["rollout", "history", "deployment/{}"],
        "web-a",
        "web-b",
        false,
    )
    .await?;
    assert_eq!(
        run.out,
        "deployment.apps/web-a \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    );
    let run = both(
        &kc,
        &["rollout", "undo", "deployment/{}", "--to-revision=7"],
        "web-a",
        "web-b",
        false,
    )
    .await?;
    assert_eq!(run.code, 1);
    let run = both(
        &kc,
        &["rollout", "undo", "deployment", "{}"],
        "web-a",
        "web-b",
        false,
    )
    .await?;
    assert_eq!(
        run.out, "deployment.apps/web-a rolled back\n",
        "{}",
        run.err
    );
    let image = [
        "get",
        "deploy",
        "{}",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.metadata.labels}",
    ];
    let run = both(&kc, &image, "web-a", "web-b", false).await?;
    assert_eq!(run.out, "busybox:1.34 {\"app\":\"web\"}");
    let run = both(
        &kc,
        &["rollout", "undo", "deployment/{}", "--to-revision=1"],
        "web-a",
        "web-b",
        false,
    )
    .await?;
    assert_eq!(
        run.out,
        "deployment.apps/web-a skipped rollback (current template already matches revision 1)\n"
    );
    for (args, want) in [
        (&["rollout", "pause", "deployment/{}"][..], 0),
        (&["rollout", "pause", "deployment/{}"][..], 1),
        (&["rollout", "undo", "deployment/{}"][..], 1),
        (&["rollout", "resume", "deployment/{}"][..], 0),
        (&["rollout", "resume", "deployment/{}"][..], 1),
    ] {
        let run = both(&kc, args, "web-a", "web-b", false).await?;
        assert_eq!(run.code, want, "{args:?}: {} {}", run.out, run.err);
    }
    Ok(())
}

const NODE: &str = "apiVersion: v1\nkind: Node\nmetadata:\n  name: NAME\n  labels: {pool: test}\n";

fn pod_on(node: &str, name: &str, owner: Option<&str>) -> String {
    let owner = owner
        .map(|kind| format!("  ownerReferences:\n  - {{apiVersion: apps/v1, kind: {kind}, name: x, uid: 00000000-0000-0000-0000-000000000001, controller: true}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n{owner}spec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: busybox:1.35\n"
    )
}

#[tokio::test]
async fn cordon_taint_and_drain_nodes() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    for name in ["node-a", "node-b"] {
        let file = write(server.dir(), "n.yaml", &NODE.replace("NAME", name))?;
        let run = kubectl(&kc, &["create", "-f", &file]).await?;
        assert_eq!(run.code, 0, "{}", run.err);
        for (pod, owner) in [
            ("web", Some("ReplicaSet")),
            ("ds", Some("DaemonSet")),
            ("bare", None),
        ] {
            let file = write(
                server.dir(),
                "p.yaml",
                &pod_on(name, &format!("{name}-{pod}"), owner),
            )?;
            let run = kubectl(&kc, &["create", "-f", &file]).await?;
            assert_eq!(run.code, 0, "{}", run.err);
        }
    }
    let steps: [(&[&str], &str, i32); 11] = [
        (&["cordon", "{}"], "node/node-a cordoned\n", 0),
        (&["cordon", "{}"], "node/node-a already cordoned\n", 0),
        (&["uncordon", "{}"], "node/node-a uncordoned\n", 0),
        (&["uncordon", "{}"], "node/node-a already uncordoned\n", 0),
        (
            &["taint", "nodes", "{}", "dedicated=x:NoSchedule"],
            "node/node-a tainted\n",
            0,
        ),
        (&["taint", "nodes", "{}", "dedicated=y:NoSchedule"], "", 1),
        (
            &[
                "taint",
                "nodes",
                "{}",
                "dedicated=y:NoSchedule",
                "--overwrite",
            ],
            "node/node-a modified\n",
            0,
        ),
        (
            &["taint", "nodes", "{}", "dedicated-"],
            "node/node-a untainted\n",
            0,
        ),
        (&["taint", "nodes", "{}", "dedicated-"], "", 1),
        (&["taint", "nodes", "{}", "a=b:Sometimes"], "", 1),
        (&["taint", "node/{}", "a=b:NoSchedule"], "", 1),
    ];
    for (args, out, code) in steps {
        let run = both(&kc, args, "node-a", "node-b", false).await?;
        assert_eq!(
            (run.out.as_str(), run.code),
            (out, code),
            "{args:?}: {}",
            run.err
        );
    }
    let file = write(server.dir(), "ds.yaml", DAEMONSET)?;
    let run = kubectl(&kc, &["create", "-f", &file]).await?;
    assert_eq!(run.code, 0, "{}", run.err);
    let run = both(
        &kc,
        &["drain", "{}", "--grace-period=0"],
        "node-a",
        "node-b",
        true,
    )
    .await?;
    assert_eq!(run.code, 1);
    assert!(
        run.err.contains("cannot delete DaemonSet-managed Pods"),
        "{}",
        run.err
    );
    let run = both(
        &kc,
        &["drain", "{}", "--grace-period=0", "--ignore-daemonsets"],
        "node-a",
        "node-b",
        false,
    )
    .await?;
    assert_eq!(run.code, 1);
    let run = both(
        &kc,
        &[
            "drain",
            "{}",
            "--grace-period=0",
            "--force",
            "--ignore-daemonsets",
        ],
        "node-a",
        "node-b",
        true,
    )
    .await?;
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(
        run.out.contains("evicting pod default/node-a-web\n"),
        "{}",
        run.out
    );
    assert!(run.out.ends_with("node/node-a drained\n"), "{}", run.out);
    let run = kubectl(&kc, &["get", "pods", "-o", "name"]).await?;
    assert!(
        !run.out.contains("node-a-web") && run.out.contains("node-a-ds"),
        "{}",
        run.out
    );
    Ok(())
}

const DAEMONSET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: x}
spec:
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      containers:
      - {name: c, image: busybox:1.35}
";

const EVENTS: &str = "apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Event
  metadata: {name: web.1}
  involvedObject: {apiVersion: v1, kind: Pod, name: web, namespace: default}
  reason: Scheduled
  message: Successfully assigned default/web to node-a
  type: Normal
  count: 1
  firstTimestamp: \"2020-01-01T00:00:00Z\"
  lastTimestamp: \"2020-01-01T00:00:00Z\"
- apiVersion: v1
  kind: Event
  metadata: {name: web.2}
  involvedObject: {apiVersion: v1, kind: Pod, name: web, namespace: default}
  reason: BackOff
  message: Back-off restarting failed container
  type: Warning
  count: 4
  firstTimestamp: \"2020-01-01T00:00:00Z\"
  lastTimestamp: \"2021-01-01T00:00:00Z\"
- apiVersion: v1
  kind: Event
  metadata: {name: db.1}
  involvedObject: {kind: Deployment, name: db, namespace: default}
  reason: ScalingReplicaSet
  message: Scaled up replica set db-1 to 1
  type: Normal
  firstTimestamp: \"2019-01-01T00:00:00Z\"
  lastTimestamp: \"2019-01-01T00:00:00Z\"
";

#[tokio::test]
async fn events_auth_and_api_versions_match_upstream() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    let file = write(server.dir(), "events.yaml", EVENTS)?;
    let run = kubectl(&kc, &["create", "-f", &file]).await?;
    assert_eq!(run.code, 0, "{}", run.err);
    let run = kubectl(&kc, &["create", "namespace", "empty"]).await?;
    assert_eq!(run.code, 0, "{}", run.err);
    let commands: [&[&str]; 10] = [
        &["events"],
        &["events", "-A"],
        &["events", "--for", "pod/web"],
        &["events", "--types=Warning"],
        &["events", "-n", "empty"],
        &["auth", "whoami"],
        &["auth", "can-i", "create", "pods"],
        &["auth", "can-i", "get", "/logs"],
        &["auth", "can-i", "list", "deployments.apps", "-A"],
        &["api-versions"],
    ];
    for args in commands {
        let run = both(&kc, args, "-", "-", false).await?;
        assert_eq!(run.code, 0, "{args:?}: {}", run.err);
    }
    let run = kubectl(&kc, &["events"]).await?;
    let lines: Vec<&str> = run.out.lines().collect();
    assert!(lines[0].starts_with("LAST SEEN"), "{}", run.out);
    assert!(lines[3].contains("(x4 over "), "{}", run.out);
    let run = kubectl(&kc, &["auth", "whoami"]).await?;
    assert!(
        run.out.contains("Username    kubernetes-admin"),
        "{}",
        run.out
    );
    let run = kubectl(&kc, &["api-versions"]).await?;
    assert!(
        run.out.lines().any(|l| l == "v1") && run.out.contains("apps/v1\n"),
        "{}",
        run.out
    );
    Ok(())
}

#[tokio::test]
async fn edit_runs_the_editor_and_patches_what_changed() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    for name in ["ed-a", "ed-b"] {
        let file = write(
            server.dir(),
            "d.yaml",
            &DEPLOYMENT.replace("name: web\n", &format!("name: {name}\n")),
        )?;
        let run = kubectl(&kc, &["create", "-f", &file]).await?;
        assert_eq!(run.code, 0, "{}", run.err);
    }
    let script = write(
        server.dir(),
        "editor.sh",
        "#!/bin/sh\ngrep -q '^# Please edit the object below' \"$1\" || exit 3\nsed -i 's/replicas: 1/replicas: 4/' \"$1\"\n",
    )?;
    let noop = write(server.dir(), "noop.sh", "#!/bin/sh\nexit 0\n")?;
    // Only this test runs `edit`, so the process-wide variable is ours to set.
    std::env::set_var("KUBE_EDITOR", format!("sh {script}"));
    let run = both(&kc, &["edit", "deployment/{}"], "ed-a", "ed-b", false).await?;
    assert_eq!(run.out, "deployment.apps/ed-a edited\n", "{}", run.err);
    let run = both(
        &kc,
        &["get", "deploy", "{}", "-o", "jsonpath={.spec.replicas}"],
        "ed-a",
        "ed-b",
        false,
    )
    .await?;
    assert_eq!(run.out, "4");
    std::env::set_var("KUBE_EDITOR", format!("sh {noop}"));
    let run = both(&kc, &["edit", "deploy", "{}"], "ed-a", "ed-b", false).await?;
    assert_eq!(
        (run.out.as_str(), run.err.as_str()),
        ("", "Edit cancelled, no changes made.\n")
    );
    Ok(())
}

/// `text` with the items of a bracketed `[a, b]` list sorted: upstream aggregates some errors
/// (drain's) from a Go map, so their order is random.
fn sort_bracketed_list(text: &str) -> String {
    let (Some(open), Some(close)) = (text.find('['), text.rfind(']')) else {
        return text.to_string();
    };
    if close < open {
        return text.to_string();
    }
    let mut items: Vec<&str> = text[open + 1..close].split(", ").collect();
    items.sort_unstable();
    format!(
        "{}[{}]{}",
        &text[..open],
        items.join(", "),
        &text[close + 1..]
    )
}
