//! From Services and EndpointSlices to the desired [`Ruleset`], shaped like upstream kube-proxy's
//! nftables mode, with a flat fast path for the common service port.
//!
//! Packet path: the `nat-prerouting`/`nat-output` base chains jump to `services`, which looks up
//! `daddr . l4proto . dport` in the `service-ips` verdict map (ClusterIPs, externalIPs, LoadBalancer
//! IPs) and `l4proto . dport` in `service-nodeports` for local destinations.
//!
//! Fast path (a ClusterIP-only port without session affinity or `Local` traffic policy, with at
//! most [`MAX_FLAT_ENDPOINTS`] endpoints): the `service-ips` element jumps to the shared chain
//! `balance-N` (N = the endpoint count), which DNATs through one lookup of
//! `daddr . l4proto . dport . numgen random mod N` in the `service-endpoints` map. Such a service
//! costs no chain at all, only map elements, so a 10,000-service table loads in about a second and
//! an endpoint change is a handful of element updates. Hairpin traffic (an endpoint reaching
//! itself through its service) is marked for masquerade in `masquerading` through the
//! `hairpin-endpoints` set instead of per-endpoint rules.
//!
//! Other service ports use upstream's shape: a per-service-port chain picks an endpoint with
//! `numgen random mod N` and the endpoint chain DNATs to `podIP:port`.
//! Packets to be SNATed carry mark `0x4000`, which `masquerading` (postrouting) turns into
//! `masquerade`. Services without usable endpoints are rejected by filter chains through the
//! `no-endpoint-services` / `no-endpoint-nodeports` maps (reject), or dropped when only a `Local`
//! traffic policy leaves them without endpoints.
//!
//! NodePorts answer on the Node's addresses and 127.0.0.1 (`nodeport-ips`). Traffic from outside
//! (NodePorts, externalIPs, LoadBalancer IPs) enters a per-service-port `external` chain: with
//! `externalTrafficPolicy: Cluster` it is masqueraded and balanced over every endpoint; with
//! `Local` pods and the node itself still use every endpoint, but other sources keep their address
//! and go to the `local` chain (endpoints on this node only). `internalTrafficPolicy: Local`
//! sends ClusterIP traffic to the `local` chain. Traffic to unallocated IPs of the service range
//! is dropped; topology hints narrow the endpoints to the node's zone as upstream.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sha2::{Digest, Sha256};

use crate::model::{Collection, Ruleset};
use crate::table::{DesiredTable, ServiceKey};

/// The EndpointSlice label naming the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The mark bit that asks `masquerading` to SNAT a packet.
pub const MASQUERADE_MARK: &str = "0x4000";
/// Default session-affinity timeout (upstream: 3 hours).
const DEFAULT_AFFINITY_TIMEOUT: i32 = 10800;
/// nftables rejects object names longer than this (NFT_NAME_MAXLEN is 256 with the NUL).
const MAX_NAME_LEN: usize = 255;
/// The largest endpoint count the flat fast path serves (one static `balance-N` chain per count;
/// nft cannot add such chains later, see [`crate::model::Chain::fixed`]).
pub const MAX_FLAT_ENDPOINTS: usize = 64;
/// The map of the fast path: `vip . l4proto . port . index` -> `endpoint ip . port`.
pub const SERVICE_ENDPOINTS_MAP: &str = "service-endpoints";
/// The set of `ip . ip` pairs of fast-path endpoints (hairpin detection in postrouting).
pub const HAIRPIN_SET: &str = "hairpin-endpoints";

/// What the rules depend on besides the API objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleConfig {
    /// The nftables table (`kube-proxy`; unique names in tests).
    pub table: String,
    /// `--cluster-cidr`: traffic to a ClusterIP from outside it is masqueraded.
    pub cluster_cidr: Option<String>,
    /// `--service-cluster-ip-range`: traffic to an unallocated IP in it is dropped.
    pub service_cidr: Option<String>,
    /// This node's name: endpoints with this `nodeName` are local (traffic policy `Local`).
    pub node_name: Option<String>,
    /// This node's addresses from its Node object: NodePorts answer on them (and on
    /// 127.0.0.1). Empty until the Node is known: then every local address answers.
    pub node_ips: Vec<Ipv4Addr>,
    /// This node's labels (the `topology.kubernetes.io/zone` label selects hinted endpoints).
    pub node_labels: BTreeMap<String, String>,
}

/// Upstream's node label naming the node's zone (used by topology-aware routing).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

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

/// One address of an EndpointSlice for a service port, with what endpoint selection needs.
#[derive(Debug, Clone)]
struct Candidate {
    endpoint: Endpoint,
    ready: bool,
    serving_terminating: bool,
    node_name: Option<String>,
    zones: Vec<String>,
}

/// Every endpoint of one service port in the slices (usable or not).
fn candidates(
    namespace: &str,
    service: &str,
    port_name: &str,
    proto: &str,
    slices: &[&EndpointSlice],
) -> Vec<Candidate> {
    let mut out = Vec::new();
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
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let zones = endpoint
                .hints
                .as_ref()
                .and_then(|h| h.for_zones.as_ref())
                .into_iter()
                .flatten()
                .map(|z| z.name.clone())
                .collect();
            out.push(Candidate {
                endpoint: Endpoint { ip, port },
                ready,
                serving_terminating: !ready && serving && terminating,
                node_name: endpoint.node_name.clone(),
                zones,
            });
        }
    }
    out
}

/// The ready endpoints passing `keep`, or (upstream's fallback) the serving-and-terminating ones
/// passing `keep_terminating` when none is; sorted and without duplicates.
fn select(
    candidates: &[Candidate],
    keep: impl Fn(&Candidate) -> bool,
    keep_terminating: impl Fn(&Candidate) -> bool,
) -> Vec<Endpoint> {
    let ready: BTreeSet<Endpoint> = candidates
        .iter()
        .filter(|c| c.ready && keep(c))
        .map(|c| c.endpoint)
        .collect();
    if !ready.is_empty() {
        return ready.into_iter().collect();
    }
    let terminating: BTreeSet<Endpoint> = candidates
        .iter()
        .filter(|c| c.serving_terminating && keep_terminating(c))
        .map(|c| c.endpoint)
        .collect();
    terminating.into_iter().collect()
}

/// Whether topology-aware routing applies (upstream `canUseTopology`): the service asks for it
/// (`service.kubernetes.io/topology-mode: Auto`, the older hints annotation, or
/// `trafficDistribution`), the node has a zone, every ready endpoint carries zone hints and one
/// of them is for this zone. Returns the zone.
fn topology_zone<'a>(
    config: &'a RuleConfig,
    service: &Service,
    candidates: &[Candidate],
) -> Option<&'a str> {
    let annotations = service.metadata.annotations.as_ref();
    let mode = annotations
        .and_then(|a| {
            a.get("service.kubernetes.io/topology-mode")
                .or_else(|| a.get("service.kubernetes.io/topology-aware-hints"))
        })
        .map(String::as_str);
    let distribution = service
        .spec
        .as_ref()
        .and_then(|s| s.traffic_distribution.as_ref());
    if distribution.is_none() && !matches!(mode, Some("Auto" | "auto")) {
        return None;
    }
    let zone = config
        .node_labels
        .get(ZONE_LABEL)
        .map(String::as_str)
        .filter(|z| !z.is_empty())?;
    let mut found = false;
    for candidate in candidates.iter().filter(|c| c.ready) {
        if candidate.zones.is_empty() {
            return None;
        }
        found |= candidate.zones.iter().any(|z| z == zone);
    }
    found.then_some(zone)
}

/// Endpoints for traffic that may go anywhere in the cluster (topology hints applied).
fn cluster_endpoints(
    config: &RuleConfig,
    service: &Service,
    candidates: &[Candidate],
) -> Vec<Endpoint> {
    let zone = topology_zone(config, service, candidates);
    select(
        candidates,
        |c| zone.is_none_or(|zone| c.zones.iter().any(|z| z == zone)),
        |_| true,
    )
}

/// Endpoints on this node (for `Local` traffic policies).
fn local_endpoints(config: &RuleConfig, candidates: &[Candidate]) -> Vec<Endpoint> {
    let Some(node) = config.node_name.as_deref() else {
        return Vec::new();
    };
    let is_local = |c: &Candidate| c.node_name.as_deref() == Some(node);
    select(candidates, is_local, is_local)
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
    select(
        &candidates(namespace, service, port_name, proto, slices),
        |_| true,
        |_| true,
    )
}

/// The chains, maps and jumps every kube-proxy table has, whatever the services.
fn add_static(config: &RuleConfig, rules: &mut Ruleset) {
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
                // NodePorts answer on 127.0.0.1 (route_localnet): drop martians to loopback
                // from outside (new connections only: replies to localhost are un-NATed later), as
                // upstream's iptables mode does.
                "iifname != \"lo\" ip saddr != 127.0.0.0/8 ip daddr 127.0.0.0/8 ct state new drop",
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
    // NodePorts: on the Node's addresses and localhost once the Node is known, else on every
    // local address.
    let node_ports = if config.node_ips.is_empty() {
        "fib daddr type local"
    } else {
        "ip daddr @nodeport-ips"
    };
    let mut cluster_ips_check = vec!["ip daddr @cluster-ips reject".to_string()];
    if let Some(cidr) = &config.service_cidr {
        // Upstream nftables mode: drop traffic to unallocated IPs of the service range.
        cluster_ips_check.push(format!("ip daddr {cidr} drop"));
    }
    let regular: [(&str, &[String]); 7] = [
        (
            "masquerading",
            &[
                format!(
                    "ct status dnat ip saddr . ip daddr @{HAIRPIN_SET} jump mark-for-masquerade"
                ),
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
                format!("{node_ports} meta l4proto . th dport vmap @service-nodeports"),
            ],
        ),
        (
            "service-endpoints-check",
            &["ip daddr . meta l4proto . th dport vmap @no-endpoint-services".to_string()],
        ),
        (
            "nodeport-endpoints-check",
            &[format!(
                "{node_ports} meta l4proto . th dport vmap @no-endpoint-nodeports"
            )],
        ),
        ("reject-chain", &["reject".to_string()]),
        (
            // Reached only by packets to a ClusterIP that no rule DNATed (a port the service
            // does not have): refuse at once instead of routing them nowhere.
            "cluster-ips-check",
            &cluster_ips_check,
        ),
    ];
    for (name, chain_rules) in regular {
        rules.chain(name).rules = chain_rules.to_vec();
    }
    // The fast path's shared balancing chains (fixed: written only when the table is created).
    for count in 1..=MAX_FLAT_ENDPOINTS {
        let chain = rules.fixed_chain(&balance_chain(count));
        chain.rules = config
            .cluster_cidr
            .iter()
            .map(|cidr| format!("ip saddr != {cidr} jump mark-for-masquerade"))
            .collect();
        chain.rules.push(format!(
            "dnat ip to ip daddr . meta l4proto . th dport . numgen random mod {count} map @{SERVICE_ENDPOINTS_MAP}"
        ));
    }
    rules.collections.insert(
        SERVICE_ENDPOINTS_MAP.into(),
        // `typeof`: numgen has no fixed-size named type. The value says `th dport`: read back
        // from the kernel nft 1.0 cannot parse it, hence the fixed chains.
        Collection::map(&format!(
            "typeof ip daddr . meta l4proto . th dport . numgen random mod {MAX_FLAT_ENDPOINTS} : ip daddr . th dport;"
        )),
    );
    rules.collections.insert(
        HAIRPIN_SET.into(),
        Collection::set("type ipv4_addr . ipv4_addr;"),
    );
    rules
        .collections
        .insert("cluster-ips".into(), Collection::set("type ipv4_addr;"));
    let mut nodeport_ips = Collection::set("type ipv4_addr;");
    if !config.node_ips.is_empty() {
        for ip in config.node_ips.iter().chain([&Ipv4Addr::LOCALHOST]) {
            nodeport_ips.elements.insert(ip.to_string(), None);
        }
    }
    rules
        .collections
        .insert("nodeport-ips".into(), nodeport_ips);
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

/// The shared fast-path chain balancing over `count` endpoints.
pub fn balance_chain(count: usize) -> String {
    format!("balance-{count}")
}

/// The elements `rules` holds for the standard set or map `name` (created empty in a service's
/// fragment; only the static part of the table declares it).
fn elements<'a>(rules: &'a mut Ruleset, name: &str) -> &'a mut BTreeMap<String, Option<String>> {
    &mut rules
        .collections
        .entry(name.to_string())
        .or_insert_with(|| Collection::set(""))
        .elements
}

fn insert_element(rules: &mut Ruleset, map: &str, key: String, verdict: String) {
    elements(rules, map).insert(key, Some(verdict));
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

/// Rules of one `numgen` chain over `endpoints`: the optional masquerade rule, affinity lookups,
/// then the random pick.
fn balancing_rules(
    masquerade: Option<String>,
    endpoints: &[Endpoint],
    suffix: &str,
    affinity: bool,
) -> Vec<String> {
    let mut chain_rules: Vec<String> = masquerade.into_iter().collect();
    let mut vmap = Vec::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let endpoint_suffix = format!("{suffix}__{}/{}", endpoint.ip, endpoint.port);
        let endpoint_chain = object_name("endpoint", &endpoint_suffix);
        if affinity {
            let set = object_name("affinity", &endpoint_suffix);
            chain_rules.push(format!("ip saddr @{set} goto {endpoint_chain}"));
        }
        vmap.push(format!("{index} : goto {endpoint_chain}"));
    }
    chain_rules.push(format!(
        "numgen random mod {} vmap {{ {} }}",
        endpoints.len(),
        vmap.join(", ")
    ));
    chain_rules
}

/// The per-endpoint chain (hairpin masquerade, affinity update, DNAT) and its affinity set.
fn add_endpoint_chain(
    rules: &mut Ruleset,
    suffix: &str,
    proto: &str,
    endpoint: Endpoint,
    affinity: Option<i32>,
) {
    let endpoint_suffix = format!("{suffix}__{}/{}", endpoint.ip, endpoint.port);
    let endpoint_chain = object_name("endpoint", &endpoint_suffix);
    let mut endpoint_rules = vec![format!("ip saddr {} jump mark-for-masquerade", endpoint.ip)];
    if let Some(timeout) = affinity {
        let set = object_name("affinity", &endpoint_suffix);
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
}

/// The fast path: map elements only (`service-ips` -> `balance-N`, the endpoints by index in
/// `service-endpoints`, hairpin pairs).
fn add_flat_service_port(
    rules: &mut Ruleset,
    vip: Ipv4Addr,
    proto: &str,
    service_port: u16,
    endpoints: &[Endpoint],
) {
    let key = format!("{vip} . {proto} . {service_port}");
    for (index, endpoint) in endpoints.iter().enumerate() {
        insert_element(
            rules,
            SERVICE_ENDPOINTS_MAP,
            format!("{key} . {index}"),
            format!("{} . {}", endpoint.ip, endpoint.port),
        );
        elements(rules, HAIRPIN_SET).insert(format!("{} . {}", endpoint.ip, endpoint.ip), None);
    }
    insert_element(
        rules,
        "service-ips",
        key,
        format!("goto {}", balance_chain(endpoints.len())),
    );
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
    let spec = service.spec.as_ref();
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let name = service.metadata.name.as_deref().unwrap_or("");
    let port_name = port.name.as_deref().unwrap_or("");
    let label = if port_name.is_empty() {
        service_port.to_string()
    } else {
        port_name.to_string()
    };
    let suffix = format!("{namespace}/{name}/{proto}/{label}");
    let candidates = candidates(namespace, name, port_name, proto, slices);
    let endpoints = cluster_endpoints(config, service, &candidates);
    let externals = external_ips(service);
    let node_port = port
        .node_port
        .filter(|_| {
            matches!(
                spec.and_then(|s| s.type_.as_deref()),
                Some("NodePort") | Some("LoadBalancer")
            )
        })
        .and_then(|p| u16::try_from(p).ok());
    let has_external = !externals.is_empty() || node_port.is_some();
    let internal_local = spec.and_then(|s| s.internal_traffic_policy.as_deref()) == Some("Local");
    let external_local =
        has_external && spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local");
    let local = if (internal_local || external_local) && !endpoints.is_empty() {
        local_endpoints(config, &candidates)
    } else {
        Vec::new()
    };

    if external_local {
        if let Some(hc_port) = spec
            .and_then(|s| s.health_check_node_port)
            .and_then(|p| u16::try_from(p).ok())
        {
            let ready_local: BTreeSet<Ipv4Addr> = candidates
                .iter()
                .filter(|c| c.ready && c.node_name.is_some() && c.node_name == config.node_name)
                .map(|c| c.endpoint.ip)
                .collect();
            let entry = rules.health_checks.entry(hc_port).or_default();
            entry.namespace = namespace.to_string();
            entry.name = name.to_string();
            entry.local_endpoints = entry.local_endpoints.max(ready_local.len());
        }
    }

    if proto == "udp" {
        let backends: BTreeSet<Ipv4Addr> = endpoints.iter().chain(&local).map(|e| e.ip).collect();
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
    // The service has endpoints, but maybe none for a `Local` policy: such traffic is dropped
    // (upstream), not rejected.
    let drop = "drop".to_string();

    let affinity = affinity_timeout(service);
    if affinity.is_none()
        && !internal_local
        && !has_external
        && endpoints.len() <= MAX_FLAT_ENDPOINTS
    {
        add_flat_service_port(rules, vip, proto, service_port, &endpoints);
        return;
    }
    let service_chain = object_name("service", &suffix);
    let local_chain = object_name("local", &suffix);
    let mut chained: BTreeSet<Endpoint> = endpoints.iter().copied().collect();
    chained.extend(local.iter().copied());
    for endpoint in chained {
        add_endpoint_chain(rules, &suffix, proto, endpoint, affinity);
    }
    let masquerade = config.cluster_cidr.as_ref().map(|cidr| {
        format!(
            "ip daddr {vip} {proto} dport {service_port} ip saddr != {cidr} jump mark-for-masquerade"
        )
    });
    rules.chain(&service_chain).rules =
        balancing_rules(masquerade.clone(), &endpoints, &suffix, affinity.is_some());
    if !local.is_empty() {
        let masquerade = masquerade.filter(|_| internal_local);
        rules.chain(&local_chain).rules =
            balancing_rules(masquerade, &local, &suffix, affinity.is_some());
    }

    let vip_key = format!("{vip} . {proto} . {service_port}");
    if !internal_local {
        insert_element(
            rules,
            "service-ips",
            vip_key,
            format!("goto {service_chain}"),
        );
    } else if !local.is_empty() {
        insert_element(rules, "service-ips", vip_key, format!("goto {local_chain}"));
    } else {
        rules.no_local_internal += 1;
        insert_element(rules, "no-endpoint-services", vip_key, drop.clone());
    }

    if !has_external {
        return;
    }
    let external_chain = object_name("external", &suffix);
    rules.chain(&external_chain).rules = if external_local {
        // Pods and the node itself still reach every endpoint (the node's traffic
        // masqueraded); outside traffic keeps its source and goes to local endpoints only.
        let mut chain_rules: Vec<String> = config
            .cluster_cidr
            .iter()
            .map(|cidr| format!("ip saddr {cidr} goto {service_chain}"))
            .collect();
        chain_rules.push("fib saddr type local jump mark-for-masquerade".to_string());
        chain_rules.push(format!("fib saddr type local goto {service_chain}"));
        if !local.is_empty() {
            chain_rules.push(format!("goto {local_chain}"));
        }
        chain_rules
    } else {
        // externalTrafficPolicy: Cluster: traffic from outside is always masqueraded.
        vec![
            "jump mark-for-masquerade".to_string(),
            format!("goto {service_chain}"),
        ]
    };
    let no_local = external_local && local.is_empty();
    if no_local {
        rules.no_local_external += 1;
    }
    for ip in externals {
        let key = format!("{ip} . {proto} . {service_port}");
        insert_element(
            rules,
            "service-ips",
            key.clone(),
            format!("goto {external_chain}"),
        );
        if no_local {
            insert_element(rules, "no-endpoint-services", key, drop.clone());
        }
    }
    if let Some(node_port) = node_port {
        let key = format!("{proto} . {node_port}");
        insert_element(
            rules,
            "service-nodeports",
            key.clone(),
            format!("goto {external_chain}"),
        );
        if no_local {
            insert_element(rules, "no-endpoint-nodeports", key, drop);
        }
    }
}

/// The part of the table that does not depend on any Service: base chains, shared chains, the
/// declarations of the standard sets and maps (and the node's addresses).
pub fn static_ruleset(config: &RuleConfig) -> Ruleset {
    let mut rules = Ruleset::new(&config.table);
    add_static(config, &mut rules);
    rules
}

/// What one Service contributes to the table (its fragment): its own chains and affinity sets,
/// and its elements of the standard sets and maps (collections with an empty spec, declared by
/// [`static_ruleset`]). `slices` are the service's EndpointSlices. `None` when the service gets
/// no rules (headless, ExternalName, no IPv4 ClusterIP).
pub fn service_rules(
    config: &RuleConfig,
    service: &Service,
    slices: &[&EndpointSlice],
) -> Option<Ruleset> {
    let vip = cluster_ip(service)?;
    let mut rules = Ruleset::new(&config.table);
    elements(&mut rules, "cluster-ips").insert(vip.to_string(), None);
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
    for port in ports.into_iter().flatten() {
        add_service_port(config, &mut rules, service, vip, port, slices);
    }
    Some(rules)
}

/// `namespace/name` of a Service (the key of its fragment).
pub fn service_key(service: &Service) -> ServiceKey {
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let name = service.metadata.name.as_deref().unwrap_or("");
    ServiceKey::from(format!("{namespace}/{name}"))
}

/// `namespace/service` of the Service an EndpointSlice belongs to (its `service-name` label).
pub fn slice_service_key(slice: &EndpointSlice) -> Option<ServiceKey> {
    let namespace = slice.metadata.namespace.as_deref().unwrap_or("");
    let labels = slice.metadata.labels.as_ref();
    let service = labels.and_then(|l| l.get(SERVICE_NAME_LABEL))?;
    Some(ServiceKey::from(format!("{namespace}/{service}")))
}

/// Builds the whole desired ruleset from the current Services and EndpointSlices (the same
/// merge of per-service fragments as the incremental path, see [`DesiredTable`]).
pub fn build_ruleset<'a>(
    config: &RuleConfig,
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Ruleset {
    build_table(config, services, slices).into_ruleset()
}

/// [`build_ruleset`], keeping the per-service fragments for later incremental updates.
pub fn build_table<'a>(
    config: &RuleConfig,
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> DesiredTable {
    // Slices by service, so each service looks only at its own.
    let mut by_service: HashMap<ServiceKey, Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        if let Some(key) = slice_service_key(slice) {
            by_service.entry(key).or_default().push(slice);
        }
    }
    let mut table = DesiredTable::new(static_ruleset(config));
    for service in services {
        let key = service_key(service);
        let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let fragment = service_rules(config, service, slices);
        table.set_service(key, fragment);
    }
    table.mark_applied();
    table
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
