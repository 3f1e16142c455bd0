//! Request dispatch: authentication check, routing to discovery or to the REST handlers of a
//! resource (get/list/watch/create/update/patch/delete and subresources), and responses.
//!
//! Start with [`handle`]; each verb lives in its own file.

mod create;
mod delete;
pub mod read;
mod reviews;
mod subresources;
pub use subresources::selector_string;
mod update;
pub(crate) mod watch;

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use crate::auth::User;
use crate::authz::Attributes;
use crate::request::{route, Query, ResourcePath, Route};
use crate::selectors::{FieldSelector, LabelSelector, Selectors};
use crate::state::ApiState;
use crate::status::ApiError;
use crate::storage::interface::BackendFailure;
use crate::storage::StorageError;
use crate::table::IncludeObject;
use crate::{discovery, proxy, table};

/// Largest accepted request body (upstream: 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// How a response should be shaped (plain object or a server-side Table).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Output {
    /// Answer a `meta.k8s.io/v1` Table.
    pub table: bool,
    /// Answer `PartialObjectMetadata` (lists: `PartialObjectMetadataList`), what metadata-only
    /// clients ask for.
    pub metadata_only: bool,
    /// What table rows carry as `object`.
    pub include_object: IncludeObject,
}

impl Output {
    fn from_request(accept: &str, query: &Query) -> Self {
        let table = accept.split(',').any(|part| {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            params.contains(&"as=Table")
                && params.contains(&"g=meta.k8s.io")
                && params.contains(&"v=v1")
        });
        let metadata_only = !table
            && accept.split(',').any(|part| {
                let params: Vec<&str> = part.split(';').map(str::trim).collect();
                (params.contains(&"as=PartialObjectMetadata")
                    || params.contains(&"as=PartialObjectMetadataList"))
                    && params.contains(&"g=meta.k8s.io")
                    && params.contains(&"v=v1")
            });
        let include_object = match query.get("includeObject") {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        };
        Output {
            table,
            metadata_only,
            include_object,
        }
    }
}

/// One resource request.
pub struct Ctx {
    /// Server state.
    pub state: Arc<ApiState>,
    /// The requesting user.
    pub user: User,
    /// The addressed resource.
    pub path: ResourcePath,
    /// The query string.
    pub query: Query,
    /// The response shape.
    pub output: Output,
}

impl Ctx {
    /// The addressed resource.
    pub fn resource(&self) -> &'static api_types::registry::Resource {
        self.path.resource
    }

    /// The object name, or 404-style error when absent (never: routes require it).
    pub fn name(&self) -> Result<&str, ApiError> {
        self.path
            .name
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("resource name may not be empty"))
    }

    /// Selectors from the query.
    pub fn selectors(&self) -> Result<Selectors, ApiError> {
        let labels = LabelSelector::parse(self.query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(self.query.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Selectors { labels, fields })
    }

    /// Maps a storage error to the API error for the object `name` of this resource.
    pub fn storage_error(&self, e: StorageError, name: &str) -> ApiError {
        map_storage_error(self.resource(), e, name)
    }

    /// Whether `dryRun=All` was asked for.
    pub fn dry_run(&self) -> bool {
        self.query.all("dryRun").iter().any(|v| v == "All")
    }
}

/// Maps a storage error for `resource`/`name` to the upstream API error.
pub fn map_storage_error(
    resource: &api_types::registry::Resource,
    e: StorageError,
    name: &str,
) -> ApiError {
    match e {
        StorageError::NotFound { .. } => ApiError::not_found(resource.plural, resource.group, name),
        StorageError::AlreadyExists { .. } => {
            ApiError::already_exists(resource.plural, resource.group, name)
        }
        StorageError::Conflict { .. } => ApiError::stale(resource.plural, resource.group, name),
        StorageError::Compacted {
            requested,
            compacted,
        } => ApiError::gone(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StorageError::FutureRevision { requested, .. } => ApiError::timeout(format!(
            "Too large resource version: {requested}, current: unknown"
        )),
        other => {
            let detail = other.etcd_message().unwrap_or_default().to_string();
            match other.backend_failure() {
                BackendFailure::TooManyRequests => {
                    tracing::warn!(resource = resource.plural, name, error = %other, etcd = %detail, "storage overloaded");
                    ApiError::too_many_requests("Too many requests, please try again later.", 1)
                }
                BackendFailure::Timeout => {
                    tracing::warn!(resource = resource.plural, name, error = %other, etcd = %detail, "storage timed out");
                    ApiError::timeout(format!(
                        "Timeout: storage did not answer in time for {}, please try again",
                        resource.plural
                    ))
                }
                BackendFailure::Internal => {
                    let source = std::error::Error::source(&other)
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    tracing::error!(resource = resource.plural, name, error = %other, source = %source, "storage failed");
                    if source.is_empty() {
                        ApiError::internal(other)
                    } else {
                        ApiError::internal(format!("{other}: {source}"))
                    }
                }
            }
        }
    }
}

/// A JSON response.
pub fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The response for an error.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut response = json_response(e.status_code(), &e.to_status());
    let retry_after = e
        .details
        .as_ref()
        .and_then(|d| d.get("retryAfterSeconds"))
        .and_then(Value::as_u64);
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    }
    response
}

/// An object response, as a Table when asked for.
pub fn object_response(ctx: &Ctx, code: StatusCode, object: Value) -> Response<Body> {
    if ctx.output.table {
        json_response(
            code,
            &table::table(
                ctx.resource(),
                std::slice::from_ref(&object),
                None,
                None,
                ctx.output.include_object,
            ),
        )
    } else if ctx.output.metadata_only {
        json_response(code, &table::partial_metadata(&object))
    } else {
        json_response(code, &object)
    }
}

/// Reads the whole body (at most 3 MiB); protobuf object bodies are decoded to JSON.
pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let audit = req.extensions().get::<crate::audit::BodySlot>().cloned();
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    match limited.collect().await {
        Ok(c) if crate::protobuf::is_protobuf(&content_type) => {
            let object = crate::protobuf::decode(&c.to_bytes())
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(crate::audit::capture(
                audit,
                Bytes::from(serde_json::to_vec(&object).map_err(ApiError::internal)?),
            ))
        }
        Ok(c) => Ok(crate::audit::capture(audit, c.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large()),
        Err(e) => Err(ApiError::bad_request(format!("reading request body: {e}"))),
    }
}

/// Parses a JSON (or YAML-free) request body as an object.
pub fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the object provided is unrecognized: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    Ok(v)
}

/// Creates an object from inside the server (bootstrap).
pub async fn create_internal(ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    create::create(ctx, body).await
}

/// Replaces an object from inside the server (bootstrap).
pub async fn update_internal(ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    update::update(ctx, body).await
}

/// Requests (other than watches) slower than this are logged at info with who sent them.
const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_secs(1);

/// Handles one request from `user`.
pub async fn handle(state: Arc<ApiState>, user: User, req: Request<Incoming>) -> Response<Body> {
    use tracing::Instrument;
    let method = req.method().clone();
    // Both share the request's buffers: kept for the slow-request log.
    let uri = req.uri().clone();
    let user_agent = req.headers().get(header::USER_AGENT).cloned();
    let span = tracing::debug_span!("request", %method, path = %uri.path(), user = %user.name);
    let user_name = user.name.clone();
    async move {
        let started = std::time::Instant::now();
        let mut labels = crate::metrics::RequestLabels::method(method.as_str());
        let response = match dispatch(state.clone(), user, req, &mut labels).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        let code = response.status().as_u16();
        let elapsed = started.elapsed();
        if elapsed >= SLOW_REQUEST && labels.verb != "WATCH" {
            // Upstream traces requests slower than its threshold the same way.
            tracing::info!(
                verb = %labels.verb,
                path = uri.path(),
                query = uri.query().unwrap_or(""),
                user = %user_name,
                user_agent = user_agent.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
                code,
                elapsed_ms = elapsed.as_millis() as u64,
                "slow request"
            );
        }
        state.metrics.observe(labels, code);
        tracing::debug!(code, elapsed_ms = elapsed.as_millis() as u64, "served");
        response
    }
    .instrument(span)
    .await
}

async fn dispatch(
    state: Arc<ApiState>,
    user: User,
    req: Request<Incoming>,
    labels: &mut crate::metrics::RequestLabels,
) -> Result<Response<Body>, ApiError> {
    let route = route(req.uri().path());
    match &route {
        Route::Health => return Ok(plain(StatusCode::OK, "ok")),
        Route::Version => return Ok(json_response(StatusCode::OK, &discovery::version())),
        _ => {}
    }
    if user.is_anonymous() {
        return Err(ApiError::unauthorized());
    }
    let query = Query::parse(req.uri().query());
    let attrs =
        Attributes::from_request(user.clone(), req.method(), req.uri().path(), &route, &query);
    if attrs.resource_request {
        let apply = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"));
        *labels = crate::metrics::RequestLabels::resource(
            &attrs.verb,
            apply,
            &attrs.api_group,
            &attrs.resource,
            &attrs.subresource,
        );
    }
    state.authorizer.check(&attrs)?;
    // WebSocket exec/attach/portforward arrive as GET; upstream also requires `create`.
    if attrs.verb == "get"
        && matches!(
            attrs.subresource.as_str(),
            "exec" | "attach" | "portforward"
        )
    {
        state.authorizer.check(&Attributes {
            verb: "create".into(),
            ..attrs
        })?;
    }
    match route {
        Route::Health | Route::Version => Ok(plain(StatusCode::OK, "ok")),
        Route::Metrics => Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Body::from(state.metrics.render()))
            .unwrap_or_else(|_| Response::new(Body::empty()))),
        Route::OpenApi => crate::openapi::response(req.uri().path(), req.headers()),
        Route::Api => Ok(json_response(
            StatusCode::OK,
            &discovery::api_versions(&state),
        )),
        Route::Apis => Ok(json_response(StatusCode::OK, &discovery::api_group_list())),
        Route::Group(g) => discovery::api_group(&g)
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(ApiError::path_not_found),
        Route::GroupVersion(g, v) => Ok(json_response(
            StatusCode::OK,
            &discovery::resource_list(&g, &v),
        )),
        Route::NotFound => Err(ApiError::path_not_found()),
        Route::Resource(path) => resource(state, user, path, req).await,
    }
}

fn plain(code: StatusCode, text: &'static str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(text))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

async fn resource(
    state: Arc<ApiState>,
    user: User,
    path: ResourcePath,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query());
    let query = update::with_user_agent(query, req.method(), req.uri().query(), req.headers());
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let output = Output::from_request(&accept, &query);
    let method = req.method().clone();
    let ctx = Ctx {
        state,
        user,
        path,
        query,
        output,
    };
    let resource = ctx.resource();
    let sub = ctx.path.subresource.clone();
    let has_name = ctx.path.name.is_some();
    if let Some(sub) = sub.as_deref() {
        if resource.subresource(sub).is_none() {
            return Err(ApiError::path_not_found());
        }
        match sub {
            "log" => return proxy::logs(&ctx).await,
            "exec" | "attach" | "portforward" => return proxy::upgrade(&ctx, sub, req).await,
            _ => {}
        }
    }
    let watch = ctx.path.watch || ctx.query.flag("watch");
    match (method, has_name, sub.as_deref()) {
        (Method::GET, _, None) if watch => watch::serve(&ctx).await,
        (Method::GET, false, None) => read::list(&ctx).await,
        (Method::GET, true, None) => read::get(&ctx).await,
        (Method::GET, true, Some("status")) => read::get(&ctx).await,
        (Method::GET, true, Some("scale")) => subresources::get_scale(&ctx).await,
        (Method::POST, false, None) if resource.plural == "bindings" => {
            let body = read_body(req).await?;
            subresources::binding(&ctx, &body).await
        }
        (Method::POST, false, None) if resource.group == "authentication.k8s.io" => {
            let body = read_body(req).await?;
            crate::auth::reviews::review(&ctx, &body).await
        }
        (Method::POST, true, Some("token")) if resource.plural == "serviceaccounts" => {
            let body = read_body(req).await?;
            crate::auth::tokenrequest::create(&ctx, &body).await
        }
        (Method::POST, false, None) if reviews::is_review(resource) => {
            let body = read_body(req).await?;
            reviews::review(&ctx, &body)
        }
        (Method::POST, false, None) => {
            let body = read_body(req).await?;
            create::create(&ctx, &body).await
        }
        (Method::POST, true, Some("binding")) => {
            let body = read_body(req).await?;
            subresources::binding(&ctx, &body).await
        }
        (Method::POST, true, Some("eviction")) => {
            let body = read_body(req).await?;
            subresources::eviction(&ctx, &body).await
        }
        (Method::PUT, true, None | Some("status") | Some("finalize")) => {
            let body = read_body(req).await?;
            update::update(&ctx, &body).await
        }
        (Method::PUT, true, Some("scale")) => {
            let body = read_body(req).await?;
            subresources::put_scale(&ctx, &body).await
        }
        (Method::PATCH, true, None | Some("status")) => {
            let body = read_body(req).await?;
            update::patch(&ctx, &content_type, &body).await
        }
        (Method::PATCH, true, Some("scale")) => {
            let body = read_body(req).await?;
            subresources::patch_scale(&ctx, &content_type, &body).await
        }
        (Method::DELETE, true, None) => {
            let body = read_body(req).await?;
            delete::delete(&ctx, &body).await
        }
        (Method::DELETE, false, None) => {
            let body = read_body(req).await?;
            delete::delete_collection(&ctx, &body).await
        }
        (method, _, _) => Err(ApiError::method_not_allowed(method.as_str(), resource.kind)),
    }
}

#[cfg(test)]
mod storage_error_tests {
    use super::*;

    fn pods() -> &'static api_types::registry::Resource {
        api_types::registry::find("", "v1", "pods").expect("pods resource")
    }

    fn etcd_status(code: tonic::Code, message: &str) -> StorageError {
        StorageError::Etcd {
            context: "txn",
            source: etcd_client::Error::GRpcStatus(tonic::Status::new(code, message)),
        }
    }

    #[test]
    fn etcd_too_many_requests_is_429_with_retry_after() {
        let e = map_storage_error(
            pods(),
            etcd_status(
                tonic::Code::ResourceExhausted,
                "etcdserver: too many requests",
            ),
            "p",
        );
        assert_eq!(e.code, 429);
        assert_eq!(e.reason, "TooManyRequests");
        let response = error_response(&e);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        assert_eq!(e.to_status()["details"]["retryAfterSeconds"], 1);
    }

    #[test]
    fn etcd_timeouts_are_504() {
        for (code, message) in [
            (tonic::Code::Unavailable, "etcdserver: request timed out"),
            (tonic::Code::DeadlineExceeded, "context deadline exceeded"),
        ] {
            let e = map_storage_error(pods(), etcd_status(code, message), "p");
            assert_eq!((e.code, e.reason), (504, "Timeout"), "{message}");
        }
    }

    #[test]
    fn other_etcd_errors_are_500_carrying_the_grpc_message() {
        let e = map_storage_error(
            pods(),
            etcd_status(
                tonic::Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            "p",
        );
        assert_eq!((e.code, e.reason), (500, "InternalError"));
        assert!(e.message.contains("request is too large"), "{}", e.message);
        assert!(error_response(&e)
            .headers()
            .get(header::RETRY_AFTER)
            .is_none());
    }
}
