//! One module per kubectl command, plus what they share: parsing `TYPE NAME` / `TYPE/NAME`
//! arguments and talking to the apiserver about dynamically discovered resources.

pub mod api_resources;
pub mod apply;
pub mod attach;
pub mod auth;
pub mod autoscale;
pub mod cluster_info;
pub mod completion;
pub mod config;
pub mod config_set;
pub mod cp;
pub mod create;
pub mod delete;
pub mod describe;
pub mod diff;
pub mod drain;
pub mod edit;
pub mod events;
pub mod exec;
pub mod expose;
pub mod generators;
pub mod get;
pub mod label;
pub mod logs;
pub mod node;
pub mod patch;
pub mod pod_template;
pub mod port_forward;
pub mod replace;
pub mod rollout;
pub mod run;
pub mod scale;
pub mod set_env;
pub mod set_env_resolve;
pub mod set_image;
pub mod set_resources;
pub mod top;
pub mod version;
pub mod wait;

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::Request;
use kube::{Client, Resource};
use serde_json::Value;

use crate::discovery::{Catalog, ResourceInfo};
use crate::error::{Error, Result};

/// What `kubectl get` sends to receive server-side tables (falling back to plain JSON).
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

/// A resource type with the names asked for (empty = all matching a selector).
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The type as typed.
    pub type_name: String,
    /// Object names.
    pub names: Vec<String>,
}

/// Parses `TYPE[,TYPE] [NAME...]` or `TYPE/NAME...` into targets, as upstream's resource builder does.
pub fn parse_targets(args: &[String]) -> Result<Vec<Target>> {
    let Some(first) = args.first() else {
        return Ok(Vec::new());
    };
    if first.contains('/') {
        let mut out: Vec<Target> = Vec::new();
        for arg in args {
            let (type_name, name) = arg.split_once('/').ok_or_else(|| {
                Error::Usage(
                    "arguments in resource/name form must have a single resource and name".into(),
                )
            })?;
            if type_name.is_empty() || name.is_empty() {
                return Err(Error::Usage(
                    "arguments in resource/name form must have a single resource and name".into(),
                ));
            }
            match out.iter_mut().find(|t| t.type_name == type_name) {
                Some(t) => t.names.push(name.to_string()),
                None => out.push(Target {
                    type_name: type_name.to_string(),
                    names: vec![name.to_string()],
                }),
            }
        }
        return Ok(out);
    }
    let names: Vec<String> = args[1..].to_vec();
    if names.iter().any(|n| n.contains('/')) {
        return Err(Error::Usage(
            "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'kubectl get resource/<resource_name>' instead of 'kubectl get resource resource/<resource_name>'".into(),
        ));
    }
    let types: Vec<&str> = first.split(',').filter(|t| !t.is_empty()).collect();
    Ok(types
        .into_iter()
        .map(|t| Target {
            type_name: t.to_string(),
            names: names.clone(),
        })
        .collect())
}

/// Resolves target types against the catalog (expanding the `all` category).
pub fn resolve_targets(
    catalog: &Catalog,
    targets: &[Target],
) -> Result<Vec<(ResourceInfo, Vec<String>)>> {
    let mut out = Vec::new();
    for target in targets {
        if target.type_name == "all" {
            let mut members: Vec<&ResourceInfo> = catalog
                .all()
                .iter()
                .filter(|r| r.categories.iter().any(|c| c == "all"))
                .collect();
            if members.is_empty() {
                members = [
                    "pods",
                    "services",
                    "daemonsets",
                    "deployments",
                    "replicasets",
                    "statefulsets",
                    "jobs",
                    "cronjobs",
                ]
                .iter()
                .filter_map(|t| catalog.resolve(t).ok())
                .collect();
            }
            out.extend(
                members
                    .into_iter()
                    .map(|r| (r.clone(), target.names.clone())),
            );
            continue;
        }
        out.push((
            catalog.resolve(&target.type_name)?.clone(),
            target.names.clone(),
        ));
    }
    Ok(out)
}

/// The namespace to use for a resource: `None` for cluster-scoped ones or all namespaces.
pub fn scope(info: &ResourceInfo, namespace: Option<&str>) -> Option<String> {
    if info.namespaced {
        namespace.map(str::to_string)
    } else {
        None
    }
}

/// A dynamic API handle for a resource in a namespace (or cluster-wide / all namespaces).
pub fn dynamic_api(
    client: Client,
    info: &ResourceInfo,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let ar = info.api_resource();
    match (info.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client, ns, &ar),
        _ => Api::all_with(client, &ar),
    }
}

/// The collection URL of a resource.
pub fn collection_url(info: &ResourceInfo, namespace: Option<&str>) -> String {
    let ns = if info.namespaced { namespace } else { None };
    DynamicObject::url_path(&info.api_resource(), ns)
}

/// Fetches one object as JSON, with `apiVersion` and `kind` set.
pub async fn get_object(
    client: &Client,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value> {
    let api = dynamic_api(client.clone(), info, namespace);
    let object = api.get(name).await?;
    Ok(to_value(object, info))
}

/// Lists objects as JSON, each with `apiVersion` and `kind` set.
pub async fn list_objects(
    client: &Client,
    info: &ResourceInfo,
    namespace: Option<&str>,
    params: &ListParams,
) -> Result<Vec<Value>> {
    let api = dynamic_api(client.clone(), info, namespace);
    let list = api.list(params).await?;
    Ok(list.items.into_iter().map(|o| to_value(o, info)).collect())
}

/// Converts a dynamic object to JSON with its type filled in (list items come without one).
pub fn to_value(object: DynamicObject, info: &ResourceInfo) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(info.api_version()));
        map.insert("kind".into(), Value::String(info.kind.clone()));
    }
    value
}

/// Sends a raw request with an `Accept` header and returns the JSON body.
pub async fn request_json(
    client: &Client,
    mut request: http::Request<Vec<u8>>,
    accept: &str,
) -> Result<Value> {
    if let Ok(value) = http::HeaderValue::from_str(accept) {
        request.headers_mut().insert(http::header::ACCEPT, value);
    }
    Ok(client.request::<Value>(request).await?)
}

/// Builds the list parameters from `-l` / `--field-selector`.
pub fn list_params(selector: Option<&str>, field_selector: Option<&str>) -> ListParams {
    let mut params = ListParams::default();
    if let Some(s) = selector {
        params = params.labels(s);
    }
    if let Some(f) = field_selector {
        params = params.fields(f);
    }
    params
}

/// A `Request` builder for a collection URL.
pub fn request_for(info: &ResourceInfo, namespace: Option<&str>) -> Request {
    Request::new(collection_url(info, namespace))
}

/// Maps a request-building failure into our error.
pub fn build_error(err: kube::core::request::Error) -> Error {
    Error::Usage(format!("building request: {err}"))
}

/// Object name of a JSON object.
pub fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn target(type_name: &str, names: &[&str]) -> Target {
        Target {
            type_name: type_name.into(),
            names: args(names),
        }
    }

    #[test]
    fn type_and_name_arguments_parse() {
        let cases = [
            (args(&["pods"]), Some(vec![target("pods", &[])])),
            (
                args(&["pods", "a", "b"]),
                Some(vec![target("pods", &["a", "b"])]),
            ),
            (
                args(&["pods,svc"]),
                Some(vec![target("pods", &[]), target("svc", &[])]),
            ),
            (
                args(&["pod/a", "svc/b", "pod/c"]),
                Some(vec![target("pod", &["a", "c"]), target("svc", &["b"])]),
            ),
            (args(&["pods", "svc/b"]), None),
            (args(&["pod/"]), None),
            (args(&[]), Some(vec![])),
        ];
        for (input, want) in cases {
            assert_eq!(parse_targets(&input).ok(), want, "{input:?}");
        }
    }

    #[test]
    fn the_all_category_expands() -> anyhow::Result<()> {
        let catalog = crate::discovery::fixtures::catalog();
        let resolved = resolve_targets(&catalog, &[target("all", &[])])?;
        let plurals: Vec<String> = resolved.into_iter().map(|(r, _)| r.plural).collect();
        assert_eq!(
            plurals,
            vec!["pods", "services", "deployments", "replicasets"]
        );
        Ok(())
    }
}
