//! Facts about the machine the kubelet runs on: CPUs, memory, disk, kernel, OS, machine and
//! boot ids, the default node IP. Read from `/proc`, `/etc` and `statvfs`, each with a
//! harmless fallback so a missing file never stops the kubelet.

use std::net::IpAddr;
use std::path::Path;

/// What the node status reports about the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineInfo {
    /// Number of logical CPUs.
    pub cpus: u32,
    /// `MemTotal` in KiB.
    pub memory_kib: u64,
    /// Size of the filesystem holding the root dir, in KiB.
    pub ephemeral_storage_kib: u64,
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` from /etc/os-release.
    pub os_image: String,
    /// /etc/machine-id.
    pub machine_id: String,
    /// /proc/sys/kernel/random/boot_id.
    pub boot_id: String,
    /// Product UUID (falls back to the machine id).
    pub system_uuid: String,
    /// The host name.
    pub hostname: String,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Number of `processor` entries in a /proc/cpuinfo text.
pub fn count_cpus(cpuinfo: &str) -> u32 {
    let count = cpuinfo
        .lines()
        .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// `MemTotal` (KiB) from a /proc/meminfo text.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `PRETTY_NAME` from an os-release text.
pub fn os_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim().trim_matches('"').to_string())
    })
}

/// Reads the machine's facts; `root_dir` is the kubelet's root dir (for the disk size).
pub fn machine_info(root_dir: &Path) -> MachineInfo {
    let cpus = read_trimmed("/proc/cpuinfo")
        .map(|s| count_cpus(&s))
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(1))
                .unwrap_or(1)
        });
    let memory_kib = read_trimmed("/proc/meminfo")
        .and_then(|s| mem_total_kib(&s))
        .unwrap_or(0);
    let ephemeral_storage_kib = disk_kib(root_dir);
    let machine_id = read_trimmed("/etc/machine-id")
        .or_else(|| read_trimmed("/var/lib/dbus/machine-id"))
        .unwrap_or_default();
    MachineInfo {
        cpus,
        memory_kib,
        ephemeral_storage_kib,
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        os_image: read_trimmed("/etc/os-release")
            .and_then(|s| os_pretty_name(&s))
            .unwrap_or_else(|| "Linux".into()),
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid")
            .unwrap_or_else(|| machine_id.clone()),
        machine_id,
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        hostname: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".into()),
    }
}

fn disk_kib(root_dir: &Path) -> u64 {
    let mut dir = root_dir.to_path_buf();
    // The root dir may not exist yet: measure the nearest existing ancestor.
    while !dir.exists() {
        if !dir.pop() {
            break;
        }
    }
    match nix::sys::statvfs::statvfs(&dir) {
        Ok(stat) => stat.blocks().saturating_mul(stat.fragment_size()) / 1024,
        Err(error) => {
            tracing::warn!(%error, dir = %dir.display(), "statvfs failed; reporting no ephemeral storage");
            0
        }
    }
}

/// The `src` address in `ip route get` output (`1.1.1.1 via 192.0.2.1 dev eth0 src 192.0.2.2`).
pub fn parse_route_src(output: &str) -> Option<IpAddr> {
    let mut words = output.split_whitespace();
    while let Some(word) = words.next() {
        if word == "src" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// The address of the default-route interface (the node IP when `--node-ip` is not given).
pub async fn default_node_ip() -> Option<IpAddr> {
    let output = tokio::process::Command::new("ip")
        .args(["-4", "route", "get", "1.1.1.1"])
        .output()
        .await
        .ok()?;
    parse_route_src(&String::from_utf8_lossy(&output.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        assert_eq!(
            count_cpus("processor\t: 0\nmodel\t: x\n\nprocessor\t: 1\n"),
            2
        );
        assert_eq!(
            mem_total_kib("MemTotal:        8041516 kB\nMemFree: 1 kB\n"),
            Some(8041516)
        );
        assert_eq!(
            os_pretty_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            Some("Debian GNU/Linux 12 (bookworm)".into())
        );
        assert_eq!(
            parse_route_src("1.1.1.1 via 192.0.2.1 dev eth0 src 192.0.2.2 uid 0\n    cache\n"),
            Some("192.0.2.2".parse().expect("ip"))
        );
    }

    #[test]
    fn machine_info_reads_this_machine() {
        let info = machine_info(Path::new("/tmp/definitely/not/there"));
        assert!(info.cpus >= 1);
        assert!(info.memory_kib > 0);
        assert!(info.ephemeral_storage_kib > 0);
    }
}
