//! The whole kubelet on real parts (root only; skipped otherwise): a private containerd, the
//! CNI bridge and host-local plugins (on a test bridge and subnet, so a running cluster's
//! `cni0` is left alone) and the in-process apiserver. A pod with an init container, an
//! emptyDir and an HTTP readiness probe becomes Ready, answers HTTP on its pod IP, gets the
//! cluster DNS resolv.conf, and a delete removes its containers and network namespace.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use kube_apiserver::testing::TestServer;
use kubelet::app::{start, Dependencies};
use kubelet::network::cni::{check_plugins, CniNetwork};
use kubelet::network::Network;
use kubelet::node::status::NodeConfig;
use kubelet::pod::files::DnsSettings;
use kubelet::pod::PodSettings;
use kubelet::runtime::containerd::testing::{unavailable_reason, TestContainerd};
use kubelet::runtime::containerd::{ContainerdOptions, ContainerdRuntime};
use kubelet::runtime::{ContainerRuntime, ExecRequest};
use kubelet::server::TlsFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BRIDGE: &str = "kubetest1";
const SUBNET: &str = "10.250.88.0/24";

async fn eventually<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes the test bridge however the test ends.
struct BridgeGuard;

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "delete", BRIDGE]).status();
    }
}

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
    if let Some(reason) = unavailable_reason() {
        eprintln!("skipping real node test: {reason}");
        return;
    }
    if let Err(error) = check_plugins(Path::new("/usr/lib/cni")) {
        eprintln!("skipping real node test: {error}");
        return;
    }
    let _bridge = BridgeGuard;
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).expect("mkdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/images/build.sh");
    let built = Command::new("bash")
        .arg(&script)
        .arg(&images)
        .output()
        .expect("build.sh");
    assert!(built.status.success(), "build.sh failed");

    let containerd = TestContainerd::start().expect("containerd");
    let runtime = ContainerdRuntime::connect(ContainerdOptions::new(
        containerd.endpoint(),
        containerd.state_dir(),
    ))
    .await
    .expect("connect");
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(runtime);
    kubelet::app::import_archives(runtime.as_ref(), &images).await;

    let server = TestServer::start().await.expect("apiserver");
    let client = server.client().await.expect("client");
    let network: Arc<dyn Network> = Arc::new(
        CniNetwork::new("/usr/lib/cni".into(), &dir.path().join("root/cni")).with_bridge(BRIDGE),
    );
    let node_ip = "127.0.0.1".parse().expect("ip");
    // A serving certificate the apiserver trusts.
    let (cert_pem, key_pem) = server
        .pki
        .issue("real-node", &[], &["127.0.0.1", "real-node"])
        .expect("kubelet cert");
    let kubelet_cert = dir.path().join("kubelet.crt");
    let kubelet_key = dir.path().join("kubelet.key");
    std::fs::write(&kubelet_cert, cert_pem).expect("write cert");
    std::fs::write(&kubelet_key, key_pem).expect("write key");
    // The apiserver reaches the kubelet at the port the node status reports: pick a free one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let kubelet = start(Dependencies {
        client: client.clone(),
        runtime: runtime.clone(),
        network: network.clone(),
        node: NodeConfig {
            name: "real-node".into(),
            node_ip,
            port,
            max_pods: 110,
        },
        pods: PodSettings {
            node_name: "real-node".into(),
            node_ip,
            root_dir: dir.path().join("root"),
            pod_logs_dir: dir.path().join("logs"),
            dns: DnsSettings {
                cluster_dns: vec!["10.96.0.10".parse().expect("ip")],
                cluster_domain: "cluster.local".into(),
                host_resolv_conf: String::new(),
            },
        },
        api_addr: std::net::SocketAddr::new(node_ip, port),
        tls: TlsFiles {
            cert: Some(kubelet_cert),
            key: Some(kubelet_key),
            // The test apiserver presents no client certificate: trust every caller.
            client_ca: None,
            self_signed_names: vec![],
        },
        status_period: Duration::from_secs(10),
        mounter: Arc::new(kubelet::pod::mounts::HostMounter),
    })
    .await
    .expect("kubelet");

    // The controller-manager's node IPAM would do this.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            "real-node",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"podCIDR": SUBNET, "podCIDRs": [SUBNET]}})),
        )
        .await
        .expect("set pod CIDR");
    eventually("network configured", 10, || {
        let network = network.clone();
        async move { network.ready().then_some(()) }
    })
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
