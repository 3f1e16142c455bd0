//! The EndpointSlice controller: for every Service with a selector, EndpointSlices labelled
//! `kubernetes.io/service-name` and managed-by `endpointslice-controller.k8s.io`, one per port set
//! and at most 100 endpoints each, with ready/serving/terminating conditions. Slices managed by
//! anything else are left alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::endpoints::{self, ResolvedPort};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::podutil;
use crate::queue::WorkQueue;
use crate::runner;

/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming a slice's manager.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY_LABEL`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Endpoints per slice (upstream's default `--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// Why EndpointSlices could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating, updating or deleting a slice failed.
    #[error("writing endpoint slice for {service}: {source}")]
    Write {
        /// The Service key.
        service: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// The content of one slice: its ports and endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceContent {
    /// Ports (sorted).
    pub ports: Vec<EndpointPort>,
    /// Endpoints (sorted by address).
    pub endpoints: Vec<Endpoint>,
    /// `IPv4` or `IPv6`.
    pub address_type: String,
}

fn to_slice_ports(ports: &[ResolvedPort]) -> Vec<EndpointPort> {
    ports
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone()),
            port: Some(p.port),
            protocol: Some(p.protocol.clone()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

/// What the Service's slices should contain: one entry per (address type, port set), split into
/// chunks of at most [`MAX_ENDPOINTS_PER_SLICE`]; one empty placeholder when nothing serves.
pub fn desired_slices(service: &Service, pods: &[Arc<Pod>]) -> Vec<SliceContent> {
    let mut groups: BTreeMap<(String, Vec<ResolvedPort>), Vec<Endpoint>> = BTreeMap::new();
    for endpoint in endpoints::endpoint_pods(service, pods, true) {
        let address_type = if endpoint.ip.contains(':') {
            "IPv6"
        } else {
            "IPv4"
        };
        let ready = endpoint.ready && !endpoint.terminating;
        let serving = podutil::is_pod_ready(&endpoint.pod);
        groups
            .entry((address_type.to_string(), endpoint.ports.clone()))
            .or_default()
            .push(Endpoint {
                addresses: vec![endpoint.ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(serving),
                    terminating: Some(endpoint.terminating),
                }),
                hostname: endpoints::hostname_for(&endpoint.pod, service),
                node_name: endpoint.pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(endpoints::pod_reference(&endpoint.pod)),
                ..Endpoint::default()
            });
    }
    let mut slices = Vec::new();
    for ((address_type, ports), endpoints) in groups {
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            slices.push(SliceContent {
                ports: to_slice_ports(&ports),
                endpoints: chunk.to_vec(),
                address_type: address_type.clone(),
            });
        }
    }
    if slices.is_empty() {
        slices.push(SliceContent {
            ports: Vec::new(),
            endpoints: Vec::new(),
            address_type: "IPv4".into(),
        });
    }
    slices
}

/// The labels every slice of the Service carries.
pub fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.labels().clone();
    labels.insert(SERVICE_NAME_LABEL.into(), service.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    if endpoints::is_headless(service) {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    labels
}

fn content_of(slice: &EndpointSlice) -> SliceContent {
    SliceContent {
        ports: slice.ports.clone().unwrap_or_default(),
        endpoints: slice.endpoints.clone(),
        address_type: slice.address_type.clone(),
    }
}

/// What to do with existing slices: (existing index, new content) updates, contents to create,
/// and existing indices to delete. Existing slices with the same ports are reused first.
pub fn plan(
    existing: &[EndpointSlice],
    desired: Vec<SliceContent>,
) -> (Vec<(usize, SliceContent)>, Vec<SliceContent>, Vec<usize>) {
    let mut unused: Vec<usize> = (0..existing.len()).collect();
    let mut updates = Vec::new();
    let mut creates = Vec::new();
    for content in desired {
        let reuse = unused
            .iter()
            .position(|i| {
                let e = content_of(&existing[*i]);
                e.ports == content.ports && e.address_type == content.address_type
            })
            .or_else(|| {
                unused
                    .iter()
                    .position(|i| existing[*i].address_type == content.address_type)
            });
        match reuse {
            Some(position) => {
                let index = unused.remove(position);
                updates.push((index, content));
            }
            None => creates.push(content),
        }
    }
    (updates, creates, unused)
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    services: Informer<Service>,
    pods: Informer<Pod>,
    slices: Informer<EndpointSlice>,
}

/// Starts the EndpointSlice controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        services: ctx.informers.get::<Service>(),
        pods: ctx.informers.get::<Pod>(),
        slices: ctx.informers.get::<EndpointSlice>(),
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.services.ready().await;
        controller.pods.ready().await;
        controller.slices.ready().await;
        runner::forward(&controller.services, queue.clone(), |change| match change {
            Change::Applied { new, .. } => vec![ObjectKey::of(new.as_ref())],
            Change::Deleted(old) => vec![ObjectKey::of(old.as_ref())],
            Change::Resynced => Vec::new(),
        });
        let services = controller.services.clone();
        runner::forward(&controller.pods, queue.clone(), move |change| {
            endpoints::pod_change_keys(&services, change)
        });
        runner::forward(&controller.slices, queue.clone(), |change| {
            let slice = match change {
                Change::Applied { new, .. } => new,
                Change::Deleted(old) => old,
                Change::Resynced => return Vec::new(),
            };
            let labels = slice.labels();
            match (labels.get(SERVICE_NAME_LABEL), labels.get(MANAGED_BY_LABEL)) {
                (Some(service), Some(manager)) if manager == CONTROLLER_NAME => {
                    vec![ObjectKey::new(
                        &slice.namespace().unwrap_or_default(),
                        service,
                    )]
                }
                _ => Vec::new(),
            }
        });
        let worker = controller.clone();
        runner::spawn_workers(
            "endpointslice",
            queue,
            controller.ctx.settings.workers.endpointslice,
            move |key| {
                let worker = worker.clone();
                async move { worker.reconcile(key).await }
            },
        );
    });
}

impl Controller {
    fn owned_slices(&self, key: &ObjectKey) -> Vec<EndpointSlice> {
        let mut slices: Vec<EndpointSlice> = self
            .slices
            .list_in(&key.namespace)
            .iter()
            .filter(|s| {
                s.labels().get(SERVICE_NAME_LABEL) == Some(&key.name)
                    && s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(CONTROLLER_NAME)
            })
            .map(|s| (**s).clone())
            .collect();
        slices.sort_by_key(|s| s.name_any());
        slices
    }

    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let api: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let error = |source| Error::Write {
            service: key.to_string(),
            source,
        };
        let existing = self.owned_slices(&key);
        let service = self
            .services
            .get(key.namespace(), &key.name)
            .filter(|s| s.metadata.deletion_timestamp.is_none());
        let Some(service) = service else {
            for slice in existing {
                delete(&api, &slice.name_any()).await.map_err(error)?;
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
        let labels = slice_labels(&service);
        let (updates, creates, deletes) = plan(&existing, desired_slices(&service, &pods));
        for (index, content) in updates {
            let slice = &existing[index];
            if content_of(slice) == content && slice.metadata.labels.as_ref() == Some(&labels) {
                continue;
            }
            let mut updated = slice.clone();
            updated.endpoints = content.endpoints;
            updated.ports = Some(content.ports);
            updated.metadata.labels = Some(labels.clone());
            api.replace(&slice.name_any(), &PostParams::default(), &updated)
                .await
                .map_err(error)?;
        }
        for content in creates {
            let slice = EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(format!("{}-", key.name)),
                    namespace: Some(key.namespace.clone()),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![podutil::controller_ref(service.as_ref())]),
                    ..ObjectMeta::default()
                },
                address_type: content.address_type,
                endpoints: content.endpoints,
                ports: Some(content.ports),
            };
            api.create(&PostParams::default(), &slice)
                .await
                .map_err(error)?;
        }
        for index in deletes {
            delete(&api, &existing[index].name_any())
                .await
                .map_err(error)?;
        }
        Ok(None)
    }
}

async fn delete(api: &Api<EndpointSlice>, name: &str) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::tests::{pod, service};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn slices_carry_conditions_for_ready_unready_and_terminating_pods() {
        let svc = service(&[("app", "web")], IntOrString::Int(8080));
        let pods = vec![
            pod("a", Some("10.244.0.2"), true, false),
            pod("b", Some("10.244.0.3"), false, false),
            pod("c", Some("10.244.0.4"), true, true),
        ];
        let slices = desired_slices(&svc, &pods);
        assert_eq!(slices.len(), 1);
        let conditions: Vec<_> = slices[0]
            .endpoints
            .iter()
            .map(|e| e.conditions.clone().unwrap_or_default())
            .map(|c| (c.ready, c.serving, c.terminating))
            .collect();
        assert_eq!(
            conditions,
            [
                (Some(true), Some(true), Some(false)),
                (Some(false), Some(false), Some(false)),
                (Some(false), Some(true), Some(true)),
            ]
        );
        assert_eq!(slices[0].ports[0].port, Some(8080));
        assert_eq!(slices[0].endpoints[0].node_name.as_deref(), Some("node-0"));
    }

    #[test]
    fn no_backends_yields_one_empty_placeholder_slice() {
        let svc = service(&[("app", "web")], IntOrString::Int(8080));
        let slices = desired_slices(&svc, &[]);
        assert_eq!(slices.len(), 1);
        assert!(slices[0].endpoints.is_empty());
    }

    #[test]
    fn labels_name_the_service_and_the_manager() {
        let labels = slice_labels(&service(&[("app", "web")], IntOrString::Int(1)));
        assert_eq!(
            labels.get(SERVICE_NAME_LABEL).map(String::as_str),
            Some("web")
        );
        assert_eq!(
            labels.get(MANAGED_BY_LABEL).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
    }

    #[test]
    fn plan_reuses_existing_slices_and_deletes_extras() {
        let existing = vec![
            EndpointSlice {
                address_type: "IPv4".into(),
                ..EndpointSlice::default()
            },
            EndpointSlice {
                address_type: "IPv4".into(),
                ..EndpointSlice::default()
            },
        ];
        let desired = vec![SliceContent {
            ports: Vec::new(),
            endpoints: Vec::new(),
            address_type: "IPv4".into(),
        }];
        let (updates, creates, deletes) = plan(&existing, desired);
        assert_eq!(updates.len(), 1);
        assert!(creates.is_empty());
        assert_eq!(deletes, [1]);
    }
}
