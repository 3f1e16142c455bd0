//! Root-only test of `externalTrafficPolicy: Local` against the real kernel: two "pods" behind a
//! test bridge, one on this node and one said to be on another; outside clients reaching the
//! NodePort keep their source address and only reach the local pod, the host reaches the NodePort
//! on 127.0.0.1 (masqueraded, any endpoint), and without a local endpoint outside traffic is
//! dropped. Skipped with a note when not root.

use anyhow::Context as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube_proxy::model::delete_table_transaction;
use kube_proxy::nft::{NftCommand, Nftables};
use kube_proxy::rules::{build_ruleset, RuleConfig};
use kube_proxy::sync::Syncer;

mod support;

use support::{add_bridge, add_netns, in_netns, is_root, quiet, read_reply};

const BRIDGE: &str = "kpetbr0";
const NS_LOCAL: &str = "kpet-local";
const NS_REMOTE: &str = "kpet-remote";
const NS_CLIENT: &str = "kpet-client";
const GATEWAY: &str = "10.250.78.1";
const LOCAL_IP: &str = "10.250.78.2";
const REMOTE_IP: &str = "10.250.78.3";
const CLIENT_IP: &str = "10.250.78.100";
const VIP: &str = "10.97.251.1";
const NODE_PORT: u16 = 31781;

/// Tears the test network and table down when dropped, also when an assertion panics.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        teardown();
        if let Err(error) = NftCommand::default().apply(&delete_table_transaction(&self.0)) {
            eprintln!("cleanup of table {}: {error}", self.0);
        }
    }
}

fn teardown() {
    for ns in [NS_LOCAL, NS_REMOTE, NS_CLIENT] {
        quiet(&["ip", "netns", "del", ns]);
    }
    quiet(&["ip", "link", "del", BRIDGE]);
}

fn setup() -> anyhow::Result<()> {
    add_bridge(BRIDGE, GATEWAY)?;
    for (ns, ip, veth) in [
        (NS_LOCAL, LOCAL_IP, "kpev-l"),
        (NS_REMOTE, REMOTE_IP, "kpev-r"),
        (NS_CLIENT, CLIENT_IP, "kpev-c"),
    ] {
        // Hairpin on, like the CNI bridge's hairpinMode: the remote pod may reach itself through
        // the ClusterIP, and that reply leaves by the port the request came in on.
        add_netns(ns, ip, veth, BRIDGE, GATEWAY, true)?;
    }
    kube_proxy::sysctl::set("net.ipv4.ip_forward", "1")?;
    kube_proxy::sysctl::set("net.bridge.bridge-nf-call-iptables", "1")?;
    kube_proxy::sysctl::set("net.ipv4.conf.all.route_localnet", "1")?;
    Ok(())
}

fn join<T>(handle: std::thread::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("thread panicked"))?
}

fn fetch(addr: &str, timeout: Duration) -> anyhow::Result<String> {
    Ok(read_reply(addr, timeout)?.trim().to_string())
}

/// A "pod" answering every connection with its name and the peer address it sees.
fn serve(ns: &'static str, ip: &'static str, name: &'static str) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // Detached: it lives until the test process ends (its netns is deleted by the cleanup).
    drop(in_netns(ns, move || {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind(format!("{ip}:8080"))?;
        ready_tx.send(())?;
        for stream in listener.incoming() {
            let mut stream = stream?;
            let peer = stream.peer_addr()?;
            writeln!(stream, "{name} {}", peer.ip())?;
        }
        Ok(())
    }));
    ready_rx.recv_timeout(Duration::from_secs(5))?;
    Ok(())
}

fn node_port_service() -> anyhow::Result<Service> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "NodePort", "clusterIP": VIP, "externalTrafficPolicy": "Local",
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": NODE_PORT}]
        }
    }))?)
}

fn slice(endpoints: &[(&str, &str)]) -> anyhow::Result<EndpointSlice> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-x", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints.iter().map(|(ip, node)| serde_json::json!({
            "addresses": [ip], "nodeName": node, "conditions": {"ready": true}
        })).collect::<Vec<_>>()
    }))?)
}

#[test]
fn external_traffic_policy_local_keeps_the_client_address_and_the_node() -> anyhow::Result<()> {
    if !is_root() {
        eprintln!("note: skipping the externalTrafficPolicy test: needs root and /usr/sbin/nft");
        return Ok(());
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let table = format!("kp-etp-{}-{nanos:x}", std::process::id());
    teardown();
    let _cleanup = Cleanup(table.clone());
    setup()?;
    serve(NS_LOCAL, LOCAL_IP, "local")?;
    serve(NS_REMOTE, REMOTE_IP, "remote")?;

    // Pods live in 10.250.78.0/28; the client (.100) is outside the cluster.
    let config = RuleConfig {
        table: table.clone(),
        cluster_cidr: Some("10.250.78.0/28".into()),
        service_cidr: Some("10.97.251.0/24".into()),
        node_name: Some("node-a".into()),
        node_ips: vec![GATEWAY.parse()?],
        ..RuleConfig::default()
    };
    let services = [node_port_service()?];
    let both = [slice(&[(LOCAL_IP, "node-a"), (REMOTE_IP, "node-b")])?];
    let nft = NftCommand::default();
    let mut syncer = Syncer::new(Arc::new(nft.clone()), Duration::from_secs(30));
    syncer.sync(build_ruleset(&config, &services, &both), Instant::now())?;
    let listed = nft.list_table(&table)?;
    assert!(listed.contains("127.0.0.1"), "{listed}");

    // Outside client -> NodePort: always the local pod, which sees the client's own address.
    let node_port = format!("{GATEWAY}:{NODE_PORT}");
    let target = node_port.clone();
    let replies = join(in_netns(NS_CLIENT, move || {
        (0..6)
            .map(|_| fetch(&target, Duration::from_secs(3)))
            .collect::<anyhow::Result<Vec<String>>>()
    }))
    .context("outside client to the NodePort")?;
    for reply in &replies {
        assert_eq!(reply, &format!("local {CLIENT_IP}"), "{replies:?}");
    }

    // The host -> NodePort on localhost: masqueraded to the bridge address, any endpoint.
    let from_host = fetch(&format!("127.0.0.1:{NODE_PORT}"), Duration::from_secs(3))?;
    assert!(
        from_host == format!("local {GATEWAY}") || from_host == format!("remote {GATEWAY}"),
        "{from_host}"
    );

    // The ClusterIP still reaches every endpoint (internalTrafficPolicy Cluster).
    let from_pod = join(in_netns(NS_REMOTE, move || {
        fetch(&format!("{VIP}:80"), Duration::from_secs(3))
    }))
    .context("pod to the ClusterIP")?;
    assert!(
        from_pod.ends_with(REMOTE_IP) || from_pod.ends_with(GATEWAY),
        "{from_pod}"
    );

    // No endpoint on this node: outside traffic is dropped (times out), not refused.
    let remote_only = [slice(&[(REMOTE_IP, "node-b")])?];
    syncer.sync(
        build_ruleset(&config, &services, &remote_only),
        Instant::now(),
    )?;
    let target = node_port.clone();
    let dropped = join(in_netns(NS_CLIENT, move || {
        Ok(fetch(&target, Duration::from_secs(1)))
    }))?;
    let error = dropped.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        !error.is_empty() && !error.contains("refused"),
        "expected a timeout, got {error:?}"
    );
    Ok(())
}
