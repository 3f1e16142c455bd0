//! `/stats/summary` figures of a real container (root only; skipped otherwise): a private
//! containerd runs a busybox container in the cgroup a BestEffort pod's container gets and in
//! a network namespace with an `eth0`; the collector reads its CPU and memory from the
//! cgroups, its network from `/proc/<pid>/net/dev`, its writable layer from the overlay
//! `upperdir`, and counts its processes.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::ObjectMeta;
use kubelet::node::stats::StatsCollector;
use kubelet::pod::PodEntry;
use kubelet::runtime::containerd::testing::unavailable_reason;
use kubelet::runtime::{ContainerConfig, ContainerRuntime, LABEL_CONTAINER_NAME, LABEL_POD_UID};

mod support;

use support::containerd_with_images;

/// A network namespace with an `eth0` (one end of a veth pair), deleted on drop.
struct Netns(String);

impl Netns {
    fn create(name: &str) -> Self {
        let ns = Self(name.to_string());
        let run = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().expect("ip");
            assert!(status.success(), "ip {args:?} failed");
        };
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run(&["netns", "add", name]);
        run(&[
            "-n",
            name,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "veth-peer",
        ]);
        run(&["-n", name, "link", "set", "eth0", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Removes the pod cgroup directories runc leaves behind.
struct PodCgroup(String);

impl Drop for PodCgroup {
    fn drop(&mut self) {
        for controller in [
            "cpu", "cpuacct", "memory", "pids", "cpuset", "blkio", "devices", "freezer", "systemd",
        ] {
            let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{controller}{}", self.0));
        }
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/unified{}", self.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_container_has_cpu_memory_network_and_disk_figures() {
    if let Some(reason) = unavailable_reason() {
        eprintln!("skipping real stats test: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_containerd, runtime) = containerd_with_images(dir.path()).await;

    let uid = format!("stats-test-{}", std::process::id());
    let parent = format!("/kubepods/besteffort/pod{uid}");
    let _cgroup = PodCgroup(parent.clone());
    let netns = Netns::create(&format!("kube-stats-test-{}", std::process::id()));
    let logs = dir.path().join("logs");
    let config = ContainerConfig {
        name: "work".into(),
        labels: [
            (LABEL_POD_UID.to_string(), uid.clone()),
            (LABEL_CONTAINER_NAME.to_string(), "work".to_string()),
        ]
        .into(),
        image: "busybox:1.35".into(),
        command: vec!["sh".into(), "-c".into()],
        args: vec![
            "head -c 4000000 /dev/urandom > /fill; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo done; sleep 100"
                .into(),
        ],
        netns_path: Some(format!("/var/run/netns/{}", netns.0).into()),
        log_path: logs.join(format!("default_work_{uid}/work/0.log")),
        cgroup_parent: parent.clone(),
        ..Default::default()
    };
    let id = runtime.create_container(&config).await.expect("create");
    runtime.start_container(&id).await.expect("start");

    let collector = StatsCollector::host("node-0", dir.path().join("root"), logs.clone());
    std::fs::create_dir_all(dir.path().join("root")).expect("mkdir");
    let entry = PodEntry {
        pod: Pod {
            metadata: ObjectMeta {
                name: Some("work".into()),
                namespace: Some("default".into()),
                uid: Some(uid.clone()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "work".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        },
        containers: [("work".to_string(), id.clone())].into(),
    };
    // Wait until the container wrote its file and burnt some CPU.
    let log = config.log_path.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("done")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "container never finished its work"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = tokio::task::spawn_blocking(move || collector.pod(&entry))
        .await
        .expect("collect");
    let result = std::panic::catch_unwind(|| {
        let container = &stats.containers[0];
        let cpu = container
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds);
        assert!(cpu > Some(0), "container cpu {cpu:?}");
        let pod_cpu = stats.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds);
        assert!(
            pod_cpu >= cpu,
            "pod cpu {pod_cpu:?} covers the container's {cpu:?}"
        );
        let memory = container.memory.as_ref().and_then(|m| m.usage_bytes);
        assert!(memory > Some(0), "container memory {memory:?}");
        let network = stats.network.as_ref().expect("pod network");
        assert_eq!(network.default.name, "eth0");
        let rootfs = container.rootfs.as_ref().and_then(|r| r.used_bytes);
        assert!(rootfs >= Some(4_000_000), "writable layer {rootfs:?}");
        let logs = container.logs.as_ref().and_then(|l| l.used_bytes);
        assert!(logs > Some(0), "logs {logs:?}");
        let processes = stats.process_stats.as_ref().and_then(|p| p.process_count);
        assert!(processes >= Some(1), "processes {processes:?}");
    });
    if let Err(error) = runtime.remove_container(&id).await {
        eprintln!("removing the test container failed: {error}");
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
