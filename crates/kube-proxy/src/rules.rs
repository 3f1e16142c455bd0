//! From Services and EndpointSlices to the desired [`Ruleset`], shaped like upstream kube-proxy's
//! nftables mode.
//!
//! Packet path: the `nat-prerouting`/`nat-output` base chains jump to `services`, which looks up
//! `daddr . l4proto . dport` in the `service-ips` verdict map (ClusterIPs, externalIPs, LoadBalancer
//! IPs) and `l4proto . dport` in `service-nodeports` for local destinations. A per-service-port
//! chain picks an endpoint with `numgen random mod N` and the endpoint chain DNATs to `podIP:port`.
//! Packets to be SNATed carry mark `0x4000`, which `masquerading` (postrouting) turns into
//! `masquerade`. Services without usable endpoints are rejected by filter chains through the
//! `no-endpoint-services` / `no-endpoint-nodeports` maps.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sha2::{Digest, Sha256};

use crate::model::{Collection, Ruleset};

/// The EndpointSlice label naming the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The mark bit that asks `masquerading` to SNAT a packet.
pub const MASQUERADE_MARK: &str = "0x4000";
/// Default session-affinity timeout (upstream: 3 hours).
const DEFAULT_AFFINITY_TIMEOUT: i32 = 10800;
/// nftables rejects object names longer than this (NFT_NAME_MAXLEN is 256 with the NUL).
const MAX_NAME_LEN: usize = 255;

/// What the rules depend on besides the API objects.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    /// The nftables table (`kube-proxy`; unique names in tests).
    pub table: String,
    /// `--cluster-cidr`: traffic to a ClusterIP from outside it is masqueraded.
    pub cluster_cidr: Option<String>,
}

/// One usable backend of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// Pod (or node) IP.
    pub ip: Ipv4Addr,
    /// Target port number, as the EndpointSlice resolved it.
    pub port: u16,
}

fn base32_hash(input: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(input.as_bytes());
    let mut out = String::with_capacity(8);
    let mut buffer: u64 = 0;
    let mut bits = 0;
    for byte in digest.iter() {
        buffer = (buffer << 8) | u64::from(*byte);
        bits += 8;
        while bits >= 5 && out.len() < 8 {
            bits -= 5;
            let index = ((buffer >> bits) & 0x1f) as usize;
            out.push(char::from(ALPHABET[index]));
        }
        if out.len() == 8 {
            break;
        }
    }
    out
}

/// `<prefix>-<HASH>-<suffix>`, where HASH is 8 base32 characters of sha256(suffix); cut to the
/// length nftables accepts. Names stay legal unquoted identifiers because Kubernetes names only
/// hold `[a-z0-9.-]`.
fn object_name(prefix: &str, suffix: &str) -> String {
    let mut name = format!("{prefix}-{}-{suffix}", base32_hash(suffix));
    name.truncate(MAX_NAME_LEN);
    name
}

fn protocol(port: &ServicePort) -> Option<&'static str> {
    match port.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

/// The usable endpoints of one service port: ready ones, or serving-and-terminating ones when none
/// is ready (upstream's fallback), sorted and without duplicates.
pub fn endpoints_for(
    namespace: &str,
    service: &str,
    port_name: &str,
    proto: &str,
    slices: &[&EndpointSlice],
) -> Vec<Endpoint> {
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for slice in slices {
        if slice.metadata.namespace.as_deref() != Some(namespace)
            || slice.address_type != "IPv4"
            || slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                != Some(service)
        {
            continue;
        }
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && p.protocol
                    .as_deref()
                    .unwrap_or("TCP")
                    .eq_ignore_ascii_case(proto)
        }) else {
            continue;
        };
        let Some(port) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let conditions = endpoint.conditions.as_ref();
            let is_ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(is_ready);
            let is_terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            if is_ready {
                ready.insert(Endpoint { ip, port });
            } else if serving && is_terminating {
                terminating.insert(Endpoint { ip, port });
            }
        }
    }
    if ready.is_empty() {
        terminating.into_iter().collect()
    } else {
        ready.into_iter().collect()
    }
}

/// The chains, maps and jumps every kube-proxy table has, whatever the services.
fn add_static(rules: &mut Ruleset) {
    let base: [(&str, &str, &[&str]); 7] = [
        (
            "nat-prerouting",
            "type nat hook prerouting priority -100",
            &["jump services"],
        ),
        (
            "nat-output",
            "type nat hook output priority -100",
            &["jump services"],
        ),
        (
            "nat-postrouting",
            "type nat hook postrouting priority 100",
            &["jump masquerading"],
        ),
        (
            "filter-input",
            "type filter hook input priority -110",
            &[
                "ct state new jump nodeport-endpoints-check",
                "ct state new jump service-endpoints-check",
            ],
        ),
        (
            "filter-forward",
            "type filter hook forward priority -110",
            &[
                "ct state new jump service-endpoints-check",
                "ct state new jump cluster-ips-check",
            ],
        ),
        (
            "filter-output-post-dnat",
            "type filter hook output priority -90",
            &["ct state new jump cluster-ips-check"],
        ),
        (
            "filter-output",
            "type filter hook output priority -110",
            &["ct state new jump service-endpoints-check"],
        ),
    ];
    for (name, hook, chain_rules) in base {
        let chain = rules.base_chain(name, hook);
        chain.rules = chain_rules.iter().map(|r| r.to_string()).collect();
    }
    let regular: [(&str, &[String]); 7] = [
        (
            "masquerading",
            &[
                format!("meta mark & {MASQUERADE_MARK} == 0 return"),
                format!("meta mark set meta mark ^ {MASQUERADE_MARK}"),
                "masquerade fully-random".to_string(),
            ],
        ),
        (
            "mark-for-masquerade",
            &[format!("meta mark set meta mark | {MASQUERADE_MARK}")],
        ),
        (
            "services",
            &[
                "ip daddr . meta l4proto . th dport vmap @service-ips".to_string(),
                "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"
                    .to_string(),
            ],
        ),
        (
            "service-endpoints-check",
            &["ip daddr . meta l4proto . th dport vmap @no-endpoint-services".to_string()],
        ),
        (
            "nodeport-endpoints-check",
            &["fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports"
                .to_string()],
        ),
        ("reject-chain", &["reject".to_string()]),
        (
            // Reached only by packets to a ClusterIP that no rule DNATed (a port the service
            // does not have): refuse at once instead of routing them nowhere.
            "cluster-ips-check",
            &["ip daddr @cluster-ips reject".to_string()],
        ),
    ];
    for (name, chain_rules) in regular {
        rules.chain(name).rules = chain_rules.to_vec();
    }
    rules
        .collections
        .insert("cluster-ips".into(), Collection::set("type ipv4_addr;"));
    let ip_map = "type ipv4_addr . inet_proto . inet_service : verdict;";
    let port_map = "type inet_proto . inet_service : verdict;";
    rules
        .collections
        .insert("service-ips".into(), Collection::map(ip_map));
    rules
        .collections
        .insert("service-nodeports".into(), Collection::map(port_map));
    rules
        .collections
        .insert("no-endpoint-services".into(), Collection::map(ip_map));
    rules
        .collections
        .insert("no-endpoint-nodeports".into(), Collection::map(port_map));
}

fn insert_element(rules: &mut Ruleset, map: &str, key: String, verdict: String) {
    if let Some(collection) = rules.collections.get_mut(map) {
        collection.elements.insert(key, Some(verdict));
    }
}

/// The ClusterIP of a service if it gets rules: not headless, not ExternalName, IPv4.
fn cluster_ip(service: &Service) -> Option<Ipv4Addr> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.cluster_ip.as_deref()?.parse().ok()
}

/// IPs outside the cluster that also lead to the service: externalIPs and LoadBalancer ingress.
fn external_ips(service: &Service) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = service
        .spec
        .as_ref()
        .and_then(|s| s.external_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    ips.extend(
        ingress
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref())
            .filter_map(|ip| ip.parse::<Ipv4Addr>().ok()),
    );
    ips.sort();
    ips.dedup();
    ips
}

/// Session affinity timeout in seconds when the service uses `ClientIP` affinity.
fn affinity_timeout(service: &Service) -> Option<i32> {
    let spec = service.spec.as_ref()?;
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .unwrap_or(DEFAULT_AFFINITY_TIMEOUT);
    Some(timeout.max(1))
}

fn add_service_port(
    config: &RuleConfig,
    rules: &mut Ruleset,
    service: &Service,
    vip: Ipv4Addr,
    port: &ServicePort,
    slices: &[&EndpointSlice],
) {
    let Some(proto) = protocol(port) else {
        return;
    };
    let Ok(service_port) = u16::try_from(port.port) else {
        return;
    };
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let name = service.metadata.name.as_deref().unwrap_or("");
    let port_name = port.name.as_deref().unwrap_or("");
    let label = if port_name.is_empty() {
        service_port.to_string()
    } else {
        port_name.to_string()
    };
    let suffix = format!("{namespace}/{name}/{proto}/{label}");
    let endpoints = endpoints_for(namespace, name, port_name, proto, slices);
    let externals = external_ips(service);
    let node_port = port
        .node_port
        .filter(|_| {
            matches!(
                service.spec.as_ref().and_then(|s| s.type_.as_deref()),
                Some("NodePort") | Some("LoadBalancer")
            )
        })
        .and_then(|p| u16::try_from(p).ok());

    if proto == "udp" {
        let backends: BTreeSet<Ipv4Addr> = endpoints.iter().map(|e| e.ip).collect();
        for ip in std::iter::once(vip).chain(externals.iter().copied()) {
            rules
                .udp_destinations
                .insert((ip, service_port), backends.clone());
        }
    }

    if endpoints.is_empty() {
        let reject = "goto reject-chain".to_string();
        for ip in std::iter::once(vip).chain(externals.iter().copied()) {
            let key = format!("{ip} . {proto} . {service_port}");
            insert_element(rules, "no-endpoint-services", key, reject.clone());
        }
        if let Some(node_port) = node_port {
            let key = format!("{proto} . {node_port}");
            insert_element(rules, "no-endpoint-nodeports", key, reject);
        }
        return;
    }

    let service_chain = object_name("service", &suffix);
    let affinity = affinity_timeout(service);
    let mut service_rules = Vec::new();
    if let Some(cidr) = &config.cluster_cidr {
        service_rules.push(format!(
            "ip daddr {vip} {proto} dport {service_port} ip saddr != {cidr} jump mark-for-masquerade"
        ));
    }
    let mut vmap = Vec::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let endpoint_suffix = format!("{suffix}__{}/{}", endpoint.ip, endpoint.port);
        let endpoint_chain = object_name("endpoint", &endpoint_suffix);
        let mut endpoint_rules = vec![format!("ip saddr {} jump mark-for-masquerade", endpoint.ip)];
        if let Some(timeout) = affinity {
            let set = object_name("affinity", &endpoint_suffix);
            service_rules.push(format!("ip saddr @{set} goto {endpoint_chain}"));
            endpoint_rules.push(format!("update @{set} {{ ip saddr }}"));
            rules.collections.insert(
                set,
                Collection::dynamic_set(&format!(
                    "type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"
                )),
            );
        }
        endpoint_rules.push(format!(
            "meta l4proto {proto} dnat to {}:{}",
            endpoint.ip, endpoint.port
        ));
        rules.chain(&endpoint_chain).rules = endpoint_rules;
        vmap.push(format!("{index} : goto {endpoint_chain}"));
    }
    service_rules.push(format!(
        "numgen random mod {} vmap {{ {} }}",
        endpoints.len(),
        vmap.join(", ")
    ));
    rules.chain(&service_chain).rules = service_rules;
    insert_element(
        rules,
        "service-ips",
        format!("{vip} . {proto} . {service_port}"),
        format!("goto {service_chain}"),
    );

    if externals.is_empty() && node_port.is_none() {
        return;
    }
    // Traffic from outside the cluster is always masqueraded (externalTrafficPolicy: Cluster).
    let external_chain = object_name("external", &suffix);
    rules.chain(&external_chain).rules = vec![
        "jump mark-for-masquerade".to_string(),
        format!("goto {service_chain}"),
    ];
    for ip in externals {
        insert_element(
            rules,
            "service-ips",
            format!("{ip} . {proto} . {service_port}"),
            format!("goto {external_chain}"),
        );
    }
    if let Some(node_port) = node_port {
        insert_element(
            rules,
            "service-nodeports",
            format!("{proto} . {node_port}"),
            format!("goto {external_chain}"),
        );
    }
}

/// Builds the whole desired ruleset from the current Services and EndpointSlices.
pub fn build_ruleset<'a>(
    config: &RuleConfig,
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Ruleset {
    let slices: Vec<&EndpointSlice> = slices.into_iter().collect();
    let mut rules = Ruleset::new(&config.table);
    add_static(&mut rules);
    for service in services {
        let Some(vip) = cluster_ip(service) else {
            continue;
        };
        if let Some(set) = rules.collections.get_mut("cluster-ips") {
            set.elements.insert(vip.to_string(), None);
        }
        let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
        for port in ports.into_iter().flatten() {
            add_service_port(config, &mut rules, service, vip, port, &slices);
        }
    }
    rules
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
