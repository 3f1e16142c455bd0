//! `-o custom-columns=HEADER:.path,...`: one column per JSONPath, `<none>` when nothing matches,
//! several matches joined with commas.

use serde_json::Value;

use super::jsonpath::{value_text, Template};
use super::tabwriter::align;
use crate::error::{Error, Result};

/// One `HEADER:path` column.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The header text.
    pub header: String,
    /// The template (braces added when the user left them out).
    pub template: String,
}

/// Parses `NAME:.metadata.name,IMAGE:.spec.containers[*].image`.
pub fn parse_spec(spec: &str) -> Result<Vec<Column>> {
    let mut columns = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (header, path) = part.split_once(':').ok_or_else(|| {
            Error::Usage(format!(
                "unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>"
            ))
        })?;
        let template = relaxed(path);
        Template::parse(&template)?;
        columns.push(Column {
            header: header.to_string(),
            template,
        });
    }
    if columns.is_empty() {
        return Err(Error::Usage(
            "custom-columns format specified but no custom columns given".into(),
        ));
    }
    Ok(columns)
}

/// Upstream's `RelaxedJSONPathExpression`: `metadata.name` and `.metadata.name` become `{.metadata.name}`.
fn relaxed(path: &str) -> String {
    let inner = path.trim().trim_start_matches('{').trim_end_matches('}');
    if inner.starts_with('.') || inner.starts_with('$') || inner.starts_with('@') {
        format!("{{{inner}}}")
    } else {
        format!("{{.{inner}}}")
    }
}

/// Renders the objects as columns.
pub fn render(columns: &[Column], objects: &[Value], no_headers: bool) -> String {
    let templates: Vec<Option<Template>> = columns
        .iter()
        .map(|c| Template::parse(&c.template).ok())
        .collect();
    let mut rows = Vec::new();
    if !no_headers {
        rows.push(columns.iter().map(|c| c.header.clone()).collect());
    }
    for object in objects {
        let row = templates
            .iter()
            .map(|t| {
                let values = t.as_ref().map(|t| t.values(object)).unwrap_or_default();
                if values.is_empty() {
                    "<none>".to_string()
                } else {
                    values.iter().map(value_text).collect::<Vec<_>>().join(",")
                }
            })
            .collect();
        rows.push(row);
    }
    align(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn custom_columns_render_values_and_none() -> anyhow::Result<()> {
        let columns =
            parse_spec("NAME:.metadata.name,IMAGES:spec.containers[*].image,IP:{.status.podIP}")?;
        let objects = [
            json!({"metadata": {"name": "web-1"}, "spec": {"containers": [{"image": "a"}, {"image": "b"}]}, "status": {"podIP": "10.244.0.9"}}),
            json!({"metadata": {"name": "x"}, "spec": {"containers": []}}),
        ];
        assert_eq!(
            render(&columns, &objects, false),
            "NAME    IMAGES   IP\nweb-1   a,b      10.244.0.9\nx       <none>   <none>\n"
        );
        assert_eq!(
            render(&columns, &objects[1..], true),
            "x     <none>   <none>\n"
        );
        Ok(())
    }

    #[test]
    fn malformed_specs_are_rejected() {
        assert!(parse_spec("NAME").is_err());
        assert!(parse_spec("").is_err());
    }
}
