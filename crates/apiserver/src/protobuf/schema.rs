//! The protobuf wire schema of the Kubernetes API messages the decoder knows: for every
//! message, its fields by number with their JSON names and types. The data lives in
//! `schema.tsv` (one tab-separated line per field, format described in its header) and is
//! parsed once, on first use.

use std::collections::HashMap;
use std::sync::LazyLock;

const SCHEMA_TSV: &str = include_str!("schema.tsv");

/// The type of a field's values.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Kind {
    String,
    Bytes,
    Bool,
    Int,
    Message(String),
}

/// One field of a message.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Field {
    /// The JSON name.
    pub(super) name: String,
    pub(super) repeated: bool,
    pub(super) kind: Kind,
    /// For map fields: the value kind (keys are strings in the Kubernetes schema).
    pub(super) map_value: Option<Kind>,
    /// An embedded struct whose fields JSON carries in the parent object (Go's
    /// `json:",inline"`), while protobuf nests it as one field.
    pub(super) inline: bool,
}

/// The fields that are embedded inline in JSON: (message, JSON name of the nesting field).
const INLINE: &[(&str, &str)] = &[
    ("k8s.io.api.core.v1.Probe", "handler"),
    ("k8s.io.api.core.v1.Volume", "volumeSource"),
    (
        "k8s.io.api.core.v1.PersistentVolumeSpec",
        "persistentVolumeSource",
    ),
    (
        "k8s.io.api.core.v1.EphemeralContainer",
        "ephemeralContainerCommon",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapEnvSource",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapKeySelector",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapProjection",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapVolumeSource",
        "localObjectReference",
    ),
    ("k8s.io.api.core.v1.SecretEnvSource", "localObjectReference"),
    (
        "k8s.io.api.core.v1.SecretKeySelector",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.SecretProjection",
        "localObjectReference",
    ),
    ("k8s.io.api.networking.v1.IngressRule", "ingressRuleValue"),
];

/// All known messages by full name (`k8s.io.api.core.v1.Pod`), each a map of field numbers.
#[derive(Debug, Default)]
pub(super) struct Schema {
    pub(super) messages: HashMap<String, HashMap<u64, Field>>,
}

/// The schema, parsed from `schema.tsv` on first use.
pub(super) static SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema::parse(SCHEMA_TSV));

fn kind_of(type_name: &str) -> Kind {
    match type_name {
        "string" => Kind::String,
        "bytes" => Kind::Bytes,
        "bool" => Kind::Bool,
        "int32" | "int64" | "uint32" | "uint64" => Kind::Int,
        message => Kind::Message(message.to_string()),
    }
}

/// Parses the type column: `T`, `[]T` (repeated) or `map[string]T`.
fn field_of(name: &str, type_name: &str) -> Field {
    if let Some(value) = type_name.strip_prefix("map[string]") {
        Field {
            name: name.to_string(),
            repeated: false,
            kind: Kind::String,
            map_value: Some(kind_of(value)),
            inline: false,
        }
    } else if let Some(element) = type_name.strip_prefix("[]") {
        Field {
            name: name.to_string(),
            repeated: true,
            kind: kind_of(element),
            map_value: None,
            inline: false,
        }
    } else {
        Field {
            name: name.to_string(),
            repeated: false,
            kind: kind_of(type_name),
            map_value: None,
            inline: false,
        }
    }
}

/// What one line of the schema file declares.
enum Line<'a> {
    /// A comment or blank line.
    Nothing,
    /// A message without fields.
    Message(&'a str),
    /// A field of a message.
    Field(&'a str, u64, Field),
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    if line.is_empty() || line.starts_with('#') {
        return Some(Line::Nothing);
    }
    let columns: Vec<&str> = line.split('\t').collect();
    match columns[..] {
        [message] => Some(Line::Message(message)),
        [message, number, name, type_name] => {
            let mut field = field_of(name, type_name);
            field.inline = INLINE.contains(&(message, name));
            Some(Line::Field(message, number.parse().ok()?, field))
        }
        _ => None,
    }
}

impl Schema {
    /// Parses the schema file; malformed lines are skipped (a unit test ensures there are none).
    fn parse(text: &str) -> Schema {
        let mut schema = Schema::default();
        for line in text.lines() {
            match parse_line(line) {
                Some(Line::Message(message)) => {
                    schema.messages.entry(message.to_string()).or_default();
                }
                Some(Line::Field(message, number, field)) => {
                    schema
                        .messages
                        .entry(message.to_string())
                        .or_default()
                        .insert(number, field);
                }
                Some(Line::Nothing) | None => {}
            }
        }
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_schema_file_parses() {
        for line in SCHEMA_TSV.lines() {
            assert!(parse_line(line).is_some(), "malformed schema line {line:?}");
        }
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
        assert!(SCHEMA
            .messages
            .contains_key("k8s.io.apimachinery.pkg.apis.meta.v1.Patch"));
    }

    #[test]
    fn types_parse_into_repeated_map_and_message_fields() {
        assert_eq!(
            field_of("args", "[]string"),
            Field {
                name: "args".into(),
                repeated: true,
                kind: Kind::String,
                map_value: None,
                inline: false,
            }
        );
        assert_eq!(
            field_of(
                "limits",
                "map[string]k8s.io.apimachinery.pkg.api.resource.Quantity"
            ),
            Field {
                name: "limits".into(),
                repeated: false,
                kind: Kind::String,
                map_value: Some(Kind::Message(
                    "k8s.io.apimachinery.pkg.api.resource.Quantity".into()
                )),
                inline: false,
            }
        );
        assert_eq!(field_of("replicas", "int32").kind, Kind::Int);
    }
}
