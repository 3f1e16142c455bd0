//! OpenAPI v2 (`/openapi/v2`) and v3 (`/openapi/v3`, `/openapi/v3/<api/v1 | apis/g/v>`)
//! documents with schemas for every served kind, so that `kubectl explain` works and kubectl's
//! apply finds the patch metadata of list fields.
//!
//! Schemas are generated from the protobuf schema the server already carries
//! (`protobuf/schema.tsv`: field names, types, repeated and map fields) and named as upstream
//! (`io.k8s.api.core.v1.Pod`). Top-level kinds carry `x-kubernetes-group-version-kind`; list
//! fields carry `x-kubernetes-list-type` (`atomic`, `set`, `map` with
//! `x-kubernetes-list-map-keys`) and, for merging lists, `x-kubernetes-patch-merge-key` and
//! `x-kubernetes-patch-strategy`, from the same merge keys the strategic merge patch uses.
//! Types and fields carry the upstream descriptions (`descriptions`), which `kubectl explain`
//! prints. Both versions list every
//! operation of every resource as upstream (`v3_paths`; `v2_paths` converts them to swagger
//! 2.0); every PATCH operation declares the `fieldValidation` parameter inline, so kubectl
//! leaves validation to the server. Documents are
//! built once, served as JSON with an `ETag` (304 on `If-None-Match`), and the v3 index links
//! them with `?hash=`. `/openapi/v2` is also served as gnostic protobuf (`v2_proto`) to
//! clients whose `Accept` asks for it, as kubectl does.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use api_types::registry::{self, Resource};
use axum::body::Body;
use http::{header, HeaderMap, Response, StatusCode};
use serde_json::{json, Map, Value};

use self::descriptions::{Descriptions, DESCRIPTIONS};
use crate::patch::{apply::map_keys, strategic};
use crate::protobuf::{is_special, message_fields, message_for, FieldShape};
use crate::status::ApiError;

mod descriptions;
mod v2_paths;
mod v2_proto;
mod v3_paths;

/// The media type (subtype of `application/`) kubectl asks `/openapi/v2` for, and the
/// newer spelling; both are answered with [`V2_PROTOBUF_CONTENT_TYPE`].
const V2_PROTOBUF_SUBTYPES: [&str; 2] = [
    "com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "com.github.proto-openapi.spec.v2.v1.0+protobuf",
];

/// The Content-Type of the protobuf `/openapi/v2` document, as upstream.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Which OpenAPI version a schema is written for (they differ in where references point).
#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    V2,
    V3,
}

/// The upstream definition name of a protobuf message (`k8s.io.api.core.v1.Pod` ->
/// `io.k8s.api.core.v1.Pod`).
fn def_name(message: &str) -> String {
    match message.strip_prefix("k8s.io.") {
        Some(rest) => format!("io.k8s.{rest}"),
        None => message.to_string(),
    }
}

fn reference(flavor: Flavor, message: &str) -> Value {
    match flavor {
        Flavor::V2 => json!({"$ref": format!("#/definitions/{}", def_name(message))}),
        Flavor::V3 => json!({"$ref": format!("#/components/schemas/{}", def_name(message))}),
    }
}

/// A property that refers to a message (v3 wraps references in `allOf`, as upstream).
fn property_reference(flavor: Flavor, message: &str) -> Value {
    match flavor {
        Flavor::V2 => reference(flavor, message),
        Flavor::V3 => json!({"allOf": [reference(flavor, message)]}),
    }
}

fn special_schema(message: &str) -> Value {
    let short = message.rsplit('.').next().unwrap_or(message);
    match short {
        "Time" | "MicroTime" => json!({"type": "string", "format": "date-time"}),
        "Duration" => json!({"type": "string"}),
        "IntOrString" | "Quantity" => json!({
            "type": "string", "format": "int-or-string", "x-kubernetes-int-or-string": true,
        }),
        _ => json!({"type": "object"}),
    }
}

/// The list extensions of the repeated field `field` whose items are `element` (a message).
fn list_extensions(field: &str, element: Option<&str>, schema: &mut Map<String, Value>) {
    if strategic::is_set_list(field) {
        schema.insert("x-kubernetes-list-type".into(), json!("set"));
        schema.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
        return;
    }
    let merge_key = element.and_then(|m| {
        let fields = message_fields(m)?;
        let sample: Map<String, Value> = fields
            .iter()
            .map(|(name, _, _)| (name.clone(), Value::Null))
            .collect();
        strategic::list_merge_key(field, &[Value::Object(sample)])
    });
    match merge_key {
        Some(key) => {
            schema.insert("x-kubernetes-list-type".into(), json!("map"));
            schema.insert(
                "x-kubernetes-list-map-keys".into(),
                json!(map_keys(field, key)),
            );
            schema.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            schema.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
        }
        None => {
            schema.insert("x-kubernetes-list-type".into(), json!("atomic"));
        }
    }
}

/// Adds the schema of `message` and of every message it refers to.
fn collect(message: &str, flavor: Flavor, out: &mut BTreeMap<String, Value>) {
    let name = def_name(message);
    if out.contains_key(&name) {
        return;
    }
    let known = DESCRIPTIONS.get(&name);
    if is_special(message) {
        let mut schema = special_schema(message);
        describe(&mut schema, known.and_then(|k| k.description.as_ref()));
        out.insert(name, schema);
        return;
    }
    out.insert(name.clone(), json!({"type": "object"}));
    let mut properties = Map::new();
    let mut fields = message_fields(message).unwrap_or_default();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let list;
    let described = match known {
        Some(k) => Some(k),
        None if name.ends_with("List") && fields.iter().any(|f| f.0 == "items") => {
            list = Descriptions::list(name.rsplit('.').next().unwrap_or(&name));
            Some(&list)
        }
        None => None,
    };
    for (field, shape, repeated) in fields {
        let mut element_message = None;
        let item = match &shape {
            FieldShape::Text => json!({"type": "string"}),
            FieldShape::Integer => json!({"type": "integer"}),
            FieldShape::Boolean => json!({"type": "boolean"}),
            FieldShape::Opaque => {
                json!({"type": "object", "additionalProperties": {"type": "string"}})
            }
            FieldShape::Message(m) => {
                collect(m, flavor, out);
                element_message = Some(m.clone());
                if repeated {
                    reference(flavor, m)
                } else {
                    property_reference(flavor, m)
                }
            }
            FieldShape::MapOf(m) => {
                collect(m, flavor, out);
                json!({"type": "object", "additionalProperties": reference(flavor, m)})
            }
        };
        let mut property = if repeated {
            let mut list = Map::new();
            list.insert("type".into(), json!("array"));
            list.insert("items".into(), item);
            list_extensions(&field, element_message.as_deref(), &mut list);
            Value::Object(list)
        } else {
            item
        };
        describe(
            &mut property,
            described.and_then(|d| d.properties.get(&field)),
        );
        properties.insert(field, property);
    }
    let mut schema = json!({"type": "object", "properties": properties});
    describe(&mut schema, described.and_then(|d| d.description.as_ref()));
    out.insert(name, schema);
}

/// Sets the `description` of the schema object `schema`, when there is one to set.
fn describe(schema: &mut Value, text: Option<&String>) {
    if let (Some(text), Some(obj)) = (text, schema.as_object_mut()) {
        obj.insert("description".into(), json!(text));
    }
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The schemas (with group-version-kind extensions) of `resources`.
fn schemas(resources: &[&Resource], flavor: Flavor) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for r in resources {
        let api_version = r.api_version();
        for kind in [r.kind.to_string(), format!("{}List", r.kind)] {
            let Some(message) = message_for(&api_version, &kind) else {
                continue;
            };
            collect(&message, flavor, &mut out);
            if let Some(schema) = out.get_mut(&def_name(&message)) {
                let gvk = json!({"group": r.group, "version": r.version, "kind": kind});
                match schema
                    .get_mut("x-kubernetes-group-version-kind")
                    .and_then(Value::as_array_mut)
                {
                    Some(list) if !list.contains(&gvk) => list.push(gvk),
                    Some(_) => {}
                    None => schema["x-kubernetes-group-version-kind"] = json!([gvk]),
                }
            }
        }
    }
    out
}

/// `/openapi/v3/<api/v1 | apis/group/version>` (path without query), or `None` when not served.
pub fn group_version(path: &str) -> Option<Value> {
    let rest = path.trim_start_matches('/').strip_prefix("openapi/v3/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (group, version) = match parts.as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let resources = registry::resources_in(group, version);
    if resources.is_empty() {
        return None;
    }
    let mut schemas: Map<String, Value> = schemas(&resources, Flavor::V3).into_iter().collect();
    let mut all_paths = Map::new();
    v3_paths::complete(&resources, &mut all_paths, &mut schemas, Flavor::V3);
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::GIT_VERSION},
        "paths": all_paths,
        "components": {"schemas": schemas},
    }))
}

/// `/openapi/v2`: every served kind, and every operation of every group version (the v3
/// operations, converted by [`v2_paths`]).
pub fn v2() -> Value {
    let resources: Vec<&Resource> = registry::RESOURCES.iter().collect();
    let mut definitions: Map<String, Value> = schemas(&resources, Flavor::V2).into_iter().collect();
    let mut all_paths = Map::new();
    for g in registry::groups() {
        for v in &g.versions {
            let in_version = registry::resources_in(g.name, v);
            let mut v3 = Map::new();
            v3_paths::complete(&in_version, &mut v3, &mut definitions, Flavor::V2);
            all_paths.extend(v2_paths::convert(v3));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::GIT_VERSION},
        "paths": all_paths,
        "definitions": definitions,
    })
}

/// A serialised document and its ETag.
struct Document {
    bytes: Vec<u8>,
    etag: String,
}

impl Document {
    fn new(value: &Value) -> Document {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut hasher);
        Document {
            etag: format!("{:016X}", hasher.finish()),
            bytes,
        }
    }
}

/// Every document, built on first use.
struct Documents {
    index: Document,
    group_versions: HashMap<String, Document>,
    v2: Document,
    /// The v2 document as gnostic protobuf (served with the JSON document's ETag).
    v2_proto: Vec<u8>,
}

static DOCUMENTS: LazyLock<Documents> = LazyLock::new(|| {
    let v2_doc = v2();
    let mut group_versions = HashMap::new();
    let mut index = Map::new();
    for g in registry::groups() {
        for v in &g.versions {
            let p = gv_path(g.name, v);
            let path = format!("/openapi/v3/{p}");
            if let Some(doc) = group_version(&path) {
                let doc = Document::new(&doc);
                index.insert(
                    p.clone(),
                    json!({"serverRelativeURL": format!("{path}?hash={}", doc.etag)}),
                );
                group_versions.insert(path, doc);
            }
        }
    }
    Documents {
        index: Document::new(&json!({ "paths": index })),
        group_versions,
        v2: Document::new(&v2_doc),
        v2_proto: v2_proto::document(&v2_doc),
    }
});

/// `/openapi/v3`: the index of group-version documents.
pub fn index() -> Value {
    serde_json::from_slice(&DOCUMENTS.index.bytes).unwrap_or(Value::Null)
}

/// The format of `/openapi/v2` an `Accept` header asks for.
#[derive(Debug, PartialEq)]
enum V2Format {
    Json,
    Protobuf,
}

/// Picks the `/openapi/v2` format from `Accept` as upstream: the clauses in order of
/// preference (`q`, then specificity), the first that names JSON or the protobuf type (or a
/// wildcard, which means JSON); `None` (406) when none does.
fn v2_format(headers: &HeaderMap) -> Option<V2Format> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or("*/*");
    let mut clauses: Vec<(f32, u8, &str, &str)> = Vec::new();
    for clause in accept.split(',') {
        let mut parts = clause.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let (kind, sub) = media.split_once('/').unwrap_or((media, "*"));
        let specificity = u8::from(kind != "*") + u8::from(sub != "*");
        if q > 0.0 {
            clauses.push((q, specificity, kind, sub));
        }
    }
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    clauses.iter().find_map(|(_, _, kind, sub)| {
        if *kind != "application" && *kind != "*" {
            return None;
        }
        if *sub == "json" || *sub == "*" {
            Some(V2Format::Json)
        } else if V2_PROTOBUF_SUBTYPES.contains(sub) {
            Some(V2Format::Protobuf)
        } else {
            None
        }
    })
}

/// Serves `/openapi/v2` (JSON or gnostic protobuf by `Accept`, 406 for anything else),
/// `/openapi/v3` and the group-version documents (404 otherwise).
pub fn response(path: &str, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    let path = path.trim_end_matches('/');
    let docs = &*DOCUMENTS;
    let mut content_type = "application/json";
    let mut body = None;
    let doc = match path {
        "/openapi/v2" => {
            match v2_format(headers) {
                Some(V2Format::Json) => {}
                Some(V2Format::Protobuf) => {
                    content_type = V2_PROTOBUF_CONTENT_TYPE;
                    body = Some(&docs.v2_proto);
                }
                None => return not_acceptable(),
            }
            &docs.v2
        }
        "/openapi/v3" => &docs.index,
        other => docs
            .group_versions
            .get(other)
            .ok_or_else(ApiError::path_not_found)?,
    };
    let etag = format!("\"{}\"", doc.etag);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::VARY, "Accept");
    let response = if matches {
        builder.status(StatusCode::NOT_MODIFIED).body(Body::empty())
    } else {
        builder
            .status(StatusCode::OK)
            .body(Body::from(body.unwrap_or(&doc.bytes).clone()))
    };
    response.map_err(ApiError::internal)
}

/// The bare 406 upstream's OpenAPI handler answers for an `Accept` it cannot serve (client-go
/// then falls back to the legacy swagger path).
fn not_acceptable() -> Result<Response<Body>, ApiError> {
    Response::builder()
        .status(StatusCode::NOT_ACCEPTABLE)
        .header(header::VARY, "Accept")
        .body(Body::empty())
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lists_group_versions_with_hashes() {
        let i = index();
        let url = i["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .expect("url");
        assert!(url.starts_with("/openapi/v3/api/v1?hash="), "{url}");
        assert!(i["paths"]["apis/apps/v1"].is_object());
    }

    #[test]
    fn group_version_documents_declare_field_validation_on_patch() {
        let doc = group_version("/openapi/v3/apis/apps/v1").expect("apps/v1");
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert_eq!(op["x-kubernetes-action"], "patch");
        let names: Vec<&str> = op["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"fieldValidation"), "{names:?}");
        assert!(group_version("/openapi/v3/apis/nope/v1").is_none());
    }

    #[test]
    fn schemas_carry_kinds_types_and_list_extensions() {
        let doc = group_version("/openapi/v3/api/v1").expect("v1");
        let schemas = &doc["components"]["schemas"];
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        assert_eq!(
            pod["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["type"], "array");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        let command = &schemas["io.k8s.api.core.v1.Container"]["properties"]["command"];
        assert_eq!(command["x-kubernetes-list-type"], "atomic");
        assert_eq!(command["items"]["type"], "string");
        let meta = &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"];
        assert_eq!(
            meta["properties"]["finalizers"]["x-kubernetes-list-type"],
            "set"
        );
        assert_eq!(
            meta["properties"]["labels"]["additionalProperties"]["type"],
            "string"
        );
        assert_eq!(
            schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["format"],
            "date-time"
        );
    }

    #[test]
    fn every_served_kind_and_its_fields_are_described() {
        for g in registry::groups() {
            for v in &g.versions {
                let path = format!("/openapi/v3/{}", gv_path(g.name, v));
                let doc = group_version(&path).expect("document");
                let schemas = doc["components"]["schemas"].as_object().expect("schemas");
                for r in registry::resources_in(g.name, v) {
                    for kind in [r.kind.to_string(), r.list_kind()] {
                        if message_for(&r.api_version(), &kind).is_none() {
                            continue; // no such kind upstream either (BindingList)
                        }
                        let gvk = json!({"group": r.group, "version": r.version, "kind": kind});
                        let (name, schema) = schemas
                            .iter()
                            .find(|(_, s)| {
                                s["x-kubernetes-group-version-kind"]
                                    .as_array()
                                    .is_some_and(|l| l.contains(&gvk))
                            })
                            .unwrap_or_else(|| panic!("no schema for {gvk}"));
                        assert!(schema["description"].is_string(), "{name}");
                        for (field, property) in
                            schema["properties"].as_object().expect("properties")
                        {
                            assert!(property["description"].is_string(), "{name}.{field}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn nested_fields_references_and_v2_keep_their_descriptions() {
        let doc = group_version("/openapi/v3/api/v1").expect("v1");
        let schemas = &doc["components"]["schemas"];
        let spec = &schemas["io.k8s.api.core.v1.Pod"]["properties"]["spec"];
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        assert!(spec["description"]
            .as_str()
            .is_some_and(|d| d.contains("desired behavior")));
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert!(containers["description"]
            .as_str()
            .is_some_and(|d| d.contains("containers")));
        assert!(
            schemas["io.k8s.api.core.v1.Container"]["properties"]["image"]["description"]
                .is_string()
        );
        assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["description"].is_string());
        assert!(
            schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["labels"]
                ["description"]
                .is_string()
        );
        let v2 = v2();
        let spec = &v2["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
        assert_eq!(
            spec["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(spec["description"].is_string());
    }

    #[test]
    fn v2_has_definitions_for_every_group() {
        let doc = v2();
        let defs = &doc["definitions"];
        assert!(defs["io.k8s.api.apps.v1.Deployment"].is_object());
        assert!(defs["io.k8s.api.batch.v1.Job"].is_object());
        assert_eq!(
            defs["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
    }

    #[test]
    fn v2_lists_every_verb_with_actions_and_kinds() {
        let doc = v2();
        let paths = &doc["paths"];
        let collection = &paths["/api/v1/namespaces/{namespace}/pods"];
        assert_eq!(collection["get"]["operationId"], "listCoreV1NamespacedPod");
        assert_eq!(collection["get"]["x-kubernetes-action"], "list");
        assert_eq!(collection["post"]["x-kubernetes-action"], "post");
        assert_eq!(
            collection["delete"]["x-kubernetes-action"],
            "deletecollection"
        );
        assert_eq!(
            collection["post"]["parameters"][0],
            json!({"name": "body", "in": "body", "required": true,
                "schema": {"$ref": "#/definitions/io.k8s.api.core.v1.Pod"}})
        );
        let object = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        for (verb, action) in [
            ("get", "get"),
            ("put", "put"),
            ("patch", "patch"),
            ("delete", "delete"),
        ] {
            assert_eq!(object[verb]["x-kubernetes-action"], action, "{verb}");
            assert_eq!(
                object[verb]["x-kubernetes-group-version-kind"],
                json!({"group": "apps", "version": "v1", "kind": "Deployment"}),
                "{verb}"
            );
        }
        let patch_params: Vec<&str> = object["patch"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(
            patch_params.contains(&"fieldValidation"),
            "{patch_params:?}"
        );
        assert_eq!(
            object["patch"]["consumes"],
            json!([
                "application/apply-patch+yaml",
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json"
            ])
        );
        assert_eq!(
            paths["/apis/apps/v1/watch/namespaces/{namespace}/deployments"]["get"]
                ["x-kubernetes-action"],
            "watchlist"
        );
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"]["x-kubernetes-action"],
            "connect"
        );
        assert_eq!(
            paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"]
                ["x-kubernetes-group-version-kind"]["kind"],
            "Scale"
        );
        // Every reference resolves to a definition.
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"").skip(1) {
            let target = piece.split('"').next().unwrap_or_default();
            let name = target
                .strip_prefix("#/definitions/")
                .expect("a v2 reference");
            assert!(doc["definitions"][name].is_object(), "{target}");
        }
        let containers =
            &doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    }

    #[test]
    fn v2_format_follows_accept_preferences() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, v.parse().expect("header"));
            v2_format(&h)
        };
        assert_eq!(v2_format(&HeaderMap::new()), Some(V2Format::Json));
        assert_eq!(accept("application/json"), Some(V2Format::Json));
        assert_eq!(accept("*/*"), Some(V2Format::Json));
        assert_eq!(
            accept("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
            Some(V2Format::Protobuf)
        );
        assert_eq!(
            accept(
                "application/json;q=0.9,application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
            ),
            Some(V2Format::Protobuf)
        );
        assert_eq!(
            accept("*/*;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0.1"),
            Some(V2Format::Json)
        );
        assert_eq!(accept("text/html"), None);
        assert_eq!(accept("application/json;q=0"), None);
    }

    #[test]
    fn responses_carry_an_etag_and_answer_304() {
        let ok = response("/openapi/v2", &HeaderMap::new()).expect("v2");
        assert_eq!(ok.status(), StatusCode::OK);
        let etag = ok.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);
        let cached = response("/openapi/v2", &headers).expect("cached");
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert!(response("/openapi/v3/apis/nope/v1", &HeaderMap::new()).is_err());
    }
}
