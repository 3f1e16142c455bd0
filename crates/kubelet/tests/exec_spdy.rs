//! `exec` over SPDY/3.1 end to end on the fake runtime: the kubelet API (TLS, client
//! certificates) behind an in-process apiserver, driven by the upstream kubectl 1.32 forced onto
//! SPDY (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`): output, stdin, and a non-zero exit code; on
//! a real node (root) also `attach -i` (over SPDY and over WebSocket).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use kube_apiserver::testing::TestServer;
use kubelet::runtime::fake::{Call, ExecResult, FakeRuntime};
use kubelet::runtime::{ContainerConfig, ContainerRuntime};
use tokio::io::AsyncWriteExt;

mod support;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Cluster {
    server: TestServer,
    runtime: Arc<FakeRuntime>,
    _kubelet: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Apiserver + kubelet API on the fake runtime, a node `n1` and a running pod `web` (container
/// `c`) bound to it. Exec `echo ARGS` prints ARGS, anything else prints `oops` on stderr and
/// exits 3.
async fn cluster() -> Cluster {
    let server = TestServer::start().await.expect("apiserver");
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Arc::new(FakeRuntime::new());
    runtime.add_image("busybox:1.35");
    let id = runtime
        .create_container(&ContainerConfig {
            name: "c".into(),
            image: "busybox:1.35".into(),
            ..Default::default()
        })
        .await
        .expect("create");
    runtime.start_container(&id).await.expect("start");
    runtime.set_exec_handler(|_, request| match request.command.as_slice() {
        [cmd, rest @ ..] if cmd == "echo" => ExecResult {
            stdout: format!("{}\n", rest.join(" ")).into_bytes(),
            stderr: Vec::new(),
            exit_code: 0,
        },
        _ => ExecResult {
            stdout: Vec::new(),
            stderr: b"oops\n".to_vec(),
            exit_code: 3,
        },
    });
    let kubelet = support::serve_node_with_pod(
        &server,
        dir.path(),
        runtime.clone(),
        support::web_pod(),
        [("c".to_string(), id)].into(),
    )
    .await;
    Cluster {
        server,
        runtime,
        _kubelet: kubelet,
        _dir: dir,
    }
}

/// Runs kubectl on SPDY with `args`, feeding `stdin`; returns (exit code, stdout, stderr).
async fn kubectl(cluster: &Cluster, args: &[&str], stdin: &[u8]) -> (Option<i32>, String, String) {
    let mut child = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&cluster.server.kubeconfig)
        .args(args)
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kubectl");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).await.expect("write stdin");
    drop(input);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finishes")
        .expect("output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn kubectl_exec_over_spdy() {
    if !Path::new(KUBECTL).exists() {
        eprintln!("note: {KUBECTL} not installed; skipping");
        return;
    }
    let cluster = cluster().await;

    let (code, stdout, stderr) = kubectl(&cluster, &["exec", "web", "--", "echo", "hi"], b"").await;
    assert_eq!((code, stdout.as_str()), (Some(0), "hi\n"), "{stderr}");

    // With stdin: kubectl sends it and half-closes; the session still ends with the status.
    let (code, stdout, stderr) = kubectl(
        &cluster,
        &["exec", "-i", "web", "--", "echo", "with", "stdin"],
        b"some input\n",
    )
    .await;
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "with stdin\n"),
        "{stderr}"
    );

    let (code, stdout, stderr) =
        kubectl(&cluster, &["exec", "web", "--", "sh", "-c", "exit 3"], b"").await;
    assert_eq!(code, Some(3), "{stdout} {stderr}");
    assert!(stderr.starts_with("oops\n"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );

    let stdin_requested = cluster
        .runtime
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Exec(_, request) if request.stdin))
        .count();
    assert_eq!(stdin_requested, 1, "{:?}", cluster.runtime.calls());
}

/// The same on a real node (root only; skipped otherwise): a busybox container, upstream kubectl
/// on SPDY through the apiserver's proxy.
mod real_node {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, PostParams};
    use kubelet::runtime::ContainerRuntime;
    use tokio::io::AsyncWriteExt;

    use crate::support::{
        eventually_secs as eventually, real_node_unavailable, RealNode, RealNodeConfig,
    };

    const BRIDGE: &str = "kubetest-sx";
    const SUBNET: &str = "10.250.93.0/24";

    /// Runs kubectl with `args` on SPDY (or, with `websockets`, on its default WebSocket
    /// transport), feeding `stdin`; returns (exit code, stdout, stderr).
    async fn kubectl_on(
        websockets: bool,
        kubeconfig: &Path,
        args: &[&str],
        stdin: &[u8],
    ) -> (Option<i32>, String, String) {
        let mut child = tokio::process::Command::new(super::KUBECTL)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env(
                "KUBECTL_REMOTE_COMMAND_WEBSOCKETS",
                if websockets { "true" } else { "false" },
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin).await.expect("write stdin");
        drop(input);
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finishes")
            .expect("output");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn kubectl(
        kubeconfig: &Path,
        args: &[&str],
        stdin: &[u8],
    ) -> (Option<i32>, String, String) {
        kubectl_on(false, kubeconfig, args, stdin).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kubectl_exec_over_spdy_in_a_real_pod() {
        if let Some(reason) = real_node_unavailable() {
            eprintln!("skipping real node test: {reason}");
            return;
        }
        if !Path::new(super::KUBECTL).exists() {
            eprintln!("skipping real node test: no {}", super::KUBECTL);
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let RealNode {
            kubelet,
            runtime,
            client,
            server,
            containerd: _containerd,
            bridge: _bridge,
            ..
        } = RealNode::start(
            dir.path(),
            RealNodeConfig {
                name: "spdy-node",
                bridge: BRIDGE,
                subnet: SUBNET,
                mounter: Arc::new(kubelet::pod::mounts::FakeMounter::new()),
            },
        )
        .await;

        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "sx"},
            "spec": {
                "nodeName": "spdy-node",
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "c", "image": "busybox:1.35",
                    "command": ["sh", "-c", "exec sleep 3600"]
                }]
            }
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        eventually("pod running", 60, || {
            let pods = pods.clone();
            async move {
                let status = pods.get_opt("sx").await.ok()??.status?;
                (status.phase.as_deref() == Some("Running")).then_some(())
            }
        })
        .await;
        let kubeconfig = server.kubeconfig.clone();

        let (code, out, err) = kubectl(&kubeconfig, &["exec", "sx", "--", "echo", "hi"], b"").await;
        assert_eq!((code, out.as_str()), (Some(0), "hi\n"), "{err}");

        let (code, out, err) = kubectl(
            &kubeconfig,
            &["exec", "-i", "sx", "--", "cat"],
            b"piped through stdin\n",
        )
        .await;
        assert_eq!(
            (code, out.as_str()),
            (Some(0), "piped through stdin\n"),
            "{err}"
        );

        let (code, out, err) = kubectl(
            &kubeconfig,
            &[
                "exec",
                "sx",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            b"",
        )
        .await;
        assert_eq!((code, out.as_str()), (Some(3), "out\n"), "{err}");
        assert!(err.starts_with("err\n"), "{err}");
        assert!(err.contains("command terminated with exit code 3"), "{err}");

        // Attach with stdin to a container that reads one line, answers and exits: on SPDY
        // (`at`) and on WebSocket (`aw`); the session ends although the runtime keeps the
        // container's output open.
        for (name, websockets) in [("at", false), ("aw", true)] {
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {
                    "nodeName": "spdy-node",
                    "terminationGracePeriodSeconds": 1,
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "c", "image": "busybox:1.35", "stdin": true,
                        "command": ["sh", "-c", "read line; echo got $line"]
                    }]
                }
            }))
            .expect("pod");
            pods.create(&PostParams::default(), &pod)
                .await
                .expect("create pod");
            eventually("attach pod running", 60, || {
                let pods = pods.clone();
                async move {
                    let status = pods.get_opt(name).await.ok()??.status?;
                    (status.phase.as_deref() == Some("Running")).then_some(())
                }
            })
            .await;
            let (code, out, err) =
                kubectl_on(websockets, &kubeconfig, &["attach", "-i", name], b"hello\n").await;
            assert_eq!(
                (code, out.as_str()),
                (Some(0), "got hello\n"),
                "websockets={websockets}: {err}"
            );
        }

        for name in ["sx", "at", "aw"] {
            pods.delete(name, &DeleteParams::default())
                .await
                .expect("delete");
            eventually("pod gone", 30, || {
                let pods = pods.clone();
                async move { matches!(pods.get_opt(name).await, Ok(None)).then_some(()) }
            })
            .await;
        }
        eventually("containers removed", 30, || {
            let runtime = runtime.clone();
            async move {
                let left = runtime.list_containers().await.ok()?;
                left.is_empty().then_some(())
            }
        })
        .await;
        drop(kubelet);
    }
}
