//! Container runtime features on real parts (root only; skipped otherwise): a private
//! containerd, the CNI plugins on a test bridge, and the in-process apiserver. One pod proves
//! postStart and preStop hooks (exec and httpGet, preStop before the stop signal), a failing
//! postStart hook (event `FailedPostStartHook`), the shared IPC namespace and `/dev/shm` of a
//! pod's containers, the BestEffort `oom_score_adj`, and the securityContext (runAsUser,
//! fsGroup, readOnlyRootFilesystem, capabilities, no_new_privs); a second pod shares the host's
//! IPC namespace; container logs rotate by size while the container keeps writing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use kubelet::app::RunningKubelet;
use kubelet::network::Network;
use kubelet::runtime::log_rotation::{rotated_files, LogRotation};
use kubelet::runtime::{ContainerRuntime, ExecRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;

use support::{eventually_secs as eventually, real_node_unavailable, RealNode, RealNodeConfig};

const BRIDGE: &str = "kubetest-lc";
const SUBNET: &str = "10.250.91.0/24";

/// Removes the pod IPC namespaces under a kubelet root however the test ends (a failed
/// assertion skips the pod deletion that would remove them).
struct IpcGuard(PathBuf);

impl Drop for IpcGuard {
    fn drop(&mut self) {
        for name in kubelet::network::ipc::list(&self.0) {
            let _ = kubelet::network::ipc::remove(&self.0, &name);
        }
    }
}

/// A tiny HTTP server on the host that records the paths it is asked for (the kubelet runs
/// httpGet hooks from the host).
async fn recording_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            if let Some(path) = request.split_whitespace().nth(1) {
                record.lock().expect("lock").push(path.to_string());
            }
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        }
    });
    (port, seen)
}

async fn try_exec(
    runtime: &Arc<dyn ContainerRuntime>,
    id: &str,
    script: &str,
) -> Option<(i32, String)> {
    let mut session = runtime
        .exec(
            id,
            ExecRequest {
                command: vec!["sh".into(), "-c".into(), script.into()],
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        )
        .await
        .ok()?;
    let mut out = String::new();
    if let Some(mut stdout) = session.stdout.take() {
        stdout.read_to_string(&mut out).await.ok()?;
    }
    if let Some(mut stderr) = session.stderr.take() {
        stderr.read_to_string(&mut out).await.ok()?;
    }
    Some((session.exit.await.ok()?, out))
}

async fn exec(runtime: &Arc<dyn ContainerRuntime>, id: &str, script: &str) -> (i32, String) {
    try_exec(runtime, id, script).await.expect("exec")
}

/// A main process that ends on SIGTERM (a plain `sleep` as pid 1 ignores it).
const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

fn container_id(kubelet: &RunningKubelet, pod: &str, container: &str) -> Option<String> {
    kubelet
        .store
        .find("default", pod)?
        .containers
        .get(container)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_shared_ipc_security_and_log_rotation_work_on_real_containers() {
    if let Some(reason) = real_node_unavailable() {
        eprintln!("skipping lifecycle test: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let _ipc = IpcGuard(dir.path().join("root/ipc"));
    let host = dir.path().join("host");
    std::fs::create_dir_all(&host).expect("mkdir");
    let node = RealNode::start(
        dir.path(),
        RealNodeConfig {
            name: "lifecycle-node",
            bridge: BRIDGE,
            subnet: SUBNET,
            mounter: Arc::new(kubelet::pod::mounts::HostMounter),
        },
    )
    .await;
    let (hook_port, hook_paths) = recording_server().await;
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");

    let loop_until_term = "trap 'if [ -f /host/prestop ]; then echo after-prestop > /host/term; \
         else echo before-prestop > /host/term; fi; exit 0' TERM; \
         i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done";
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hooks"},
        "spec": {
            "nodeName": "lifecycle-node",
            "terminationGracePeriodSeconds": 10,
            "securityContext": {"fsGroup": 2000},
            "volumes": [
                {"name": "host", "hostPath": {"path": host.display().to_string()}},
                {"name": "scratch", "emptyDir": {}}
            ],
            "containers": [
                {
                    "name": "main", "image": "busybox:1.35",
                    "command": ["sh", "-c", loop_until_term],
                    "volumeMounts": [{"name": "host", "mountPath": "/host"}],
                    "lifecycle": {
                        "postStart": {"exec": {"command":
                            ["sh", "-c", "echo started-$(hostname) > /host/poststart"]}},
                        "preStop": {"exec": {"command":
                            ["sh", "-c", "echo stopping > /host/prestop; sleep 1"]}}
                    }
                },
                {
                    "name": "peer", "image": "busybox:1.35",
                    "command": ["sh", "-c", IDLE],
                    "lifecycle": {
                        "postStart": {"httpGet": {"host": "127.0.0.1", "port": hook_port,
                            "path": "/poststart/peer"}},
                        "preStop": {"httpGet": {"host": "127.0.0.1", "port": hook_port,
                            "path": "/prestop/peer"}}
                    }
                },
                {
                    "name": "secure", "image": "busybox:1.35",
                    "command": ["sh", "-c", IDLE],
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                    "securityContext": {
                        "runAsUser": 1000,
                        "readOnlyRootFilesystem": true,
                        "allowPrivilegeEscalation": false,
                        "capabilities": {"drop": ["ALL"]}
                    }
                },
                {
                    "name": "badhook", "image": "busybox:1.35",
                    "command": ["sh", "-c", IDLE],
                    "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 7"]}}}
                }
            ]
        }
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let host_ipc_pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hostipc"},
        "spec": {
            "nodeName": "lifecycle-node",
            "hostIPC": true,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox:1.35",
                "command": ["sh", "-c", IDLE]}]
        }
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &host_ipc_pod)
        .await
        .expect("create hostIPC pod");

    let kubelet = &node.kubelet;
    let runtime = &node.runtime;
    let ids = eventually("hooks pod containers running", 90, || {
        let pods = pods.clone();
        async move {
            let status = pods.get_opt("hooks").await.ok()??.status?;
            let running: BTreeSet<String> = status
                .container_statuses
                .iter()
                .flatten()
                .filter(|s| s.state.as_ref().is_some_and(|st| st.running.is_some()))
                .map(|s| s.name.clone())
                .collect();
            ["main", "peer", "secure"]
                .iter()
                .all(|c| running.contains(*c))
                .then_some(())?;
            Some(
                ["main", "peer", "secure"]
                    .map(|c| container_id(kubelet, "hooks", c).expect("container id")),
            )
        }
    })
    .await;
    let [main, peer, secure] = ids;

    // postStart: exec wrote its file, httpGet reached the host server.
    assert_eq!(
        std::fs::read_to_string(host.join("poststart")).expect("postStart file"),
        "started-hooks\n"
    );
    assert!(hook_paths
        .lock()
        .expect("lock")
        .contains(&"/poststart/peer".to_string()));

    // A failing postStart hook: the upstream event, and the container is restarted.
    let events: Api<Event> = Api::namespaced(node.client.clone(), "default");
    let failed = eventually("FailedPostStartHook event", 30, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("FailedPostStartHook"))
        }
    })
    .await;
    let note = failed.note.unwrap_or_default();
    assert!(
        note.starts_with("Exec lifecycle hook ([sh -c exit 7]) for Container \"badhook\""),
        "{note}"
    );

    // Shared IPC: one namespace for the pod's containers, not the host's; one /dev/shm.
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").expect("host ipc ns");
    let (code, main_ns) = exec(runtime, &main, "readlink /proc/self/ns/ipc").await;
    assert_eq!(code, 0, "{main_ns}");
    let (_, peer_ns) = exec(runtime, &peer, "readlink /proc/self/ns/ipc").await;
    assert_eq!(main_ns, peer_ns);
    assert_ne!(main_ns.trim(), host_ipc.display().to_string());
    let (code, out) = exec(runtime, &main, "echo shared > /dev/shm/hello").await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = exec(runtime, &peer, "cat /dev/shm/hello").await;
    assert_eq!((code, out.as_str()), (0, "shared\n"));

    // hostIPC: the host's namespace.
    let other = eventually("hostIPC container", 60, || async move {
        container_id(kubelet, "hostipc", "c")
    })
    .await;
    let (_, other_ns) = eventually("hostIPC container answers", 30, || {
        let other = other.clone();
        async move {
            let (code, out) = try_exec(runtime, &other, "readlink /proc/self/ns/ipc").await?;
            (code == 0).then_some((code, out))
        }
    })
    .await;
    assert_eq!(other_ns.trim(), host_ipc.display().to_string());

    // QoS: a BestEffort pod's containers get oom_score_adj 1000.
    let (_, adj) = exec(runtime, &main, "cat /proc/1/oom_score_adj").await;
    assert_eq!(adj.trim(), "1000");

    // securityContext.
    let (_, out) = exec(
        runtime,
        &secure,
        "id -u; id -G; touch /rootfs-write 2>/dev/null && echo rw || echo ro; \
         stat -c %g /scratch; touch /scratch/ok && echo scratch-ok; \
         grep -E '^(CapEff|NoNewPrivs)' /proc/1/status",
    )
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{out}");
    assert!(lines[1].split_whitespace().any(|g| g == "2000"), "{out}");
    assert_eq!(lines[2], "ro", "{out}");
    assert_eq!(lines[3], "2000", "{out}");
    assert_eq!(lines[4], "scratch-ok", "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");

    // Log rotation: the log is rotated while "main" keeps writing to the current file.
    let uid = kubelet
        .store
        .find("default", "hooks")
        .and_then(|e| e.pod.metadata.uid)
        .expect("uid");
    let log: PathBuf = dir
        .path()
        .join(format!("logs/default_hooks_{uid}/main/0.log"));
    eventually("some output", 20, || {
        let log = log.clone();
        async move { (std::fs::metadata(&log).ok()?.len() > 100).then_some(()) }
    })
    .await;
    let policy = LogRotation {
        max_size: 50,
        max_files: 2,
    };
    assert!(policy.rotate_all(&dir.path().join("logs"), jiff::Timestamp::now()) >= 1);
    let rotated = rotated_files(&log);
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert!(std::fs::read_to_string(&rotated[0])
        .expect("rotated")
        .contains(" stdout F line 0"));
    let fresh = eventually("new output in the current log", 20, || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).ok()?;
            (text.lines().count() >= 2).then_some(text)
        }
    })
    .await;
    // Every line of the current file is a well-formed record (no hole before the new ones).
    for line in fresh.lines() {
        let record = kubelet::runtime::cri_log::parse_record(line.as_bytes()).expect("record");
        assert!(
            String::from_utf8_lossy(record.content).starts_with("line "),
            "{line}"
        );
    }

    // Deletion: preStop hooks before the stop signal; namespaces gone.
    pods.delete("hooks", &DeleteParams::default())
        .await
        .expect("delete");
    pods.delete("hostipc", &DeleteParams::default())
        .await
        .expect("delete");
    for name in ["hooks", "hostipc"] {
        eventually("pod gone", 60, || {
            let pods = pods.clone();
            async move { matches!(pods.get_opt(name).await, Ok(None)).then_some(()) }
        })
        .await;
    }
    assert_eq!(
        std::fs::read_to_string(host.join("prestop")).expect("preStop file"),
        "stopping\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("term")).expect("term file"),
        "after-prestop\n"
    );
    assert!(hook_paths
        .lock()
        .expect("lock")
        .contains(&"/prestop/peer".to_string()));
    assert!(node
        .runtime
        .list_containers()
        .await
        .expect("list")
        .is_empty());
    let prefix = format!("kube-{}", &uid.replace('-', "")[..12]);
    assert!(!node
        .network
        .list_netns()
        .await
        .expect("namespaces")
        .iter()
        .any(|n| n.starts_with(&prefix)));
    assert!(!dir.path().join("root/ipc").join(&prefix).exists());
}
