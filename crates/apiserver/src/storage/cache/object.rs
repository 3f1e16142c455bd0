//! What the watch cache holds: one decoded object per key ([`CachedObject`]) and the events
//! between versions ([`CacheEvent`]). Both are shared by `Arc` between the store, the event
//! buffer and every watcher, so an object is held once however many watchers see it.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;

use crate::storage::Revision;

/// One object as the cache holds it.
#[derive(Debug)]
pub struct CachedObject {
    /// The storage key.
    pub key: String,
    /// The decoded stored object, with `metadata.resourceVersion` set.
    pub value: Value,
    /// The revision of this version (for a deleted object: the revision of the delete).
    pub revision: Revision,
    /// The value of the indexed field (`spec.nodeName` for pods), when the prefix has an index
    /// and the object sets it.
    pub indexed: Option<String>,
}

impl CachedObject {
    /// A cached object.
    pub fn new(key: String, value: Value, revision: Revision, indexed: Option<String>) -> Self {
        CachedObject {
            key,
            value,
            revision,
            indexed,
        }
    }

    /// Whether the stored object already carries this `kind` and `apiVersion` (then it can be
    /// serialized as is, without a copy).
    pub fn has_type_meta(&self, api_version: &str, kind: &str) -> bool {
        self.value.get("kind").and_then(Value::as_str) == Some(kind)
            && self.value.get("apiVersion").and_then(Value::as_str) == Some(api_version)
    }

    /// The object serialized as `api_version` `kind`.
    pub fn to_json(&self, api_version: &str, kind: &str) -> Bytes {
        if self.has_type_meta(api_version, kind) {
            return Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default());
        }
        let mut value = self.value.clone();
        if let Some(o) = value.as_object_mut() {
            o.insert("kind".into(), Value::String(kind.to_string()));
            o.insert("apiVersion".into(), Value::String(api_version.to_string()));
        }
        Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
    }
}

/// What happened to a key, as the cache saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    /// The key was created.
    Added,
    /// The key's value was replaced.
    Modified,
    /// The key was deleted.
    Deleted,
}

/// One change, as held in the event buffer and sent to watchers.
#[derive(Debug)]
pub struct CacheEvent {
    /// What happened.
    pub event_type: WatchEventType,
    /// The object after the change (for a delete: the last version, at the delete's revision).
    pub object: Arc<CachedObject>,
    /// The object before the change (None for a creation).
    pub prev: Option<Arc<CachedObject>>,
    /// The revision of the change.
    pub revision: Revision,
    /// `object` serialized for one API version (apiVersion, kind), made on first use so that
    /// the watchers of one event serialize it once; dropped with the event.
    json: OnceLock<(String, &'static str, Bytes)>,
}

impl CacheEvent {
    /// An event.
    pub fn new(
        event_type: WatchEventType,
        object: Arc<CachedObject>,
        prev: Option<Arc<CachedObject>>,
        revision: Revision,
    ) -> Self {
        CacheEvent {
            event_type,
            object,
            prev,
            revision,
            json: OnceLock::new(),
        }
    }

    /// The object serialized as `api_version` `kind`; cached for the first version asked.
    pub fn json(&self, api_version: &str, kind: &'static str) -> Bytes {
        if let Some((v, k, bytes)) = self.json.get() {
            if v == api_version && *k == kind {
                return bytes.clone();
            }
        }
        let bytes = self.object.to_json(api_version, kind);
        let stored = self
            .json
            .get_or_init(|| (api_version.to_string(), kind, bytes.clone()));
        if stored.0 == api_version && stored.1 == kind {
            stored.2.clone()
        } else {
            bytes
        }
    }

    /// Whether the event concerns the indexed value `value` (before or after the change).
    pub fn touches_index(&self, value: &str) -> bool {
        self.object.indexed.as_deref() == Some(value)
            || self
                .prev
                .as_ref()
                .is_some_and(|p| p.indexed.as_deref() == Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_json_has_type_meta_and_is_serialized_once() {
        let object = Arc::new(CachedObject::new(
            "/registry/pods/ns/p".into(),
            json!({"metadata": {"name": "p"}}),
            3,
            None,
        ));
        let event = CacheEvent::new(WatchEventType::Added, object, None, 3);
        let a = event.json("v1", "Pod");
        let b = event.json("v1", "Pod");
        assert_eq!(a.as_ptr(), b.as_ptr());
        let v: Value = serde_json::from_slice(&a).expect("json");
        assert_eq!(
            (v["apiVersion"].as_str(), v["kind"].as_str()),
            (Some("v1"), Some("Pod"))
        );
        let other: Value =
            serde_json::from_slice(&event.json("autoscaling/v2", "X")).expect("json");
        assert_eq!(other["apiVersion"], "autoscaling/v2");
    }
}
