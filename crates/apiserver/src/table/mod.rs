//! Server-side tables (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`): the columns
//! `kubectl get` prints, per resource, as upstream's printers declare them (name, type,
//! format, priority 1 for `-o wide`; the server always fills the wide cells), and upstream's
//! default table (`Name`, `Created At`) for the resources that have no printer.
//!
//! Start with [`table`]; per-resource printers live in [`printers`].

mod cells;
mod extra;
mod printers;

use api_types::registry::Resource;
use serde_json::{json, Value};

/// What each row's `object` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// PartialObjectMetadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

/// A column: name, type, priority (0 = always shown, 1 = `-o wide`).
pub struct Column {
    /// Header.
    pub name: &'static str,
    /// `string`, `integer`, `date`.
    pub kind: &'static str,
    /// 0 or 1.
    pub priority: u8,
    /// Description.
    pub description: &'static str,
}

/// Shorthand for a `string` column.
pub const fn col(name: &'static str, priority: u8, description: &'static str) -> Column {
    typed(name, "string", priority, description)
}

/// Shorthand for an `integer` column (its cells are numbers).
pub const fn int_col(name: &'static str, priority: u8, description: &'static str) -> Column {
    typed(name, "integer", priority, description)
}

/// Shorthand for a `boolean` column (its cells are `true`/`false`).
pub const fn bool_col(name: &'static str, priority: u8, description: &'static str) -> Column {
    typed(name, "boolean", priority, description)
}

/// A column of any type.
pub const fn typed(
    name: &'static str,
    kind: &'static str,
    priority: u8,
    description: &'static str,
) -> Column {
    Column {
        name,
        kind,
        priority,
        description,
    }
}

pub use api_types::duration::human_duration;

/// "5m" since an RFC 3339 timestamp; `<unknown>` when absent.
pub fn age(timestamp: Option<&str>) -> String {
    let Some(ts) = timestamp else {
        return "<unknown>".into();
    };
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

/// The creation age of an object.
pub fn object_age(object: &Value) -> String {
    age(object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str))
}

/// The `PartialObjectMetadata` of an object.
pub fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Builds a `meta.k8s.io/v1` Table of `items`.
pub fn table(
    resource: &Resource,
    items: &[Value],
    resource_version: Option<String>,
    continue_token: Option<String>,
    include: IncludeObject,
) -> Value {
    let (columns, printer) = printers::printer(resource);
    let column_definitions: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": if c.name == "Name" { "name" } else { "" },
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut row = json!({"cells": printer(item)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(item),
                IncludeObject::Object => row["object"] = item.clone(),
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_kubectl() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 600, "3h10m"),
            (10 * 3600, "10h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (800 * 86400, "2y70d"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }

    #[test]
    fn default_table_has_name_and_creation_time_with_metadata_rows() {
        let r = api_types::registry::find("", "v1", "limitranges").expect("limitranges");
        let t = table(
            r,
            &[json!({"metadata": {"name": "x", "creationTimestamp": "2020-01-01T00:00:00Z"}})],
            Some("5".into()),
            None,
            IncludeObject::Metadata,
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["columnDefinitions"][1]["name"], "Created At");
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(t["rows"][0]["cells"][0], "x");
        assert_eq!(t["rows"][0]["cells"][1], "2020-01-01T00:00:00Z");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "5");
    }
}
