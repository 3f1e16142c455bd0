//! The audit log: `--audit-policy-file` ([`policy`]) decides per request which level is
//! recorded; [`event`] is the audit.k8s.io/v1 Event written as JSON lines by [`writer`]
//! (`--audit-log-path`).
//!
//! [`crate::auth::serve`] calls [`begin`] once the user is authenticated (the policy sees the
//! authenticated user, as upstream's filter chain does), then [`complete`] with the response; a
//! request whose authentication failed is recorded by [`failed_authentication`] instead.
//! Stages: `RequestReceived` at once, `ResponseComplete` when the response is ready, and for
//! long-running requests (watch, logs, exec, ...) `ResponseStarted` when the headers go out and
//! `ResponseComplete` when the stream ends. Request bodies are captured where the handlers read
//! them ([`capture`]), only at level `Request` and above.

pub mod event;
pub mod policy;
pub mod writer;

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::auth::User;
use crate::authz::Attributes;
use crate::request::{Query, Route};
use crate::state::ApiState;
use event::{now, Event, ObjectReference, ResponseStatus, UserInfo};
use policy::{Decision, Level, Policy, Stage};
use writer::{AuditWriter, WriterConfig};

/// The response header carrying the request's audit id (and the request header that sets it).
pub const AUDIT_ID_HEADER: &str = "audit-id";

/// Why auditing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The policy file is unusable.
    #[error("{0}")]
    Policy(#[from] policy::PolicyError),
    /// The log could not be opened.
    #[error("{0}")]
    Writer(#[from] writer::WriterError),
}

/// The policy and the log backend.
#[derive(Debug)]
pub struct Auditor {
    policy: Policy,
    writer: AuditWriter,
}

impl Auditor {
    /// The auditor `--audit-policy-file` and `--audit-log-path` describe: `None` unless both are
    /// given (as upstream, without a backend nothing is recorded; without a policy every request
    /// is at level None).
    pub fn from_options(options: &crate::Options) -> Result<Option<Arc<Self>>, AuditError> {
        let (Some(policy_file), Some(log_path)) =
            (&options.audit_policy_file, &options.audit_log_path)
        else {
            return Ok(None);
        };
        let policy = Policy::load(policy_file)?;
        let writer = AuditWriter::start(WriterConfig {
            path: log_path.clone(),
            max_size_mb: options.audit_log_maxsize,
            max_backup: options.audit_log_maxbackup,
        })?;
        Ok(Some(Arc::new(Auditor { policy, writer })))
    }

    /// An auditor from parts.
    pub fn new(policy: Policy, writer: AuditWriter) -> Self {
        Auditor { policy, writer }
    }

    /// How many events were dropped because the log writer was behind.
    pub fn dropped(&self) -> u64 {
        self.writer.dropped()
    }
}

/// Where [`crate::handlers::read_body`] leaves the request body for the audit event.
#[derive(Clone, Debug, Default)]
pub struct BodySlot(Arc<OnceLock<Bytes>>);

/// Records `body` in `slot` (when the request is audited at level Request or above) and
/// returns it.
pub fn capture(slot: Option<BodySlot>, body: Bytes) -> Bytes {
    if let Some(slot) = slot {
        if slot.0.set(body.clone()).is_err() {
            tracing::debug!("request body read twice; auditing the first");
        }
    }
    body
}

/// The audit record of one request in flight.
pub struct RequestAudit {
    auditor: Arc<Auditor>,
    event: Event,
    decision: Decision,
    body: Option<BodySlot>,
    long_running: bool,
    impersonating: bool,
}

fn header(req: &Request<hyper::body::Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Starts auditing a request from the authenticated `user`: evaluates the policy and writes
/// the RequestReceived event. `None` when auditing is off or the level is None.
pub fn begin(
    state: &ApiState,
    user: &User,
    req: &mut Request<hyper::body::Incoming>,
) -> Option<RequestAudit> {
    let audit = prepare(state, user, req)?;
    audit.emit(Stage::RequestReceived);
    Some(audit)
}

/// Audits a request whose authentication failed, as upstream: the policy sees no user, and one
/// ResponseStarted event records code 401 with the credentials tried (`certificate_shown`: the
/// client presented a certificate). Returns `response` with its `Audit-Id`.
pub fn failed_authentication(
    state: &ApiState,
    certificate_shown: bool,
    req: &mut Request<hyper::body::Incoming>,
    response: Response<Body>,
) -> Response<Body> {
    let Some(mut audit) = prepare(state, &User::default(), req) else {
        return response;
    };
    audit.event.response_status = Some(ResponseStatus {
        message: attempted_credentials(req.headers(), req.uri().query(), certificate_shown),
        code: response.status().as_u16(),
        ..ResponseStatus::default()
    });
    audit.emit(Stage::ResponseStarted);
    let (mut parts, body) = response.into_parts();
    audit.set_id_header(&mut parts.headers);
    Response::from_parts(parts, body)
}

/// Upstream's wording of the credentials a failed request carried.
fn attempted_credentials(
    headers: &http::HeaderMap,
    query: Option<&str>,
    certificate_shown: bool,
) -> String {
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    let mut methods = Vec::new();
    if basic {
        methods.push("basic");
    }
    if crate::auth::bearer_token(headers).is_some() {
        methods.push("bearer");
    }
    if Query::parse(query)
        .get("access_token")
        .is_some_and(|t| !t.trim().is_empty())
    {
        methods.push("access_token");
    }
    if certificate_shown {
        methods.push("x509");
    }
    if methods.is_empty() {
        "Authentication failed, no credentials provided".to_string()
    } else {
        format!("Authentication failed, attempted: {}", methods.join(", "))
    }
}

/// The audit of a request from `user` with its policy decision, before any event is written.
fn prepare(
    state: &ApiState,
    user: &User,
    req: &mut Request<hyper::body::Incoming>,
) -> Option<RequestAudit> {
    let auditor = state.audit.clone()?;
    let path = req.uri().path().to_string();
    let route = crate::request::route(&path);
    let query = Query::parse(req.uri().query());
    let attrs = Attributes::from_request(user.clone(), req.method(), &path, &route, &query);
    let decision = auditor.policy.evaluate(&attrs);
    if decision.level == Level::None {
        return None;
    }
    let object_ref = match &route {
        Route::Resource(rp) => Some(ObjectReference {
            resource: attrs.resource.clone(),
            namespace: attrs.namespace.clone(),
            name: attrs.name.clone(),
            api_group: attrs.api_group.clone(),
            api_version: rp.resource.version.to_string(),
            subresource: attrs.subresource.clone(),
        }),
        _ => None,
    };
    let long_running = attrs.verb == "watch"
        || attrs.verb == "proxy"
        || matches!(
            attrs.subresource.as_str(),
            "log" | "exec" | "attach" | "portforward" | "proxy"
        );
    let mut source_ips: Vec<String> = header(req, "x-forwarded-for")
        .map(|v| {
            v.split(',')
                .map(|ip| ip.trim().to_string())
                .filter(|ip| !ip.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(real) = header(req, "x-real-ip") {
        if !source_ips.contains(&real) {
            source_ips.push(real);
        }
    }
    let audit_id = header(req, AUDIT_ID_HEADER).unwrap_or_else(crate::objects::new_uid);
    let received = now();
    let event = Event {
        kind: "Event",
        api_version: "audit.k8s.io/v1",
        level: decision.level,
        audit_id,
        stage: Stage::RequestReceived,
        request_uri: req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or(path),
        verb: attrs.verb.clone(),
        user: UserInfo::from(user),
        impersonated_user: None,
        source_ips,
        user_agent: header(req, "user-agent").unwrap_or_default(),
        object_ref,
        response_status: None,
        request_object: None,
        response_object: None,
        request_received_timestamp: received.clone(),
        stage_timestamp: received,
        annotations: Default::default(),
    };
    let body = (decision.level >= Level::Request).then(|| {
        let slot = BodySlot::default();
        req.extensions_mut().insert(slot.clone());
        slot
    });
    let audit = RequestAudit {
        auditor,
        event,
        decision,
        body,
        long_running,
        impersonating: req.headers().contains_key("impersonate-user"),
    };
    Some(audit)
}

impl RequestAudit {
    /// Records the user the request acts as after impersonation.
    pub fn impersonated(mut self, user: &User) -> Self {
        if self.impersonating {
            self.event.impersonated_user = Some(UserInfo::from(user));
        }
        self
    }

    /// Tells the client the request's audit ID (`Audit-Id`).
    fn set_id_header(&self, headers: &mut http::HeaderMap) {
        if let Ok(id) = HeaderValue::from_str(&self.event.audit_id) {
            headers.insert(AUDIT_ID_HEADER, id);
        }
    }

    fn emit(&self, stage: Stage) {
        if self.decision.omit_stages.contains(&stage) {
            return;
        }
        let mut event = self.event.clone();
        event.stage = stage;
        if stage != Stage::RequestReceived {
            event.stage_timestamp = now();
        }
        self.auditor.writer.write(&event);
    }

    fn request_object(&self) -> Option<Value> {
        let body = self.body.as_ref()?.0.get()?;
        serde_json::from_slice(body).ok()
    }
}

/// Writes an event once dropped (the end of a long-running response's body).
struct CompleteOnDrop(Option<RequestAudit>);

impl Drop for CompleteOnDrop {
    fn drop(&mut self) {
        if let Some(audit) = self.0.take() {
            audit.emit(Stage::ResponseComplete);
        }
    }
}

/// Finishes auditing a request with its `response`: sets the `Audit-Id` header and writes the
/// ResponseStarted/ResponseComplete events.
pub async fn complete(audit: Option<RequestAudit>, response: Response<Body>) -> Response<Body> {
    let Some(mut audit) = audit else {
        return response;
    };
    let (mut parts, body) = response.into_parts();
    audit.set_id_header(&mut parts.headers);
    let code = parts.status.as_u16();
    audit.event.request_object = audit.request_object();
    if audit.long_running {
        audit.event.response_status = Some(ResponseStatus::from_response(code, None));
        audit.emit(Stage::ResponseStarted);
        if parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection is handed over (exec, attach, port-forward): the response is done.
            audit.emit(Stage::ResponseComplete);
            return Response::from_parts(parts, body);
        }
        let guard = CompleteOnDrop(Some(audit));
        let stream = body.into_data_stream().map(move |chunk| {
            let _audit = &guard;
            chunk
        });
        return Response::from_parts(parts, Body::from_stream(stream));
    }
    let keep_body = code >= 300 || audit.decision.level == Level::RequestResponse;
    let body = if keep_body {
        match body.collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                let value: Option<Value> = serde_json::from_slice(&bytes).ok();
                audit.event.response_status =
                    Some(ResponseStatus::from_response(code, value.as_ref()));
                if audit.decision.level == Level::RequestResponse {
                    audit.event.response_object = value;
                }
                Body::from(bytes)
            }
            Err(error) => {
                tracing::warn!(%error, "reading a response body for the audit log");
                audit.event.response_status = Some(ResponseStatus::from_response(code, None));
                Body::empty()
            }
        }
    } else {
        audit.event.response_status = Some(ResponseStatus::from_response(code, None));
        body
    };
    audit.emit(Stage::ResponseComplete);
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_authentications_name_the_credentials_tried_as_upstream() {
        let headers = |value: Option<&str>| {
            let mut map = http::HeaderMap::new();
            if let Some(value) = value {
                map.insert(
                    http::header::AUTHORIZATION,
                    HeaderValue::from_str(value).expect("header"),
                );
            }
            map
        };
        assert_eq!(
            attempted_credentials(&headers(None), None, false),
            "Authentication failed, no credentials provided"
        );
        assert_eq!(
            attempted_credentials(&headers(Some("Bearer abc")), None, true),
            "Authentication failed, attempted: bearer, x509"
        );
        assert_eq!(
            attempted_credentials(&headers(Some("Basic dTpw")), Some("access_token=t"), false),
            "Authentication failed, attempted: basic, access_token"
        );
        assert_eq!(
            attempted_credentials(&headers(Some("Bearer")), Some("access_token="), false),
            "Authentication failed, no credentials provided"
        );
    }
}
