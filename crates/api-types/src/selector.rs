//! Label and field selectors: parsing the string form, converting from the API's `LabelSelector`,
//! matching, and printing back.
//!
//! Start with [`Selector::parse`] (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) and
//! [`Selector::from_label_selector`]; field selectors (`metadata.name=x,status.phase!=Running`) are
//! [`FieldSelector`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

mod field;

pub use field::{json_field, FieldRequirement, FieldSelector};

/// Why a selector could not be parsed or converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The string form does not follow the grammar.
    #[error("unable to parse requirement: {0}")]
    Syntax(String),
    /// A label key is not a valid qualified name.
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A label value is not valid.
    #[error("invalid label value: {value:?}: {reason}")]
    InvalidValue {
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An operator got the wrong number of values.
    #[error("{0}")]
    Values(String),
    /// A `matchExpressions` operator is not one of In, NotIn, Exists, DoesNotExist.
    #[error("{0:?} is not a valid label selector operator")]
    Operator(String),
}

/// A requirement's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// `key=value` (also `key==value`).
    Equals,
    /// `key!=value`.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`.
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>n` (integer comparison; used by node affinity).
    GreaterThan,
    /// `key<n`.
    LessThan,
}

/// One `key op values` term of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

impl Requirement {
    /// Builds a requirement, validating the key, values and their number.
    pub fn new(
        key: &str,
        operator: Operator,
        values: impl IntoIterator<Item = String>,
    ) -> Result<Self, SelectorError> {
        validate_key(key)?;
        let values: BTreeSet<String> = values.into_iter().collect();
        match operator {
            Operator::Equals | Operator::NotEquals if values.len() != 1 => {
                return Err(SelectorError::Values(
                    "exact-match compatibility requires one single value".into(),
                ))
            }
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(SelectorError::Values(
                    "for 'in', 'notin' operators, values set can't be empty".into(),
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError::Values(
                    "values set must be empty for exists and does not exist".into(),
                ))
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(SelectorError::Values(
                        "for 'Gt', 'Lt' operators, exactly one value is required".into(),
                    ));
                }
                for value in &values {
                    if value.parse::<i64>().is_err() {
                        return Err(SelectorError::Values(
                            "for 'Gt', 'Lt' operators, the value must be an integer".into(),
                        ));
                    }
                }
            }
            _ => {}
        }
        if !matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for value in &values {
                validate_value(value)?;
            }
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted.
    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                self.values
                    .iter()
                    .filter_map(|v| v.parse::<i64>().ok())
                    .all(|limit| {
                        if self.operator == Operator::GreaterThan {
                            actual > limit
                        } else {
                            actual < limit
                        }
                    })
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined = || self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            Operator::Equals => write!(f, "{}={}", self.key, joined()),
            Operator::NotEquals => write!(f, "{}!={}", self.key, joined()),
            Operator::In => write!(f, "{} in ({})", self.key, joined()),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, joined()),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{}", self.key, joined()),
            Operator::LessThan => write!(f, "{}<{}", self.key, joined()),
        }
    }
}

/// A label selector: the conjunction of its requirements. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches every label set.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// A selector from requirements (sorted by key, as upstream prints them).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key).then(a.operator.cmp(&b.operator)));
        Selector { requirements }
    }

    /// Parses the string form, e.g. `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        Parser::new(input)?.parse().map(Selector::from_requirements)
    }

    /// Converts the API's `LabelSelector` (matchLabels and matchExpressions). An empty one matches
    /// everything; callers treat an absent selector as matching nothing, as upstream does.
    pub fn from_label_selector(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(key, Operator::Equals, [value.clone()])?);
        }
        for expression in selector.match_expressions.iter().flatten() {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::Operator(other.to_string())),
            };
            requirements.push(Requirement::new(
                &expression.key,
                operator,
                expression.values.clone().unwrap_or_default(),
            )?);
        }
        Ok(Selector::from_requirements(requirements))
    }

    /// A selector requiring each `key=value` of `labels`.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Self, SelectorError> {
        labels
            .iter()
            .map(|(key, value)| Requirement::new(key, Operator::Equals, [value.clone()]))
            .collect::<Result<Vec<_>, _>>()
            .map(Selector::from_requirements)
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether this selector has no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// Whether a label set matches an optional API selector, as controllers use it: an absent or
/// invalid selector matches nothing, an empty one everything.
pub fn label_selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector
        .and_then(|s| Selector::from_label_selector(s).ok())
        .is_some_and(|s| s.matches(labels))
}

fn validate_key(key: &str) -> Result<(), SelectorError> {
    let invalid = |reason: &str| SelectorError::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() || prefix.len() > 253 {
            return Err(invalid(
                "prefix part must be a DNS subdomain of at most 253 characters",
            ));
        }
        let valid = prefix.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if !valid {
            return Err(invalid(
                "prefix part must be a lowercase RFC 1123 subdomain",
            ));
        }
    }
    if name.is_empty() {
        return Err(invalid("name part must be non-empty"));
    }
    if !is_label_token(name) {
        return Err(invalid(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters",
        ));
    }
    Ok(())
}

fn validate_value(value: &str) -> Result<(), SelectorError> {
    if value.is_empty() || is_label_token(value) {
        Ok(())
    } else {
        Err(SelectorError::InvalidValue {
            value: value.to_string(),
            reason: "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters".to_string(),
        })
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_label_token(token: &str) -> bool {
    let bytes = token.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            token.len() <= 63
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier(String),
    Equals,
    DoubleEquals,
    NotEquals,
    Not,
    GreaterThan,
    LessThan,
    Open,
    Close,
    Comma,
    In,
    NotIn,
}

fn tokenize(input: &str) -> Result<Vec<Token>, SelectorError> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    tokens.push(Token::DoubleEquals);
                } else {
                    tokens.push(Token::Equals);
                }
            }
            '!' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    tokens.push(Token::NotEquals);
                } else {
                    tokens.push(Token::Not);
                }
            }
            '>' => {
                chars.next();
                tokens.push(Token::GreaterThan);
            }
            '<' => {
                chars.next();
                tokens.push(Token::LessThan);
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            ',' => {
                chars.next();
                tokens.push(Token::Comma);
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "=!<>(),".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Identifier(word),
                });
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    input: String,
}

impl Parser {
    fn new(input: &str) -> Result<Self, SelectorError> {
        Ok(Parser {
            tokens: tokenize(input)?,
            position: 0,
            input: input.to_string(),
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn error(&self, what: &str) -> SelectorError {
        SelectorError::Syntax(format!("{what} in {:?}", self.input))
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        if self.peek().is_none() {
            return Ok(requirements);
        }
        loop {
            requirements.push(self.requirement()?);
            match self.next() {
                None => return Ok(requirements),
                Some(Token::Comma) => {}
                Some(_) => return Err(self.error("expected ',' or end of string")),
            }
        }
    }

    fn identifier(&mut self, what: &str) -> Result<String, SelectorError> {
        match self.next() {
            Some(Token::Identifier(word)) => Ok(word),
            // Keywords are fine as keys/values when they appear where an identifier must.
            Some(Token::In) => Ok("in".into()),
            Some(Token::NotIn) => Ok("notin".into()),
            _ => Err(self.error(what)),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == Some(&Token::Not) {
            self.next();
            let key = self.identifier("expected a key after '!'")?;
            return Requirement::new(&key, Operator::DoesNotExist, []);
        }
        let key = self.identifier("expected a key")?;
        let operator = match self.peek() {
            None | Some(Token::Comma) => return Requirement::new(&key, Operator::Exists, []),
            Some(Token::Equals) | Some(Token::DoubleEquals) => Operator::Equals,
            Some(Token::NotEquals) => Operator::NotEquals,
            Some(Token::GreaterThan) => Operator::GreaterThan,
            Some(Token::LessThan) => Operator::LessThan,
            Some(Token::In) => Operator::In,
            Some(Token::NotIn) => Operator::NotIn,
            Some(_) => return Err(self.error("expected an operator")),
        };
        self.next();
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => match self.peek() {
                // `a=` means the empty value.
                None | Some(Token::Comma) => vec![String::new()],
                _ => vec![self.identifier("expected a value")?],
            },
        };
        Requirement::new(&key, operator, values)
    }

    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        if self.next() != Some(Token::Open) {
            return Err(self.error("expected '(' after 'in'/'notin'"));
        }
        let mut values = Vec::new();
        loop {
            match self.peek() {
                Some(Token::Close) => {
                    self.next();
                    // `in ()` and `in (a,)` carry an empty value, as upstream parses them.
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                Some(Token::Comma) => {
                    self.next();
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    if self.peek() == Some(&Token::Close) {
                        values.push(String::new());
                    }
                }
                Some(_) => values.push(self.identifier("expected a value")?),
                None => return Err(self.error("expected ')'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parsed_selectors_match_as_upstream() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            ("", &[("a", "b")], true),
            ("a=b", &[("a", "b")], true),
            ("a==b", &[("a", "b")], true),
            ("a=b", &[("a", "c")], false),
            ("a=b", &[], false),
            ("a!=b", &[], true),
            ("a!=b", &[("a", "b")], false),
            ("a!=b", &[("a", "c")], true),
            ("e in (x,y)", &[("e", "y")], true),
            ("e in (x,y)", &[("e", "z")], false),
            ("e in (x,y)", &[], false),
            ("f notin (z)", &[], true),
            ("f notin (z)", &[("f", "z")], false),
            ("g", &[("g", "")], true),
            ("g", &[], false),
            ("!h", &[], true),
            ("!h", &[("h", "1")], false),
            (
                "a=b,c!=d,e in (x,y),f notin (z),g,!h",
                &[("a", "b"), ("e", "x"), ("g", "1")],
                true,
            ),
            (
                "a=b,c!=d,e in (x,y),f notin (z),g,!h",
                &[("a", "b"), ("e", "x"), ("g", "1"), ("h", "")],
                false,
            ),
            ("x>5", &[("x", "6")], true),
            ("x>5", &[("x", "5")], false),
            ("x<5", &[("x", "4")], true),
            ("a=", &[("a", "")], true),
            (
                "app.kubernetes.io/name=web",
                &[("app.kubernetes.io/name", "web")],
                true,
            ),
        ];
        for (input, set, expected) in cases {
            let selector = Selector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                selector.matches(&labels(set)),
                *expected,
                "{input} vs {set:?}"
            );
        }
    }

    #[test]
    fn bad_selectors_are_rejected() {
        for input in [
            "a=b=c",
            "a in x",
            "a in (x",
            "!",
            "=b",
            "a,,b",
            "a b",
            "-a=b",
            "a=-b",
            "a!b",
            "Foo.com/x=y",
            "x>abc",
            "a=b,",
        ] {
            assert!(
                Selector::parse(input).is_err(),
                "{input:?} should be rejected"
            );
        }
    }

    #[test]
    fn display_prints_the_canonical_string_form() {
        let cases = [
            ("b=2,a=1", "a=1,b=2"),
            ("a==1", "a=1"),
            ("e in (y,x)", "e in (x,y)"),
            ("f notin (z)", "f notin (z)"),
            ("g,!h", "g,!h"),
            ("a!=b", "a!=b"),
        ];
        for (input, output) in cases {
            let selector = Selector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(selector.to_string(), output);
            assert_eq!(Selector::parse(output), Ok(selector));
        }
    }

    #[test]
    fn label_selector_converts_match_labels_and_expressions() -> Result<(), SelectorError> {
        let api = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["front".into(), "edge".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "track".into(),
                    operator: "Exists".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["dev".into()]),
                },
            ]),
        };
        let selector = Selector::from_label_selector(&api)?;
        assert_eq!(
            selector.to_string(),
            "app=web,canary,env notin (dev),tier in (edge,front),track"
                .replace("canary,", "!canary,")
        );
        assert!(selector.matches(&labels(&[("app", "web"), ("tier", "edge"), ("track", "a")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "edge")])));
        assert!(Selector::from_label_selector(&LabelSelector::default())?.is_empty());
        Ok(())
    }

    #[test]
    fn label_selector_with_bad_operator_is_an_error() {
        let api = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Near".into(),
                values: None,
            }]),
        };
        assert_eq!(
            Selector::from_label_selector(&api),
            Err(SelectorError::Operator("Near".into()))
        );
        assert!(!label_selector_matches(Some(&api), &labels(&[])));
        assert!(!label_selector_matches(None, &labels(&[])));
    }
}
