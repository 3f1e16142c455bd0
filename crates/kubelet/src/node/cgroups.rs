//! Reading resource usage the way cAdvisor does for upstream's kubelet: cgroup files (v1
//! hybrid, as on these hosts, or the v2 unified hierarchy), `/proc` (meminfo, stat, net/dev,
//! mountinfo) and directory sizes. Every reader takes its root directory, so tests point them
//! at a fixture tree; a missing file reads as "no figure", never as an error.

use std::path::{Path, PathBuf};

/// CPU and memory of one cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory in use (page cache included).
    pub memory_usage: u64,
    /// Working set: usage minus inactive file pages.
    pub working_set: u64,
    /// Anonymous memory (rss).
    pub rss: u64,
    /// Page faults.
    pub page_faults: u64,
    /// Major page faults.
    pub major_page_faults: u64,
}

/// Byte and error counters of one network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceUsage {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Send errors.
    pub tx_errors: u64,
}

/// The cgroup filesystem, mounted at `root` (normally `/sys/fs/cgroup`).
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file such as `memory.stat` or `cpu.stat`.
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == key).then_some(())?;
        parts.next()?.parse().ok()
    })
}

impl Cgroups {
    /// The cgroup filesystem at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Whether `root` is the v2 unified hierarchy.
    pub fn is_v2(&self) -> bool {
        self.root.join("cgroup.controllers").exists()
    }

    fn dir(&self, controller: &str, cgroup: &str) -> PathBuf {
        let relative = cgroup.trim_start_matches('/');
        if self.is_v2() {
            self.root.join(relative)
        } else {
            self.root.join(controller).join(relative)
        }
    }

    /// Usage of `cgroup` (e.g. `/kubepods/besteffort/pod<uid>`); `None` when it does not exist.
    pub fn usage(&self, cgroup: &str) -> Option<CgroupUsage> {
        if self.is_v2() {
            let dir = self.dir("", cgroup);
            let cpu = std::fs::read_to_string(dir.join("cpu.stat")).ok();
            let memory_usage = read_u64(&dir.join("memory.current"));
            if cpu.is_none() && memory_usage.is_none() {
                return None;
            }
            let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
            let memory_usage = memory_usage.unwrap_or(0);
            let inactive = keyed(&stat, "inactive_file").unwrap_or(0);
            Some(CgroupUsage {
                cpu_usage_ns: cpu
                    .as_deref()
                    .and_then(|c| keyed(c, "usage_usec"))
                    .unwrap_or(0)
                    .saturating_mul(1000),
                memory_usage,
                working_set: memory_usage.saturating_sub(inactive),
                rss: keyed(&stat, "anon").unwrap_or(0),
                page_faults: keyed(&stat, "pgfault").unwrap_or(0),
                major_page_faults: keyed(&stat, "pgmajfault").unwrap_or(0),
            })
        } else {
            let cpu = read_u64(&self.dir("cpuacct", cgroup).join("cpuacct.usage"));
            let memory_dir = self.dir("memory", cgroup);
            let memory_usage = read_u64(&memory_dir.join("memory.usage_in_bytes"));
            if cpu.is_none() && memory_usage.is_none() {
                return None;
            }
            let stat = std::fs::read_to_string(memory_dir.join("memory.stat")).unwrap_or_default();
            let memory_usage = memory_usage.unwrap_or(0);
            let inactive = keyed(&stat, "total_inactive_file").unwrap_or(0);
            Some(CgroupUsage {
                cpu_usage_ns: cpu.unwrap_or(0),
                memory_usage,
                working_set: memory_usage.saturating_sub(inactive),
                rss: keyed(&stat, "total_rss").unwrap_or(0),
                page_faults: keyed(&stat, "total_pgfault").unwrap_or(0),
                major_page_faults: keyed(&stat, "total_pgmajfault").unwrap_or(0),
            })
        }
    }

    /// The process ids in `cgroup` (its own `cgroup.procs`).
    pub fn pids(&self, cgroup: &str) -> Vec<u32> {
        let candidates = if self.is_v2() {
            vec![self.dir("", cgroup)]
        } else {
            vec![self.dir("pids", cgroup), self.dir("memory", cgroup)]
        };
        for dir in candidates {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                return text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            }
        }
        Vec::new()
    }
}

/// The `/proc` filesystem at `root` (normally `/proc`).
#[derive(Debug, Clone)]
pub struct Proc {
    root: PathBuf,
}

/// Memory figures of `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// MemTotal.
    pub total: u64,
    /// MemFree.
    pub free: u64,
    /// Inactive(file).
    pub inactive_file: u64,
    /// AnonPages.
    pub anon: u64,
}

impl MemInfo {
    /// Memory in use (total minus free).
    pub fn usage(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }

    /// The working set as upstream counts it: usage minus inactive file pages.
    pub fn working_set(&self) -> u64 {
        self.usage().saturating_sub(self.inactive_file)
    }
}

/// Parses a `/proc/meminfo` text.
pub fn parse_meminfo(text: &str) -> MemInfo {
    let kib = |key: &str| {
        text.lines()
            .find_map(|line| {
                let rest = line.strip_prefix(key)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
            .unwrap_or(0)
            .saturating_mul(1024)
    };
    MemInfo {
        total: kib("MemTotal"),
        free: kib("MemFree"),
        inactive_file: kib("Inactive(file)"),
        anon: kib("AnonPages"),
    }
}

/// Parses a `net/dev` text into per-interface counters (loopback left out).
pub fn parse_net_dev(text: &str) -> Vec<InterfaceUsage> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" || name.contains('|') {
                return None;
            }
            let fields: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            if fields.len() < 11 {
                return None;
            }
            Some(InterfaceUsage {
                name: name.to_string(),
                rx_bytes: fields[0],
                rx_errors: fields[2],
                tx_bytes: fields[8],
                tx_errors: fields[10],
            })
        })
        .collect()
}

/// The busy CPU time (nanoseconds) of the `cpu` line of `/proc/stat` (USER_HZ = 100).
pub fn parse_proc_stat_cpu(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, t)| *t)
        .sum();
    Some(busy.saturating_mul(10_000_000))
}

/// The overlay `upperdir` of the root mount in a `mountinfo` text (a container's writable layer).
pub fn root_upperdir(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(4) != Some(&"/") {
            return None;
        }
        let dash = fields.iter().position(|f| *f == "-")?;
        if fields.get(dash + 1) != Some(&"overlay") {
            return None;
        }
        fields.get(dash + 3)?.split(',').find_map(|option| {
            option
                .strip_prefix("upperdir=")
                .map(|p| PathBuf::from(p.to_string()))
        })
    })
}

impl Proc {
    /// The proc filesystem at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `/proc/meminfo`.
    pub fn meminfo(&self) -> Option<MemInfo> {
        std::fs::read_to_string(self.root.join("meminfo"))
            .ok()
            .map(|t| parse_meminfo(&t))
    }

    /// Busy CPU time of the whole machine, nanoseconds.
    pub fn cpu_usage_ns(&self) -> Option<u64> {
        parse_proc_stat_cpu(&std::fs::read_to_string(self.root.join("stat")).ok()?)
    }

    /// Interfaces of the network namespace of `pid` (`None`: the kubelet's own).
    pub fn interfaces(&self, pid: Option<u32>) -> Vec<InterfaceUsage> {
        let path = match pid {
            Some(pid) => self.root.join(pid.to_string()).join("net/dev"),
            None => self.root.join("net/dev"),
        };
        std::fs::read_to_string(path)
            .map(|t| parse_net_dev(&t))
            .unwrap_or_default()
    }

    /// The writable layer of the container whose process is `pid`.
    pub fn upperdir(&self, pid: u32) -> Option<PathBuf> {
        root_upperdir(
            &std::fs::read_to_string(self.root.join(pid.to_string()).join("mountinfo")).ok()?,
        )
    }

    /// Number of processes (numeric entries).
    pub fn process_count(&self) -> u64 {
        std::fs::read_dir(&self.root)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                    .count() as u64
            })
            .unwrap_or(0)
    }

    /// `sys/kernel/pid_max`.
    pub fn pid_max(&self) -> Option<u64> {
        read_u64(&self.root.join("sys/kernel/pid_max"))
    }
}

/// Bytes and inodes used under `path` (not following symlinks or crossing into other
/// filesystems' mount points is not checked: pod dirs hold no nested mounts we count twice).
pub fn dir_usage(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        inodes += 1;
        bytes = bytes.saturating_add(meta.blocks().saturating_mul(512));
        if !meta.is_dir() {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                inodes += 1;
                bytes = bytes.saturating_add(meta.blocks().saturating_mul(512));
            }
        }
    }
    (bytes, inodes)
}

/// Capacity, available bytes, inodes and free inodes of the filesystem holding `path`.
pub fn fs_usage(path: &Path) -> Option<(u64, u64, u64, u64)> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let block = stat.fragment_size();
    Some((
        stat.blocks().saturating_mul(block),
        stat.blocks_available().saturating_mul(block),
        stat.files(),
        stat.files_available(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, text).expect("write");
    }

    #[test]
    fn cgroup_v1_usage_reads_cpuacct_and_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "cpuacct/kubepods/pod1/cpuacct.usage", "5000\n");
        write(root, "memory/kubepods/pod1/memory.usage_in_bytes", "1000\n");
        write(
            root,
            "memory/kubepods/pod1/memory.stat",
            "cache 10\ntotal_inactive_file 300\ntotal_rss 600\ntotal_pgfault 7\ntotal_pgmajfault 1\n",
        );
        write(root, "pids/kubepods/pod1/cgroup.procs", "42\n43\n");
        let cgroups = Cgroups::new(root);
        assert!(!cgroups.is_v2());
        let usage = cgroups.usage("/kubepods/pod1").expect("usage");
        assert_eq!(usage.cpu_usage_ns, 5000);
        assert_eq!(usage.memory_usage, 1000);
        assert_eq!(usage.working_set, 700);
        assert_eq!(usage.rss, 600);
        assert_eq!(usage.page_faults, 7);
        assert_eq!(cgroups.pids("/kubepods/pod1"), vec![42, 43]);
        assert_eq!(cgroups.usage("/kubepods/none"), None);
    }

    #[test]
    fn cgroup_v2_usage_reads_cpu_stat_and_memory_current() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "cgroup.controllers", "cpu memory\n");
        write(
            root,
            "kubepods/pod1/cpu.stat",
            "usage_usec 12\nuser_usec 5\n",
        );
        write(root, "kubepods/pod1/memory.current", "2048\n");
        write(
            root,
            "kubepods/pod1/memory.stat",
            "anon 1000\ninactive_file 48\n",
        );
        let usage = Cgroups::new(root).usage("/kubepods/pod1").expect("usage");
        assert_eq!(usage.cpu_usage_ns, 12_000);
        assert_eq!(usage.working_set, 2000);
        assert_eq!(usage.rss, 1000);
    }

    #[test]
    fn proc_texts_parse() {
        let net = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1500 10 2 0 0 0 0 0 900 8 1 0 0 0 0 0\n";
        assert_eq!(
            parse_net_dev(net),
            vec![InterfaceUsage {
                name: "eth0".into(),
                rx_bytes: 1500,
                rx_errors: 2,
                tx_bytes: 900,
                tx_errors: 1,
            }]
        );
        let meminfo = "MemTotal: 1000 kB\nMemFree: 200 kB\nInactive(file): 100 kB\n";
        let mem = parse_meminfo(meminfo);
        assert_eq!(mem.working_set(), 700 * 1024);
        assert_eq!(
            parse_proc_stat_cpu("cpu  1 2 3 100 100 4 5 6 0 0\ncpu0 1\n"),
            Some(21 * 10_000_000)
        );
        let mountinfo = "1 0 0:1 / / rw - overlay overlay rw,lowerdir=/a,upperdir=/snap/5/fs,workdir=/snap/5/work\n2 1 0:2 / /proc rw - proc proc rw\n";
        assert_eq!(root_upperdir(mountinfo), Some(PathBuf::from("/snap/5/fs")));
    }
}
