//! The in-memory DNS data of the cluster domain, rebuilt from Services and EndpointSlices.
//!
//! Records follow the Kubernetes DNS specification (what CoreDNS serves):
//! - `<svc>.<ns>.svc.<zone>` A -> ClusterIP; for headless services, A -> every ready endpoint;
//!   ExternalName services get a CNAME.
//! - `<hostname>.<svc>.<ns>.svc.<zone>` A for headless endpoints that have a hostname, and
//!   `<a-b-c-d>.<svc>.<ns>.svc.<zone>` for those that do not.
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>` SRV for named ports.
//! - PTR from `in-addr.arpa` names of ClusterIPs (and hostnamed endpoints) back to their names.
//!
//! Names are stored lowercased; callers lowercase the question before looking it up.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::{A, CNAME, PTR, SRV};
use hickory_proto::rr::{Name, RData};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The EndpointSlice label naming the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Why the index could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// `--cluster-domain` is not a valid DNS name.
    #[error("invalid cluster domain {domain:?}: {source}")]
    Domain {
        /// The domain given.
        domain: String,
        /// The parse error.
        #[source]
        source: hickory_proto::ProtoError,
    },
}

/// All records of the cluster zone, by lowercased owner name.
#[derive(Debug, Clone)]
pub struct Index {
    zone: Name,
    records: HashMap<Name, Vec<RData>>,
    names: HashSet<Name>,
}

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(text).ok().map(|n| n.to_lowercase())
}

/// An endpoint a headless service answers with.
struct HeadlessEndpoint {
    ip: Ipv4Addr,
    hostname: Option<String>,
}

impl Index {
    /// An empty index for `domain` (e.g. `cluster.local`).
    pub fn new(domain: &str) -> Result<Self, IndexError> {
        let trimmed = domain.trim_end_matches('.');
        let zone = Name::from_ascii(format!("{trimmed}."))
            .map_err(|source| IndexError::Domain {
                domain: domain.to_string(),
                source,
            })?
            .to_lowercase();
        let mut names = HashSet::new();
        names.insert(zone.clone());
        Ok(Self {
            zone,
            records: HashMap::new(),
            names,
        })
    }

    /// Builds the index from the current objects.
    pub fn build<'a>(
        domain: &str,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Result<Self, IndexError> {
        let mut index = Self::new(domain)?;
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            if slice.address_type != "IPv4" {
                continue;
            }
            let service = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(namespace), Some(service)) = (slice.metadata.namespace.as_deref(), service)
            {
                by_service
                    .entry((namespace, service.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        for service in services {
            let (Some(namespace), Some(svc)) = (
                service.metadata.namespace.as_deref(),
                service.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let slices = by_service
                .get(&(namespace, svc))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            index.add_service(namespace, svc, service, slices);
        }
        Ok(index)
    }

    /// The zone apex, e.g. `cluster.local.`.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// The records at `name` (lowercased), if any.
    pub fn records(&self, name: &Name) -> &[RData] {
        self.records.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `name` (lowercased) exists, possibly as an empty non-terminal such as
    /// `default.svc.cluster.local.`.
    pub fn exists(&self, name: &Name) -> bool {
        self.names.contains(name)
    }

    /// Whether `name` (lowercased) has PTR data here (reverse names live outside the zone).
    pub fn has_reverse(&self, name: &Name) -> bool {
        self.records.contains_key(name)
    }

    fn insert(&mut self, owner: Name, data: RData) {
        if self.zone.zone_of(&owner) {
            let mut ancestor = owner.clone();
            while ancestor.num_labels() > self.zone.num_labels() {
                self.names.insert(ancestor.clone());
                ancestor = ancestor.base_name();
            }
        }
        let entry = self.records.entry(owner).or_default();
        if !entry.contains(&data) {
            entry.push(data);
        }
    }

    fn add_service(
        &mut self,
        namespace: &str,
        svc: &str,
        service: &Service,
        slices: &[&EndpointSlice],
    ) {
        let zone = self.zone.to_ascii();
        let Some(fqdn) = name(&format!("{svc}.{namespace}.svc.{zone}")) else {
            return;
        };
        let Some(spec) = service.spec.as_ref() else {
            return;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = spec
                .external_name
                .as_deref()
                .and_then(|t| Name::from_ascii(format!("{}.", t.trim_end_matches('.'))).ok())
            {
                self.insert(fqdn, RData::CNAME(CNAME(target)));
            }
            return;
        }
        let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
        if cluster_ip == "None" {
            let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
            self.add_headless(&fqdn, slices, publish_not_ready);
            return;
        }
        let Ok(ip) = cluster_ip.parse::<Ipv4Addr>() else {
            return;
        };
        self.insert(fqdn.clone(), RData::A(A(ip)));
        self.insert(Name::from(ip).to_lowercase(), RData::PTR(PTR(fqdn.clone())));
        for port in spec.ports.iter().flatten() {
            let (Some(port_name), Ok(number)) = (port.name.as_deref(), u16::try_from(port.port))
            else {
                continue;
            };
            let proto = port
                .protocol
                .as_deref()
                .unwrap_or("TCP")
                .to_ascii_lowercase();
            if let Some(srv_name) = name(&format!("_{port_name}._{proto}.{}", fqdn.to_ascii())) {
                self.insert(srv_name, RData::SRV(SRV::new(0, 100, number, fqdn.clone())));
            }
        }
    }

    fn add_headless(&mut self, fqdn: &Name, slices: &[&EndpointSlice], publish_not_ready: bool) {
        let mut endpoints = Vec::new();
        let mut ports: BTreeSet<(String, String, u16)> = BTreeSet::new();
        for slice in slices {
            for port in slice.ports.iter().flatten() {
                if let (Some(port_name), Some(number)) = (
                    port.name.as_deref().filter(|n| !n.is_empty()),
                    port.port.and_then(|p| u16::try_from(p).ok()),
                ) {
                    let proto = port
                        .protocol
                        .as_deref()
                        .unwrap_or("TCP")
                        .to_ascii_lowercase();
                    ports.insert((port_name.to_string(), proto, number));
                }
            }
            for endpoint in &slice.endpoints {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                if !ready && !publish_not_ready {
                    continue;
                }
                for address in &endpoint.addresses {
                    if let Ok(ip) = address.parse::<Ipv4Addr>() {
                        endpoints.push(HeadlessEndpoint {
                            ip,
                            hostname: endpoint.hostname.clone(),
                        });
                    }
                }
            }
        }
        let base = fqdn.to_ascii();
        let mut targets = Vec::new();
        for endpoint in &endpoints {
            self.insert(fqdn.clone(), RData::A(A(endpoint.ip)));
            let label = endpoint
                .hostname
                .clone()
                .unwrap_or_else(|| endpoint.ip.to_string().replace('.', "-"));
            let Some(host) = name(&format!("{label}.{base}")) else {
                continue;
            };
            self.insert(host.clone(), RData::A(A(endpoint.ip)));
            if endpoint.hostname.is_some() {
                self.insert(
                    Name::from(endpoint.ip).to_lowercase(),
                    RData::PTR(PTR(host.clone())),
                );
            }
            targets.push(host);
        }
        for (port_name, proto, number) in ports {
            let Some(srv_name) = name(&format!("_{port_name}._{proto}.{base}")) else {
                continue;
            };
            for target in &targets {
                self.insert(
                    srv_name.clone(),
                    RData::SRV(SRV::new(0, 100, number, target.clone())),
                );
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Small builders of Services and EndpointSlices for the DNS tests.

    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{
        Endpoint, EndpointConditions, EndpointPort, EndpointSlice,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::SERVICE_NAME_LABEL;

    pub fn service(ns: &str, name: &str, cluster_ip: &str, ports: &[(&str, i32, &str)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(cluster_ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(port_name, port, proto)| ServicePort {
                            name: (!port_name.is_empty()).then(|| port_name.to_string()),
                            port: *port,
                            protocol: Some(proto.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Endpoints are `(ip, hostname, ready)`.
    pub fn slice(
        ns: &str,
        service: &str,
        ports: &[(&str, i32)],
        endpoints: &[(&str, Option<&str>, bool)],
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{service}-x")),
                namespace: Some(ns.into()),
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
                        name: Some(name.to_string()),
                        port: Some(*port),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            endpoints: endpoints
                .iter()
                .map(|(ip, hostname, ready)| Endpoint {
                    addresses: vec![ip.to_string()],
                    hostname: hostname.map(str::to_string),
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{service, slice};
    use super::*;

    fn n(text: &str) -> Name {
        Name::from_ascii(text).expect("valid name").to_lowercase()
    }

    #[test]
    fn cluster_ip_service_has_a_ptr_and_srv_records() {
        let web = service("default", "web", "10.96.0.20", &[("http", 80, "TCP")]);
        let index = Index::build("cluster.local", [&web], []).expect("index");
        assert_eq!(
            index.records(&n("web.default.svc.cluster.local.")),
            &[RData::A(A(Ipv4Addr::new(10, 96, 0, 20)))]
        );
        assert_eq!(
            index.records(&n("20.0.96.10.in-addr.arpa.")),
            &[RData::PTR(PTR(n("web.default.svc.cluster.local.")))]
        );
        assert_eq!(
            index.records(&n("_http._tcp.web.default.svc.cluster.local.")),
            &[RData::SRV(SRV::new(
                0,
                100,
                80,
                n("web.default.svc.cluster.local.")
            ))]
        );
        assert!(index.exists(&n("default.svc.cluster.local.")));
        assert!(index.exists(&n("svc.cluster.local.")));
        assert!(!index.exists(&n("other.default.svc.cluster.local.")));
    }

    #[test]
    fn headless_service_answers_with_ready_endpoints_only() {
        let db = service("data", "db", "None", &[]);
        let eps = slice(
            "data",
            "db",
            &[("pg", 5432)],
            &[
                ("10.244.0.5", Some("db-0"), true),
                ("10.244.0.6", None, true),
                ("10.244.0.7", Some("db-2"), false),
            ],
        );
        let index = Index::build("cluster.local", [&db], [&eps]).expect("index");
        let mut ips: Vec<String> = index
            .records(&n("db.data.svc.cluster.local."))
            .iter()
            .map(|r| r.to_string())
            .collect();
        ips.sort();
        assert_eq!(ips, vec!["10.244.0.5", "10.244.0.6"]);
        assert_eq!(
            index.records(&n("db-0.db.data.svc.cluster.local.")),
            &[RData::A(A(Ipv4Addr::new(10, 244, 0, 5)))]
        );
        assert!(index.exists(&n("10-244-0-6.db.data.svc.cluster.local.")));
        assert!(!index.exists(&n("db-2.db.data.svc.cluster.local.")));
        assert_eq!(
            index
                .records(&n("_pg._tcp.db.data.svc.cluster.local."))
                .len(),
            2
        );
    }

    #[test]
    fn external_name_service_is_a_cname() {
        let mut ext = service("default", "ext", "", &[]);
        if let Some(spec) = ext.spec.as_mut() {
            spec.type_ = Some("ExternalName".into());
            spec.external_name = Some("example.org".into());
        }
        let index = Index::build("cluster.local", [&ext], []).expect("index");
        assert_eq!(
            index.records(&n("ext.default.svc.cluster.local.")),
            &[RData::CNAME(CNAME(n("example.org.")))]
        );
    }
}
