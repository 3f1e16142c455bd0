//! DELETE and DELETE on a collection: preconditions, graceful pod deletion, finalizers and
//! propagation policies (Foreground adds `foregroundDeletion`, Orphan adds `orphan`).

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{json_response, object_response, read, Ctx};
use crate::admission;
use crate::objects;
use crate::status::ApiError;
use crate::storage::StorageError;

/// DeleteOptions from the body and the query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `propagationPolicy`.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun: ["All"]` in the body (the query's `dryRun` is [`Ctx::dry_run`]).
    pub dry_run: bool,
}

/// Parses DeleteOptions (the body wins over the query).
pub fn delete_options(ctx: &Ctx, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    super::update::validate_options(ctx, "DeleteOptions", None)?;
    let mut opts = DeleteOptions {
        grace_period: ctx.query.int("gracePeriodSeconds"),
        propagation: ctx.query.get("propagationPolicy").map(str::to_string),
        ..Default::default()
    };
    if ctx.query.get("orphanDependents") == Some("true") {
        opts.propagation = Some("Orphan".into());
    }
    if body.iter().any(|b| !b.is_ascii_whitespace()) {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            opts.grace_period = Some(g);
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            opts.propagation = Some(p.to_string());
        }
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            opts.propagation = Some("Orphan".into());
        }
        if let Some(list) = v.get("dryRun").and_then(Value::as_array) {
            if let Some(bad) = list.iter().find(|d| d.as_str() != Some("All")) {
                return Err(ApiError::invalid(
                    "DeleteOptions",
                    "meta.k8s.io",
                    "",
                    vec![crate::status::Cause {
                        reason: "FieldValueNotSupported",
                        message: format!(
                            "Unsupported value: []string{{{bad}}}: supported values: \"All\""
                        ),
                        field: "dryRun".into(),
                    }],
                ));
            }
            opts.dry_run = !list.is_empty();
        }
        if let Some(uid) = v.pointer("/preconditions/uid").and_then(Value::as_str) {
            opts.uid = Some(uid.to_string());
        }
        if let Some(rv) = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            opts.resource_version = Some(rv.to_string());
        }
    }
    match opts.propagation.as_deref() {
        None | Some("Background") | Some("Foreground") | Some("Orphan") => Ok(opts),
        Some(other) => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

/// The outcome of deleting one object.
pub struct Deleted {
    /// The object as deleted, or as marked for deletion.
    pub object: Value,
    /// Whether it is gone from storage now.
    pub gone: bool,
}

fn graceful_pod(object: &Value, opts: &DeleteOptions) -> Option<i64> {
    let bound = object
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = object.pointer("/status/phase").and_then(Value::as_str);
    if !bound || matches!(phase, Some("Succeeded") | Some("Failed")) {
        return None;
    }
    let grace = opts.grace_period.unwrap_or_else(|| {
        object
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    (grace > 0).then_some(grace)
}

/// Deletes (or marks for deletion) one object.
pub async fn delete_one(ctx: &Ctx, name: &str, opts: &DeleteOptions) -> Result<Deleted, ApiError> {
    let resource = ctx.resource();
    let key = objects::key(resource, ctx.path.namespace.as_deref(), name);
    for _ in 0..32 {
        let (current, kv) = read::load(ctx, name).await?;
        if let Some(uid) = &opts.uid {
            let actual = objects::meta_str(&current, "uid").unwrap_or("");
            if uid != actual {
                return Err(ApiError::uid_precondition(
                    resource.plural,
                    resource.group,
                    name,
                    uid,
                    actual,
                ));
            }
        }
        if let Some(rv) = &opts.resource_version {
            if *rv != kv.mod_revision.to_string() {
                return Err(ApiError::conflict(
                    resource.plural,
                    resource.group,
                    name,
                    &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", kv.mod_revision),
                ));
            }
        }
        admission::plugins::admit(
            &admission::plugins::Request {
                state: &ctx.state,
                user: &ctx.user,
                operation: admission::plugins::Operation::Delete,
                resource,
                subresource: None,
                namespace: ctx.path.namespace.as_deref(),
                name,
                old: Some(&current),
                dry_run: ctx.dry_run(),
            },
            None,
        )
        .await?;
        let mut object = current.clone();
        let mut finalizers = objects::finalizers(&object);
        let already_deleting = objects::is_deleting(&object);
        let wanted = match opts.propagation.as_deref() {
            Some("Foreground") => Some("foregroundDeletion"),
            Some("Orphan") => Some("orphan"),
            _ => None,
        };
        if let Some(f) = wanted {
            if !finalizers.iter().any(|x| x == f) {
                finalizers.push(f.to_string());
            }
        }
        let grace = if resource.plural == "pods" {
            graceful_pod(&object, opts)
        } else {
            None
        };
        let namespace_pending = resource.plural == "namespaces"
            && object
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        let keep = !finalizers.is_empty() || grace.is_some() || namespace_pending;
        if !keep {
            if ctx.dry_run() || opts.dry_run {
                return Ok(Deleted {
                    object: current,
                    gone: true,
                });
            }
            match ctx.state.storage.delete(&key, Some(kv.mod_revision)).await {
                Ok((_, revision)) => {
                    admission::release(&ctx.state, resource, &current, None).await;
                    let mut gone = current;
                    objects::set_resource_version(&mut gone, revision);
                    tracing::debug!(resource = resource.plural, %key, revision, "deleted");
                    return Ok(Deleted {
                        object: gone,
                        gone: true,
                    });
                }
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(ctx.storage_error(e, name)),
            }
        }
        {
            let meta = objects::meta_mut(&mut object);
            if !finalizers.is_empty() {
                meta.insert("finalizers".into(), json!(finalizers));
            }
            match grace {
                Some(g) => {
                    let current_grace = meta
                        .get("deletionGracePeriodSeconds")
                        .and_then(Value::as_i64);
                    if !already_deleting || current_grace.is_some_and(|c| g < c) {
                        let at = jiff::Timestamp::now()
                            .checked_add(jiff::SignedDuration::from_secs(g))
                            .unwrap_or_else(|_| jiff::Timestamp::now());
                        meta.insert("deletionTimestamp".into(), json!(objects::timestamp(at)));
                        meta.insert("deletionGracePeriodSeconds".into(), json!(g));
                    }
                }
                None => {
                    if !already_deleting {
                        meta.insert("deletionTimestamp".into(), json!(objects::now()));
                        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                    } else if resource.plural == "pods" {
                        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                    }
                }
            }
        }
        if resource.plural == "namespaces" {
            objects::put(&mut object, &["status", "phase"], json!("Terminating"));
        }
        if object == current {
            return Ok(Deleted {
                object,
                gone: false,
            });
        }
        if ctx.dry_run() || opts.dry_run {
            return Ok(Deleted {
                object,
                gone: false,
            });
        }
        match ctx
            .state
            .storage
            .update(
                &key,
                kv.mod_revision,
                objects::encode_as(resource, &object)?,
            )
            .await
        {
            Ok(revision) => {
                objects::set_resource_version(&mut object, revision);
                return Ok(Deleted {
                    object,
                    gone: false,
                });
            }
            Err(StorageError::Conflict { .. }) => continue,
            Err(e) => return Err(ctx.storage_error(e, name)),
        }
    }
    Err(ApiError::conflict(
        resource.plural,
        resource.group,
        name,
        "too many concurrent updates, please retry",
    ))
}

/// DELETE one object.
pub async fn delete(ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx, body)?;
    let deleted = delete_one(ctx, ctx.name()?, &opts).await?;
    tracing::debug!(
        resource = ctx.resource().plural,
        name = ctx.name()?,
        gone = deleted.gone,
        "delete"
    );
    Ok(object_response(ctx, StatusCode::OK, deleted.object))
}

/// DELETE a collection (selectors apply).
pub async fn delete_collection(ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let resource = ctx.resource();
    if !resource.supports("deletecollection") {
        return Err(ApiError::method_not_allowed("DELETE", resource.kind));
    }
    let opts = delete_options(ctx, body)?;
    let selectors = ctx.selectors()?;
    let prefix = read::list_prefix(ctx, &selectors);
    let page = read::list_objects(ctx, &prefix, &selectors, None, None, None).await?;
    let mut items = Vec::new();
    for object in page.items {
        let Some(name) = objects::name(&object).map(str::to_string) else {
            continue;
        };
        let ns = objects::meta_str(&object, "namespace").map(str::to_string);
        let sub = Ctx {
            state: ctx.state.clone(),
            user: ctx.user.clone(),
            path: crate::request::ResourcePath {
                namespace: ns,
                name: Some(name.clone()),
                ..ctx.path.clone()
            },
            query: ctx.query.clone(),
            output: ctx.output,
        };
        match delete_one(&sub, &name, &opts).await {
            Ok(d) => items.push(d.object),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": resource.list_kind(),
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": page.revision.to_string()},
            "items": items,
        }),
    ))
}
