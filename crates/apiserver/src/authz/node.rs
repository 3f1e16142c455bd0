//! The Node authorizer (`--authorization-mode Node`), as upstream's: a kubelet identity
//! (`system:node:<name>` in group `system:nodes`) may read the secrets, configmaps,
//! persistent volume claims, persistent volumes and service accounts reachable from the pods
//! bound to its node, create tokens for those service accounts, and use its own Lease in
//! `kube-node-lease`; every other request is checked against the rules of the upstream
//! `system:node` role. Requests of anyone else get no opinion.
//!
//! The reachability graph ([`Graph`]) is built from storage and kept fresh by a watch of pods
//! and persistent volume claims ([`NodeAuthorizer::run`]). What a node may change on its own
//! Node and pods is NodeRestriction admission's job (`admission::noderestriction`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::rbac::Rule;
use super::{Attributes, Decision};
use crate::auth::User;
use crate::storage::{EventType, ListOptions, Storage, StorageError};

/// The group every node identity is in.
pub const NODES_GROUP: &str = "system:nodes";
/// The user-name prefix of node identities.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The namespace of node heartbeat leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

const PODS_PREFIX: &str = "/registry/pods/";
const PVCS_PREFIX: &str = "/registry/persistentvolumeclaims/";

/// The node name of a node identity (`system:node:<name>` in `system:nodes`), if `user` is one.
pub fn node_name(user: &User) -> Option<&str> {
    if !user.groups.iter().any(|g| g == NODES_GROUP) {
        return None;
    }
    user.name
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|n| !n.is_empty())
}

/// Kinds of object a pod can reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A Secret.
    Secret,
    /// A ConfigMap.
    ConfigMap,
    /// A PersistentVolumeClaim.
    Claim,
    /// A ServiceAccount.
    ServiceAccount,
}

type ObjectRef = (Kind, String, String);

/// What one pod bound to a node references.
#[derive(Clone, Debug, Default, PartialEq)]
struct PodRefs {
    node: String,
    refs: HashSet<ObjectRef>,
}

/// The names a pod references, by kind (from volumes, env, envFrom, image pull secrets and the
/// service account).
pub fn pod_references(pod: &Value) -> HashSet<(Kind, String)> {
    let mut out = HashSet::new();
    let Some(spec) = pod.get("spec") else {
        return out;
    };
    let s = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let mut add = |kind: Kind, name: Option<String>| {
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            out.insert((kind, n));
        }
    };
    add(
        Kind::ServiceAccount,
        Some(s(spec, "/serviceAccountName").unwrap_or_else(|| "default".into())),
    );
    let pod_name = crate::objects::name(pod).unwrap_or("");
    for v in array(spec, "imagePullSecrets") {
        add(Kind::Secret, s(v, "/name"));
    }
    for vol in array(spec, "volumes") {
        add(Kind::Secret, s(vol, "/secret/secretName"));
        add(Kind::ConfigMap, s(vol, "/configMap/name"));
        add(Kind::Claim, s(vol, "/persistentVolumeClaim/claimName"));
        add(Kind::Secret, s(vol, "/csi/nodePublishSecretRef/name"));
        if vol.get("ephemeral").is_some() {
            let vol_name = s(vol, "/name").unwrap_or_default();
            add(Kind::Claim, Some(format!("{pod_name}-{vol_name}")));
        }
        for src in array(vol, "projected/sources") {
            add(Kind::Secret, s(src, "/secret/name"));
            add(Kind::ConfigMap, s(src, "/configMap/name"));
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in array(spec, list) {
            for e in array(c, "env") {
                add(Kind::Secret, s(e, "/valueFrom/secretKeyRef/name"));
                add(Kind::ConfigMap, s(e, "/valueFrom/configMapKeyRef/name"));
            }
            for e in array(c, "envFrom") {
                add(Kind::Secret, s(e, "/secretRef/name"));
                add(Kind::ConfigMap, s(e, "/configMapRef/name"));
            }
        }
    }
    out
}

fn array<'a>(v: &'a Value, path: &str) -> impl Iterator<Item = &'a Value> {
    let mut cur = Some(v);
    for part in path.split('/') {
        cur = cur.and_then(|c| c.get(part));
    }
    cur.and_then(Value::as_array).into_iter().flatten()
}

/// The reachability graph: pods bound to nodes, what they reference, and which volume each
/// claim is bound to.
#[derive(Debug, Default)]
pub struct Graph {
    pods: HashMap<String, PodRefs>,
    /// Referenced object -> node -> number of that node's pods referencing it.
    reachable: HashMap<ObjectRef, HashMap<String, usize>>,
    /// Claim (namespace, name) -> bound PersistentVolume name.
    claim_volume: HashMap<(String, String), String>,
    /// PersistentVolume name -> claims bound to it.
    volume_claims: HashMap<String, HashSet<(String, String)>>,
}

impl Graph {
    /// Records (or replaces) the pod stored at `key`; `None` removes it.
    pub fn set_pod(&mut self, key: &str, pod: Option<&Value>) {
        if let Some(old) = self.pods.remove(key) {
            for r in &old.refs {
                if let Some(nodes) = self.reachable.get_mut(r) {
                    if let Some(n) = nodes.get_mut(&old.node) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            nodes.remove(&old.node);
                        }
                    }
                    if nodes.is_empty() {
                        self.reachable.remove(r);
                    }
                }
            }
        }
        let Some(pod) = pod else { return };
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if node.is_empty() {
            return;
        }
        let ns = crate::objects::meta_str(pod, "namespace").unwrap_or("");
        let refs: HashSet<ObjectRef> = pod_references(pod)
            .into_iter()
            .map(|(k, n)| (k, ns.to_string(), n))
            .collect();
        for r in &refs {
            *self
                .reachable
                .entry(r.clone())
                .or_default()
                .entry(node.to_string())
                .or_default() += 1;
        }
        self.pods.insert(
            key.to_string(),
            PodRefs {
                node: node.to_string(),
                refs,
            },
        );
    }

    /// Records (or replaces) a claim's bound volume; `None` removes the claim.
    pub fn set_claim(&mut self, namespace: &str, name: &str, claim: Option<&Value>) {
        let id = (namespace.to_string(), name.to_string());
        if let Some(old) = self.claim_volume.remove(&id) {
            if let Some(set) = self.volume_claims.get_mut(&old) {
                set.remove(&id);
                if set.is_empty() {
                    self.volume_claims.remove(&old);
                }
            }
        }
        let volume = claim
            .and_then(|c| c.pointer("/spec/volumeName"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if !volume.is_empty() {
            self.volume_claims
                .entry(volume.to_string())
                .or_default()
                .insert(id.clone());
            self.claim_volume.insert(id, volume.to_string());
        }
    }

    /// Whether a pod bound to `node` references `kind` `namespace/name`.
    pub fn reaches(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        self.reachable
            .get(&(kind, namespace.to_string(), name.to_string()))
            .is_some_and(|nodes| nodes.contains_key(node))
    }

    /// Whether the PersistentVolume `name` is bound to a claim reachable from `node`.
    pub fn reaches_volume(&self, node: &str, name: &str) -> bool {
        self.volume_claims.get(name).is_some_and(|claims| {
            claims
                .iter()
                .any(|(ns, claim)| self.reaches(node, Kind::Claim, ns, claim))
        })
    }
}

/// The Node authorizer and its graph.
pub struct NodeAuthorizer {
    storage: Arc<dyn Storage>,
    graph: RwLock<Graph>,
    rules: Vec<Rule>,
}

/// The rules of the upstream `system:node` ClusterRole (from the bootstrap policy).
pub fn node_rules() -> Vec<Rule> {
    super::policy::cluster_roles()
        .iter()
        .find(|r| r.pointer("/metadata/name").and_then(Value::as_str) == Some("system:node"))
        .map(super::rbac::rules_of)
        .unwrap_or_default()
}

impl NodeAuthorizer {
    /// An authorizer with an empty graph over `storage` (fill it with [`NodeAuthorizer::run`]).
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        NodeAuthorizer {
            storage,
            graph: RwLock::new(Graph::default()),
            rules: node_rules(),
        }
    }

    fn with_graph<T>(&self, f: impl FnOnce(&Graph) -> T) -> T {
        match self.graph.read() {
            Ok(g) => f(&g),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn with_graph_mut<T>(&self, f: impl FnOnce(&mut Graph) -> T) -> T {
        match self.graph.write() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Decides `attrs`.
    pub fn authorize(&self, attrs: &Attributes) -> Decision {
        let Some(node) = node_name(&attrs.user) else {
            return Decision::NoOpinion(String::new());
        };
        if !attrs.resource_request {
            return self.by_rules(attrs);
        }
        match (attrs.api_group.as_str(), attrs.resource.as_str()) {
            ("", "secrets") => self.read_reachable(attrs, node, Kind::Secret),
            ("", "configmaps") => self.read_reachable(attrs, node, Kind::ConfigMap),
            ("", "persistentvolumeclaims") if attrs.subresource.is_empty() => {
                self.read_reachable(attrs, node, Kind::Claim)
            }
            ("", "persistentvolumeclaims") if attrs.subresource == "status" => {
                if !matches!(attrs.verb.as_str(), "get" | "update" | "patch") {
                    return no_opinion(
                        "can only get, update, or patch persistentvolumeclaim status",
                    );
                }
                self.reachable(node, Kind::Claim, &attrs.namespace, &attrs.name)
            }
            ("", "persistentvolumes") => {
                if attrs.verb != "get" {
                    return no_opinion("can only get individual resources of this type");
                }
                if attrs.subresource.is_empty()
                    && !attrs.name.is_empty()
                    && self.with_graph(|g| g.reaches_volume(node, &attrs.name))
                {
                    return Decision::Allow(String::new());
                }
                no_relationship(node, "persistentvolume", "", &attrs.name)
            }
            ("", "serviceaccounts") => {
                if attrs.subresource == "token" {
                    if attrs.verb != "create" {
                        return no_opinion(
                            "can only create tokens for individual service accounts",
                        );
                    }
                    return self.reachable(
                        node,
                        Kind::ServiceAccount,
                        &attrs.namespace,
                        &attrs.name,
                    );
                }
                if attrs.subresource.is_empty() && attrs.verb == "get" {
                    return self.reachable(
                        node,
                        Kind::ServiceAccount,
                        &attrs.namespace,
                        &attrs.name,
                    );
                }
                self.by_rules(attrs)
            }
            ("coordination.k8s.io", "leases") => {
                if !matches!(
                    attrs.verb.as_str(),
                    "get" | "create" | "update" | "patch" | "delete"
                ) {
                    return no_opinion(
                        "can only get, create, update, patch, or delete a node lease",
                    );
                }
                if attrs.namespace != NODE_LEASE_NAMESPACE {
                    return no_opinion(&format!(
                        "can only access leases in the {NODE_LEASE_NAMESPACE} system namespace"
                    ));
                }
                if attrs.verb != "create" && attrs.name != node {
                    return no_opinion(
                        "can only access node lease with the same name as the requesting node",
                    );
                }
                Decision::Allow(String::new())
            }
            _ => self.by_rules(attrs),
        }
    }

    fn by_rules(&self, attrs: &Attributes) -> Decision {
        if self.rules.iter().any(|r| r.allows(attrs)) {
            Decision::Allow(String::new())
        } else {
            Decision::NoOpinion(String::new())
        }
    }

    /// get (or list/watch of one name) of an object reachable from the node.
    fn read_reachable(&self, attrs: &Attributes, node: &str, kind: Kind) -> Decision {
        if !matches!(attrs.verb.as_str(), "get" | "list" | "watch") || !attrs.subresource.is_empty()
        {
            return no_opinion("can only get individual resources of this type");
        }
        if attrs.name.is_empty() {
            return no_opinion("No Object name found");
        }
        self.reachable(node, kind, &attrs.namespace, &attrs.name)
    }

    fn reachable(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> Decision {
        if !name.is_empty() && self.with_graph(|g| g.reaches(node, kind, namespace, name)) {
            return Decision::Allow(String::new());
        }
        let kind_name = match kind {
            Kind::Secret => "secret",
            Kind::ConfigMap => "configmap",
            Kind::Claim => "persistentvolumeclaim",
            Kind::ServiceAccount => "serviceaccount",
        };
        no_relationship(node, kind_name, namespace, name)
    }

    /// Rebuilds the graph from storage; returns the revision read at.
    pub async fn reload(&self) -> Result<i64, StorageError> {
        let pods = self
            .storage
            .list(PODS_PREFIX, &ListOptions::default())
            .await?;
        let claims = self
            .storage
            .list(PVCS_PREFIX, &ListOptions::default())
            .await?;
        let mut graph = Graph::default();
        for kv in &pods.items {
            if let Ok(pod) = serde_json::from_slice::<Value>(&kv.value) {
                graph.set_pod(&kv.key, Some(&pod));
            }
        }
        for kv in &claims.items {
            if let (Some((ns, name)), Ok(claim)) = (
                claim_id(&kv.key),
                serde_json::from_slice::<Value>(&kv.value),
            ) {
                graph.set_claim(ns, name, Some(&claim));
            }
        }
        self.with_graph_mut(|g| *g = graph);
        Ok(pods.revision.max(claims.revision))
    }

    /// Keeps the graph fresh forever (abort the task to stop it).
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(error) = self.watch_once().await {
                tracing::warn!(%error, "node authorizer graph watch ended; restarting");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn watch_once(&self) -> Result<(), StorageError> {
        let revision = self.reload().await?;
        let pods = self.storage.watch(PODS_PREFIX, revision).await?;
        let claims = self.storage.watch(PVCS_PREFIX, revision).await?;
        let mut events = futures::stream::select(pods, claims);
        while let Some(event) = events.next().await {
            let event = event?;
            let object = match event.event_type {
                EventType::Deleted => None,
                _ => serde_json::from_slice::<Value>(&event.kv.value).ok(),
            };
            let key = event.kv.key.as_str();
            self.with_graph_mut(|g| {
                if key.starts_with(PODS_PREFIX) {
                    g.set_pod(key, object.as_ref());
                } else if let Some((ns, name)) = claim_id(key) {
                    g.set_claim(ns, name, object.as_ref());
                }
            });
        }
        Ok(())
    }
}

fn claim_id(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(PVCS_PREFIX)?.split_once('/')
}

fn no_opinion(reason: &str) -> Decision {
    Decision::NoOpinion(reason.to_string())
}

fn no_relationship(node: &str, kind: &str, namespace: &str, name: &str) -> Decision {
    let object = if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    };
    Decision::NoOpinion(format!(
        "no relationship found between node '{node}' and this object"
    ))
    .with_debug(kind, &object)
}

impl Decision {
    fn with_debug(self, kind: &str, object: &str) -> Self {
        tracing::debug!(kind, object, reason = self.reason(), "node authorizer");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node_user(name: &str) -> User {
        User {
            name: format!("system:node:{name}"),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
            ..Default::default()
        }
    }

    fn pod(ns: &str, name: &str, node: &str) -> Value {
        json!({"metadata": {"namespace": ns, "name": name},
            "spec": {"nodeName": node, "serviceAccountName": "sa",
                "imagePullSecrets": [{"name": "pull"}],
                "volumes": [{"name": "v", "secret": {"secretName": "vol-secret"}},
                    {"name": "c", "persistentVolumeClaim": {"claimName": "claim"}},
                    {"name": "p", "projected": {"sources": [{"configMap": {"name": "proj"}}]}}],
                "containers": [{"name": "c", "env": [{"name": "X",
                    "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}],
                    "envFrom": [{"configMapRef": {"name": "env-cm"}}]}]}})
    }

    async fn authorizer() -> (NodeAuthorizer, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::storage::SqliteStorage::open(&dir.path().join("db"))
            .await
            .expect("sqlite");
        (NodeAuthorizer::new(Arc::new(storage)), dir)
    }

    fn get(user: &User, resource: &str, ns: &str, name: &str) -> Attributes {
        Attributes::resource(user.clone(), "get", "", resource, "", ns, name)
    }

    #[tokio::test]
    async fn a_node_reads_only_what_its_pods_reference() {
        let (a, _dir) = authorizer().await;
        a.with_graph_mut(|g| {
            g.set_pod("/registry/pods/d/p", Some(&pod("d", "p", "n1")));
            g.set_claim("d", "claim", Some(&json!({"spec": {"volumeName": "pv1"}})));
        });
        let n1 = node_user("n1");
        let n2 = node_user("n2");
        for (res, name) in [
            ("secrets", "vol-secret"),
            ("secrets", "env-secret"),
            ("secrets", "pull"),
            ("configmaps", "proj"),
            ("configmaps", "env-cm"),
            ("persistentvolumeclaims", "claim"),
            ("serviceaccounts", "sa"),
        ] {
            assert!(
                a.authorize(&get(&n1, res, "d", name)).allowed(),
                "{res}/{name}"
            );
            assert!(
                !a.authorize(&get(&n2, res, "d", name)).allowed(),
                "{res}/{name}"
            );
            assert!(!a.authorize(&get(&n1, res, "other", name)).allowed());
        }
        assert!(a
            .authorize(&get(&n1, "persistentvolumes", "", "pv1"))
            .allowed());
        assert!(!a
            .authorize(&get(&n2, "persistentvolumes", "", "pv1"))
            .allowed());
        assert!(!a
            .authorize(&get(&n1, "secrets", "d", "unrelated"))
            .allowed());
        let list = Attributes::resource(n1.clone(), "list", "", "secrets", "", "d", "");
        assert!(!a.authorize(&list).allowed());
        a.with_graph_mut(|g| g.set_pod("/registry/pods/d/p", None));
        assert!(!a
            .authorize(&get(&n1, "secrets", "d", "vol-secret"))
            .allowed());
        assert!(!a
            .authorize(&get(&n1, "persistentvolumes", "", "pv1"))
            .allowed());
    }

    #[tokio::test]
    async fn leases_tokens_and_role_rules_follow_upstream() {
        let (a, _dir) = authorizer().await;
        a.with_graph_mut(|g| g.set_pod("/registry/pods/d/p", Some(&pod("d", "p", "n1"))));
        let n1 = node_user("n1");
        let lease = |verb: &str, ns: &str, name: &str| {
            Attributes::resource(
                n1.clone(),
                verb,
                "coordination.k8s.io",
                "leases",
                "",
                ns,
                name,
            )
        };
        assert!(a
            .authorize(&lease("update", "kube-node-lease", "n1"))
            .allowed());
        assert!(a
            .authorize(&lease("create", "kube-node-lease", ""))
            .allowed());
        assert!(!a
            .authorize(&lease("update", "kube-node-lease", "n2"))
            .allowed());
        assert!(!a.authorize(&lease("update", "default", "n1")).allowed());
        assert!(!a.authorize(&lease("list", "kube-node-lease", "")).allowed());
        let token = |name: &str| {
            Attributes::resource(
                n1.clone(),
                "create",
                "",
                "serviceaccounts",
                "token",
                "d",
                name,
            )
        };
        assert!(a.authorize(&token("sa")).allowed());
        assert!(!a.authorize(&token("other")).allowed());
        let pods = Attributes::resource(n1.clone(), "list", "", "pods", "", "", "");
        assert!(a.authorize(&pods).allowed());
        let status = Attributes::resource(n1.clone(), "update", "", "nodes", "status", "", "n1");
        assert!(a.authorize(&status).allowed());
        let deploy = Attributes::resource(n1.clone(), "list", "apps", "deployments", "", "", "");
        assert!(!a.authorize(&deploy).allowed());
        let plain = User {
            name: "system:node:n1".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        };
        assert!(!a
            .authorize(&get(&plain, "secrets", "d", "vol-secret"))
            .allowed());
    }
}
