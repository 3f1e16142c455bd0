//! Server-side tables (`meta.k8s.io/v1 Table`) turned into kubectl's columns: priority-0 columns
//! (all with `-o wide`), `NAMESPACE` first with `-A`, `LABELS` last with `--show-labels`, names
//! prefixed `kind.group/` when several kinds print together. Plain lists fall back to NAME/AGE.

use serde_json::Value;

use super::age::object_age;
use super::jsonpath::value_text;

/// How to lay out a table.
#[derive(Clone, Debug, Default)]
pub struct TableOptions {
    /// Include priority > 0 columns (`-o wide`).
    pub wide: bool,
    /// Prefix a NAMESPACE column (`-A`).
    pub with_namespace: bool,
    /// Append a LABELS column.
    pub show_labels: bool,
    /// One column per label key (`-L`), before LABELS.
    pub label_columns: Vec<String>,
    /// Prefix names with this `kind.group` (several kinds printed together).
    pub kind_prefix: Option<String>,
}

/// One column definition.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDef {
    /// Column name as the server gives it (`Name`, `Ready`).
    pub name: String,
    /// `name` marks the object-name column.
    pub format: String,
    /// 0 = always shown; higher only with `-o wide`.
    pub priority: i64,
}

/// One row: cells and the (partial) object it describes.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Cell values, one per column definition.
    pub cells: Vec<Value>,
    /// The row's object (usually `PartialObjectMetadata`), for namespace and labels.
    pub object: Value,
}

/// A server-side table, or rows synthesised from plain objects.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Column definitions.
    pub columns: Vec<ColumnDef>,
    /// Rows.
    pub rows: Vec<Row>,
    /// The list's resourceVersion (to start a watch from).
    pub resource_version: Option<String>,
}

impl Table {
    /// Reads a `Table` response; `None` if the server answered with something else.
    pub fn from_value(value: &Value) -> Option<Table> {
        if value["kind"].as_str() != Some("Table") {
            return None;
        }
        let columns = value["columnDefinitions"]
            .as_array()?
            .iter()
            .map(|c| ColumnDef {
                name: c["name"].as_str().unwrap_or("").to_string(),
                format: c["format"].as_str().unwrap_or("").to_string(),
                priority: c["priority"].as_i64().unwrap_or(0),
            })
            .collect();
        let rows = value["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| Row {
                        cells: r["cells"].as_array().cloned().unwrap_or_default(),
                        object: r["object"].clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Table {
            columns,
            rows,
            resource_version: value["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string),
        })
    }

    /// The NAME/AGE table upstream prints for objects without a server-side table.
    pub fn from_objects(objects: &[Value]) -> Table {
        let columns = vec![
            ColumnDef {
                name: "Name".into(),
                format: "name".into(),
                priority: 0,
            },
            ColumnDef {
                name: "Age".into(),
                format: String::new(),
                priority: 0,
            },
        ];
        let rows = objects
            .iter()
            .map(|o| Row {
                cells: vec![o["metadata"]["name"].clone(), Value::String(object_age(o))],
                object: o.clone(),
            })
            .collect();
        Table {
            columns,
            rows,
            resource_version: None,
        }
    }

    fn visible(&self, options: &TableOptions) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| options.wide || self.columns[i].priority == 0)
            .collect()
    }

    /// The header cells.
    pub fn header(&self, options: &TableOptions) -> Vec<String> {
        let mut out = Vec::new();
        if options.with_namespace {
            out.push("NAMESPACE".to_string());
        }
        for i in self.visible(options) {
            out.push(self.columns[i].name.to_uppercase());
        }
        for key in &options.label_columns {
            // Upstream heads the column with the key's last path segment.
            let short = key.rsplit('/').next().unwrap_or(key);
            out.push(short.to_uppercase());
        }
        if options.show_labels {
            out.push("LABELS".to_string());
        }
        out
    }

    /// The body rows' cells.
    pub fn body(&self, options: &TableOptions) -> Vec<Vec<String>> {
        let visible = self.visible(options);
        self.rows
            .iter()
            .map(|row| {
                let mut out = Vec::new();
                if options.with_namespace {
                    out.push(
                        row.object["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    );
                }
                for &i in &visible {
                    let cell = row.cells.get(i).map(cell_text).unwrap_or_default();
                    match &options.kind_prefix {
                        Some(kind) if self.columns[i].format == "name" => {
                            out.push(format!("{kind}/{cell}"))
                        }
                        _ => out.push(cell),
                    }
                }
                for key in &options.label_columns {
                    let value = &row.object["metadata"]["labels"][key.as_str()];
                    out.push(value.as_str().unwrap_or("").to_string());
                }
                if options.show_labels {
                    out.push(labels_text(&row.object["metadata"]["labels"]));
                }
                out
            })
            .collect()
    }
}

fn cell_text(cell: &Value) -> String {
    match cell {
        Value::Null => "<none>".to_string(),
        other => value_text(other),
    }
}

/// `k=v,k2=v2` sorted by key, or `<none>`.
pub fn labels_text(labels: &Value) -> String {
    match labels.as_object() {
        Some(map) if !map.is_empty() => {
            let mut pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            pairs.sort();
            pairs.join(",")
        }
        _ => "<none>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tabwriter::align;
    use super::*;
    use serde_json::json;

    fn pod_table() -> Value {
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "42"},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "priority": 0},
                {"name": "Ready", "type": "string", "format": "", "priority": 0},
                {"name": "Status", "type": "string", "format": "", "priority": 0},
                {"name": "Restarts", "type": "string", "format": "", "priority": 0},
                {"name": "Age", "type": "string", "format": "", "priority": 0},
                {"name": "IP", "type": "string", "format": "", "priority": 1},
                {"name": "Node", "type": "string", "format": "", "priority": 1}
            ],
            "rows": [
                {"cells": ["web-1", "1/1", "Running", 0, "5m", "10.244.0.5", "node-0"],
                 "object": {"metadata": {"name": "web-1", "namespace": "default", "labels": {"b": "2", "a": "1"}}}},
                {"cells": ["web-2", "0/1", "Pending", 0, "1s", null, null],
                 "object": {"metadata": {"name": "web-2", "namespace": "kube-system"}}}
            ]
        })
    }

    fn render(options: TableOptions) -> String {
        let table = Table::from_value(&pod_table()).unwrap_or_else(|| Table::from_objects(&[]));
        let mut rows = vec![table.header(&options)];
        rows.extend(table.body(&options));
        align(&rows)
    }

    #[test]
    fn default_tables_show_priority_zero_columns() {
        assert_eq!(
            render(TableOptions::default()),
            "NAME    READY   STATUS    RESTARTS   AGE\n\
             web-1   1/1     Running   0          5m\n\
             web-2   0/1     Pending   0          1s\n"
        );
    }

    #[test]
    fn wide_tables_show_every_column() {
        assert_eq!(
            render(TableOptions {
                wide: true,
                ..Default::default()
            }),
            "NAME    READY   STATUS    RESTARTS   AGE   IP           NODE\n\
             web-1   1/1     Running   0          5m    10.244.0.5   node-0\n\
             web-2   0/1     Pending   0          1s    <none>       <none>\n"
        );
    }

    #[test]
    fn namespaces_labels_and_kind_prefixes_are_added() {
        assert_eq!(
            render(TableOptions {
                with_namespace: true,
                show_labels: true,
                kind_prefix: Some("pod".into()),
                ..Default::default()
            }),
            "NAMESPACE     NAME        READY   STATUS    RESTARTS   AGE   LABELS\n\
             default       pod/web-1   1/1     Running   0          5m    a=1,b=2\n\
             kube-system   pod/web-2   0/1     Pending   0          1s    <none>\n"
        );
    }

    #[test]
    fn the_resource_version_is_kept_for_watching() {
        let table = Table::from_value(&pod_table());
        assert_eq!(table.and_then(|t| t.resource_version), Some("42".into()));
        assert!(Table::from_value(&json!({"kind": "PodList", "items": []})).is_none());
    }

    #[test]
    fn plain_objects_fall_back_to_name_and_age() {
        let table = Table::from_objects(&[json!({"metadata": {"name": "x"}})]);
        let options = TableOptions::default();
        assert_eq!(table.header(&options), vec!["NAME", "AGE"]);
        assert_eq!(
            table.body(&options),
            vec![vec!["x".to_string(), "<unknown>".to_string()]]
        );
    }
}
