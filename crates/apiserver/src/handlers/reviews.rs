//! Review resources that are answered, not stored: `SelfSubjectReview` (`kubectl auth
//! whoami`), the access reviews (`kubectl auth can-i`; everything is allowed until RBAC lands)
//! and `TokenReview` (no token authenticator yet: never authenticated).

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::json;

use super::{json_response, parse_object, Ctx};
use crate::status::ApiError;

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
        "selfsubjectrulesreviews" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        _ => {
            json!({"allowed": true, "reason": "all authenticated users are allowed (no RBAC yet)"})
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
