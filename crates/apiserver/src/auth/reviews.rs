//! The authentication.k8s.io/v1 reviews: TokenReview (is this bearer token good, for which
//! audiences, and whose is it) and SelfSubjectReview (who am I: `kubectl auth whoami`). Both
//! are answered, never stored.

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::User;
use crate::handlers::{json_response, parse_object, Ctx};
use crate::status::ApiError;

/// The `userInfo`/`user` object of a user (empty fields left out, as upstream).
pub fn user_info(user: &User) -> Value {
    let mut info = json!({"username": user.name});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.groups.is_empty() {
        info["groups"] = json!(user.groups);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// POST of `tokenreviews` or `selfsubjectreviews`.
pub async fn review(ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let resource = ctx.resource();
    let mut review = parse_object(body)?;
    let status = match resource.plural {
        "tokenreviews" => {
            let token = review
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if token.is_empty() {
                return Err(ApiError::bad_request(
                    "token is required for TokenReview in authentication",
                ));
            }
            let audiences: Vec<String> = review
                .pointer("/spec/audiences")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            match ctx
                .state
                .authn
                .authenticate_token(&ctx.state, &token, &audiences)
                .await
            {
                Ok((user, accepted)) => json!({
                    "authenticated": true,
                    "user": user_info(&user),
                    "audiences": accepted,
                }),
                Err(e) => json!({"user": {}, "error": format!("[invalid bearer token, {e}]")}),
            }
        }
        "selfsubjectreviews" => json!({"userInfo": user_info(&ctx.user)}),
        _ => return Err(ApiError::path_not_found()),
    };
    if let Some(o) = review.as_object_mut() {
        o.insert("status".into(), status);
        o.insert("kind".into(), json!(resource.kind));
        o.insert("apiVersion".into(), json!(resource.api_version()));
        let meta = o.entry("metadata").or_insert_with(|| json!({}));
        if meta.is_object() && meta.get("creationTimestamp").is_none() {
            meta["creationTimestamp"] = Value::Null;
        }
        if resource.plural == "selfsubjectreviews" {
            o.remove("spec");
        }
    }
    Ok(json_response(StatusCode::CREATED, &review))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_leaves_out_empty_fields() {
        let u = User {
            name: "alice".into(),
            ..Default::default()
        };
        assert_eq!(user_info(&u), json!({"username": "alice"}));
        let mut u = u;
        u.uid = "1".into();
        u.groups = vec!["g".into()];
        u.extra.insert("k".into(), vec!["v".into()]);
        assert_eq!(
            user_info(&u),
            json!({"username": "alice", "uid": "1", "groups": ["g"], "extra": {"k": ["v"]}})
        );
    }
}
