//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), which
//! client-go's typed clientsets (and so `kubectl create deployment`, `kubectl run`, ...) send.
//!
//! The body is the magic `k8s\0` followed by a `runtime.Unknown` envelope whose `raw` bytes are
//! the object's message. Messages are decoded against the upstream schema in
//! `proto/k8s-schema.proto` (field numbers and JSON names), into the JSON the rest of the server
//! handles. Go's encoder writes zero-valued non-pointer fields, which JSON would omit: empty
//! strings, `false` and `0` are dropped again, so defaulting behaves as for JSON bodies.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine;
use serde_json::{json, Map, Value};

const SCHEMA_TEXT: &str = include_str!("../proto/k8s-schema.proto");
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

#[derive(Clone, Debug)]
enum Kind {
    String,
    Bytes,
    Bool,
    Int,
    Message(String),
}

#[derive(Clone, Debug)]
struct Field {
    name: String,
    repeated: bool,
    kind: Kind,
    /// For map fields: the value kind (keys are strings in the Kubernetes schema).
    map_value: Option<Kind>,
}

#[derive(Default)]
struct Schema {
    messages: HashMap<String, HashMap<u64, Field>>,
}

fn kind_of(package: &str, t: &str) -> Kind {
    match t {
        "string" => Kind::String,
        "bytes" => Kind::Bytes,
        "bool" => Kind::Bool,
        "int32" | "int64" | "uint32" | "uint64" => Kind::Int,
        other if other.contains('.') => Kind::Message(other.trim_start_matches('.').to_string()),
        other => Kind::Message(format!("{package}.{other}")),
    }
}

impl Schema {
    fn parse(text: &str) -> Schema {
        let mut schema = Schema::default();
        let mut package = String::new();
        let mut current: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if let Some(p) = line.strip_prefix("package ") {
                package = p.trim_end_matches(';').to_string();
            } else if let Some(m) = line.strip_prefix("message ") {
                let name = format!("{package}.{}", m.trim_end_matches('{').trim());
                schema.messages.entry(name.clone()).or_default();
                current = Some(name);
            } else if line == "}" {
                current = None;
            } else if let Some(msg) = &current {
                let Some((decl, number)) = line.trim_end_matches(';').split_once('=') else {
                    continue;
                };
                let Ok(number) = number.trim().parse::<u64>() else {
                    continue;
                };
                let words: Vec<&str> = decl.split_whitespace().collect();
                let field = if let Some(rest) = decl.trim().strip_prefix("map<") {
                    let Some((types, name)) = rest.split_once('>') else {
                        continue;
                    };
                    let value = types.split(',').nth(1).unwrap_or("string").trim();
                    Field {
                        name: name.trim().to_string(),
                        repeated: false,
                        kind: Kind::String,
                        map_value: Some(kind_of(&package, value)),
                    }
                } else if words.len() == 3 {
                    Field {
                        name: words[2].to_string(),
                        repeated: words[0] == "repeated",
                        kind: kind_of(&package, words[1]),
                        map_value: None,
                    }
                } else {
                    continue;
                };
                if let Some(fields) = schema.messages.get_mut(msg) {
                    fields.insert(number, field);
                }
            }
        }
        schema
    }
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema::parse(SCHEMA_TEXT));

/// Raw wire value of one field occurrence.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed(u64),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    context: &'a str,
}

impl<'a> Reader<'a> {
    fn err(&self) -> ProtoError {
        ProtoError::Malformed(self.context.to_string())
    }

    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(|| self.err())?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.err())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.err())?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| self.err())?;
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>, ProtoError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                Wire::Fixed(u64::from_le_bytes(b.try_into().map_err(|_| self.err())?))
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| self.err())?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Wire::Fixed(u64::from(u32::from_le_bytes(
                    b.try_into().map_err(|_| self.err())?,
                )))
            }
            _ => return Err(self.err()),
        };
        Ok(Some((number, wire)))
    }
}

fn scalar(kind: &Kind, wire: &Wire<'_>, context: &str) -> Result<Value, ProtoError> {
    let bad = || ProtoError::Malformed(context.to_string());
    Ok(match (kind, wire) {
        (Kind::String, Wire::Bytes(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        (Kind::Bytes, Wire::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Kind::Bool, Wire::Varint(v)) => Value::Bool(*v != 0),
        // int32/int64 use two's complement varints.
        (Kind::Int, Wire::Varint(v)) | (Kind::Int, Wire::Fixed(v)) => json!(*v as i64),
        (Kind::Message(name), Wire::Bytes(b)) => decode_message(name, b)?,
        _ => return Err(bad()),
    })
}

/// Fields that are pointers in Go, where an explicit zero or `false` means something (the
/// encoder only writes them when set, so their zero values are kept).
const MEANINGFUL_ZERO: &[&str] = &[
    "replicas",
    "terminationGracePeriodSeconds",
    "revisionHistoryLimit",
    "backoffLimit",
    "parallelism",
    "completions",
    "activeDeadlineSeconds",
    "progressDeadlineSeconds",
    "partition",
    "ttlSecondsAfterFinished",
    "startingDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "gracePeriodSeconds",
    "deletionGracePeriodSeconds",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "automountServiceAccountToken",
    "suspend",
    "enableServiceLinks",
    "readOnlyRootFilesystem",
    "privileged",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
    "hostUsers",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "optional",
    "immutable",
    "allocateLoadBalancerNodePorts",
];

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Null => true,
        _ => false,
    }
}

fn time(obj: &Map<String, Value>, micro: bool) -> Value {
    let seconds = obj.get("seconds").and_then(Value::as_i64).unwrap_or(0);
    let nanos = obj.get("nanos").and_then(Value::as_i64).unwrap_or(0);
    if seconds == 0 && nanos == 0 {
        return Value::Null;
    }
    let Ok(t) = jiff::Timestamp::new(seconds, i32::try_from(nanos).unwrap_or(0)) else {
        return Value::Null;
    };
    if micro {
        json!(t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
    } else {
        json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
    }
}

fn go_duration(nanos: i64) -> String {
    let secs = nanos / 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Applies the JSON forms of the special apimachinery types.
fn special(name: &str, obj: Map<String, Value>) -> Value {
    match name.strip_prefix("k8s.io.apimachinery.pkg.") {
        Some("apis.meta.v1.Time") => time(&obj, false),
        Some("apis.meta.v1.MicroTime") => time(&obj, true),
        Some("apis.meta.v1.Duration") => json!(go_duration(
            obj.get("duration").and_then(Value::as_i64).unwrap_or(0)
        )),
        Some("util.intstr.IntOrString") => {
            if obj.get("type").and_then(Value::as_i64).unwrap_or(0) == 1 {
                obj.get("strVal").cloned().unwrap_or_else(|| json!(""))
            } else {
                obj.get("intVal").cloned().unwrap_or_else(|| json!(0))
            }
        }
        Some("api.resource.Quantity") => obj.get("string").cloned().unwrap_or_else(|| json!("0")),
        Some("runtime.RawExtension") | Some("apis.meta.v1.FieldsV1") => {
            let raw = obj
                .get("raw")
                .or_else(|| obj.get("Raw"))
                .and_then(Value::as_str)
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .unwrap_or_default();
            serde_json::from_slice(&raw).unwrap_or(Value::Null)
        }
        _ => {
            let cleaned: Map<String, Value> = obj
                .into_iter()
                .filter(|(k, v)| !is_zero(v) || MEANINGFUL_ZERO.contains(&k.as_str()))
                .collect();
            Value::Object(cleaned)
        }
    }
}

fn decode_message(name: &str, bytes: &[u8]) -> Result<Value, ProtoError> {
    let fields = SCHEMA
        .messages
        .get(name)
        .ok_or_else(|| ProtoError::UnknownType(name.to_string()))?;
    let mut obj = Map::new();
    let mut reader = Reader {
        buf: bytes,
        pos: 0,
        context: name,
    };
    while let Some((number, wire)) = reader.next()? {
        let Some(field) = fields.get(&number) else {
            continue;
        };
        if let Some(value_kind) = &field.map_value {
            let Wire::Bytes(entry) = wire else {
                return Err(reader.err());
            };
            let mut er = Reader {
                buf: entry,
                pos: 0,
                context: name,
            };
            let (mut key, mut value) = (String::new(), None);
            while let Some((n, w)) = er.next()? {
                match n {
                    1 => {
                        if let Value::String(k) = scalar(&Kind::String, &w, name)? {
                            key = k;
                        }
                    }
                    2 => value = Some(scalar(value_kind, &w, name)?),
                    _ => {}
                }
            }
            let value = value.unwrap_or_else(|| match value_kind {
                Kind::Message(_) => json!({}),
                Kind::Int => json!(0),
                Kind::Bool => json!(false),
                _ => json!(""),
            });
            let map = obj.entry(field.name.clone()).or_insert_with(|| json!({}));
            if let Some(m) = map.as_object_mut() {
                m.insert(key, value);
            }
            continue;
        }
        if field.repeated {
            let list = obj.entry(field.name.clone()).or_insert_with(|| json!([]));
            let Some(list) = list.as_array_mut() else {
                continue;
            };
            match (&field.kind, &wire) {
                // Packed scalars.
                (Kind::Int | Kind::Bool, Wire::Bytes(packed)) => {
                    let mut pr = Reader {
                        buf: packed,
                        pos: 0,
                        context: name,
                    };
                    while pr.pos < packed.len() {
                        let v = pr.varint()?;
                        list.push(scalar(&field.kind, &Wire::Varint(v), name)?);
                    }
                }
                _ => list.push(scalar(&field.kind, &wire, name)?),
            }
        } else {
            obj.insert(field.name.clone(), scalar(&field.kind, &wire, name)?);
        }
    }
    Ok(special(name, obj))
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
pub(crate) enum FieldShape {
    /// A scalar or a type with a special JSON form (anything goes).
    Opaque,
    /// A nested message.
    Message(String),
    /// A map whose values are messages.
    MapOf(String),
}

/// The fields (JSON name, shape, repeated) of the message `name`, if it is in the schema.
pub(crate) fn message_fields(name: &str) -> Option<Vec<(String, FieldShape, bool)>> {
    let fields = SCHEMA.messages.get(name)?;
    Some(
        fields
            .values()
            .map(|f| {
                let shape = match (&f.map_value, &f.kind) {
                    (Some(Kind::Message(m)), _) => FieldShape::MapOf(m.clone()),
                    (Some(_), _) => FieldShape::Opaque,
                    (None, Kind::Message(m)) => FieldShape::Message(m.clone()),
                    (None, _) => FieldShape::Opaque,
                };
                (f.name.clone(), shape, f.repeated)
            })
            .collect(),
    )
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
    let mut reader = Reader {
        buf: envelope,
        pos: 0,
        context: "runtime.Unknown",
    };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((number, wire)) = reader.next()? {
        match (number, wire) {
            (1, Wire::Bytes(type_meta)) => {
                let mut tr = Reader {
                    buf: type_meta,
                    pos: 0,
                    context: "runtime.TypeMeta",
                };
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
    fn schema_knows_core_types_and_json_names() {
        let container = SCHEMA
            .messages
            .get("k8s.io.api.core.v1.Container")
            .expect("Container");
        assert_eq!(container.get(&1).map(|f| f.name.as_str()), Some("name"));
        let pod_spec = SCHEMA
            .messages
            .get("k8s.io.api.core.v1.PodSpec")
            .expect("PodSpec");
        assert!(pod_spec.values().any(|f| f.name == "hostIPC"));
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
