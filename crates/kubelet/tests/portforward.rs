//! Port-forward end to end on the fake runtime: the kubelet API (TLS, client certificates)
//! behind an in-process apiserver, driven by the upstream kubectl 1.32 over its default transport
//! (SPDY tunnelled over WebSocket) and over plain SPDY; and the WebSocket channel protocol
//! (`v4.channel.k8s.io`, what kube-rs speaks) directly against the kubelet.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use kube_apiserver::testing::TestServer;
use kubelet::runtime::fake::{Call, FakeRuntime};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

mod support;

const KUBECTL: &str = "/usr/bin/kubectl";

/// A TCP server standing in for the pod's port: answers every line with `pod says: <line>`.
async fn pod_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let mut lines = BufReader::new(reader).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let answer = format!("pod says: {line}\n");
                    if writer.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

struct Cluster {
    server: TestServer,
    kubelet: SocketAddr,
    runtime: Arc<FakeRuntime>,
    _dir: tempfile::TempDir,
}

/// Apiserver + kubelet API on the fake runtime, a node `n1` and a pod `web` bound to it whose
/// port 8080 is [`pod_port`].
async fn cluster() -> Cluster {
    let server = TestServer::start().await.expect("apiserver");
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Arc::new(FakeRuntime::new());
    runtime.set_port_target(8080, pod_port().await);
    let kubelet = support::serve_node_with_pod(
        &server,
        dir.path(),
        runtime.clone(),
        support::web_pod(),
        Default::default(),
    )
    .await;
    Cluster {
        server,
        kubelet,
        runtime,
        _dir: dir,
    }
}

/// Runs `kubectl port-forward pod/web :8080`, talks through the forwarded port twice (two
/// connections), and returns what came back.
async fn through_kubectl(cluster: &Cluster, websockets: bool) -> Vec<String> {
    let mut child = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&cluster.server.kubeconfig)
        .args(["port-forward", "pod/web", ":8080"])
        .env(
            "KUBECTL_PORT_FORWARD_WEBSOCKETS",
            if websockets { "true" } else { "false" },
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kubectl");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .expect("kubectl prints the forwarded port")
        .expect("read")
        .unwrap_or_default();
    // "Forwarding from 127.0.0.1:41234 -> 8080"
    let local: SocketAddr = line
        .strip_prefix("Forwarding from ")
        .and_then(|rest| rest.split(" -> ").next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected kubectl output {line:?}"));
    let mut answers = Vec::new();
    // The last one is larger than any window or buffer on the way (1 MiB).
    let big = "x".repeat(1 << 20);
    for text in ["hello", "again", big.as_str()] {
        let mut stream = TcpStream::connect(local).await.expect("connect");
        stream
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("write");
        stream.shutdown().await.expect("half-close");
        let mut answer = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            stream.read_to_string(&mut answer),
        )
        .await
        .expect("answer in time")
        .expect("read");
        answers.push(answer);
    }
    child.kill().await.expect("kill kubectl");
    answers
}

#[tokio::test]
async fn kubectl_port_forward_over_tunnelled_and_plain_spdy() {
    if !Path::new(KUBECTL).exists() {
        eprintln!("note: {KUBECTL} not installed; skipping");
        return;
    }
    let cluster = cluster().await;
    for websockets in [true, false] {
        let answers = through_kubectl(&cluster, websockets).await;
        assert_eq!(
            answers[..2],
            ["pod says: hello\n", "pod says: again\n"],
            "websockets={websockets}"
        );
        assert_eq!(answers[2], format!("pod says: {}\n", "x".repeat(1 << 20)));
    }
    let netns = Path::new("/var/run/netns/kube-0a1b2c3d4e5f").to_path_buf();
    let dials = cluster
        .runtime
        .calls()
        .into_iter()
        .filter(|c| *c == Call::PortForward(Some(netns.clone()), 8080))
        .count();
    assert_eq!(dials, 6, "{:?}", cluster.runtime.calls());
}

#[tokio::test]
async fn kubectl_reports_a_port_nothing_listens_on() {
    if !Path::new(KUBECTL).exists() {
        eprintln!("note: {KUBECTL} not installed; skipping");
        return;
    }
    let cluster = cluster().await;
    // A port that refuses connections.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed_addr = closed.local_addr().expect("addr");
    drop(closed);
    cluster.runtime.set_port_target(7000, closed_addr);
    let mut child = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&cluster.server.kubeconfig)
        .args(["port-forward", "pod/web", ":7000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kubectl");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next_line().await.expect("read").unwrap_or_default();
    // Keep reading stdout ("Handling connection for ...") so kubectl never sees a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let local: SocketAddr = line
        .strip_prefix("Forwarding from ")
        .and_then(|rest| rest.split(" -> ").next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected kubectl output {line:?}"));
    let mut stream = TcpStream::connect(local).await.expect("connect");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("closed in time")
    .ok();
    assert!(answer.is_empty());
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("kubectl exits after the error")
        .expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error forwarding port 7000 to pod default/web"),
        "{stderr} {:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
}

fn tls_connector(server: &TestServer) -> tokio_rustls::TlsConnector {
    let client = server
        .pki
        .issue("kube-apiserver-kubelet-client", &["system:masters"], &[])
        .expect("client cert");
    support::connector(&server.pki.ca_pem, Some(client))
}

#[tokio::test]
async fn websocket_channel_protocol_announces_ports_and_forwards_bytes() {
    let cluster = cluster().await;
    // Port 9 has no target: the fake echoes it in memory.
    let tcp = TcpStream::connect(cluster.kubelet).await.expect("tcp");
    let tls = tls_connector(&cluster.server)
        .connect(ServerName::IpAddress(cluster.kubelet.ip().into()), tcp)
        .await
        .expect("tls");
    let mut request = format!(
        "wss://127.0.0.1:{}/portForward/default/web?port=8080&port=9",
        cluster.kubelet.port()
    )
    .into_client_request()
    .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v4.channel.k8s.io".parse().expect("header"),
    );
    let (mut ws, response) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("websocket");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("v4.channel.k8s.io")
    );
    let mut announced = Vec::new();
    for _ in 0..4 {
        match ws.next().await.expect("frame").expect("ok") {
            Message::Binary(data) => announced.push(data.to_vec()),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Data and error channel of each port, the port little endian.
    assert_eq!(
        announced,
        vec![
            vec![0, 0x90, 0x1f],
            vec![1, 0x90, 0x1f],
            vec![2, 9, 0],
            vec![3, 9, 0]
        ]
    );
    ws.send(Message::Binary(b"\x00hi\n".to_vec().into()))
        .await
        .expect("send 8080");
    ws.send(Message::Binary(b"\x02echo me".to_vec().into()))
        .await
        .expect("send 9");
    let mut got = std::collections::BTreeMap::<u8, Vec<u8>>::new();
    while got.get(&0).map(Vec::len) != Some(13) || got.get(&2).map(Vec::len) != Some(7) {
        let Some(Ok(Message::Binary(data))) = ws.next().await else {
            panic!("stream ended early: {got:?}");
        };
        let (channel, payload) = data.split_first().expect("channel byte");
        got.entry(*channel).or_default().extend_from_slice(payload);
    }
    assert_eq!(got[&0], b"pod says: hi\n");
    assert_eq!(got[&2], b"echo me");
}

#[tokio::test]
async fn a_missing_pod_or_a_plain_request_is_refused() {
    let cluster = cluster().await;
    let connector = tls_connector(&cluster.server);
    for (path, upgrade, expected) in [
        ("/portForward/default/nope", true, "404"),
        ("/portForward/default/web/another-uid", true, "404"),
        ("/portForward/default/web", false, "400"),
    ] {
        let tcp = TcpStream::connect(cluster.kubelet).await.expect("tcp");
        let mut tls = connector
            .connect(ServerName::IpAddress(cluster.kubelet.ip().into()), tcp)
            .await
            .expect("tls");
        let upgrade = if upgrade {
            "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n"
        } else {
            ""
        };
        tls.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: k\r\n{upgrade}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
        let mut raw = Vec::new();
        let mut buf = [0u8; 1024];
        while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        let answer = String::from_utf8_lossy(&raw);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {expected}")),
            "{path}: {answer}"
        );
    }
}

/// Deletes the test network namespace and stops its server however the test ends.
struct NetnsGuard {
    name: String,
    server: Option<std::process::Child>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill().ok();
            server.wait().ok();
        }
        std::process::Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status()
            .ok();
    }
}

#[tokio::test]
async fn containerd_runtime_dials_inside_the_pod_network_namespace() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let python = Path::new("/usr/bin/python3").exists();
    if !root || !python {
        eprintln!("note: needs root and python3; skipping");
        return;
    }
    let name = format!("kubetest-pf-{}", std::process::id());
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(ip(&["netns", "add", &name]), "ip netns add");
    let mut guard = NetnsGuard {
        name: name.clone(),
        server: None,
    };
    assert!(ip(&["-n", &name, "link", "set", "lo", "up"]));
    let www = tempfile::tempdir().expect("tempdir");
    std::fs::write(www.path().join("index.html"), "inside the pod netns\n").expect("write");
    guard.server = Some(
        std::process::Command::new("ip")
            .args(["netns", "exec", &name, "python3", "-m", "http.server"])
            .args(["18080", "--bind", "127.0.0.1", "--directory"])
            .arg(www.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start http server"),
    );
    let netns = Path::new("/var/run/netns").join(&name);
    // The server listens only inside the namespace: the host's loopback has nothing there.
    let mut answer = String::new();
    for _ in 0..100 {
        if let Ok(mut stream) =
            kubelet::runtime::containerd::portforward::dial(Some(&netns), 18080).await
        {
            stream
                .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
                .await
                .expect("write");
            stream.read_to_string(&mut answer).await.expect("read");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(answer.ends_with("inside the pod netns\n"), "{answer}");
}

/// The upstream kubectl port-forwards to busybox httpd in a real pod (root, containerd and the
/// CNI plugins needed; skipped otherwise), on its own test bridge and subnet.
mod real_node {
    use std::path::Path;

    use std::sync::Arc;
    use std::time::Duration;

    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, PostParams};

    use kubelet::runtime::ContainerRuntime;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    use crate::support::{
        eventually_secs as eventually, real_node_unavailable, RealNode, RealNodeConfig,
    };

    const BRIDGE: &str = "kubetest-pf";
    const SUBNET: &str = "10.250.89.0/24";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kubectl_port_forward_reaches_httpd_in_a_real_pod() {
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
                name: "pf-node",
                bridge: BRIDGE,
                subnet: SUBNET,
                mounter: Arc::new(kubelet::pod::mounts::FakeMounter::new()),
            },
        )
        .await;

        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pf"},
            "spec": {
                "nodeName": "pf-node",
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "httpd", "image": "busybox:1.35",
                    "command": ["sh", "-c",
                        "mkdir -p /www && echo forwarded from the pod > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"]
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
                let status = pods.get_opt("pf").await.ok()??.status?;
                (status.phase.as_deref() == Some("Running")).then_some(())
            }
        })
        .await;

        // httpd listens on the pod's loopback only: port-forward is the one way in.
        let mut child = tokio::process::Command::new(super::KUBECTL)
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(["port-forward", "pod/pf", ":8080"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("kubectl prints the port")
            .expect("read")
            .unwrap_or_default();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let local: std::net::SocketAddr = line
            .strip_prefix("Forwarding from ")
            .and_then(|rest| rest.split(" -> ").next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected kubectl output {line:?}"));
        let answer = eventually("an HTTP answer through port-forward", 30, || async move {
            let mut stream = tokio::net::TcpStream::connect(local).await.ok()?;
            stream
                .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
                .await
                .ok()?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.ok()?;
            answer.contains("200 OK").then_some(answer)
        })
        .await;
        assert!(answer.contains("forwarded from the pod"), "{answer}");
        child.kill().await.expect("kill kubectl");

        pods.delete("pf", &DeleteParams::default())
            .await
            .expect("delete");
        eventually("pod gone", 30, || {
            let pods = pods.clone();
            async move { matches!(pods.get_opt("pf").await, Ok(None)).then_some(()) }
        })
        .await;
        assert!(runtime.list_containers().await.expect("list").is_empty());
        drop(kubelet);
    }
}
