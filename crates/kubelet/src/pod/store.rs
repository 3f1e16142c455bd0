//! The kubelet's own view of its pods, shared between pod workers (writers) and the kubelet API
//! (readers: `/pods`, logs, exec): each pod with the status the kubelet last computed and the
//! runtime id of each container's current instance.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{Pod, PodStatus};

/// One pod as the kubelet knows it.
#[derive(Debug, Clone, Default)]
pub struct PodEntry {
    /// The pod (spec from the API, status as computed by the kubelet).
    pub pod: Pod,
    /// Runtime id of the current instance of each container, by container name.
    pub containers: BTreeMap<String, String>,
}

/// What the store keeps per pod: the worker's own copies, shared rather than cloned (a hollow
/// node holds 110 pods and a fleet 150,000; a full copy with status is about 10 KiB each).
#[derive(Debug, Clone)]
struct Shared {
    pod: Arc<Pod>,
    status: Option<Arc<PodStatus>>,
    containers: BTreeMap<String, String>,
}

impl Shared {
    fn entry(&self) -> PodEntry {
        let mut pod = Pod::clone(&self.pod);
        if let Some(status) = &self.status {
            pod.status = Some(PodStatus::clone(status));
        }
        PodEntry {
            pod,
            containers: self.containers.clone(),
        }
    }

    fn is(&self, namespace: &str, name: &str) -> bool {
        self.pod.metadata.namespace.as_deref() == Some(namespace)
            && self.pod.metadata.name.as_deref() == Some(name)
    }
}

/// A cheap-to-clone shared map of pod uid -> [`PodEntry`].
#[derive(Debug, Clone, Default)]
pub struct PodStore {
    inner: Arc<RwLock<BTreeMap<String, Shared>>>,
}

impl PodStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces the entry of `uid`.
    pub fn upsert(&self, uid: &str, entry: PodEntry) {
        let PodEntry {
            mut pod,
            containers,
        } = entry;
        let status = pod.status.take().map(Arc::new);
        self.upsert_shared(uid, Arc::new(pod), status, containers);
    }

    /// Inserts or replaces the entry of `uid`: `pod` as the API sent it, with `status` (the
    /// kubelet's) in place of its own when given.
    pub fn upsert_shared(
        &self,
        uid: &str,
        pod: Arc<Pod>,
        status: Option<Arc<PodStatus>>,
        containers: BTreeMap<String, String>,
    ) {
        if let Ok(mut map) = self.inner.write() {
            map.insert(
                uid.to_string(),
                Shared {
                    pod,
                    status,
                    containers,
                },
            );
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
            .map(|m| m.values().map(|e| e.entry().pod).collect())
            .unwrap_or_default();
        pods.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        pods
    }

    /// The entry of the pod with this uid.
    pub fn get(&self, uid: &str) -> Option<PodEntry> {
        self.inner.read().ok()?.get(uid).map(Shared::entry)
    }

    /// The entry of the pod `namespace/name` (the newest one if several share the name).
    pub fn find(&self, namespace: &str, name: &str) -> Option<PodEntry> {
        let map = self.inner.read().ok()?;
        map.values()
            .filter(|e| e.is(namespace, name))
            .max_by_key(|e| e.pod.metadata.creation_timestamp.clone().map(|t| t.0))
            .map(Shared::entry)
    }

    /// Uids of every pod in the store.
    pub fn uids(&self) -> Vec<String> {
        self.inner
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn entries_share_the_workers_pod_and_read_back_with_the_kubelets_status() {
        let pod = Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let status = Arc::new(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        });
        let store = PodStore::new();
        let containers = BTreeMap::from([("c".to_string(), "id-1".to_string())]);
        store.upsert_shared("u1", pod.clone(), Some(status.clone()), containers.clone());
        assert_eq!(
            Arc::strong_count(&pod),
            2,
            "the store holds the worker's copy"
        );
        assert_eq!(Arc::strong_count(&status), 2);

        let found = store.find("ns", "p").expect("found");
        assert_eq!(
            found.pod.status.and_then(|s| s.phase).as_deref(),
            Some("Running")
        );
        assert_eq!(found.containers, containers);
        let by_uid = store.get("u1").expect("by uid");
        assert_eq!(by_uid.pod.metadata.name.as_deref(), Some("p"));

        // Without a status of the kubelet's, the pod's own is kept.
        store.upsert_shared("u1", pod.clone(), None, BTreeMap::new());
        let pods = store.pods();
        assert_eq!(pods.len(), 1);
        assert_eq!(
            pods[0].status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Pending")
        );
        store.remove("u1");
        assert!(store.get("u1").is_none());
        assert_eq!(Arc::strong_count(&pod), 1);
    }
}
