//! kube-dns registers itself: the `kube-dns` Service in `kube-system` (ClusterIP
//! `--cluster-dns-ip`, no selector) and the EndpointSlice `kube-dns-self` pointing at
//! `--advertise-address:--dns-port`, so that kube-proxy DNATs the DNS VIP to this process.
//! Server-side apply is not available yet, so this is get + create or replace.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::PostParams;
use kube::{Api, Client};

/// Namespace of the DNS service.
pub const NAMESPACE: &str = "kube-system";
/// Name of the DNS service.
pub const SERVICE: &str = "kube-dns";
/// Name of the EndpointSlice kube-dns manages.
pub const SLICE: &str = "kube-dns-self";
/// The `endpointslice.kubernetes.io/managed-by` value of that slice.
pub const MANAGED_BY: &str = "kube-dns";

/// Why self-registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Reading the existing Service failed.
    #[error("reading service {NAMESPACE}/{SERVICE}: {0}")]
    GetService(#[source] kube::Error),
    /// Creating or replacing the Service failed.
    #[error("writing service {NAMESPACE}/{SERVICE}: {0}")]
    WriteService(#[source] kube::Error),
    /// Reading the existing EndpointSlice failed.
    #[error("reading endpointslice {NAMESPACE}/{SLICE}: {0}")]
    GetSlice(#[source] kube::Error),
    /// Creating or replacing the EndpointSlice failed.
    #[error("writing endpointslice {NAMESPACE}/{SLICE}: {0}")]
    WriteSlice(#[source] kube::Error),
}

/// The Service kube-dns wants.
pub fn desired_service(cluster_ip: Ipv4Addr, dns_port: u16) -> Service {
    let port = |name: &str, protocol: &str| ServicePort {
        name: Some(name.to_string()),
        port: 53,
        protocol: Some(protocol.to_string()),
        target_port: Some(IntOrString::Int(i32::from(dns_port))),
        ..Default::default()
    };
    Service {
        metadata: ObjectMeta {
            name: Some(SERVICE.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(BTreeMap::from([
                ("k8s-app".to_string(), "kube-dns".to_string()),
                ("kubernetes.io/name".to_string(), "KubeDNS".to_string()),
            ])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(cluster_ip.to_string()),
            cluster_ips: Some(vec![cluster_ip.to_string()]),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The EndpointSlice kube-dns wants.
pub fn desired_slice(address: Ipv4Addr, dns_port: u16) -> EndpointSlice {
    let port = |name: &str, protocol: &str| EndpointPort {
        name: Some(name.to_string()),
        port: Some(i32::from(dns_port)),
        protocol: Some(protocol.to_string()),
        ..Default::default()
    };
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(SLICE.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(BTreeMap::from([
                (
                    "kubernetes.io/service-name".to_string(),
                    SERVICE.to_string(),
                ),
                (
                    "endpointslice.kubernetes.io/managed-by".to_string(),
                    MANAGED_BY.to_string(),
                ),
                ("k8s-app".to_string(), "kube-dns".to_string()),
            ])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![address.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            ..Default::default()
        }],
        ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
    }
}

/// Creates the Service, or replaces it when it differs (keeping its resourceVersion).
async fn ensure_service(api: &Api<Service>, desired: Service) -> Result<(), RegisterError> {
    match api
        .get_opt(SERVICE)
        .await
        .map_err(RegisterError::GetService)?
    {
        None => {
            api.create(&PostParams::default(), &desired)
                .await
                .map_err(RegisterError::WriteService)?;
            tracing::info!("created service {NAMESPACE}/{SERVICE}");
        }
        Some(current) => {
            let same = current
                .spec
                .as_ref()
                .map(|s| (&s.cluster_ip, &s.ports, &s.selector))
                == desired
                    .spec
                    .as_ref()
                    .map(|s| (&s.cluster_ip, &s.ports, &s.selector));
            if !same {
                let mut replacement = desired;
                replacement.metadata.resource_version = current.metadata.resource_version;
                api.replace(SERVICE, &PostParams::default(), &replacement)
                    .await
                    .map_err(RegisterError::WriteService)?;
                tracing::info!("replaced service {NAMESPACE}/{SERVICE}");
            }
        }
    }
    Ok(())
}

/// Creates the EndpointSlice, or replaces it when it differs.
async fn ensure_slice(
    api: &Api<EndpointSlice>,
    desired: EndpointSlice,
) -> Result<(), RegisterError> {
    match api.get_opt(SLICE).await.map_err(RegisterError::GetSlice)? {
        None => {
            api.create(&PostParams::default(), &desired)
                .await
                .map_err(RegisterError::WriteSlice)?;
            tracing::info!("created endpointslice {NAMESPACE}/{SLICE}");
        }
        Some(current) => {
            let same = current.endpoints == desired.endpoints
                && current.ports == desired.ports
                && current.metadata.labels == desired.metadata.labels;
            if !same {
                let mut replacement = desired;
                replacement.metadata.resource_version = current.metadata.resource_version;
                api.replace(SLICE, &PostParams::default(), &replacement)
                    .await
                    .map_err(RegisterError::WriteSlice)?;
                tracing::info!("replaced endpointslice {NAMESPACE}/{SLICE}");
            }
        }
    }
    Ok(())
}

/// Ensures both objects once.
pub async fn ensure(
    client: &Client,
    cluster_ip: Ipv4Addr,
    address: Ipv4Addr,
    dns_port: u16,
) -> Result<(), RegisterError> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    ensure_service(&services, desired_service(cluster_ip, dns_port)).await?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    ensure_slice(&slices, desired_slice(address, dns_port)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_objects_follow_the_cluster_contract() {
        let service = desired_service(Ipv4Addr::new(10, 96, 0, 10), 10053);
        let json = serde_json::to_value(&service).expect("serialize");
        assert_eq!(json["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(json["spec"]["ports"][0]["name"], "dns");
        assert_eq!(json["spec"]["ports"][0]["protocol"], "UDP");
        assert_eq!(json["spec"]["ports"][1]["name"], "dns-tcp");
        assert_eq!(json["spec"]["ports"][1]["targetPort"], 10053);
        assert!(json["spec"].get("selector").is_none());
        assert_eq!(json["metadata"]["labels"]["k8s-app"], "kube-dns");

        let slice = desired_slice(Ipv4Addr::new(192, 0, 2, 2), 10053);
        let json = serde_json::to_value(&slice).expect("serialize");
        assert_eq!(
            json["metadata"]["labels"]["kubernetes.io/service-name"],
            "kube-dns"
        );
        assert_eq!(
            json["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "kube-dns"
        );
        assert_eq!(json["endpoints"][0]["addresses"][0], "192.0.2.2");
        assert_eq!(json["ports"][1]["port"], 10053);
    }
}
