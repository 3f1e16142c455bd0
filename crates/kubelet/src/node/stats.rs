//! The kubelet's resource usage summary (`/stats/summary`, upstream's statsapi `v1alpha1`
//! `Summary`), gathered the way cAdvisor does it: node figures from `/proc` and `statvfs`, pod
//! and container figures from their cgroups (`<cgroup parent>` and `<cgroup parent>/<id>`),
//! pod networks from `/proc/<pid>/net/dev` of a process inside the pod, filesystem use from
//! the writable layer, log and emptyDir directories. Start at [`StatsCollector::summary`].
//! The eviction manager reads the same figures.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::cgroups::{dir_usage, fs_usage, Cgroups, InterfaceUsage, Proc};
use crate::pod::resources::cgroup_parent;
use crate::pod::{pod_log_dir, PodEntry, PodStore};

/// `Summary`: the node and its pods.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// The node.
    pub node: NodeStats,
    /// Every pod on the node.
    pub pods: Vec<PodStats>,
}

/// `NodeStats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// The node name.
    pub node_name: String,
    /// `kubelet`, `runtime` and `pods` system containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system_containers: Vec<ContainerStats>,
    /// When the node booted (the kubelet's start here).
    pub start_time: Option<Timestamp>,
    /// CPU.
    pub cpu: Option<CpuStats>,
    /// Memory.
    pub memory: Option<MemoryStats>,
    /// Network.
    pub network: Option<NetworkStats>,
    /// The filesystem of the kubelet's root dir.
    pub fs: Option<FsStats>,
    /// The runtime's image filesystem.
    pub runtime: Option<RuntimeStats>,
    /// Process limits.
    pub rlimit: Option<RlimitStats>,
}

/// `RuntimeStats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    /// Where images are stored.
    pub image_fs: Option<FsStats>,
    /// Where writable layers are stored.
    pub container_fs: Option<FsStats>,
}

/// `RlimitStats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RlimitStats {
    /// When read.
    pub time: Option<Timestamp>,
    /// `pid_max`.
    pub maxpid: Option<u64>,
    /// Processes running.
    pub curproc: Option<u64>,
}

/// `CPUStats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    /// When read.
    pub time: Option<Timestamp>,
    /// Average usage since the previous read, in nanocores.
    pub usage_nano_cores: Option<u64>,
    /// Cumulative usage, core-nanoseconds.
    pub usage_core_nano_seconds: Option<u64>,
}

/// `MemoryStats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    /// When read.
    pub time: Option<Timestamp>,
    /// Available memory (node: capacity minus working set; containers: limit minus working set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// Usage, page cache included.
    pub usage_bytes: Option<u64>,
    /// Working set.
    pub working_set_bytes: Option<u64>,
    /// Anonymous memory.
    pub rss_bytes: Option<u64>,
    /// Page faults.
    pub page_faults: Option<u64>,
    /// Major page faults.
    pub major_page_faults: Option<u64>,
}

/// `InterfaceStats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: Option<u64>,
    /// Receive errors.
    pub rx_errors: Option<u64>,
    /// Bytes sent.
    pub tx_bytes: Option<u64>,
    /// Send errors.
    pub tx_errors: Option<u64>,
}

/// `NetworkStats`: the default interface's figures inline, every interface in `interfaces`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStats {
    /// When read.
    pub time: Option<Timestamp>,
    /// The default interface.
    #[serde(flatten)]
    pub default: InterfaceStats,
    /// Every interface.
    #[serde(default)]
    pub interfaces: Vec<InterfaceStats>,
}

/// `FsStats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    /// When read.
    pub time: Option<Timestamp>,
    /// Free bytes for unprivileged users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// Filesystem size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    /// Bytes used by the thing measured.
    pub used_bytes: Option<u64>,
    /// Free inodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    /// Total inodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    /// Inodes used by the thing measured.
    pub inodes_used: Option<u64>,
}

/// `PodReference`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PodReference {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Uid.
    pub uid: String,
}

/// `VolumeStats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStats {
    /// Usage of the volume's directory.
    #[serde(flatten)]
    pub fs: FsStats,
    /// The volume name.
    pub name: String,
}

/// `ProcessStats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcessStats {
    /// Processes in the pod.
    pub process_count: Option<u64>,
}

/// `PodStats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    /// The pod.
    pub pod_ref: PodReference,
    /// When the pod started.
    pub start_time: Option<Timestamp>,
    /// Its containers.
    pub containers: Vec<ContainerStats>,
    /// The pod cgroup's CPU.
    pub cpu: Option<CpuStats>,
    /// The pod cgroup's memory.
    pub memory: Option<MemoryStats>,
    /// The pod network namespace.
    pub network: Option<NetworkStats>,
    /// Local volumes (emptyDir).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume: Vec<VolumeStats>,
    /// Writable layers, logs and local volumes together.
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: Option<FsStats>,
    /// Processes.
    #[serde(rename = "process_stats")]
    pub process_stats: Option<ProcessStats>,
}

/// `ContainerStats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// Container name.
    pub name: String,
    /// When it started.
    pub start_time: Option<Timestamp>,
    /// CPU.
    pub cpu: Option<CpuStats>,
    /// Memory.
    pub memory: Option<MemoryStats>,
    /// Writable layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<FsStats>,
    /// Log files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<FsStats>,
}

/// Where the collector reads from.
#[derive(Debug, Clone)]
pub struct StatsPaths {
    /// This node's name.
    pub node_name: String,
    /// The cgroup mount (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// The proc mount (`/proc`).
    pub proc_root: PathBuf,
    /// `--root-dir` (node filesystem; pod dirs under `pods/<uid>`).
    pub root_dir: PathBuf,
    /// `--pod-logs-dir`.
    pub pod_logs_dir: PathBuf,
}

/// Gathers summaries; remembers the previous CPU reading of each cgroup to report nanocores.
#[derive(Debug)]
pub struct StatsCollector {
    paths: StatsPaths,
    cgroups: Cgroups,
    proc: Proc,
    started: Timestamp,
    previous_cpu: Mutex<HashMap<String, (Timestamp, u64)>>,
}

fn interface_stats(usage: &InterfaceUsage) -> InterfaceStats {
    InterfaceStats {
        name: usage.name.clone(),
        rx_bytes: Some(usage.rx_bytes),
        rx_errors: Some(usage.rx_errors),
        tx_bytes: Some(usage.tx_bytes),
        tx_errors: Some(usage.tx_errors),
    }
}

fn network_stats(now: Timestamp, interfaces: &[InterfaceUsage]) -> Option<NetworkStats> {
    let default = interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .or_else(|| interfaces.first())?;
    Some(NetworkStats {
        time: Some(now),
        default: interface_stats(default),
        interfaces: interfaces.iter().map(interface_stats).collect(),
    })
}

fn started_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn container_started_at(pod: &Pod, name: &str) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|list| list.iter().find(|c| c.name == name))
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.as_ref())
        .map(|t| t.0)
}

impl StatsCollector {
    /// A collector reading from `paths`.
    pub fn new(paths: StatsPaths) -> Self {
        Self {
            cgroups: Cgroups::new(&paths.cgroup_root),
            proc: Proc::new(&paths.proc_root),
            paths,
            started: Timestamp::now(),
            previous_cpu: Mutex::new(HashMap::new()),
        }
    }

    /// A collector on the real `/sys/fs/cgroup` and `/proc`.
    pub fn host(node_name: &str, root_dir: PathBuf, pod_logs_dir: PathBuf) -> Self {
        Self::new(StatsPaths {
            node_name: node_name.to_string(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            proc_root: PathBuf::from("/proc"),
            root_dir,
            pod_logs_dir,
        })
    }

    fn cpu(&self, key: &str, now: Timestamp, usage_ns: u64) -> CpuStats {
        let nano_cores = self.previous_cpu.lock().ok().and_then(|mut previous| {
            let last = previous.insert(key.to_string(), (now, usage_ns));
            let (then, before) = last?;
            let elapsed = now.duration_since(then).as_nanos();
            (elapsed > 0 && usage_ns >= before).then(|| {
                let cores = u128::from(usage_ns - before) * 1_000_000_000 / elapsed as u128;
                u64::try_from(cores).unwrap_or(u64::MAX)
            })
        });
        CpuStats {
            time: Some(now),
            usage_nano_cores: nano_cores,
            usage_core_nano_seconds: Some(usage_ns),
        }
    }

    fn filesystem(&self, now: Timestamp, used: Option<(u64, u64)>) -> FsStats {
        let (capacity, available, inodes, inodes_free) = fs_usage(&self.paths.root_dir)
            .map(|(c, a, i, f)| (Some(c), Some(a), Some(i), Some(f)))
            .unwrap_or_default();
        let (used_bytes, inodes_used) = match used {
            Some((bytes, inodes)) => (Some(bytes), Some(inodes)),
            None => (
                capacity.zip(available).map(|(c, a)| c.saturating_sub(a)),
                inodes.zip(inodes_free).map(|(i, f)| i.saturating_sub(f)),
            ),
        };
        FsStats {
            time: Some(now),
            available_bytes: available,
            capacity_bytes: capacity,
            used_bytes,
            inodes_free,
            inodes,
            inodes_used,
        }
    }

    /// The node's figures.
    pub fn node(&self) -> NodeStats {
        let now = Timestamp::now();
        let meminfo = self.proc.meminfo();
        // As cAdvisor: the root cgroup's figures where it has them (v1), else /proc/meminfo.
        let root = self.cgroups.usage("/").filter(|u| u.memory_usage > 0);
        let memory = meminfo.map(|m| match root {
            Some(root) => {
                let mut stats = memory_of(now, &root, Some(m.total));
                stats.rss_bytes = Some(m.anon);
                stats
            }
            None => MemoryStats {
                time: Some(now),
                available_bytes: Some(m.total.saturating_sub(m.working_set())),
                usage_bytes: Some(m.usage()),
                working_set_bytes: Some(m.working_set()),
                rss_bytes: Some(m.anon),
                page_faults: Some(0),
                major_page_faults: Some(0),
            },
        });
        let cpu = self
            .proc
            .cpu_usage_ns()
            .map(|usage| self.cpu("node", now, usage));
        let fs = self.filesystem(now, None);
        let pods_usage = self.cgroups.usage("/kubepods");
        let system_containers = pods_usage
            .map(|usage| {
                vec![ContainerStats {
                    name: "pods".into(),
                    start_time: Some(self.started),
                    cpu: Some(self.cpu("/kubepods", now, usage.cpu_usage_ns)),
                    memory: Some(memory_of(now, &usage, meminfo.map(|m| m.total))),
                    rootfs: None,
                    logs: None,
                }]
            })
            .unwrap_or_default();
        NodeStats {
            node_name: self.paths.node_name.clone(),
            system_containers,
            start_time: Some(self.started),
            cpu,
            memory,
            network: network_stats(now, &self.proc.interfaces(None)),
            fs: Some(fs.clone()),
            runtime: Some(RuntimeStats {
                image_fs: Some(fs.clone()),
                container_fs: Some(fs),
            }),
            rlimit: Some(RlimitStats {
                time: Some(now),
                maxpid: self.proc.pid_max(),
                curproc: Some(self.proc.process_count()),
            }),
        }
    }

    /// One pod's figures.
    pub fn pod(&self, entry: &PodEntry) -> PodStats {
        let now = Timestamp::now();
        let pod = &entry.pod;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let parent = cgroup_parent(pod);
        let logs_dir = pod_log_dir(&self.paths.pod_logs_dir, &namespace, &name, &uid);
        let mut containers = Vec::new();
        let mut first_pid = None;
        let mut ephemeral = (0u64, 0u64);
        for (container, id) in &entry.containers {
            let cgroup = format!("{parent}/{id}");
            let usage = self.cgroups.usage(&cgroup);
            let pid = self.cgroups.pids(&cgroup).first().copied();
            first_pid = first_pid.or(pid);
            let rootfs_used = pid
                .and_then(|p| self.proc.upperdir(p))
                .map(|d| dir_usage(&d));
            let logs_used = dir_usage(&logs_dir.join(container));
            for used in rootfs_used.iter().chain(std::iter::once(&logs_used)) {
                ephemeral.0 = ephemeral.0.saturating_add(used.0);
                ephemeral.1 = ephemeral.1.saturating_add(used.1);
            }
            containers.push(ContainerStats {
                name: container.clone(),
                start_time: container_started_at(pod, container),
                cpu: usage.map(|u| self.cpu(&cgroup, now, u.cpu_usage_ns)),
                memory: usage.map(|u| memory_of(now, &u, None)),
                rootfs: Some(self.filesystem(now, Some(rootfs_used.unwrap_or((0, 0))))),
                logs: Some(self.filesystem(now, Some(logs_used))),
            });
        }
        let mut volumes = Vec::new();
        let empty_dirs = self
            .paths
            .root_dir
            .join("pods")
            .join(&uid)
            .join("volumes/kubernetes.io~empty-dir");
        if let Ok(entries) = std::fs::read_dir(&empty_dirs) {
            for dir in entries.flatten() {
                let used = dir_usage(&dir.path());
                ephemeral.0 = ephemeral.0.saturating_add(used.0);
                ephemeral.1 = ephemeral.1.saturating_add(used.1);
                volumes.push(VolumeStats {
                    fs: self.filesystem(now, Some(used)),
                    name: dir.file_name().to_string_lossy().to_string(),
                });
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        let usage = self.cgroups.usage(&parent);
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let interfaces = match (host_network, first_pid) {
            (true, _) => self.proc.interfaces(None),
            (false, Some(pid)) => self.proc.interfaces(Some(pid)),
            (false, None) => Vec::new(),
        };
        let process_count = containers_pids(&self.cgroups, &parent, entry);
        PodStats {
            pod_ref: PodReference {
                name,
                namespace,
                uid: uid.clone(),
            },
            start_time: started_at(pod),
            containers,
            cpu: usage.map(|u| self.cpu(&parent, now, u.cpu_usage_ns)),
            memory: usage.map(|u| memory_of(now, &u, None)),
            network: network_stats(now, &interfaces),
            volume: volumes,
            ephemeral_storage: Some(self.filesystem(now, Some(ephemeral))),
            process_stats: Some(ProcessStats {
                process_count: Some(process_count),
            }),
        }
    }

    /// The whole summary for the pods in `store`.
    pub fn summary(&self, store: &PodStore) -> Summary {
        let mut pods: Vec<PodStats> = entries(store).iter().map(|e| self.pod(e)).collect();
        pods.sort_by(|a, b| {
            (&a.pod_ref.namespace, &a.pod_ref.name).cmp(&(&b.pod_ref.namespace, &b.pod_ref.name))
        });
        Summary {
            node: self.node(),
            pods,
        }
    }
}

/// Every pod of the store with its container ids.
pub fn entries(store: &PodStore) -> Vec<PodEntry> {
    store
        .pods()
        .iter()
        .filter_map(|pod| {
            store.find(
                pod.metadata.namespace.as_deref()?,
                pod.metadata.name.as_deref()?,
            )
        })
        .collect()
}

fn containers_pids(cgroups: &Cgroups, parent: &str, entry: &PodEntry) -> u64 {
    entry
        .containers
        .values()
        .map(|id| cgroups.pids(&format!("{parent}/{id}")).len() as u64)
        .sum()
}

fn memory_of(
    now: Timestamp,
    usage: &super::cgroups::CgroupUsage,
    limit: Option<u64>,
) -> MemoryStats {
    MemoryStats {
        time: Some(now),
        available_bytes: limit.map(|l| l.saturating_sub(usage.working_set)),
        usage_bytes: Some(usage.memory_usage),
        working_set_bytes: Some(usage.working_set),
        rss_bytes: Some(usage.rss),
        page_faults: Some(usage.page_faults),
        major_page_faults: Some(usage.major_page_faults),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use kube::api::ObjectMeta;
    use std::path::Path;

    fn write(root: &Path, path: &str, text: &str) {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, text).expect("write");
    }

    #[test]
    fn pod_figures_come_from_the_pod_and_container_cgroups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let cg = root.join("cg");
        write(
            &cg,
            "cpuacct/kubepods/besteffort/podu1/cpuacct.usage",
            "9000",
        );
        write(
            &cg,
            "memory/kubepods/besteffort/podu1/memory.usage_in_bytes",
            "4096",
        );
        write(
            &cg,
            "memory/kubepods/besteffort/podu1/memory.stat",
            "total_inactive_file 96\n",
        );
        write(
            &cg,
            "cpuacct/kubepods/besteffort/podu1/cid/cpuacct.usage",
            "8000",
        );
        write(
            &cg,
            "memory/kubepods/besteffort/podu1/cid/memory.usage_in_bytes",
            "2048",
        );
        write(
            &cg,
            "pids/kubepods/besteffort/podu1/cid/cgroup.procs",
            "77\n",
        );
        let proc_root = root.join("proc");
        write(
            &proc_root,
            "77/net/dev",
            "h\nh\n  eth0: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n",
        );
        write(&proc_root, "meminfo", "MemTotal: 100 kB\nMemFree: 50 kB\n");
        write(&root.join("logs"), "default_web_u1/c/0.log", "hello\n");
        write(
            &root.join("root"),
            "pods/u1/volumes/kubernetes.io~empty-dir/scratch/f",
            "data",
        );
        let collector = StatsCollector::new(StatsPaths {
            node_name: "node-0".into(),
            cgroup_root: cg,
            proc_root,
            root_dir: root.join("root"),
            pod_logs_dir: root.join("logs"),
        });
        let entry = PodEntry {
            pod: Pod {
                metadata: ObjectMeta {
                    name: Some("web".into()),
                    namespace: Some("default".into()),
                    uid: Some("u1".into()),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                status: None,
            },
            containers: [("c".to_string(), "cid".to_string())].into(),
        };
        let stats = collector.pod(&entry);
        assert_eq!(stats.pod_ref.uid, "u1");
        let memory = stats.memory.expect("pod memory");
        assert_eq!(memory.working_set_bytes, Some(4000));
        assert_eq!(
            stats.cpu.and_then(|c| c.usage_core_nano_seconds),
            Some(9000)
        );
        let container = &stats.containers[0];
        assert_eq!(
            container.memory.as_ref().and_then(|m| m.usage_bytes),
            Some(2048)
        );
        assert!(container.logs.as_ref().and_then(|l| l.used_bytes) > Some(0));
        let network = stats.network.expect("pod network");
        assert_eq!(network.default.name, "eth0");
        assert_eq!(network.default.tx_bytes, Some(200));
        assert_eq!(stats.volume[0].name, "scratch");
        assert!(stats.ephemeral_storage.and_then(|e| e.used_bytes) > Some(0));
        let json = serde_json::to_value(collector.node()).expect("json");
        assert_eq!(json["nodeName"], "node-0");
        assert_eq!(json["memory"]["workingSetBytes"], 50 * 1024);
        assert!(json["fs"]["capacityBytes"].as_u64() > Some(0));
        assert!(json["runtime"]["imageFs"].is_object());
    }
}
