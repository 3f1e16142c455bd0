//! Kubernetes JSONPath templates (`-o jsonpath=...`, custom columns, `wait --for=jsonpath`):
//! literal text, `{.a.b}`, `[n]`, `[a:b]`, `[*]`, `..name`, `['key']`, filters
//! `[?(@.type=="Ready")]`, `{range ...}...{end}` and quoted literals like `{"\n"}`.
//! Missing keys print nothing, as kubectl's printer allows them.

use serde_json::Value;

use crate::error::{Error, Result};

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Text(String),
    Path(Path),
    Range(Path, Vec<Node>),
}

#[derive(Clone, Debug, PartialEq)]
struct Path {
    from_root: bool,
    steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Wildcard,
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Filter(Box<Filter>),
    Recursive(String),
}

#[derive(Clone, Debug, PartialEq)]
struct Filter {
    left: Path,
    op: Option<(String, Value)>,
}

fn bad(template: &str, why: &str) -> Error {
    Error::Usage(format!("error parsing jsonpath {template}, {why}"))
}

impl Template {
    /// Parses a template.
    pub fn parse(template: &str) -> Result<Self> {
        let mut stack: Vec<(Option<Path>, Vec<Node>)> = vec![(None, Vec::new())];
        let mut rest = template;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                push(&mut stack, Node::Text(rest.to_string()));
                break;
            };
            if open > 0 {
                push(&mut stack, Node::Text(rest[..open].to_string()));
            }
            let inner_start = open + 1;
            let close = find_close(&rest[inner_start..])
                .ok_or_else(|| bad(template, "unclosed action"))?
                + inner_start;
            let action = rest[inner_start..close].trim();
            rest = &rest[close + 1..];
            if action == "end" {
                let (path, nodes) = stack
                    .pop()
                    .ok_or_else(|| bad(template, "not in range, nothing to end"))?;
                let path = path.ok_or_else(|| bad(template, "not in range, nothing to end"))?;
                push(&mut stack, Node::Range(path, nodes));
            } else if let Some(expr) = action.strip_prefix("range ") {
                stack.push((Some(parse_path(expr.trim(), template)?), Vec::new()));
            } else if action.starts_with('"') || action.starts_with('\'') {
                push(&mut stack, Node::Text(parse_quoted(action, template)?));
            } else {
                push(&mut stack, Node::Path(parse_path(action, template)?));
            }
        }
        if stack.len() != 1 {
            return Err(bad(template, "unclosed range"));
        }
        let nodes = stack.pop().map(|(_, n)| n).unwrap_or_default();
        Ok(Template { nodes })
    }

    /// Renders the template against `root`.
    pub fn render(&self, root: &Value) -> String {
        let mut out = String::new();
        render_nodes(&self.nodes, root, root, &mut out);
        out
    }

    /// The values the template's expressions select (used by custom columns and `wait`).
    pub fn values(&self, root: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        for node in &self.nodes {
            if let Node::Path(path) = node {
                out.extend(eval(path, root, root));
            }
        }
        out
    }
}

fn push(stack: &mut [(Option<Path>, Vec<Node>)], node: Node) {
    if let Some((_, nodes)) = stack.last_mut() {
        nodes.push(node);
    }
}

fn find_close(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '}' => return Some(i),
                _ => {}
            },
        }
    }
    None
}

fn parse_quoted(action: &str, template: &str) -> Result<String> {
    let quote = action.chars().next().unwrap_or('"');
    let body = action
        .strip_prefix(quote)
        .and_then(|a| a.strip_suffix(quote))
        .ok_or_else(|| bad(template, "unterminated string"))?;
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn parse_path(expr: &str, template: &str) -> Result<Path> {
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut path = Path {
        from_root: false,
        steps: Vec::new(),
    };
    if chars.first() == Some(&'$') {
        path.from_root = true;
        i = 1;
    } else if chars.first() == Some(&'@') {
        i = 1;
    }
    while i < chars.len() {
        match chars[i] {
            '.' if chars.get(i + 1) == Some(&'.') => {
                i += 2;
                let name = read_name(&chars, &mut i);
                path.steps.push(Step::Recursive(name));
            }
            '.' => {
                i += 1;
                let name = read_name(&chars, &mut i);
                match name.as_str() {
                    "" => {}
                    "*" => path.steps.push(Step::Wildcard),
                    _ => path.steps.push(Step::Field(name)),
                }
            }
            '[' => {
                let close = matching_bracket(&chars, i)
                    .ok_or_else(|| bad(template, "unterminated array"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                path.steps.push(parse_bracket(inner.trim(), template)?);
                i = close + 1;
            }
            c if c.is_whitespace() => i += 1,
            _ => {
                let name = read_name(&chars, &mut i);
                if name.is_empty() {
                    return Err(bad(
                        template,
                        &format!("unrecognized character in action: {}", chars[i]),
                    ));
                }
                path.steps.push(Step::Field(name));
            }
        }
    }
    Ok(path)
}

fn read_name(chars: &[char], i: &mut usize) -> String {
    let start = *i;
    while *i < chars.len() && !matches!(chars[*i], '.' | '[' | ' ') {
        *i += 1;
    }
    chars[start..*i].iter().collect()
}

fn matching_bracket(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

fn parse_bracket(inner: &str, template: &str) -> Result<Step> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        return parse_filter(filter.trim(), template);
    }
    if inner.starts_with('\'') || inner.starts_with('"') {
        return Ok(Step::Field(parse_quoted(inner, template)?));
    }
    if let Some((a, b)) = inner.split_once(':') {
        let num = |s: &str| -> Result<Option<i64>> {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse().map(Some).map_err(|_| bad(template, "bad slice"))
            }
        };
        let b = b.split(':').next().unwrap_or("");
        return Ok(Step::Slice(num(a)?, num(b)?));
    }
    inner
        .parse()
        .map(Step::Index)
        .map_err(|_| bad(template, &format!("bad index [{inner}]")))
}

fn parse_filter(filter: &str, template: &str) -> Result<Step> {
    for op in ["==", "!=", "<=", ">=", "<", ">"] {
        if let Some((left, right)) = filter.split_once(op) {
            let right = right.trim();
            let value = if right.starts_with('"') || right.starts_with('\'') {
                Value::String(parse_quoted(right, template)?)
            } else {
                serde_json::from_str(right).unwrap_or_else(|_| Value::String(right.to_string()))
            };
            return Ok(Step::Filter(Box::new(Filter {
                left: parse_path(left.trim(), template)?,
                op: Some((op.to_string(), value)),
            })));
        }
    }
    Ok(Step::Filter(Box::new(Filter {
        left: parse_path(filter, template)?,
        op: None,
    })))
}

fn render_nodes(nodes: &[Node], root: &Value, current: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Path(path) => {
                let values = eval(path, root, current);
                let texts: Vec<String> = values.iter().map(value_text).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(path, body) => {
                for item in eval(path, root, current) {
                    render_nodes(body, root, &item, out);
                }
            }
        }
    }
}

/// How a selected value prints: strings raw, everything else as compact JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn eval(path: &Path, root: &Value, current: &Value) -> Vec<Value> {
    let start = if path.from_root { root } else { current };
    let mut values = vec![start.clone()];
    for step in &path.steps {
        let mut next = Vec::new();
        for value in &values {
            apply_step(step, value, root, &mut next);
        }
        values = next;
    }
    values
}

fn apply_step(step: &Step, value: &Value, root: &Value, out: &mut Vec<Value>) {
    match step {
        Step::Field(name) => {
            if let Some(v) = value.get(name) {
                out.push(v.clone());
            }
        }
        Step::Wildcard => match value {
            Value::Array(items) => out.extend(items.iter().cloned()),
            Value::Object(map) => out.extend(map.values().cloned()),
            _ => {}
        },
        Step::Index(index) => {
            if let Value::Array(items) = value {
                let len = items.len() as i64;
                let i = if *index < 0 { len + index } else { *index };
                if (0..len).contains(&i) {
                    out.push(items[i as usize].clone());
                }
            }
        }
        Step::Slice(from, to) => {
            if let Value::Array(items) = value {
                let len = items.len() as i64;
                let clamp = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) };
                let from = clamp(from.unwrap_or(0));
                let to = clamp(to.unwrap_or(len));
                if from < to {
                    out.extend(items[from as usize..to as usize].iter().cloned());
                }
            }
        }
        Step::Filter(filter) => {
            let candidates: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for item in candidates {
                if filter_matches(filter, root, item) {
                    out.push(item.clone());
                }
            }
        }
        Step::Recursive(name) => collect_recursive(value, name, out),
    }
}

fn filter_matches(filter: &Filter, root: &Value, item: &Value) -> bool {
    let left = eval(&filter.left, root, item);
    match &filter.op {
        None => !left.is_empty(),
        Some((op, right)) => left.iter().any(|l| compare(l, op, right)),
    }
}

fn compare(left: &Value, op: &str, right: &Value) -> bool {
    if let (Some(l), Some(r)) = (left.as_f64(), right.as_f64()) {
        return match op {
            "==" => l == r,
            "!=" => l != r,
            "<" => l < r,
            "<=" => l <= r,
            ">" => l > r,
            ">=" => l >= r,
            _ => false,
        };
    }
    let (l, r) = (value_text(left), value_text(right));
    match op {
        "==" => l == r,
        "!=" => l != r,
        "<" => l < r,
        "<=" => l <= r,
        ">" => l > r,
        ">=" => l >= r,
        _ => false,
    }
}

fn collect_recursive(value: &Value, name: &str, out: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            if let Some(v) = map.get(name) {
                out.push(v.clone());
            }
            for v in map.values() {
                collect_recursive(v, name, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_recursive(v, name, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({
            "kind": "List",
            "items": [
                {"metadata": {"name": "a", "labels": {"app": "web"}},
                 "spec": {"containers": [{"name": "c1", "image": "busybox:1.35"}, {"name": "c2", "image": "nginx"}]},
                 "status": {"podIP": "10.244.0.5", "conditions": [
                     {"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]}},
                {"metadata": {"name": "b"},
                 "spec": {"containers": [{"name": "c1", "image": "busybox:1.35"}]},
                 "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
            ]
        })
    }

    #[test]
    fn templates_render_like_kubectl() {
        let cases = [
            ("{.items[*].metadata.name}", "a b"),
            ("{.items[0].status.podIP}", "10.244.0.5"),
            ("{.items[-1].metadata.name}", "b"),
            ("{.items[0:1].metadata.name}", "a"),
            ("{.items[*].spec.containers[*].image}", "busybox:1.35 nginx busybox:1.35"),
            ("{range .items[*]}{.metadata.name}{\"\\n\"}{end}", "a\nb\n"),
            ("{range .items[*]}{.metadata.name}:{.status.conditions[?(@.type==\"Ready\")].status} {end}", "a:True b:False "),
            ("{.items[?(@.metadata.name=='b')].spec.containers[0].name}", "c1"),
            ("{.items[0].metadata.labels}", r#"{"app":"web"}"#),
            ("{.items[0].metadata.labels['app']}", "web"),
            ("{..podIP}", "10.244.0.5"),
            ("{.items[0].missing.field}", ""),
            ("name={.items[1].metadata.name}!", "name=b!"),
            ("{$.kind}", "List"),
            ("{.items[?(@.status.podIP)].metadata.name}", "a"),
        ];
        let root = list();
        for (template, want) in cases {
            let got = Template::parse(template).map(|t| t.render(&root));
            assert_eq!(got.ok().as_deref(), Some(want), "{template}");
        }
    }

    #[test]
    fn malformed_templates_are_rejected() {
        for template in ["{.a", "{range .items[*]}{.x}", "{end}", "{.items[}"] {
            assert!(Template::parse(template).is_err(), "{template}");
        }
    }

    #[test]
    fn values_are_returned_for_columns() {
        let t = Template::parse("{.spec.containers[*].name}").ok();
        let values = t.map(|t| t.values(&list()["items"][0]));
        assert_eq!(values, Some(vec![json!("c1"), json!("c2")]));
    }
}
