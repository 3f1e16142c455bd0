//! Authorization (`--authorization-mode`): request [`Attributes`] as upstream's RequestInfo
//! derives them, the authorizer chain ([`Authorizer`]: `AlwaysAllow`, `AlwaysDeny`, `RBAC`;
//! `Node` ([`node`])), upstream-worded 403 messages, the RBAC
//! authorizer with its storage-fed index ([`rbac`]), ClusterRole aggregation ([`aggregation`]),
//! the bootstrap policy ([`policy`]) and escalation prevention ([`escalation`]).

pub mod aggregation;
pub mod attributes;
pub mod escalation;
pub mod node;
pub mod policy;
pub mod rbac;

use std::sync::Arc;

pub use attributes::Attributes;

use crate::auth::User;
use crate::status::ApiError;
use crate::storage::Storage;

/// The group whose members are always allowed (upstream `system:masters`).
pub const PRIVILEGED_GROUP: &str = "system:masters";

/// One `--authorization-mode` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Everything is allowed.
    AlwaysAllow,
    /// Everything is denied.
    AlwaysDeny,
    /// Role-based access control.
    Rbac,
    /// The Node authorizer ([`node`]).
    Node,
}

/// Why the authorization configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An unknown mode name.
    #[error("authorization mode {0:?} is not a valid mode (AlwaysAllow, AlwaysDeny, RBAC, Node)")]
    UnknownMode(String),
    /// A mode given twice.
    #[error("authorization-mode {0:?} has mode specified more than once")]
    Duplicate(String),
    /// No mode at all.
    #[error("at least one authorization-mode must be passed")]
    Empty,
}

/// Parses the `--authorization-mode` values (already split on commas).
pub fn parse_modes(values: &[String]) -> Result<Vec<Mode>, ConfigError> {
    let mut modes = Vec::new();
    for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        let mode = match v {
            "AlwaysAllow" => Mode::AlwaysAllow,
            "AlwaysDeny" => Mode::AlwaysDeny,
            "RBAC" => Mode::Rbac,
            "Node" => Mode::Node,
            other => return Err(ConfigError::UnknownMode(other.to_string())),
        };
        if modes.contains(&mode) {
            return Err(ConfigError::Duplicate(v.to_string()));
        }
        modes.push(mode);
    }
    if modes.is_empty() {
        return Err(ConfigError::Empty);
    }
    Ok(modes)
}

/// What an authorizer decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, with a reason.
    Allow(String),
    /// Denied outright (later authorizers are not asked).
    Deny(String),
    /// No opinion (the next authorizer decides; denied when none is left).
    NoOpinion(String),
}

impl Decision {
    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// The reason text.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow(r) | Decision::Deny(r) | Decision::NoOpinion(r) => r,
        }
    }
}

/// The configured authorizer chain (the privileged group first, as upstream).
pub struct Authorizer {
    modes: Vec<Mode>,
    rbac: Option<Arc<rbac::Rbac>>,
    node: Option<Arc<node::NodeAuthorizer>>,
}

impl Authorizer {
    /// A chain of `modes`; RBAC reads its objects from `storage`.
    pub fn new(modes: Vec<Mode>, storage: Arc<dyn Storage>) -> Self {
        let rbac = modes
            .contains(&Mode::Rbac)
            .then(|| Arc::new(rbac::Rbac::new(storage.clone())));
        let node = modes
            .contains(&Mode::Node)
            .then(|| Arc::new(node::NodeAuthorizer::new(storage)));
        Authorizer { modes, rbac, node }
    }

    /// Allows everything (what tests and the default use).
    pub fn always_allow(storage: Arc<dyn Storage>) -> Self {
        Self::new(vec![Mode::AlwaysAllow], storage)
    }

    /// The configured modes.
    pub fn modes(&self) -> &[Mode] {
        &self.modes
    }

    /// The RBAC authorizer, when enabled.
    pub fn rbac(&self) -> Option<&Arc<rbac::Rbac>> {
        self.rbac.as_ref()
    }

    /// Decides `attrs`.
    pub fn authorize(&self, attrs: &Attributes) -> Decision {
        if attrs.user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return Decision::Allow(String::new());
        }
        let mut reasons = Vec::new();
        for mode in &self.modes {
            let decision = match mode {
                Mode::AlwaysAllow => Decision::Allow(String::new()),
                Mode::AlwaysDeny => Decision::Deny("Everything is forbidden.".into()),
                Mode::Rbac => match &self.rbac {
                    Some(r) => r.authorize(attrs),
                    None => Decision::NoOpinion(String::new()),
                },
                Mode::Node => match &self.node {
                    Some(n) => n.authorize(attrs),
                    None => Decision::NoOpinion(String::new()),
                },
            };
            match decision {
                Decision::NoOpinion(r) => {
                    if !r.is_empty() {
                        reasons.push(r);
                    }
                }
                other => return other,
            }
        }
        Decision::NoOpinion(reasons.join("; "))
    }

    /// The rules `user` holds in `namespace` (SelfSubjectRulesReview): resource rules,
    /// non-resource rules, and whether the list is incomplete.
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<rbac::Rule>, bool) {
        let mut rules = Vec::new();
        let mut incomplete = false;
        if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            rules.push(rbac::Rule::everything());
            rules.push(rbac::Rule::every_path());
        }
        for mode in &self.modes {
            match mode {
                Mode::AlwaysAllow => {
                    rules.push(rbac::Rule::everything());
                    rules.push(rbac::Rule::every_path());
                }
                Mode::AlwaysDeny | Mode::Node => incomplete = true,
                Mode::Rbac => {
                    if let Some(r) = &self.rbac {
                        let ns = (!namespace.is_empty()).then_some(namespace);
                        rules.extend(r.rules_for(user, ns));
                    }
                }
            }
        }
        (rules, incomplete)
    }

    /// Checks `attrs`, answering the upstream 403 when not allowed.
    pub fn check(&self, attrs: &Attributes) -> Result<(), ApiError> {
        let decision = self.authorize(attrs);
        if decision.allowed() {
            return Ok(());
        }
        tracing::debug!(user = %attrs.user.name, verb = %attrs.verb, resource = %attrs.resource,
            path = %attrs.path, reason = decision.reason(), "forbidden");
        Err(forbidden(attrs, decision.reason()))
    }
}

/// Loads the RBAC index (when RBAC is enabled) and spawns the task that keeps it fresh and
/// aggregates ClusterRoles; abort the returned handle to stop it.
pub async fn start(
    state: &crate::state::ApiState,
) -> Result<Option<tokio::task::JoinHandle<()>>, crate::storage::StorageError> {
    let node = state.authorizer.node.clone();
    if let Some(n) = &node {
        n.reload().await?;
    }
    let Some(rbac) = state.authorizer.rbac().cloned() else {
        return Ok(node.map(|n| tokio::spawn(n.run())));
    };
    rbac.reload().await?;
    aggregation::aggregate(state.storage.as_ref(), &rbac.snapshot()).await;
    rbac.reload().await?;
    Ok(Some(tokio::spawn(async move {
        match node {
            Some(n) => {
                tokio::join!(rbac.run(), n.run());
            }
            None => rbac.run().await,
        }
    })))
}

/// The upstream 403 for `attrs` (`pods is forbidden: User "x" cannot list resource "pods" in API
/// group "" in the namespace "default"`).
pub fn forbidden(attrs: &Attributes, reason: &str) -> ApiError {
    let mut why = if attrs.resource_request {
        let resource = if attrs.subresource.is_empty() {
            attrs.resource.clone()
        } else {
            format!("{}/{}", attrs.resource, attrs.subresource)
        };
        let scope = if attrs.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{}\"", attrs.namespace)
        };
        format!(
            "User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {}",
            attrs.user.name, attrs.verb, resource, attrs.api_group, scope
        )
    } else {
        format!(
            "User \"{}\" cannot {} path \"{}\"",
            attrs.user.name, attrs.verb, attrs.path
        )
    };
    if !reason.is_empty() {
        why.push_str(": ");
        why.push_str(reason);
    }
    if !attrs.resource_request {
        let mut e = ApiError::forbidden(format!("forbidden: {why}"));
        e.details = Some(serde_json::json!({}));
        return e;
    }
    let qualified = if attrs.api_group.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}.{}", attrs.resource, attrs.api_group)
    };
    let message = if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} \"{}\" is forbidden: {why}", attrs.name)
    };
    let mut details = serde_json::json!({"kind": attrs.resource});
    if !attrs.name.is_empty() {
        details["name"] = serde_json::json!(attrs.name);
    }
    if !attrs.api_group.is_empty() {
        details["group"] = serde_json::json!(attrs.api_group);
    }
    let mut e = ApiError::forbidden(message);
    e.details = Some(details);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        }
    }

    #[test]
    fn modes_parse() {
        let m = parse_modes(&["RBAC".into(), "AlwaysAllow".into()]).expect("modes");
        assert_eq!(m, vec![Mode::Rbac, Mode::AlwaysAllow]);
        let m = parse_modes(&["Node".into(), "RBAC".into()]).expect("modes");
        assert_eq!(m, vec![Mode::Node, Mode::Rbac]);
        assert!(matches!(
            parse_modes(&["Bogus".into()]),
            Err(ConfigError::UnknownMode(_))
        ));
        assert!(matches!(
            parse_modes(&["RBAC".into(), "RBAC".into()]),
            Err(ConfigError::Duplicate(_))
        ));
    }

    #[test]
    fn forbidden_messages_are_worded_as_upstream() {
        let a = Attributes::resource(user("x"), "list", "", "pods", "", "default", "");
        assert_eq!(
            forbidden(&a, "").message,
            "pods is forbidden: User \"x\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let a = Attributes::resource(user("x"), "get", "apps", "deployments", "scale", "", "web");
        assert_eq!(
            forbidden(&a, "").message,
            "deployments.apps \"web\" is forbidden: User \"x\" cannot get resource \"deployments/scale\" in API group \"apps\" at the cluster scope"
        );
        let a = Attributes::non_resource(user("x"), "get", "/foo");
        assert_eq!(
            forbidden(&a, "").message,
            "forbidden: User \"x\" cannot get path \"/foo\""
        );
    }
}
