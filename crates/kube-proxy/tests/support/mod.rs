//! Shared scaffolding for the kube-proxy root tests: commands, a test bridge with network
//! namespaces behind it (like pods behind `cni0`), and TCP helpers.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

/// Whether the tests can touch the network: root and `/usr/sbin/nft` present.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
        && std::path::Path::new("/usr/sbin/nft").exists()
}

/// Runs a command; fails unless it exits successfully.
pub fn sh(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(args[0]).args(&args[1..]).status()?;
    anyhow::ensure!(status.success(), "{args:?} failed: {status}");
    Ok(())
}

/// Runs a cleanup command whose failure is expected and ignored (stderr silenced).
pub fn quiet(args: &[&str]) {
    // Cleanup of what may not exist: failures are expected and ignored on purpose.
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Creates bridge `bridge` with address `gateway`/24 and brings it up.
pub fn add_bridge(bridge: &str, gateway: &str) -> anyhow::Result<()> {
    sh(&["ip", "link", "add", bridge, "type", "bridge"])?;
    sh(&["ip", "addr", "add", &format!("{gateway}/24"), "dev", bridge])?;
    sh(&["ip", "link", "set", bridge, "up"])?;
    Ok(())
}

/// Creates network namespace `ns` whose `eth0` (address `ip`/24, default route via `gateway`)
/// is the peer of `veth` on `bridge`; `hairpin` turns hairpin mode on for `veth`, like the CNI
/// bridge plugin's hairpinMode (a pod reaching itself through a VIP).
pub fn add_netns(
    ns: &str,
    ip: &str,
    veth: &str,
    bridge: &str,
    gateway: &str,
    hairpin: bool,
) -> anyhow::Result<()> {
    sh(&["ip", "netns", "add", ns])?;
    sh(&[
        "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
    ])?;
    sh(&["ip", "link", "set", veth, "master", bridge, "up"])?;
    if hairpin {
        sh(&[
            "ip",
            "link",
            "set",
            veth,
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ])?;
    }
    let cidr = format!("{ip}/24");
    sh(&["ip", "-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
    sh(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
    sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    sh(&["ip", "-n", ns, "route", "add", "default", "via", gateway])?;
    Ok(())
}

/// Runs `f` on a thread that has entered network namespace `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<anyhow::Result<T>> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        f()
    })
}

/// Connects to `addr` (within `connect_timeout`) and reads until the peer closes (3s read
/// timeout); returns what was read.
pub fn read_reply(addr: &str, connect_timeout: Duration) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect_timeout(&addr.parse()?, connect_timeout)?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}
