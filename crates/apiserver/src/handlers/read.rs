//! GET of one object and LIST (selectors, pagination with continue tokens, resourceVersion).

use axum::body::Body;
use base64::Engine;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{json_response, object_response, Ctx};
use crate::objects;
use crate::selectors::Selectors;
use crate::status::ApiError;
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

/// GET one object (also `/status`).
pub async fn get(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let (object, _) = load(ctx, ctx.name()?).await?;
    Ok(object_response(ctx, StatusCode::OK, object))
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
    let page = list_objects(
        ctx,
        &prefix,
        &selectors,
        limit,
        ctx.query.get("continue"),
        exact_revision(ctx)?,
    )
    .await?;
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
