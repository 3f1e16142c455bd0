//! Static pods: pods read from manifest files in `--pod-manifest-path`, run by this kubelet
//! without the apiserver, and shown in the API as *mirror pods*.
//!
//! As upstream: every regular file in the directory (names starting with `.` skipped) holds a
//! Pod (or a PodList) in YAML or JSON; the pod is renamed `<name>-<nodeName>`, its namespace
//! defaults to `default`, `spec.nodeName` is this node, it tolerates every `NoExecute` taint,
//! and unless the manifest sets one its uid is a hash of the manifest, the node name and the
//! file, so a restarted kubelet computes the same uid and adopts the running containers. The
//! annotations `kubernetes.io/config.hash` (= uid), `kubernetes.io/config.source: file` and
//! `kubernetes.io/config.seen` mark it. Its mirror pod is a copy with
//! `kubernetes.io/config.mirror: <hash>` and a controller ownerReference to the Node.
//!
//! [`read_manifests`] scans the directory; [`StaticPodApi`] sends a static pod's status to its
//! mirror pod and deletes the mirror when the static pod ends; the pod manager
//! ([`crate::pod::manager`]) runs the pods and keeps their mirrors through [`MirrorClient`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, PodStatus, Secret, Service, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::pod::api::{ApiError, PodApi, PodEvent};
use crate::pod::tokens::{IssuedToken, TokenAsk};

/// The hash of a static pod's manifest (its uid).
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Where a pod came from (`file` for static pods, `api` otherwise).
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// When the kubelet first saw the manifest.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
/// Marks a mirror pod; the value is the static pod's hash.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StaticPodError {
    /// The directory could not be read.
    #[error("reading --pod-manifest-path {path}: {source}")]
    ReadDir {
        /// The directory.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A manifest is neither a Pod nor a PodList.
    #[error("manifest {path}: {reason}")]
    Decode {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A mirror pod call failed.
    #[error("{action} mirror pod {namespace}/{name}: {source}")]
    Mirror {
        /// create or delete.
        action: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },
}

/// Whether `pod` came from a manifest file.
pub fn is_static(pod: &Pod) -> bool {
    annotation(pod, CONFIG_SOURCE).is_some_and(|s| s != "api")
}

/// Whether `pod` is a mirror pod.
pub fn is_mirror(pod: &Pod) -> bool {
    annotation(pod, CONFIG_MIRROR).is_some()
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Decodes a manifest: one Pod or a PodList, YAML or JSON.
pub fn decode_manifest(text: &str) -> Result<Vec<Pod>, String> {
    #[derive(Deserialize)]
    struct Kind {
        kind: Option<String>,
    }
    let value: serde_json::Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let kind: Kind = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    match kind.kind.as_deref() {
        Some("Pod") => Ok(vec![
            serde_json::from_value(value).map_err(|e| e.to_string())?
        ]),
        Some("PodList") => {
            let items = value.get("items").cloned().unwrap_or_default();
            serde_json::from_value(items).map_err(|e| e.to_string())
        }
        Some(other) => Err(format!("kind {other} is not a Pod or PodList")),
        None => Err("no kind: want a Pod or a PodList".into()),
    }
}

/// The uid upstream derives for a manifest without one: a hash of the pod, the node and file.
pub fn manifest_uid(pod: &Pod, node_name: &str, file: &Path) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(pod).unwrap_or_default());
    hasher.update(format!("host:{node_name}"));
    hasher.update(format!("file:{}", file.display()));
    hex::encode(&hasher.finalize()[..16])
}

/// Applies the static pod defaults (see the module docs) to a decoded manifest pod.
pub fn static_pod(mut pod: Pod, node_name: &str, file: &Path) -> Pod {
    let uid = match pod.metadata.uid.clone().filter(|u| !u.is_empty()) {
        Some(uid) => uid,
        None => manifest_uid(&pod, node_name, file),
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    pod.metadata.name = Some(format!("{name}-{}", node_name.to_lowercase()));
    if pod.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        pod.metadata.namespace = Some("default".into());
    }
    pod.metadata.uid = Some(uid.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_HASH.into(), uid);
    annotations.insert(CONFIG_SOURCE.into(), "file".into());
    annotations.insert(CONFIG_SEEN.into(), jiff::Timestamp::now().to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node_name.to_string());
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let all_no_execute = Toleration {
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        ..Default::default()
    };
    if !tolerations.contains(&all_no_execute) {
        tolerations.push(all_no_execute);
    }
    pod.status = Some(PodStatus {
        phase: Some("Pending".into()),
        ..Default::default()
    });
    pod
}

/// Reads every manifest in `dir`: static pods by uid. Bad files are logged and skipped (as
/// upstream); a missing directory is an error (the caller logs it and tries again later).
pub fn read_manifests(
    dir: &Path,
    node_name: &str,
) -> Result<BTreeMap<String, Pod>, StaticPodError> {
    let entries = std::fs::read_dir(dir).map_err(|source| StaticPodError::ReadDir {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    let mut pods = BTreeMap::new();
    for file in files {
        let decoded = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| decode_manifest(&text));
        match decoded {
            Ok(list) => {
                for pod in list {
                    let pod = static_pod(pod, node_name, &file);
                    if let Some(uid) = pod.metadata.uid.clone() {
                        pods.insert(uid, pod);
                    }
                }
            }
            Err(reason) => {
                let error = StaticPodError::Decode {
                    path: file.display().to_string(),
                    reason,
                };
                tracing::warn!(%error, "skipping static pod manifest");
            }
        }
    }
    Ok(pods)
}

/// The mirror pod of `pod`: a copy marked with [`CONFIG_MIRROR`], owned by the Node.
pub fn mirror_pod(pod: &Pod, node_name: &str, node_uid: Option<&str>) -> Pod {
    let mut mirror = pod.clone();
    let hash = annotation(pod, CONFIG_HASH)
        .map(str::to_string)
        .or_else(|| pod.metadata.uid.clone())
        .unwrap_or_default();
    mirror.metadata.uid = None;
    mirror.metadata.resource_version = None;
    mirror.metadata.creation_timestamp = None;
    mirror.metadata.deletion_timestamp = None;
    mirror.metadata.deletion_grace_period_seconds = None;
    mirror
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_MIRROR.into(), hash);
    mirror.metadata.owner_references = node_uid.map(|uid| {
        vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: node_name.to_string(),
            uid: uid.to_string(),
            controller: Some(true),
            ..Default::default()
        }]
    });
    mirror.status = None;
    mirror
}

/// Whether `mirror` is the current mirror of `pod` (same hash, not being deleted).
pub fn mirror_matches(mirror: &Pod, pod: &Pod) -> bool {
    mirror.metadata.deletion_timestamp.is_none()
        && annotation(mirror, CONFIG_MIRROR) == annotation(pod, CONFIG_HASH)
}

/// Mirror pod calls, behind a trait so the manager is tested without an apiserver.
#[async_trait::async_trait]
pub trait MirrorClient: Send + Sync + 'static {
    /// Creates the mirror of static pod `pod`; an existing one (409) is Ok.
    async fn create(&self, pod: &Pod) -> Result<(), StaticPodError>;
    /// Deletes mirror pod `namespace/name` for good (grace 0), uid-checked when given;
    /// not-found and uid mismatches are Ok.
    async fn delete(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), StaticPodError>;
}

/// [`MirrorClient`] over the API.
pub struct KubeMirrorClient {
    client: Client,
    node_name: String,
}

impl KubeMirrorClient {
    /// Mirrors for static pods of `node_name`.
    pub fn new(client: Client, node_name: &str) -> Self {
        Self {
            client,
            node_name: node_name.to_string(),
        }
    }
}

fn mirror_error(
    action: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(kube::Error) -> StaticPodError {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    move |source| StaticPodError::Mirror {
        action,
        namespace,
        name,
        source: Box::new(source),
    }
}

#[async_trait::async_trait]
impl MirrorClient for KubeMirrorClient {
    async fn create(&self, pod: &Pod) -> Result<(), StaticPodError> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node_uid = nodes
            .get_opt(&self.node_name)
            .await
            .map_err(mirror_error("create", &namespace, &name))?
            .and_then(|n| n.metadata.uid);
        let mirror = mirror_pod(pod, &self.node_name, node_uid.as_deref());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&PostParams::default(), &mirror).await {
            Ok(_) => {
                tracing::info!(pod = %format!("{namespace}/{name}"), "mirror pod created");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(source) => Err(mirror_error("create", &namespace, &name)(source)),
        }
    }

    async fn delete(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), StaticPodError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {
                tracing::info!(pod = %format!("{namespace}/{name}"), "mirror pod deleted");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(source) => Err(mirror_error("delete", namespace, name)(source)),
        }
    }
}

/// A recording [`MirrorClient`] for tests.
#[derive(Debug, Default)]
pub struct FakeMirrorClient {
    /// Mirrors created, in order.
    pub created: Mutex<Vec<Pod>>,
    /// Mirrors deleted, `namespace/name`, in order.
    pub deleted: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl MirrorClient for FakeMirrorClient {
    async fn create(&self, pod: &Pod) -> Result<(), StaticPodError> {
        if let Ok(mut created) = self.created.lock() {
            created.push(mirror_pod(pod, "node", None));
        }
        Ok(())
    }

    async fn delete(
        &self,
        namespace: &str,
        name: &str,
        _uid: Option<&str>,
    ) -> Result<(), StaticPodError> {
        if let Ok(mut deleted) = self.deleted.lock() {
            deleted.push(format!("{namespace}/{name}"));
        }
        Ok(())
    }
}

/// The [`PodApi`] pod workers use, aware of static pods: a static pod's status goes to its
/// mirror pod (matched by name, whatever its uid), and "deleting" a finished static pod
/// deletes its mirror. Everything else goes to `inner`.
pub struct StaticPodApi {
    inner: Arc<dyn PodApi>,
    client: Client,
    mirrors: Arc<dyn MirrorClient>,
    uids: StaticUids,
}

impl StaticPodApi {
    /// Wraps `inner`; `uids` says which pods are static.
    pub fn new(
        inner: Arc<dyn PodApi>,
        client: Client,
        mirrors: Arc<dyn MirrorClient>,
        uids: StaticUids,
    ) -> Self {
        Self {
            inner,
            client,
            mirrors,
            uids,
        }
    }
}

/// The uids of the static pods this kubelet runs, shared by the pod manager (writer) and
/// [`StaticPodApi`] (reader).
#[derive(Debug, Clone, Default)]
pub struct StaticUids(Arc<Mutex<std::collections::BTreeSet<String>>>);

impl StaticUids {
    /// Records a static pod.
    pub fn insert(&self, uid: &str) {
        if let Ok(mut set) = self.0.lock() {
            set.insert(uid.to_string());
        }
    }

    /// Forgets a static pod.
    pub fn remove(&self, uid: &str) {
        if let Ok(mut set) = self.0.lock() {
            set.remove(uid);
        }
    }

    /// Whether `uid` is a static pod's.
    pub fn contains(&self, uid: &str) -> bool {
        self.0.lock().is_ok_and(|set| set.contains(uid))
    }
}

#[async_trait::async_trait]
impl PodApi for StaticPodApi {
    async fn update_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ApiError> {
        if !is_static(pod) {
            return self.inner.update_status(pod, status).await;
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let patch = serde_json::json!({ "status": status });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| ApiError::UpdateStatus {
                namespace,
                name,
                source,
            })
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        if !self.uids.contains(uid) {
            return self.inner.delete_pod(namespace, name, uid).await;
        }
        // A static pod is never in the API; what is there is its mirror.
        self.mirrors
            .delete(namespace, name, None)
            .await
            .map_err(|error| ApiError::Injected(error.to_string()))
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ApiError> {
        self.inner.config_map(namespace, name).await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError> {
        self.inner.secret(namespace, name).await
    }

    async fn config_map_any_version(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ApiError> {
        self.inner.config_map_any_version(namespace, name).await
    }

    async fn secret_any_version(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Secret>, ApiError> {
        self.inner.secret_any_version(namespace, name).await
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        self.inner.services(namespace).await
    }

    fn event(&self, event: PodEvent) {
        self.inner.event(event)
    }

    async fn service_account_token(&self, ask: &TokenAsk) -> Result<IssuedToken, ApiError> {
        self.inner.service_account_token(ask).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox:1.35\n";

    #[test]
    fn manifests_become_static_pods_with_upstream_names_and_stable_uids() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("web.yaml"), MANIFEST).expect("write");
        std::fs::write(dir.path().join(".hidden.yaml"), MANIFEST).expect("write");
        std::fs::write(dir.path().join("broken.yaml"), "kind: Service\n").expect("write");
        let pods = read_manifests(dir.path(), "Node-0").expect("read");
        assert_eq!(pods.len(), 1, "hidden and broken files are skipped");
        let (uid, pod) = pods.iter().next().expect("one pod");
        assert_eq!(uid.len(), 32);
        assert_eq!(pod.metadata.name.as_deref(), Some("web-node-0"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some("Node-0")
        );
        assert!(is_static(pod));
        assert_eq!(annotation(pod, CONFIG_HASH), Some(uid.as_str()));
        let again = read_manifests(dir.path(), "Node-0").expect("read");
        assert!(again.contains_key(uid), "same manifest, same uid");
        std::fs::write(
            dir.path().join("web.yaml"),
            MANIFEST.replace("1.35", "1.36"),
        )
        .expect("write");
        let changed = read_manifests(dir.path(), "Node-0").expect("read");
        assert!(
            !changed.contains_key(uid),
            "a changed manifest is a new pod"
        );
    }

    #[test]
    fn mirror_pods_carry_the_hash_and_a_node_owner() {
        let pod = static_pod(
            decode_manifest(MANIFEST).expect("decode").remove(0),
            "node-0",
            Path::new("/etc/kubernetes/manifests/web.yaml"),
        );
        let mirror = mirror_pod(&pod, "node-0", Some("node-uid"));
        assert!(is_mirror(&mirror));
        assert!(mirror.metadata.uid.is_none());
        assert_eq!(
            annotation(&mirror, CONFIG_MIRROR),
            annotation(&pod, CONFIG_HASH)
        );
        let owner = &mirror.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Node", "node-0")
        );
        assert_eq!(owner.controller, Some(true));
        assert!(mirror_matches(&mirror, &pod));
        let json =
            r#"{"kind":"PodList","items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}"#;
        assert_eq!(decode_manifest(json).expect("list").len(), 2);
    }
}
