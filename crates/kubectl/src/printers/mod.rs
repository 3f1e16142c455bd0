//! Output printers, one per `-o` format: server-side tables (default and `wide`), `yaml`, `json`,
//! `name`, `jsonpath=...` and `custom-columns=...`. [`OutputFormat`] parses the flag.

pub mod age;
pub mod custom_columns;
pub mod jsonpath;
pub mod object;
pub mod table;
pub mod tabwriter;
pub mod yaml;

use crate::error::{Error, Result};

/// A parsed `-o/--output` value.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputFormat {
    /// The server-side table with priority-0 columns.
    Default,
    /// The server-side table with every column.
    Wide,
    /// YAML.
    Yaml,
    /// JSON (four-space indentation, as upstream).
    Json,
    /// `kind.group/name` per object.
    Name,
    /// A JSONPath template.
    JsonPath(String),
    /// `HEADER:path` columns.
    CustomColumns(Vec<custom_columns::Column>),
}

impl OutputFormat {
    /// Parses `-o`; `None` is the default table.
    pub fn parse(flag: Option<&str>) -> Result<Self> {
        let Some(flag) = flag else {
            return Ok(OutputFormat::Default);
        };
        let (name, arg) = match flag.split_once('=') {
            Some((name, arg)) => (name, Some(arg)),
            None => (flag, None),
        };
        Ok(match (name, arg) {
            ("", None) => OutputFormat::Default,
            ("wide", None) => OutputFormat::Wide,
            ("yaml", None) => OutputFormat::Yaml,
            ("json", None) => OutputFormat::Json,
            ("name", None) => OutputFormat::Name,
            ("jsonpath", Some(template)) => {
                jsonpath::Template::parse(template)?;
                OutputFormat::JsonPath(template.to_string())
            }
            ("custom-columns", Some(spec)) => {
                OutputFormat::CustomColumns(custom_columns::parse_spec(spec)?)
            }
            _ => {
                return Err(Error::Usage(format!(
                    "unable to match a printer suitable for the output format \"{flag}\", allowed formats are: custom-columns,custom-columns-file,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,name,template,templatefile,wide,yaml"
                )))
            }
        })
    }

    /// Whether the format needs whole objects (rather than the server-side table).
    pub fn needs_objects(&self) -> bool {
        !matches!(self, OutputFormat::Default | OutputFormat::Wide)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_flags_parse() {
        let cases = [
            (None, Some(OutputFormat::Default)),
            (Some("wide"), Some(OutputFormat::Wide)),
            (Some("yaml"), Some(OutputFormat::Yaml)),
            (Some("json"), Some(OutputFormat::Json)),
            (Some("name"), Some(OutputFormat::Name)),
            (
                Some("jsonpath={.items[*].metadata.name}"),
                Some(OutputFormat::JsonPath("{.items[*].metadata.name}".into())),
            ),
            (Some("go-template={{.x}}"), None),
            (Some("xml"), None),
            (Some("jsonpath={.a"), None),
        ];
        for (flag, want) in cases {
            assert_eq!(OutputFormat::parse(flag).ok(), want, "{flag:?}");
        }
        assert!(matches!(
            OutputFormat::parse(Some("custom-columns=NAME:.metadata.name")),
            Ok(OutputFormat::CustomColumns(c)) if c.len() == 1
        ));
    }
}
