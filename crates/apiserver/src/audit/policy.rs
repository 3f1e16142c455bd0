//! The audit policy (`--audit-policy-file`, audit.k8s.io/v1 `Policy`): an ordered list of rules;
//! the first rule that matches a request decides its level and omitted stages, as upstream's
//! policy checker does. A request no rule matches is not audited (level `None`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::authz::Attributes;

/// How much of a request is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum Level {
    /// Not logged.
    None,
    /// Request metadata (user, verb, resource, status) but no bodies.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata, the request body and the response body.
    RequestResponse,
}

/// A stage of request handling at which an event is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum Stage {
    /// As soon as the request is received, before it is handled.
    RequestReceived,
    /// Once the response headers are sent (long-running requests such as watches only).
    ResponseStarted,
    /// Once the response is complete.
    ResponseComplete,
    /// The handler panicked.
    Panic,
}

/// Why a policy file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("reading audit policy {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid Policy.
    #[error("invalid audit policy: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPolicy {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
}

/// A group and some of its resources, as in a policy rule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    /// The API group (`""` = core).
    #[serde(default)]
    pub group: String,
    /// Resources (`pods`, `pods/log`, `*/status`, `pods/*`, `*`); empty = all of the group.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Object names; empty = all.
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// One rule of a policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// The level of requests this rule matches.
    pub level: Level,
    /// User names; empty = all.
    #[serde(default)]
    pub users: Vec<String>,
    /// User groups; empty = all.
    #[serde(default)]
    pub user_groups: Vec<String>,
    /// Verbs; empty = all.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// Resources; with `namespaces`, restricts the rule to resource requests.
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    /// Namespaces (`""` = cluster-scoped); restricts the rule to resource requests.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Non-resource paths (`/healthz`, `/api*`); restricts the rule to non-resource requests.
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    /// Stages not logged for requests this rule matches.
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
}

/// A parsed audit policy.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    omit_stages: Vec<Stage>,
}

/// What the policy decides for one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The level.
    pub level: Level,
    /// Stages not to log (policy-wide and from the rule).
    pub omit_stages: Vec<Stage>,
}

impl Policy {
    /// Reads and parses `--audit-policy-file`.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses a Policy (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = serde_yaml_ng::from_str(text)
            .map_err(|e| PolicyError::Invalid(e.to_string().replace('\n', " ")))?;
        if raw.kind != "Policy" {
            return Err(PolicyError::Invalid(format!(
                "kind is {:?}, expected \"Policy\"",
                raw.kind
            )));
        }
        if raw.api_version != "audit.k8s.io/v1" {
            return Err(PolicyError::Invalid(format!(
                "apiVersion is {:?}, expected \"audit.k8s.io/v1\"",
                raw.api_version
            )));
        }
        for (i, rule) in raw.rules.iter().enumerate() {
            let resource_rule = !rule.resources.is_empty() || !rule.namespaces.is_empty();
            if resource_rule && !rule.non_resource_urls.is_empty() {
                return Err(PolicyError::Invalid(format!(
                    "rules[{i}]: rules cannot apply to both regular resources and non-resource URLs"
                )));
            }
        }
        Ok(Policy {
            rules: raw.rules,
            omit_stages: raw.omit_stages,
        })
    }

    /// The level of the request `attrs` describes: the first matching rule's, else `None`.
    pub fn evaluate(&self, attrs: &Attributes) -> Decision {
        match self.rules.iter().find(|rule| rule.matches(attrs)) {
            Some(rule) => {
                let mut omit_stages = self.omit_stages.clone();
                omit_stages.extend(rule.omit_stages.iter().copied());
                Decision {
                    level: rule.level,
                    omit_stages,
                }
            }
            None => Decision {
                level: Level::None,
                omit_stages: self.omit_stages.clone(),
            },
        }
    }
}

impl Rule {
    fn matches(&self, attrs: &Attributes) -> bool {
        if !self.users.is_empty() && !self.users.contains(&attrs.user.name) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !attrs
                .user
                .groups
                .iter()
                .any(|group| self.user_groups.contains(group))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.contains(&attrs.verb) {
            return false;
        }
        if !self.resources.is_empty() || !self.namespaces.is_empty() {
            return self.matches_resource(attrs);
        }
        if !self.non_resource_urls.is_empty() {
            return self.matches_non_resource(attrs);
        }
        true
    }

    fn matches_resource(&self, attrs: &Attributes) -> bool {
        if !attrs.resource_request {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.contains(&attrs.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = if attrs.subresource.is_empty() {
            attrs.resource.clone()
        } else {
            format!("{}/{}", attrs.resource, attrs.subresource)
        };
        let any_subresource = format!("*/{}", attrs.subresource);
        let resource_any = format!("{}/*", attrs.resource);
        self.resources.iter().any(|gr| {
            if gr.group != attrs.api_group {
                return false;
            }
            if gr.resources.is_empty() {
                return true;
            }
            if !gr.resource_names.is_empty() && !gr.resource_names.contains(&attrs.name) {
                return false;
            }
            gr.resources.iter().any(|res| {
                *res == combined
                    || *res == "*"
                    || (!attrs.subresource.is_empty()
                        && (*res == any_subresource || *res == resource_any))
            })
        })
    }

    fn matches_non_resource(&self, attrs: &Attributes) -> bool {
        if attrs.resource_request {
            return false;
        }
        self.non_resource_urls
            .iter()
            .any(|spec| match spec.strip_suffix('*') {
                Some(prefix) => attrs.path.starts_with(prefix),
                None => *spec == attrs.path,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::User;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-proxy"]
  verbs: ["watch"]
- level: None
  userGroups: ["system:nodes"]
  nonResourceURLs: ["/healthz*", "/version"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets", "pods/log"]
- level: RequestResponse
  namespaces: ["prod"]
  resources:
  - group: apps
    resources: ["deployments"]
    resourceNames: ["web"]
- level: Request
  omitStages: [ResponseStarted]
"#;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn res(u: User, verb: &str, group: &str, resource: &str, sub: &str, ns: &str) -> Attributes {
        Attributes::resource(u, verb, group, resource, sub, ns, "web")
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = Policy::parse(POLICY).expect("valid policy");
        let level = |attrs: &Attributes| policy.evaluate(attrs).level;
        let proxy = user("system:kube-proxy", &[]);
        let alice = user("alice", &["devs"]);
        let node = user("system:node:n1", &["system:nodes"]);
        assert_eq!(
            level(&res(proxy.clone(), "watch", "", "services", "", "")),
            Level::None
        );
        assert_eq!(
            level(&res(proxy, "list", "", "services", "", "")),
            Level::Request
        );
        assert_eq!(
            level(&res(alice.clone(), "get", "", "secrets", "", "a")),
            Level::Metadata
        );
        assert_eq!(
            level(&res(alice.clone(), "get", "", "pods", "log", "a")),
            Level::Metadata
        );
        assert_eq!(
            level(&res(alice.clone(), "get", "", "pods", "", "a")),
            Level::Request
        );
        assert_eq!(
            level(&res(
                alice.clone(),
                "update",
                "apps",
                "deployments",
                "",
                "prod"
            )),
            Level::RequestResponse
        );
        assert_eq!(
            level(&res(
                alice.clone(),
                "update",
                "apps",
                "deployments",
                "",
                "dev"
            )),
            Level::Request
        );
        assert_eq!(
            level(&Attributes::non_resource(
                node.clone(),
                "get",
                "/healthz/ready"
            )),
            Level::None
        );
        assert_eq!(
            level(&Attributes::non_resource(node, "get", "/metrics")),
            Level::Request
        );
        let decision = policy.evaluate(&res(alice, "get", "", "pods", "", "a"));
        assert_eq!(
            decision.omit_stages,
            vec![Stage::RequestReceived, Stage::ResponseStarted]
        );
    }

    #[test]
    fn no_matching_rule_means_none() {
        let policy = Policy::parse(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  users: [bob]\n",
        )
        .expect("valid policy");
        let attrs = res(user("alice", &[]), "get", "", "pods", "", "a");
        assert_eq!(policy.evaluate(&attrs).level, Level::None);
    }

    #[test]
    fn bad_policies_are_refused() {
        for text in [
            "apiVersion: audit.k8s.io/v1\nkind: Nope\n",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- users: [a]\n",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  namespaces: [a]\n  nonResourceURLs: [/x]\n",
            "{{{",
        ] {
            assert!(Policy::parse(text).is_err(), "{text}");
        }
    }
}
