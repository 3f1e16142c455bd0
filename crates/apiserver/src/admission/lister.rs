//! Admission reads served from the watch cache, as upstream's plugins read through informers.
//!
//! A pod create used to read storage four times before its write (the namespace twice, the
//! LimitRanges and the ResourceQuotas of its namespace). These helpers answer from the watch
//! cache instead, after waiting until the cache has applied every write this apiserver made
//! to the resource read ([`crate::storage::tracking`]): a client that created a LimitRange, a ResourceQuota or labelled
//! a namespace and then creates a pod sees its own write, with no storage round trip. Without a
//! watch cache (or when it does not catch up in time) they read storage.

use std::sync::Arc;

use serde_json::Value;

use crate::objects;
use crate::state::ApiState;
use crate::storage::{ListOptions, Revision, StorageError};

/// One listed object: its key, mod revision (for a compare-and-swap) and decoded value.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The storage key.
    pub key: String,
    /// The revision the object was last modified at.
    pub revision: Revision,
    /// The decoded object.
    pub value: Value,
}

tokio::task_local! {
    /// The writes of this apiserver that reads in [`with_snapshot`] must see.
    static SEEN: Revision;
}

/// Runs `f` with its reads waiting only for the writes this apiserver completed before now
/// (what read-your-writes needs: the writes answered before the request came), not for the
/// writes of concurrent requests, which under load would make every read wait for the cache.
pub async fn with_snapshot<F: std::future::Future>(state: &ApiState, f: F) -> F::Output {
    SEEN.scope(state.written_revision.all(), f).await
}

/// The watch cache of the resource `key` (or a list prefix) belongs to, once it holds every
/// write this apiserver made to that resource before the request (its later writes, and
/// those of other resources, need no waiting for).
async fn caught_up_cache(
    state: &ApiState,
    key: &str,
) -> Option<std::sync::Arc<crate::storage::cache::PrefixCache>> {
    let watch_cache = state.watch_cache.as_ref()?;
    let cache = watch_cache.cache(&cache_prefix(key)?)?.clone();
    // Writes of this resource since the snapshot may be waited for too: harmless, and the
    // minimum still covers every write of it before the snapshot.
    let written = SEEN
        .try_with(|seen| *seen)
        .unwrap_or_else(|_| state.written_revision.all())
        .min(state.written_revision.of(key));
    match watch_cache.wait_for(written).await {
        Ok(()) => Some(cache),
        Err(e) => {
            tracing::warn!(error = %e, written, "watch cache behind own writes; reading storage");
            None
        }
    }
}

/// The objects under `prefix`: from the watch cache, else from storage.
pub async fn list(state: &ApiState, prefix: &str) -> Result<Vec<Listed>, StorageError> {
    if let Some(cache) = caught_up_cache(state, prefix).await {
        let request = crate::storage::cache::ListRequest {
            prefix,
            indexed: None,
            start_after: None,
            limit: None,
        };
        let list = cache.list(&request, &|_| true);
        return Ok(list
            .items
            .iter()
            .map(|o| Listed {
                key: o.key.clone(),
                revision: o.revision,
                value: o.value(),
            })
            .collect());
    }
    live_list(state, prefix).await
}

/// The objects under `prefix` that set the field at `path` (keys from the root): from the
/// watch cache, else from storage. For the small prefixes every write reads (priority
/// classes): the cached objects are decoded once per version and kept.
pub async fn list_with_field(
    state: &ApiState,
    prefix: &str,
    path: &[&str],
) -> Result<Vec<Listed>, StorageError> {
    let pointer: String = path.iter().map(|p| format!("/{p}")).collect();
    if let Some(cache) = caught_up_cache(state, prefix).await {
        let request = crate::storage::cache::ListRequest {
            prefix,
            indexed: None,
            start_after: None,
            limit: None,
        };
        let list = cache.list(&request, &|o| o.shared_value().pointer(&pointer).is_some());
        return Ok(list
            .items
            .iter()
            .map(|o| Listed {
                key: o.key.clone(),
                revision: o.revision,
                value: Value::clone(&o.shared_value()),
            })
            .collect());
    }
    let mut listed = live_list(state, prefix).await?;
    listed.retain(|l| l.value.pointer(&pointer).is_some());
    Ok(listed)
}

/// The objects under `prefix` read from storage.
pub async fn live_list(state: &ApiState, prefix: &str) -> Result<Vec<Listed>, StorageError> {
    let list = state.storage.list(prefix, &ListOptions::default()).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|kv| {
            let value = objects::decode(kv).ok()?;
            Some(Listed {
                key: kv.key.clone(),
                revision: kv.mod_revision,
                value,
            })
        })
        .collect())
}

/// The object at `key`: from the watch cache, or read from storage when the cache does not
/// hold it (written by another apiserver a moment ago, or no cache).
/// From the cache, the object is decoded once per version and the decoded copy stays with the
/// cached version: meant for the small kinds admission reads on every write (namespaces,
/// service accounts, priority classes), not for pods.
pub async fn get(state: &ApiState, key: &str) -> Result<Option<Arc<Value>>, StorageError> {
    if let Some(cache) = caught_up_cache(state, key).await {
        if let (Some(object), _) = cache.get(key) {
            return Ok(Some(object.shared_value()));
        }
    }
    match state.storage.get(key).await? {
        Some(kv) => Ok(objects::decode(&kv).ok().map(Arc::new)),
        None => Ok(None),
    }
}

/// The resource prefix a cache is kept for: `/registry/pods/` of `/registry/pods/ns/name`.
fn cache_prefix(key: &str) -> Option<String> {
    crate::storage::tracking::resource_prefixes()
        .iter()
        .find(|p| key.starts_with(p.as_str()))
        .cloned()
}
