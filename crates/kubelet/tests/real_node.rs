//! The whole kubelet on real parts (root only; skipped otherwise): a private containerd, the
//! CNI bridge and host-local plugins (on a test bridge and subnet, so a running cluster's
//! `cni0` is left alone) and the in-process apiserver. A pod with an init container, an
//! emptyDir and an HTTP readiness probe becomes Ready, answers HTTP on its pod IP, gets the
//! cluster DNS resolv.conf, and a delete removes its containers and network namespace.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use kubelet::network::Network;
use kubelet::runtime::{ContainerRuntime, ExecRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;

use support::{eventually_secs as eventually, real_node_unavailable, RealNode, RealNodeConfig};

const BRIDGE: &str = "kubetest1";
const SUBNET: &str = "10.250.88.0/24";

async fn http_get(ip: &str, port: u16) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
    stream
        .write_all(format!("GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_pod_runs_answers_and_is_cleaned_up() {
    if let Some(reason) = real_node_unavailable() {
        eprintln!("skipping real node test: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let RealNode {
        kubelet,
        network,
        runtime,
        client,
        server,
        containerd: _containerd,
        bridge: _bridge,
    } = RealNode::start(
        dir.path(),
        RealNodeConfig {
            name: "real-node",
            bridge: BRIDGE,
            subnet: SUBNET,
            mounter: Arc::new(kubelet::pod::mounts::HostMounter),
        },
    )
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {
            "nodeName": "real-node",
            "terminationGracePeriodSeconds": 2,
            "volumes": [{"name": "www", "emptyDir": {}}],
            "initContainers": [{
                "name": "content", "image": "busybox:1.35",
                "command": ["sh", "-c", "echo hello from $(hostname) > /www/index.html"],
                "volumeMounts": [{"name": "www", "mountPath": "/www"}]
            }],
            "containers": [{
                "name": "httpd", "image": "busybox:1.35",
                "command": ["sh", "-c", "echo serving; exec httpd -f -p 8080 -h /www"],
                "env": [{"name": "GREETING", "value": "hi"}],
                "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
            }]
        }
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");

    let status = eventually("pod Ready", 60, || {
        let pods = pods.clone();
        async move {
            let status = pods.get_opt("web").await.ok()??.status?;
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(status)
        }
    })
    .await;
    let pod_ip = status.pod_ip.clone().expect("pod IP");
    assert!(pod_ip.starts_with("10.250.88."), "pod IP {pod_ip}");
    let answer = http_get(&pod_ip, 8080).await.expect("HTTP answer");
    assert!(answer.contains("hello from web"), "answer {answer}");

    let entry = kubelet.store.find("default", "web").expect("pod in store");
    let id = entry.containers.get("httpd").expect("httpd id").clone();
    let mut session = runtime
        .exec(
            &id,
            ExecRequest {
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "cat /etc/resolv.conf; echo $GREETING $KUBERNETES_SERVICE_HOST".into(),
                ],
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        )
        .await
        .expect("exec");
    let mut out = String::new();
    if let Some(mut stdout) = session.stdout.take() {
        stdout.read_to_string(&mut out).await.expect("read");
    }
    assert_eq!(session.exit.await.expect("exit"), 0);
    assert!(out.contains("nameserver 10.96.0.10"), "resolv.conf: {out}");
    assert!(
        out.contains("search default.svc.cluster.local"),
        "resolv.conf: {out}"
    );
    assert!(out.contains("hi 10.96.0.1"), "env: {out}");

    let uid = entry.pod.metadata.uid.clone().expect("uid");
    let log = dir
        .path()
        .join(format!("logs/default_web_{uid}/httpd/0.log"));
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains(" stdout F serving"), "log {text}");

    // The upstream kubectl, through the apiserver's proxy, to this kubelet.
    let kubeconfig = server.kubeconfig.clone();
    let kubectl = |args: &[&str], stdin: Option<&'static str>| {
        let kubeconfig = kubeconfig.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            let mut child = tokio::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(&args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("kubectl");
            let mut input = child.stdin.take().expect("stdin");
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).await.expect("write stdin");
            }
            drop(input);
            let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
                .await
                .expect("kubectl timed out")
                .expect("kubectl output");
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stdout).to_string(),
                String::from_utf8_lossy(&output.stderr).to_string(),
            )
        }
    };
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok()
    {
        let (code, out, err) = kubectl(&["logs", "web", "-c", "httpd"], None).await;
        assert_eq!(code, Some(0), "kubectl logs: {err}");
        assert_eq!(out, "serving\n");
        let (code, out, err) = kubectl(
            &[
                "exec",
                "web",
                "-c",
                "httpd",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            None,
        )
        .await;
        assert_eq!(code, Some(3), "kubectl exec exit code: {err}");
        assert_eq!(out, "out\n");
        assert!(err.contains("err"), "stderr {err}");
        let (code, out, err) = kubectl(
            &["exec", "-i", "web", "-c", "httpd", "--", "cat"],
            Some("piped\n"),
        )
        .await;
        assert_eq!(code, Some(0), "kubectl exec -i: {err}");
        assert_eq!(out, "piped\n");
    } else {
        eprintln!("kubectl not installed: skipping the kubectl part");
    }

    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("pod gone", 30, || {
        let pods = pods.clone();
        async move { matches!(pods.get_opt("web").await, Ok(None)).then_some(()) }
    })
    .await;
    assert!(runtime.list_containers().await.expect("list").is_empty());
    assert!(
        network.list_netns().await.expect("netns").is_empty()
            || !network
                .list_netns()
                .await
                .expect("netns")
                .iter()
                .any(|n| n.starts_with(&format!("kube-{}", &uid.replace('-', "")[..12])))
    );

    drop(kubelet);
}
