//! The resource registry: every served resource as data (group, version, kind, plural, singular,
//! short names, scope, verbs, subresources, categories).
//!
//! Start with [`RESOURCES`] (the table) and the lookups [`find`], [`find_by_kind`] and [`groups`].
//! The apiserver builds discovery, routing and storage keys from it; clients (kubectl) use it to
//! resolve short names without a discovery round trip.

/// The verbs of a resource that supports everything.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Verbs of resources that have no `deletecollection` (namespaces).
pub const VERBS_NO_DELETECOLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// A subresource such as `pods/status` or `deployments/scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// Name after the slash: `status`, `scale`, `log`, ...
    pub name: &'static str,
    /// Group of the subresource's kind (`""` for core).
    pub group: &'static str,
    /// Version of the subresource's kind.
    pub version: &'static str,
    /// Kind served by the subresource (`Scale`, `Binding`, ...).
    pub kind: &'static str,
    /// Verbs the subresource supports.
    pub verbs: &'static [&'static str],
}

/// One served resource in one group version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// Version, `v1`, `v2`, ...
    pub version: &'static str,
    /// Kind, `Pod`.
    pub kind: &'static str,
    /// Plural resource name used in paths, `pods`.
    pub plural: &'static str,
    /// Singular name, `pod`.
    pub singular: &'static str,
    /// Short names, `po`.
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Verbs the resource supports.
    pub verbs: &'static [&'static str],
    /// Subresources (`status`, `scale`, ...).
    pub subresources: &'static [Subresource],
    /// Categories, such as `all`.
    pub categories: &'static [&'static str],
}

impl Resource {
    /// `v1` for core, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of this resource, `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The subresource called `name`, if served.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether the resource has a `status` subresource (status is then not written through the
    /// main resource).
    pub fn has_status(&self) -> bool {
        self.subresource("status").is_some()
    }

    /// Whether `verb` is supported.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Storage prefix for this resource: `/registry/pods` for core, `/registry/<group>/<plural>`
    /// otherwise; every version of a resource shares it, and `events.k8s.io` Events share the
    /// core `/registry/events`.
    pub fn storage_prefix(&self) -> String {
        // events.k8s.io Events are stored as core Events (converted on the way in and out).
        if self.group.is_empty() || (self.group == "events.k8s.io" && self.plural == "events") {
            format!("/registry/{}", self.plural)
        } else {
            format!("/registry/{}/{}", self.group, self.plural)
        }
    }
}

const fn status(kind: &'static str, group: &'static str, version: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: STATUS_VERBS,
    }
}

const fn scale() -> Subresource {
    Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: STATUS_VERBS,
    }
}

const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        singular,
        short_names: &[],
        namespaced,
        verbs: ALL_VERBS,
        subresources: &[],
        categories: &[],
    }
}

const POD_SUBRESOURCES: &[Subresource] = &[
    Subresource {
        name: "attach",
        group: "",
        version: "v1",
        kind: "PodAttachOptions",
        verbs: &["create", "get"],
    },
    Subresource {
        name: "binding",
        group: "",
        version: "v1",
        kind: "Binding",
        verbs: &["create"],
    },
    Subresource {
        name: "ephemeralcontainers",
        group: "",
        version: "v1",
        kind: "Pod",
        verbs: STATUS_VERBS,
    },
    Subresource {
        name: "eviction",
        group: "policy",
        version: "v1",
        kind: "Eviction",
        verbs: &["create"],
    },
    Subresource {
        name: "exec",
        group: "",
        version: "v1",
        kind: "PodExecOptions",
        verbs: &["create", "get"],
    },
    Subresource {
        name: "log",
        group: "",
        version: "v1",
        kind: "Pod",
        verbs: &["get"],
    },
    Subresource {
        name: "portforward",
        group: "",
        version: "v1",
        kind: "PodPortForwardOptions",
        verbs: &["create", "get"],
    },
    status("Pod", "", "v1"),
];

const ALL: &[&str] = &["all"];

/// Every served resource. Order matters for discovery: groups appear in first-seen order.
pub static RESOURCES: &[Resource] = &[
    // core/v1
    Resource {
        verbs: &["create"],
        ..res("", "v1", "Binding", "bindings", "binding", true)
    },
    Resource {
        short_names: &["cm"],
        ..res("", "v1", "ConfigMap", "configmaps", "configmap", true)
    },
    Resource {
        short_names: &["ep"],
        ..res("", "v1", "Endpoints", "endpoints", "endpoints", true)
    },
    Resource {
        short_names: &["ev"],
        ..res("", "v1", "Event", "events", "event", true)
    },
    Resource {
        short_names: &["limits"],
        ..res("", "v1", "LimitRange", "limitranges", "limitrange", true)
    },
    Resource {
        short_names: &["ns"],
        verbs: VERBS_NO_DELETECOLLECTION,
        subresources: &[
            Subresource {
                name: "finalize",
                group: "",
                version: "v1",
                kind: "Namespace",
                verbs: &["update"],
            },
            status("Namespace", "", "v1"),
        ],
        ..res("", "v1", "Namespace", "namespaces", "namespace", false)
    },
    Resource {
        short_names: &["no"],
        subresources: &[
            Subresource {
                name: "proxy",
                group: "",
                version: "v1",
                kind: "NodeProxyOptions",
                verbs: &["create", "delete", "get", "patch", "update"],
            },
            status("Node", "", "v1"),
        ],
        ..res("", "v1", "Node", "nodes", "node", false)
    },
    Resource {
        short_names: &["pvc"],
        subresources: &[status("PersistentVolumeClaim", "", "v1")],
        ..res(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            true,
        )
    },
    Resource {
        short_names: &["pv"],
        subresources: &[status("PersistentVolume", "", "v1")],
        ..res(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            "persistentvolume",
            false,
        )
    },
    Resource {
        short_names: &["po"],
        subresources: POD_SUBRESOURCES,
        categories: ALL,
        ..res("", "v1", "Pod", "pods", "pod", true)
    },
    res("", "v1", "PodTemplate", "podtemplates", "podtemplate", true),
    Resource {
        short_names: &["rc"],
        subresources: &[scale(), status("ReplicationController", "", "v1")],
        categories: ALL,
        ..res(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            "replicationcontroller",
            true,
        )
    },
    Resource {
        short_names: &["quota"],
        subresources: &[status("ResourceQuota", "", "v1")],
        ..res(
            "",
            "v1",
            "ResourceQuota",
            "resourcequotas",
            "resourcequota",
            true,
        )
    },
    res("", "v1", "Secret", "secrets", "secret", true),
    Resource {
        short_names: &["sa"],
        subresources: &[Subresource {
            name: "token",
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: &["create"],
        }],
        ..res(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            "serviceaccount",
            true,
        )
    },
    Resource {
        short_names: &["svc"],
        verbs: &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
        subresources: &[
            Subresource {
                name: "proxy",
                group: "",
                version: "v1",
                kind: "ServiceProxyOptions",
                verbs: &["create", "delete", "get", "patch", "update"],
            },
            status("Service", "", "v1"),
        ],
        categories: ALL,
        ..res("", "v1", "Service", "services", "service", true)
    },
    // apps/v1
    res(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
    ),
    Resource {
        short_names: &["ds"],
        subresources: &[status("DaemonSet", "apps", "v1")],
        categories: ALL,
        ..res("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true)
    },
    Resource {
        short_names: &["deploy"],
        subresources: &[scale(), status("Deployment", "apps", "v1")],
        categories: ALL,
        ..res(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            "deployment",
            true,
        )
    },
    Resource {
        short_names: &["rs"],
        subresources: &[scale(), status("ReplicaSet", "apps", "v1")],
        categories: ALL,
        ..res(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            "replicaset",
            true,
        )
    },
    Resource {
        short_names: &["sts"],
        subresources: &[scale(), status("StatefulSet", "apps", "v1")],
        categories: ALL,
        ..res(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            "statefulset",
            true,
        )
    },
    // events.k8s.io/v1
    Resource {
        short_names: &["ev"],
        ..res("events.k8s.io", "v1", "Event", "events", "event", true)
    },
    // autoscaling
    Resource {
        short_names: &["hpa"],
        subresources: &[status("HorizontalPodAutoscaler", "autoscaling", "v2")],
        categories: ALL,
        ..res(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            true,
        )
    },
    Resource {
        short_names: &["hpa"],
        subresources: &[status("HorizontalPodAutoscaler", "autoscaling", "v1")],
        categories: ALL,
        ..res(
            "autoscaling",
            "v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            true,
        )
    },
    // batch/v1
    Resource {
        short_names: &["cj"],
        subresources: &[status("CronJob", "batch", "v1")],
        categories: ALL,
        ..res("batch", "v1", "CronJob", "cronjobs", "cronjob", true)
    },
    Resource {
        subresources: &[status("Job", "batch", "v1")],
        categories: ALL,
        ..res("batch", "v1", "Job", "jobs", "job", true)
    },
    // networking.k8s.io/v1
    Resource {
        short_names: &["ing"],
        subresources: &[status("Ingress", "networking.k8s.io", "v1")],
        ..res(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            "ingress",
            true,
        )
    },
    res(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        false,
    ),
    Resource {
        short_names: &["netpol"],
        ..res(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            "networkpolicy",
            true,
        )
    },
    // policy/v1
    Resource {
        short_names: &["pdb"],
        subresources: &[status("PodDisruptionBudget", "policy", "v1")],
        ..res(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            true,
        )
    },
    // rbac.authorization.k8s.io/v1
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        true,
    ),
    // storage.k8s.io/v1
    Resource {
        short_names: &["sc"],
        ..res(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            "storageclass",
            false,
        )
    },
    // scheduling.k8s.io/v1
    Resource {
        short_names: &["pc"],
        ..res(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            "priorityclass",
            false,
        )
    },
    // authentication.k8s.io/v1 and authorization.k8s.io/v1 (reviews: create only, not stored)
    Resource {
        verbs: &["create"],
        ..res(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            "",
            false,
        )
    },
    Resource {
        verbs: &["create"],
        ..res(
            "authentication.k8s.io",
            "v1",
            "TokenReview",
            "tokenreviews",
            "",
            false,
        )
    },
    Resource {
        verbs: &["create"],
        ..res(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            "",
            true,
        )
    },
    Resource {
        verbs: &["create"],
        ..res(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            "",
            false,
        )
    },
    Resource {
        verbs: &["create"],
        ..res(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            "",
            false,
        )
    },
    Resource {
        verbs: &["create"],
        ..res(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            "",
            false,
        )
    },
    // coordination.k8s.io/v1
    res(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
    ),
    // discovery.k8s.io/v1
    res(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
    ),
];

/// A served group with its versions, preferred version first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Group name (`""` for core).
    pub name: &'static str,
    /// Versions, preferred first.
    pub versions: Vec<&'static str>,
}

/// The resource `plural` in `group`/`version`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of `kind` in `group`/`version`.
pub fn find_by_kind(group: &str, version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Resources whose plural, singular, short name or kind (case-insensitive) is `name`, preferred
/// versions first (what `kubectl get NAME` resolves).
pub fn resolve(name: &str) -> Vec<&'static Resource> {
    let lower = name.to_ascii_lowercase();
    let (name, group) = match lower.split_once('.') {
        Some((n, g)) => (n.to_string(), Some(g.to_string())),
        None => (lower, None),
    };
    let preferred: Vec<&'static Resource> = groups()
        .iter()
        .flat_map(|g| {
            g.versions
                .first()
                .map(|v| (g.name, *v))
                .into_iter()
                .collect::<Vec<_>>()
        })
        .flat_map(|(g, v)| {
            RESOURCES
                .iter()
                .filter(move |r| r.group == g && r.version == v)
        })
        .collect();
    preferred
        .into_iter()
        .filter(|r| group.as_deref().is_none_or(|g| r.group == g))
        .filter(|r| {
            r.plural == name
                || r.singular == name
                || r.kind.eq_ignore_ascii_case(&name)
                || r.short_names.contains(&name.as_str())
        })
        .collect()
}

/// The preferred version of `group`.
pub fn preferred_version(group: &str) -> Option<&'static str> {
    groups()
        .into_iter()
        .find(|g| g.name == group)
        .and_then(|g| g.versions.first().copied())
}

/// Every served group in discovery order, with versions (preferred first; `autoscaling` prefers
/// `v2` as upstream does).
pub fn groups() -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for r in RESOURCES {
        match groups.iter_mut().find(|g| g.name == r.group) {
            Some(g) => {
                if !g.versions.contains(&r.version) {
                    g.versions.push(r.version);
                }
            }
            None => groups.push(Group {
                name: r.group,
                versions: vec![r.version],
            }),
        }
    }
    groups
}

/// Resources served in `group`/`version`.
pub fn resources_in(group: &str, version: &str) -> Vec<&'static Resource> {
    RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_namespaced_with_status_and_log() {
        let pods = find("", "v1", "pods").expect("pods");
        assert!(pods.namespaced);
        assert_eq!(pods.kind, "Pod");
        assert_eq!(pods.list_kind(), "PodList");
        assert!(pods.has_status());
        assert!(pods.subresource("log").is_some());
        assert_eq!(pods.storage_prefix(), "/registry/pods");
    }

    #[test]
    fn non_core_groups_have_group_in_storage_prefix() {
        let d = find("apps", "v1", "deployments").expect("deployments");
        assert_eq!(d.storage_prefix(), "/registry/apps/deployments");
        assert_eq!(d.api_version(), "apps/v1");
        assert_eq!(d.subresource("scale").map(|s| s.kind), Some("Scale"));
    }

    #[test]
    fn autoscaling_prefers_v2() {
        assert_eq!(preferred_version("autoscaling"), Some("v2"));
        assert_eq!(preferred_version(""), Some("v1"));
    }

    #[test]
    fn short_names_resolve_to_resources() {
        let found = resolve("deploy");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].plural, "deployments");
        assert_eq!(resolve("po")[0].plural, "pods");
        assert_eq!(resolve("Service")[0].plural, "services");
        assert_eq!(resolve("deployments.apps")[0].group, "apps");
    }

    #[test]
    fn every_plural_is_unique_within_a_group_version() {
        for r in RESOURCES {
            let same = RESOURCES
                .iter()
                .filter(|o| o.group == r.group && o.version == r.version && o.plural == r.plural)
                .count();
            assert_eq!(same, 1, "{}/{} {}", r.group, r.version, r.plural);
        }
    }

    #[test]
    fn required_groups_are_served() {
        let names: Vec<&str> = groups().iter().map(|g| g.name).collect();
        for g in [
            "",
            "apps",
            "batch",
            "coordination.k8s.io",
            "discovery.k8s.io",
            "events.k8s.io",
            "autoscaling",
            "policy",
            "rbac.authorization.k8s.io",
            "scheduling.k8s.io",
            "storage.k8s.io",
            "networking.k8s.io",
        ] {
            assert!(names.contains(&g), "{g}");
        }
    }
}
