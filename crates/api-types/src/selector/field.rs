//! Field selectors: `metadata.name=x,status.phase!=Running` (also `==`), with `\,`, `\=` and
//! `\\` escapes in values, matched through a getter or a JSON path lookup.

use std::fmt;

use super::SelectorError;

/// One `field=value` or `field!=value` term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// The field path, e.g. `metadata.name` or `spec.nodeName`.
    pub field: String,
    /// Whether the field must equal (true) or differ from (false) the value.
    pub equals: bool,
    /// The value, unescaped.
    pub value: String,
}

/// A field selector: `a=b,c!=d` (also `==`), with `\,`, `\=` and `\\` escapes in values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the string form.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(input, ',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (field, equals, value) = if let Some(index) = find_unescaped(term, "!=") {
                (&term[..index], false, &term[index + 2..])
            } else if let Some(index) = find_unescaped(term, "==") {
                (&term[..index], true, &term[index + 2..])
            } else if let Some(index) = find_unescaped(term, "=") {
                (&term[..index], true, &term[index + 1..])
            } else {
                return Err(SelectorError::Syntax(format!(
                    "invalid selector: '{input}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(SelectorError::Syntax(format!(
                    "invalid selector: '{input}'; empty field in '{term}'"
                )));
            }
            requirements.push(FieldRequirement {
                field: field.to_string(),
                equals,
                value: unescape(value)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The requirements in the order written.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether the selector has no requirements.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value a requirement on `field` demands with `=`, if any (used to narrow a list).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.equals && r.field == field)
            .map(|r| r.value.as_str())
    }

    /// Matches with a getter that returns a field's value (`None` counts as the empty string).
    pub fn matches_with(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = get(&r.field).unwrap_or_default();
            (actual == r.value) == r.equals
        })
    }

    /// Matches against a JSON object by dotted path (`metadata.name`, `spec.nodeName`).
    pub fn matches_value(&self, object: &serde_json::Value) -> bool {
        self.matches_with(|field| json_field(object, field))
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, r) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            let op = if r.equals { "=" } else { "!=" };
            write!(f, "{}{op}{}", r.field, escape(&r.value))?;
        }
        Ok(())
    }
}

/// The string form of the value at a dotted path in a JSON object (numbers and booleans as written).
pub fn json_field(object: &serde_json::Value, path: &str) -> Option<String> {
    let mut current = object;
    for part in path.split('.') {
        current = current.get(part)?;
    }
    match current {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn split_unescaped(input: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(&input[start..index]);
            start = index + 1;
        }
    }
    parts.push(&input[start..]);
    parts
}

fn find_unescaped(input: &str, needle: &str) -> Option<usize> {
    let mut escaped = false;
    for (index, c) in input.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        if input[index..].starts_with(needle) {
            return Some(index);
        }
    }
    None
}

fn unescape(value: &str) -> Result<String, SelectorError> {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next @ ('\\' | ',' | '=')) => out.push(next),
                _ => {
                    return Err(SelectorError::Syntax(format!(
                        "invalid field selector value {value:?}: bad escape"
                    )))
                }
            }
        } else if c == '=' || c == ',' {
            return Err(SelectorError::Syntax(format!(
                "invalid field selector value {value:?}: unescaped '{c}'"
            )));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selectors_parse_and_match_json_paths() -> Result<(), SelectorError> {
        let pod = serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node-0"},
            "status": {"phase": "Running"}
        });
        let cases = [
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name!=web-1", false),
            ("spec.nodeName=", false),
            ("spec.schedulerName=", true),
            ("status.phase!=Failed,spec.nodeName=node-0", true),
            ("", true),
        ];
        for (input, expected) in cases {
            let selector = FieldSelector::parse(input)?;
            assert_eq!(selector.matches_value(&pod), expected, "{input}");
        }
        Ok(())
    }

    #[test]
    fn field_selector_escapes_round_trip() -> Result<(), SelectorError> {
        let selector = FieldSelector::parse(r"metadata.name=a\,b\=c")?;
        assert_eq!(selector.required_value("metadata.name"), Some("a,b=c"));
        assert_eq!(selector.to_string(), r"metadata.name=a\,b\=c");
        assert!(FieldSelector::parse("metadata.name").is_err());
        assert!(FieldSelector::parse("=x").is_err());
        assert!(FieldSelector::parse(r"a=b\x").is_err());
        Ok(())
    }

    #[test]
    fn field_selector_with_getter_treats_missing_as_empty() -> Result<(), SelectorError> {
        let selector = FieldSelector::parse("spec.nodeName=")?;
        assert!(selector.matches_with(|_| None));
        assert!(!selector.matches_with(|_| Some("n".into())));
        Ok(())
    }
}
