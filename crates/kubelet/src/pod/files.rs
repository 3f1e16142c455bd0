//! The per-pod files the kubelet writes and bind-mounts into every container: `/etc/hosts`,
//! `/etc/hostname` and `/etc/resolv.conf`, with upstream content.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

/// DNS settings of the node (`--cluster-dns`, `--cluster-domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Cluster DNS server addresses.
    pub cluster_dns: Vec<IpAddr>,
    /// Cluster domain, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// The host's own resolv.conf content (for `dnsPolicy: Default`).
    pub host_resolv_conf: String,
}

/// The pod's hostname: `spec.hostname` or the pod name, at most 63 characters.
pub fn hostname(pod: &Pod) -> String {
    let spec_hostname = pod.spec.as_ref().and_then(|s| s.hostname.clone());
    let name = spec_hostname
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let truncated: String = name.chars().take(63).collect();
    truncated.trim_end_matches(['-', '.']).to_string()
}

/// The `/etc/hosts` of a pod with address `ip` (none for a pod without one yet).
pub fn hosts_file(pod: &Pod, ip: Option<IpAddr>, cluster_domain: &str) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file.\n");
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    let host = hostname(pod);
    if let Some(ip) = ip {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        match pod.spec.as_ref().and_then(|s| s.subdomain.as_deref()) {
            Some(sub) if !sub.is_empty() => out.push_str(&format!(
                "{ip}\t{host}.{sub}.{namespace}.svc.{cluster_domain}\t{host}\n"
            )),
            _ => out.push_str(&format!("{ip}\t{host}\n")),
        }
    }
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    out
}

/// The `/etc/resolv.conf` of a pod, following its `dnsPolicy` and `dnsConfig`.
pub fn resolv_conf(pod: &Pod, dns: &DnsSettings) -> String {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.clone())
        .unwrap_or_else(|| "ClusterFirst".into());
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (mut nameservers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        match policy.as_str() {
            "None" => (vec![], vec![], vec![]),
            "Default" => parse_resolv_conf(&dns.host_resolv_conf),
            "ClusterFirst" if host_network => parse_resolv_conf(&dns.host_resolv_conf),
            _ if dns.cluster_dns.is_empty() => parse_resolv_conf(&dns.host_resolv_conf),
            _ => {
                let domain = &dns.cluster_domain;
                (
                    dns.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
                    vec![
                        format!("{namespace}.svc.{domain}"),
                        format!("svc.{domain}"),
                        domain.clone(),
                    ],
                    vec!["ndots:5".into()],
                )
            }
        };
    if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
        for ns in config.nameservers.iter().flatten() {
            if !nameservers.contains(ns) {
                nameservers.push(ns.clone());
            }
        }
        for search in config.searches.iter().flatten() {
            if !searches.contains(search) {
                searches.push(search.clone());
            }
        }
        for option in config.options.iter().flatten() {
            let Some(name) = option.name.clone() else {
                continue;
            };
            let rendered = match &option.value {
                Some(value) => format!("{name}:{value}"),
                None => name.clone(),
            };
            options.retain(|o| o.split(':').next() != Some(name.as_str()));
            options.push(rendered);
        }
    }
    let mut out = String::new();
    for ns in nameservers.iter().take(3) {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// Nameservers, search domains and options of a resolv.conf.
pub fn parse_resolv_conf(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut nameservers, mut searches, mut options) = (vec![], vec![], vec![]);
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => nameservers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => {
                searches = words.map(str::to_string).collect();
            }
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    (nameservers, searches, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HostAlias, PodSpec};
    use kube::api::ObjectMeta;

    fn pod(name: &str, namespace: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            ..Default::default()
        }
    }

    fn dns() -> DnsSettings {
        DnsSettings {
            cluster_dns: vec!["10.96.0.10".parse().expect("ip")],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: "nameserver 192.0.2.53\nsearch example.org\n".into(),
        }
    }

    #[test]
    fn resolv_conf_points_cluster_first_pods_at_cluster_dns() {
        assert_eq!(
            resolv_conf(&pod("web", "default"), &dns()),
            "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }

    #[test]
    fn resolv_conf_of_default_policy_is_the_hosts() {
        let mut p = pod("web", "default");
        if let Some(spec) = p.spec.as_mut() {
            spec.dns_policy = Some("Default".into());
        }
        assert_eq!(
            resolv_conf(&p, &dns()),
            "nameserver 192.0.2.53\nsearch example.org\n"
        );
    }

    #[test]
    fn hosts_file_maps_the_pod_ip_to_its_hostname() {
        let mut p = pod("web-1", "default");
        if let Some(spec) = p.spec.as_mut() {
            spec.host_aliases = Some(vec![HostAlias {
                ip: "1.2.3.4".into(),
                hostnames: Some(vec!["foo".into(), "bar".into()]),
            }]);
        }
        let hosts = hosts_file(&p, Some("10.244.0.5".parse().expect("ip")), "cluster.local");
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("\n10.244.0.5\tweb-1\n"));
        assert!(hosts.ends_with("# Entries added by HostAliases.\n1.2.3.4\tfoo\tbar\n"));
    }

    #[test]
    fn hosts_file_uses_the_subdomain_fqdn() {
        let mut p = pod("web-0", "ns1");
        if let Some(spec) = p.spec.as_mut() {
            spec.subdomain = Some("web".into());
            spec.hostname = Some("h".into());
        }
        let hosts = hosts_file(&p, Some("10.244.0.9".parse().expect("ip")), "cluster.local");
        assert!(hosts.contains("10.244.0.9\th.web.ns1.svc.cluster.local\th\n"));
    }
}
