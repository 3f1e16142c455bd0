//! Table-driven tests of [`build_ruleset`] over typed Services and EndpointSlices.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec,
    ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint as SliceEndpoint, EndpointConditions, EndpointPort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::model::{full_transaction, incremental_transaction};

fn config() -> RuleConfig {
    RuleConfig {
        table: "kube-proxy".into(),
        cluster_cidr: Some("10.244.0.0/16".into()),
        ..RuleConfig::default()
    }
}

fn service(name: &str, cluster_ip: &str, ports: &[(&str, i32, &str)]) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            type_: Some("ClusterIP".into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(port_name, port, target)| ServicePort {
                        name: (!port_name.is_empty()).then(|| port_name.to_string()),
                        port: *port,
                        protocol: Some("TCP".into()),
                        target_port: Some(match target.parse::<i32>() {
                            Ok(n) => IntOrString::Int(n),
                            Err(_) => IntOrString::String(target.to_string()),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// Endpoints are `(ip, ready, serving, terminating)`.
fn slice(
    service: &str,
    ports: &[(&str, i32)],
    endpoints: &[(&str, bool, bool, bool)],
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{service}-abc")),
            namespace: Some("default".into()),
            labels: Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.to_string(),
                service.to_string(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(
            ports
                .iter()
                .map(|(name, port)| EndpointPort {
                    name: (!name.is_empty()).then(|| name.to_string()),
                    port: Some(*port),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        endpoints: endpoints
            .iter()
            .map(|(ip, ready, serving, terminating)| SliceEndpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    serving: Some(*serving),
                    terminating: Some(*terminating),
                }),
                ..Default::default()
            })
            .collect(),
    }
}

fn ready(ip: &str) -> (&str, bool, bool, bool) {
    (ip, true, true, false)
}

fn service_chain_rules<'a>(rules: &'a Ruleset, prefix: &str) -> (&'a String, &'a Vec<String>) {
    rules
        .chains
        .iter()
        .find(|(name, _)| name.starts_with(prefix) || name.ends_with(prefix))
        .map(|(name, chain)| (name, &chain.rules))
        .unwrap_or_else(|| panic!("no chain matching {prefix}"))
}

/// The fast-path endpoints of `key` (`vip . proto . port`), by index.
fn flat_endpoints(rules: &Ruleset, key: &str) -> Vec<String> {
    let map = &rules.collections[SERVICE_ENDPOINTS_MAP].elements;
    (0..)
        .map_while(|i| map.get(&format!("{key} . {i}")).cloned().flatten())
        .collect()
}

#[test]
fn cluster_ip_with_two_endpoints_load_balances_between_them() {
    let svc = service("web", "10.96.0.20", &[("http", 80, "8080")]);
    let eps = slice(
        "web",
        &[("http", 8080)],
        &[ready("10.244.0.5"), ready("10.244.0.6")],
    );
    let rules = build_ruleset(&config(), [&svc], [&eps]);

    // The fast path: no chain of its own, only map elements.
    assert!(!rules.chains.keys().any(|n| n.contains("default/")));
    assert_eq!(
        rules.collections["service-ips"].elements["10.96.0.20 . tcp . 80"],
        Some("goto balance-2".to_string())
    );
    assert_eq!(
        flat_endpoints(&rules, "10.96.0.20 . tcp . 80"),
        vec!["10.244.0.5 . 8080", "10.244.0.6 . 8080"]
    );
    assert_eq!(
        rules.chains["balance-2"].rules,
        vec![
            "ip saddr != 10.244.0.0/16 jump mark-for-masquerade".to_string(),
            "dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @service-endpoints"
                .to_string(),
        ]
    );
    assert!(rules.chains["balance-2"].fixed);
    // Hairpin: an endpoint reaching itself through the VIP is masqueraded.
    let hairpin = &rules.collections[HAIRPIN_SET].elements;
    assert!(hairpin.contains_key("10.244.0.5 . 10.244.0.5"));
    assert!(hairpin.contains_key("10.244.0.6 . 10.244.0.6"));
    assert_eq!(
        rules.chains["masquerading"].rules[0],
        "ct status dnat ip saddr . ip daddr @hairpin-endpoints jump mark-for-masquerade"
    );
    assert!(rules.collections["cluster-ips"]
        .elements
        .contains_key("10.96.0.20"));
    let text = full_transaction(&rules, None, true);
    assert!(text.contains(
        "add element ip kube-proxy service-ips { 10.96.0.20 . tcp . 80 : goto balance-2 }"
    ));
    // Elements go in batches, one command per map.
    assert!(text.contains(
        "add element ip kube-proxy service-endpoints { 10.96.0.20 . tcp . 80 . 0 : 10.244.0.5 . 8080, \
         10.96.0.20 . tcp . 80 . 1 : 10.244.0.6 . 8080 }\n"
    ));
    assert!(text.contains(
        "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100; }"
    ));
}

#[test]
fn more_endpoints_than_the_fast_path_takes_use_per_service_chains() {
    let svc = service("web", "10.96.0.20", &[("http", 80, "8080")]);
    let ips: Vec<String> = (1..=MAX_FLAT_ENDPOINTS + 1)
        .map(|i| format!("10.244.1.{i}"))
        .collect();
    let endpoints: Vec<(&str, bool, bool, bool)> = ips.iter().map(|ip| ready(ip)).collect();
    let eps = slice("web", &[("http", 8080)], &endpoints);
    let rules = build_ruleset(&config(), [&svc], [&eps]);
    let (name, service_rules) = service_chain_rules(&rules, "default/web/tcp/http");
    assert!(name.starts_with("service-"), "{name}");
    assert_eq!(
        service_rules[0],
        "ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
    );
    assert!(service_rules[1].starts_with(&format!(
        "numgen random mod {} vmap",
        MAX_FLAT_ENDPOINTS + 1
    )));
    let ep5 = object_name("endpoint", "default/web/tcp/http__10.244.1.5/8080");
    assert_eq!(
        rules.chains[&ep5].rules,
        vec![
            "ip saddr 10.244.1.5 jump mark-for-masquerade".to_string(),
            "meta l4proto tcp dnat to 10.244.1.5:8080".to_string(),
        ]
    );
    assert_eq!(
        rules.collections["service-ips"].elements["10.96.0.20 . tcp . 80"],
        Some(format!("goto {name}"))
    );
    assert!(flat_endpoints(&rules, "10.96.0.20 . tcp . 80").is_empty());
}

#[test]
fn service_without_endpoints_is_rejected() {
    let svc = service("web", "10.96.0.20", &[("", 80, "80")]);
    let rules = build_ruleset(&config(), [&svc], []);
    assert!(!rules.chains.keys().any(|n| n.contains("default/")));
    assert_eq!(
        rules.collections["no-endpoint-services"].elements["10.96.0.20 . tcp . 80"],
        Some("goto reject-chain".to_string())
    );
    assert!(rules.collections["service-ips"].elements.is_empty());
}

#[test]
fn not_ready_endpoints_are_excluded() {
    let svc = service("web", "10.96.0.20", &[("", 80, "80")]);
    let eps = slice(
        "web",
        &[("", 80)],
        &[ready("10.244.0.5"), ("10.244.0.6", false, false, false)],
    );
    let rules = build_ruleset(&config(), [&svc], [&eps]);
    assert_eq!(
        flat_endpoints(&rules, "10.96.0.20 . tcp . 80"),
        vec!["10.244.0.5 . 80"]
    );
    assert_eq!(
        rules.collections["service-ips"].elements["10.96.0.20 . tcp . 80"],
        Some("goto balance-1".to_string())
    );
}

#[test]
fn serving_terminating_endpoints_are_used_only_when_none_is_ready() {
    let svc = service("web", "10.96.0.20", &[("", 80, "80")]);
    let eps = slice(
        "web",
        &[("", 80)],
        &[
            ("10.244.0.6", false, true, true),
            ("10.244.0.7", false, false, true),
        ],
    );
    let rules = build_ruleset(&config(), [&svc], [&eps]);
    assert_eq!(
        flat_endpoints(&rules, "10.96.0.20 . tcp . 80"),
        vec!["10.244.0.6 . 80"]
    );
}

#[test]
fn headless_and_external_name_services_are_skipped() {
    let headless = service("db", "None", &[("", 5432, "5432")]);
    let mut external = service("ext", "", &[("", 80, "80")]);
    if let Some(spec) = external.spec.as_mut() {
        spec.type_ = Some("ExternalName".into());
    }
    let eps = slice("db", &[("", 5432)], &[ready("10.244.0.5")]);
    let rules = build_ruleset(&config(), [&headless, &external], [&eps]);
    assert!(!rules.chains.keys().any(|n| n.contains("default/")));
    assert!(rules.collections.values().all(|c| c.elements.is_empty()));
}

#[test]
fn named_target_port_uses_the_port_the_slice_resolved() {
    let svc = service("web", "10.96.0.20", &[("http", 80, "web-port")]);
    let eps = slice(
        "web",
        &[("http", 8080), ("metrics", 9090)],
        &[ready("10.244.0.5")],
    );
    let rules = build_ruleset(&config(), [&svc], [&eps]);
    assert_eq!(
        flat_endpoints(&rules, "10.96.0.20 . tcp . 80"),
        vec!["10.244.0.5 . 8080"]
    );
}

#[test]
fn node_port_external_ip_and_load_balancer_go_through_the_external_chain() {
    let mut svc = service("web", "10.96.0.20", &[("http", 80, "8080")]);
    if let Some(spec) = svc.spec.as_mut() {
        spec.type_ = Some("LoadBalancer".into());
        spec.external_ips = Some(vec!["192.0.2.50".into()]);
        if let Some(port) = spec.ports.as_mut().and_then(|p| p.first_mut()) {
            port.node_port = Some(30080);
        }
    }
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("198.51.100.7".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    let eps = slice("web", &[("http", 8080)], &[ready("10.244.0.5")]);
    let rules = build_ruleset(&config(), [&svc], [&eps]);
    let external = object_name("external", "default/web/tcp/http");
    let service_chain = object_name("service", "default/web/tcp/http");
    assert_eq!(
        rules.chains[&external].rules,
        vec![
            "jump mark-for-masquerade".to_string(),
            format!("goto {service_chain}")
        ]
    );
    let goto_external = Some(format!("goto {external}"));
    assert_eq!(
        rules.collections["service-nodeports"].elements["tcp . 30080"],
        goto_external
    );
    let ips = &rules.collections["service-ips"].elements;
    assert_eq!(ips["192.0.2.50 . tcp . 80"], goto_external);
    assert_eq!(ips["198.51.100.7 . tcp . 80"], goto_external);
    assert_eq!(
        ips["10.96.0.20 . tcp . 80"],
        Some(format!("goto {service_chain}"))
    );
}

#[test]
fn node_port_without_endpoints_is_rejected() {
    let mut svc = service("web", "10.96.0.20", &[("", 80, "80")]);
    if let Some(spec) = svc.spec.as_mut() {
        spec.type_ = Some("NodePort".into());
        if let Some(port) = spec.ports.as_mut().and_then(|p| p.first_mut()) {
            port.node_port = Some(30081);
        }
    }
    let rules = build_ruleset(&config(), [&svc], []);
    assert_eq!(
        rules.collections["no-endpoint-nodeports"].elements["tcp . 30081"],
        Some("goto reject-chain".to_string())
    );
}

#[test]
fn client_ip_affinity_adds_a_dynamic_set_per_endpoint() {
    let mut svc = service("web", "10.96.0.20", &[("", 80, "80")]);
    if let Some(spec) = svc.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
        spec.session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(600),
            }),
        });
    }
    let eps = slice("web", &[("", 80)], &[ready("10.244.0.5")]);
    let rules = build_ruleset(&config(), [&svc], [&eps]);
    let suffix = "default/web/tcp/80__10.244.0.5/80";
    let set = object_name("affinity", suffix);
    let endpoint = object_name("endpoint", suffix);
    let collection = &rules.collections[&set];
    assert_eq!(
        collection.spec,
        "type ipv4_addr; flags dynamic,timeout; timeout 600s;"
    );
    assert!(!collection.managed_elements);
    let (_, service_rules) = service_chain_rules(&rules, "default/web/tcp/80");
    assert_eq!(service_rules[1], format!("ip saddr @{set} goto {endpoint}"));
    assert_eq!(
        rules.chains[&endpoint].rules[1],
        format!("update @{set} {{ ip saddr }}")
    );
}

#[test]
fn incremental_update_touches_only_the_changed_service() {
    let web = service("web", "10.96.0.20", &[("", 80, "80")]);
    let api = service("api", "10.96.0.21", &[("", 443, "443")]);
    let web_eps = slice("web", &[("", 80)], &[ready("10.244.0.5")]);
    let api_eps = slice("api", &[("", 443)], &[ready("10.244.0.9")]);
    let before = build_ruleset(&config(), [&web, &api], [&web_eps, &api_eps]);
    let web_eps2 = slice(
        "web",
        &[("", 80)],
        &[ready("10.244.0.5"), ready("10.244.0.6")],
    );
    let after = build_ruleset(&config(), [&web, &api], [&web_eps2, &api_eps]);

    // An endpoint change is element updates only: no chain is touched.
    let text = incremental_transaction(&after, &before);
    let expected = "add element ip kube-proxy hairpin-endpoints { 10.244.0.6 . 10.244.0.6 }\n\
         add element ip kube-proxy service-endpoints { 10.96.0.20 . tcp . 80 . 1 : 10.244.0.6 . 80 }\n\
         delete element ip kube-proxy service-ips { 10.96.0.20 . tcp . 80 }\n\
         add element ip kube-proxy service-ips { 10.96.0.20 . tcp . 80 : goto balance-2 }\n";
    assert_eq!(text, expected);
    assert!(!text.contains("10.96.0.21"));

    // Replacing one endpoint by another keeps the count: the endpoint element is swapped.
    let web_eps3 = slice(
        "web",
        &[("", 80)],
        &[ready("10.244.0.5"), ready("10.244.0.7")],
    );
    let moved = build_ruleset(&config(), [&web, &api], [&web_eps3, &api_eps]);
    let text = incremental_transaction(&moved, &after);
    assert!(!text.contains("service-ips"), "{text}");
    assert!(text.contains(
        "add element ip kube-proxy service-endpoints { 10.96.0.20 . tcp . 80 . 1 : 10.244.0.7 . 80 }"
    ));

    // Deleting the service removes its elements and nothing else.
    let gone = build_ruleset(&config(), [&api], [&api_eps]);
    let text = incremental_transaction(&gone, &after);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            "delete element ip kube-proxy cluster-ips { 10.96.0.20 }",
            "delete element ip kube-proxy hairpin-endpoints { 10.244.0.5 . 10.244.0.5 }",
            "delete element ip kube-proxy hairpin-endpoints { 10.244.0.6 . 10.244.0.6 }",
            "delete element ip kube-proxy service-endpoints { 10.96.0.20 . tcp . 80 . 0 }",
            "delete element ip kube-proxy service-endpoints { 10.96.0.20 . tcp . 80 . 1 }",
            "delete element ip kube-proxy service-ips { 10.96.0.20 . tcp . 80 }",
        ],
        "{text}"
    );
}

#[test]
fn a_full_resync_does_not_rewrite_fixed_chains() {
    let web = service("web", "10.96.0.20", &[("", 80, "80")]);
    let eps = slice("web", &[("", 80)], &[ready("10.244.0.5")]);
    let rules = build_ruleset(&config(), [&web], [&eps]);
    let recreate = full_transaction(&rules, None, true);
    assert!(recreate.contains("add rule ip kube-proxy balance-1 dnat"));
    let resync = full_transaction(&rules, Some(&rules), false);
    assert!(!resync.contains("balance-1 dnat"), "{resync}");
    assert!(!resync.contains("flush chain ip kube-proxy balance-1"));
    assert!(resync.contains("flush map ip kube-proxy service-endpoints"));
    assert!(resync.contains("flush chain ip kube-proxy services"));
}

#[test]
fn object_names_are_stable_legal_identifiers() {
    let name = object_name("service", "default/web/tcp/http");
    assert_eq!(name, object_name("service", "default/web/tcp/http"));
    let hash = &name["service-".len().."service-".len() + 8];
    assert!(hash
        .chars()
        .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
    assert!(name.ends_with("-default/web/tcp/http"));
}

fn local_config() -> RuleConfig {
    RuleConfig {
        node_name: Some("node-a".into()),
        ..config()
    }
}

/// `web` with `policy` for external traffic, a NodePort, an external IP and a health check port.
fn local_service(external: &str, internal: &str) -> Service {
    let mut svc = service("web", "10.96.0.20", &[("http", 80, "8080")]);
    if let Some(spec) = svc.spec.as_mut() {
        spec.type_ = Some("LoadBalancer".into());
        spec.external_ips = Some(vec!["192.0.2.50".into()]);
        spec.external_traffic_policy = Some(external.into());
        spec.internal_traffic_policy = Some(internal.into());
        spec.health_check_node_port = Some(32000);
        if let Some(port) = spec.ports.as_mut().and_then(|p| p.first_mut()) {
            port.node_port = Some(30080);
        }
    }
    svc
}

/// Endpoints `(ip, node)`, all ready.
fn slice_on_nodes(endpoints: &[(&str, &str)]) -> EndpointSlice {
    let ips: Vec<_> = endpoints.iter().map(|(ip, _)| ready(ip)).collect();
    let mut eps = slice("web", &[("http", 8080)], &ips);
    for (endpoint, (_, node)) in eps.endpoints.iter_mut().zip(endpoints) {
        endpoint.node_name = Some(node.to_string());
    }
    eps
}

#[test]
fn node_ports_answer_on_the_node_addresses_and_localhost_once_the_node_is_known() {
    let rules = build_ruleset(&config(), [], []);
    assert_eq!(
        rules.chains["services"].rules[1],
        "fib daddr type local meta l4proto . th dport vmap @service-nodeports"
    );
    assert!(rules.collections["nodeport-ips"].elements.is_empty());

    let with_node = RuleConfig {
        node_ips: vec!["192.0.2.2".parse().expect("ip")],
        ..config()
    };
    let rules = build_ruleset(&with_node, [], []);
    assert_eq!(
        rules.chains["services"].rules[1],
        "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"
    );
    assert_eq!(
        rules.chains["nodeport-endpoints-check"].rules,
        vec!["ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"]
    );
    let text = full_transaction(&rules, None, true);
    assert!(
        text.contains("add element ip kube-proxy nodeport-ips { 127.0.0.1, 192.0.2.2 }")
            || (text.contains("nodeport-ips { 127.0.0.1 }")
                && text.contains("nodeport-ips { 192.0.2.2 }")),
        "{text}"
    );
    // Loopback DNAT needs route_localnet; martians to 127/8 from outside are dropped.
    assert_eq!(
        rules.chains["filter-input"].rules[0],
        "iifname != \"lo\" ip saddr != 127.0.0.0/8 ip daddr 127.0.0.0/8 ct state new drop"
    );
}

#[test]
fn unallocated_service_ips_are_dropped() {
    let rules = build_ruleset(&config(), [], []);
    assert_eq!(
        rules.chains["cluster-ips-check"].rules,
        vec!["ip daddr @cluster-ips reject"]
    );
    let with_range = RuleConfig {
        service_cidr: Some("10.96.0.0/12".into()),
        ..config()
    };
    let rules = build_ruleset(&with_range, [], []);
    assert_eq!(
        rules.chains["cluster-ips-check"].rules,
        vec!["ip daddr @cluster-ips reject", "ip daddr 10.96.0.0/12 drop"]
    );
    let text = full_transaction(&rules, None, true);
    assert!(text.contains("add rule ip kube-proxy cluster-ips-check ip daddr 10.96.0.0/12 drop\n"));
}

#[test]
fn external_traffic_policy_local_sends_outside_traffic_to_local_endpoints_unmasqueraded() {
    let svc = local_service("Local", "Cluster");
    let eps = slice_on_nodes(&[("10.244.0.5", "node-a"), ("10.244.1.5", "node-b")]);
    let rules = build_ruleset(&local_config(), [&svc], [&eps]);
    let suffix = "default/web/tcp/http";
    let (service_chain, local_chain, external_chain) = (
        object_name("service", suffix),
        object_name("local", suffix),
        object_name("external", suffix),
    );
    let local_ep = object_name("endpoint", &format!("{suffix}__10.244.0.5/8080"));
    let remote_ep = object_name("endpoint", &format!("{suffix}__10.244.1.5/8080"));
    assert_eq!(
        rules.chains[&external_chain].rules,
        vec![
            format!("ip saddr 10.244.0.0/16 goto {service_chain}"),
            "fib saddr type local jump mark-for-masquerade".to_string(),
            format!("fib saddr type local goto {service_chain}"),
            format!("goto {local_chain}"),
        ]
    );
    assert_eq!(
        rules.chains[&local_chain].rules,
        vec![format!(
            "numgen random mod 1 vmap {{ 0 : goto {local_ep} }}"
        )]
    );
    assert!(rules.chains[&service_chain].rules[1].contains(&format!("1 : goto {remote_ep}")));
    let ips = &rules.collections["service-ips"].elements;
    assert_eq!(
        ips["10.96.0.20 . tcp . 80"],
        Some(format!("goto {service_chain}"))
    );
    assert_eq!(
        ips["192.0.2.50 . tcp . 80"],
        Some(format!("goto {external_chain}"))
    );
    assert_eq!(
        rules.collections["service-nodeports"].elements["tcp . 30080"],
        Some(format!("goto {external_chain}"))
    );
    assert_eq!(
        rules.health_checks[&32000],
        crate::model::HealthCheck {
            namespace: "default".into(),
            name: "web".into(),
            local_endpoints: 1
        }
    );
    assert_eq!((rules.no_local_internal, rules.no_local_external), (0, 0));
    let text = full_transaction(&rules, None, true);
    assert!(text.contains(&format!(
        "add rule ip kube-proxy {external_chain} goto {local_chain}\n"
    )));

    // With externalTrafficPolicy Cluster outside traffic is masqueraded to every endpoint.
    let cluster = local_service("Cluster", "Cluster");
    let rules = build_ruleset(&local_config(), [&cluster], [&eps]);
    assert_eq!(
        rules.chains[&external_chain].rules,
        vec![
            "jump mark-for-masquerade".to_string(),
            format!("goto {service_chain}")
        ]
    );
    assert!(!rules.chains.contains_key(&local_chain));
    assert!(rules.health_checks.is_empty());
}

#[test]
fn external_traffic_policy_local_without_local_endpoints_drops_outside_traffic() {
    let svc = local_service("Local", "Cluster");
    let eps = slice_on_nodes(&[("10.244.1.5", "node-b")]);
    let rules = build_ruleset(&local_config(), [&svc], [&eps]);
    let suffix = "default/web/tcp/http";
    let external_chain = object_name("external", suffix);
    let service_chain = object_name("service", suffix);
    // Pods and the node still reach the remote endpoint; anything else falls through.
    assert_eq!(
        rules.chains[&external_chain].rules.last(),
        Some(&format!("fib saddr type local goto {service_chain}"))
    );
    let drop = Some("drop".to_string());
    assert_eq!(
        rules.collections["no-endpoint-nodeports"].elements["tcp . 30080"],
        drop
    );
    assert_eq!(
        rules.collections["no-endpoint-services"].elements["192.0.2.50 . tcp . 80"],
        drop
    );
    assert!(!rules.collections["no-endpoint-services"]
        .elements
        .contains_key("10.96.0.20 . tcp . 80"));
    assert_eq!(rules.health_checks[&32000].local_endpoints, 0);
    assert_eq!(rules.no_local_external, 1);
}

#[test]
fn internal_traffic_policy_local_keeps_cluster_ip_traffic_on_the_node() {
    let mut svc = service("web", "10.96.0.20", &[("http", 80, "8080")]);
    if let Some(spec) = svc.spec.as_mut() {
        spec.internal_traffic_policy = Some("Local".into());
    }
    let eps = slice_on_nodes(&[("10.244.0.5", "node-a"), ("10.244.1.5", "node-b")]);
    let rules = build_ruleset(&local_config(), [&svc], [&eps]);
    let suffix = "default/web/tcp/http";
    let local_chain = object_name("local", suffix);
    let local_ep = object_name("endpoint", &format!("{suffix}__10.244.0.5/8080"));
    assert_eq!(
        rules.collections["service-ips"].elements["10.96.0.20 . tcp . 80"],
        Some(format!("goto {local_chain}"))
    );
    assert_eq!(
        rules.chains[&local_chain].rules,
        vec![
            "ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
                .to_string(),
            format!("numgen random mod 1 vmap {{ 0 : goto {local_ep} }}"),
        ]
    );

    // No endpoint on this node: ClusterIP traffic is dropped, not sent elsewhere.
    let remote = slice_on_nodes(&[("10.244.1.5", "node-b")]);
    let rules = build_ruleset(&local_config(), [&svc], [&remote]);
    assert!(rules.collections["service-ips"].elements.is_empty());
    assert_eq!(
        rules.collections["no-endpoint-services"].elements["10.96.0.20 . tcp . 80"],
        Some("drop".to_string())
    );
    assert_eq!(rules.no_local_internal, 1);
    let text = full_transaction(&rules, None, true);
    assert!(text.contains(
        "add element ip kube-proxy no-endpoint-services { 10.96.0.20 . tcp . 80 : drop }"
    ));
}

#[test]
fn topology_hints_pick_the_endpoints_of_the_node_zone() {
    use k8s_openapi::api::discovery::v1::{EndpointHints, ForZone};
    let mut svc = service("web", "10.96.0.20", &[("http", 80, "8080")]);
    svc.metadata.annotations = Some(BTreeMap::from([(
        "service.kubernetes.io/topology-mode".to_string(),
        "Auto".to_string(),
    )]));
    let mut eps = slice_on_nodes(&[("10.244.0.5", "node-a"), ("10.244.1.5", "node-b")]);
    for (endpoint, zone) in eps.endpoints.iter_mut().zip(["zone-a", "zone-b"]) {
        endpoint.hints = Some(EndpointHints {
            for_zones: Some(vec![ForZone { name: zone.into() }]),
            ..Default::default()
        });
    }
    let mut zoned = local_config();
    zoned
        .node_labels
        .insert(ZONE_LABEL.to_string(), "zone-b".to_string());
    let rules = build_ruleset(&zoned, [&svc], [&eps]);
    assert_eq!(
        flat_endpoints(&rules, "10.96.0.20 . tcp . 80"),
        vec!["10.244.1.5 . 8080"]
    );
    // Without the annotation every endpoint is used.
    svc.metadata.annotations = None;
    let rules = build_ruleset(&zoned, [&svc], [&eps]);
    assert_eq!(
        flat_endpoints(&rules, "10.96.0.20 . tcp . 80"),
        vec!["10.244.0.5 . 8080", "10.244.1.5 . 8080"]
    );
}
