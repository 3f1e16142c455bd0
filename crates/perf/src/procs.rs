//! Peak RSS and CPU seconds of processes, from `/proc/<pid>/status` (`VmHWM`, `VmRSS`) and
//! `/proc/<pid>/stat` (`utime` + `stime`).

use std::path::Path;

/// Resource use of one process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcUsage {
    /// Component name.
    pub name: String,
    /// Process id.
    pub pid: u32,
    /// Peak resident set (KiB).
    pub peak_rss_kib: u64,
    /// Current resident set (KiB).
    pub rss_kib: u64,
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
}

/// Reads the usage of `pid` (None when it is gone).
pub fn read(name: &str, pid: u32) -> Option<ProcUsage> {
    let dir = Path::new("/proc").join(pid.to_string());
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let (peak_rss_kib, rss_kib) = parse_status(&status);
    Some(ProcUsage {
        name: name.to_string(),
        pid,
        peak_rss_kib,
        rss_kib,
        cpu_seconds: parse_stat_cpu_ticks(&stat)? as f64 / clock_ticks(),
    })
}

/// Usage of this process (the hollow nodes and the load generator).
pub fn read_self(name: &str) -> Option<ProcUsage> {
    read(name, std::process::id())
}

fn clock_ticks() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// (`VmHWM`, `VmRSS`) in KiB.
pub fn parse_status(status: &str) -> (u64, u64) {
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// `utime + stime` (clock ticks) from a stat line; the command may contain spaces and ')'.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Pids of running processes whose executable is named `name` (for a cluster kube-perf did not
/// start).
pub fn find_by_exe(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .and_then(|p| p.file_name().map(|f| f == name))
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_command_is_parsed() {
        let stat = "42 (kube (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1 2 3";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn status_fields_are_read() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status(s), (2048, 1024));
    }

    #[test]
    fn own_process_is_readable() {
        let me = read_self("test").expect("own /proc entry");
        assert!(me.peak_rss_kib > 0);
    }
}
