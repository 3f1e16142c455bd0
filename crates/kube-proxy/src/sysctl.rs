//! Kernel settings the Service data path needs: bridged pod traffic must traverse netfilter
//! (`net.bridge.bridge-nf-call-iptables=1`, which needs the `br_netfilter` module) and the host
//! must forward (`net.ipv4.ip_forward=1`), and NodePorts on localhost need
//! `net.ipv4.conf.all.route_localnet=1`.

use std::path::Path;
use std::process::Command;

/// Why a sysctl could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// Writing `/proc/sys/...` failed.
    #[error("setting {key}: {source}")]
    Write {
        /// The sysctl key.
        key: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Sets one sysctl (`net.ipv4.ip_forward` style key) through `/proc/sys`, writing only when the
/// value differs.
pub fn set(key: &str, value: &str) -> Result<(), SysctlError> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    if std::fs::read_to_string(&path).is_ok_and(|current| current.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(|source| SysctlError::Write {
        key: key.to_string(),
        source,
    })
}

/// Applies the settings kube-proxy needs, logging (not failing) when one cannot be set, as
/// upstream does.
pub fn ensure_forwarding() {
    if !Path::new("/proc/sys/net/bridge").exists() {
        match Command::new("modprobe").arg("br_netfilter").status() {
            Ok(status) if status.success() => tracing::info!("loaded br_netfilter"),
            Ok(status) => tracing::warn!(%status, "modprobe br_netfilter failed"),
            Err(error) => tracing::warn!(%error, "cannot run modprobe br_netfilter"),
        }
    }
    for (key, value) in [
        ("net.bridge.bridge-nf-call-iptables", "1"),
        ("net.ipv4.ip_forward", "1"),
        // NodePorts on 127.0.0.1: DNAT of loopback traffic to pods (as upstream's iptables mode).
        ("net.ipv4.conf.all.route_localnet", "1"),
    ] {
        match set(key, value) {
            Ok(()) => tracing::info!(key, value, "sysctl set"),
            Err(error) => tracing::warn!(%error, "cannot set sysctl; Service traffic may not work"),
        }
    }
}
