//! The kubelet's own view of its pods, shared between pod workers (writers) and the kubelet API
//! (readers: `/pods`, logs, exec): each pod with the status the kubelet last computed and the
//! runtime id of each container's current instance.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Pod;

/// One pod as the kubelet knows it.
#[derive(Debug, Clone, Default)]
pub struct PodEntry {
    /// The pod (spec from the API, status as computed by the kubelet).
    pub pod: Pod,
    /// Runtime id of the current instance of each container, by container name.
    pub containers: BTreeMap<String, String>,
}

/// A cheap-to-clone shared map of pod uid -> [`PodEntry`].
#[derive(Debug, Clone, Default)]
pub struct PodStore {
    inner: Arc<RwLock<BTreeMap<String, PodEntry>>>,
}

impl PodStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces the entry of `uid`.
    pub fn upsert(&self, uid: &str, entry: PodEntry) {
        if let Ok(mut map) = self.inner.write() {
            map.insert(uid.to_string(), entry);
        }
    }

    /// Removes the entry of `uid`.
    pub fn remove(&self, uid: &str) {
        if let Ok(mut map) = self.inner.write() {
            map.remove(uid);
        }
    }

    /// Every pod, ordered by namespace and name.
    pub fn pods(&self) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .inner
            .read()
            .map(|m| m.values().map(|e| e.pod.clone()).collect())
            .unwrap_or_default();
        pods.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        pods
    }

    /// The entry of the pod `namespace/name` (the newest one if several share the name).
    pub fn find(&self, namespace: &str, name: &str) -> Option<PodEntry> {
        let map = self.inner.read().ok()?;
        map.values()
            .filter(|e| {
                e.pod.metadata.namespace.as_deref() == Some(namespace)
                    && e.pod.metadata.name.as_deref() == Some(name)
            })
            .max_by_key(|e| e.pod.metadata.creation_timestamp.clone().map(|t| t.0))
            .cloned()
    }

    /// Uids of every pod in the store.
    pub fn uids(&self) -> Vec<String> {
        self.inner
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}
