//! GET of one object and LIST (selectors, pagination with continue tokens, resourceVersion).
//!
//! LIST is served from the watch cache ([`crate::storage::cache`]) when it can answer as
//! upstream's cacher does: `resourceVersion=0` at once, `resourceVersion=N` (not older than)
//! once the cache reaches N (504 "Too large resource version" otherwise), no resourceVersion
//! (a consistent read) once the cache has reached the store's current revision, and continue
//! tokens of the cache's current revision. `resourceVersionMatch=Exact`, a limited list at an
//! exact revision and older continue tokens read storage, as does every GET.

use std::sync::Arc;

use api_types::registry::Resource;
use axum::body::Body;
use base64::Engine;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{json_response, object_response, Ctx};
use crate::objects;
use crate::selectors::Selectors;
use crate::status::ApiError;
use crate::storage::cache::{CacheError, CachedObject, ListRequest, PrefixCache};
use crate::storage::{KeyValue, ListOptions, Revision};
use crate::table;

/// Reads one object (decoded, with resourceVersion and type meta) and its stored key-value.
pub async fn load(ctx: &Ctx, name: &str) -> Result<(Value, KeyValue), ApiError> {
    let resource = ctx.resource();
    let key = objects::key(resource, ctx.path.namespace.as_deref(), name);
    let kv = ctx
        .state
        .storage
        .get(&key)
        .await
        .map_err(|e| ctx.storage_error(e, name))?
        .ok_or_else(|| ApiError::not_found(resource.plural, resource.group, name))?;
    let mut object = objects::decode_as(resource, &kv)?;
    objects::set_type_meta(&mut object, resource);
    Ok((object, kv))
}

/// The object `name` from the watch cache (decoded, with resourceVersion and type meta) and
/// its revision, for an update's first attempt; None when there is no cache or it does not
/// hold the object.
pub fn load_cached(ctx: &Ctx, name: &str) -> Option<(Value, Revision)> {
    let key = objects::key(ctx.resource(), ctx.path.namespace.as_deref(), name);
    let object = cache_of(ctx)?.get(&key).0?;
    Some((cached_value(ctx.resource(), &object), object.revision))
}

/// GET one object (also `/status`).
///
/// With a `resourceVersion` ("0": any version; N: not older than N) the object is served from
/// the watch cache as upstream's cacher does; without one it is read from storage. Either way
/// the stored JSON is answered as is (resourceVersion and type meta spliced in) unless the
/// client asked for a table, metadata only, or the resource is stored in another form.
pub async fn get(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let resource = ctx.resource();
    let name = ctx.name()?;
    let key = objects::key(resource, ctx.path.namespace.as_deref(), name);
    let plain = !ctx.output.table && !ctx.output.metadata_only && !stored_form_differs(resource);
    if let Some(object) = get_from_cache(ctx, &key).await? {
        let object =
            object.ok_or_else(|| ApiError::not_found(resource.plural, resource.group, name))?;
        if plain {
            return Ok(raw_json_response(
                StatusCode::OK,
                cached_json(resource, &object),
            ));
        }
        return Ok(object_response(
            ctx,
            StatusCode::OK,
            cached_value(resource, &object),
        ));
    }
    if plain {
        let kv = ctx
            .state
            .storage
            .get(&key)
            .await
            .map_err(|e| ctx.storage_error(e, name))?
            .ok_or_else(|| ApiError::not_found(resource.plural, resource.group, name))?;
        let object = CachedObject::from_stored(kv.key, &kv.value, kv.mod_revision, None)
            .map_err(ApiError::internal)?;
        return Ok(raw_json_response(
            StatusCode::OK,
            cached_json(resource, &object),
        ));
    }
    let (object, _) = load(ctx, name).await?;
    Ok(object_response(ctx, StatusCode::OK, object))
}

/// The object at `key` from the watch cache (`Some(None)`: not there), or None when the GET
/// must read storage (no resourceVersion, or no cache).
async fn get_from_cache(
    ctx: &Ctx,
    key: &str,
) -> Result<Option<Option<Arc<CachedObject>>>, ApiError> {
    let Some(rv) = ctx.query.get("resourceVersion").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let (Some(cache), Some(watch_cache)) = (cache_of(ctx), ctx.state.watch_cache.as_ref()) else {
        return Ok(None);
    };
    if rv != "0" {
        let revision: Revision = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
        watch_cache.wait_for(revision).await.map_err(cache_error)?;
    }
    Ok(Some(cache.get(key).0))
}

/// A 200/201 answer whose body is JSON bytes made elsewhere.
pub fn raw_json_response(code: StatusCode, body: bytes::Bytes) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A continue token: the revision the first page was read at and the last key returned.
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, start: &str) -> String {
    let raw = json!({"rv": rv, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Result<Continue, ApiError> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    serde_json::from_slice(&raw).map_err(|_| bad())
}

/// One page of matching objects.
pub struct Page {
    /// Matching objects.
    pub items: Vec<Value>,
    /// Revision the list was read at.
    pub revision: Revision,
    /// Continue token when more items follow.
    pub continue_token: Option<String>,
}

/// Lists objects under `prefix` matching `selectors`, `limit` at a time.
pub async fn list_objects(
    ctx: &Ctx,
    prefix: &str,
    selectors: &Selectors,
    limit: Option<usize>,
    continue_token: Option<&str>,
    revision: Option<Revision>,
) -> Result<Page, ApiError> {
    let resource = ctx.resource();
    let (mut start_after, mut revision) = (None, revision);
    if let Some(token) = continue_token.filter(|t| !t.is_empty()) {
        let c = decode_continue(token)?;
        start_after = Some(c.start);
        revision = Some(c.rv);
    }
    let mut items = Vec::new();
    let mut read_at = None;
    loop {
        let opts = ListOptions {
            limit,
            start_after: start_after.clone(),
            revision: revision.or(read_at),
        };
        let result = ctx
            .state
            .storage
            .list(prefix, &opts)
            .await
            .map_err(|e| match e {
                crate::storage::StorageError::Compacted { .. } if continue_token.is_some() => {
                    ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
                }
                e => ctx.storage_error(e, ""),
            })?;
        read_at = Some(result.revision);
        let last_key = result.items.last().map(|kv| kv.key.clone());
        for kv in &result.items {
            let mut object = objects::decode_as(resource, kv)?;
            if selectors.matches(&object) {
                objects::set_type_meta(&mut object, resource);
                items.push(object);
            }
        }
        let full = limit.is_some_and(|l| items.len() >= l);
        if !result.more || full || last_key.is_none() {
            let continue_token = if result.more {
                last_key.map(|k| encode_continue(result.revision, &k))
            } else {
                None
            };
            return Ok(Page {
                items,
                revision: result.revision,
                continue_token,
            });
        }
        start_after = last_key;
    }
}

/// The storage prefix of a list request, narrowed by a `metadata.namespace` field selector.
pub fn list_prefix(ctx: &Ctx, selectors: &Selectors) -> String {
    let resource = ctx.resource();
    let namespace = ctx
        .path
        .namespace
        .as_deref()
        .or_else(|| selectors.fields.required("metadata.namespace"));
    objects::list_prefix(resource, namespace)
}

/// The revision an exact `resourceVersion` + `resourceVersionMatch=Exact` asks for.
pub fn exact_revision(ctx: &Ctx) -> Result<Option<Revision>, ApiError> {
    if ctx.query.get("resourceVersionMatch") != Some("Exact") {
        return Ok(None);
    }
    match ctx.query.get("resourceVersion") {
        Some(rv) => rv
            .parse::<Revision>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))),
        None => Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )),
    }
}

/// The watch cache of the request's resource, when the cache is on and filled.
pub fn cache_of(ctx: &Ctx) -> Option<Arc<PrefixCache>> {
    let prefix = format!("{}/", ctx.resource().storage_prefix());
    ctx.state.watch_cache.as_ref()?.cache(&prefix).cloned()
}

/// Whether objects of `resource` are stored in another form than they are served in (the
/// `events.k8s.io` Events of [`crate::conversion`]); selectors then apply to the served form.
pub fn stored_form_differs(resource: &Resource) -> bool {
    resource.group == "events.k8s.io" || crate::conversion::stored_form_differs(resource)
}

/// Whether a cached object matches `selectors` in `resource`'s form. Only the labels and the
/// selected fields are decoded.
pub fn cached_matches(resource: &Resource, selectors: &Selectors, object: &CachedObject) -> bool {
    if selectors.is_empty() {
        return true;
    }
    if stored_form_differs(resource) {
        selectors.matches(&crate::conversion::from_storage(resource, object.value()))
    } else {
        selectors.matches(&object.selectable(selectors.fields.paths()))
    }
}

/// A cached object in `resource`'s form, with type meta.
pub fn cached_value(resource: &Resource, object: &CachedObject) -> Value {
    let mut value = crate::conversion::from_storage(resource, object.value());
    objects::set_type_meta(&mut value, resource);
    value
}

/// A cached object's JSON in `resource`'s form: the cached bytes themselves when they are
/// stored in that form with that type meta, else converted through the tree.
pub fn cached_json(resource: &Resource, object: &CachedObject) -> bytes::Bytes {
    cached_json_in(resource, &resource.api_version(), object)
}

/// [`cached_json`] with `resource`'s API version given.
fn cached_json_in(resource: &Resource, api_version: &str, object: &CachedObject) -> bytes::Bytes {
    if !stored_form_differs(resource) && object.has_type_meta(api_version, resource.kind) {
        return object.stored_json().clone();
    }
    let value = cached_value(resource, object);
    bytes::Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}

/// The API error for a cache that cannot answer.
pub fn cache_error(e: CacheError) -> ApiError {
    match e {
        CacheError::TooOld { .. } => ApiError::gone(e.to_string()),
        CacheError::TooLarge { .. } => {
            // Upstream's ResourceVersionTooLarge: a 504 the client may retry after a second.
            let mut error = ApiError::timeout(e.to_string());
            error.details = Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            }));
            error
        }
        CacheError::Storage(e) => ApiError::internal(e),
    }
}

/// One page of matching objects, from the watch cache.
struct CachedPage {
    objects: Vec<Arc<CachedObject>>,
    revision: Revision,
    continue_token: Option<String>,
}

/// How many bytes of a list body are written per chunk of the response stream.
const LIST_CHUNK: usize = 256 * 1024;

/// The body of a plain JSON list from the cache, made chunk by chunk as the response is sent:
/// the cached bytes of each object are copied as they are (no decoding), so a large list never
/// exists as a tree, nor as one buffer.
struct CachedListBody {
    resource: &'static Resource,
    api_version: String,
    header: Option<Vec<u8>>,
    objects: std::vec::IntoIter<Arc<CachedObject>>,
    first: bool,
    done: bool,
}

impl CachedListBody {
    fn new(resource: &'static Resource, metadata: &Value, objects: Vec<Arc<CachedObject>>) -> Self {
        let api_version = resource.api_version();
        let mut header = Vec::with_capacity(128);
        header.extend_from_slice(b"{\"kind\":");
        header.extend_from_slice(&serde_json::to_vec(&resource.list_kind()).unwrap_or_default());
        header.extend_from_slice(b",\"apiVersion\":");
        header.extend_from_slice(&serde_json::to_vec(&api_version).unwrap_or_default());
        header.extend_from_slice(b",\"metadata\":");
        header.extend_from_slice(&serde_json::to_vec(metadata).unwrap_or_default());
        header.extend_from_slice(b",\"items\":[");
        CachedListBody {
            resource,
            api_version,
            header: Some(header),
            objects: objects.into_iter(),
            first: true,
            done: false,
        }
    }
}

impl Iterator for CachedListBody {
    type Item = bytes::Bytes;

    fn next(&mut self) -> Option<bytes::Bytes> {
        if self.done {
            return None;
        }
        let mut chunk = self
            .header
            .take()
            .unwrap_or_else(|| Vec::with_capacity(LIST_CHUNK + 4096));
        while chunk.len() < LIST_CHUNK {
            let Some(object) = self.objects.next() else {
                chunk.extend_from_slice(b"]}");
                self.done = true;
                break;
            };
            if !self.first {
                chunk.push(b',');
            }
            self.first = false;
            chunk.extend_from_slice(&cached_json_in(self.resource, &self.api_version, &object));
        }
        Some(bytes::Bytes::from(chunk))
    }
}

/// Serves a LIST from the watch cache, or None when it must read storage.
async fn list_from_cache(
    ctx: &Ctx,
    prefix: &str,
    selectors: &Selectors,
    limit: Option<usize>,
) -> Result<Option<CachedPage>, ApiError> {
    let rv = ctx.query.get("resourceVersion").filter(|v| !v.is_empty());
    let rv_match = ctx
        .query
        .get("resourceVersionMatch")
        .filter(|v| !v.is_empty());
    if rv_match.is_some() && rv.is_none() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    let (Some(cache), Some(watch_cache)) = (cache_of(ctx), ctx.state.watch_cache.as_ref()) else {
        return Ok(None);
    };
    let mut continued = None;
    if let Some(token) = ctx.query.get("continue").filter(|t| !t.is_empty()) {
        let c = decode_continue(token)?;
        if c.rv != cache.revision() {
            return Ok(None);
        }
        continued = Some(c);
    } else {
        match (rv, rv_match) {
            (_, Some("Exact")) => return Ok(None),
            (None, _) => {
                if let Err(e) = watch_cache.wait_consistent().await {
                    tracing::debug!(error = %e, "consistent list falls back to storage");
                    return Ok(None);
                }
            }
            (Some("0"), _) => {}
            (Some(rv), rv_match) => {
                let revision: Revision = rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?;
                if limit.is_some() && rv_match.is_none() {
                    // A limited list at a revision without a match reads exactly that revision.
                    return Ok(None);
                }
                watch_cache.wait_for(revision).await.map_err(cache_error)?;
            }
        }
    }
    let resource = ctx.resource();
    let request = ListRequest {
        prefix,
        indexed: cache
            .index_field()
            .and_then(|field| selectors.fields.required(field)),
        start_after: continued.as_ref().map(|c| c.start.as_str()),
        limit,
    };
    let list = cache.list(&request, &|o| cached_matches(resource, selectors, o));
    if continued.as_ref().is_some_and(|c| c.rv != list.revision) {
        // The cache moved on between the check and the read: the page must come from the
        // token's revision.
        return Ok(None);
    }
    Ok(Some(CachedPage {
        objects: list.items,
        revision: list.revision,
        continue_token: list
            .continue_after
            .map(|key| encode_continue(list.revision, &key)),
    }))
}

/// LIST.
pub async fn list(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let resource = ctx.resource();
    let selectors = ctx.selectors()?;
    let limit = ctx
        .query
        .int("limit")
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let prefix = list_prefix(ctx, &selectors);
    let exact = exact_revision(ctx)?;
    let page = match list_from_cache(ctx, &prefix, &selectors, limit).await? {
        Some(cached) if !ctx.output.table && !ctx.output.metadata_only => {
            let mut metadata = json!({"resourceVersion": cached.revision.to_string()});
            if let Some(c) = cached.continue_token {
                metadata["continue"] = json!(c);
            }
            let body = CachedListBody::new(resource, &metadata, cached.objects);
            let stream = futures::stream::iter(body.map(Ok::<_, std::convert::Infallible>));
            return Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .map_err(ApiError::internal);
        }
        Some(cached) => Page {
            items: cached
                .objects
                .iter()
                .map(|o| cached_value(resource, o))
                .collect(),
            revision: cached.revision,
            continue_token: cached.continue_token,
        },
        None => {
            list_objects(
                ctx,
                &prefix,
                &selectors,
                limit,
                ctx.query.get("continue"),
                exact,
            )
            .await?
        }
    };
    if ctx.output.table {
        return Ok(json_response(
            StatusCode::OK,
            &table::table(
                resource,
                &page.items,
                Some(page.revision.to_string()),
                page.continue_token,
                ctx.output.include_object,
            ),
        ));
    }
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = page.continue_token {
        metadata["continue"] = json!(c);
    }
    if ctx.output.metadata_only {
        let items: Vec<Value> = page.items.iter().map(table::partial_metadata).collect();
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
                "items": items,
            }),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": resource.list_kind(),
            "apiVersion": resource.api_version(),
            "metadata": metadata,
            "items": page.items,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "/registry/pods/default/a");
        let c = decode_continue(&t).expect("decode");
        assert_eq!(c.rv, 42);
        assert_eq!(c.start, "/registry/pods/default/a");
        assert!(decode_continue("!!").is_err());
    }
}
