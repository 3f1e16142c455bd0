//! The Node object this kubelet registers and the status it posts: labels, addresses,
//! capacity, node info, conditions and images. Pure builders here; the loops that call the API
//! live in [`super::agent`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;

use super::info::MachineInfo;
use crate::runtime::{ImageInfo, RuntimeVersion};

/// The kubelet version this implementation reports.
pub const KUBELET_VERSION: &str = "v1.33.0";

/// The node's fixed identity and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Node name (`--hostname-override`).
    pub name: String,
    /// Node IP (`--node-ip`).
    pub node_ip: IpAddr,
    /// Kubelet API port (`--port`).
    pub port: u16,
    /// Pod capacity (`--max-pods`).
    pub max_pods: u32,
}

/// What decides the Ready condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeHealth {
    /// The container runtime answered.
    pub runtime_ok: bool,
    /// The pod network is configured (pod CIDR known, CNI config written).
    pub network_ready: bool,
    /// The eviction manager reports memory pressure.
    pub memory_pressure: bool,
    /// The eviction manager reports disk pressure.
    pub disk_pressure: bool,
}

/// The Node object to register (metadata only; the status is posted separately).
pub fn node_object(config: &NodeConfig) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            labels: Some(node_labels(config)),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The labels the kubelet sets on its node.
pub fn node_labels(config: &NodeConfig) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), config.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), "amd64".to_string()),
    ])
}

fn condition(
    kind: &str,
    ok: bool,
    status_when_ok: &str,
    reason: &str,
    message: &str,
    previous: Option<&[NodeCondition]>,
    now: Time,
) -> NodeCondition {
    let status = if ok {
        status_when_ok.to_string()
    } else if status_when_ok == "True" {
        "False".to_string()
    } else {
        "True".to_string()
    };
    let transition = previous
        .and_then(|conds| conds.iter().find(|c| c.type_ == kind))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    NodeCondition {
        type_: kind.to_string(),
        status,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(now),
        last_transition_time: Some(transition),
    }
}

/// The node conditions for `health`, keeping transition times from `previous`.
pub fn conditions(
    health: &NodeHealth,
    previous: Option<&[NodeCondition]>,
    now: Time,
) -> Vec<NodeCondition> {
    let ready = health.runtime_ok && health.network_ready;
    let (reason, message) = if ready {
        (
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
        )
    } else if !health.runtime_ok {
        (
            "KubeletNotReady",
            "container runtime is down: the runtime did not answer".to_string(),
        )
    } else {
        (
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized (waiting for the node's pod CIDR)".to_string(),
        )
    };
    let (memory_reason, memory_message) = if health.memory_pressure {
        (
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        )
    } else {
        (
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        )
    };
    let (disk_reason, disk_message) = if health.disk_pressure {
        ("KubeletHasDiskPressure", "kubelet has disk pressure")
    } else {
        ("KubeletHasNoDiskPressure", "kubelet has no disk pressure")
    };
    vec![
        condition(
            "MemoryPressure",
            !health.memory_pressure,
            "False",
            memory_reason,
            memory_message,
            previous,
            now.clone(),
        ),
        condition(
            "DiskPressure",
            !health.disk_pressure,
            "False",
            disk_reason,
            disk_message,
            previous,
            now.clone(),
        ),
        condition(
            "PIDPressure",
            true,
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            previous,
            now.clone(),
        ),
        condition("Ready", ready, "True", reason, &message, previous, now),
    ]
}

/// The reasons of the node status events for the conditions going from `previous` to
/// `current`, in condition order, as upstream's status setters record them: a pressure
/// condition records its new state when it differs from the previous one (a condition not
/// there before counts as `Unknown`, so a new node records each once); Ready records
/// `NodeReady` or `NodeNotReady` only when a previous Ready condition had another status.
pub fn condition_events(
    previous: Option<&[NodeCondition]>,
    current: &[NodeCondition],
) -> Vec<&'static str> {
    let before = |kind: &str| {
        previous
            .into_iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .map(|c| c.status.as_str())
    };
    current
        .iter()
        .filter_map(|condition| {
            let was = before(&condition.type_);
            let on = condition.status == "True";
            let reason = match condition.type_.as_str() {
                "Ready" if was.is_some() => {
                    if on {
                        "NodeReady"
                    } else {
                        "NodeNotReady"
                    }
                }
                "MemoryPressure" if on => "NodeHasInsufficientMemory",
                "MemoryPressure" => "NodeHasSufficientMemory",
                "DiskPressure" if on => "NodeHasDiskPressure",
                "DiskPressure" => "NodeHasNoDiskPressure",
                "PIDPressure" if on => "NodeHasInsufficientPID",
                "PIDPressure" => "NodeHasSufficientPID",
                _ => return None,
            };
            (was.unwrap_or("Unknown") != condition.status).then_some(reason)
        })
        .collect()
}

/// `status.images` from the runtime's image list (names plus `repo@digest`).
pub fn images(list: &[ImageInfo]) -> Vec<ContainerImage> {
    let mut out: Vec<ContainerImage> = list
        .iter()
        .map(|image| {
            let mut names: Vec<String> = Vec::new();
            for name in &image.names {
                let repo = repository(name);
                let digest_ref = format!("{repo}@{}", image.digest);
                if !image.digest.is_empty() && !names.contains(&digest_ref) {
                    names.push(digest_ref);
                }
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
            ContainerImage {
                names: Some(names),
                size_bytes: i64::try_from(image.size).ok(),
            }
        })
        .collect();
    out.sort_by_key(|image| std::cmp::Reverse(image.size_bytes));
    out
}

/// The repository part of an image reference (without tag or digest).
pub fn repository(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    }
}

/// Upstream's taint for a node under memory pressure.
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
/// Upstream's taint for a node under disk pressure.
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";

/// `taints` with the pressure taints (`NoSchedule`) added or removed per `health`; `None`
/// when nothing changes.
pub fn pressure_taints(
    taints: &[k8s_openapi::api::core::v1::Taint],
    health: &NodeHealth,
) -> Option<Vec<k8s_openapi::api::core::v1::Taint>> {
    let mut out: Vec<_> = taints
        .iter()
        .filter(|t| t.key != TAINT_MEMORY_PRESSURE && t.key != TAINT_DISK_PRESSURE)
        .cloned()
        .collect();
    for (key, on) in [
        (TAINT_MEMORY_PRESSURE, health.memory_pressure),
        (TAINT_DISK_PRESSURE, health.disk_pressure),
    ] {
        if on {
            out.push(
                taints
                    .iter()
                    .find(|t| t.key == key)
                    .cloned()
                    .unwrap_or_else(|| k8s_openapi::api::core::v1::Taint {
                        key: key.to_string(),
                        effect: "NoSchedule".into(),
                        time_added: Some(Time(jiff::Timestamp::now())),
                        value: None,
                    }),
            );
        }
    }
    let same = out.len() == taints.len() && out.iter().all(|t| taints.contains(t));
    (!same).then_some(out)
}

/// The full node status.
pub fn node_status(
    config: &NodeConfig,
    info: &MachineInfo,
    runtime: &RuntimeVersion,
    image_list: &[ImageInfo],
    health: &NodeHealth,
    previous: Option<&NodeStatus>,
    now: Time,
) -> NodeStatus {
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(info.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", info.memory_kib)),
        ),
        ("pods".to_string(), Quantity(config.max_pods.to_string())),
        (
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Ki", info.ephemeral_storage_kib)),
        ),
        ("hugepages-2Mi".to_string(), Quantity("0".into())),
        ("hugepages-1Gi".to_string(), Quantity("0".into())),
    ]);
    NodeStatus {
        capacity: Some(capacity.clone()),
        allocatable: Some(capacity),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.name.clone(),
            },
        ]),
        conditions: Some(conditions(
            health,
            previous.and_then(|s| s.conditions.as_deref()),
            now,
        )),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id: info.boot_id.clone(),
            container_runtime_version: format!(
                "{}://{}",
                runtime.runtime_name, runtime.runtime_version
            ),
            kernel_version: info.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: info.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: info.os_image.clone(),
            system_uuid: info.system_uuid.clone(),
            swap: None,
        }),
        images: Some(images(image_list)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    fn config() -> NodeConfig {
        NodeConfig {
            name: "node-0".into(),
            node_ip: "192.0.2.2".parse().expect("ip"),
            port: 10250,
            max_pods: 110,
        }
    }

    #[test]
    fn condition_changes_record_upstreams_node_status_events() {
        let t = now("2026-11-22T04:00:00Z");
        let health = |network_ready, memory_pressure, disk_pressure| NodeHealth {
            runtime_ok: true,
            network_ready,
            memory_pressure,
            disk_pressure,
        };
        // A new node: each pressure condition once; Ready had no earlier state.
        let first = conditions(&health(false, false, false), None, t.clone());
        assert_eq!(
            condition_events(None, &first),
            [
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeHasSufficientPID"
            ]
        );
        assert_eq!(condition_events(Some(&[]), &first).len(), 3);
        // Nothing changed: nothing recorded.
        let same = conditions(&health(false, false, false), Some(&first), t.clone());
        assert!(condition_events(Some(&first), &same).is_empty());
        // The network comes up: NodeReady.
        let ready = conditions(&health(true, false, false), Some(&same), t.clone());
        assert_eq!(condition_events(Some(&same), &ready), ["NodeReady"]);
        // Memory runs short, then disk; then both clear and the runtime goes away.
        let short = conditions(&health(true, true, false), Some(&ready), t.clone());
        assert_eq!(
            condition_events(Some(&ready), &short),
            ["NodeHasInsufficientMemory"]
        );
        let full = conditions(&health(true, true, true), Some(&short), t.clone());
        assert_eq!(
            condition_events(Some(&short), &full),
            ["NodeHasDiskPressure"]
        );
        let mut down = health(true, false, false);
        down.runtime_ok = false;
        let down = conditions(&down, Some(&full), t.clone());
        assert_eq!(
            condition_events(Some(&full), &down),
            [
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeNotReady"
            ]
        );
        // The node lifecycle controller marked every condition Unknown: all are recorded again.
        let mut unknown = down.clone();
        for condition in &mut unknown {
            condition.status = "Unknown".into();
        }
        assert_eq!(
            condition_events(Some(&unknown), &ready),
            [
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeHasSufficientPID",
                "NodeReady"
            ]
        );
    }

    #[test]
    fn ready_needs_runtime_and_network_and_keeps_transition_times() {
        let t0 = now("2026-11-22T04:00:00Z");
        let t1 = now("2026-11-22T04:00:10Z");
        let not_ready = conditions(
            &NodeHealth {
                runtime_ok: true,
                network_ready: false,
                ..Default::default()
            },
            None,
            t0.clone(),
        );
        let ready_cond = not_ready
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("ready");
        assert_eq!(ready_cond.status, "False");
        assert_eq!(ready_cond.reason.as_deref(), Some("KubeletNotReady"));
        let ready = conditions(
            &NodeHealth {
                runtime_ok: true,
                network_ready: true,
                ..Default::default()
            },
            Some(&not_ready),
            t1.clone(),
        );
        let ready_cond = ready.iter().find(|c| c.type_ == "Ready").expect("ready");
        assert_eq!(ready_cond.status, "True");
        assert_eq!(ready_cond.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            ready_cond.message.as_deref(),
            Some("kubelet is posting ready status")
        );
        assert_eq!(ready_cond.last_transition_time, Some(t1.clone()));
        let memory = ready
            .iter()
            .find(|c| c.type_ == "MemoryPressure")
            .expect("mem");
        assert_eq!(memory.status, "False");
        assert_eq!(memory.last_transition_time, Some(t0));
        assert_eq!(memory.last_heartbeat_time, Some(t1));
    }

    #[test]
    fn node_status_reports_capacity_info_and_endpoint() {
        let info = MachineInfo {
            cpus: 2,
            memory_kib: 8041516,
            ephemeral_storage_kib: 1000,
            ..Default::default()
        };
        let runtime = RuntimeVersion {
            runtime_name: "containerd".into(),
            runtime_version: "1.6.20".into(),
        };
        let image = ImageInfo {
            names: vec!["docker.io/library/busybox:1.35".into()],
            digest: "sha256:abc".into(),
            size: 1234,
        };
        let status = node_status(
            &config(),
            &info,
            &runtime,
            &[image],
            &NodeHealth::default(),
            None,
            now("2026-11-22T04:00:00Z"),
        );
        let capacity = status.capacity.expect("capacity");
        assert_eq!(capacity["cpu"].0, "2");
        assert_eq!(capacity["memory"].0, "8041516Ki");
        assert_eq!(capacity["pods"].0, "110");
        let node_info = status.node_info.expect("info");
        assert_eq!(node_info.container_runtime_version, "containerd://1.6.20");
        assert_eq!(node_info.kubelet_version, "v1.33.0");
        assert_eq!(
            status
                .daemon_endpoints
                .and_then(|d| d.kubelet_endpoint)
                .map(|e| e.port),
            Some(10250)
        );
        let addresses = status.addresses.expect("addresses");
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "192.0.2.2");
        let images = status.images.expect("images");
        assert_eq!(
            images[0].names.as_deref(),
            Some(
                &[
                    "docker.io/library/busybox@sha256:abc".to_string(),
                    "docker.io/library/busybox:1.35".to_string()
                ][..]
            )
        );
    }

    #[test]
    fn repository_strips_tag_and_digest_but_not_ports() {
        assert_eq!(
            repository("docker.io/library/busybox:1.35"),
            "docker.io/library/busybox"
        );
        assert_eq!(repository("localhost:5000/x"), "localhost:5000/x");
        assert_eq!(repository("a/b@sha256:1"), "a/b");
    }
}
