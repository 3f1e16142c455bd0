//! The real CNI network as root: a pod namespace joins a bridge through the `bridge` and
//! `host-local` plugins, gets an address in the subnet, and DEL cleans up. Skips (with a note)
//! when not root or the plugins are missing. Uses its own bridge and subnet so a running
//! cluster's `cni0` is left alone.

use std::path::Path;
use std::process::Command;

use kubelet::network::cni::{check_plugins, CniNetwork};
use kubelet::network::{netns_name, netns_path, Network, PodNetworkRequest};

const BRIDGE: &str = "kubetest0";
const SUBNET: &str = "10.250.77.0/24";
const CNI_BIN: &str = "/usr/lib/cni";

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    if let Err(error) = check_plugins(Path::new(CNI_BIN)) {
        return Some(error.to_string());
    }
    None
}

fn ip(args: &[&str]) -> String {
    let output = Command::new("ip").args(args).output().expect("run ip");
    String::from_utf8_lossy(&output.stdout).to_string()
}

#[tokio::test]
async fn a_pod_namespace_joins_the_bridge_and_leaves_cleanly() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping CNI integration test: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let uid = format!("cnitest-{}", std::process::id());
    let name = netns_name(&uid);
    // Leftovers of a crashed run.
    let _ = Command::new("ip").args(["netns", "delete", &name]).status();

    let network = CniNetwork::new(CNI_BIN.into(), &dir.path().join("cni")).with_bridge(BRIDGE);
    assert!(!network.ready());
    network.configure(SUBNET).await.expect("configure");
    assert!(network.ready());
    assert!(dir
        .path()
        .join("cni/net.d/10-kube-bridge.conflist")
        .is_file());

    let request = PodNetworkRequest {
        uid: uid.clone(),
        namespace: "default".into(),
        name: "cni-test".into(),
    };
    let status = network.setup_pod(&request).await.expect("CNI ADD");
    assert_eq!(status.netns_name, name);
    assert!(netns_path(&name).exists());
    let address = status.ip.to_string();
    assert!(address.starts_with("10.250.77."), "address {address}");
    assert!(ip(&["-n", &name, "-4", "-o", "addr", "show", "dev", "eth0"]).contains(&address));
    assert!(ip(&["-n", &name, "-o", "link", "show", "lo"]).contains("UP"));
    assert!(ip(&["-o", "addr", "show", "dev", BRIDGE]).contains("10.250.77.1/24"));

    // Idempotent: a second ADD for the same pod returns the same address.
    let again = network.setup_pod(&request).await.expect("second setup");
    assert_eq!(again.ip, status.ip);
    assert!(network.list_netns().await.expect("list").contains(&name));

    network.teardown(&name).await.expect("CNI DEL");
    assert!(!netns_path(&name).exists());
    let reserved = dir.path().join("cni/networks/kube-bridge").join(&address);
    assert!(!reserved.exists(), "host-local released the address");
    // Tolerates a missing namespace.
    network.teardown(&name).await.expect("second teardown");

    let _ = Command::new("ip").args(["link", "delete", BRIDGE]).status();
}
