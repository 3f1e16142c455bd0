//! Whole-object printers: YAML, JSON (four-space indent like upstream), `name`, and the `List`
//! wrapper upstream prints when a query can return several objects.

use serde::Serialize;
use serde_json::{json, Value};

use super::custom_columns;
use super::jsonpath::Template;
use super::OutputFormat;
use crate::error::{Error, Result};

/// Wraps objects in the `List` upstream prints for `get -o yaml|json` on several objects.
pub fn as_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})
}

/// JSON with four-space indentation and a trailing newline.
pub fn to_json<T: Serialize>(value: &T) -> Result<String> {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value
        .serialize(&mut ser)
        .map_err(|e| Error::Usage(format!("encoding JSON: {e}")))?;
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    text.push('\n');
    Ok(text)
}

/// YAML as upstream prints it (see [`super::yaml`]).
pub fn to_yaml(value: &Value) -> Result<String> {
    Ok(super::yaml::to_yaml(value))
}

/// `kind.group/name` (or `kind/name` for the core group) for an object.
pub fn object_name(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or("").to_lowercase();
    let group = object["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/').map(|(g, _)| g))
        .unwrap_or("");
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    if group.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}.{group}/{name}")
    }
}

/// Prints objects in a whole-object format. `single` says the user named exactly one object, so
/// it prints bare rather than wrapped in a `List`.
pub fn print_objects(
    format: &OutputFormat,
    objects: Vec<Value>,
    single: bool,
    no_headers: bool,
) -> Result<String> {
    // Like upstream without --show-managed-fields: managedFields are not printed.
    let mut objects = objects;
    for object in objects.iter_mut() {
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
    }
    let subject = |objects: Vec<Value>| -> Value {
        if single && objects.len() == 1 {
            objects.into_iter().next().unwrap_or(Value::Null)
        } else {
            as_list(objects)
        }
    };
    Ok(match format {
        OutputFormat::Yaml => to_yaml(&subject(objects))?,
        OutputFormat::Json => to_json(&subject(objects))?,
        OutputFormat::Name => objects.iter().map(|o| object_name(o) + "\n").collect(),
        OutputFormat::JsonPath(template) => Template::parse(template)?.render(&subject(objects)),
        OutputFormat::CustomColumns(columns) => {
            custom_columns::render(columns, &objects, no_headers)
        }
        OutputFormat::Default | OutputFormat::Wide => {
            objects.iter().map(|o| object_name(o) + "\n").collect()
        }
    })
}

/// What mutating commands print: `deployment.apps/web created` unless `-o` asks otherwise.
pub fn print_result(format: &OutputFormat, object: &Value, operation: &str) -> Result<String> {
    match format {
        OutputFormat::Default | OutputFormat::Wide => {
            Ok(format!("{} {operation}\n", object_name(object)))
        }
        other => print_objects(other, vec![object.clone()], true, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    #[test]
    fn names_carry_the_group() {
        assert_eq!(object_name(&deployment()), "deployment.apps/web");
        assert_eq!(
            object_name(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})),
            "pod/p"
        );
    }

    #[test]
    fn yaml_sorts_keys_and_does_not_indent_sequences() -> anyhow::Result<()> {
        let text = to_yaml(&deployment())?;
        assert_eq!(
            text,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  labels:\n    app: web\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - image: busybox\n        name: c\n"
        );
        Ok(())
    }

    #[test]
    fn json_uses_four_spaces() -> anyhow::Result<()> {
        assert_eq!(
            to_json(&json!({"a": [1]}))?,
            "{\n    \"a\": [\n        1\n    ]\n}\n"
        );
        Ok(())
    }

    #[test]
    fn several_objects_print_as_a_list_and_one_named_object_bare() -> anyhow::Result<()> {
        let list = print_objects(&OutputFormat::Json, vec![deployment()], false, false)?;
        assert!(list.contains("\"kind\": \"List\""));
        let single = print_objects(&OutputFormat::Json, vec![deployment()], true, false)?;
        assert!(single.contains("\"kind\": \"Deployment\""));
        let names = print_objects(
            &OutputFormat::Name,
            vec![deployment(), deployment()],
            false,
            false,
        )?;
        assert_eq!(names, "deployment.apps/web\ndeployment.apps/web\n");
        let path = print_objects(
            &OutputFormat::JsonPath("{.items[*].metadata.name}".into()),
            vec![deployment()],
            false,
            false,
        )?;
        assert_eq!(path, "web");
        Ok(())
    }

    #[test]
    fn results_print_the_operation() -> anyhow::Result<()> {
        assert_eq!(
            print_result(&OutputFormat::Default, &deployment(), "created")?,
            "deployment.apps/web created\n"
        );
        Ok(())
    }
}
