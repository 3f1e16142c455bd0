//! The Endpoints controller: for every Service with a selector, an Endpoints object of the same
//! name listing ready pod addresses (`addresses`) and not-ready ones (`notReadyAddresses`) with
//! the Service's ports resolved against each pod (named target ports included).
//!
//! [`endpoint_pods`] (which pods back a Service, with their resolved ports and readiness) is
//! shared with the EndpointSlice controller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::podutil;
use crate::queue::WorkQueue;
use crate::runner;

/// Why Endpoints could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the Endpoints object failed.
    #[error("writing endpoints {name}: {source}")]
    Write {
        /// The Endpoints key.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// A port of a Service resolved against one pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResolvedPort {
    /// The Service port's name.
    pub name: String,
    /// The pod's port number.
    pub port: i32,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The Service port's appProtocol.
    pub app_protocol: Option<String>,
}

/// A pod that backs a Service.
#[derive(Debug, Clone)]
pub struct EndpointPod {
    /// The pod.
    pub pod: Arc<Pod>,
    /// Its IP.
    pub ip: String,
    /// The pod's `Ready` condition is true.
    pub ready: bool,
    /// The pod is being deleted.
    pub terminating: bool,
    /// The Service's ports that resolve on this pod, sorted.
    pub ports: Vec<ResolvedPort>,
}

/// The pod port a Service port targets, if the pod has it (upstream's `FindPort`).
pub fn resolve_port(pod: &Pod, service_port: &ServicePort) -> Option<i32> {
    match &service_port.target_port {
        None => Some(service_port.port),
        Some(IntOrString::Int(port)) => Some(*port),
        Some(IntOrString::String(name)) => {
            let protocol = service_port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The pods selected by `service` that can serve it, with readiness and resolved ports.
/// Terminating pods are included only when `include_terminating` (EndpointSlices show them).
pub fn endpoint_pods(
    service: &Service,
    pods: &[Arc<Pod>],
    include_terminating: bool,
) -> Vec<EndpointPod> {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut result: Vec<EndpointPod> = pods
        .iter()
        .filter(|pod| selector.iter().all(|(k, v)| pod.labels().get(k) == Some(v)))
        .filter_map(|pod| {
            let ip = pod
                .status
                .as_ref()?
                .pod_ip
                .clone()
                .filter(|ip| !ip.is_empty())?;
            let phase = podutil::phase(pod);
            if phase == "Succeeded" || phase == "Failed" {
                return None;
            }
            let terminating = podutil::is_terminating(pod);
            if terminating && !include_terminating && !publish_not_ready {
                return None;
            }
            let mut ports: Vec<ResolvedPort> = service_ports
                .iter()
                .filter_map(|sp| {
                    Some(ResolvedPort {
                        name: sp.name.clone().unwrap_or_default(),
                        port: resolve_port(pod, sp)?,
                        protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        app_protocol: sp.app_protocol.clone(),
                    })
                })
                .collect();
            ports.sort();
            Some(EndpointPod {
                pod: Arc::clone(pod),
                ip,
                ready: podutil::is_pod_ready(pod) || publish_not_ready,
                terminating,
                ports,
            })
        })
        .collect();
    result.sort_by(|a, b| {
        a.ip.cmp(&b.ip)
            .then_with(|| a.pod.name_any().cmp(&b.pod.name_any()))
    });
    result
}

/// A reference to the pod, as Endpoints and EndpointSlices carry it.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The pod's DNS hostname within a headless Service, when its subdomain names the Service.
pub fn hostname_for(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    (spec.subdomain.as_deref() == Some(service.name_any().as_str()))
        .then(|| spec.hostname.clone())
        .flatten()
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The subsets of the Endpoints object for `service` (addresses grouped by port set).
pub fn subsets(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let mut groups: BTreeMap<Vec<ResolvedPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    let no_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .is_none_or(|p| p.is_empty());
    for endpoint in endpoint_pods(service, pods, false) {
        // A pod none of whose ports resolve serves nothing, unless the Service has no ports.
        if endpoint.ports.is_empty() && !(no_ports && is_headless(service)) {
            continue;
        }
        let address = EndpointAddress {
            ip: endpoint.ip.clone(),
            hostname: hostname_for(&endpoint.pod, service),
            node_name: endpoint.pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_reference(&endpoint.pod)),
        };
        let group = groups.entry(endpoint.ports).or_default();
        if endpoint.ready {
            group.0.push(address);
        } else {
            group.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .into_iter()
                    .map(|p| EndpointPort {
                        name: (!p.name.is_empty()).then_some(p.name),
                        port: p.port,
                        protocol: Some(p.protocol),
                        app_protocol: p.app_protocol,
                    })
                    .collect()
            }),
        })
        .collect()
}

/// The Endpoints object a Service should have.
pub fn desired_endpoints(service: &Service, pods: &[Arc<Pod>]) -> Endpoints {
    let mut labels = service.labels().clone();
    if is_headless(service) {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let subsets = subsets(service, pods);
    Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.namespace(),
            labels: (!labels.is_empty()).then_some(labels),
            ..ObjectMeta::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

/// Services in the pod's namespace whose selector matches the pod.
pub fn services_for_pod(services: &Informer<Service>, pod: &Pod) -> Vec<ObjectKey> {
    let namespace = pod.namespace().unwrap_or_default();
    services
        .list_in(&namespace)
        .iter()
        .filter(|svc| {
            svc.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| sel.iter().all(|(k, v)| pod.labels().get(k) == Some(v)))
        })
        .map(|svc| ObjectKey::of(svc.as_ref()))
        .collect()
}

/// Keys for a pod change: the services matching the old and the new pod.
pub fn pod_change_keys(services: &Informer<Service>, change: &Change<Pod>) -> Vec<ObjectKey> {
    let mut keys = Vec::new();
    match change {
        Change::Applied { old, new } => {
            keys.extend(services_for_pod(services, new));
            if let Some(old) = old {
                for key in services_for_pod(services, old) {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
        }
        Change::Deleted(pod) => keys.extend(services_for_pod(services, pod)),
        Change::Resynced => {}
    }
    keys
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    services: Informer<Service>,
    pods: Informer<Pod>,
    endpoints: Informer<Endpoints>,
}

/// Starts the Endpoints controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        services: ctx.informers.get::<Service>(),
        pods: ctx.informers.get::<Pod>(),
        endpoints: ctx.informers.get::<Endpoints>(),
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.services.ready().await;
        controller.pods.ready().await;
        controller.endpoints.ready().await;
        runner::forward(&controller.services, queue.clone(), |change| match change {
            Change::Applied { new, .. } => vec![ObjectKey::of(new.as_ref())],
            Change::Deleted(old) => vec![ObjectKey::of(old.as_ref())],
            Change::Resynced => Vec::new(),
        });
        let services = controller.services.clone();
        runner::forward(&controller.pods, queue.clone(), move |change| {
            pod_change_keys(&services, change)
        });
        runner::forward(
            &controller.endpoints,
            queue.clone(),
            |change| match change {
                Change::Deleted(old) => vec![ObjectKey::of(old.as_ref())],
                _ => Vec::new(),
            },
        );
        let worker = controller.clone();
        runner::spawn_workers(
            "endpoint",
            queue,
            controller.ctx.settings.workers.endpoint,
            move |key| {
                let worker = worker.clone();
                async move { worker.reconcile(key).await }
            },
        );
    });
}

impl Controller {
    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let write_error = |source| Error::Write {
            name: key.to_string(),
            source,
        };
        let Some(service) = self.services.get(key.namespace(), &key.name) else {
            if self.endpoints.get(key.namespace(), &key.name).is_some() {
                match api.delete(&key.name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(source) => return Err(write_error(source)),
                }
            }
            return Ok(None);
        };
        if service
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_none()
        {
            return Ok(None);
        }
        let pods = self.pods.list_in(&key.namespace);
        let desired = desired_endpoints(&service, &pods);
        match self.endpoints.get(key.namespace(), &key.name) {
            None => match api.create(&PostParams::default(), &desired).await {
                Ok(_) => {}
                // Our cache is behind; the update path runs on the next event.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    return Ok(Some(Duration::from_secs(1)))
                }
                Err(source) => return Err(write_error(source)),
            },
            Some(existing) => {
                if existing.subsets == desired.subsets
                    && existing.metadata.labels == desired.metadata.labels
                {
                    return Ok(None);
                }
                let mut updated = (*existing).clone();
                updated.subsets = desired.subsets;
                updated.metadata.labels = desired.metadata.labels;
                api.replace(&key.name, &PostParams::default(), &updated)
                    .await
                    .map_err(write_error)?;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec,
    };

    pub(crate) fn service(selector: &[(&str, &str)], target: IntOrString) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("svc-uid".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(target),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                cluster_ip: Some("10.96.0.20".into()),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    pub(crate) fn pod(name: &str, ip: Option<&str>, ready: bool, terminating: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("{name}-uid")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                deletion_timestamp: terminating.then_some({
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        jiff::Timestamp::UNIX_EPOCH,
                    )
                }),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-0".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("web".into()),
                        container_port: 8080,
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: ip.map(str::to_string),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn ready_and_not_ready_pods_land_in_their_lists_with_named_ports_resolved() {
        let svc = service(&[("app", "web")], IntOrString::String("web".into()));
        let pods = vec![
            pod("b", Some("10.244.0.3"), true, false),
            pod("a", Some("10.244.0.2"), false, false),
            pod("no-ip", None, true, false),
            pod("gone", Some("10.244.0.9"), true, true),
        ];
        let endpoints = desired_endpoints(&svc, &pods);
        let subsets = endpoints.subsets.unwrap_or_default();
        assert_eq!(subsets.len(), 1);
        let ips = |a: &Option<Vec<EndpointAddress>>| {
            a.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ips(&subsets[0].addresses), ["10.244.0.3"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.244.0.2"]);
        let ports = subsets[0].ports.clone().unwrap_or_default();
        assert_eq!(ports[0].port, 8080);
        assert_eq!(ports[0].name.as_deref(), Some("http"));
    }

    #[test]
    fn unresolvable_named_port_leaves_the_pod_out() {
        let svc = service(&[("app", "web")], IntOrString::String("missing".into()));
        let endpoints = desired_endpoints(&svc, &[pod("a", Some("10.244.0.2"), true, false)]);
        assert!(endpoints.subsets.is_none());
    }

    #[test]
    fn numeric_target_ports_and_selector_mismatch() {
        let svc = service(&[("app", "other")], IntOrString::Int(9090));
        assert!(
            desired_endpoints(&svc, &[pod("a", Some("10.244.0.2"), true, false)])
                .subsets
                .is_none()
        );
        let svc = service(&[("app", "web")], IntOrString::Int(9090));
        let subsets = desired_endpoints(&svc, &[pod("a", Some("10.244.0.2"), true, false)])
            .subsets
            .unwrap_or_default();
        assert_eq!(subsets[0].ports.clone().unwrap_or_default()[0].port, 9090);
    }
}
