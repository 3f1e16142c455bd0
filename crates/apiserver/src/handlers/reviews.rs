//! Review resources that are answered, not stored: `SelfSubjectReview` (`kubectl auth
//! whoami`), the access reviews answered by the configured authorizers (`SubjectAccessReview`,
//! `LocalSubjectAccessReview`, `SelfSubjectAccessReview`: `kubectl auth can-i`;
//! `SelfSubjectRulesReview`: `kubectl auth can-i --list`). The authentication.k8s.io reviews
//! (`TokenReview`, `SelfSubjectReview`) are routed to [`crate::auth::reviews`] first; their arms
//! here are not reached.

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{json_response, parse_object, Ctx};
use crate::auth::User;
use crate::authz::Attributes;
use crate::status::{ApiError, Cause};

fn invalid(kind: &str, field: &str, message: &str) -> ApiError {
    ApiError::invalid(
        kind,
        "authorization.k8s.io",
        "",
        vec![Cause {
            reason: "FieldValueInvalid",
            message: message.to_string(),
            field: field.to_string(),
        }],
    )
}

fn string(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The attributes an access review asks about.
fn access_attributes(ctx: &Ctx, review: &Value) -> Result<Attributes, ApiError> {
    let kind = ctx.resource().kind;
    let user = match ctx.resource().plural {
        "subjectaccessreviews" | "localsubjectaccessreviews" => {
            let name = string(review, "/spec/user");
            let groups: Vec<String> = review
                .pointer("/spec/groups")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if name.is_empty() && groups.is_empty() {
                return Err(invalid(
                    kind,
                    "spec.user",
                    "at least one of user or group must be specified",
                ));
            }
            User {
                name,
                groups,
                uid: string(review, "/spec/uid"),
                extra: serde_json::from_value(
                    review
                        .pointer("/spec/extra")
                        .cloned()
                        .unwrap_or(Value::Null),
                )
                .unwrap_or_default(),
            }
        }
        _ => ctx.user.clone(),
    };
    let resource = review
        .pointer("/spec/resourceAttributes")
        .filter(|v| v.is_object());
    let non_resource = review
        .pointer("/spec/nonResourceAttributes")
        .filter(|v| v.is_object());
    match (resource, non_resource) {
        (Some(r), None) => {
            let mut namespace = string(r, "/namespace");
            if ctx.resource().plural == "localsubjectaccessreviews" {
                let path_ns = ctx.path.namespace.clone().unwrap_or_default();
                if namespace.is_empty() {
                    namespace = path_ns;
                } else if namespace != path_ns {
                    return Err(invalid(
                        kind,
                        "spec.resourceAttributes.namespace",
                        &format!("must match namespace: {path_ns}"),
                    ));
                }
            }
            Ok(Attributes::resource(
                user,
                &string(r, "/verb"),
                &string(r, "/group"),
                &string(r, "/resource"),
                &string(r, "/subresource"),
                &namespace,
                &string(r, "/name"),
            ))
        }
        (None, Some(n)) => Ok(Attributes::non_resource(
            user,
            &string(n, "/verb"),
            &string(n, "/path"),
        )),
        _ => Err(invalid(
            kind,
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}

fn rules_status(ctx: &Ctx, review: &Value) -> Value {
    let namespace = string(review, "/spec/namespace");
    let (rules, incomplete) = ctx.state.authorizer.rules_for(&ctx.user, &namespace);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in rules {
        if r.is_non_resource() {
            non_resource_rules
                .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
        } else {
            let mut rule = json!({"verbs": r.verbs, "apiGroups": r.api_groups,
                "resources": r.resources});
            if !r.resource_names.is_empty() {
                rule["resourceNames"] = json!(r.resource_names);
            }
            resource_rules.push(rule);
        }
    }
    json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
        "incomplete": incomplete})
}

/// POST of a review resource.
pub fn review(ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let resource = ctx.resource();
    let mut review = parse_object(body)?;
    let status = match resource.plural {
        "selfsubjectreviews" => json!({"userInfo": {
            "username": ctx.user.name,
            "groups": ctx.user.groups,
        }}),
        "tokenreviews" => json!({"authenticated": false,
            "error": "token authentication is not enabled"}),
        "selfsubjectrulesreviews" => rules_status(ctx, &review),
        _ => {
            let attrs = access_attributes(ctx, &review)?;
            let decision = ctx.state.authorizer.authorize(&attrs);
            let mut status = json!({"allowed": decision.allowed()});
            if matches!(decision, crate::authz::Decision::Deny(_)) {
                status["denied"] = json!(true);
            }
            if !decision.reason().is_empty() {
                status["reason"] = json!(decision.reason());
            }
            status
        }
    };
    if let Some(o) = review.as_object_mut() {
        o.insert("status".into(), status);
        o.insert("kind".into(), json!(resource.kind));
        o.insert("apiVersion".into(), json!(resource.api_version()));
        o.entry("metadata").or_insert_with(|| json!({}));
        if resource.plural == "selfsubjectreviews" {
            o.remove("spec");
        }
    }
    Ok(json_response(StatusCode::CREATED, &review))
}

/// Whether `resource` is a review (answered, not stored).
pub fn is_review(resource: &api_types::registry::Resource) -> bool {
    matches!(
        resource.group,
        "authorization.k8s.io" | "authentication.k8s.io"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_resources_are_recognised() {
        let r = api_types::registry::find("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
            .expect("ssar");
        assert!(is_review(r));
        let pods = api_types::registry::find("", "v1", "pods").expect("pods");
        assert!(!is_review(pods));
    }
}
