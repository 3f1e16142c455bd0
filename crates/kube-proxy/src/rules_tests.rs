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

#[test]
fn cluster_ip_with_two_endpoints_load_balances_between_them() {
    let svc = service("web", "10.96.0.20", &[("http", 80, "8080")]);
    let eps = slice(
        "web",
        &[("http", 8080)],
        &[ready("10.244.0.5"), ready("10.244.0.6")],
    );
    let rules = build_ruleset(&config(), [&svc], [&eps]);

    let (name, service_rules) = service_chain_rules(&rules, "default/web/tcp/http");
    assert!(name.starts_with("service-"), "{name}");
    let ep5 = object_name("endpoint", "default/web/tcp/http__10.244.0.5/8080");
    let ep6 = object_name("endpoint", "default/web/tcp/http__10.244.0.6/8080");
    assert_eq!(
        service_rules,
        &vec![
            "ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
                .to_string(),
            format!("numgen random mod 2 vmap {{ 0 : goto {ep5}, 1 : goto {ep6} }}"),
        ]
    );
    assert_eq!(
        rules.chains[&ep5].rules,
        vec![
            "ip saddr 10.244.0.5 jump mark-for-masquerade".to_string(),
            "meta l4proto tcp dnat to 10.244.0.5:8080".to_string(),
        ]
    );
    assert!(rules.collections["cluster-ips"]
        .elements
        .contains_key("10.96.0.20"));
    let text = full_transaction(&rules, None, true);
    assert!(text.contains(&format!(
        "add element ip kube-proxy service-ips {{ 10.96.0.20 . tcp . 80 : goto {name} }}"
    )));
    assert!(text.contains(&format!("add chain ip kube-proxy {ep6}\n")));
    assert!(text.contains(
        "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100; }"
    ));
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
    let (_, service_rules) = service_chain_rules(&rules, "default/web/tcp/80");
    assert!(service_rules[1].starts_with("numgen random mod 1 vmap"));
    assert!(!rules.chains.keys().any(|n| n.contains("10.244.0.6")));
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
    assert!(rules.chains.keys().any(|n| n.ends_with("__10.244.0.6/80")));
    assert!(!rules.chains.keys().any(|n| n.contains("10.244.0.7")));
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
    let endpoint = object_name("endpoint", "default/web/tcp/http__10.244.0.5/8080");
    assert!(rules.chains[&endpoint]
        .rules
        .contains(&"meta l4proto tcp dnat to 10.244.0.5:8080".to_string()));
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

    let text = incremental_transaction(&after, &before);
    let service_chain = object_name("service", "default/web/tcp/80");
    let new_endpoint = object_name("endpoint", "default/web/tcp/80__10.244.0.6/80");
    let old_endpoint = object_name("endpoint", "default/web/tcp/80__10.244.0.5/80");
    let expected = format!(
        "add chain ip kube-proxy {new_endpoint}\n\
         add rule ip kube-proxy {new_endpoint} ip saddr 10.244.0.6 jump mark-for-masquerade\n\
         add rule ip kube-proxy {new_endpoint} meta l4proto tcp dnat to 10.244.0.6:80\n\
         flush chain ip kube-proxy {service_chain}\n\
         add rule ip kube-proxy {service_chain} ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n\
         add rule ip kube-proxy {service_chain} numgen random mod 2 vmap {{ 0 : goto {old_endpoint}, 1 : goto {new_endpoint} }}\n"
    );
    assert_eq!(text, expected);
    assert!(!text.contains("api"));

    // Deleting the service removes its map element, then its chains.
    let gone = build_ruleset(&config(), [&api], [&api_eps]);
    let text = incremental_transaction(&gone, &after);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    assert_eq!(
        lines[0],
        "delete element ip kube-proxy cluster-ips { 10.96.0.20 }"
    );
    assert_eq!(
        lines[1],
        "delete element ip kube-proxy service-ips { 10.96.0.20 . tcp . 80 }"
    );
    for (i, chain) in [&old_endpoint, &new_endpoint, &service_chain]
        .iter()
        .enumerate()
    {
        let flush = format!("flush chain ip kube-proxy {chain}");
        let delete = format!("delete chain ip kube-proxy {chain}");
        assert!(lines[2..5].contains(&flush.as_str()), "{i}: {text}");
        assert!(lines[5..8].contains(&delete.as_str()), "{i}: {text}");
    }
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
