//! The RBAC authorizer: PolicyRule matching (wildcards, `*/subresource`, resourceNames,
//! nonResourceURLs with trailing `*`), subjects (User, Group, ServiceAccount) and an in-memory
//! index of Roles, ClusterRoles and their bindings, loaded from storage and kept fresh by a
//! storage watch ([`Rbac::run`]), which also drives ClusterRole aggregation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Attributes, Decision};
use crate::auth::User;
use crate::storage::{ListOptions, Storage, StorageError};

/// Storage prefix of every RBAC object.
pub const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// One PolicyRule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Verbs (`*` = all).
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups (`*` = all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources (`*`, `pods`, `pods/log`, `*/scale`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Names (empty = all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Non-resource URLs (`/healthz`, `/api/*`).
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|v| v == "*" || v == want)
}

impl Rule {
    /// Every verb on every resource.
    pub fn everything() -> Self {
        Rule {
            verbs: vec!["*".into()],
            api_groups: vec!["*".into()],
            resources: vec!["*".into()],
            ..Default::default()
        }
    }

    /// Every verb on every non-resource path.
    pub fn every_path() -> Self {
        Rule {
            verbs: vec!["*".into()],
            non_resource_urls: vec!["*".into()],
            ..Default::default()
        }
    }

    /// Whether this is a non-resource rule.
    pub fn is_non_resource(&self) -> bool {
        !self.non_resource_urls.is_empty()
    }

    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        let combined = if subresource.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{subresource}")
        };
        self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
        })
    }

    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| {
            u == "*"
                || u == path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix))
        })
    }

    /// Whether this rule allows `attrs`.
    pub fn allows(&self, attrs: &Attributes) -> bool {
        if !has(&self.verbs, &attrs.verb) {
            return false;
        }
        if !attrs.resource_request {
            return self.url_matches(&attrs.path);
        }
        has(&self.api_groups, &attrs.api_group)
            && self.resource_matches(&attrs.resource, &attrs.subresource)
            && (self.resource_names.is_empty()
                || (!attrs.name.is_empty() && self.resource_names.contains(&attrs.name)))
    }
}

/// A binding subject.
#[derive(Clone, Debug, Default, Deserialize)]
struct Subject {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

/// A binding's reference to a role.
#[derive(Clone, Debug, Default, Deserialize)]
struct RoleRef {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

#[derive(Clone, Debug)]
struct Binding {
    /// Namespace of a RoleBinding (empty for ClusterRoleBindings).
    namespace: String,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

impl Binding {
    fn from_object(object: &Value) -> Option<Self> {
        let role_ref = serde_json::from_value(object.get("roleRef")?.clone()).ok()?;
        let subjects = object
            .get("subjects")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default();
        Some(Binding {
            namespace: crate::objects::meta_str(object, "namespace")
                .unwrap_or("")
                .to_string(),
            role_ref,
            subjects,
        })
    }

    fn applies_to(&self, user: &User) -> bool {
        self.subjects.iter().any(|s| match s.kind.as_str() {
            "User" => s.name == user.name,
            "Group" => user.groups.contains(&s.name),
            "ServiceAccount" => {
                let ns = if s.namespace.is_empty() {
                    &self.namespace
                } else {
                    &s.namespace
                };
                user.name == format!("system:serviceaccount:{ns}:{}", s.name)
            }
            _ => false,
        })
    }
}

/// Rules of a role object.
pub fn rules_of(object: &Value) -> Vec<Rule> {
    object
        .get("rules")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default()
}

/// A consistent view of every RBAC object.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// ClusterRole objects by name.
    pub cluster_roles: HashMap<String, Value>,
    cluster_role_rules: HashMap<String, Vec<Rule>>,
    role_rules: HashMap<(String, String), Vec<Rule>>,
    cluster_role_bindings: Vec<Binding>,
    role_bindings: HashMap<String, Vec<Binding>>,
}

impl Snapshot {
    fn role_ref_rules(&self, binding: &Binding) -> Option<&Vec<Rule>> {
        match binding.role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_role_rules.get(&binding.role_ref.name),
            "Role" => self
                .role_rules
                .get(&(binding.namespace.clone(), binding.role_ref.name.clone())),
            _ => None,
        }
    }

    /// Rules of the role `kind`/`name` (a Role in `namespace`).
    pub fn role_rules(&self, kind: &str, namespace: &str, name: &str) -> Option<Vec<Rule>> {
        match kind {
            "ClusterRole" => self.cluster_role_rules.get(name).cloned(),
            "Role" => self
                .role_rules
                .get(&(namespace.to_string(), name.to_string()))
                .cloned(),
            _ => None,
        }
    }

    /// Every rule `user` holds cluster-wide, plus in `namespace` when given.
    pub fn rules_for(&self, user: &User, namespace: Option<&str>) -> Vec<Rule> {
        let mut out = Vec::new();
        for b in self
            .cluster_role_bindings
            .iter()
            .filter(|b| b.applies_to(user))
        {
            if let Some(rules) = self.role_ref_rules(b) {
                out.extend(rules.iter().cloned());
            }
        }
        if let Some(bindings) = namespace.and_then(|ns| self.role_bindings.get(ns)) {
            for b in bindings.iter().filter(|b| b.applies_to(user)) {
                if let Some(rules) = self.role_ref_rules(b) {
                    out.extend(rules.iter().filter(|r| !r.is_non_resource()).cloned());
                }
            }
        }
        out
    }

    fn allows(&self, attrs: &Attributes) -> bool {
        let visit = |b: &Binding| {
            b.applies_to(&attrs.user)
                && self
                    .role_ref_rules(b)
                    .is_some_and(|rules| rules.iter().any(|r| r.allows(attrs)))
        };
        if self.cluster_role_bindings.iter().any(visit) {
            return true;
        }
        !attrs.namespace.is_empty()
            && self
                .role_bindings
                .get(&attrs.namespace)
                .is_some_and(|bs| bs.iter().any(visit))
    }
}

/// The RBAC authorizer and its index.
pub struct Rbac {
    storage: Arc<dyn Storage>,
    snapshot: RwLock<Arc<Snapshot>>,
    generation: tokio::sync::watch::Sender<u64>,
}

async fn list_all(storage: &dyn Storage, plural: &str) -> Result<(Vec<Value>, i64), StorageError> {
    let list = storage
        .list(&format!("{PREFIX}{plural}/"), &ListOptions::default())
        .await?;
    let items = list
        .items
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    Ok((items, list.revision))
}

impl Rbac {
    /// An empty index over `storage` (call [`Rbac::reload`] or [`Rbac::run`]).
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Rbac {
            storage,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            generation: tokio::sync::watch::channel(0).0,
        }
    }

    /// The current view.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Decides `attrs` (allow or no opinion).
    pub fn authorize(&self, attrs: &Attributes) -> Decision {
        if self.snapshot().allows(attrs) {
            Decision::Allow("RBAC: allowed by a binding".into())
        } else {
            Decision::NoOpinion(String::new())
        }
    }

    /// Rules `user` holds (cluster-wide plus in `namespace`).
    pub fn rules_for(&self, user: &User, namespace: Option<&str>) -> Vec<Rule> {
        self.snapshot().rules_for(user, namespace)
    }

    /// A receiver that changes whenever the index is rebuilt.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Re-reads every RBAC object; returns the store revision read at.
    pub async fn reload(&self) -> Result<i64, StorageError> {
        let s = self.storage.as_ref();
        let (cluster_roles, r1) = list_all(s, "clusterroles").await?;
        let (roles, r2) = list_all(s, "roles").await?;
        let (crbs, r3) = list_all(s, "clusterrolebindings").await?;
        let (rbs, r4) = list_all(s, "rolebindings").await?;
        let mut snap = Snapshot::default();
        for cr in cluster_roles {
            if let Some(name) = crate::objects::name(&cr) {
                snap.cluster_role_rules
                    .insert(name.to_string(), rules_of(&cr));
                snap.cluster_roles.insert(name.to_string(), cr);
            }
        }
        for r in roles {
            let ns = crate::objects::meta_str(&r, "namespace").unwrap_or("");
            if let Some(name) = crate::objects::name(&r) {
                snap.role_rules
                    .insert((ns.to_string(), name.to_string()), rules_of(&r));
            }
        }
        snap.cluster_role_bindings = crbs.iter().filter_map(Binding::from_object).collect();
        for b in rbs.iter().filter_map(Binding::from_object) {
            snap.role_bindings
                .entry(b.namespace.clone())
                .or_default()
                .push(b);
        }
        let snap = Arc::new(snap);
        match self.snapshot.write() {
            Ok(mut g) => *g = snap,
            Err(poisoned) => *poisoned.into_inner() = snap,
        }
        self.generation.send_modify(|g| *g += 1);
        Ok(r1.max(r2).max(r3).max(r4))
    }

    /// Keeps the index fresh forever: reload, then watch the RBAC prefix and reload (and
    /// re-aggregate ClusterRoles) after every burst of changes. Abort the task to stop it.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(error) = self.watch_once().await {
                tracing::warn!(%error, "RBAC watch ended; restarting");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn watch_once(&self) -> Result<(), StorageError> {
        let mut revision = self.reload().await?;
        super::aggregation::aggregate(self.storage.as_ref(), &self.snapshot()).await;
        let mut events = self.storage.watch(PREFIX, revision).await?;
        while let Some(event) = events.next().await {
            revision = revision.max(event?.revision());
            // Drain whatever else is already queued, then rebuild once.
            while let Some(Some(more)) = futures::FutureExt::now_or_never(events.next()) {
                revision = revision.max(more?.revision());
            }
            self.reload().await?;
            super::aggregation::aggregate(self.storage.as_ref(), &self.snapshot()).await;
        }
        tracing::debug!(revision, "RBAC watch stream closed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn rule(v: Value) -> Rule {
        serde_json::from_value(v).expect("rule")
    }

    #[test]
    fn rules_match_wildcards_subresources_names_and_urls() {
        let u = user("u", &[]);
        let get = |res: &str, sub: &str, name: &str| {
            Attributes::resource(u.clone(), "get", "", res, sub, "d", name)
        };
        let r = rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}));
        assert!(r.allows(&get("pods", "", "x")));
        assert!(!r.allows(&get("pods", "log", "x")));
        let r = rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/scale"]}));
        assert!(r.allows(&get("deployments", "scale", "x")));
        assert!(!r.allows(&get("deployments", "", "x")));
        let r = rule(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
            "resourceNames": ["a"]}),
        );
        assert!(r.allows(&get("configmaps", "", "a")));
        assert!(!r.allows(&get("configmaps", "", "b")));
        assert!(!r.allows(&get("configmaps", "", "")));
        let r = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/api/*"]}));
        assert!(r.allows(&Attributes::non_resource(u.clone(), "get", "/healthz")));
        assert!(r.allows(&Attributes::non_resource(u.clone(), "get", "/api/v1")));
        assert!(!r.allows(&Attributes::non_resource(u.clone(), "get", "/apis")));
        assert!(!r.allows(&get("pods", "", "")));
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts() {
        let b = Binding::from_object(&json!({"metadata": {"namespace": "ns"},
            "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"},
                {"kind": "Group", "name": "g"}, {"kind": "User", "name": "alice"}]}))
        .expect("binding");
        assert!(b.applies_to(&user("system:serviceaccount:ns:sa", &[])));
        assert!(!b.applies_to(&user("system:serviceaccount:other:sa", &[])));
        assert!(b.applies_to(&user("bob", &["g"])));
        assert!(b.applies_to(&user("alice", &[])));
        assert!(!b.applies_to(&user("bob", &[])));
    }
}
