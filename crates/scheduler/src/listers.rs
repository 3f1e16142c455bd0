//! Informer caches of what plugins need besides nodes and pods: namespaces (affinity
//! `namespaceSelector`), Services and workload controllers (default topology spreading's
//! selector, upstream `DefaultSelector`) and PodDisruptionBudgets (preemption).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, ReplicationController, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// Read-only caches, filled in the background (an empty cache only weakens spreading and PDB
/// checks, so scheduling never waits for them).
#[derive(Clone)]
pub struct Listers {
    /// Namespaces.
    pub namespaces: Store<Namespace>,
    /// Services.
    pub services: Store<Service>,
    /// ReplicaSets.
    pub replica_sets: Store<ReplicaSet>,
    /// StatefulSets.
    pub stateful_sets: Store<StatefulSet>,
    /// ReplicationControllers.
    pub replication_controllers: Store<ReplicationController>,
    /// PodDisruptionBudgets.
    pub pdbs: Store<PodDisruptionBudget>,
}

fn reflect<K>(client: &Client) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let writer = Writer::<K>::default();
    let store = writer.as_reader();
    component_base::reflect::spawn(
        Api::all(client.clone()),
        watcher::Config::default(),
        writer,
        |_| {},
    );
    store
}

impl Listers {
    /// Starts the watches.
    pub fn start(client: &Client) -> Self {
        Listers {
            namespaces: reflect(client),
            services: reflect(client),
            replica_sets: reflect(client),
            stateful_sets: reflect(client),
            replication_controllers: reflect(client),
            pdbs: reflect(client),
        }
    }

    /// Namespace name -> labels.
    pub fn namespace_labels(&self) -> HashMap<String, BTreeMap<String, String>> {
        self.namespaces
            .state()
            .iter()
            .filter_map(|n| {
                Some((
                    n.metadata.name.clone()?,
                    n.metadata.labels.clone().unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// Every PodDisruptionBudget.
    pub fn pdbs(&self) -> Vec<PodDisruptionBudget> {
        self.pdbs.state().iter().map(|p| (**p).clone()).collect()
    }

    /// Upstream `DefaultSelector`: the selectors of the Services selecting the pod and of its
    /// controlling ReplicationController/ReplicaSet/StatefulSet, merged; `None` when empty.
    pub fn default_selector(&self, pod: &Pod) -> Option<LabelSelector> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let mut merged = LabelSelector::default();
        let mut match_labels: BTreeMap<String, String> = BTreeMap::new();
        for service in self.services.state() {
            if service.metadata.namespace.as_deref() != Some(namespace.as_str()) {
                continue;
            }
            let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            if selector.is_empty() || !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                continue;
            }
            match_labels.extend(selector.clone());
        }
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        let mut expressions = Vec::new();
        if let Some(owner) = owner {
            let controller_selector = match (owner.api_version.as_str(), owner.kind.as_str()) {
                ("v1", "ReplicationController") => self
                    .replication_controllers
                    .get(&ObjectRef::new(&owner.name).within(&namespace))
                    .and_then(|rc| rc.spec.as_ref().and_then(|s| s.selector.clone()))
                    .map(|selector| LabelSelector {
                        match_labels: Some(selector),
                        match_expressions: None,
                    }),
                ("apps/v1", "ReplicaSet") => self
                    .replica_sets
                    .get(&ObjectRef::new(&owner.name).within(&namespace))
                    .and_then(|rs| rs.spec.as_ref().map(|s| s.selector.clone())),
                ("apps/v1", "StatefulSet") => self
                    .stateful_sets
                    .get(&ObjectRef::new(&owner.name).within(&namespace))
                    .and_then(|ss| ss.spec.as_ref().map(|s| s.selector.clone())),
                _ => None,
            };
            if let Some(selector) = controller_selector {
                match_labels.extend(selector.match_labels.unwrap_or_default());
                expressions.extend(selector.match_expressions.unwrap_or_default());
            }
        }
        if match_labels.is_empty() && expressions.is_empty() {
            return None;
        }
        merged.match_labels = Some(match_labels).filter(|m| !m.is_empty());
        merged.match_expressions = Some(expressions).filter(|e| !e.is_empty());
        Some(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    fn store<K>(objects: Vec<K>) -> Store<K>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    {
        let mut writer = Writer::<K>::default();
        let reader = writer.as_reader();
        for object in objects {
            writer.apply_watcher_event(&Event::Apply(object));
        }
        reader
    }

    fn from_json<K: DeserializeOwned + Default>(value: serde_json::Value) -> K {
        serde_json::from_value(value).unwrap_or_default()
    }

    #[test]
    fn the_default_selector_merges_services_and_the_owning_replica_set() {
        let listers = Listers {
            namespaces: store(vec![]),
            services: store(vec![
                from_json::<Service>(serde_json::json!({
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"selector": {"app": "web"}}})),
                from_json::<Service>(serde_json::json!({
                    "metadata": {"name": "other", "namespace": "default"},
                    "spec": {"selector": {"app": "other"}}})),
            ]),
            replica_sets: store(vec![from_json::<ReplicaSet>(serde_json::json!({
                "metadata": {"name": "web-1", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "web", "pod-template-hash": "1"}},
                         "template": {}}}))]),
            stateful_sets: store(vec![]),
            replication_controllers: store(vec![]),
            pdbs: store(vec![]),
        };
        let pod: Pod = from_json(serde_json::json!({
            "metadata": {"name": "web-1-x", "namespace": "default",
                "labels": {"app": "web", "pod-template-hash": "1"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-1", "uid": "u", "controller": true}]}}));
        let selector = listers.default_selector(&pod);
        let labels = selector.and_then(|s| s.match_labels).unwrap_or_default();
        assert_eq!(
            labels,
            [
                ("app".to_string(), "web".to_string()),
                ("pod-template-hash".to_string(), "1".to_string())
            ]
            .into()
        );
        let orphan: Pod = from_json(serde_json::json!({
            "metadata": {"name": "x", "namespace": "default", "labels": {"app": "none"}}}));
        assert!(listers.default_selector(&orphan).is_none());
    }
}
