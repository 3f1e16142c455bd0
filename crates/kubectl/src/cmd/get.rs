//! `kubectl get`: server-side tables by default, whole objects for `-o yaml|json|name|jsonpath|
//! custom-columns`, and `-w` to keep printing rows as the objects change.

use futures::StreamExt;
use kube::api::{GetParams, WatchEvent, WatchParams};
use kube::Client;
use serde_json::Value;

use super::{
    build_error, collection_url, get_object, list_objects, list_params, parse_targets, request_for,
    request_json, resolve_targets, scope, TABLE_ACCEPT,
};
use crate::cli::GetArgs;
use crate::discovery::ResourceInfo;
use crate::error::{Error, Result};
use crate::manifest::read_manifests;
use crate::printers::jsonpath::{value_text, Template};
use crate::printers::object::print_objects;
use crate::printers::table::{Table, TableOptions};
use crate::printers::tabwriter::{align, align_remembering};
use crate::printers::OutputFormat;
use crate::session::Session;

/// Runs `kubectl get`.
pub async fn run(s: &mut Session, args: GetArgs) -> Result<()> {
    let format = OutputFormat::parse(args.output.as_deref())?;
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = if args.all_namespaces {
        None
    } else {
        Some(s.namespace().await?)
    };
    let mut requests: Vec<(ResourceInfo, Vec<String>, Option<String>)> = Vec::new();
    if !args.filenames.is_empty() {
        for manifest in read_manifests(&args.filenames)? {
            let object = &manifest.object;
            let info = catalog.by_kind(
                object["apiVersion"].as_str().unwrap_or(""),
                object["kind"].as_str().unwrap_or(""),
            )?;
            let ns = object["metadata"]["namespace"]
                .as_str()
                .map(str::to_string)
                .or_else(|| namespace.clone());
            requests.push((info, vec![super::name_of(object).to_string()], ns));
        }
    } else {
        let targets = parse_targets(&args.args)?;
        if targets.is_empty() {
            s.eprint("You must specify the type of resource to get. Use \"kubectl api-resources\" for a complete list of supported resources.\n\n")?;
            return Err(Error::Usage(
                "Required resource not specified.\nUse \"kubectl explain <resource>\" for a detailed description of that resource (e.g. kubectl explain pods).\nSee 'kubectl get -h' for help and examples".into(),
            ));
        }
        for (info, names) in resolve_targets(&catalog, &targets)? {
            requests.push((info, names, namespace.clone()));
        }
    }
    let single = requests.len() == 1 && requests[0].1.len() == 1;
    let several_kinds = {
        let mut kinds: Vec<String> = requests.iter().map(|r| r.0.group_kind()).collect();
        kinds.dedup();
        kinds.len() > 1
    };
    if args.watch || args.watch_only {
        if requests.len() != 1 {
            return Err(Error::Usage(
                "you may only specify a single resource type".into(),
            ));
        }
        let (info, names, ns) = &requests[0];
        return watch(s, &client, &format, info, names, ns.as_deref(), &args).await;
    }

    let mut errors = Vec::new();
    if format.needs_objects() {
        let mut objects = Vec::new();
        for (info, names, ns) in &requests {
            let ns = scope(info, ns.as_deref());
            if names.is_empty() {
                let params = list_params(args.selector.as_deref(), args.field_selector.as_deref());
                objects.extend(list_objects(&client, info, ns.as_deref(), &params).await?);
            }
            for name in names {
                match get_object(&client, info, ns.as_deref(), name).await {
                    Ok(o) => objects.push(o),
                    Err(e) if e.is_not_found() && args.ignore_not_found => {}
                    Err(e) => errors.push(e),
                }
            }
        }
        if let Some(path) = &args.sort_by {
            sort_by_path(&mut objects, path, |o| o)?;
        }
        if !(objects.is_empty() && single) {
            let text = print_objects(&format, objects, single, args.no_headers)?;
            s.print(&text)?;
        }
    } else {
        let mut printed_any = false;
        let mut listed = false;
        for (info, names, ns) in &requests {
            let ns = scope(info, ns.as_deref());
            let mut tables = Vec::new();
            if names.is_empty() {
                listed = true;
                tables.push(fetch_table(&client, info, ns.as_deref(), None, &args).await?);
            }
            for name in names {
                match fetch_table(&client, info, ns.as_deref(), Some(name), &args).await {
                    Ok(t) => tables.push(t),
                    Err(e) if e.is_not_found() && args.ignore_not_found => {}
                    Err(e) => errors.push(e),
                }
            }
            let Some(mut table) = tables.first().cloned() else {
                continue;
            };
            for extra in tables.iter().skip(1) {
                table.rows.extend(extra.rows.iter().cloned());
            }
            if let Some(path) = &args.sort_by {
                sort_by_path(&mut table.rows, path, |row| &row.object)?;
            }
            if table.rows.is_empty() {
                continue;
            }
            let options = TableOptions {
                wide: format == OutputFormat::Wide,
                with_namespace: args.all_namespaces && info.namespaced,
                show_labels: args.show_labels,
                label_columns: args.label_columns.clone(),
                kind_prefix: several_kinds.then(|| info.group_kind()),
            };
            let mut rows = Vec::new();
            if !args.no_headers {
                rows.push(table.header(&options));
            }
            rows.extend(table.body(&options));
            if printed_any {
                s.print("\n")?;
            }
            s.print(&align(&rows))?;
            printed_any = true;
        }
        if !printed_any && listed && errors.is_empty() {
            let message = match (&namespace, requests.iter().all(|r| !r.0.namespaced)) {
                (Some(ns), false) => format!("No resources found in {ns} namespace.\n"),
                _ => "No resources found\n".to_string(),
            };
            s.eprint(&message)?;
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Many(errors)),
    }
}

/// Fetches the server-side table for a list (or one named object), falling back to NAME/AGE.
async fn fetch_table(
    client: &Client,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: Option<&str>,
    args: &GetArgs,
) -> Result<Table> {
    let request = request_for(info, ns);
    let http_request = match name {
        Some(name) => request.get(name, &GetParams::default()),
        None => request.list(&list_params(
            args.selector.as_deref(),
            args.field_selector.as_deref(),
        )),
    }
    .map_err(build_error)?;
    let http_request = if args.sort_by.is_some() {
        // Sorting needs whole objects in the rows, not just their metadata.
        with_query(http_request, "includeObject=Object")?
    } else {
        http_request
    };
    let value = request_json(client, http_request, TABLE_ACCEPT).await?;
    Ok(match Table::from_value(&value) {
        Some(table) => table,
        None => match value["items"].as_array() {
            Some(items) => Table::from_objects(items),
            None => Table::from_objects(std::slice::from_ref(&value)),
        },
    })
}

fn with_query(request: http::Request<Vec<u8>>, pair: &str) -> Result<http::Request<Vec<u8>>> {
    let (mut parts, body) = request.into_parts();
    let uri = parts.uri.to_string();
    let separator = if uri.contains('?') { "&" } else { "?" };
    parts.uri = format!("{uri}{separator}{pair}")
        .parse()
        .map_err(|e| Error::Usage(format!("building request: {e}")))?;
    Ok(http::Request::from_parts(parts, body))
}

/// Sorts objects by a JSONPath (`--sort-by`): numbers numerically, the rest as text, missing first.
pub fn sort_by_path<T>(items: &mut [T], path: &str, object: impl Fn(&T) -> &Value) -> Result<()> {
    let inner = path.trim().trim_start_matches('{').trim_end_matches('}');
    let template = if inner.starts_with('.') || inner.starts_with('$') {
        format!("{{{inner}}}")
    } else {
        format!("{{.{inner}}}")
    };
    let template = Template::parse(&template)?;
    let key = |item: &T| template.values(object(item)).into_iter().next();
    items.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
            _ => value_text(&x).cmp(&value_text(&y)),
        },
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    Ok(())
}

async fn watch(
    s: &mut Session,
    client: &Client,
    format: &OutputFormat,
    info: &ResourceInfo,
    names: &[String],
    ns: Option<&str>,
    args: &GetArgs,
) -> Result<()> {
    let ns = scope(info, ns);
    let options = TableOptions {
        wide: *format == OutputFormat::Wide,
        with_namespace: args.all_namespaces && info.namespaced,
        show_labels: args.show_labels,
        label_columns: args.label_columns.clone(),
        kind_prefix: None,
    };
    let mut field_selector = args.field_selector.clone();
    if let Some(name) = names.first() {
        let by_name = format!("metadata.name={name}");
        field_selector = Some(match field_selector {
            Some(f) => format!("{f},{by_name}"),
            None => by_name,
        });
    }
    let mut resource_version = "0".to_string();
    let mut header_printed = args.no_headers;
    let mut widths = Vec::new();
    if !args.watch_only {
        let list_args = GetArgs {
            selector: args.selector.clone(),
            field_selector: field_selector.clone(),
            ..GetArgs::default()
        };
        if format.needs_objects() {
            let api = super::dynamic_api(client.clone(), info, ns.as_deref());
            let params = list_params(args.selector.as_deref(), field_selector.as_deref());
            let list = api.list(&params).await?;
            resource_version = list
                .metadata
                .resource_version
                .clone()
                .unwrap_or_else(|| "0".into());
            let objects = list
                .items
                .into_iter()
                .map(|o| super::to_value(o, info))
                .collect();
            s.print(&print_objects(format, objects, false, args.no_headers)?)?;
        } else {
            let table = fetch_table(client, info, ns.as_deref(), None, &list_args).await?;
            resource_version = table.resource_version.clone().unwrap_or_else(|| "0".into());
            if !table.rows.is_empty() {
                let mut rows = Vec::new();
                if !args.no_headers {
                    rows.push(table.header(&options));
                }
                rows.extend(table.body(&options));
                s.print(&align_remembering(&rows, &mut widths))?;
                header_printed = true;
            }
        }
    }
    let mut params = WatchParams::default().timeout(290);
    if let Some(l) = &args.selector {
        params = params.labels(l);
    }
    if let Some(f) = &field_selector {
        params = params.fields(f);
    }
    let accept = if format.needs_objects() {
        "application/json"
    } else {
        TABLE_ACCEPT
    };
    // Each watch request lasts at most 290s; resume from the last seen resourceVersion until
    // interrupted (or until --request-timeout ends it), as a long-running `get -w` should.
    loop {
        let mut request = kube::core::Request::new(collection_url(info, ns.as_deref()))
            .watch(&params, &resource_version)
            .map_err(build_error)?;
        if let Ok(value) = http::HeaderValue::from_str(accept) {
            request.headers_mut().insert(http::header::ACCEPT, value);
        }
        let events = client.request_events::<Value>(request).await?;
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                // --request-timeout ends a watch quietly, as upstream does.
                Err(
                    kube::Error::ReadEvents(_)
                    | kube::Error::Service(_)
                    | kube::Error::HyperError(_),
                ) if s.flags.request_timeout != "0" => {
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let object = match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
                WatchEvent::Bookmark(b) => {
                    resource_version = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(status) => return Err(Error::Api(status)),
            };
            if let Some(rv) = event_resource_version(&object) {
                resource_version = rv;
            }
            if format.needs_objects() {
                let mut object = object;
                if let Some(map) = object.as_object_mut() {
                    map.insert("apiVersion".into(), Value::String(info.api_version()));
                    map.insert("kind".into(), Value::String(info.kind.clone()));
                }
                s.print(&print_objects(format, vec![object], true, args.no_headers)?)?;
                continue;
            }
            let table = Table::from_value(&object)
                .unwrap_or_else(|| Table::from_objects(std::slice::from_ref(&object)));
            let mut rows = Vec::new();
            if !header_printed {
                rows.push(table.header(&options));
                header_printed = true;
            }
            rows.extend(table.body(&options));
            s.print(&align_remembering(&rows, &mut widths))?;
        }
        if s.flags.request_timeout != "0" {
            return Ok(());
        }
    }
}

/// The resourceVersion of a watch event's object (a plain object or a one-row Table).
fn event_resource_version(object: &Value) -> Option<String> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .filter(|_| object["kind"] != "Table")
        .or_else(|| object["rows"][0]["object"]["metadata"]["resourceVersion"].as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sort_by_orders_numbers_numerically_and_missing_first() -> anyhow::Result<()> {
        let mut items = vec![
            json!({"n": "b", "r": 10}),
            json!({"n": "a", "r": 9}),
            json!({"n": "c"}),
        ];
        sort_by_path(&mut items, ".r", |o| o)?;
        let names: Vec<&str> = items.iter().filter_map(|o| o["n"].as_str()).collect();
        assert_eq!(names, vec!["c", "a", "b"]);
        sort_by_path(&mut items, "{.n}", |o| o)?;
        let names: Vec<&str> = items.iter().filter_map(|o| o["n"].as_str()).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
        Ok(())
    }
}
