//! A minimal OpenAPI v3 surface: just enough for kubectl's field-validation check.
//!
//! `kubectl create/apply -f` ask `/openapi/v3` whether the server supports the
//! `fieldValidation` query parameter (by looking for it on the PATCH operation of the object's
//! group-version-kind). We list every group version and, per resource, a PATCH operation that
//! carries `x-kubernetes-group-version-kind` and the `fieldValidation` parameter, so kubectl
//! leaves validation to the server instead of downloading schemas. The operations carry no
//! request body, so `kubectl apply` builds strategic merge patches from its compiled-in types
//! rather than from OpenAPI. `/openapi/v2` stays 404 (`kubectl explain` is not supported).

use api_types::registry::{self, Resource};
use serde_json::{json, Map, Value};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the index of group-version documents.
pub fn index() -> Value {
    let mut paths = Map::new();
    for g in registry::groups() {
        for v in &g.versions {
            let p = gv_path(g.name, v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}")}),
            );
        }
    }
    json!({"paths": paths})
}

fn object_path(r: &Resource) -> String {
    let base = format!("/{}", gv_path(r.group, r.version));
    if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
    } else {
        format!("{base}/{}/{{name}}", r.plural)
    }
}

/// `/openapi/v3/<api/v1 | apis/group/version>`, or `None` when not served.
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
    let mut paths = Map::new();
    for r in resources {
        if !r.supports("patch") {
            continue;
        }
        paths.insert(
            object_path(r),
            json!({
                "patch": {
                    "operationId": format!("patch{}", r.kind),
                    "x-kubernetes-group-version-kind": {
                        "group": r.group, "version": r.version, "kind": r.kind,
                    },
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "OK"}},
                }
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lists_group_versions() {
        let i = index();
        assert_eq!(
            i["paths"]["api/v1"]["serverRelativeURL"],
            "/openapi/v3/api/v1"
        );
        assert!(i["paths"]["apis/apps/v1"].is_object());
    }

    #[test]
    fn group_version_documents_declare_field_validation_on_patch() {
        let doc = group_version("/openapi/v3/apis/apps/v1").expect("apps/v1");
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert_eq!(op["parameters"][0]["name"], "fieldValidation");
        assert!(group_version("/openapi/v3/apis/nope/v1").is_none());
    }
}
