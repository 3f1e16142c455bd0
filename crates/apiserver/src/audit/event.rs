//! The audit event (audit.k8s.io/v1 `Event`), serialized as one JSON line per stage.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::policy::{Level, Stage};
use crate::auth::User;

/// `authentication.k8s.io/v1` UserInfo as recorded in an event.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UserInfo {
    /// User name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Unique id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra attributes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl From<&User> for UserInfo {
    fn from(user: &User) -> Self {
        UserInfo {
            username: user.name.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone(),
        }
    }
}

/// The object a resource request addresses.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// Resource plural.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    /// Namespace.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Object name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// API group (empty for core).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    /// API version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// Subresource.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// The response status recorded in an event (a meta/v1 Status, code always set).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ResponseStatus {
    /// Always empty, as upstream writes it.
    pub metadata: BTreeMap<String, Value>,
    /// `Success` or `Failure` (errors only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Error message.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Machine-readable reason.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// HTTP status code.
    pub code: u16,
}

impl ResponseStatus {
    /// The status of a response with `code` and, for failures, the Status body `body`.
    pub fn from_response(code: u16, body: Option<&Value>) -> Self {
        let field = |name: &str| {
            body.and_then(|b| b.get(name))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let is_status = body
            .and_then(|b| b.get("kind"))
            .and_then(Value::as_str)
            .is_some_and(|kind| kind == "Status");
        if is_status && code >= 300 {
            ResponseStatus {
                metadata: BTreeMap::new(),
                status: field("status"),
                message: field("message"),
                reason: field("reason"),
                code,
            }
        } else {
            ResponseStatus {
                code,
                ..Default::default()
            }
        }
    }
}

/// One audit event.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Always `Event`.
    pub kind: &'static str,
    /// Always `audit.k8s.io/v1`.
    pub api_version: &'static str,
    /// The level the policy chose.
    pub level: Level,
    /// A unique id per request, shared by all its stages.
    #[serde(rename = "auditID")]
    pub audit_id: String,
    /// The stage this event was written at.
    pub stage: Stage,
    /// The request path and query.
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    /// The verb (`get`, `list`, `create`, ... or the lower-cased method of non-resource requests).
    pub verb: String,
    /// The authenticated user.
    pub user: UserInfo,
    /// The impersonated user, when the request impersonated one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    /// Client addresses (X-Forwarded-For, X-Real-Ip, then the connection).
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    /// The client's User-Agent.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    /// The object addressed (resource requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectReference>,
    /// The response status (from ResponseStarted on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
    /// The request body (level Request and above, JSON bodies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    /// The response body (level RequestResponse, non-streaming JSON responses only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    /// When the request was received (RFC 3339, microseconds).
    pub request_received_timestamp: String,
    /// When this stage was reached.
    pub stage_timestamp: String,
    /// Annotations (none are set yet).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Now, as an RFC 3339 timestamp with microseconds, as upstream writes event times.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_upstream_field_names() {
        let event = Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: Level::Metadata,
            audit_id: "id".into(),
            stage: Stage::ResponseComplete,
            request_uri: "/api/v1/namespaces/a/pods/p".into(),
            verb: "get".into(),
            user: UserInfo {
                username: "alice".into(),
                groups: vec!["devs".into()],
                ..Default::default()
            },
            impersonated_user: None,
            source_ips: vec!["127.0.0.1".into()],
            user_agent: "kubectl".into(),
            object_ref: Some(ObjectReference {
                resource: "pods".into(),
                namespace: "a".into(),
                name: "p".into(),
                api_version: "v1".into(),
                ..Default::default()
            }),
            response_status: Some(ResponseStatus::from_response(200, None)),
            request_object: None,
            response_object: None,
            request_received_timestamp: now(),
            stage_timestamp: now(),
            annotations: BTreeMap::new(),
        };
        let v = serde_json::to_value(&event).expect("serializes");
        assert_eq!(v["auditID"], "id");
        assert_eq!(v["requestURI"], "/api/v1/namespaces/a/pods/p");
        assert_eq!(v["sourceIPs"][0], "127.0.0.1");
        assert_eq!(v["user"]["username"], "alice");
        assert_eq!(v["objectRef"]["apiVersion"], "v1");
        assert_eq!(v["responseStatus"]["code"], 200);
        assert_eq!(v["level"], "Metadata");
        assert_eq!(v["stage"], "ResponseComplete");
        assert!(v.get("requestObject").is_none());
        let ts = v["stageTimestamp"].as_str().expect("timestamp");
        assert!(
            ts.ends_with('Z') && ts.parse::<jiff::Timestamp>().is_ok(),
            "{ts}"
        );
    }

    #[test]
    fn failure_statuses_keep_reason_and_message() {
        let body = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "pods \"x\" not found", "reason": "NotFound", "code": 404
        });
        let status = ResponseStatus::from_response(404, Some(&body));
        assert_eq!(status.reason, "NotFound");
        assert_eq!(status.status, "Failure");
        assert_eq!(status.code, 404);
        let ok = ResponseStatus::from_response(200, Some(&body));
        assert_eq!(ok.reason, "");
    }
}
