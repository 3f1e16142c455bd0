//! The full path items of an OpenAPI v3 group-version document, shaped as upstream's: for each
//! resource the collection (list, create, deletecollection), the object (read, replace, delete,
//! patch), the all-namespaces list, the deprecated `watch/` paths and each subresource, every
//! operation with upstream's `operationId` (`listAppsV1NamespacedDeployment`), tag,
//! `x-kubernetes-action`, `x-kubernetes-group-version-kind`, query parameters, request bodies
//! and responses referring to the document's schemas (the ones they need, `Status`,
//! `DeleteOptions`, `Scale`, `WatchEvent`, `Patch`, are added to it).

use std::collections::BTreeMap;

use api_types::registry::{Resource, Subresource};
use serde_json::{json, Map, Value};

use super::{collect, def_name, Flavor};
use crate::protobuf::message_for;

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// `rbac.authorization.k8s.io` -> `RbacAuthorization`, `""` -> `Core`.
fn group_word(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    let trimmed = group.strip_suffix(".k8s.io").unwrap_or(group);
    trimmed.split('.').map(capitalised).collect()
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `apps_v1`, `core_v1`, `rbacAuthorization_v1`.
fn tag(r: &Resource) -> String {
    let word = group_word(r.group);
    let mut chars = word.chars();
    let lowered: String = match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("{lowered}_{}", r.version)
}

fn query(name: &str, kind: &str) -> Value {
    json!({"name": name, "in": "query", "uniqueItems": true, "schema": {"type": kind}})
}

fn list_parameters(watch_param: bool) -> Vec<Value> {
    let mut params = vec![
        query("allowWatchBookmarks", "boolean"),
        query("continue", "string"),
        query("fieldSelector", "string"),
        query("labelSelector", "string"),
        query("limit", "integer"),
        query("resourceVersion", "string"),
        query("resourceVersionMatch", "string"),
        query("sendInitialEvents", "boolean"),
        query("timeoutSeconds", "integer"),
    ];
    if watch_param {
        params.push(query("watch", "boolean"));
    }
    params
}

fn write_parameters(patch: bool) -> Vec<Value> {
    let mut params = vec![
        query("dryRun", "string"),
        query("fieldManager", "string"),
        query("fieldValidation", "string"),
    ];
    if patch {
        params.push(query("force", "boolean"));
    }
    params
}

fn delete_parameters() -> Vec<Value> {
    vec![
        query("dryRun", "string"),
        query("gracePeriodSeconds", "integer"),
        query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "boolean",
        ),
        query("orphanDependents", "boolean"),
        query("propagationPolicy", "string"),
    ]
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A response body of `schema` (or a plain string) in the served media types.
fn content(schema: Option<&str>, stream: bool) -> Value {
    let body = schema.map(schema_ref).unwrap_or(json!({"type": "string"}));
    let mut types = vec!["application/json", "application/yaml"];
    if schema.is_some() {
        types.push("application/vnd.kubernetes.protobuf");
    }
    if stream {
        types = vec![
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
            "application/json;stream=watch",
            "application/vnd.kubernetes.protobuf;stream=watch",
        ];
    }
    let mut m = Map::new();
    for t in types {
        m.insert(t.into(), json!({"schema": body}));
    }
    Value::Object(m)
}

fn responses(codes: &[&str], schema: Option<&str>, stream: bool) -> Value {
    let mut m = Map::new();
    for code in codes {
        m.insert(
            (*code).into(),
            json!({"description": description(code), "content": content(schema, stream)}),
        );
    }
    m.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(m)
}

fn description(code: &str) -> &'static str {
    match code {
        "201" => "Created",
        "202" => "Accepted",
        _ => "OK",
    }
}

fn request_body(schema: &str) -> Value {
    json!({"content": {"*/*": {"schema": schema_ref(schema)}}, "required": true})
}

fn patch_body() -> Value {
    let patch = schema_ref(&def_name(&format!("{META}.Patch")));
    let mut m = Map::new();
    for t in [
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ] {
        m.insert(t.into(), json!({"schema": patch}));
    }
    json!({"content": m, "required": true})
}

/// One operation.
struct Op<'a> {
    verb: &'a str,
    id: String,
    action: &'a str,
    gvk: &'a Value,
    tag: &'a str,
    parameters: Vec<Value>,
    body: Option<Value>,
    responses: Value,
}

impl Op<'_> {
    fn json(self) -> (String, Value) {
        let mut m = Map::new();
        m.insert("operationId".into(), json!(self.id));
        m.insert("tags".into(), json!([self.tag]));
        if !self.parameters.is_empty() {
            m.insert("parameters".into(), Value::Array(self.parameters));
        }
        if let Some(body) = self.body {
            m.insert("requestBody".into(), body);
        }
        m.insert("responses".into(), self.responses);
        m.insert("x-kubernetes-action".into(), json!(self.action));
        m.insert("x-kubernetes-group-version-kind".into(), self.gvk.clone());
        (self.verb.to_string(), Value::Object(m))
    }
}

fn path_params(namespaced: bool, named: bool) -> Vec<Value> {
    let mut params = Vec::new();
    if named {
        params.push(json!({"name": "name", "in": "path", "required": true,
            "uniqueItems": true, "schema": {"type": "string"}}));
    }
    if namespaced {
        params.push(json!({"name": "namespace", "in": "path", "required": true,
            "uniqueItems": true, "schema": {"type": "string"}}));
    }
    params.push(query("pretty", "string"));
    params
}

/// Merges `ops` into the path item at `path` (keeping operations already there).
fn add(paths: &mut Map<String, Value>, path: String, parameters: Vec<Value>, ops: Vec<Op<'_>>) {
    if ops.is_empty() {
        return;
    }
    let item = paths.entry(path).or_insert_with(|| json!({}));
    let Some(item) = item.as_object_mut() else {
        return;
    };
    item.insert("parameters".into(), Value::Array(parameters));
    for op in ops {
        let (verb, value) = op.json();
        item.entry(verb).or_insert(value);
    }
}

/// Whether a subresource is a streaming connection (`exec`, `attach`, `portforward`, `proxy`).
fn connects(sub: &Subresource) -> bool {
    matches!(sub.name, "exec" | "attach" | "portforward" | "proxy")
}

/// Adds the path items of `resources` to `paths`, and the schemas they refer to to `schemas`
/// (written for `flavor`: the v2 document converts these path items, see `super::v2_paths`).
pub(super) fn complete(
    resources: &[&Resource],
    paths: &mut Map<String, Value>,
    schemas: &mut Map<String, Value>,
    flavor: Flavor,
) {
    let mut extra = BTreeMap::new();
    for message in ["Status", "DeleteOptions"] {
        collect(&format!("{META}.{message}"), flavor, &mut extra);
    }
    extra.insert(
        def_name(&format!("{META}.Patch")),
        json!({"type": "object", "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}),
    );
    extra.insert(
        def_name(&format!("{META}.WatchEvent")),
        json!({"type": "object", "required": ["type", "object"], "properties": {
            "type": {"type": "string"},
            "object": {"type": "object", "description": "The object (or a Status for ERROR)."}}}),
    );
    let status = def_name(&format!("{META}.Status"));
    let delete_options = def_name(&format!("{META}.DeleteOptions"));
    let watch_event = def_name(&format!("{META}.WatchEvent"));

    for r in resources {
        let api_version = r.api_version();
        let Some(message) = message_for(&api_version, r.kind) else {
            continue;
        };
        let kind_schema = def_name(&message);
        let list_schema = message_for(&api_version, &r.list_kind()).map(|m| def_name(&m));
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let tag = tag(r);
        let base = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let scope = if r.namespaced { "Namespaced" } else { "" };
        let word = format!("{}{}", group_word(r.group), capitalised(r.version));
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let object = format!("{collection}/{{name}}");
        let op = |verb, prefix: &str, action, parameters, body, responses| Op {
            verb,
            id: format!("{prefix}{word}{scope}{}", r.kind),
            action,
            gvk: &gvk,
            tag: &tag,
            parameters,
            body,
            responses,
        };

        let mut ops = Vec::new();
        if r.supports("list") {
            ops.push(op(
                "get",
                "list",
                "list",
                list_parameters(true),
                None,
                responses(&["200"], list_schema.as_deref(), true),
            ));
        }
        if r.supports("create") {
            ops.push(op(
                "post",
                "create",
                "post",
                write_parameters(false),
                Some(request_body(&kind_schema)),
                responses(&["200", "201", "202"], Some(&kind_schema), false),
            ));
        }
        if r.supports("deletecollection") {
            let mut params = list_parameters(false);
            params.extend(delete_parameters());
            let mut o = op(
                "delete",
                "delete",
                "deletecollection",
                params,
                Some(request_body(&delete_options)),
                responses(&["200"], Some(&status), false),
            );
            o.id = format!("delete{word}Collection{scope}{}", r.kind);
            ops.push(o);
        }
        add(
            paths,
            collection.clone(),
            path_params(r.namespaced, false),
            ops,
        );

        let mut ops = Vec::new();
        if r.supports("get") {
            ops.push(op(
                "get",
                "read",
                "get",
                vec![],
                None,
                responses(&["200"], Some(&kind_schema), false),
            ));
        }
        if r.supports("update") {
            ops.push(op(
                "put",
                "replace",
                "put",
                write_parameters(false),
                Some(request_body(&kind_schema)),
                responses(&["200", "201"], Some(&kind_schema), false),
            ));
        }
        if r.supports("delete") {
            ops.push(op(
                "delete",
                "delete",
                "delete",
                delete_parameters(),
                Some(request_body(&delete_options)),
                responses(&["200", "202"], Some(&status), false),
            ));
        }
        if r.supports("patch") {
            ops.push(op(
                "patch",
                "patch",
                "patch",
                write_parameters(true),
                Some(patch_body()),
                responses(&["200", "201"], Some(&kind_schema), false),
            ));
        }
        add(paths, object.clone(), path_params(r.namespaced, true), ops);

        if r.supports("watch") {
            let watch_base = format!("{base}/watch");
            let watch_collection = collection.replacen(&base, &watch_base, 1);
            for (path, named, prefix, action) in [
                (watch_collection.clone(), false, "watch", "watchlist"),
                (
                    format!("{watch_collection}/{{name}}"),
                    true,
                    "watch",
                    "watch",
                ),
            ] {
                let mut o = op(
                    "get",
                    prefix,
                    action,
                    list_parameters(true),
                    None,
                    responses(&["200"], Some(&watch_event), true),
                );
                if !named {
                    o.id = format!("watch{word}{scope}{}List", r.kind);
                }
                add(paths, path, path_params(r.namespaced, named), vec![o]);
            }
        }
        if r.namespaced && r.supports("list") {
            let all = format!("{base}/{}", r.plural);
            let mut o = op(
                "get",
                "list",
                "list",
                list_parameters(true),
                None,
                responses(&["200"], list_schema.as_deref(), true),
            );
            o.id = format!("list{word}{}ForAllNamespaces", r.kind);
            add(paths, all, vec![query("pretty", "string")], vec![o]);
        }

        for sub in r.subresources {
            let sub_schema = message_for(&format_api_version(sub), sub.kind).map(|m| {
                collect(&m, flavor, &mut extra);
                def_name(&m)
            });
            let sub_gvk = json!({"group": sub.group, "version": sub.version, "kind": sub.kind});
            let suffix = capitalised(sub.name);
            let path = format!("{object}/{}", sub.name);
            let mut ops = Vec::new();
            let sub_op = |verb, prefix: &str, action, parameters, body, responses| Op {
                verb,
                id: format!("{prefix}{word}{scope}{}{suffix}", r.kind),
                action,
                gvk: &sub_gvk,
                tag: &tag,
                parameters,
                body,
                responses,
            };
            if connects(sub) {
                for (verb, v) in [("get", "get"), ("post", "create")] {
                    if sub.verbs.contains(&v) {
                        ops.push(sub_op(
                            verb,
                            &format!("connect{}", capitalised(verb)),
                            "connect",
                            vec![],
                            None,
                            responses(&["200"], None, false),
                        ));
                    }
                }
                add(paths, path, path_params(r.namespaced, true), ops);
                continue;
            }
            let body_schema = sub_schema.as_deref();
            if sub.verbs.contains(&"get") {
                ops.push(sub_op(
                    "get",
                    "read",
                    "get",
                    vec![],
                    None,
                    responses(
                        &["200"],
                        if sub.name == "log" { None } else { body_schema },
                        false,
                    ),
                ));
            }
            if sub.verbs.contains(&"update") {
                ops.push(sub_op(
                    "put",
                    "replace",
                    "put",
                    write_parameters(false),
                    body_schema.map(request_body),
                    responses(&["200", "201"], body_schema, false),
                ));
            }
            if sub.verbs.contains(&"patch") {
                ops.push(sub_op(
                    "patch",
                    "patch",
                    "patch",
                    write_parameters(true),
                    Some(patch_body()),
                    responses(&["200", "201"], body_schema, false),
                ));
            }
            if sub.verbs.contains(&"create") {
                ops.push(sub_op(
                    "post",
                    "create",
                    "post",
                    write_parameters(false),
                    body_schema.map(request_body),
                    responses(&["200", "201", "202"], body_schema, false),
                ));
            }
            add(paths, path, path_params(r.namespaced, true), ops);
        }
    }
    for (name, schema) in extra {
        schemas.entry(name).or_insert(schema);
    }
}

fn format_api_version(sub: &Subresource) -> String {
    if sub.group.is_empty() {
        sub.version.to_string()
    } else {
        format!("{}/{}", sub.group, sub.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_upstream() {
        assert_eq!(group_word(""), "Core");
        assert_eq!(group_word("apps"), "Apps");
        assert_eq!(group_word("rbac.authorization.k8s.io"), "RbacAuthorization");
        assert_eq!(group_word("events.k8s.io"), "Events");
        let doc = super::super::group_version("/openapi/v3/apis/apps/v1").expect("apps/v1");
        let paths = &doc["paths"];
        let list = &paths["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"];
        assert_eq!(list["operationId"], "listAppsV1NamespacedDeployment");
        assert_eq!(list["tags"], json!(["apps_v1"]));
        assert_eq!(list["x-kubernetes-action"], "list");
        let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(
            scale["put"]["operationId"],
            "replaceAppsV1NamespacedDeploymentScale"
        );
        assert_eq!(
            scale["get"]["x-kubernetes-group-version-kind"]["kind"],
            "Scale"
        );
        assert_eq!(
            paths["/apis/apps/v1/deployments"]["get"]["operationId"],
            "listAppsV1DeploymentForAllNamespaces"
        );
        let object = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert_eq!(
            object["delete"]["operationId"],
            "deleteAppsV1NamespacedDeployment"
        );
        // The PATCH operation keeps declaring fieldValidation.
        let names: Vec<&str> = object["patch"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"fieldValidation"), "{names:?}");
        assert!(doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
    }
}
