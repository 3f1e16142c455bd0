//! The CNI network configuration the kubelet writes for its node: a `loopback` plugin and a
//! `bridge` plugin (bridge `cni0`, gateway, masquerade, hairpin, host-local IPAM over the node's
//! pod CIDR), plus parsing of plugin results.

use std::net::IpAddr;
use std::path::Path;

use serde_json::{json, Value};

/// The CNI spec version written into the configuration.
pub const CNI_VERSION: &str = "1.0.0";
/// The network name in the configuration list.
pub const NETWORK_NAME: &str = "kube-bridge";
/// The bridge device on the host.
pub const BRIDGE_NAME: &str = "cni0";
/// File name of the configuration list under `<root-dir>/cni/net.d`.
pub const CONFLIST_FILE: &str = "10-kube-bridge.conflist";

/// The configuration list (`.conflist`) for `pod_cidr` on bridge `bridge`, with host-local
/// state in `data_dir`.
pub fn conflist(pod_cidr: &str, data_dir: &Path, bridge: &str) -> Value {
    json!({
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [
            { "type": "loopback" },
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": data_dir.display().to_string(),
                }
            }
        ]
    })
}

/// One plugin's configuration as given on its stdin: the plugin object plus the list's
/// `cniVersion` and `name`.
pub fn plugin_config(list: &Value, plugin: &Value) -> Value {
    let mut config = plugin.clone();
    if let Some(object) = config.as_object_mut() {
        object.insert("cniVersion".into(), list["cniVersion"].clone());
        object.insert("name".into(), list["name"].clone());
    }
    config
}

/// The plugins of a configuration list, with their types.
pub fn plugins(list: &Value) -> Vec<(String, Value)> {
    list["plugins"]
        .as_array()
        .map(|plugins| {
            plugins
                .iter()
                .filter_map(|p| Some((p["type"].as_str()?.to_string(), p.clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// The first IPv4 address (else the first address) in a CNI result (`ips[].address`, CIDR form).
pub fn result_ip(result: &Value) -> Result<IpAddr, String> {
    let ips = result["ips"]
        .as_array()
        .ok_or_else(|| "no \"ips\" in result".to_string())?;
    let mut parsed: Vec<IpAddr> = Vec::new();
    for entry in ips {
        let address = entry["address"]
            .as_str()
            .ok_or_else(|| "an ips entry has no address".to_string())?;
        let ip = address.split('/').next().unwrap_or(address);
        parsed.push(
            ip.parse()
                .map_err(|e| format!("bad address {address:?}: {e}"))?,
        );
    }
    parsed
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(parsed.first())
        .copied()
        .ok_or_else(|| "empty \"ips\" list".to_string())
}

/// The message of a CNI error result (`{"code":..,"msg":..,"details":..}`), or the raw text.
pub fn error_message(stdout: &str, stderr: &str) -> String {
    match serde_json::from_str::<Value>(stdout) {
        Ok(value) if value["msg"].is_string() => {
            let msg = value["msg"].as_str().unwrap_or_default();
            match value["details"].as_str() {
                Some(details) if !details.is_empty() => format!("{msg}: {details}"),
                _ => msg.to_string(),
            }
        }
        _ => format!("{} {}", stdout.trim(), stderr.trim())
            .trim()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_has_loopback_and_a_bridge_over_the_pod_cidr() {
        let list = conflist(
            "10.244.0.0/24",
            Path::new("/tmp/k/cni/networks"),
            BRIDGE_NAME,
        );
        let plugins = plugins(&list);
        assert_eq!(plugins.len(), 2);
        assert_eq!(plugins[0].0, "loopback");
        let bridge = &plugins[1].1;
        assert_eq!(bridge["bridge"], "cni0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.0.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/tmp/k/cni/networks");
    }

    #[test]
    fn plugin_config_carries_the_list_name_and_version() {
        let list = conflist("10.244.0.0/24", Path::new("/d"), BRIDGE_NAME);
        let config = plugin_config(&list, &plugins(&list)[1].1);
        assert_eq!(config["cniVersion"], CNI_VERSION);
        assert_eq!(config["name"], NETWORK_NAME);
        assert_eq!(config["type"], "bridge");
    }

    #[test]
    fn result_ip_prefers_ipv4() {
        let result = json!({"cniVersion":"1.0.0","ips":[
            {"address":"fd00::5/64"},{"address":"10.244.0.5/24","gateway":"10.244.0.1"}]});
        assert_eq!(result_ip(&result), Ok("10.244.0.5".parse().expect("ip")));
        assert!(result_ip(&json!({})).is_err());
        assert!(result_ip(&json!({"ips":[{"address":"nonsense"}]})).is_err());
    }

    #[test]
    fn error_message_reads_the_cni_error_object() {
        assert_eq!(
            error_message(r#"{"code":7,"msg":"failed","details":"no bridge"}"#, ""),
            "failed: no bridge"
        );
        assert_eq!(error_message("garbage", "oops"), "garbage oops");
    }
}
