//! Reading manifests for `-f`: files, directories and stdin (`-`); multi-document YAML, one or more
//! JSON objects, and `kind: List` (or any `*List`) expanded into its items.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// One object from a manifest, with where it came from (for error messages).
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The file name, or `STDIN`.
    pub source: String,
    /// The object.
    pub object: Value,
}

/// Reads every object from the given `-f` arguments, in order.
pub fn read_manifests(filenames: &[String]) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for name in filenames {
        if name == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Error::io("reading STDIN", e))?;
            push_all(&mut out, &text, "STDIN")?;
            continue;
        }
        let path = Path::new(name);
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .map_err(|e| Error::io(format!("reading {name}"), e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            entries.sort();
            for entry in entries {
                let text = std::fs::read_to_string(&entry)
                    .map_err(|e| Error::io(format!("reading {}", entry.display()), e))?;
                push_all(&mut out, &text, &entry.display().to_string())?;
            }
            continue;
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Usage(format!("the path \"{name}\" does not exist"))
            } else {
                Error::io(format!("reading {name}"), e)
            }
        })?;
        push_all(&mut out, &text, name)?;
    }
    Ok(out)
}

fn push_all(out: &mut Vec<Manifest>, text: &str, source: &str) -> Result<()> {
    for object in parse_documents(text, source)? {
        out.push(Manifest {
            source: source.to_string(),
            object,
        });
    }
    Ok(())
}

/// Parses a manifest text into objects, expanding lists and checking `apiVersion`/`kind`.
pub fn parse_documents(text: &str, source: &str) -> Result<Vec<Value>> {
    let bad = |message: String| Error::Manifest {
        path: source.to_string(),
        message,
    };
    let mut documents = Vec::new();
    if text.trim_start().starts_with('{') {
        for doc in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            documents.push(doc.map_err(|e| bad(e.to_string()))?);
        }
    } else {
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let value = Value::deserialize(doc).map_err(|e| {
                bad(format!(
                    "error converting YAML to JSON: {}",
                    crate::session::yaml_error(&e)
                ))
            })?;
            documents.push(value);
        }
    }
    let mut objects = Vec::new();
    for doc in documents {
        expand(doc, &mut objects);
    }
    for object in &objects {
        let mut missing = Vec::new();
        if object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            missing.push("apiVersion not set");
        }
        if object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            missing.push("kind not set");
        }
        if !missing.is_empty() {
            // Go's aggregate error: one message bare, several in brackets.
            let what = if missing.len() == 1 {
                missing.join(", ")
            } else {
                format!("[{}]", missing.join(", "))
            };
            return Err(Error::Usage(format!(
                "error validating \"{source}\": error validating data: {what}; if you choose to ignore these errors, turn validation off with --validate=false"
            )));
        }
    }
    Ok(objects)
}

fn expand(doc: Value, out: &mut Vec<Value>) {
    match doc {
        Value::Null => {}
        Value::Object(ref map)
            if map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && map.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(Value::Array(items)) = map.get("items") {
                for item in items {
                    expand(item.clone(), out);
                }
            }
        }
        Value::Object(ref map) if map.is_empty() => {}
        other => out.push(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(objects: &[Value]) -> Vec<String> {
        objects
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    #[test]
    fn manifests_of_every_shape_parse_into_objects() {
        let cases: [(&str, &str, &[&str]); 5] = [
            (
                "one yaml document",
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n",
                &["Pod/a"],
            ),
            (
                "several yaml documents with empty ones",
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\n",
                &["Pod/a", "Deployment/b"],
            ),
            (
                "a yaml list",
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: s\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p\n",
                &["Service/s", "Pod/p"],
            ),
            (
                "a json object",
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
                &["ConfigMap/c"],
            ),
            (
                "concatenated json objects and a typed list",
                r#"{"apiVersion":"v1","kind":"PodList","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}]}
                   {"apiVersion":"v1","kind":"Pod","metadata":{"name":"y"}}"#,
                &["Pod/x", "Pod/y"],
            ),
        ];
        for (what, text, want) in cases {
            let got = parse_documents(text, "f.yaml").map(|o| names(&o)).ok();
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(got, Some(want), "{what}");
        }
    }

    #[test]
    fn yaml_scalars_keep_their_types() {
        let objects = parse_documents(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  paused: false\n",
            "f",
        )
        .ok();
        let spec = objects.map(|o| o[0]["spec"].clone());
        assert_eq!(spec, Some(json!({"replicas": 3, "paused": false})));
    }

    #[test]
    fn objects_without_kind_or_api_version_are_rejected() {
        let err = parse_documents("metadata:\n  name: a\n", "bad.yaml")
            .err()
            .map(|e| e.report());
        assert_eq!(
            err.as_deref(),
            Some("error: error validating \"bad.yaml\": error validating data: [apiVersion not set, kind not set]; if you choose to ignore these errors, turn validation off with --validate=false")
        );
    }

    #[test]
    fn invalid_yaml_is_an_error() {
        assert!(parse_documents("a: [b\n", "f").is_err());
    }

    #[test]
    fn directories_are_read_in_name_order() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("b.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: b\n",
        )?;
        std::fs::write(
            dir.path().join("a.json"),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}"#,
        )?;
        std::fs::write(dir.path().join("notes.txt"), "ignored")?;
        let got = read_manifests(&[dir.path().display().to_string()])?;
        let objects: Vec<Value> = got.into_iter().map(|m| m.object).collect();
        assert_eq!(names(&objects), vec!["Pod/a", "Pod/b"]);
        Ok(())
    }
}
