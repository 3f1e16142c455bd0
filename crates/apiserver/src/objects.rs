//! Helpers over objects held as JSON: metadata access, storage keys, encoding to and from storage
//! (the stored value carries no resourceVersion; it is the storage revision on read), names and
//! timestamps.

use api_types::registry::Resource;
use serde_json::{json, Map, Value};

use crate::status::{ApiError, Cause};
use crate::storage::KeyValue;

/// The storage key of an object.
pub fn key(resource: &Resource, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if resource.namespaced => format!("{}/{}/{}", resource.storage_prefix(), ns, name),
        _ => format!("{}/{}", resource.storage_prefix(), name),
    }
}

/// The storage prefix of a list (one namespace or all), with the trailing slash.
pub fn list_prefix(resource: &Resource, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if resource.namespaced => format!("{}/{}/", resource.storage_prefix(), ns),
        _ => format!("{}/", resource.storage_prefix()),
    }
}

/// Decodes a stored value, setting `metadata.resourceVersion` to the key's mod revision.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("decoding {}: {e}", kv.key)))?;
    set_resource_version(&mut v, kv.mod_revision);
    Ok(v)
}

/// Decodes a stored value into the form of `resource` (see [`crate::conversion`]).
pub fn decode_as(resource: &Resource, kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v = crate::conversion::from_storage(resource, decode(kv)?);
    set_resource_version(&mut v, kv.mod_revision);
    Ok(v)
}

/// Encodes an object of `resource` for storage (converted to the stored form).
pub fn encode_as(resource: &Resource, object: &Value) -> Result<Vec<u8>, ApiError> {
    encode(&crate::conversion::to_storage(resource, object.clone()))
}

/// Encodes an object for storage (without `resourceVersion` and `selfLink`), serializing it
/// in place rather than from an edited copy.
pub fn encode(object: &Value) -> Result<Vec<u8>, ApiError> {
    encode_located(object).map(|e| e.bytes)
}

/// An object encoded for storage.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// When the bytes are the object in the form it is served in: just after the `{` of its
    /// metadata object (where `resourceVersion` is spliced into an answer), and whether that
    /// object is empty.
    pub splice_at: Option<(usize, bool)>,
}

/// Encodes an object of `resource` for storage, converted when its stored form differs and
/// otherwise serialized in place (with where its metadata starts).
pub fn encode_for(resource: &Resource, object: &Value) -> Result<Encoded, ApiError> {
    if crate::conversion::stored_form_differs(resource) {
        return Ok(Encoded {
            bytes: encode_as(resource, object)?,
            splice_at: None,
        });
    }
    encode_located(object)
}

/// [`encode`], noting where the metadata object starts.
fn encode_located(object: &Value) -> Result<Encoded, ApiError> {
    let Value::Object(object) = object else {
        return Ok(Encoded {
            bytes: serde_json::to_vec(object).map_err(ApiError::internal)?,
            splice_at: None,
        });
    };
    let mut out = Vec::with_capacity(1024);
    let mut splice_at = None;
    out.push(b'{');
    for (i, (key, value)) in object.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key).map_err(ApiError::internal)?;
        out.push(b':');
        let written = match value {
            Value::Object(meta) if key == "metadata" => {
                splice_at = Some((out.len() + 1, meta.keys().all(|k| unstored(k))));
                serde_json::to_writer(&mut out, &StoredMeta(meta))
            }
            _ => serde_json::to_writer(&mut out, value),
        };
        written.map_err(ApiError::internal)?;
    }
    out.push(b'}');
    Ok(Encoded {
        bytes: out,
        splice_at,
    })
}

/// `json` with `"resourceVersion":"<revision>"` inserted at `at`, just after the `{` of its
/// metadata object (`empty`: that object has no other member, so no comma follows).
pub fn splice_resource_version(json: &[u8], at: usize, empty: bool, revision: i64) -> Vec<u8> {
    let field = format!(
        "\"resourceVersion\":\"{revision}\"{}",
        if empty { "" } else { "," }
    );
    let at = at.min(json.len());
    let mut out = Vec::with_capacity(json.len() + field.len());
    out.extend_from_slice(&json[..at]);
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(&json[at..]);
    out
}

/// What metadata fields are never stored.
fn unstored(key: &str) -> bool {
    matches!(key, "resourceVersion" | "selfLink")
}

/// Metadata without [`unstored`] fields.
struct StoredMeta<'a>(&'a Map<String, Value>);

impl serde::Serialize for StoredMeta<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let kept = self.0.keys().filter(|k| !unstored(k)).count();
        let mut map = serializer.serialize_map(Some(kept))?;
        for (key, value) in self.0.iter().filter(|(k, _)| !unstored(k)) {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(object: &mut Value, revision: i64) {
    meta_mut(object).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// The mutable metadata map (created if absent).
pub fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let obj = object
        .as_object_mut()
        .expect("object was just made an object");
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
        .expect("metadata was just made an object")
}

/// Sets `path` in `object` to `value`, creating missing (or null) intermediate objects. Does
/// nothing when a non-object value is in the way, so malformed input never panics.
pub fn put(object: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = object;
    for key in parents {
        if cur.is_null() {
            *cur = json!({});
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        cur = map.entry((*key).to_string()).or_insert(Value::Null);
    }
    if cur.is_null() {
        *cur = json!({});
    }
    if let Some(map) = cur.as_object_mut() {
        map.insert((*last).to_string(), value);
    }
}

/// A string field of metadata.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `metadata.name`.
pub fn name(object: &Value) -> Option<&str> {
    meta_str(object, "name")
}

/// `metadata.resourceVersion` as a revision (None when absent or empty).
pub fn resource_version(object: &Value) -> Option<Result<i64, ApiError>> {
    meta_str(object, "resourceVersion").map(|rv| {
        rv.parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))
    })
}

/// `metadata.finalizers` as strings.
pub fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the object carries a deletion timestamp.
pub fn is_deleting(object: &Value) -> bool {
    meta_str(object, "deletionTimestamp").is_some()
}

/// Now, as an RFC 3339 timestamp with second precision (what `metav1.Time` serialises).
/// Each thread formats a second once: every write asks, thousands of times a second.
pub fn now() -> String {
    thread_local! {
        static FORMATTED: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let t = jiff::Timestamp::now();
    FORMATTED.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.0 != t.as_second() {
            *cell = (t.as_second(), timestamp(t));
        }
        cell.1.clone()
    })
}

/// A new random (version 4) UID, from the thread's random generator: the system's generator
/// costs a system call for every object created.
pub fn new_uid() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// A timestamp as `metav1.Time` JSON (`2024-01-01T00:00:00Z`).
pub fn timestamp(t: jiff::Timestamp) -> String {
    let secs = t.as_second();
    jiff::Timestamp::from_second(secs)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Sets `kind` and `apiVersion` of an object to the resource's.
pub fn set_type_meta(object: &mut Value, resource: &Resource) {
    if let Some(o) = object.as_object_mut() {
        o.insert("kind".into(), json!(resource.kind));
        o.insert("apiVersion".into(), json!(resource.api_version()));
    }
}

const GENERATE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `generateName` + 5 random characters, as upstream.
pub fn generate_name(base: &str) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let base: String = base.chars().take(63 - 5).collect();
    let suffix: String = (0..5)
        .map(|_| GENERATE_CHARS[rng.random_range(0..GENERATE_CHARS.len())] as char)
        .collect();
    format!("{base}{suffix}")
}

/// Whether `s` is a DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a DNS-1123 subdomain (labels joined by dots, at most 253 characters).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Validates an object name for `resource` (422 with the upstream message when invalid).
pub fn validate_name(resource: &Resource, name: &str) -> Result<(), ApiError> {
    let label_only = matches!(resource.plural, "namespaces" | "services");
    let ok = if label_only {
        is_dns1123_label(name)
    } else if matches!(
        resource.plural,
        "nodes"
            | "events"
            | "leases"
            | "clusterroles"
            | "clusterrolebindings"
            | "roles"
            | "rolebindings"
    ) {
        !name.is_empty() && !name.contains('/') && name != "." && name != ".."
    } else {
        is_dns1123_subdomain(name)
    };
    if ok {
        return Ok(());
    }
    let message = if label_only {
        format!("Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
    } else {
        format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    };
    Err(ApiError::invalid(
        resource.kind,
        resource.group,
        name,
        vec![Cause {
            reason: "FieldValueInvalid",
            message,
            field: "metadata.name".into(),
        }],
    ))
}

/// The object's `spec`-like content: everything except metadata, status, kind and apiVersion
/// (a change here bumps `generation`).
pub fn spec_part(object: &Value) -> Value {
    match object.as_object() {
        Some(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "kind" | "apiVersion")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::registry::find;

    #[test]
    fn keys_follow_the_registry_layout() {
        let pods = find("", "v1", "pods").expect("pods");
        let nodes = find("", "v1", "nodes").expect("nodes");
        let deploy = find("apps", "v1", "deployments").expect("deployments");
        assert_eq!(key(pods, Some("default"), "p"), "/registry/pods/default/p");
        assert_eq!(key(nodes, None, "n"), "/registry/nodes/n");
        assert_eq!(
            key(deploy, Some("ns"), "d"),
            "/registry/apps/deployments/ns/d"
        );
        assert_eq!(list_prefix(pods, None), "/registry/pods/");
        assert_eq!(list_prefix(pods, Some("a")), "/registry/pods/a/");
    }

    #[test]
    fn put_creates_parents_and_never_panics_on_bad_shapes() {
        let mut v = json!({"spec": null});
        put(&mut v, &["spec", "template", "x"], json!(1));
        assert_eq!(v, json!({"spec": {"template": {"x": 1}}}));
        let mut bad = json!({"spec": "oops"});
        put(&mut bad, &["spec", "x"], json!(1));
        assert_eq!(bad, json!({"spec": "oops"}));
    }

    #[test]
    fn dns_names_validate() {
        assert!(is_dns1123_label("web-1"));
        assert!(!is_dns1123_label("Web"));
        assert!(!is_dns1123_label("-a"));
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("a..b"));
    }

    #[test]
    fn generated_names_have_five_character_suffix() {
        let n = generate_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
    }

    #[test]
    fn encoding_drops_the_resource_version_and_self_link_only() {
        let object = json!({
            "kind": "Pod",
            "metadata": {"name": "p", "resourceVersion": "3", "selfLink": "/x", "uid": "u"},
            "spec": {"metadata": {"resourceVersion": "kept"}},
        });
        let stored: Value =
            serde_json::from_slice(&encode(&object).expect("encode")).expect("json");
        assert_eq!(
            stored,
            json!({
                "kind": "Pod",
                "metadata": {"name": "p", "uid": "u"},
                "spec": {"metadata": {"resourceVersion": "kept"}},
            })
        );
        assert_eq!(encode(&json!([1])).expect("encode"), b"[1]".to_vec());
    }

    #[test]
    fn encoded_objects_take_a_resource_version_where_their_metadata_starts() {
        let pods = find("", "v1", "pods").expect("pods");
        let objects = [
            json!({"apiVersion": "v1", "kind": "Pod", "data": {"x": "\"metadata\":{"},
                   "metadata": {"name": "p", "resourceVersion": "3", "selfLink": "/x"},
                   "spec": {"metadata": {}}}),
            json!({"kind": "Pod", "metadata": {"resourceVersion": "3"}}),
            json!({"kind": "Pod", "metadata": {}}),
        ];
        for object in objects {
            let encoded = encode_for(pods, &object).expect("encode");
            assert_eq!(encoded.bytes, encode(&object).expect("encode"));
            let (at, empty) = encoded.splice_at.expect("metadata located");
            let answer = splice_resource_version(&encoded.bytes, at, empty, 42);
            let mut expected = object.clone();
            meta_mut(&mut expected).remove("selfLink");
            set_resource_version(&mut expected, 42);
            let answer: Value = serde_json::from_slice(&answer).expect("json");
            assert_eq!(answer, expected);
        }
        let no_metadata = encode_for(pods, &json!({"kind": "Pod"})).expect("encode");
        assert_eq!(no_metadata.splice_at, None);
    }

    #[test]
    fn uids_are_random_version_4_uuids() {
        let (a, b) = (new_uid(), new_uid());
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).expect("uuid");
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn now_is_a_second_precision_timestamp() {
        let before = jiff::Timestamp::now().as_second();
        let now: jiff::Timestamp = now().parse().expect("timestamp");
        let after = jiff::Timestamp::now().as_second();
        assert!((before..=after).contains(&now.as_second()));
        assert_eq!(now.subsec_nanosecond(), 0);
    }

    #[test]
    fn timestamps_have_second_precision() {
        let t = jiff::Timestamp::from_second(1_700_000_000).expect("ts");
        assert_eq!(timestamp(t), "2023-11-14T22:13:20Z");
    }
}
