//! PUT and PATCH (JSON patch, merge patch, strategic merge patch, and server-side apply),
//! through one guaranteed-update loop with compare-and-swap. Every write records its field
//! manager in `managedFields` ([`crate::patch::apply`]); the request options (`dryRun`,
//! `fieldManager`, `force`) are validated as upstream, and `fieldValidation=Warn` (the default)
//! answers unknown fields with `Warning` headers.

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{object_response, parse_object, read, Ctx};
use crate::admission;
use crate::objects;
use crate::patch::{apply, strategic};
use crate::status::{ApiError, Cause};

/// The query key the dispatcher stores the request's User-Agent under (never a real option).
pub const USER_AGENT_KEY: &str = "\u{0}userAgent";

/// Adds the User-Agent of a write request (`POST`, `PUT`, `PATCH`) to `query` under
/// [`USER_AGENT_KEY`], for field managers.
pub fn with_user_agent(
    query: crate::request::Query,
    method: &http::Method,
    raw: Option<&str>,
    headers: &http::HeaderMap,
) -> crate::request::Query {
    if !matches!(
        *method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH
    ) {
        return query;
    }
    let Some(ua) = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    else {
        return query;
    };
    let extra = format!(
        "{}={}",
        crate::request::encode(USER_AGENT_KEY),
        crate::request::encode(ua)
    );
    match raw {
        Some(r) if !r.is_empty() => crate::request::Query::parse(Some(&format!("{r}&{extra}"))),
        _ => crate::request::Query::parse(Some(&extra)),
    }
}

/// The field manager of a request: `fieldManager`, else the User-Agent up to its first `/`
/// (upstream), else `kube-apiserver` for the server's own writes.
pub fn field_manager(ctx: &Ctx) -> String {
    if let Some(m) = ctx.query.get("fieldManager") {
        return m.to_string();
    }
    match ctx.query.get(USER_AGENT_KEY) {
        Some(ua) => ua
            .split('/')
            .next()
            .unwrap_or("")
            .chars()
            .take(128)
            .collect(),
        None => "kube-apiserver".to_string(),
    }
}

/// Validates the write options of a request as upstream (`CreateOptions`, `UpdateOptions`,
/// `PatchOptions`, `DeleteOptions`): 422 Invalid naming the options kind.
pub fn validate_options(ctx: &Ctx, kind: &str, apply_patch: Option<bool>) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let dry_run = ctx.query.all("dryRun");
    if dry_run.iter().any(|v| v != "All") {
        let list: Vec<String> = dry_run.iter().map(|v| format!("{v:?}")).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: []string{{{}}}: supported values: \"All\"",
                list.join(", ")
            ),
            field: "dryRun".into(),
        });
    }
    if kind != "DeleteOptions" {
        let manager = ctx.query.get("fieldManager");
        if manager.is_some_and(|m| m.len() > 128) {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                message: "Too long: may not be more than 128 bytes".into(),
                field: "fieldManager".into(),
            });
        }
        match apply_patch {
            Some(true) if manager.is_none_or(str::is_empty) => causes.push(Cause {
                reason: "FieldValueRequired",
                message: "Required value: is required for apply patch".into(),
                field: "fieldManager".into(),
            }),
            Some(false) if ctx.query.get("force").is_some() => causes.push(Cause {
                reason: "FieldValueForbidden",
                message: "Forbidden: may not be specified for non-apply patch".into(),
                field: "force".into(),
            }),
            _ => {}
        }
    }
    if causes.is_empty() {
        return Ok(());
    }
    let mut e = ApiError::invalid(kind, "meta.k8s.io", "", causes);
    e.message = e.message.replacen(
        &format!("{kind} \"\""),
        &format!("{kind}.meta.k8s.io \"\""),
        1,
    );
    Err(e)
}

/// Who writes, for `managedFields`.
pub fn writer<'a>(
    ctx: &'a Ctx,
    manager: &'a str,
    api_version: &'a str,
    now: &'a str,
) -> apply::Writer<'a> {
    apply::Writer {
        manager,
        api_version,
        subresource: ctx.path.subresource.as_deref(),
        has_status: ctx.resource().has_status(),
        now,
    }
}

/// The `Warning` headers for unknown fields under `fieldValidation=Warn` (the default).
pub fn field_warnings(ctx: &Ctx, object: &Value) -> Vec<String> {
    if !warns_unknown_fields(ctx) {
        return Vec::new();
    }
    unknown_field_warnings(
        ctx,
        crate::admission::fields::unknown_fields(ctx.resource(), object),
    )
}

/// Whether the request's unknown fields are answered with warnings (`fieldValidation` unset
/// or `Warn`, on the object itself).
fn warns_unknown_fields(ctx: &Ctx) -> bool {
    matches!(ctx.query.get("fieldValidation"), None | Some("Warn"))
        && ctx.path.subresource.is_none()
}

/// The warnings for `unknown` fields that [`admission::fields::check`] found, when the request
/// wants them.
pub fn unknown_field_warnings(ctx: &Ctx, unknown: Vec<String>) -> Vec<String> {
    if !warns_unknown_fields(ctx) {
        return Vec::new();
    }
    unknown
        .into_iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect()
}

/// Adds `Warning: 299 - "<text>"` headers to a response.
pub fn with_warnings(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            response.headers_mut().append(http::header::WARNING, v);
        }
    }
    response
}

/// The field warnings of a request followed by the admission warnings of its write, each
/// once (upstream's warning recorder drops repeated texts).
fn merged_warnings(fields: Vec<String>, admission: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(fields.len() + admission.len());
    for w in fields.into_iter().chain(admission) {
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// The 409 of an apply whose fields other managers own (upstream `FieldManagerConflict`).
fn conflict_error(err: apply::ApplyError) -> ApiError {
    match err {
        apply::ApplyError::Conflicts(conflicts) => ApiError {
            code: 409,
            reason: "Conflict",
            message: apply::conflict_message(&conflicts),
            details: Some(json!({"causes": conflicts.iter().map(|c| json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", c.manager),
                "field": c.path,
            })).collect::<Vec<_>>()})),
        },
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Result of a guaranteed update.
pub struct Updated {
    /// The object after the write (or as deleted).
    pub object: Value,
    /// The object was removed (finalizers emptied while deleting).
    pub deleted: bool,
    /// Admission warnings of the write that went through (PodSecurity's `would violate ...`),
    /// for `Warning` headers.
    pub warnings: Vec<String>,
    /// The bytes written and their revision, when the write stored the object: the answer is
    /// those bytes with the revision spliced in rather than a second serialization.
    pub stored: Option<(objects::Encoded, crate::storage::Revision)>,
}

impl Updated {
    /// The response for `ctx` carrying the updated object.
    pub fn response(self, ctx: &Ctx, code: StatusCode) -> Response<Body> {
        match self.stored {
            Some((stored, revision)) if !self.deleted => {
                super::create::stored_response(ctx, code, &stored, revision, self.object)
            }
            _ => object_response(ctx, code, self.object),
        }
    }
}

/// Metadata fields the server owns on update.
const IMMUTABLE_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
];

/// Merges a client's new object onto the current one for `subresource`.
pub fn prepare_update(
    resource: &api_types::registry::Resource,
    subresource: Option<&str>,
    old: &Value,
    new: Value,
) -> Value {
    match subresource {
        Some("status") => {
            let mut out = old.clone();
            match new.get("status") {
                Some(s) => out["status"] = s.clone(),
                None => {
                    if let Some(o) = out.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            out
        }
        Some("binding") => {
            let mut out = new;
            objects::set_type_meta(&mut out, resource);
            out
        }
        Some("finalize") => {
            let mut out = old.clone();
            let fin = new
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or_else(|| json!([]));
            objects::put(&mut out, &["spec", "finalizers"], fin);
            out
        }
        _ => {
            let mut out = new;
            // Only the immutable fields are read: no copy of the old metadata (its managed
            // fields are most of it).
            let old_meta = old.get("metadata");
            let meta = objects::meta_mut(&mut out);
            for field in IMMUTABLE_META {
                match old_meta.and_then(|m| m.get(*field)) {
                    Some(v) => {
                        meta.insert((*field).to_string(), v.clone());
                    }
                    None => {
                        meta.remove(*field);
                    }
                }
            }
            if resource.has_status() {
                match old.get("status") {
                    Some(s) => out["status"] = s.clone(),
                    None => {
                        if let Some(o) = out.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            if resource.plural == "pods" {
                for field in ["priority", "preemptionPolicy", "priorityClassName"] {
                    if let Some(v) = old.get("spec").and_then(|s| s.get(field)) {
                        if out.get("spec").and_then(|s| s.get(field)).is_none() {
                            objects::put(&mut out, &["spec", field], v.clone());
                        }
                    }
                }
                if let Some(node) = old.pointer("/spec/nodeName") {
                    if out.pointer("/spec/nodeName").is_none() && out.get("spec").is_some() {
                        objects::put(&mut out, &["spec", "nodeName"], node.clone());
                    }
                }
            }
            if objects::spec_part(old) != objects::spec_part(&out) {
                if let Some(g) = old.pointer("/metadata/generation").and_then(Value::as_i64) {
                    objects::meta_mut(&mut out).insert("generation".into(), json!(g + 1));
                }
            }
            objects::set_type_meta(&mut out, resource);
            out
        }
    }
}

/// Whether two objects are equal but for `metadata.resourceVersion` and
/// `metadata.managedFields` (compared in place: an update used to copy both objects).
fn same_ignoring_version(a: &Value, b: &Value) -> bool {
    fn same_members(
        a: &serde_json::Map<String, Value>,
        b: &serde_json::Map<String, Value>,
        ignored: &[&str],
        same: impl Fn(&str, &Value, &Value) -> bool,
    ) -> bool {
        let kept = |m: &serde_json::Map<String, Value>| {
            m.keys().filter(|k| !ignored.contains(&k.as_str())).count()
        };
        kept(a) == kept(b)
            && a.iter()
                .filter(|(k, _)| !ignored.contains(&k.as_str()))
                .all(|(k, v)| b.get(k).is_some_and(|w| same(k, v, w)))
    }
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    same_members(a, b, &[], |k, v, w| {
        match (k, v.as_object(), w.as_object()) {
            ("metadata", Some(v), Some(w)) => {
                same_members(v, w, &["resourceVersion", "managedFields"], |_, x, y| {
                    x == y
                })
            }
            _ => v == w,
        }
    })
}

fn ready_to_remove(resource: &api_types::registry::Resource, object: &Value) -> bool {
    if !objects::is_deleting(object) || !objects::finalizers(object).is_empty() {
        return false;
    }
    if resource.plural == "namespaces" {
        let spec_fin = object
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        return !spec_fin;
    }
    if resource.plural == "pods" {
        // A graceful pod deletion waits for the kubelet's grace-0 delete.
        return object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0;
    }
    true
}

/// The UID a write's body names when it is not the stored object's: `(named, stored)`.
fn foreign_uid<'a>(current: &'a Value, new: &'a Value) -> Option<(&'a str, &'a str)> {
    let named = objects::meta_str(new, "uid").filter(|uid| !uid.is_empty())?;
    let stored = objects::meta_str(current, "uid").unwrap_or("");
    (named != stored).then_some((named, stored))
}

/// Reads, mutates and writes `name` with compare-and-swap, retrying on concurrent writes. The
/// mutated object's `resourceVersion`, when set, is a precondition (409 when stale).
pub async fn guaranteed_update<F>(ctx: &Ctx, name: &str, mutate: F) -> Result<Updated, ApiError>
where
    F: Fn(&Value) -> Result<Value, ApiError>,
{
    guaranteed_update_tracked(ctx, name, true, mutate).await
}

/// [`guaranteed_update`]; `track` records the write as an `Update` of the request's field
/// manager (applies record their own `Apply` entry while mutating).
pub async fn guaranteed_update_tracked<F>(
    ctx: &Ctx,
    name: &str,
    track: bool,
    mutate: F,
) -> Result<Updated, ApiError>
where
    F: Fn(&Value) -> Result<Value, ApiError>,
{
    let manager = field_manager(ctx);
    let api_version = ctx.resource().api_version();
    let resource = ctx.resource();
    let key = objects::key(resource, ctx.path.namespace.as_deref(), name);
    let sub = ctx.path.subresource.as_deref();
    // The first attempt starts from the watch cache's copy, as upstream's cacher hands its
    // cached object to the storage's guaranteed update: the write is a compare-and-swap on its
    // revision, so a stale copy only costs a retry. Anything decided on the cached copy
    // other than a successful write (an error, a no-op, a dry run) is decided again on the
    // object read from storage.
    let mut cache_first = !ctx.dry_run();
    for _ in 0..32 {
        let cached = if std::mem::take(&mut cache_first) {
            read::load_cached(ctx, name)
        } else {
            None
        };
        let from_cache = cached.is_some();
        let (current, current_revision) = match cached {
            Some(found) => found,
            None => {
                let (current, kv) = read::load(ctx, name).await?;
                (current, kv.mod_revision)
            }
        };
        let attempt: Result<Option<Updated>, ApiError> = async {
        let new = mutate(&current)?;
        if let Some(rv) = objects::resource_version(&new) {
            if rv? != current_revision {
                return Err(ApiError::stale(resource.plural, resource.group, name));
            }
        }
        if let Some(new_name) = objects::name(&new) {
            if new_name != name && sub.is_none() {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({new_name}) does not match the name on the URL ({name})"
                )));
            }
        }
        // `metadata.uid` cannot change: a write (a patch, say) naming another UID is 422, as
        // upstream's object metadata validation answers.
        if let Some((named, _)) = foreign_uid(&current, &new) {
            return Err(ApiError::invalid(
                resource.kind,
                resource.group,
                name,
                vec![Cause {
                    reason: "FieldValueInvalid",
                    message: format!("Invalid value: \"{named}\": field is immutable"),
                    field: "metadata.uid".into(),
                }],
            ));
        }
        let mut new = prepare_update(resource, sub, &current, new);
        admission::default_object(resource, &mut new);
        if track {
            let now = objects::now();
            apply::track_update(
                Some(&current),
                &mut new,
                &writer(ctx, &manager, &api_version, &now),
            );
        }
        admission::validate_update(resource, &current, &new)?;
        crate::authz::escalation::check(
            &ctx.state.authorizer,
            &ctx.user,
            resource.group,
            resource.plural,
            &new,
        )?;
        let warnings = admission::plugins::admit(
            &admission::plugins::Request {
                state: &ctx.state,
                user: &ctx.user,
                operation: admission::plugins::Operation::Update,
                resource,
                subresource: sub,
                namespace: ctx.path.namespace.as_deref(),
                name,
                old: Some(&current),
                dry_run: ctx.dry_run(),
            },
            Some(&mut new),
        )
        .await?;
        let mut new = crate::conversion::normalized(resource, new);
        // A no-op update is skipped, unless the stored value is under an older encryption
        // key: rewriting it is how keys are rotated.
        let unchanged = same_ignoring_version(&current, &new)
            || crate::conversion::same_when_stored(resource, &current, &new);
        if unchanged && from_cache {
            return Ok(None);
        }
        if unchanged && !ctx.state.needs_reencryption(&key).await {
            return Ok(Some(Updated {
                object: current.clone(),
                deleted: false,
                warnings,
                stored: None,
            }));
        }
        if ctx.dry_run() {
            return Ok(Some(Updated {
                object: new,
                deleted: false,
                warnings,
                stored: None,
            }));
        }
        if ready_to_remove(resource, &new) {
            match ctx.state.storage.delete(&key, Some(current_revision)).await {
                Ok((_, revision)) => {
                    admission::release(&ctx.state, resource, &current, None).await;
                    objects::set_resource_version(&mut new, revision);
                    return Ok(Some(Updated {
                        object: new,
                        deleted: true,
                        warnings,
                        stored: None,
                    }));
                }
                Err(crate::storage::StorageError::Conflict { .. }) => return Ok(None),
                Err(e) => return Err(ctx.storage_error(e, name)),
            }
        }
        admission::allocate(&ctx.state, resource, &mut new, Some(&current)).await?;
        let value = objects::encode_for(resource, &new)?;
        match ctx
            .state
            .storage
            .update(&key, current_revision, value.bytes.clone())
            .await
        {
            Ok(revision) => {
                admission::release(&ctx.state, resource, &current, Some(&new)).await;
                objects::set_resource_version(&mut new, revision);
                Ok(Some(Updated {
                    object: new,
                    deleted: false,
                    warnings,
                    stored: Some((value, revision)),
                }))
            }
            Err(crate::storage::StorageError::Conflict { .. }) => {
                admission::release(&ctx.state, resource, &new, Some(&current)).await;
                Ok(None)
            }
            Err(e) => {
                admission::release(&ctx.state, resource, &new, Some(&current)).await;
                Err(ctx.storage_error(e, name))
            }
        }
        }
        .await;
        match attempt {
            Ok(Some(updated)) => return Ok(updated),
            // A concurrent write, or a decision to take again on the stored object.
            Ok(None) => continue,
            Err(_) if from_cache => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        resource.plural,
        resource.group,
        name,
        "too many concurrent updates, please retry",
    ))
}

/// Whether `error` is the 404 of the object `name` of `resource` itself.
fn is_not_found_of(error: &ApiError, resource: &api_types::registry::Resource, name: &str) -> bool {
    let own = ApiError::not_found(resource.plural, resource.group, name);
    error.code == own.code && error.message == own.message
}

/// Resources that a PUT may create (upstream `AllowCreateOnUpdate`).
fn create_on_update(plural: &str) -> bool {
    matches!(plural, "endpoints" | "leases" | "events")
}

/// PUT (also `/status` and `namespaces/finalize`).
pub async fn update(ctx: &Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let resource = ctx.resource();
    let name = ctx.name()?.to_string();
    validate_options(ctx, "UpdateOptions", None)?;
    let new = parse_object(body)?;
    super::create::check_type(resource, &new)?;
    let directive = if ctx.path.subresource.is_none() {
        ctx.query.get("fieldValidation")
    } else {
        None
    };
    let warnings =
        unknown_field_warnings(ctx, admission::fields::check(resource, &new, directive)?);
    if let Some(ns) = objects::meta_str(&new, "namespace") {
        if ctx.path.namespace.as_deref().is_some_and(|p| p != ns) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let mut updated = match guaranteed_update(ctx, &name, |current| {
        // A PUT body's UID is a precondition, as upstream: another object under the name
        // (deleted and created again) is a 409 Conflict.
        if let Some((named, stored)) = foreign_uid(current, &new) {
            return Err(ApiError::uid_precondition(
                resource.plural,
                resource.group,
                &name,
                named,
                stored,
            ));
        }
        Ok(new.clone())
    })
    .await
    {
        // A PUT of a missing object creates it where upstream allows that (a Lease renewal
        // reads the object once, not once to see it exists and again to update it).
        Err(e)
            if ctx.path.subresource.is_none()
                && create_on_update(resource.plural)
                && is_not_found_of(&e, resource, &name) =>
        {
            let mut obj = new.clone();
            objects::meta_mut(&mut obj).insert("name".into(), json!(name));
            objects::meta_mut(&mut obj).remove("resourceVersion");
            let body = serde_json::to_vec(&obj).map_err(ApiError::internal)?;
            return super::create::create(ctx, &body).await;
        }
        other => other?,
    };
    if updated.deleted {
        tracing::debug!(resource = resource.plural, %name, "finalized and removed");
    }
    let warnings = merged_warnings(warnings, std::mem::take(&mut updated.warnings));
    Ok(with_warnings(
        updated.response(ctx, StatusCode::OK),
        &warnings,
    ))
}

/// Applies a patch body of `content_type` to `current`; the result must be an object.
pub fn apply_patch(current: &Value, content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let patched = apply_patch_any(current, content_type, body)?;
    if !patched.is_object() {
        return Err(ApiError::bad_request("the patch must result in an object"));
    }
    Ok(patched)
}

fn apply_patch_any(current: &Value, content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json-patch+json" => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &patch)
                .map_err(|e| ApiError::invalid_patch(e.to_string()))?;
            Ok(doc)
        }
        "application/merge-patch+json" => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut doc = current.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        "application/strategic-merge-patch+json" | "application/apply-patch+yaml" => {
            let patch = parse_patch_document(body)?;
            strategic::apply(current, &patch).map_err(|e| ApiError::bad_request(e.to_string()))
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// Parses a JSON (or YAML, for apply patches) patch document.
fn parse_patch_document(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) => serde_yaml_ng::from_slice::<Value>(body)
            .map_err(|_| ApiError::bad_request(format!("error decoding patch: {json_err}"))),
    }
}

/// PATCH (also `/status`).
pub async fn patch(ctx: &Ctx, content_type: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let name = ctx.name()?.to_string();
    let is_apply = content_type.starts_with("application/apply-patch");
    validate_options(ctx, "PatchOptions", Some(is_apply))?;
    if is_apply {
        return server_side_apply(ctx, &name, body).await;
    }
    let mut updated = guaranteed_update(ctx, &name, |current| {
        let patched = apply_patch(current, content_type, body)?;
        let directive = if ctx.path.subresource.is_none() {
            ctx.query.get("fieldValidation")
        } else {
            None
        };
        admission::fields::check(ctx.resource(), &patched, directive)?;
        Ok(patched)
    })
    .await?;
    let warnings = merged_warnings(
        field_warnings(ctx, &updated.object),
        std::mem::take(&mut updated.warnings),
    );
    Ok(with_warnings(
        updated.response(ctx, StatusCode::OK),
        &warnings,
    ))
}

/// Server-side apply: merges the applied configuration, records the `Apply` manager, answers
/// field conflicts with 409 unless `force=true`, and creates a missing object.
async fn server_side_apply(ctx: &Ctx, name: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let resource = ctx.resource();
    let mut applied = parse_patch_document(body)?;
    if !applied.is_object() {
        return Err(ApiError::bad_request("the patch must result in an object"));
    }
    super::create::check_type(resource, &applied)?;
    objects::set_type_meta(&mut applied, resource);
    let manager = field_manager(ctx);
    let api_version = resource.api_version();
    let force = ctx.query.flag("force");
    let directive = if ctx.path.subresource.is_none() {
        ctx.query.get("fieldValidation")
    } else {
        None
    };
    let warnings = unknown_field_warnings(
        ctx,
        admission::fields::check(resource, &applied, directive)?,
    );
    if ctx.path.subresource.is_none() {
        let key = objects::key(resource, ctx.path.namespace.as_deref(), name);
        let exists = ctx
            .state
            .storage
            .get(&key)
            .await
            .map_err(|e| ctx.storage_error(e, name))?;
        if exists.is_none() {
            let now = objects::now();
            let mut object = apply::apply(
                None,
                &applied,
                &writer(ctx, &manager, &api_version, &now),
                force,
            )
            .map_err(conflict_error)?;
            objects::meta_mut(&mut object).insert("name".into(), json!(name));
            // The applied configuration's unknown fields were found above.
            let (response, _) = super::create::create_object(ctx, object, false).await?;
            return Ok(with_warnings(response, &warnings));
        }
    }
    let mut updated = guaranteed_update_tracked(ctx, name, false, |current| {
        let now = objects::now();
        let mut merged = apply::apply(
            Some(current),
            &applied,
            &writer(ctx, &manager, &api_version, &now),
            force,
        )
        .map_err(conflict_error)?;
        // Apply patches carry no precondition unless they name a resourceVersion.
        match objects::meta_str(&applied, "resourceVersion") {
            Some(rv) => {
                objects::meta_mut(&mut merged).insert("resourceVersion".into(), json!(rv));
            }
            None => {
                objects::meta_mut(&mut merged).remove("resourceVersion");
            }
        }
        Ok(merged)
    })
    .await?;
    let warnings = merged_warnings(warnings, std::mem::take(&mut updated.warnings));
    Ok(with_warnings(
        updated.response(ctx, StatusCode::OK),
        &warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> &'static api_types::registry::Resource {
        api_types::registry::find("apps", "v1", "deployments").expect("deployments")
    }

    #[test]
    fn sameness_ignores_only_the_version_and_managed_fields() {
        let base = json!({"metadata": {"name": "a", "resourceVersion": "1",
            "managedFields": [{"manager": "x"}], "labels": {"k": "v"}}, "spec": {"n": 1}});
        let other_version = json!({"metadata": {"name": "a", "resourceVersion": "2",
            "labels": {"k": "v"}}, "spec": {"n": 1}});
        assert!(same_ignoring_version(&base, &other_version));
        let cases = [
            json!({"metadata": {"name": "a", "labels": {"k": "w"}}, "spec": {"n": 1}}),
            json!({"metadata": {"name": "a", "labels": {"k": "v"}}, "spec": {"n": 2}}),
            json!({"metadata": {"name": "a", "labels": {"k": "v"}, "uid": "u"}, "spec": {"n": 1}}),
            json!({"metadata": {"name": "a", "labels": {"k": "v"}}, "spec": {"n": 1}, "s": 1}),
            json!({"metadata": {"name": "a", "labels": {"k": "v"}}}),
            json!({"spec": {"n": 1}}),
        ];
        for case in &cases {
            assert!(!same_ignoring_version(&base, case), "{case}");
            assert!(!same_ignoring_version(case, &base), "{case}");
        }
    }

    #[test]
    fn main_resource_update_keeps_status_and_bumps_generation_on_spec_change() {
        let old = json!({"metadata": {"name": "d", "uid": "u", "generation": 1},
            "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let new =
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 3}, "status": {"replicas": 9}});
        let out = prepare_update(deployments(), None, &old, new);
        assert_eq!(out["status"]["replicas"], 1);
        assert_eq!(out["metadata"]["generation"], 2);
        assert_eq!(out["metadata"]["uid"], "u");
    }

    #[test]
    fn status_update_keeps_spec() {
        let old = json!({"metadata": {"name": "d", "generation": 1}, "spec": {"replicas": 1}});
        let new =
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 5}, "status": {"replicas": 2}});
        let out = prepare_update(deployments(), Some("status"), &old, new);
        assert_eq!(out["spec"]["replicas"], 1);
        assert_eq!(out["status"]["replicas"], 2);
        assert_eq!(out["metadata"]["generation"], 1);
    }

    #[test]
    fn patch_kinds_apply() {
        let cur = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1}});
        let merged = apply_patch(
            &cur,
            "application/merge-patch+json",
            br#"{"metadata":{"labels":{"x":null,"y":"2"}}}"#,
        )
        .expect("merge");
        assert_eq!(merged["metadata"]["labels"], json!({"y": "2"}));
        let jp = apply_patch(
            &cur,
            "application/json-patch+json",
            br#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
        )
        .expect("json patch");
        assert_eq!(jp["spec"]["replicas"], 4);
        let e = apply_patch(&cur, "text/plain", b"x").expect_err("unsupported");
        assert_eq!(e.code, 415);
    }
}
