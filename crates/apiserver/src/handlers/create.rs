//! POST: create an object (generateName, uid, timestamps, generation, namespace checks,
//! admission, storage).

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{object_response, parse_object, Ctx};

use crate::admission;
use crate::objects;
use crate::status::ApiError;
use crate::storage::cache::CachedObject;

/// Checks that `namespace` exists and is not terminating.
pub async fn check_namespace(ctx: &Ctx, namespace: &str, name: &str) -> Result<(), ApiError> {
    let resource = ctx.resource();
    let ns_resource = api_types::registry::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
    let ns_key = objects::key(ns_resource, None, namespace);
    if active_in_cache(ctx, ns_resource, &ns_key) {
        return Ok(());
    }
    let ns = admission::lister::get(&ctx.state, &ns_key)
        .await
        .map_err(|e| ctx.storage_error(e, namespace))?;
    let Some(ns) = ns else {
        return Err(ApiError::not_found("namespaces", "", namespace));
    };
    if objects::is_deleting(&ns) {
        return Err(ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
            if resource.group.is_empty() { resource.plural.to_string() } else { format!("{}.{}", resource.plural, resource.group) },
            name,
            namespace
        )));
    }
    Ok(())
}

/// Whether the watch cache already holds the namespace at `key`, not terminating. As upstream's
/// namespace lifecycle admission reads its informer first, this needs no wait for the cache to
/// catch up: a namespace that exists stays usable until it is deleted, and one the cache does
/// not show (yet), or shows terminating, is looked up again through [`admission::lister`].
fn active_in_cache(ctx: &Ctx, ns_resource: &api_types::registry::Resource, key: &str) -> bool {
    let prefix = format!("{}/", ns_resource.storage_prefix());
    let Some(cache) = ctx
        .state
        .watch_cache
        .as_ref()
        .and_then(|c| c.cache(&prefix))
    else {
        return false;
    };
    // The namespace is decoded once per version and kept (admission reads it for every pod
    // too), cheaper than finding the field in its bytes on every create.
    cache.get(key).0.is_some_and(|ns| {
        ns.shared_value()
            .pointer("/metadata/deletionTimestamp")
            .is_none()
    })
}

/// Checks `kind`/`apiVersion` of a body against the resource.
pub fn check_type(
    resource: &api_types::registry::Resource,
    object: &Value,
) -> Result<(), ApiError> {
    if let Some(kind) = object.get("kind").and_then(Value::as_str) {
        if !kind.is_empty() && kind != resource.kind {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                object
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                resource.api_version()
            )));
        }
    }
    if let Some(av) = object.get("apiVersion").and_then(Value::as_str) {
        let group = av.split_once('/').map(|(g, _)| g).unwrap_or("");
        if !av.is_empty() && group != resource.group {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                av,
                resource.api_version()
            )));
        }
    }
    Ok(())
}

/// Whether objects of `resource` track `metadata.generation` (upstream: the strategies of
/// workloads and a few policy objects).
pub fn tracks_generation(resource: &api_types::registry::Resource) -> bool {
    matches!(
        resource.plural,
        "deployments"
            | "replicasets"
            | "statefulsets"
            | "daemonsets"
            | "jobs"
            | "cronjobs"
            | "replicationcontrollers"
            | "horizontalpodautoscalers"
            | "poddisruptionbudgets"
            | "networkpolicies"
            | "ingresses"
            | "pods"
    )
}

/// Fills server-set metadata of a new object.
pub fn init_metadata(
    resource: &api_types::registry::Resource,
    object: &mut Value,
    namespace: Option<&str>,
    name: &str,
) {
    let has_spec = object.get("spec").is_some() && tracks_generation(resource);
    let meta = objects::meta_mut(object);
    meta.insert("name".into(), json!(name));
    if let Some(ns) = namespace {
        meta.insert("namespace".into(), json!(ns));
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), json!(objects::new_uid()));
    meta.insert("creationTimestamp".into(), json!(objects::now()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    if has_spec {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
}

/// Resolves the name of a new object (from `name` or `generateName`).
pub fn new_name(
    resource: &api_types::registry::Resource,
    object: &Value,
) -> Result<String, ApiError> {
    if let Some(name) = objects::name(object) {
        return Ok(name.to_string());
    }
    match objects::meta_str(object, "generateName") {
        Some(base) => Ok(objects::generate_name(base)),
        None => Err(ApiError::invalid(
            resource.kind,
            resource.group,
            "",
            vec![crate::status::Cause {
                reason: "FieldValueRequired",
                message: "Required value: name or generateName is required".into(),
                field: "metadata.name".into(),
            }],
        )),
    }
}

/// The answer to a write of `object` stored as `stored` at `revision`: the stored bytes with
/// the resourceVersion spliced in, when the client wants the object as stored and the bytes
/// carry its type meta (no second serialization of the tree); else `object` serialized.
pub fn stored_response(
    ctx: &Ctx,
    code: StatusCode,
    stored: &objects::Encoded,
    revision: crate::storage::Revision,
    mut object: Value,
) -> Response<Body> {
    let resource = ctx.resource();
    let plain = !ctx.output.table && !ctx.output.metadata_only;
    let api_version = resource.api_version();
    let served = plain.then(|| match stored.splice_at {
        // The bytes are `object` itself, which carries its type meta: no walk to find where
        // its metadata is.
        Some((at, empty)) if has_type_meta(&object, &api_version, resource.kind) => {
            Some(objects::splice_resource_version(&stored.bytes, at, empty, revision).into())
        }
        _ => {
            let cached =
                CachedObject::from_stored(String::new(), &stored.bytes, revision, None).ok()?;
            cached
                .has_type_meta(&api_version, resource.kind)
                .then(|| cached.stored_json().clone())
        }
    });
    match served.flatten() {
        Some(body) => super::read::raw_json_response(code, body),
        None => {
            objects::set_resource_version(&mut object, revision);
            object_response(ctx, code, object)
        }
    }
}

/// Whether `object` has the type meta `api_version` `kind`.
fn has_type_meta(object: &Value, api_version: &str, kind: &str) -> bool {
    object.get("apiVersion").and_then(Value::as_str) == Some(api_version)
        && object.get("kind").and_then(Value::as_str) == Some(kind)
}

/// POST.
pub async fn create(ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let object = parse_object(body)?;
    let (response, unknown) =
        admission::lister::with_snapshot(&ctx.state, create_object(ctx, object, true)).await?;
    let warnings = super::update::unknown_field_warnings(ctx, unknown);
    Ok(super::update::with_warnings(response, &warnings))
}

/// Creates `object`; `track` records the request's field manager as an `Update` (a create by
/// server-side apply has its `Apply` entry already). Answers the response and the fields of
/// the request's object that its schema does not declare.
pub async fn create_object(
    ctx: &Ctx,
    mut object: Value,
    track: bool,
) -> Result<(Response<Body>, Vec<String>), ApiError> {
    let resource = ctx.resource();
    super::update::validate_options(ctx, "CreateOptions", None)?;
    check_type(resource, &object)?;
    let unknown = admission::fields::check(resource, &object, ctx.query.get("fieldValidation"))?;
    let namespace = if resource.namespaced {
        let path_ns = ctx.path.namespace.clone().ok_or_else(|| {
            ApiError::bad_request("the server could not find the requested resource")
        })?;
        if let Some(body_ns) = objects::meta_str(&object, "namespace") {
            if body_ns != path_ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        Some(path_ns)
    } else {
        None
    };
    let name = new_name(resource, &object)?;
    objects::validate_name(resource, &name)?;
    if let Some(ns) = namespace.as_deref() {
        check_namespace(ctx, ns, &name).await?;
    }
    init_metadata(resource, &mut object, namespace.as_deref(), &name);
    objects::set_type_meta(&mut object, resource);
    admission::default_on_create(resource, &mut object);
    admission::default_object(resource, &mut object);
    if track {
        let manager = super::update::field_manager(ctx);
        let (api_version, now) = (resource.api_version(), objects::now());
        let writer = super::update::writer(ctx, &manager, &api_version, &now);
        crate::patch::apply::track_update(None, &mut object, &writer);
    }
    admission::validate_create(resource, &object)?;
    crate::authz::escalation::check(
        &ctx.state.authorizer,
        &ctx.user,
        resource.group,
        resource.plural,
        &object,
    )?;
    let warnings = admission::plugins::admit(
        &admission::plugins::Request {
            state: &ctx.state,
            user: &ctx.user,
            operation: admission::plugins::Operation::Create,
            resource,
            subresource: None,
            namespace: namespace.as_deref(),
            name: &name,
            old: None,
            dry_run: ctx.dry_run(),
        },
        Some(&mut object),
    )
    .await?;
    let key = objects::key(resource, namespace.as_deref(), &name);
    if ctx.dry_run() {
        let mut response = object_response(ctx, StatusCode::CREATED, object);
        admission::plugins::add_warnings(&mut response, &warnings);
        return Ok((response, unknown));
    }
    if resource.group.is_empty() && resource.plural == "services" {
        // Answer AlreadyExists before allocating (a fixed ClusterIP of the existing object
        // would otherwise fail as "already allocated"). Other resources rely on the create
        // transaction alone.
        let exists = ctx
            .state
            .storage
            .get(&key)
            .await
            .map_err(|e| ctx.storage_error(e, &name))?;
        if exists.is_some() {
            return Err(ApiError::already_exists(
                resource.plural,
                resource.group,
                &name,
            ));
        }
    }
    admission::allocate(&ctx.state, resource, &mut object, None).await?;
    let mut object = crate::conversion::normalized(resource, object);
    // Most resources are stored in the form they are served in: encode the tree itself
    // instead of a converted copy.
    let encoded = objects::encode_for(resource, &object)?;
    let plain = !ctx.output.table && !ctx.output.metadata_only;
    let stored = plain.then(|| encoded.clone());
    match ctx.state.storage.create(&key, encoded.bytes).await {
        Ok(revision) => {
            tracing::debug!(resource = resource.plural, %key, revision, "created");
            let mut response = match stored {
                Some(stored) => {
                    stored_response(ctx, StatusCode::CREATED, &stored, revision, object)
                }
                None => {
                    objects::set_resource_version(&mut object, revision);
                    object_response(ctx, StatusCode::CREATED, object)
                }
            };
            admission::plugins::add_warnings(&mut response, &warnings);
            Ok((response, unknown))
        }
        Err(e) => {
            admission::release(&ctx.state, resource, &object, None).await;
            Err(ctx.storage_error(e, &name))
        }
    }
}
