//! Root-only tests against the real kernel: the generated ruleset is accepted by `nft -f`, replaced
//! atomically, removed by cleanup, and (with network namespaces behind a test bridge) really
//! carries connections to a fake Service VIP. Skipped with a note when not root.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube_proxy::model::delete_table_transaction;
use kube_proxy::nft::{NftCommand, Nftables};
use kube_proxy::rules::{build_ruleset, RuleConfig};
use kube_proxy::sync::{SyncKind, Syncer};

mod support;

use support::{add_bridge, add_netns, in_netns, is_root, quiet, read_reply};

fn service(json: serde_json::Value) -> Service {
    serde_json::from_value(json).expect("valid Service")
}

fn slice(json: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json).expect("valid EndpointSlice")
}

fn web_service(cluster_ip: &str) -> Service {
    service(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "NodePort", "clusterIP": cluster_ip, "sessionAffinity": "None",
            "externalIPs": ["198.51.100.9"],
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 31080}]
        }
    }))
}

fn sticky_service() -> Service {
    service(serde_json::json!({
        "metadata": {"name": "sticky", "namespace": "default"},
        "spec": {
            "clusterIP": "10.96.0.31", "sessionAffinity": "ClientIP",
            "ports": [{"port": 53, "protocol": "UDP"}]
        }
    }))
}

fn empty_service() -> Service {
    service(serde_json::json!({
        "metadata": {"name": "empty", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.32", "ports": [{"port": 80, "protocol": "TCP"}]}
    }))
}

fn web_slice(
    service: &str,
    port_name: Option<&str>,
    port: u16,
    protocol: &str,
    ips: &[&str],
) -> EndpointSlice {
    slice(serde_json::json!({
        "metadata": {"name": format!("{service}-x"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": protocol}],
        "endpoints": ips.iter().map(|ip| serde_json::json!({
            "addresses": [ip], "conditions": {"ready": true}
        })).collect::<Vec<_>>()
    }))
}

fn table_name(tag: &str) -> String {
    format!("kp-test-{tag}-{}", std::process::id())
}

#[test]
fn ruleset_applies_replaces_atomically_and_cleans_up() -> anyhow::Result<()> {
    if !is_root() {
        eprintln!("note: skipping the nft test: needs root and /usr/sbin/nft");
        return Ok(());
    }
    let nft = NftCommand::default();
    let table = table_name("apply");
    let config = RuleConfig {
        table: table.clone(),
        cluster_cidr: Some("10.244.0.0/16".into()),
        ..RuleConfig::default()
    };
    let services = [web_service("10.96.0.30"), sticky_service(), empty_service()];
    let slices = [
        web_slice(
            "web",
            Some("http"),
            8080,
            "TCP",
            &["10.244.0.5", "10.244.0.6"],
        ),
        web_slice("sticky", None, 5353, "UDP", &["10.244.0.7"]),
    ];
    let mut syncer = Syncer::new(Arc::new(nft.clone()), Duration::from_secs(30));
    let now = Instant::now();
    let guard = TableGuard(table.clone());
    let result = (|| -> anyhow::Result<()> {
        let first = syncer.sync(build_ruleset(&config, &services, &slices), now)?;
        assert_eq!(first, SyncKind::Recreate);
        let listed = nft.list_table(&table)?;
        assert!(listed.contains("dnat to 10.244.0.5:8080"), "{listed}");
        assert!(listed.contains("10.96.0.30 . tcp . 80"), "{listed}");
        assert!(
            listed.contains("10.96.0.32 . tcp . 80 : goto reject-chain"),
            "{listed}"
        );
        assert!(listed.contains("timeout 3h"), "{listed}");

        // Scale web down to one endpoint: an incremental transaction.
        let slices2 = [
            web_slice("web", Some("http"), 8080, "TCP", &["10.244.0.6"]),
            web_slice("sticky", None, 5353, "UDP", &["10.244.0.7"]),
        ];
        let second = syncer.sync(build_ruleset(&config, &services, &slices2), now)?;
        assert_eq!(second, SyncKind::Incremental);
        let listed = nft.list_table(&table)?;
        assert!(!listed.contains("10.244.0.5"), "{listed}");
        assert!(listed.contains("dnat to 10.244.0.6:8080"), "{listed}");

        // A periodic full resync after the web service is deleted.
        let third = syncer.sync(
            build_ruleset(&config, &services[1..], &slices2[1..]),
            now + Duration::from_secs(60),
        )?;
        assert_eq!(third, SyncKind::Full);
        let listed = nft.list_table(&table)?;
        assert!(!listed.contains("default/web"), "{listed}");
        assert!(listed.contains("default/sticky"), "{listed}");

        // A broken script changes nothing (atomicity).
        let before = nft.list_table(&table)?;
        let bad = format!("flush chain ip {table} services\nadd rule ip {table} services bogus\n");
        assert!(nft.apply(&bad).is_err());
        assert_eq!(nft.list_table(&table)?, before);
        Ok(())
    })();
    result?;
    drop(guard);
    assert!(
        nft.list_table(&table).is_err(),
        "table still present after cleanup"
    );
    Ok(())
}

/// `nft list table` output in a form that does not depend on creation order: the table name
/// replaced, each chain/set/map block with its elements sorted, the blocks sorted.
fn normalized_listing(listing: &str, table: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    let mut block: Vec<String> = Vec::new();
    let mut elements: Option<String> = None;
    for line in listing.lines() {
        let line = line.trim();
        if let Some(collected) = elements.as_mut() {
            collected.push(' ');
            collected.push_str(line);
        } else if let Some(rest) = line.strip_prefix("elements = {") {
            elements = Some(rest.to_string());
        } else if line == "}" {
            if !block.is_empty() {
                blocks.push(block.join("\n"));
            }
            block.clear();
            continue;
        } else if !line.starts_with("table ") && !line.starts_with("comment ") && !line.is_empty() {
            block.push(line.to_string());
        }
        if let Some(collected) = elements.take_if(|c| c.trim_end().ends_with('}')) {
            let inner = collected.trim_end().trim_end_matches('}');
            let mut items: Vec<&str> = inner.split(',').map(str::trim).collect();
            items.sort();
            block.push(format!("elements = {{ {} }}", items.join(", ")));
        }
    }
    blocks.sort();
    blocks
        .into_iter()
        .map(|b| b.replace(table, "TABLE"))
        .collect()
}

#[test]
fn incremental_proxier_syncs_match_a_freshly_written_table() -> anyhow::Result<()> {
    use kube_proxy::model::full_transaction;
    use kube_proxy::objects::Objects;
    use kube_proxy::proxier::Proxier;

    if !is_root() {
        eprintln!("note: skipping the nft test: needs root and /usr/sbin/nft");
        return Ok(());
    }
    let nft = NftCommand::default();
    let (table, fresh) = (table_name("delta"), table_name("fresh"));
    let _guards = (TableGuard(table.clone()), TableGuard(fresh.clone()));
    let config = RuleConfig {
        table: table.clone(),
        cluster_cidr: Some("10.244.0.0/16".into()),
        node_name: Some("node-a".into()),
        node_ips: vec!["192.0.2.2".parse()?],
        ..RuleConfig::default()
    };
    let fresh_config = RuleConfig {
        table: fresh.clone(),
        ..config.clone()
    };
    let mut local = web_service("10.96.0.33");
    local.metadata.name = Some("local".into());
    if let Some(spec) = local.spec.as_mut() {
        spec.external_traffic_policy = Some("Local".into());
        spec.health_check_node_port = Some(32100);
        spec.ports
            .iter_mut()
            .flatten()
            .for_each(|p| p.node_port = Some(31081));
    }
    let steps: Vec<(Vec<Service>, Vec<EndpointSlice>)> = vec![
        (
            vec![web_service("10.96.0.30"), sticky_service(), empty_service()],
            vec![
                web_slice("web", Some("http"), 8080, "TCP", &["10.244.0.5"]),
                web_slice("sticky", None, 5353, "UDP", &["10.244.0.7"]),
            ],
        ),
        // An endpoint more, a sticky endpoint replaced, the empty service gets one.
        (
            vec![web_service("10.96.0.30"), sticky_service(), empty_service()],
            vec![
                web_slice(
                    "web",
                    Some("http"),
                    8080,
                    "TCP",
                    &["10.244.0.5", "10.244.0.6"],
                ),
                web_slice("sticky", None, 5353, "UDP", &["10.244.0.8"]),
                web_slice("empty", None, 80, "TCP", &["10.244.0.9", "10.244.0.5"]),
            ],
        ),
        // A Local-policy service appears; web loses its endpoints; sticky is deleted.
        (
            vec![web_service("10.96.0.30"), empty_service(), local.clone()],
            vec![
                web_slice("sticky", None, 5353, "UDP", &["10.244.0.8"]),
                web_slice("empty", None, 80, "TCP", &["10.244.0.9"]),
                web_slice("local", Some("http"), 8080, "TCP", &["10.244.0.10"]),
            ],
        ),
        // Everything goes.
        (vec![], vec![]),
    ];
    let mut proxier = Proxier::new(Arc::new(nft.clone()), Duration::from_secs(3600));
    let mut objects = Objects::new();
    let now = Instant::now();
    for (step, (services, slices)) in steps.iter().enumerate() {
        objects.replace_services(services.clone());
        objects.replace_slices(slices.clone());
        let changes = objects.take_changes();
        let report = if step == 0 {
            proxier.sync_all(&config, &objects.all_inputs(), now)?
        } else {
            // Every service and slice that may have changed, as single watch events would.
            let mut keys = changes.services;
            for (prev_services, prev_slices) in &steps[step - 1..step] {
                keys.extend(prev_services.iter().map(kube_proxy::rules::service_key));
                keys.extend(
                    prev_slices
                        .iter()
                        .filter_map(kube_proxy::rules::slice_service_key),
                );
            }
            keys.extend(services.iter().map(kube_proxy::rules::service_key));
            keys.extend(
                slices
                    .iter()
                    .filter_map(kube_proxy::rules::slice_service_key),
            );
            let inputs: Vec<_> = keys.iter().map(|k| objects.input(k)).collect();
            proxier.sync_changed(&inputs)?
        };
        let expected_kind = if step == 0 {
            SyncKind::Recreate
        } else {
            SyncKind::Incremental
        };
        assert_eq!(report.kind, expected_kind, "step {step}");
        let desired = build_ruleset(&fresh_config, services, slices);
        nft.apply(&full_transaction(&desired, None, true))?;
        assert_eq!(
            normalized_listing(&nft.list_table(&table)?, &table),
            normalized_listing(&nft.list_table(&fresh)?, &fresh),
            "step {step}"
        );
    }
    Ok(())
}

/// Deletes the test table when dropped, also when an assertion panics.
struct TableGuard(String);

impl Drop for TableGuard {
    fn drop(&mut self) {
        if let Err(error) = NftCommand::default().apply(&delete_table_transaction(&self.0)) {
            eprintln!("cleanup of table {}: {error}", self.0);
        }
    }
}

/// Test network: a bridge with two namespaces, like pods behind `cni0`.
const BRIDGE: &str = "kptbr0";
const NS_SERVER: &str = "kptest-server";
const NS_CLIENT: &str = "kptest-client";
const GATEWAY: &str = "10.250.77.1";
const SERVER_IP: &str = "10.250.77.2";
const CLIENT_IP: &str = "10.250.77.3";
const VIP: &str = "10.97.250.1";
const TABLE: &str = "kp-test-netns";

/// Tears the test network down when dropped, also when an assertion panics.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::env::var_os("KPT_KEEP").is_none() {
            teardown();
        }
    }
}

fn teardown() {
    quiet(&["ip", "netns", "del", NS_SERVER]);
    quiet(&["ip", "netns", "del", NS_CLIENT]);
    quiet(&["ip", "link", "del", BRIDGE]);
    quiet(&["nft", "delete", "table", "ip", TABLE]);
}

fn setup() -> anyhow::Result<()> {
    add_bridge(BRIDGE, GATEWAY)?;
    for (ns, ip, veth) in [
        (NS_SERVER, SERVER_IP, "kptv-s"),
        (NS_CLIENT, CLIENT_IP, "kptv-c"),
    ] {
        add_netns(ns, ip, veth, BRIDGE, GATEWAY, true)?;
    }
    kube_proxy::sysctl::set("net.ipv4.ip_forward", "1")?;
    kube_proxy::sysctl::set("net.bridge.bridge-nf-call-iptables", "1")?;
    Ok(())
}

fn fetch(addr: &str) -> anyhow::Result<String> {
    read_reply(addr, Duration::from_secs(3))
}

#[test]
fn vip_reaches_a_pod_from_the_host_and_from_another_pod() -> anyhow::Result<()> {
    if !is_root() {
        eprintln!("note: skipping the netns VIP test: needs root and /usr/sbin/nft");
        return Ok(());
    }
    teardown();
    let _cleanup = Cleanup;
    (|| -> anyhow::Result<()> {
        setup()?;
        // The "pod": a TCP server answering with the peer address it sees.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let _server = in_netns(NS_SERVER, move || {
            use std::io::Write as _;
            let listener = std::net::TcpListener::bind(format!("{SERVER_IP}:8080"))?;
            ready_tx.send(())?;
            for stream in listener.incoming().take(3) {
                let mut stream = stream?;
                let peer = stream.peer_addr()?;
                writeln!(stream, "hello {}", peer.ip())?;
            }
            Ok(())
        });
        ready_rx.recv_timeout(Duration::from_secs(5))?;

        let config = RuleConfig {
            table: TABLE.to_string(),
            cluster_cidr: Some("10.250.77.0/24".into()),
            ..RuleConfig::default()
        };
        let services = [service(serde_json::json!({
            "metadata": {"name": "echo", "namespace": "default"},
            "spec": {"clusterIP": VIP, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }))];
        let slices = [web_slice("echo", None, 8080, "TCP", &[SERVER_IP])];
        let mut syncer = Syncer::new(Arc::new(NftCommand::default()), Duration::from_secs(30));
        syncer.sync(build_ruleset(&config, &services, &slices), Instant::now())?;

        // Host -> VIP: masqueraded to the bridge address (source is outside the cluster CIDR).
        let from_host = fetch(&format!("{VIP}:80"))?;
        assert_eq!(from_host.trim(), format!("hello {GATEWAY}"));

        // Pod -> VIP -> pod on the same bridge: the server sees the client pod's own address.
        let from_pod = in_netns(NS_CLIENT, move || fetch(&format!("{VIP}:80")))
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        assert_eq!(from_pod.trim(), format!("hello {CLIENT_IP}"));

        // Hairpin: the pod reaching itself through the VIP is masqueraded.
        let hairpin = in_netns(NS_SERVER, move || fetch(&format!("{VIP}:80")))
            .join()
            .map_err(|_| anyhow::anyhow!("hairpin thread panicked"))??;
        assert_eq!(hairpin.trim(), format!("hello {GATEWAY}"));

        // A port the service does not have is refused at once, from the host and from a pod.
        for result in [
            fetch(&format!("{VIP}:81")),
            in_netns(NS_CLIENT, move || fetch(&format!("{VIP}:81")))
                .join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))?,
        ] {
            let error = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains("refused"), "{error}");
        }

        // A host-network endpoint over UDP (how kube-dns is reached at 10.96.0.10:53).
        let dns_vip = "10.97.250.10";
        let host_udp = std::net::UdpSocket::bind(format!("{GATEWAY}:10053"))?;
        let udp_server = std::thread::spawn(move || -> anyhow::Result<()> {
            let mut buffer = [0u8; 512];
            for _ in 0..2 {
                let (len, peer) = host_udp.recv_from(&mut buffer)?;
                let reply = format!(
                    "pong {} {}",
                    peer.ip(),
                    String::from_utf8_lossy(&buffer[..len])
                );
                host_udp.send_to(reply.as_bytes(), peer)?;
            }
            Ok(())
        });
        let mut with_dns = services.to_vec();
        with_dns.push(service(serde_json::json!({
            "metadata": {"name": "dns", "namespace": "default"},
            "spec": {"clusterIP": dns_vip, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}
        })));
        let dns_slice = web_slice("dns", Some("dns"), 10053, "UDP", &[GATEWAY]);
        let mut with_dns_slices = slices.to_vec();
        with_dns_slices.push(dns_slice);
        syncer.sync(
            build_ruleset(&config, &with_dns, &with_dns_slices),
            Instant::now(),
        )?;
        let udp_ask = move || -> anyhow::Result<String> {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
            socket.set_read_timeout(Some(Duration::from_secs(3)))?;
            socket.send_to(b"ping", format!("{dns_vip}:53"))?;
            let mut buffer = [0u8; 512];
            let (len, from) = socket.recv_from(&mut buffer)?;
            anyhow::ensure!(
                from.to_string() == format!("{dns_vip}:53"),
                "reply from {from}"
            );
            Ok(String::from_utf8_lossy(&buffer[..len]).into_owned())
        };
        let from_pod = in_netns(NS_CLIENT, udp_ask)
            .join()
            .map_err(|_| anyhow::anyhow!("udp client thread panicked"))??;
        assert_eq!(from_pod, format!("pong {CLIENT_IP} ping"));
        let from_host = udp_ask()?;
        assert!(
            from_host.starts_with("pong ") && from_host.ends_with(" ping"),
            "{from_host}"
        );
        udp_server
            .join()
            .map_err(|_| anyhow::anyhow!("udp server thread panicked"))??;

        // Without endpoints the VIP rejects at once (connection refused, no timeout).
        syncer.sync(build_ruleset(&config, &services, &[]), Instant::now())?;
        let started = Instant::now();
        let refused = fetch(&format!("{VIP}:80"));
        assert!(refused.is_err(), "{refused:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        Ok(())
    })()
}
