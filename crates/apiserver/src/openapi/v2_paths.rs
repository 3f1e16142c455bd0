//! The path items of the OpenAPI v2 (swagger 2.0) document, shaped as upstream's: every
//! operation of every resource (list, watch, create, read, replace, patch, delete,
//! deletecollection, the subresources and the connect operations) with its `operationId`, tag,
//! `consumes`/`produces`, inline parameters (the body as an `in: body` parameter) and
//! responses, `x-kubernetes-action` and `x-kubernetes-group-version-kind`.
//!
//! The operations are the ones [`super::v3_paths`] builds for the v3 documents, converted:
//! a v3 parameter's `schema.type` becomes the parameter's `type`, the `requestBody` becomes the
//! `body` parameter and `consumes`, each response's `content` becomes its `schema` and the
//! operation's `produces`, and references point at `#/definitions/`. Parameters stay inline
//! (upstream shares some through `#/parameters/`): kubectl looks for `fieldValidation` among
//! a PATCH operation's own query parameters.

use serde_json::{json, Map, Value};

const V3_PREFIX: &str = "#/components/schemas/";
const V2_PREFIX: &str = "#/definitions/";

/// Converts v3 path items (as [`super::v3_paths::complete`] writes them) to v2 path items.
pub(super) fn convert(v3: Map<String, Value>) -> Map<String, Value> {
    v3.into_iter()
        .map(|(path, item)| {
            let mut item = path_item(&item);
            rewrite_refs(&mut item);
            (path, item)
        })
        .collect()
}

fn path_item(item: &Value) -> Value {
    let mut out = Map::new();
    let Some(obj) = item.as_object() else {
        return Value::Object(out);
    };
    for (key, value) in obj {
        let converted = match key.as_str() {
            "parameters" => Value::Array(
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(parameter)
                    .collect(),
            ),
            "get" | "put" | "post" | "delete" | "patch" | "head" | "options" => operation(value),
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    Value::Object(out)
}

/// A non-body parameter: the type of its schema moves up (`{"name", "in", "type", ...}`).
fn parameter(p: &Value) -> Value {
    let Some(obj) = p.as_object() else {
        return p.clone();
    };
    let mut out = Map::new();
    for (key, value) in obj {
        if key == "schema" {
            for (k, v) in value.as_object().into_iter().flatten() {
                out.insert(k.clone(), v.clone());
            }
        } else {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

/// The media types a v3 `content` map offers, and the schema of the first.
fn media(content: Option<&Value>) -> (Vec<Value>, Option<Value>) {
    let Some(content) = content.and_then(Value::as_object) else {
        return (Vec::new(), None);
    };
    let types = content.keys().map(|k| json!(k)).collect();
    let schema = content.values().find_map(|m| m.get("schema")).cloned();
    (types, schema)
}

fn operation(op: &Value) -> Value {
    let Some(obj) = op.as_object() else {
        return op.clone();
    };
    let mut out = Map::new();
    let (consumes, body) = media(obj.get("requestBody").and_then(|b| b.get("content")));
    let responses = obj
        .get("responses")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let produces = responses
        .values()
        .map(|r| media(r.get("content")).0)
        .find(|types| !types.is_empty())
        .unwrap_or_default();
    let or_any = |types: Vec<Value>| {
        if types.is_empty() {
            vec![json!("*/*")]
        } else {
            types
        }
    };
    out.insert("consumes".into(), Value::Array(or_any(consumes)));
    out.insert("produces".into(), Value::Array(or_any(produces)));
    out.insert("schemes".into(), json!(["https"]));
    if let Some(tags) = obj.get("tags") {
        out.insert("tags".into(), tags.clone());
    }
    if let Some(id) = obj.get("operationId") {
        out.insert("operationId".into(), id.clone());
    }
    let mut parameters = Vec::new();
    if let Some(schema) = body {
        parameters.push(json!({"name": "body", "in": "body", "required": true, "schema": schema}));
    }
    parameters.extend(
        obj.get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(parameter),
    );
    if !parameters.is_empty() {
        out.insert("parameters".into(), Value::Array(parameters));
    }
    let mut converted = Map::new();
    for (code, response) in responses {
        let mut r = Map::new();
        if let Some(d) = response.get("description") {
            r.insert("description".into(), d.clone());
        }
        if let (_, Some(schema)) = media(response.get("content")) {
            r.insert("schema".into(), schema);
        }
        converted.insert(code, Value::Object(r));
    }
    out.insert("responses".into(), Value::Object(converted));
    for (key, value) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        out.insert(key.clone(), value.clone());
    }
    Value::Object(out)
}

/// Points every `$ref` at the v2 definitions.
fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (key, value) in m.iter_mut() {
                match value {
                    Value::String(s) if key == "$ref" => {
                        if let Some(rest) = s.strip_prefix(V3_PREFIX) {
                            *s = format!("{V2_PREFIX}{rest}");
                        }
                    }
                    other => rewrite_refs(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_operations_become_swagger_operations() {
        let v3 = json!({
            "/apis/x/v1/namespaces/{namespace}/ws/{name}": {
                "parameters": [
                    {"name": "name", "in": "path", "required": true, "uniqueItems": true,
                     "schema": {"type": "string"}},
                ],
                "patch": {
                    "operationId": "patchXV1NamespacedW",
                    "tags": ["x_v1"],
                    "parameters": [{"name": "force", "in": "query", "uniqueItems": true,
                                    "schema": {"type": "boolean"}}],
                    "requestBody": {"content": {
                        "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/P"}},
                    }, "required": true},
                    "responses": {
                        "200": {"description": "OK", "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/W"}},
                            "application/yaml": {"schema": {"$ref": "#/components/schemas/W"}},
                        }},
                        "401": {"description": "Unauthorized"},
                    },
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": "x", "version": "v1", "kind": "W"},
                },
            },
        });
        let v2 = convert(v3.as_object().cloned().unwrap_or_default());
        let item = &v2["/apis/x/v1/namespaces/{namespace}/ws/{name}"];
        assert_eq!(
            item["parameters"][0],
            json!({"name": "name", "in": "path", "required": true, "uniqueItems": true,
                "type": "string"})
        );
        let patch = &item["patch"];
        assert_eq!(patch["consumes"], json!(["application/merge-patch+json"]));
        assert_eq!(
            patch["produces"],
            json!(["application/json", "application/yaml"])
        );
        assert_eq!(patch["schemes"], json!(["https"]));
        assert_eq!(
            patch["parameters"][0],
            json!({"name": "body", "in": "body", "required": true,
                "schema": {"$ref": "#/definitions/P"}})
        );
        assert_eq!(
            patch["parameters"][1],
            json!({"name": "force", "in": "query", "uniqueItems": true, "type": "boolean"})
        );
        assert_eq!(
            patch["responses"]["200"],
            json!({"description": "OK", "schema": {"$ref": "#/definitions/W"}})
        );
        assert_eq!(
            patch["responses"]["401"],
            json!({"description": "Unauthorized"})
        );
        assert_eq!(patch["x-kubernetes-action"], "patch");
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "W");
        assert!(patch.get("requestBody").is_none());
    }
}
