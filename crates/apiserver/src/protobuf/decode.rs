//! Wire-level decoding of protobuf messages into JSON, driven by the schema: the reader for
//! varints and length-delimited fields, scalar conversion, and the JSON forms of the special
//! apimachinery types (times, durations, quantities, int-or-string, raw JSON).

use base64::Engine;
use serde_json::{json, Map, Value};

use super::schema::{Kind, SCHEMA};
use super::ProtoError;

/// Raw wire value of one field occurrence.
pub(super) enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed(u64),
}

/// A cursor over protobuf wire data.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    context: &'a str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, naming `context` in errors.
    pub(super) fn new(buf: &'a [u8], context: &'a str) -> Self {
        Reader {
            buf,
            pos: 0,
            context,
        }
    }

    /// The error for malformed data in this reader's message.
    pub(super) fn err(&self) -> ProtoError {
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

    /// The next field occurrence, or `None` at the end of the buffer.
    pub(super) fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>, ProtoError> {
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

/// Decodes the message `name` from `bytes` into its JSON form.
pub(super) fn decode_message(name: &str, bytes: &[u8]) -> Result<Value, ProtoError> {
    let fields = SCHEMA
        .messages
        .get(name)
        .ok_or_else(|| ProtoError::UnknownType(name.to_string()))?;
    let mut obj = Map::new();
    let mut reader = Reader::new(bytes, name);
    while let Some((number, wire)) = reader.next()? {
        let Some(field) = fields.get(&number) else {
            continue;
        };
        if let Some(value_kind) = &field.map_value {
            let Wire::Bytes(entry) = wire else {
                return Err(reader.err());
            };
            let mut er = Reader::new(entry, name);
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
                    let mut pr = Reader::new(packed, name);
                    while pr.pos < packed.len() {
                        let v = pr.varint()?;
                        list.push(scalar(&field.kind, &Wire::Varint(v), name)?);
                    }
                }
                _ => list.push(scalar(&field.kind, &wire, name)?),
            }
        } else if field.inline {
            // An embedded struct: JSON carries its fields in this object.
            if let Value::Object(inner) = scalar(&field.kind, &wire, name)? {
                obj.extend(inner);
            }
        } else {
            obj.insert(field.name.clone(), scalar(&field.kind, &wire, name)?);
        }
    }
    Ok(special(name, obj))
}
