//! The server's resource catalog, read from discovery (`/api/v1`, `/apis`, `/apis/<group>/<version>`)
//! so that resource names, short names and kinds are never hard-coded. [`Catalog::resolve`] maps
//! what a user types (`po`, `deploy`, `deployments.apps`, `Service`) to a resource.

use futures::future::try_join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::core::{ApiResource, GroupVersion};
use kube::Client;

use crate::error::{Error, Result};

/// One served resource type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceInfo {
    /// API group (`""` for core).
    pub group: String,
    /// The served (preferred) version.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Plural resource name, e.g. `deployments`.
    pub plural: String,
    /// Singular name, e.g. `deployment`.
    pub singular: String,
    /// Short names, e.g. `deploy`.
    pub short_names: Vec<String>,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Supported verbs.
    pub verbs: Vec<String>,
    /// Categories such as `all`.
    pub categories: Vec<String>,
    /// Subresources, e.g. `status`, `scale`.
    pub subresources: Vec<String>,
}

impl ResourceInfo {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kube-rs description used to build dynamic API handles.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// `deployment.apps` / `pod`: the name printers use (`deployment.apps/web created`).
    pub fn group_kind(&self) -> String {
        let kind = self.kind.to_lowercase();
        if self.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.group)
        }
    }

    /// `deployments.apps` / `pods`: the name error messages use.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether the apiserver knows this kind natively (strategic merge patch applies).
    pub fn is_builtin(&self) -> bool {
        is_builtin_group(&self.group)
    }
}

/// Groups served by the apiserver itself rather than by CRDs or aggregated servers.
pub fn is_builtin_group(group: &str) -> bool {
    group.is_empty()
        || !group.contains('.')
        || (group.ends_with(".k8s.io") && !group.ends_with(".x-k8s.io"))
}

/// All served resources, core group first, then groups in the order the server lists them.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    resources: Vec<ResourceInfo>,
}

impl Catalog {
    /// A catalog over known resources (tests).
    pub fn new(resources: Vec<ResourceInfo>) -> Self {
        Catalog { resources }
    }

    /// Reads the catalog from the server's discovery endpoints.
    pub async fn discover(client: &Client) -> Result<Self> {
        let core = client.list_core_api_resources("v1").await?;
        let groups = client.list_api_groups().await?;
        let versions: Vec<String> = groups
            .groups
            .iter()
            .filter_map(|g| {
                g.preferred_version
                    .as_ref()
                    .map(|v| v.group_version.clone())
                    .or_else(|| g.versions.first().map(|v| v.group_version.clone()))
            })
            .collect();
        let lists = try_join_all(
            versions
                .iter()
                .map(|gv| async move { client.list_api_group_resources(gv).await }),
        )
        .await?;
        let mut resources = from_list(&core);
        for list in &lists {
            resources.extend(from_list(list));
        }
        Ok(Catalog { resources })
    }

    /// Every resource.
    pub fn all(&self) -> &[ResourceInfo] {
        &self.resources
    }

    /// Resolves what a user typed: plural, singular, short name or kind, optionally `.group` or
    /// `.version.group` qualified.
    pub fn resolve(&self, typed: &str) -> Result<&ResourceInfo> {
        let lower = typed.to_lowercase();
        let (name, group) = match lower.split_once('.') {
            Some((name, rest)) => (name.to_string(), Some(strip_version(rest))),
            None => (lower.clone(), None),
        };
        let in_group = |r: &&ResourceInfo| group.as_deref().is_none_or(|g| r.group == g);
        let matchers: [&dyn Fn(&ResourceInfo) -> bool; 4] = [
            &|r| r.plural == name,
            &|r| r.singular == name,
            &|r| r.short_names.contains(&name),
            &|r| r.kind.to_lowercase() == name,
        ];
        for matcher in matchers {
            if let Some(found) = self.resources.iter().filter(in_group).find(|r| matcher(r)) {
                return Ok(found);
            }
        }
        Err(Error::Usage(format!(
            "the server doesn't have a resource type \"{typed}\""
        )))
    }

    /// Finds the resource for a manifest's `apiVersion` and `kind`. The returned info carries the
    /// manifest's version.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Result<ResourceInfo> {
        let gv: GroupVersion = api_version.parse().map_err(|_| {
            Error::Usage(format!(
                "invalid apiVersion {api_version:?} for kind {kind:?}"
            ))
        })?;
        self.resources
            .iter()
            .find(|r| r.group == gv.group && r.kind == kind)
            .map(|r| ResourceInfo {
                version: gv.version.clone(),
                ..r.clone()
            })
            .ok_or_else(|| {
                Error::Usage(format!(
                    "resource mapping not found for kind \"{kind}\" in version \"{api_version}\": ensure CRDs are installed first"
                ))
            })
    }
}

fn strip_version(rest: &str) -> String {
    // `deployment.v1.apps` names version v1 of group apps.
    match rest.split_once('.') {
        Some((first, group))
            if first.starts_with('v') && first[1..].starts_with(|c: char| c.is_ascii_digit()) =>
        {
            group.to_string()
        }
        _ => rest.to_string(),
    }
}

fn from_list(list: &APIResourceList) -> Vec<ResourceInfo> {
    let (group, version) = match list.group_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), list.group_version.clone()),
    };
    let mut out: Vec<ResourceInfo> = Vec::new();
    for r in &list.resources {
        if let Some((parent, sub)) = r.name.split_once('/') {
            if let Some(p) = out.iter_mut().find(|p| p.plural == parent) {
                p.subresources.push(sub.to_string());
            }
            continue;
        }
        let singular = if r.singular_name.is_empty() {
            r.kind.to_lowercase()
        } else {
            r.singular_name.clone()
        };
        out.push(ResourceInfo {
            group: r.group.clone().unwrap_or_else(|| group.clone()),
            version: r.version.clone().unwrap_or_else(|| version.clone()),
            kind: r.kind.clone(),
            plural: r.name.clone(),
            singular,
            short_names: r.short_names.clone().unwrap_or_default(),
            namespaced: r.namespaced,
            verbs: r.verbs.clone(),
            categories: r.categories.clone().unwrap_or_default(),
            subresources: Vec::new(),
        });
    }
    out
}

/// Small fixtures shared by unit tests across the crate.
#[cfg(test)]
pub mod fixtures {
    use super::*;

    fn info(
        group: &str,
        kind: &str,
        plural: &str,
        short: &[&str],
        namespaced: bool,
    ) -> ResourceInfo {
        ResourceInfo {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            namespaced,
            verbs: [
                "create", "delete", "get", "list", "patch", "update", "watch",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            categories: vec![],
            subresources: vec![],
        }
    }

    /// A catalog shaped like a small real cluster's.
    pub fn catalog() -> Catalog {
        Catalog::new(vec![
            info("", "Pod", "pods", &["po"], true),
            info("", "Service", "services", &["svc"], true),
            info("", "Node", "nodes", &["no"], false),
            info("", "Namespace", "namespaces", &["ns"], false),
            info("", "ConfigMap", "configmaps", &["cm"], true),
            info("apps", "Deployment", "deployments", &["deploy"], true),
            info("apps", "ReplicaSet", "replicasets", &["rs"], true),
            info("example.com", "Widget", "widgets", &[], true),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::catalog;
    use super::*;

    #[test]
    fn typed_names_resolve_to_resources() {
        let cases = [
            ("pods", "pods"),
            ("pod", "pods"),
            ("po", "pods"),
            ("Pod", "pods"),
            ("deploy", "deployments"),
            ("deployments.apps", "deployments"),
            ("deployment.v1.apps", "deployments"),
            ("svc", "services"),
            ("no", "nodes"),
            ("widget", "widgets"),
        ];
        let catalog = catalog();
        for (typed, plural) in cases {
            let found = catalog.resolve(typed).map(|r| r.plural.clone()).ok();
            assert_eq!(found.as_deref(), Some(plural), "{typed}");
        }
    }

    #[test]
    fn unknown_types_get_the_upstream_error() {
        let err = catalog().resolve("foo").err().map(|e| e.report());
        assert_eq!(
            err.as_deref(),
            Some(r#"error: the server doesn't have a resource type "foo""#)
        );
        assert!(catalog().resolve("pods.apps").is_err());
    }

    #[test]
    fn kinds_map_back_to_resources_with_the_manifest_version() {
        let catalog = catalog();
        let found = catalog.by_kind("apps/v1beta1", "Deployment").ok();
        assert_eq!(found.as_ref().map(|r| r.version.as_str()), Some("v1beta1"));
        assert_eq!(
            found.map(|r| r.group_kind()),
            Some("deployment.apps".into())
        );
        assert!(catalog.by_kind("v1", "Deployment").is_err());
    }

    #[test]
    fn builtin_groups_are_told_apart_from_custom_ones() {
        for (group, builtin) in [
            ("", true),
            ("apps", true),
            ("networking.k8s.io", true),
            ("cluster.x-k8s.io", false),
            ("example.com", false),
        ] {
            assert_eq!(is_builtin_group(group), builtin, "{group}");
        }
    }
}
