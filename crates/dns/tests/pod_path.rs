//! Root-only: a "pod" in a network namespace behind a bridge queries a DNS VIP that is DNATed
//! (as kube-proxy does) to the node IP, where kube-dns listens with the default wildcard bind
//! address. The answer must come back from the VIP, which needs kube-dns to reply from the
//! address the query was DNATed to. Skipped with a note when not root.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use kube_dns::forward::Forwarder;
use kube_dns::index::Index;
use kube_dns::metrics::DnsMetrics;
use kube_dns::server::{udp_bind_addresses, ClusterDns, DnsServer, SharedIndex};

const BRIDGE: &str = "kdtbr0";
const NS: &str = "kdtest-pod";
const GATEWAY: &str = "10.250.88.1";
const POD_IP: &str = "10.250.88.2";
const VIP: &str = "10.97.250.53";
const TABLE: &str = "kd-test-dnat";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(args[0]).args(&args[1..]).status()?;
    anyhow::ensure!(status.success(), "{args:?} failed: {status}");
    Ok(())
}

fn teardown() {
    for args in [
        vec!["ip", "netns", "del", NS],
        vec!["ip", "link", "del", BRIDGE],
        vec!["nft", "delete", "table", "ip", TABLE],
    ] {
        // Removing what may not exist: failures are expected and ignored on purpose.
        let _ = Command::new(args[0])
            .args(&args[1..])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Tears the test network down when dropped, also when an assertion panics.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        teardown();
    }
}

/// A global IPv4 address of this host that is not on the test bridge (the "node IP").
fn node_ip() -> anyhow::Result<Option<Ipv4Addr>> {
    let output = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter(|line| !line.contains(BRIDGE))
        .filter_map(|line| {
            line.split_whitespace()
                .nth(3)?
                .split('/')
                .next()?
                .parse()
                .ok()
        })
        .next())
}

fn setup(node: Ipv4Addr, port: u16) -> anyhow::Result<()> {
    sh(&["ip", "link", "add", BRIDGE, "type", "bridge"])?;
    sh(&["ip", "addr", "add", &format!("{GATEWAY}/24"), "dev", BRIDGE])?;
    sh(&["ip", "link", "set", BRIDGE, "up"])?;
    sh(&["ip", "netns", "add", NS])?;
    sh(&[
        "ip", "link", "add", "kdtv-pod", "type", "veth", "peer", "name", "eth0", "netns", NS,
    ])?;
    sh(&["ip", "link", "set", "kdtv-pod", "master", BRIDGE, "up"])?;
    sh(&[
        "ip",
        "-n",
        NS,
        "addr",
        "add",
        &format!("{POD_IP}/24"),
        "dev",
        "eth0",
    ])?;
    sh(&["ip", "-n", NS, "link", "set", "eth0", "up"])?;
    sh(&["ip", "-n", NS, "route", "add", "default", "via", GATEWAY])?;
    let script = format!(
        "table ip {TABLE} {{\n chain pre {{\n  type nat hook prerouting priority -100;\n  \
         ip daddr {VIP} udp dport 53 dnat to {node}:{port}\n }}\n}}\n"
    );
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::Write as _;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        stdin.write_all(script.as_bytes())?;
    }
    anyhow::ensure!(child.wait()?.success(), "nft rejected {script}");
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
    Ok(())
}

fn query_from_pod() -> anyhow::Result<(SocketAddr, Message)> {
    let file = std::fs::File::open(format!("/run/netns/{NS}"))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
    let mut message = Message::query();
    message.metadata.id = 5353;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii("web.default.svc.cluster.local.")?,
        RecordType::A,
    ));
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(3)))?;
    socket.send_to(&message.to_vec()?, format!("{VIP}:53"))?;
    let mut buffer = [0u8; 1500];
    let (len, from) = socket.recv_from(&mut buffer)?;
    Ok((from, Message::from_vec(&buffer[..len])?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_gets_answers_from_the_vip_when_kube_dns_binds_the_wildcard() -> anyhow::Result<()> {
    if !is_root() {
        eprintln!("note: skipping the pod DNS path test: needs root");
        return Ok(());
    }
    let Some(node) = node_ip()? else {
        eprintln!("note: skipping the pod DNS path test: no global IPv4 address");
        return Ok(());
    };
    teardown();
    let _cleanup = Cleanup;
    let port = 15353;
    async {
        setup(node, port)?;
        let web: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}
        }))?;
        let index = SharedIndex::new(Index::build("cluster.local", [&web], [])?);
        let handler = ClusterDns::new(
            index,
            Forwarder::new(Vec::new(), Duration::from_secs(1)),
            DnsMetrics::default(),
        );
        let wildcard = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let server = DnsServer::bind(
            &udp_bind_addresses(wildcard, port),
            SocketAddr::new(wildcard, port),
            handler,
        )
        .await?;
        let (from, reply) = tokio::task::spawn_blocking(query_from_pod).await??;
        server.shutdown().await?;
        assert_eq!(from, format!("{VIP}:53").parse::<SocketAddr>()?);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            reply.answers[0].data,
            RData::A(Ipv4Addr::new(10, 96, 0, 20).into())
        );
        anyhow::Ok(())
    }
    .await
}
