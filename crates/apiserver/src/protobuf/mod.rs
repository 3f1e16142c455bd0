//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), which
//! client-go's typed clientsets (and so `kubectl create deployment`, `kubectl run`, ...) send.
//!
//! The body is the magic `k8s\0` followed by a `runtime.Unknown` envelope whose `raw` bytes are
//! the object's message. Messages are decoded against the wire schema in `schema.tsv`
//! (field numbers, JSON names and types), into the JSON the rest of the server handles. Go's encoder writes zero-valued non-pointer fields, which JSON would omit: empty
//! strings, `false` and `0` are dropped again, so defaulting behaves as for JSON bodies.

mod decode;
mod schema;

use serde_json::{json, Value};

use decode::{decode_message, Reader, Wire};
use schema::{Kind, SCHEMA};

const MAGIC: &[u8] = b"k8s\x00";
const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtoError {
    /// The body lacks the `k8s\0` prefix.
    #[error("protobuf body does not start with the Kubernetes magic number")]
    NoMagic,
    /// The wire data is truncated or malformed.
    #[error("malformed protobuf data in {0}")]
    Malformed(String),
    /// The envelope names a kind the schema does not know.
    #[error("no protobuf schema for {0}")]
    UnknownType(String),
}

/// The protobuf package of an apiVersion (`apps/v1` -> `k8s.io.api.apps.v1`).
fn package_of(api_version: &str) -> String {
    match api_version.split_once('/') {
        None => format!("k8s.io.api.core.{api_version}"),
        Some(("meta.k8s.io", v)) => format!("k8s.io.apimachinery.pkg.apis.meta.{v}"),
        Some((group, v)) => {
            let short = group.split('.').next().unwrap_or(group);
            format!("k8s.io.api.{short}.{v}")
        }
    }
}

/// The JSON shape of a field, for strict field validation.
#[derive(Debug)]
pub(crate) enum FieldShape {
    /// A map of scalars (keys and values are checked loosely).
    Opaque,
    /// A JSON string (protobuf `string` or base64 `bytes`).
    Text,
    /// A JSON integer.
    Integer,
    /// A JSON boolean.
    Boolean,
    /// A nested message.
    Message(String),
    /// A map whose values are messages.
    MapOf(String),
}

/// The fields (JSON name, shape, repeated) of the message `name`, if it is in the schema. Fields of
/// structs embedded inline (Go's `json:",inline"`) are listed as the parent's own, as JSON has them.
pub(crate) fn message_fields(name: &str) -> Option<Vec<(String, FieldShape, bool)>> {
    let fields = SCHEMA.messages.get(name)?;
    let mut out = Vec::with_capacity(fields.len());
    for f in fields.values() {
        if let (true, Kind::Message(inner)) = (f.inline, &f.kind) {
            out.extend(message_fields(inner).unwrap_or_default());
            continue;
        }
        let shape = match (&f.map_value, &f.kind) {
            (Some(Kind::Message(m)), _) => FieldShape::MapOf(m.clone()),
            (Some(_), _) => FieldShape::Opaque,
            (None, Kind::Message(m)) => FieldShape::Message(m.clone()),
            (None, Kind::String | Kind::Bytes) => FieldShape::Text,
            (None, Kind::Int) => FieldShape::Integer,
            (None, Kind::Bool) => FieldShape::Boolean,
        };
        out.push((f.name.clone(), shape, f.repeated));
    }
    Some(out)
}

/// [`message_fields`] of every message of the schema, built once: field validation and
/// managed-fields tracking look fields up for every node of every written object.
pub(crate) fn message_fields_ref(name: &str) -> Option<&'static [(String, FieldShape, bool)]> {
    type Fields = std::collections::HashMap<String, Vec<(String, FieldShape, bool)>>;
    static FIELDS: std::sync::LazyLock<Fields> = std::sync::LazyLock::new(|| {
        SCHEMA
            .messages
            .keys()
            .filter_map(|name| Some((name.clone(), message_fields(name)?)))
            .collect()
    });
    FIELDS.get(name).map(Vec::as_slice)
}

/// Whether a message has a special JSON form (times, quantities, int-or-string, raw JSON).
pub(crate) fn is_special(name: &str) -> bool {
    matches!(
        name.strip_prefix("k8s.io.apimachinery.pkg."),
        Some(
            "apis.meta.v1.Time"
                | "apis.meta.v1.MicroTime"
                | "apis.meta.v1.Duration"
                | "util.intstr.IntOrString"
                | "api.resource.Quantity"
                | "runtime.RawExtension"
                | "apis.meta.v1.FieldsV1"
        )
    )
}

/// The schema message of `kind` in `api_version`.
pub(crate) fn message_for(api_version: &str, kind: &str) -> Option<String> {
    let name = format!("{}.{kind}", package_of(api_version));
    SCHEMA.messages.contains_key(&name).then_some(name)
}

/// Whether `content_type` is the Kubernetes protobuf media type.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim() == "application/vnd.kubernetes.protobuf")
}

/// Decodes a protobuf request body into the JSON object it stands for (with `apiVersion` and
/// `kind` set from the envelope).
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtoError::NoMagic)?;
    let mut reader = Reader::new(envelope, "runtime.Unknown");
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((number, wire)) = reader.next()? {
        match (number, wire) {
            (1, Wire::Bytes(type_meta)) => {
                let mut tr = Reader::new(type_meta, "runtime.TypeMeta");
                while let Some((n, w)) = tr.next()? {
                    if let Wire::Bytes(b) = w {
                        match n {
                            1 => api_version = String::from_utf8_lossy(b).into_owned(),
                            2 => kind = String::from_utf8_lossy(b).into_owned(),
                            _ => {}
                        }
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let mut name = format!("{}.{kind}", package_of(&api_version));
    if !SCHEMA.messages.contains_key(&name) {
        name = format!("{META}.{kind}");
    }
    let mut object = decode_message(&name, raw)?;
    if let Some(o) = object.as_object_mut() {
        o.insert("apiVersion".into(), json!(api_version));
        o.insert("kind".into(), json!(kind));
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field_bytes(number: u64, data: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    fn field_varint(number: u64, v: u64, out: &mut Vec<u8>) {
        varint(number << 3, out);
        varint(v, out);
    }

    #[test]
    fn a_namespace_envelope_decodes_to_json() {
        // ObjectMeta { name: "demo", generateName: "", labels: {a: b} }
        let mut meta = Vec::new();
        field_bytes(1, b"demo", &mut meta);
        field_bytes(2, b"", &mut meta);
        let mut entry = Vec::new();
        field_bytes(1, b"a", &mut entry);
        field_bytes(2, b"b", &mut entry);
        field_bytes(11, &entry, &mut meta);
        let mut ns = Vec::new();
        field_bytes(1, &meta, &mut ns);
        let mut type_meta = Vec::new();
        field_bytes(1, b"v1", &mut type_meta);
        field_bytes(2, b"Namespace", &mut type_meta);
        let mut unknown = Vec::new();
        field_bytes(1, &type_meta, &mut unknown);
        field_bytes(2, &ns, &mut unknown);
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&unknown);
        let v = decode(&body).expect("decode");
        assert_eq!(v["kind"], "Namespace");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["metadata"], json!({"name": "demo", "labels": {"a": "b"}}));
    }

    #[test]
    fn int_or_string_and_quantities_take_their_json_forms() {
        let mut port = Vec::new();
        field_varint(1, 0, &mut port);
        field_varint(2, 8080, &mut port);
        assert_eq!(
            decode_message("k8s.io.apimachinery.pkg.util.intstr.IntOrString", &port).expect("ios"),
            json!(8080)
        );
        let mut q = Vec::new();
        field_bytes(1, b"100m", &mut q);
        assert_eq!(
            decode_message("k8s.io.apimachinery.pkg.api.resource.Quantity", &q).expect("q"),
            json!("100m")
        );
    }

    #[test]
    fn garbage_is_rejected_not_panicking() {
        assert_eq!(decode(b"nope"), Err(ProtoError::NoMagic));
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&[0x0a, 0xff, 0xff, 0xff]);
        assert!(decode(&body).is_err());
    }
}
