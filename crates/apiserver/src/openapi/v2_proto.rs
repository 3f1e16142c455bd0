//! The OpenAPI v2 document in the protobuf wire format of gnostic's `openapi.v2.Document`, as
//! upstream serves `/openapi/v2` to clients that ask for
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` (kubectl and client-go).
//!
//! The encoder walks the same JSON tree the JSON document is built from and writes each
//! object as the gnostic message at its place (Document, Info, Paths, PathItem, Operation,
//! parameters, Responses, Definitions, Schema, ...) by field number. Keys starting with `x-`
//! become `vendor_extension` entries (`NamedAny` holding `Any{yaml}`; the value is written as
//! JSON, which is valid YAML). Keys the message has no field for are left out, as gnostic does.

use serde_json::{Map, Value};

/// Protobuf wire types.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LENGTH: u64 = 2;

/// A protobuf message under construction.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u64, wire: u64) {
        self.varint((field << 3) | wire);
    }

    fn bytes(&mut self, field: u64, bytes: &[u8]) {
        self.key(field, LENGTH);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    /// A string field (proto3: empty strings are not written).
    fn string(&mut self, field: u64, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    /// A nested message field (written even when empty: presence matters for messages).
    fn message(&mut self, field: u64, m: Message) {
        self.bytes(field, &m.0);
    }

    fn boolean(&mut self, field: u64, b: bool) {
        if b {
            self.key(field, VARINT);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u64, v: i64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v as u64);
        }
    }

    fn double(&mut self, field: u64, v: f64) {
        if v != 0.0 {
            self.key(field, FIXED64);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A `repeated string` field from a JSON string or array of strings.
    fn strings(&mut self, field: u64, v: &Value) {
        match v {
            Value::String(s) => self.bytes(field, s.as_bytes()),
            Value::Array(items) => {
                for s in items.iter().filter_map(Value::as_str) {
                    self.bytes(field, s.as_bytes());
                }
            }
            _ => {}
        }
    }

    /// A scalar JSON value into a field of the given kind.
    fn scalar(&mut self, field: u64, kind: Kind, v: &Value) {
        match kind {
            Kind::Str => self.string(field, v.as_str().unwrap_or_default()),
            Kind::Bool => self.boolean(field, v.as_bool().unwrap_or_default()),
            Kind::Int => self.int64(field, v.as_i64().unwrap_or_default()),
            Kind::Double => self.double(field, v.as_f64().unwrap_or_default()),
            Kind::Strings => self.strings(field, v),
            Kind::AnyValue => self.message(field, any(v)),
            Kind::Anys => {
                for item in v.as_array().into_iter().flatten() {
                    self.message(field, any(item));
                }
            }
        }
    }
}

/// How a scalar (non-message) JSON member is written.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    Double,
    Strings,
    /// An `Any` holding the value as YAML.
    AnyValue,
    /// `repeated Any`.
    Anys,
}

/// `Any{yaml: <value as JSON text>}`.
fn any(v: &Value) -> Message {
    let mut m = Message::default();
    m.string(2, &serde_json::to_string(v).unwrap_or_default());
    m
}

/// `NamedAny{name, value: Any}`.
fn named_any(name: &str, v: &Value) -> Message {
    let mut m = Message::default();
    m.string(1, name);
    m.message(2, any(v));
    m
}

/// Writes the scalar members of `obj` found in `table` and its `x-` members as vendor
/// extensions in field `vendor` (0: the message has none).
fn scalars(m: &mut Message, obj: &Map<String, Value>, table: &[(&str, u64, Kind)], vendor: u64) {
    for (name, field, kind) in table {
        if let Some(v) = obj.get(*name) {
            m.scalar(*field, *kind, v);
        }
    }
    if vendor != 0 {
        for (name, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
            m.message(vendor, named_any(name, v));
        }
    }
}

/// `openapi.v2.Document` from the JSON v2 document.
pub(super) fn document(doc: &Value) -> Vec<u8> {
    let empty = Map::new();
    let obj = doc.as_object().unwrap_or(&empty);
    let mut m = Message::default();
    scalars(
        &mut m,
        obj,
        &[
            ("swagger", 1, Kind::Str),
            ("host", 3, Kind::Str),
            ("basePath", 4, Kind::Str),
            ("schemes", 5, Kind::Strings),
            ("consumes", 6, Kind::Strings),
            ("produces", 7, Kind::Strings),
        ],
        16,
    );
    if let Some(info) = obj.get("info").and_then(Value::as_object) {
        let mut i = Message::default();
        scalars(
            &mut i,
            info,
            &[
                ("title", 1, Kind::Str),
                ("version", 2, Kind::Str),
                ("description", 3, Kind::Str),
                ("termsOfService", 4, Kind::Str),
            ],
            7,
        );
        m.message(2, i);
    }
    if let Some(paths) = obj.get("paths").and_then(Value::as_object) {
        let mut p = Message::default();
        for (name, item) in paths {
            if name.starts_with("x-") {
                p.message(1, named_any(name, item));
                continue;
            }
            let mut named = Message::default();
            named.string(1, name);
            named.message(2, path_item(item));
            p.message(2, named);
        }
        m.message(8, p);
    }
    if let Some(defs) = obj.get("definitions").and_then(Value::as_object) {
        let mut d = Message::default();
        for (name, s) in defs {
            d.message(1, named_schema(name, s));
        }
        m.message(9, d);
    }
    m.0
}

fn named_schema(name: &str, s: &Value) -> Message {
    let mut m = Message::default();
    m.string(1, name);
    m.message(2, schema(s));
    m
}

fn path_item(item: &Value) -> Message {
    let empty = Map::new();
    let obj = item.as_object().unwrap_or(&empty);
    let mut m = Message::default();
    scalars(&mut m, obj, &[("$ref", 1, Kind::Str)], 10);
    let verbs = [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ];
    for (verb, field) in verbs {
        if let Some(op) = obj.get(verb) {
            m.message(field, operation(op));
        }
    }
    for p in obj
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(9, parameters_item(p));
    }
    m
}

fn operation(op: &Value) -> Message {
    let empty = Map::new();
    let obj = op.as_object().unwrap_or(&empty);
    let mut m = Message::default();
    scalars(
        &mut m,
        obj,
        &[
            ("tags", 1, Kind::Strings),
            ("summary", 2, Kind::Str),
            ("description", 3, Kind::Str),
            ("operationId", 5, Kind::Str),
            ("produces", 6, Kind::Strings),
            ("consumes", 7, Kind::Strings),
            ("schemes", 10, Kind::Strings),
            ("deprecated", 11, Kind::Bool),
        ],
        13,
    );
    for p in obj
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(8, parameters_item(p));
    }
    if let Some(responses) = obj.get("responses").and_then(Value::as_object) {
        m.message(9, responses_message(responses));
    }
    m
}

/// The members shared by the non-body parameter kinds, at their field numbers in the
/// query/formData layout (`offset` 0) and the header/path layout (`offset` 1, which lacks
/// `allowEmptyValue` and so has every later field one lower).
fn non_body_fields(offset: u64) -> Vec<(&'static str, u64, Kind)> {
    let mut table = vec![
        ("required", 1, Kind::Bool),
        ("in", 2, Kind::Str),
        ("description", 3, Kind::Str),
        ("name", 4, Kind::Str),
    ];
    if offset == 0 {
        table.push(("allowEmptyValue", 5, Kind::Bool));
    }
    let rest = [
        ("type", 6, Kind::Str),
        ("format", 7, Kind::Str),
        ("collectionFormat", 9, Kind::Str),
        ("default", 10, Kind::AnyValue),
        ("maximum", 11, Kind::Double),
        ("exclusiveMaximum", 12, Kind::Bool),
        ("minimum", 13, Kind::Double),
        ("exclusiveMinimum", 14, Kind::Bool),
        ("maxLength", 15, Kind::Int),
        ("minLength", 16, Kind::Int),
        ("pattern", 17, Kind::Str),
        ("maxItems", 18, Kind::Int),
        ("minItems", 19, Kind::Int),
        ("uniqueItems", 20, Kind::Bool),
        ("enum", 21, Kind::Anys),
        ("multipleOf", 22, Kind::Double),
    ];
    table.extend(rest.iter().map(|(n, f, k)| (*n, f - offset, *k)));
    table
}

/// `ParametersItem`: a `$ref` (JsonReference) or a body / non-body `Parameter`.
fn parameters_item(p: &Value) -> Message {
    let empty = Map::new();
    let obj = p.as_object().unwrap_or(&empty);
    let mut m = Message::default();
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let mut reference = Message::default();
        reference.string(1, r);
        scalars(&mut reference, obj, &[("description", 2, Kind::Str)], 0);
        m.message(2, reference);
        return m;
    }
    let location = obj.get("in").and_then(Value::as_str).unwrap_or_default();
    let mut parameter = Message::default();
    if location == "body" {
        let mut body = Message::default();
        scalars(
            &mut body,
            obj,
            &[
                ("description", 1, Kind::Str),
                ("name", 2, Kind::Str),
                ("in", 3, Kind::Str),
                ("required", 4, Kind::Bool),
            ],
            0,
        );
        if let Some(s) = obj.get("schema") {
            body.message(5, schema(s));
        }
        scalars(&mut body, obj, &[], 6);
        parameter.message(1, body);
    } else {
        // NonBodyParameter oneof: header 1, formData 2, query 3, path 4.
        let (choice, offset, items_field, vendor) = match location {
            "header" => (1, 1, 7, 22),
            "formData" => (2, 0, 8, 23),
            "path" => (4, 1, 7, 22),
            _ => (3, 0, 8, 23),
        };
        let mut sub = Message::default();
        scalars(&mut sub, obj, &non_body_fields(offset), vendor);
        if let Some(items) = obj.get("items") {
            sub.message(items_field, primitives_items(items));
        }
        let mut non_body = Message::default();
        non_body.message(choice, sub);
        parameter.message(2, non_body);
    }
    m.message(1, parameter);
    m
}

/// `PrimitivesItems` (the `items` of a non-body parameter).
fn primitives_items(v: &Value) -> Message {
    let empty = Map::new();
    let obj = v.as_object().unwrap_or(&empty);
    let mut m = Message::default();
    scalars(
        &mut m,
        obj,
        &[
            ("type", 1, Kind::Str),
            ("format", 2, Kind::Str),
            ("collectionFormat", 4, Kind::Str),
            ("default", 5, Kind::AnyValue),
            ("uniqueItems", 15, Kind::Bool),
            ("enum", 16, Kind::Anys),
        ],
        18,
    );
    if let Some(items) = obj.get("items") {
        m.message(3, primitives_items(items));
    }
    m
}

/// `Responses{response_code: [NamedResponseValue]}`.
fn responses_message(responses: &Map<String, Value>) -> Message {
    let mut m = Message::default();
    for (code, r) in responses {
        if code.starts_with("x-") {
            m.message(2, named_any(code, r));
            continue;
        }
        let empty = Map::new();
        let obj = r.as_object().unwrap_or(&empty);
        let mut value = Message::default();
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            let mut json_ref = Message::default();
            json_ref.string(1, reference);
            value.message(2, json_ref);
        } else {
            let mut response = Message::default();
            scalars(&mut response, obj, &[("description", 1, Kind::Str)], 0);
            if let Some(s) = obj.get("schema") {
                let mut item = Message::default();
                item.message(1, schema(s));
                response.message(2, item);
            }
            scalars(&mut response, obj, &[], 5);
            value.message(1, response);
        }
        let mut named = Message::default();
        named.string(1, code);
        named.message(2, value);
        m.message(1, named);
    }
    m
}

/// `Schema` from a JSON schema object.
fn schema(s: &Value) -> Message {
    let empty = Map::new();
    let obj = s.as_object().unwrap_or(&empty);
    let mut m = Message::default();
    scalars(
        &mut m,
        obj,
        &[
            ("$ref", 1, Kind::Str),
            ("format", 2, Kind::Str),
            ("title", 3, Kind::Str),
            ("description", 4, Kind::Str),
            ("default", 5, Kind::AnyValue),
            ("multipleOf", 6, Kind::Double),
            ("maximum", 7, Kind::Double),
            ("exclusiveMaximum", 8, Kind::Bool),
            ("minimum", 9, Kind::Double),
            ("exclusiveMinimum", 10, Kind::Bool),
            ("maxLength", 11, Kind::Int),
            ("minLength", 12, Kind::Int),
            ("pattern", 13, Kind::Str),
            ("maxItems", 14, Kind::Int),
            ("minItems", 15, Kind::Int),
            ("uniqueItems", 16, Kind::Bool),
            ("maxProperties", 17, Kind::Int),
            ("minProperties", 18, Kind::Int),
            ("required", 19, Kind::Strings),
            ("enum", 20, Kind::Anys),
            ("discriminator", 26, Kind::Str),
            ("readOnly", 27, Kind::Bool),
            ("example", 30, Kind::AnyValue),
        ],
        0,
    );
    match obj.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            // AdditionalPropertiesItem oneof `boolean` (written even when false).
            let mut item = Message::default();
            item.key(2, VARINT);
            item.varint(u64::from(*b));
            m.message(21, item);
        }
        Some(v @ Value::Object(_)) => {
            let mut item = Message::default();
            item.message(1, schema(v));
            m.message(21, item);
        }
        _ => {}
    }
    if let Some(t) = obj.get("type") {
        let mut item = Message::default();
        item.strings(1, t);
        m.message(22, item);
    }
    match obj.get("items") {
        Some(v @ Value::Object(_)) => {
            let mut item = Message::default();
            item.message(1, schema(v));
            m.message(23, item);
        }
        Some(Value::Array(list)) => {
            let mut item = Message::default();
            for v in list {
                item.message(1, schema(v));
            }
            m.message(23, item);
        }
        _ => {}
    }
    for v in obj
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(24, schema(v));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        let mut p = Message::default();
        for (name, v) in props {
            p.message(1, named_schema(name, v));
        }
        m.message(25, p);
    }
    scalars(&mut m, obj, &[], 31);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// A decoded field: a varint, or a length-delimited payload (fixed64 as 8 bytes).
    #[derive(Debug, PartialEq)]
    enum F {
        V(u64),
        B(Vec<u8>),
    }

    fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = buf[*pos];
            *pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }

    fn decode(buf: &[u8]) -> Vec<(u64, F)> {
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < buf.len() {
            let key = read_varint(buf, &mut pos);
            let f = match key & 7 {
                0 => F::V(read_varint(buf, &mut pos)),
                1 => {
                    pos += 8;
                    F::B(buf[pos - 8..pos].to_vec())
                }
                2 => {
                    let len = read_varint(buf, &mut pos) as usize;
                    pos += len;
                    F::B(buf[pos - len..pos].to_vec())
                }
                w => panic!("wire type {w}"),
            };
            out.push((key >> 3, f));
        }
        out
    }

    /// The payloads of field `n` of `buf`.
    fn all(buf: &[u8], n: u64) -> Vec<Vec<u8>> {
        decode(buf)
            .into_iter()
            .filter(|(f, _)| *f == n)
            .filter_map(|(_, v)| match v {
                F::B(b) => Some(b),
                F::V(_) => None,
            })
            .collect()
    }

    fn one(buf: &[u8], n: u64) -> Vec<u8> {
        let mut found = all(buf, n);
        assert_eq!(found.len(), 1, "field {n} of {:?}", decode(buf));
        found.remove(0)
    }

    fn text(buf: &[u8], n: u64) -> String {
        String::from_utf8(one(buf, n)).expect("utf-8")
    }

    fn varint_field(buf: &[u8], n: u64) -> Option<u64> {
        decode(buf).into_iter().find_map(|(f, v)| match v {
            F::V(x) if f == n => Some(x),
            _ => None,
        })
    }

    #[test]
    fn varints_span_bytes() {
        let mut m = Message::default();
        m.varint(300);
        m.int64(2, -1);
        assert_eq!(&m.0[..2], &[0xac, 0x02]);
        assert_eq!(m.0.len(), 2 + 1 + 10);
        assert_eq!(varint_field(&m.0[2..], 2), Some(u64::MAX));
    }

    #[test]
    fn a_small_document_round_trips() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "T", "version": "v9"},
            "paths": {
                "/apis/x/v1/widgets/{name}": {
                    "parameters": [
                        {"name": "name", "in": "path", "type": "string", "required": true},
                    ],
                    "patch": {
                        "operationId": "patchWidget",
                        "x-kubernetes-action": "patch",
                        "parameters": [
                            {"name": "dryRun", "in": "query", "type": "string", "uniqueItems": true},
                            {"name": "body", "in": "body", "required": true,
                             "schema": {"$ref": "#/definitions/W"}},
                            {"$ref": "#/parameters/pretty"},
                        ],
                        "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/W"}}},
                    },
                },
            },
            "definitions": {
                "W": {
                    "type": "object",
                    "required": ["spec"],
                    "x-kubernetes-group-version-kind": [{"group": "x", "version": "v1", "kind": "Widget"}],
                    "properties": {
                        "spec": {"$ref": "#/definitions/S"},
                        "tags": {"type": "array", "items": {"type": "string"},
                                 "x-kubernetes-list-type": "set"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "open": {"type": "object", "additionalProperties": false},
                        "size": {"type": "integer", "format": "int32", "maximum": 2.5},
                    },
                },
            },
        });
        let bytes = document(&doc);
        assert_eq!(text(&bytes, 1), "2.0");
        let info = one(&bytes, 2);
        assert_eq!((text(&info, 1), text(&info, 2)), ("T".into(), "v9".into()));

        // Paths.path -> NamedPathItem{name, PathItem}.
        let named = one(&one(&bytes, 8), 2);
        assert_eq!(text(&named, 1), "/apis/x/v1/widgets/{name}");
        let item = one(&named, 2);
        // PathItem.parameters: ParametersItem.parameter -> Parameter.non_body -> path (4).
        let path_param = one(&one(&one(&one(&item, 9), 1), 2), 4);
        assert_eq!(text(&path_param, 4), "name");
        assert_eq!(text(&path_param, 5), "string");
        assert_eq!(varint_field(&path_param, 1), Some(1));

        let op = one(&item, 8);
        assert_eq!(text(&op, 5), "patchWidget");
        let ext = one(&op, 13);
        assert_eq!(text(&ext, 1), "x-kubernetes-action");
        assert_eq!(text(&one(&ext, 2), 2), "\"patch\"");
        let params = all(&op, 8);
        assert_eq!(params.len(), 3);
        let query = one(&one(&one(&params[0], 1), 2), 3);
        assert_eq!(text(&query, 4), "dryRun");
        assert_eq!(text(&query, 2), "query");
        assert_eq!(text(&query, 6), "string");
        assert_eq!(varint_field(&query, 20), Some(1));
        let body = one(&one(&params[1], 1), 1);
        assert_eq!(text(&body, 2), "body");
        assert_eq!(text(&one(&body, 5), 1), "#/definitions/W");
        assert_eq!(text(&one(&params[2], 2), 1), "#/parameters/pretty");
        let response = one(&one(&op, 9), 1);
        assert_eq!(text(&response, 1), "200");
        let response = one(&one(&response, 2), 1);
        assert_eq!(text(&response, 1), "OK");
        assert_eq!(text(&one(&one(&response, 2), 1), 1), "#/definitions/W");

        // Definitions -> NamedSchema{W, Schema}.
        let def = one(&one(&bytes, 9), 1);
        assert_eq!(text(&def, 1), "W");
        let w = one(&def, 2);
        assert_eq!(text(&one(&w, 22), 1), "object");
        assert_eq!(text(&w, 19), "spec");
        let gvk = one(&w, 31);
        assert_eq!(text(&gvk, 1), "x-kubernetes-group-version-kind");
        let yaml: Value = serde_json::from_str(&text(&one(&gvk, 2), 2)).expect("yaml as json");
        assert_eq!(
            yaml,
            json!([{"group": "x", "version": "v1", "kind": "Widget"}])
        );

        let props: BTreeMap<String, Vec<u8>> = all(&one(&w, 25), 1)
            .iter()
            .map(|p| (text(p, 1), one(p, 2)))
            .collect();
        assert_eq!(
            props.keys().map(String::as_str).collect::<Vec<_>>(),
            ["labels", "open", "size", "spec", "tags"]
        );
        assert_eq!(text(&props["spec"], 1), "#/definitions/S");
        let tags = &props["tags"];
        assert_eq!(text(&one(&one(&one(tags, 23), 1), 22), 1), "string");
        assert_eq!(text(&one(tags, 31), 1), "x-kubernetes-list-type");
        let labels = one(&props["labels"], 21);
        assert_eq!(text(&one(&one(&labels, 1), 22), 1), "string");
        let open = one(&props["open"], 21);
        assert_eq!(decode(&open), [(2, F::V(0))]);
        let size = &props["size"];
        assert_eq!(text(size, 2), "int32");
        assert_eq!(one(size, 7), 2.5f64.to_le_bytes().to_vec());
    }
}
