//! The real [`Network`]: `ip netns` for namespaces and the CNI plugins from `--cni-bin-dir`,
//! invoked per the CNI spec (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
//! `CNI_PATH`, configuration on stdin, result on stdout).
//!
//! The CNI container id is the netns name, so a namespace found without its pod (after a
//! crash) can still be detached and its IP released.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{config, ipc};
use super::{
    netns_name, netns_path, Network, NetworkError, PodIpc, PodNetworkRequest, PodNetworkStatus,
    NETNS_PREFIX,
};

/// The plugins the kubelet's configuration uses.
pub const REQUIRED_PLUGINS: [&str; 3] = ["loopback", "bridge", "host-local"];

/// Checks that every plugin the kubelet needs is in `bin_dir`.
pub fn check_plugins(bin_dir: &Path) -> Result<(), NetworkError> {
    let missing: Vec<String> = REQUIRED_PLUGINS
        .iter()
        .filter(|name| !bin_dir.join(name).is_file())
        .map(|name| name.to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(NetworkError::MissingPlugins {
            dir: bin_dir.display().to_string(),
            missing,
        })
    }
}

/// CNI over `ip netns`.
pub struct CniNetwork {
    bin_dir: PathBuf,
    conf_dir: PathBuf,
    data_dir: PathBuf,
    ipc_dir: PathBuf,
    /// One empty file per network namespace this kubelet made: garbage collection removes
    /// only these (another kubelet on the host, as in tests, keeps its own).
    owned_dir: PathBuf,
    bridge: String,
    list: Mutex<Option<Value>>,
    ready: AtomicBool,
}

impl CniNetwork {
    /// A network using plugins from `bin_dir` and keeping its configuration and IPAM state
    /// under `cni_dir` (`<root-dir>/cni`: `net.d/` and `networks/`), and pod IPC namespaces
    /// under `<root-dir>/ipc`.
    pub fn new(bin_dir: PathBuf, cni_dir: &Path) -> Self {
        Self {
            bin_dir,
            conf_dir: cni_dir.join("net.d"),
            data_dir: cni_dir.join("networks"),
            ipc_dir: ipc::default_dir(cni_dir),
            owned_dir: cni_dir.join("netns"),
            bridge: config::BRIDGE_NAME.to_string(),
            list: Mutex::new(None),
            ready: AtomicBool::new(false),
        }
    }

    /// Uses another bridge than `cni0` (tests that must not touch the node's bridge).
    pub fn with_bridge(mut self, bridge: &str) -> Self {
        self.bridge = bridge.to_string();
        self
    }

    /// Keeps pod IPC namespaces in `dir` instead of `<root-dir>/ipc`.
    pub fn with_ipc_dir(mut self, dir: PathBuf) -> Self {
        self.ipc_dir = dir;
        self
    }

    fn current_list(&self) -> Result<Value, NetworkError> {
        self.list
            .lock()
            .map_err(|_| NetworkError::NotConfigured)?
            .clone()
            .ok_or(NetworkError::NotConfigured)
    }

    /// Runs one plugin; returns its parsed stdout (empty object for DEL).
    async fn invoke(
        &self,
        command: &str,
        plugin: &str,
        config: &Value,
        container_id: &str,
        netns: &Path,
        ifname: &str,
    ) -> Result<Value, NetworkError> {
        let binary = self.bin_dir.join(plugin);
        let mut child = Command::new(&binary)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NetworkError::Spawn {
                command: binary.display().to_string(),
                source,
            })?;
        let input = serde_json::to_vec(config).unwrap_or_default();
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&input)
                .await
                .map_err(|source| NetworkError::Spawn {
                    command: binary.display().to_string(),
                    source,
                })?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|source| NetworkError::Spawn {
                command: binary.display().to_string(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(NetworkError::Plugin {
                command: command.to_string(),
                plugin: plugin.to_string(),
                message: config::error_message(&stdout, &String::from_utf8_lossy(&output.stderr)),
            });
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(&stdout).map_err(|e| NetworkError::Result {
            plugin: plugin.to_string(),
            detail: e.to_string(),
        })
    }

    /// The IPv4 address of `eth0` inside `netns`, if it has one.
    async fn existing_ip(&self, netns: &str) -> Option<IpAddr> {
        let output = Command::new("ip")
            .args(["-n", netns, "-4", "-o", "addr", "show", "dev", "eth0"])
            .output()
            .await
            .ok()?;
        if !output.status.success() {
            return None;
        }
        parse_ip_addr_output(&String::from_utf8_lossy(&output.stdout))
    }
}

/// The address in `ip -o addr show` output (`2: eth0    inet 10.244.0.5/24 brd ...`).
pub fn parse_ip_addr_output(output: &str) -> Option<IpAddr> {
    let mut words = output.split_whitespace();
    while let Some(word) = words.next() {
        if word == "inet" || word == "inet6" {
            let cidr = words.next()?;
            return cidr.split('/').next()?.parse().ok();
        }
    }
    None
}

async fn run_ip(args: &[&str]) -> Result<std::process::Output, NetworkError> {
    Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|source| NetworkError::Spawn {
            command: format!("ip {}", args.join(" ")),
            source,
        })
}

#[async_trait::async_trait]
impl Network for CniNetwork {
    async fn configure(&self, pod_cidr: &str) -> Result<(), NetworkError> {
        let list = config::conflist(pod_cidr, &self.data_dir, &self.bridge);
        let path = self.conf_dir.join(config::CONFLIST_FILE);
        let write_error = |source| NetworkError::WriteConfig {
            path: path.display().to_string(),
            source,
        };
        tokio::fs::create_dir_all(&self.conf_dir)
            .await
            .map_err(write_error)?;
        tokio::fs::create_dir_all(&self.data_dir)
            .await
            .map_err(write_error)?;
        let text = serde_json::to_string_pretty(&list).unwrap_or_default();
        tokio::fs::write(&path, text).await.map_err(write_error)?;
        tokio::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .await
            .map_err(NetworkError::IpForward)?;
        if let Ok(mut current) = self.list.lock() {
            *current = Some(list);
        }
        self.ready.store(true, Ordering::SeqCst);
        tracing::info!(pod_cidr, path = %path.display(), "CNI configuration written");
        Ok(())
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    async fn setup_pod(&self, pod: &PodNetworkRequest) -> Result<PodNetworkStatus, NetworkError> {
        let list = self.current_list()?;
        let name = netns_name(&pod.uid);
        let path = netns_path(&name);
        if path.exists() {
            if let Some(ip) = self.existing_ip(&name).await {
                return Ok(PodNetworkStatus {
                    netns_name: name,
                    netns_path: path,
                    ip,
                });
            }
        } else {
            // Marked as ours before it exists, so a crash in between leaves nothing unowned.
            let marker = self.owned_dir.join(&name);
            if let Err(source) = tokio::fs::create_dir_all(&self.owned_dir)
                .await
                .and(tokio::fs::write(&marker, b"").await)
            {
                return Err(NetworkError::Spawn {
                    command: format!("write {}", marker.display()),
                    source,
                });
            }
            let output = run_ip(&["netns", "add", &name]).await?;
            if !output.status.success() {
                return Err(NetworkError::Netns {
                    command: format!("ip netns add {name}"),
                    stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                });
            }
        }
        let mut ip = None;
        for (plugin, plugin_conf) in config::plugins(&list) {
            let ifname = if plugin == "loopback" { "lo" } else { "eth0" };
            let conf = config::plugin_config(&list, &plugin_conf);
            let result = self
                .invoke("ADD", &plugin, &conf, &name, &path, ifname)
                .await?;
            if plugin != "loopback" {
                ip = Some(
                    config::result_ip(&result).map_err(|detail| NetworkError::Result {
                        plugin: plugin.clone(),
                        detail,
                    })?,
                );
            }
        }
        let ip = ip.ok_or_else(|| NetworkError::Result {
            plugin: "bridge".into(),
            detail: "no plugin returned an address".into(),
        })?;
        tracing::info!(pod = %pod.name, namespace = %pod.namespace, netns = %name, %ip, "pod network set up");
        Ok(PodNetworkStatus {
            netns_name: name,
            netns_path: path,
            ip,
        })
    }

    async fn teardown(&self, netns: &str) -> Result<(), NetworkError> {
        let path = netns_path(netns);
        // DEL runs even without the namespace so host-local releases the address.
        if let Ok(list) = self.current_list() {
            for (plugin, plugin_conf) in config::plugins(&list).into_iter().rev() {
                let ifname = if plugin == "loopback" { "lo" } else { "eth0" };
                let conf = config::plugin_config(&list, &plugin_conf);
                let netns_arg = if path.exists() {
                    path.clone()
                } else {
                    PathBuf::new()
                };
                if let Err(error) = self
                    .invoke("DEL", &plugin, &conf, netns, &netns_arg, ifname)
                    .await
                {
                    tracing::warn!(%error, netns, "CNI DEL failed; deleting the namespace anyway");
                }
            }
        }
        if path.exists() {
            let output = run_ip(&["netns", "delete", netns]).await?;
            if !output.status.success() && path.exists() {
                return Err(NetworkError::Netns {
                    command: format!("ip netns delete {netns}"),
                    stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                });
            }
        }
        self.teardown_ipc(netns).await?;
        match tokio::fs::remove_file(self.owned_dir.join(netns)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(netns, error = %e, "removing the ownership mark failed")
            }
            _ => {}
        }
        tracing::info!(netns, "pod network torn down");
        Ok(())
    }

    async fn list_netns(&self) -> Result<Vec<String>, NetworkError> {
        // The namespaces this kubelet made (a marked one may already be gone: its teardown
        // then only releases the address and drops the mark).
        let mut names = Vec::new();
        match tokio::fs::read_dir(&self.owned_dir).await {
            Ok(mut entries) => {
                while let Ok(Some(entry)) = entries.next_entry().await {
                    let name = entry.file_name().to_string_lossy().to_string();
                    if name.starts_with(NETNS_PREFIX) {
                        names.push(name);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(NetworkError::Spawn {
                    command: format!("read {}", self.owned_dir.display()),
                    source,
                })
            }
        }
        names.extend(ipc::list(&self.ipc_dir));
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn setup_ipc(&self, pod_uid: &str) -> Result<PodIpc, NetworkError> {
        let dir = self.ipc_dir.clone();
        let name = netns_name(pod_uid);
        tokio::task::spawn_blocking(move || ipc::create(&dir, &name))
            .await
            .map_err(|e| NetworkError::Ipc {
                step: "creating the IPC namespace",
                path: self.ipc_dir.display().to_string(),
                source: std::io::Error::other(e),
            })?
    }

    async fn teardown_ipc(&self, name: &str) -> Result<(), NetworkError> {
        ipc::remove(&self.ipc_dir, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ip_addr_output_reads_the_inet_address() {
        let out = "3: eth0    inet 10.244.0.7/24 brd 10.244.0.255 scope global eth0\\       valid_lft forever preferred_lft forever\n";
        assert_eq!(
            parse_ip_addr_output(out),
            Some("10.244.0.7".parse().expect("ip"))
        );
        assert_eq!(parse_ip_addr_output(""), None);
    }

    #[test]
    fn check_plugins_names_the_missing_ones() {
        let dir = std::env::temp_dir().join("kubelet-no-cni-here");
        match check_plugins(&dir) {
            Err(NetworkError::MissingPlugins { missing, .. }) => {
                assert_eq!(missing, vec!["loopback", "bridge", "host-local"])
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
