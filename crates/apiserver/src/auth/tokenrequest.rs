//! TokenRequest (`POST .../serviceaccounts/<name>/token`, authentication.k8s.io/v1): issues a
//! bound service-account token for the requested audiences (default: the API audiences) and
//! lifetime (`expirationSeconds`: default 3600, at least 600, capped by
//! `--service-account-max-token-expiration`), optionally bound to a Pod or Secret (and, for a
//! scheduled pod, naming its node). [`check_bound_objects`] is the other half: a token is only
//! good while the service account and bound objects still exist with the same uid.

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::serviceaccount::{Claims, KubernetesClaims, ObjectRef, TokenError};
use crate::handlers::{json_response, parse_object, Ctx};
use crate::objects;
use crate::state::ApiState;
use crate::status::{ApiError, Cause};

/// Default `expirationSeconds`.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Smallest accepted `expirationSeconds`.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

/// The few fields of a service account, pod, secret or node that a token is checked against;
/// decoding only these skips the rest of the object (a node's images and status are most of
/// it) without building a tree.
#[derive(Debug, Default, serde::Deserialize)]
struct Bound {
    #[serde(default)]
    metadata: BoundMeta,
    #[serde(default)]
    spec: BoundSpec,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BoundMeta {
    #[serde(default)]
    uid: String,
    deletion_timestamp: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BoundSpec {
    service_account_name: Option<String>,
    node_name: Option<String>,
}

/// Reads what a token is checked against of `namespace/name` of core `plural` from storage.
async fn get_object(
    state: &ApiState,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Bound>, ApiError> {
    let resource = api_types::registry::find("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
    let kv = state
        .storage
        .get(&objects::key(resource, namespace, name))
        .await
        .map_err(|e| crate::handlers::map_storage_error(resource, e, name))?;
    kv.map(|kv| {
        // A spec that is not an object (no stored object has one) reads as empty.
        serde_json::from_slice::<Bound>(&kv.value)
            .or_else(|_| {
                serde_json::from_slice::<Value>(&kv.value).map(|v| Bound {
                    metadata: BoundMeta {
                        uid: objects::meta_str(&v, "uid").unwrap_or("").to_string(),
                        deletion_timestamp: objects::meta_str(&v, "deletionTimestamp")
                            .map(str::to_string),
                    },
                    spec: BoundSpec::default(),
                })
            })
            .map_err(|e| ApiError::internal(format!("decoding {}: {e}", kv.key)))
    })
    .transpose()
}

fn uid_of(object: &Bound) -> String {
    object.metadata.uid.clone()
}

/// How long after its `deletionTimestamp` a bound object's tokens stay valid (upstream: a
/// minute, so a terminating pod can still talk to the API).
const DELETION_GRACE_SECONDS: i64 = 60;

/// Whether `object` was deleted more than [`DELETION_GRACE_SECONDS`] ago.
fn deleted_long_ago(object: &Bound) -> bool {
    let Some(ts) = object.metadata.deletion_timestamp.as_deref() else {
        return false;
    };
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => t.as_second() + DELETION_GRACE_SECONDS < super::now(),
        Err(_) => true,
    }
}

/// Checks that the service account and the objects a token is bound to still exist with the
/// uids the token names (and that a bound pod or secret was not deleted more than a minute
/// ago).
pub async fn check_bound_objects(state: &ApiState, claims: &Claims) -> Result<(), TokenError> {
    let k = &claims.kubernetes;
    let lookup = |plural: &'static str, r: ObjectRef| async move {
        let found = get_object(state, plural, Some(&k.namespace), &r.name)
            .await
            .map_err(|e| TokenError::Invalidated(e.message))?;
        let Some(object) = found else {
            return Err(TokenError::Invalidated(format!(
                "{plural} \"{}\" not found",
                r.name
            )));
        };
        if uid_of(&object) != r.uid {
            return Err(TokenError::Invalidated(format!(
                "the UID in the bound object reference ({}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                r.uid,
                uid_of(&object)
            )));
        }
        Ok(object)
    };
    lookup("serviceaccounts", k.serviceaccount.clone()).await?;
    for (plural, r) in [("pods", &k.pod), ("secrets", &k.secret)] {
        if let Some(r) = r {
            let object = lookup(plural, r.clone()).await?;
            if deleted_long_ago(&object) {
                return Err(TokenError::Invalidated(format!(
                    "{plural} \"{}\" has been deleted",
                    r.name
                )));
            }
        }
    }
    Ok(())
}

fn invalid(name: &str, field: &str, message: String) -> ApiError {
    ApiError::invalid(
        "TokenRequest",
        "authentication.k8s.io",
        name,
        vec![Cause {
            reason: "FieldValueInvalid",
            message,
            field: field.to_string(),
        }],
    )
}

/// POST `serviceaccounts/<name>/token`.
pub async fn create(ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let authn = &ctx.state.authn;
    let Some(signer) = authn.signer.as_ref() else {
        return Err(ApiError::path_not_found());
    };
    let name = ctx.name()?.to_string();
    let namespace = ctx.path.namespace.clone().unwrap_or_default();
    let mut request = parse_object(body)?;
    let sa = get_object(&ctx.state, "serviceaccounts", Some(&namespace), &name)
        .await?
        .ok_or_else(|| ApiError::not_found("serviceaccounts", "", &name))?;
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences = authn.audiences.clone();
    }
    let mut expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::bad_request("spec.expirationSeconds must be an integer".to_string())
        })?,
    };
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            &name,
            "spec.expirationSeconds",
            format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expiration > 1 << 32 {
        return Err(invalid(
            &name,
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    if let Some(max) = authn.max_expiration {
        expiration = expiration.min(max.as_secs() as i64);
    }
    let mut claims_k = KubernetesClaims {
        namespace: namespace.clone(),
        serviceaccount: ObjectRef {
            name: name.clone(),
            uid: uid_of(&sa),
        },
        ..Default::default()
    };
    if let Some(bound) = spec.get("boundObjectRef").filter(|v| v.is_object()) {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or("");
        let bound_name = bound.get("name").and_then(Value::as_str).unwrap_or("");
        let plural = match kind {
            "Pod" => "pods",
            "Secret" => "secrets",
            other => {
                return Err(invalid(
                    &name,
                    "spec.boundObjectRef.kind",
                    format!(
                        "Unsupported value: \"{other}\": supported values: \"Pod\", \"Secret\""
                    ),
                ))
            }
        };
        let object = get_object(&ctx.state, plural, Some(&namespace), bound_name)
            .await?
            .ok_or_else(|| ApiError::not_found(plural, "", bound_name))?;
        let uid = uid_of(&object);
        if let Some(want) = bound.get("uid").and_then(Value::as_str) {
            if !want.is_empty() && want != uid {
                return Err(ApiError::conflict(
                    plural,
                    "",
                    bound_name,
                    &format!("the UID in the bound object reference ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"),
                ));
            }
        }
        let r = ObjectRef {
            name: bound_name.to_string(),
            uid: uid.clone(),
        };
        if kind == "Pod" {
            let pod_sa = object
                .spec
                .service_account_name
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or("default");
            if pod_sa != name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount \"{name}\" to pod running with different serviceaccount name."
                )));
            }
            if let Some(node) = object.spec.node_name.as_deref() {
                if let Some(n) = get_object(&ctx.state, "nodes", None, node).await? {
                    claims_k.node = Some(ObjectRef {
                        name: node.to_string(),
                        uid: uid_of(&n),
                    });
                }
            }
            claims_k.pod = Some(r);
        } else {
            claims_k.secret = Some(r);
        }
        if let Some(b) = request.pointer_mut("/spec/boundObjectRef") {
            b["uid"] = json!(uid);
            if b.get("apiVersion").is_none() {
                b["apiVersion"] = json!("v1");
            }
        }
    }
    let now = super::now();
    let claims = Claims {
        iss: authn.issuer.clone(),
        sub: format!("system:serviceaccount:{namespace}:{name}"),
        aud: audiences.clone(),
        exp: now + expiration,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: claims_k,
    };
    let token = signer
        .sign(&claims)
        .map_err(|e| ApiError::internal(format!("failed to sign token: {e}")))?;
    let expires = jiff::Timestamp::from_second(now + expiration)
        .map(objects::timestamp)
        .map_err(ApiError::internal)?;
    tracing::debug!(%namespace, serviceaccount = %name, expiration, "issued token");
    if let Some(o) = request.as_object_mut() {
        o.insert("kind".into(), json!("TokenRequest"));
        o.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
        let meta = o.entry("metadata").or_insert_with(|| json!({}));
        meta["name"] = json!(name);
        meta["namespace"] = json!(namespace);
        meta["creationTimestamp"] = Value::Null;
        let spec = o.entry("spec").or_insert_with(|| json!({}));
        spec["audiences"] = json!(audiences);
        spec["expirationSeconds"] = json!(expiration);
        if spec.get("boundObjectRef").is_none() {
            spec["boundObjectRef"] = Value::Null;
        }
        o.insert(
            "status".into(),
            json!({"token": token, "expirationTimestamp": expires}),
        );
    }
    Ok(json_response(StatusCode::CREATED, &request))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(value: Value) -> Bound {
        serde_json::from_value(value).expect("bound")
    }

    #[test]
    fn bound_objects_stay_valid_for_a_minute_after_deletion() {
        let at = |secs: i64| {
            let t = jiff::Timestamp::from_second(super::super::now() + secs).expect("time");
            bound(json!({"metadata": {"deletionTimestamp": objects::timestamp(t)}}))
        };
        assert!(!deleted_long_ago(&bound(json!({"metadata": {}}))));
        assert!(!deleted_long_ago(&at(30)));
        assert!(!deleted_long_ago(&at(-30)));
        assert!(deleted_long_ago(&at(-120)));
        assert!(deleted_long_ago(&bound(
            json!({"metadata": {"deletionTimestamp": "garbage"}})
        )));
    }

    #[test]
    fn only_the_checked_fields_are_read() {
        let pod = bound(json!({"kind": "Pod", "metadata": {"name": "p", "uid": "u1",
            "labels": {"a": "b"}}, "spec": {"nodeName": "n", "serviceAccountName": "sa",
            "containers": [{"name": "c"}]}, "status": {"phase": "Running"}}));
        assert_eq!(uid_of(&pod), "u1");
        assert_eq!(pod.spec.node_name.as_deref(), Some("n"));
        assert_eq!(pod.spec.service_account_name.as_deref(), Some("sa"));
        let sa = bound(json!({"metadata": {"uid": "u2"}, "secrets": []}));
        assert_eq!((uid_of(&sa).as_str(), sa.spec.node_name), ("u2", None));
    }
}
