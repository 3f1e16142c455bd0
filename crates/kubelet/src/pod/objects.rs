//! The ConfigMaps and Secrets behind pod volumes, cached per node as upstream's cache-based
//! manager does (`configMapAndSecretChangeDetectionStrategy: Cache`).
//!
//! A pod's first read (its volume set-up) is from storage ([`Read::Latest`]), so a pod created
//! right after its ConfigMap sees it. Later reads for the pod (container starts in later
//! syncs, the periodic volume refresh: [`Read::Refresh`]) are answered from this cache while the copy is younger than the node's TTL; an older copy is
//! re-read with `resourceVersion=0`, from the apiserver's watch cache. The TTL is the Node's
//! `node.alpha.kubernetes.io/ttl` annotation, which the controller-manager's TTL controller
//! sets from the cluster size (0 s up to 100 nodes, 300 s above 1,800): at 5,000 nodes and
//! 150,000 pods the refreshes would otherwise read every pod's objects every minute.
//!
//! Upstream's kubelet watches its Node and falls back to a one-minute TTL until it has seen
//! the annotation. This kubelet reads the annotation from the Node objects it already gets
//! (registration, status PATCH answers, the pod CIDR poll) and caches nothing until then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use tokio::time::Instant;

use super::api::{ApiError, PodApi};

/// The Node annotation holding the TTL in seconds.
pub const TTL_ANNOTATION: &str = "node.alpha.kubernetes.io/ttl";

/// How long an entry no pod refreshed is kept beyond the TTL.
const IDLE: Duration = Duration::from_secs(600);

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// From storage (a pod's first read, at volume set-up).
    Latest,
    /// A later read for a pod: a copy younger than the TTL will do.
    Refresh,
}

/// `u64::MAX`: the Node's annotation has not been seen.
const TTL_UNKNOWN: u64 = u64::MAX;

struct Entry<T> {
    object: T,
    fetched: Instant,
}

/// One node's cache of ConfigMaps and Secrets.
pub struct ObjectCache {
    ttl_secs: AtomicU64,
    config_maps: Mutex<HashMap<(String, String), Entry<ConfigMap>>>,
    secrets: Mutex<HashMap<(String, String), Entry<Secret>>>,
    pruned: Mutex<Instant>,
}

impl Default for ObjectCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectCache {
    /// An empty cache that caches nothing until it sees the Node's TTL.
    pub fn new() -> Self {
        Self {
            ttl_secs: AtomicU64::new(TTL_UNKNOWN),
            config_maps: Mutex::new(HashMap::new()),
            secrets: Mutex::new(HashMap::new()),
            pruned: Mutex::new(Instant::now()),
        }
    }

    /// The TTL in force (zero until the Node's annotation is seen).
    pub fn ttl(&self) -> Duration {
        match self.ttl_secs.load(Ordering::Relaxed) {
            TTL_UNKNOWN => Duration::ZERO,
            secs => Duration::from_secs(secs),
        }
    }

    /// Takes the TTL from `node`'s annotation; an absent or unreadable one leaves it as it was.
    pub fn observe_node(&self, node: &Node) {
        let ttl = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TTL_ANNOTATION))
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(secs) = ttl {
            let before = self.ttl_secs.swap(secs, Ordering::Relaxed);
            if before != secs {
                tracing::info!(
                    ttl_seconds = secs,
                    "ConfigMap and Secret cache TTL set from the node"
                );
            }
        }
    }

    /// The ConfigMap `namespace/name` (`None`: it does not exist).
    pub async fn config_map(
        &self,
        api: &dyn PodApi,
        namespace: &str,
        name: &str,
        read: Read,
    ) -> Result<Option<ConfigMap>, ApiError> {
        let fetch = async |any_version| match any_version {
            true => api.config_map_any_version(namespace, name).await,
            false => api.config_map(namespace, name).await,
        };
        self.get(&self.config_maps, namespace, name, read, fetch)
            .await
    }

    /// The Secret `namespace/name` (`None`: it does not exist).
    pub async fn secret(
        &self,
        api: &dyn PodApi,
        namespace: &str,
        name: &str,
        read: Read,
    ) -> Result<Option<Secret>, ApiError> {
        let fetch = async |any_version| match any_version {
            true => api.secret_any_version(namespace, name).await,
            false => api.secret(namespace, name).await,
        };
        self.get(&self.secrets, namespace, name, read, fetch).await
    }

    /// The object from `map` when young enough, else `fetch`ed (at any version when a copy was
    /// read before) and kept.
    async fn get<T: Clone>(
        &self,
        map: &Mutex<HashMap<(String, String), Entry<T>>>,
        namespace: &str,
        name: &str,
        read: Read,
        fetch: impl AsyncFnOnce(bool) -> Result<Option<T>, ApiError>,
    ) -> Result<Option<T>, ApiError> {
        let key = (namespace.to_string(), name.to_string());
        let (cached, fresh) = self.lookup(map, &key, read);
        if fresh {
            return Ok(cached);
        }
        let object = fetch(cached.is_some()).await?;
        self.store(map, key, &object);
        Ok(object)
    }

    /// The cached copy (for a refresh) and whether it is young enough to answer with.
    fn lookup<T: Clone>(
        &self,
        map: &Mutex<HashMap<(String, String), Entry<T>>>,
        key: &(String, String),
        read: Read,
    ) -> (Option<T>, bool) {
        if read == Read::Latest {
            return (None, false);
        }
        let ttl = self.ttl();
        let Ok(map) = map.lock() else {
            return (None, false);
        };
        match map.get(key) {
            Some(entry) => (Some(entry.object.clone()), entry.fetched.elapsed() < ttl),
            None => (None, false),
        }
    }

    /// Keeps what was read; a missing object is not cached (it is read again next time).
    fn store<T: Clone>(
        &self,
        map: &Mutex<HashMap<(String, String), Entry<T>>>,
        key: (String, String),
        object: &Option<T>,
    ) {
        let now = Instant::now();
        let keep = self.ttl() + IDLE;
        let prune = self
            .pruned
            .lock()
            .map(|mut at| {
                let due = now.duration_since(*at) >= IDLE;
                if due {
                    *at = now;
                }
                due
            })
            .unwrap_or(false);
        let Ok(mut map) = map.lock() else {
            return;
        };
        match object {
            Some(object) => {
                map.insert(
                    key,
                    Entry {
                        object: object.clone(),
                        fetched: now,
                    },
                );
            }
            None => {
                map.remove(&key);
            }
        }
        if prune {
            map.retain(|_, e| now.duration_since(e.fetched) < keep);
        }
    }

    /// How many objects are cached (tests).
    pub fn len(&self) -> usize {
        let count = |n: Option<usize>| n.unwrap_or(0);
        count(self.config_maps.lock().ok().map(|m| m.len()))
            + count(self.secrets.lock().ok().map(|m| m.len()))
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::api::{ApiCall, FakePodApi};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node_with_ttl(ttl: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n".into()),
                annotations: Some([(TTL_ANNOTATION.to_string(), ttl.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn config_map(value: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("cm".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            data: Some([("k".to_string(), value.to_string())].into()),
            ..Default::default()
        }
    }

    fn reads(api: &FakePodApi) -> Vec<ApiCall> {
        api.calls()
            .into_iter()
            .filter(|c| matches!(c, ApiCall::ReadObject { .. }))
            .collect()
    }

    fn value(cm: Option<ConfigMap>) -> Option<String> {
        cm.and_then(|c| c.data).and_then(|d| d.get("k").cloned())
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_within_the_node_ttl_are_answered_from_the_cache() {
        let api = FakePodApi::default();
        api.set_config_map(config_map("one"));
        let cache = ObjectCache::new();
        cache.observe_node(&node_with_ttl("15"));
        assert_eq!(cache.ttl(), Duration::from_secs(15));

        let first = cache.config_map(&api, "ns", "cm", Read::Latest).await;
        assert_eq!(value(first.expect("read")), Some("one".into()));
        api.set_config_map(config_map("two"));
        let cached = cache.config_map(&api, "ns", "cm", Read::Refresh).await;
        assert_eq!(value(cached.expect("read")), Some("one".into()));
        assert_eq!(reads(&api).len(), 1, "{:?}", api.calls());

        // A start reads storage whatever the TTL.
        let latest = cache.config_map(&api, "ns", "cm", Read::Latest).await;
        assert_eq!(value(latest.expect("read")), Some("two".into()));
        api.set_config_map(config_map("three"));

        // Past the TTL a refresh reads again, at any version (the watch cache).
        tokio::time::advance(Duration::from_secs(16)).await;
        let refreshed = cache.config_map(&api, "ns", "cm", Read::Refresh).await;
        assert_eq!(value(refreshed.expect("read")), Some("three".into()));
        assert_eq!(
            reads(&api),
            vec![
                ApiCall::ReadObject {
                    kind: "configmap",
                    key: "ns/cm".into(),
                    any_version: false
                },
                ApiCall::ReadObject {
                    kind: "configmap",
                    key: "ns/cm".into(),
                    any_version: false
                },
                ApiCall::ReadObject {
                    kind: "configmap",
                    key: "ns/cm".into(),
                    any_version: true
                },
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_cached_before_the_ttl_is_known_or_when_it_is_zero() {
        let api = FakePodApi::default();
        api.set_config_map(config_map("one"));
        let cache = ObjectCache::new();
        for _ in 0..2 {
            cache
                .config_map(&api, "ns", "cm", Read::Refresh)
                .await
                .expect("read");
        }
        cache.observe_node(&node_with_ttl("not a number"));
        assert_eq!(cache.ttl(), Duration::ZERO);
        cache.observe_node(&node_with_ttl("0"));
        cache
            .config_map(&api, "ns", "cm", Read::Refresh)
            .await
            .expect("read");
        assert_eq!(reads(&api).len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_object_is_not_served_from_the_cache() {
        let api = FakePodApi::default();
        api.set_config_map(config_map("one"));
        let cache = ObjectCache::new();
        cache.observe_node(&node_with_ttl("300"));
        cache
            .config_map(&api, "ns", "cm", Read::Latest)
            .await
            .expect("read");
        api.remove_config_map("ns", "cm");
        // Within the TTL the refresh keeps the copy, as upstream's cache does...
        let kept = cache.config_map(&api, "ns", "cm", Read::Refresh).await;
        assert!(kept.expect("read").is_some());
        // ...and after it the object's absence is seen and not cached.
        tokio::time::advance(Duration::from_secs(301)).await;
        let gone = cache.config_map(&api, "ns", "cm", Read::Refresh).await;
        assert!(gone.expect("read").is_none());
        assert!(cache.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn entries_no_pod_refreshes_are_dropped() {
        let api = FakePodApi::default();
        let cache = ObjectCache::new();
        cache.observe_node(&node_with_ttl("30"));
        for name in ["a", "b"] {
            let mut cm = config_map("v");
            cm.metadata.name = Some(name.into());
            api.set_config_map(cm);
            cache
                .config_map(&api, "ns", name, Read::Latest)
                .await
                .expect("read");
        }
        assert_eq!(cache.len(), 2);
        tokio::time::advance(IDLE + Duration::from_secs(31)).await;
        cache
            .config_map(&api, "ns", "a", Read::Latest)
            .await
            .expect("read");
        assert_eq!(cache.len(), 1, "b was idle past the TTL and the idle time");
    }
}
