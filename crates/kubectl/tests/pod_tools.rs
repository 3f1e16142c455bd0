//! `kubectl port-forward`, `attach`, `cp` and `diff` against an in-process apiserver whose node's
//! kubelet API runs in-process on the fake runtime (exec and attach sessions, port-forward to a
//! local TCP server standing in for the pod's port).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_apiserver::testing::TestServer;
use kubectl::session::{Io, Session, SharedBuf};
use kubectl::Options;
use kubelet::pod::{PodEntry, PodStore};
use kubelet::runtime::fake::{Call, ExecResult, FakeRuntime};
use kubelet::runtime::{ContainerConfig, ContainerRuntime};
use kubelet::server::{serve, ServerState, TlsFiles};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const UID: &str = "7c0ffee0-0000-4000-8000-000000000001";

/// Answers every line with `pod says: <line>`.
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
    runtime: Arc<FakeRuntime>,
    container_id: String,
    _dir: tempfile::TempDir,
}

/// Apiserver, kubelet API on the fake runtime, node `n1`, a running pod `web` (label app=web,
/// container `c`, port 8080 named `http`) and a service `web` (80 -> `http`).
async fn cluster() -> Cluster {
    let server = TestServer::start().await.expect("apiserver");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = server
        .pki
        .issue("kubelet", &[], &["127.0.0.1"])
        .expect("kubelet cert");
    std::fs::write(dir.path().join("kubelet.crt"), cert).expect("write");
    std::fs::write(dir.path().join("kubelet.key"), key).expect("write");
    std::fs::write(dir.path().join("ca.crt"), &server.pki.ca_pem).expect("write");
    let runtime = Arc::new(FakeRuntime::new());
    runtime.set_port_target(8080, pod_port().await);
    runtime.add_image("busybox:1.35");
    let container_id = runtime
        .create_container(&ContainerConfig {
            name: "c".into(),
            image: "busybox:1.35".into(),
            ..Default::default()
        })
        .await
        .expect("create");
    runtime.start_container(&container_id).await.expect("start");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox:1.35",
            "ports": [{"name": "http", "containerPort": 8080}]}]}
    }))
    .expect("pod");
    let store = PodStore::new();
    let mut kubelet_pod = pod.clone();
    kubelet_pod.metadata.uid = Some(UID.into());
    store.upsert(
        UID,
        PodEntry {
            pod: kubelet_pod,
            containers: [("c".to_string(), container_id.clone())].into(),
        },
    );
    let files = TlsFiles {
        cert: Some(dir.path().join("kubelet.crt")),
        key: Some(dir.path().join("kubelet.key")),
        client_ca: Some(dir.path().join("ca.crt")),
        self_signed_names: vec![],
    };
    let kubelet = serve(
        "127.0.0.1:0".parse().expect("addr"),
        &files,
        ServerState {
            store,
            runtime: runtime.clone(),
            pod_logs_dir: dir.path().join("logs"),
        },
    )
    .await
    .expect("kubelet serve");
    let client = server.client().await.expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port()}}}})),
        )
        .await
        .expect("node status");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    pods.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .expect("pod status");
    let services: Api<Service> = Api::namespaced(client, "default");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");
    Cluster {
        server,
        runtime,
        container_id,
        _dir: dir,
    }
}

async fn session(cluster: &Cluster) -> (Session, SharedBuf, SharedBuf) {
    let options =
        Options::try_parse_from(["kubectl", "version", "--client"]).expect("parse options");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&cluster.server.kubeconfig).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    let client = kube::Client::try_from(config.clone()).expect("client");
    let (io, out, err) = Io::buffers();
    (
        Session::with_client(options.global, io, client, config),
        out,
        err,
    )
}

async fn kubectl(cluster: &Cluster, args: &[&str]) -> (kubectl::Result<()>, String, String) {
    let mut argv = vec!["kubectl"];
    argv.extend_from_slice(args);
    let options = Options::try_parse_from(argv).expect("parse");
    let (mut session, out, err) = session(cluster).await;
    let result = kubectl::execute(&mut session, options.command).await;
    (result, out.contents(), err.contents())
}

/// Starts `kubectl port-forward` in the background; returns the first forwarded address.
async fn start_port_forward(
    cluster: &Cluster,
    args: &[&str],
) -> (
    tokio::task::JoinHandle<kubectl::Result<()>>,
    SocketAddr,
    SharedBuf,
) {
    let mut argv = vec!["kubectl", "port-forward"];
    argv.extend_from_slice(args);
    let options = Options::try_parse_from(argv).expect("parse");
    let (mut session, out, _err) = session(cluster).await;
    let task = tokio::spawn(async move { kubectl::execute(&mut session, options.command).await });
    for _ in 0..200 {
        let text = out.contents();
        if let Some(line) = text
            .lines()
            .find(|l| l.starts_with("Forwarding from 127.0.0.1:"))
        {
            let addr = line
                .strip_prefix("Forwarding from ")
                .and_then(|r| r.split(" -> ").next())
                .and_then(|a| a.parse().ok())
                .expect("address");
            return (task, addr, out);
        }
        assert!(!task.is_finished(), "port-forward ended: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("port-forward did not start: {}", out.contents());
}

async fn ask(addr: SocketAddr, text: &str) -> String {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (reader, mut writer) = stream.into_split();
    writer
        .write_all(format!("{text}\n").as_bytes())
        .await
        .expect("write");
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(reader).read_line(&mut line),
    )
    .await
    .expect("answer in time")
    .expect("read");
    line
}

#[tokio::test]
async fn port_forward_to_a_pod_and_through_a_service() {
    let cluster = cluster().await;
    let (task, addr, out) = start_port_forward(&cluster, &["pod/web", ":8080"]).await;
    assert_eq!(ask(addr, "one").await, "pod says: one\n");
    assert_eq!(ask(addr, "two").await, "pod says: two\n");
    assert!(
        out.contents()
            .contains(&format!("Handling connection for {}", addr.port())),
        "{}",
        out.contents()
    );
    task.abort();
    // The service port 80 is translated to the pod's named port `http` (8080).
    let (task, addr, out) =
        start_port_forward(&cluster, &["svc/web", ":80", "--address", "127.0.0.1"]).await;
    assert!(out.contents().contains(" -> 8080\n"), "{}", out.contents());
    assert_eq!(ask(addr, "svc").await, "pod says: svc\n");
    task.abort();
    let netns = std::path::PathBuf::from("/var/run/netns/kube-7c0ffee00000");
    let dials = cluster
        .runtime
        .calls()
        .into_iter()
        .filter(|c| *c == Call::PortForward(Some(netns.clone()), 8080))
        .count();
    assert_eq!(dials, 3);
}

#[tokio::test]
async fn port_forward_refuses_an_unknown_service_port() {
    let cluster = cluster().await;
    let (result, _, _) = kubectl(&cluster, &["port-forward", "svc/web", "9999"]).await;
    let err = result.expect_err("no such service port");
    assert_eq!(
        err.to_string(),
        "Service web does not have a service port 9999"
    );
}

#[tokio::test]
async fn attach_ends_with_the_container_exit_code() {
    let cluster = cluster().await;
    let (mut session, _out, _err) = session(&cluster).await;
    let options = Options::try_parse_from(["kubectl", "attach", "web"]).expect("parse");
    let task = tokio::spawn(async move { kubectl::execute(&mut session, options.command).await });
    for _ in 0..200 {
        if cluster
            .runtime
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Attach(id, r) if *id == cluster.container_id && r.stdout))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.runtime.exit_container(&cluster.container_id, 3);
    let result = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("attach ends")
        .expect("join");
    assert_eq!(result.expect_err("exit 3").exit_code(), 3);
}

#[tokio::test]
async fn cp_runs_tar_in_the_container_both_ways() {
    let cluster = cluster().await;
    // The container's `tar cf - /srv/data` answers with an archive of srv/data/{a.txt,sub/b.txt}.
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("srv/data/a.txt", &b"A\n"[..]),
        ("srv/data/sub/b.txt", b"B\n"),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, data)
            .expect("append");
    }
    let archive = builder.into_inner().expect("archive");
    cluster.runtime.set_exec_handler(move |_, request| {
        match request
            .command
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["tar", "cf", "-", "/srv/data"] => ExecResult {
                stdout: archive.clone(),
                stderr: b"tar: removing leading '/' from member names\n".to_vec(),
                exit_code: 0,
            },
            ["test", "-d", "/tmp"] => ExecResult::default(),
            ["test", "-d", _] => ExecResult {
                exit_code: 1,
                ..ExecResult::default()
            },
            ["tar", "-xmf", "-", "-C", "/tmp"] => ExecResult::default(),
            _ => ExecResult {
                stderr: b"unexpected command\n".to_vec(),
                exit_code: 2,
                ..ExecResult::default()
            },
        }
    });
    let local = tempfile::tempdir().expect("tempdir");
    let dest = local.path().join("copy");
    let (result, _, err) = kubectl(
        &cluster,
        &["cp", "web:/srv/data", dest.to_str().expect("utf-8")],
    )
    .await;
    assert!(result.is_ok(), "{result:?} {err}");
    assert_eq!(std::fs::read(dest.join("a.txt")).expect("a"), b"A\n");
    assert_eq!(std::fs::read(dest.join("sub/b.txt")).expect("b"), b"B\n");
    assert!(err.contains("removing leading"), "{err}");

    // To the pod: /tmp is a directory there, so the file lands in /tmp/<its name>.
    let file = local.path().join("notes.txt");
    std::fs::write(&file, "hello").expect("write");
    let (result, _, err) = kubectl(
        &cluster,
        &["cp", file.to_str().expect("utf-8"), "default/web:/tmp"],
    )
    .await;
    assert!(result.is_ok(), "{result:?} {err}");
    let commands: Vec<Vec<String>> = cluster
        .runtime
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Exec(_, r) => Some(r.command),
            _ => None,
        })
        .collect();
    assert!(commands.contains(&vec![
        "tar".to_string(),
        "-xmf".into(),
        "-".into(),
        "-C".into(),
        "/tmp".into()
    ]));
    let (result, _, _) = kubectl(&cluster, &["cp", "/nonexistent-file", "web:/tmp"]).await;
    assert_eq!(
        result.expect_err("missing source").to_string(),
        "/nonexistent-file doesn't exist in local filesystem"
    );
    let (result, _, _) = kubectl(&cluster, &["cp", "a", "b"]).await;
    assert!(result.is_err());
}

#[tokio::test]
async fn diff_shows_what_apply_would_change() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("cm.yaml");
    let write = |value: &str| {
        std::fs::write(
            &manifest,
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: {value}\n"),
        )
        .expect("write manifest");
    };
    let path = manifest.to_str().expect("utf-8").to_string();
    write("fast");
    // Not there yet: everything is new.
    let (result, out, err) = kubectl(&cluster, &["diff", "-f", &path]).await;
    assert_eq!(result.expect_err("differs").exit_code(), 1, "{err}");
    assert!(out.contains("+  mode: fast"), "{out}");
    assert!(out.contains("v1.ConfigMap.default.settings"), "{out}");
    // The dry run created nothing.
    let (result, _, err) = kubectl(&cluster, &["get", "configmap", "settings"]).await;
    assert!(result.is_err(), "{err}");
    let (result, _, err) = kubectl(&cluster, &["apply", "-f", &path]).await;
    assert!(result.is_ok(), "{err}");
    let (result, out, err) = kubectl(&cluster, &["diff", "-f", &path]).await;
    assert!(result.is_ok(), "{out}{err}");
    assert_eq!(out, "");
    write("slow");
    let (result, out, _) = kubectl(&cluster, &["diff", "-f", &path]).await;
    assert_eq!(result.expect_err("differs").exit_code(), 1);
    assert!(
        out.contains("-  mode: fast") && out.contains("+  mode: slow"),
        "{out}"
    );
    // KUBECTL_EXTERNAL_DIFF replaces `diff -u -N` (the binary, so the variable stays local).
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl"))
        .args(["--kubeconfig"])
        .arg(&cluster.server.kubeconfig)
        .args(["diff", "-f", &path])
        .env("KUBECTL_EXTERNAL_DIFF", "diff -q")
        .output()
        .await
        .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("Files ") && stdout.contains("v1.ConfigMap.default.settings differ"),
        "{stdout}"
    );
    // Errors exit above 1.
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Nope\nmetadata:\n  name: x\n",
    )
    .expect("write");
    let (result, _, err) = kubectl(&cluster, &["diff", "-f", &path]).await;
    assert!(result.expect_err("unknown kind").exit_code() > 1, "{err}");
}
