//! The Services and EndpointSlices kube-proxy has seen, grouped by service, and which services
//! changed since the last sync (the "dirty" ones) so that a sync recomputes only those.
//!
//! The watch tasks feed events in; a relist (`Init` .. `InitDone`) replaces a whole kind and
//! marks every service dirty, since deletions may have been missed. An EndpointSlice that moves
//! to another service (its `kubernetes.io/service-name` label changed) dirties both.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::rules::{service_key, slice_service_key};
use crate::table::ServiceKey;

/// One service and its EndpointSlices, as a sync needs them.
#[derive(Debug, Clone)]
pub struct ServiceInput {
    /// `namespace/name`.
    pub key: ServiceKey,
    /// The Service, `None` when it is gone.
    pub service: Option<Arc<Service>>,
    /// Its EndpointSlices.
    pub slices: Vec<Arc<EndpointSlice>>,
}

/// What changed since the last [`Objects::take_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Everything may have changed (a relist): rebuild every service.
    pub everything: bool,
    /// The services whose Service or EndpointSlices changed.
    pub services: BTreeSet<ServiceKey>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.everything && self.services.is_empty()
    }
}

/// `namespace/name` of an EndpointSlice.
fn slice_name(slice: &EndpointSlice) -> String {
    format!(
        "{}/{}",
        slice.metadata.namespace.as_deref().unwrap_or(""),
        slice.metadata.name.as_deref().unwrap_or("")
    )
}

/// The objects, indexed by service, with the dirty set.
#[derive(Debug, Default)]
pub struct Objects {
    services: HashMap<ServiceKey, Arc<Service>>,
    /// Service key -> slice `namespace/name` -> slice.
    slices: HashMap<ServiceKey, HashMap<String, Arc<EndpointSlice>>>,
    /// Slice `namespace/name` -> the service it was filed under.
    slice_owner: HashMap<String, ServiceKey>,
    changes: Changes,
}

impl Objects {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// A Service was added or modified.
    pub fn apply_service(&mut self, service: Service) {
        let key = service_key(&service);
        self.services.insert(key.clone(), Arc::new(service));
        self.changes.services.insert(key);
    }

    /// A Service was deleted.
    pub fn delete_service(&mut self, service: &Service) {
        let key = service_key(service);
        self.services.remove(&key);
        self.changes.services.insert(key);
    }

    /// Every Service, after a relist.
    pub fn replace_services(&mut self, services: Vec<Service>) {
        self.services = services
            .into_iter()
            .map(|s| (service_key(&s), Arc::new(s)))
            .collect();
        self.changes.everything = true;
    }

    fn remove_slice_named(&mut self, name: &str) {
        if let Some(owner) = self.slice_owner.remove(name) {
            if let Some(slices) = self.slices.get_mut(&owner) {
                slices.remove(name);
                if slices.is_empty() {
                    self.slices.remove(&owner);
                }
            }
            self.changes.services.insert(owner);
        }
    }

    fn insert_slice(&mut self, slice: EndpointSlice) -> Option<ServiceKey> {
        let key = slice_service_key(&slice)?;
        let name = slice_name(&slice);
        self.slice_owner.insert(name.clone(), key.clone());
        self.slices
            .entry(key.clone())
            .or_default()
            .insert(name, Arc::new(slice));
        Some(key)
    }

    /// An EndpointSlice was added or modified.
    pub fn apply_slice(&mut self, slice: EndpointSlice) {
        self.remove_slice_named(&slice_name(&slice));
        if let Some(key) = self.insert_slice(slice) {
            self.changes.services.insert(key);
        }
    }

    /// An EndpointSlice was deleted.
    pub fn delete_slice(&mut self, slice: &EndpointSlice) {
        self.remove_slice_named(&slice_name(slice));
    }

    /// Every EndpointSlice, after a relist.
    pub fn replace_slices(&mut self, slices: Vec<EndpointSlice>) {
        self.slices.clear();
        self.slice_owner.clear();
        for slice in slices {
            self.insert_slice(slice);
        }
        self.changes.everything = true;
    }

    /// The changes since the last call, which starts a new round.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// Marks every service dirty (the next sync rebuilds everything).
    pub fn mark_everything(&mut self) {
        self.changes.everything = true;
    }

    /// The service `key` and its slices.
    pub fn input(&self, key: &ServiceKey) -> ServiceInput {
        ServiceInput {
            key: key.clone(),
            service: self.services.get(key).cloned(),
            slices: self
                .slices
                .get(key)
                .map(|s| s.values().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// Every service with its slices.
    pub fn all_inputs(&self) -> Vec<ServiceInput> {
        self.services.keys().map(|key| self.input(key)).collect()
    }

    /// Number of Services.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }
}
