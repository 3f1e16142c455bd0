//! What the watch cache holds: one object per key ([`CachedObject`]) and the events between
//! versions ([`CacheEvent`]). Both are shared by `Arc` between the store, the event buffer and
//! every watcher, so an object is held once however many watchers see it.
//!
//! An object is kept as its stored JSON bytes (with `metadata.resourceVersion` spliced in once,
//! when it enters the cache), plus the byte ranges of the few fields the cache looks at often
//! (`kind`, `apiVersion`, `metadata.labels`). A decoded `serde_json::Value` tree of a pod is
//! about ten times the size of its JSON, so the tree is only built on demand
//! ([`CachedObject::value`]); lists and watches copy the bytes as they are.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;

use super::raw;
use crate::storage::Revision;

/// One object as the cache holds it.
#[derive(Debug)]
pub struct CachedObject {
    /// The storage key.
    pub key: String,
    /// The revision of this version (for a deleted object: the revision of the delete).
    pub revision: Revision,
    /// The value of the indexed field (`spec.nodeName` for pods), when the prefix has an index
    /// and the object sets it.
    pub indexed: Option<String>,
    /// The stored JSON with `metadata.resourceVersion` set.
    json: Bytes,
    /// Where the raw JSON strings of `kind` and `apiVersion` are in `json` (with quotes).
    kind: Option<Range<u32>>,
    api_version: Option<Range<u32>>,
    /// Where `metadata.labels` is in `json`.
    labels: Option<Range<u32>>,
    /// The decoded object, once [`CachedObject::shared_value`] was asked for it.
    decoded: OnceLock<Arc<Value>>,
}

/// Why stored bytes cannot be cached.
#[derive(Debug, thiserror::Error)]
#[error("undecodable stored object: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

fn span(range: Option<Range<usize>>) -> Option<Range<u32>> {
    let range = range?;
    Some(u32::try_from(range.start).ok()?..u32::try_from(range.end).ok()?)
}

/// Whether `raw` is the JSON string `"s"` (the values compared here never need escapes).
fn is_json_string(raw: &[u8], s: &str) -> bool {
    raw.len() == s.len() + 2
        && raw.first() == Some(&b'"')
        && raw.last() == Some(&b'"')
        && &raw[1..raw.len() - 1] == s.as_bytes()
}

impl CachedObject {
    /// The cached form of the stored bytes `stored` of `key` at `revision`; `index_field` is
    /// the dotted path of the prefix's indexed field, if any.
    pub fn from_stored(
        key: String,
        stored: &[u8],
        revision: Revision,
        index_field: Option<&str>,
    ) -> Result<Self, DecodeError> {
        let path: Option<Vec<&str>> = index_field.map(|f| f.split('.').collect());
        let Some(layout) = raw::layout(stored, path.as_deref())? else {
            // Not the shape we write (no metadata object, or one that already carries a
            // resourceVersion): go through the tree once.
            let mut value: Value = serde_json::from_slice(stored)?;
            crate::objects::set_resource_version(&mut value, revision);
            return Self::from_json(key, serde_json::to_vec(&value)?, revision, index_field);
        };
        // One walk found every field the cache reads; the splice only moves them.
        let (json, layout) = layout.splice(stored, revision);
        let indexed = layout
            .indexed
            .as_ref()
            .and_then(|r| json.get(r.clone()))
            .and_then(raw::non_empty_string);
        Ok(CachedObject {
            key,
            revision,
            indexed,
            // A boxed slice drops the spare capacity of the vector.
            json: Bytes::from(json.into_boxed_slice()),
            kind: span(layout.kind),
            api_version: span(layout.api_version),
            labels: span(layout.labels),
            decoded: OnceLock::new(),
        })
    }

    /// A cached object from JSON that already carries its resourceVersion.
    fn from_json(
        key: String,
        json: Vec<u8>,
        revision: Revision,
        index_field: Option<&str>,
    ) -> Result<Self, DecodeError> {
        let [kind, api_version, labels] =
            raw::ranges(&json, [&["kind"], &["apiVersion"], &["metadata", "labels"]])?;
        let indexed = match index_field {
            Some(path) => raw::string_at(&json, path)?,
            None => None,
        };
        Ok(CachedObject {
            key,
            revision,
            indexed,
            // A boxed slice drops the spare capacity of the vector.
            json: Bytes::from(json.into_boxed_slice()),
            kind: span(kind),
            api_version: span(api_version),
            labels: span(labels),
            decoded: OnceLock::new(),
        })
    }

    /// A cached object from a decoded value (tests and the rare fallback path).
    pub fn new(key: String, value: Value, revision: Revision, indexed: Option<String>) -> Self {
        let mut value = value;
        crate::objects::set_resource_version(&mut value, revision);
        let json = serde_json::to_vec(&value).unwrap_or_default();
        match Self::from_json(key.clone(), json, revision, None) {
            Ok(mut object) => {
                object.indexed = indexed;
                object
            }
            Err(e) => {
                tracing::warn!(%key, error = %e, "watch cache: re-encoded object unreadable");
                CachedObject {
                    key,
                    revision,
                    indexed,
                    json: Bytes::from_static(b"{}"),
                    kind: None,
                    api_version: None,
                    labels: None,
                    decoded: OnceLock::new(),
                }
            }
        }
    }

    fn slice(&self, range: &Option<Range<u32>>) -> Option<&[u8]> {
        let range = range.as_ref()?;
        self.json.get(range.start as usize..range.end as usize)
    }

    /// `metadata.name`, from the key (names never hold a `/`).
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or_default()
    }

    /// The stored JSON with `metadata.resourceVersion` set, as stored (no type meta added).
    pub fn stored_json(&self) -> &Bytes {
        &self.json
    }

    /// How many bytes the object's JSON takes.
    pub fn size(&self) -> usize {
        self.json.len()
    }

    /// The decoded object, with `metadata.resourceVersion` set (built on each call).
    pub fn value(&self) -> Value {
        match serde_json::from_slice(&self.json) {
            Ok(value) => value,
            Err(e) => {
                // Cannot happen: the bytes were parsed when the object entered the cache.
                tracing::warn!(key = %self.key, error = %e, "watch cache: cached object unreadable");
                Value::Object(Default::default())
            }
        }
    }

    /// The decoded object, decoded on the first call and kept with this version: for the few
    /// objects admission reads on every write (a pod's namespace and service account), not
    /// for the objects lists and watches serve, which stay bytes only.
    pub fn shared_value(&self) -> Arc<Value> {
        self.decoded.get_or_init(|| Arc::new(self.value())).clone()
    }

    /// The object as a `meta.k8s.io/v1` `PartialObjectMetadata`, its `metadata` copied from
    /// the cached bytes without decoding the object (None when it has no metadata object).
    pub fn partial_metadata_json(&self) -> Option<Vec<u8>> {
        let Ok([Some(range)]) = raw::ranges(&self.json, [&["metadata"]]) else {
            return None;
        };
        let metadata = &self.json[range];
        if metadata.first() != Some(&b'{') {
            return None;
        }
        const HEAD: &[u8] =
            b"{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":";
        let mut out = Vec::with_capacity(HEAD.len() + metadata.len() + 1);
        out.extend_from_slice(HEAD);
        out.extend_from_slice(metadata);
        out.push(b'}');
        Some(out)
    }

    /// `metadata.labels`, decoded (None when unset).
    pub fn labels(&self) -> Option<Value> {
        serde_json::from_slice(self.slice(&self.labels)?).ok()
    }

    /// A value holding only `metadata.labels` and the fields at `paths` (dotted), enough to
    /// match selectors on those fields without decoding the whole object.
    pub fn selectable<'a>(&self, paths: impl Iterator<Item = &'a str>) -> Value {
        let mut value = serde_json::json!({});
        if let Some(labels) = self.labels() {
            crate::objects::put(&mut value, &["metadata", "labels"], labels);
        }
        for path in paths {
            let path = if path == "source" {
                "source.component"
            } else {
                path
            };
            let segments: Vec<&str> = path.split('.').collect();
            if let Ok([Some(range)]) = raw::ranges(&self.json, [segments.as_slice()]) {
                if let Ok(field) = serde_json::from_slice::<Value>(&self.json[range]) {
                    crate::objects::put(&mut value, &segments, field);
                }
            }
        }
        value
    }

    /// Whether the stored object already carries this `kind` and `apiVersion` (then it can be
    /// served as is, without a copy).
    pub fn has_type_meta(&self, api_version: &str, kind: &str) -> bool {
        self.slice(&self.kind)
            .is_some_and(|raw| is_json_string(raw, kind))
            && self
                .slice(&self.api_version)
                .is_some_and(|raw| is_json_string(raw, api_version))
    }

    /// The object serialized as `api_version` `kind`: the cached bytes themselves when they
    /// carry that type meta.
    pub fn to_json(&self, api_version: &str, kind: &str) -> Bytes {
        if self.has_type_meta(api_version, kind) {
            return self.json.clone();
        }
        if self.kind.is_none() && self.api_version.is_none() && self.json.len() > 2 {
            // `{"kind":K,"apiVersion":V,` + the rest of the object (which is not empty: it
            // holds at least metadata.resourceVersion).
            let mut out = Vec::with_capacity(self.json.len() + kind.len() + api_version.len() + 32);
            out.extend_from_slice(b"{\"kind\":");
            raw::push_json_string(&mut out, kind);
            out.extend_from_slice(b",\"apiVersion\":");
            raw::push_json_string(&mut out, api_version);
            out.push(b',');
            out.extend_from_slice(&self.json[1..]);
            return Bytes::from(out);
        }
        let mut value = self.value();
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
    /// `object` serialized for one API version (apiVersion, kind) when that is not the stored
    /// bytes themselves, made on first use so that the watchers of one event serialize it
    /// once; dropped with the event.
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
        if self.object.has_type_meta(api_version, kind) {
            return self.object.json.clone();
        }
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

    fn stored(value: &Value) -> Vec<u8> {
        serde_json::to_vec(value).expect("json")
    }

    #[test]
    fn partial_metadata_is_the_decoded_objects_metadata() {
        let value = json!({"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "p", "labels": {"a": "b \\\"q\\\""}, "ownerReferences": [{"uid": "u"}]},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let object =
            CachedObject::from_stored("/registry/pods/ns/p".into(), &stored(&value), 7, None)
                .expect("cached");
        let partial: Value =
            serde_json::from_slice(&object.partial_metadata_json().expect("metadata"))
                .expect("json");
        let decoded = crate::table::partial_metadata(&object.value());
        assert_eq!(partial, decoded);
        assert_eq!(partial["metadata"]["resourceVersion"], "7");
        let bare = CachedObject::new("/registry/x/y".into(), json!({"spec": {}}), 2, None);
        // No metadata in the value: the resourceVersion splice adds one.
        assert!(bare.partial_metadata_json().is_some());
    }

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
        assert_eq!(v["metadata"]["resourceVersion"], "3");
        let other: Value =
            serde_json::from_slice(&event.json("autoscaling/v2", "X")).expect("json");
        assert_eq!(other["apiVersion"], "autoscaling/v2");
    }

    #[test]
    fn stored_bytes_get_the_resource_version_and_are_served_without_a_copy() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Running"},
        });
        let object = CachedObject::from_stored(
            "/registry/pods/ns/p".into(),
            &stored(&pod),
            42,
            Some("spec.nodeName"),
        )
        .expect("cacheable");
        let mut expected = pod.clone();
        expected["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(object.value(), expected);
        assert_eq!(object.indexed.as_deref(), Some("n1"));
        let shared = object.shared_value();
        assert_eq!(*shared, expected);
        assert!(std::sync::Arc::ptr_eq(&shared, &object.shared_value()));
        assert_eq!(object.name(), "p");
        assert_eq!(object.labels(), Some(json!({"app": "web"})));
        assert!(object.has_type_meta("v1", "Pod"));
        assert!(!object.has_type_meta("v1", "Node"));
        let served = object.to_json("v1", "Pod");
        assert_eq!(served.as_ptr(), object.stored_json().as_ptr());
        let selectable = object.selectable(["status.phase", "spec.missing"].into_iter());
        assert_eq!(
            selectable,
            json!({"metadata": {"labels": {"app": "web"}}, "status": {"phase": "Running"}})
        );
    }

    #[test]
    fn objects_without_metadata_or_type_meta_are_still_served_correctly() {
        for value in [
            json!({"data": {"a": "b"}}),
            json!({"metadata": {}, "data": {}}),
            json!({"metadata": {"resourceVersion": "7", "name": "x"}}),
        ] {
            let object = CachedObject::from_stored(
                "/registry/configmaps/ns/x".into(),
                &stored(&value),
                9,
                None,
            )
            .expect("cacheable");
            let served: Value =
                serde_json::from_slice(&object.to_json("v1", "ConfigMap")).expect("json");
            let mut expected = value.clone();
            crate::objects::set_resource_version(&mut expected, 9);
            expected["kind"] = json!("ConfigMap");
            expected["apiVersion"] = json!("v1");
            assert_eq!(served, expected, "from {value}");
        }
    }

    #[test]
    fn undecodable_stored_bytes_are_an_error() {
        assert!(
            CachedObject::from_stored("/registry/pods/ns/p".into(), b"{nope", 1, None).is_err()
        );
        assert!(CachedObject::from_stored("/registry/pods/ns/p".into(), b"[1]", 1, None).is_ok());
    }
}
