//! Escalation prevention: writing a Role/ClusterRole requires holding every permission it grants
//! (or the `escalate` verb on it), and writing a binding requires holding the permissions of the
//! referenced role (or the `bind` verb on it). Members of `system:masters` may do anything.

use serde_json::Value;

use super::rbac::{rules_of, Rule};
use super::{Attributes, Authorizer, PRIVILEGED_GROUP};
use crate::auth::User;
use crate::status::ApiError;

const GROUP: &str = "rbac.authorization.k8s.io";

fn split(resource: &str) -> (&str, &str) {
    resource.split_once('/').unwrap_or((resource, ""))
}

/// The rules of `wanted` that `held` does not cover (each broken down to single permissions).
pub fn uncovered(held: &[Rule], wanted: &[Rule], user: &User, namespace: &str) -> Vec<Rule> {
    let allowed = |a: &Attributes| held.iter().any(|r| r.allows(a));
    let mut missing = Vec::new();
    for rule in wanted {
        for verb in &rule.verbs {
            for url in &rule.non_resource_urls {
                let a = Attributes::non_resource(user.clone(), verb, url);
                if !allowed(&a) {
                    missing.push(Rule {
                        verbs: vec![verb.clone()],
                        non_resource_urls: vec![url.clone()],
                        ..Default::default()
                    });
                }
            }
            for group in &rule.api_groups {
                for resource in &rule.resources {
                    let (res, sub) = split(resource);
                    let names: Vec<&str> = if rule.resource_names.is_empty() {
                        vec![""]
                    } else {
                        rule.resource_names.iter().map(String::as_str).collect()
                    };
                    for name in names {
                        let a = Attributes::resource(
                            user.clone(),
                            verb,
                            group,
                            res,
                            sub,
                            namespace,
                            name,
                        );
                        if !allowed(&a) {
                            missing.push(Rule {
                                verbs: vec![verb.clone()],
                                api_groups: vec![group.clone()],
                                resources: vec![resource.clone()],
                                resource_names: if name.is_empty() {
                                    vec![]
                                } else {
                                    vec![name.to_string()]
                                },
                                ..Default::default()
                            });
                        }
                    }
                }
            }
        }
    }
    missing
}

fn refused(plural: &str, name: &str, user: &User, why: String) -> ApiError {
    let mut e = ApiError::forbidden(format!(
        "{plural}.{GROUP} \"{name}\" is forbidden: user \"{}\" (groups={:?}) {why}",
        user.name, user.groups
    ));
    e.details = Some(serde_json::json!({"name": name, "group": GROUP, "kind": plural}));
    e
}

/// Checks that `user` may write `object` (a Role, ClusterRole, RoleBinding or
/// ClusterRoleBinding of resource `plural`).
pub fn check(
    authorizer: &Authorizer,
    user: &User,
    group: &str,
    plural: &str,
    object: &Value,
) -> Result<(), ApiError> {
    if group != GROUP || user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
        return Ok(());
    }
    let namespace = crate::objects::meta_str(object, "namespace").unwrap_or("");
    let name = crate::objects::name(object).unwrap_or("");
    let scope = (!namespace.is_empty()).then_some(namespace);
    let held = |user: &User| -> Vec<Rule> {
        let (rules, _) = authorizer.rules_for(user, namespace);
        match scope {
            Some(_) => rules,
            None => authorizer
                .rbac()
                .map(|r| r.rules_for(user, None))
                .unwrap_or(rules),
        }
    };
    let describe = |missing: &[Rule]| {
        missing
            .iter()
            .map(|r| serde_json::to_string(r).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    match plural {
        "roles" | "clusterroles" => {
            let escalate =
                Attributes::resource(user.clone(), "escalate", GROUP, plural, "", namespace, name);
            if authorizer.authorize(&escalate).allowed() {
                return Ok(());
            }
            if object.get("aggregationRule").is_some_and(|a| !a.is_null()) {
                return Err(refused(
                    plural,
                    name,
                    user,
                    "must have cluster-admin privileges to write an aggregated cluster role".into(),
                ));
            }
            let missing = uncovered(&held(user), &rules_of(object), user, namespace);
            if missing.is_empty() {
                Ok(())
            } else {
                Err(refused(
                    plural,
                    name,
                    user,
                    format!(
                        "is attempting to grant RBAC permissions not currently held:\n{}",
                        describe(&missing)
                    ),
                ))
            }
        }
        "rolebindings" | "clusterrolebindings" => {
            let kind = object
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let role = object
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let role_plural = if kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            let bind = Attributes::resource(
                user.clone(),
                "bind",
                GROUP,
                role_plural,
                "",
                namespace,
                role,
            );
            if authorizer.authorize(&bind).allowed() {
                return Ok(());
            }
            let rules = authorizer
                .rbac()
                .and_then(|r| r.snapshot().role_rules(kind, namespace, role));
            let Some(rules) = rules else {
                return Err(refused(
                    plural,
                    name,
                    user,
                    format!("cannot bind {role_plural} \"{role}\": it was not found"),
                ));
            };
            let missing = uncovered(&held(user), &rules, user, namespace);
            if missing.is_empty() {
                Ok(())
            } else {
                Err(refused(
                    plural,
                    name,
                    user,
                    format!(
                        "is attempting to grant RBAC permissions not currently held:\n{}",
                        describe(&missing)
                    ),
                ))
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcard_grants_need_wildcard_holdings() {
        let u = User {
            name: "u".into(),
            groups: vec![],
            ..Default::default()
        };
        let held: Vec<Rule> = serde_json::from_value(json!([
            {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]}
        ]))
        .expect("rules");
        let ok: Vec<Rule> = serde_json::from_value(json!([
            {"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"], "resourceNames": ["a"]}
        ]))
        .expect("rules");
        assert!(uncovered(&held, &ok, &u, "d").is_empty());
        let too_much: Vec<Rule> = serde_json::from_value(json!([
            {"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}
        ]))
        .expect("rules");
        assert_eq!(uncovered(&held, &too_much, &u, "d").len(), 1);
    }
}
