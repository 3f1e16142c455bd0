//! The admission plugin chain (`--enable-admission-plugins`, `--disable-admission-plugins`):
//! upstream plugin names, the upstream default set, and [`admit`], which runs the enabled
//! plugins in upstream order on a create, update or delete.
//!
//! Implemented here: NamespaceLifecycle ([`super::lifecycle`]), LimitRanger
//! ([`super::limitranger`]), NodeRestriction ([`super::noderestriction`]), PodSecurity
//! ([`super::podsecurity`]), DefaultTolerationSeconds ([`super::tolerations`]) and
//! ResourceQuota ([`super::quota`], last, as upstream). Priority runs from
//! [`super::allocate`]; ServiceAccount is wired separately. Other upstream names are accepted
//! and ignored with a log line.

use api_types::registry::Resource;
use axum::body::Body;
use http::Response;
use serde_json::Value;

use crate::auth::User;
use crate::state::ApiState;
use crate::status::ApiError;

/// Every upstream admission plugin, in the order upstream runs them.
pub const ORDERED: &[&str] = &[
    "AlwaysAdmit",
    "NamespaceAutoProvision",
    "NamespaceLifecycle",
    "NamespaceExists",
    "LimitPodHardAntiAffinityTopology",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "TaintNodesByCondition",
    "AlwaysPullImages",
    "ImagePolicyWebhook",
    "PodSecurity",
    "PodNodeSelector",
    "Priority",
    "DefaultTolerationSeconds",
    "PodTolerationRestriction",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "OwnerReferencesPermissionEnforcement",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "DenyServiceExternalIPs",
    "PodTopologyLabels",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "AlwaysDeny",
];

/// The plugins upstream enables when `--enable-admission-plugins` does not name them.
pub const DEFAULT_ON: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "PodTopologyLabels",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
];

/// The plugins this apiserver implements.
pub const IMPLEMENTED: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "ResourceQuota",
];

/// Why the admission flags are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A name upstream does not know.
    #[error(
        "plugins [{0}] in enable-admission-plugins/disable-admission-plugins were not registered"
    )]
    Unknown(String),
    /// A plugin both enabled and disabled.
    #[error("{0} plugins were both enabled and disabled")]
    Conflict(String),
}

/// The enabled plugins, in upstream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plugins {
    enabled: Vec<&'static str>,
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins {
            enabled: ORDERED
                .iter()
                .copied()
                .filter(|p| DEFAULT_ON.contains(p))
                .collect(),
        }
    }
}

impl Plugins {
    /// The upstream default set plus `enable`, minus `disable` (comma-split already).
    pub fn new(enable: &[String], disable: &[String]) -> Result<Self, ConfigError> {
        let clean = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let (enable, disable) = (clean(enable), clean(disable));
        let unknown: Vec<&str> = enable
            .iter()
            .chain(disable.iter())
            .filter(|p| !ORDERED.contains(&p.as_str()))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ConfigError::Unknown(unknown.join(",")));
        }
        let both: Vec<&str> = enable
            .iter()
            .filter(|p| disable.contains(p))
            .map(String::as_str)
            .collect();
        if !both.is_empty() {
            return Err(ConfigError::Conflict(both.join(",")));
        }
        let enabled: Vec<&'static str> = ORDERED
            .iter()
            .copied()
            .filter(|p| {
                (DEFAULT_ON.contains(p) || enable.iter().any(|e| e == p))
                    && !disable.iter().any(|d| d == p)
            })
            .collect();
        for p in enabled.iter().filter(|p| !IMPLEMENTED.contains(p)) {
            tracing::debug!(plugin = *p, "admission plugin is not implemented; ignored");
        }
        Ok(Plugins { enabled })
    }

    /// Whether `name` is enabled.
    pub fn enabled(&self, name: &str) -> bool {
        self.enabled.contains(&name)
    }

    /// The enabled plugins in order.
    pub fn names(&self) -> &[&'static str] {
        &self.enabled
    }
}

/// What a request does to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A create (POST, or a PUT that creates).
    Create,
    /// An update or patch (also of a subresource).
    Update,
    /// A delete.
    Delete,
}

/// One admission request.
pub struct Request<'a> {
    /// Server state.
    pub state: &'a ApiState,
    /// Who asks.
    pub user: &'a User,
    /// What is done.
    pub operation: Operation,
    /// The resource.
    pub resource: &'static Resource,
    /// The subresource, if any (`status`, ...).
    pub subresource: Option<&'a str>,
    /// The namespace of a namespaced object.
    pub namespace: Option<&'a str>,
    /// The object name.
    pub name: &'a str,
    /// The current object (update and delete).
    pub old: Option<&'a Value>,
    /// `dryRun=All`: nothing is persisted (quota usage is not charged).
    pub dry_run: bool,
}

impl Request<'_> {
    /// Whether the request is about `group`/`plural` with no subresource.
    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.resource.group == group && self.resource.plural == plural
    }

    /// The subresource or `""`.
    pub fn sub(&self) -> &str {
        self.subresource.unwrap_or("")
    }
}

/// Runs the enabled plugins on `object` (the new object of a create or update; `None` for a
/// delete) and returns the warnings to send back (`Warning` headers).
pub async fn admit(req: &Request<'_>, object: Option<&mut Value>) -> Result<Vec<String>, ApiError> {
    let plugins = &req.state.admission;
    let mut warnings = Vec::new();
    let mut object = object;
    if plugins.enabled("NamespaceLifecycle") {
        super::lifecycle::admit(req)?;
    }
    if plugins.enabled("LimitRanger") {
        if let Some(o) = object.as_deref_mut() {
            super::limitranger::admit(req, o).await?;
        }
    }
    if plugins.enabled("NodeRestriction") {
        super::noderestriction::admit(req, object.as_deref())?;
    }
    if plugins.enabled("PodSecurity") {
        if let Some(o) = object.as_deref() {
            warnings.extend(super::podsecurity::admit(req, o).await?);
        }
    }
    if plugins.enabled("DefaultTolerationSeconds") {
        if let Some(o) = object.as_deref_mut() {
            super::tolerations::admit(req, o);
        }
    }
    if plugins.enabled("ResourceQuota") {
        super::quota::admit(req, object.as_deref()).await?;
    }
    Ok(warnings)
}

/// Adds `warnings` as `Warning: 299 - "<text>"` headers (what kubectl prints as `Warning:`).
pub fn add_warnings(response: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let text = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            response.headers_mut().append(http::header::WARNING, v);
        }
    }
}

/// The upstream admission 403: `<resource>[.group] "<name>" is forbidden: <reason>`.
pub fn forbidden(req: &Request<'_>, name: &str, reason: impl std::fmt::Display) -> ApiError {
    let r = req.resource;
    let qualified = if r.group.is_empty() {
        r.plural.to_string()
    } else {
        format!("{}.{}", r.plural, r.group)
    };
    let mut e = ApiError::forbidden(format!("{qualified} \"{name}\" is forbidden: {reason}"));
    let mut details = serde_json::json!({"name": name, "kind": r.plural});
    if !r.group.is_empty() {
        details["group"] = serde_json::json!(r.group);
    }
    e.details = Some(details);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_enable_and_disable_in_upstream_order() {
        let p = Plugins::new(&s(&["NodeRestriction"]), &s(&["PodSecurity"])).expect("plugins");
        assert!(p.enabled("NodeRestriction"));
        assert!(!p.enabled("PodSecurity"));
        assert!(p.enabled("ResourceQuota"));
        let names = p.names();
        let pos = |n: &str| names.iter().position(|x| *x == n).expect(n);
        assert!(pos("NamespaceLifecycle") < pos("LimitRanger"));
        assert!(pos("LimitRanger") < pos("NodeRestriction"));
        assert!(pos("DefaultTolerationSeconds") < pos("ResourceQuota"));
        assert_eq!(names.last(), Some(&"ResourceQuota"));
        assert!(!Plugins::default().enabled("NodeRestriction"));
        assert!(matches!(
            Plugins::new(&s(&["Bogus"]), &[]),
            Err(ConfigError::Unknown(_))
        ));
        assert!(matches!(
            Plugins::new(&s(&["LimitRanger"]), &s(&["LimitRanger"])),
            Err(ConfigError::Conflict(_))
        ));
    }
}
