//! YAML exactly as upstream kubectl prints it (sigs.k8s.io/yaml over go-yaml v2): keys sorted,
//! sequences not indented under their key, strings that would read back as something else
//! (`"10"`, `"true"`, timestamps, `""`) double-quoted, strings that cannot be plain
//! single-quoted, multi-line strings as literal blocks (`|`, `|-`, `|+`), and long scalars folded
//! at spaces past column 80.

use serde_json::Value;

const BEST_WIDTH: usize = 80;

/// Renders a value as go-yaml v2 would.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => emit_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => emit_seq(&mut out, items, 0),
        other => {
            let mut line = String::new();
            scalar(&mut line, other, 0, 0);
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn sorted(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn emit_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (i, (key, value)) in sorted(map).into_iter().enumerate() {
        if i > 0 || !out.ends_with("- ") {
            out.push_str(&" ".repeat(indent));
        }
        let key_text = key_scalar(key);
        out.push_str(&key_text);
        out.push(':');
        emit_value_after_key(out, value, indent, indent + key_text.chars().count() + 2);
    }
}

fn emit_value_after_key(out: &mut String, value: &Value, indent: usize, column: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            emit_map(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            emit_seq(out, items, indent);
        }
        other => {
            out.push(' ');
            scalar(out, other, indent + 2, column);
            out.push('\n');
        }
    }
}

fn emit_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => emit_map(out, map, indent + 2),
            Value::Array(inner) if !inner.is_empty() => {
                // go-yaml puts a nested sequence's first item on the dash line.
                let mut nested = String::new();
                emit_seq(&mut nested, inner, indent + 2);
                out.push_str(nested.trim_start_matches(' '));
            }
            other => {
                scalar(out, other, indent + 2, indent + 2);
                out.push('\n');
            }
        }
    }
}

fn key_scalar(key: &str) -> String {
    let mut out = String::new();
    match style_for(key, true) {
        Style::Plain => out.push_str(key),
        Style::Single => single_quoted(&mut out, key, 0, 0, false),
        Style::Double | Style::Literal => double_quoted(&mut out, key, 0, 0, false),
    }
    out
}

fn scalar(out: &mut String, value: &Value, indent: usize, column: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => match style_for(s, false) {
            Style::Plain => plain(out, s, indent, column),
            Style::Single => single_quoted(out, s, indent, column, true),
            Style::Double => double_quoted(out, s, indent, column, true),
            Style::Literal => literal(out, s, indent),
        },
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

#[derive(Debug, PartialEq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

fn style_for(s: &str, simple_key: bool) -> Style {
    let a = analyze(s);
    if a.special || a.space_break {
        return Style::Double;
    }
    if s.contains('\n') {
        if simple_key || a.trailing_space {
            return Style::Double;
        }
        return Style::Literal;
    }
    if resolves_to_non_string(s) {
        return Style::Double;
    }
    if a.block_plain_allowed {
        return Style::Plain;
    }
    if a.break_space {
        return Style::Double;
    }
    Style::Single
}

#[derive(Default)]
struct Analysis {
    block_plain_allowed: bool,
    special: bool,
    space_break: bool,
    break_space: bool,
    trailing_space: bool,
}

fn is_printable(c: char) -> bool {
    matches!(c, '\n' | '\u{20}'..='\u{7E}' | '\u{85}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
        && c != '\u{FEFF}'
}

fn analyze(s: &str) -> Analysis {
    let chars: Vec<char> = s.chars().collect();
    let mut a = Analysis::default();
    if chars.is_empty() {
        return a;
    }
    let blank = |i: usize| {
        chars
            .get(i)
            .is_none_or(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
    };
    let mut indicators = s.starts_with("---") || s.starts_with("...");
    let (mut leading_space, mut leading_break, mut trailing_break) = (false, false, false);
    let mut line_breaks = false;
    let (mut prev_space, mut prev_break) = (false, false);
    for (i, &c) in chars.iter().enumerate() {
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => indicators = true,
                '?' | ':' | '-' if blank(1) => indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if blank(i + 1) => indicators = true,
                '#' if matches!(chars[i - 1], ' ' | '\t') => indicators = true,
                _ => {}
            }
        }
        if !is_printable(c) {
            a.special = true;
        }
        if c == '\n' {
            line_breaks = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i == chars.len() - 1 {
                a.trailing_space = true;
            }
            if prev_break {
                a.break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if c == '\n' {
            if i == 0 {
                leading_break = true;
            }
            if i == chars.len() - 1 {
                trailing_break = true;
            }
            if prev_space {
                a.space_break = true;
            }
            prev_break = true;
            prev_space = false;
        } else {
            prev_space = false;
            prev_break = false;
        }
    }
    a.block_plain_allowed = !(indicators
        || leading_space
        || leading_break
        || a.trailing_space
        || trailing_break
        || line_breaks
        || a.special
        || a.space_break
        || a.break_space);
    a
}

/// Whether go-yaml would read the plain scalar back as a non-string (bool, null, number, ...).
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: [&str; 36] = [
        "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE", "n", "N", "no",
        "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE", "~", "null", "Null", "NULL",
        ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "<<", "+.inf", "-.inf", "-.Inf",
    ];
    if s.is_empty() || WORDS.contains(&s) || matches!(s, "+.Inf" | "+.INF" | "-.INF") {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if !(first.is_ascii_digit() || matches!(first, '+' | '-' | '.')) {
        return false;
    }
    is_int(s) || is_float(s) || is_timestamp(s) || is_base60(s)
}

fn is_int(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s).replace('_', "");
    let (digits, radix) =
        if let Some(r) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (r.to_string(), 16)
        } else if let Some(r) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (r.to_string(), 2)
        } else if let Some(r) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (r.to_string(), 8)
        } else if body.len() > 1 && body.starts_with('0') {
            (body[1..].to_string(), 8)
        } else {
            (body.clone(), 10)
        };
    !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix))
}

fn is_float(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => !frac.is_empty() && frac.chars().all(|c| c.is_ascii_digit()),
        Some((int, frac)) => {
            !int.is_empty()
                && int.chars().all(|c| c.is_ascii_digit())
                && frac.chars().all(|c| c.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.chars().all(|c| c.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

fn is_timestamp(s: &str) -> bool {
    let date_end = s.find(['T', 't', ' ']).unwrap_or(s.len());
    let parts: Vec<&str> = s[..date_end].split('-').collect();
    let date_ok = parts.len() == 3
        && parts[0].len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit()))
        && parts[1].len() <= 2
        && parts[2].len() <= 2;
    if !date_ok {
        return false;
    }
    if date_end == s.len() {
        return true;
    }
    let time = &s[date_end + 1..];
    let hms: Vec<&str> = time
        .split(['Z', '+', '-'])
        .next()
        .unwrap_or("")
        .split(':')
        .collect();
    hms.len() == 3
        && hms
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

fn is_base60(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let mut parts = body.split(':');
    let first = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    !rest.is_empty()
        && first.starts_with(|c: char| c.is_ascii_digit())
        && first.chars().all(|c| c.is_ascii_digit() || c == '_')
        && rest.iter().enumerate().all(|(i, p)| {
            let p = if i == rest.len() - 1 {
                p.split('.').next().unwrap_or("")
            } else {
                p
            };
            !p.is_empty()
                && p.len() <= 2
                && p.chars().all(|c| c.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|v| v < 60)
        })
}

fn write_indent(out: &mut String, indent: usize) -> usize {
    out.push('\n');
    out.push_str(&" ".repeat(indent));
    indent
}

fn plain(out: &mut String, s: &str, indent: usize, mut column: usize) {
    let chars: Vec<char> = s.chars().collect();
    let mut spaces = false;
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            if !spaces && column > BEST_WIDTH && chars.get(i + 1).is_some_and(|n| *n != ' ') {
                column = write_indent(out, indent);
            } else {
                out.push(c);
                column += 1;
            }
            spaces = true;
        } else {
            out.push(c);
            column += 1;
            spaces = false;
        }
    }
}

fn single_quoted(out: &mut String, s: &str, indent: usize, mut column: usize, allow_breaks: bool) {
    let chars: Vec<char> = s.chars().collect();
    out.push('\'');
    column += 1;
    let mut spaces = false;
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            if allow_breaks
                && !spaces
                && column > BEST_WIDTH
                && i != 0
                && i != chars.len() - 1
                && chars.get(i + 1).is_some_and(|n| *n != ' ')
            {
                column = write_indent(out, indent);
            } else {
                out.push(c);
                column += 1;
            }
            spaces = true;
        } else {
            if c == '\'' {
                out.push('\'');
                column += 1;
            }
            out.push(c);
            column += 1;
            spaces = false;
        }
    }
    out.push('\'');
}

fn double_quoted(out: &mut String, s: &str, indent: usize, mut column: usize, allow_breaks: bool) {
    let chars: Vec<char> = s.chars().collect();
    out.push('"');
    column += 1;
    let mut spaces = false;
    for (i, &c) in chars.iter().enumerate() {
        if !is_printable(c) || c == '\n' || c == '"' || c == '\\' || c == '\u{FEFF}' {
            let escaped = match c {
                '\0' => "\\0".to_string(),
                '\u{7}' => "\\a".to_string(),
                '\u{8}' => "\\b".to_string(),
                '\t' => "\\t".to_string(),
                '\n' => "\\n".to_string(),
                '\u{B}' => "\\v".to_string(),
                '\u{C}' => "\\f".to_string(),
                '\r' => "\\r".to_string(),
                '\u{1B}' => "\\e".to_string(),
                '"' => "\\\"".to_string(),
                '\\' => "\\\\".to_string(),
                '\u{85}' => "\\N".to_string(),
                '\u{A0}' => "\\_".to_string(),
                '\u{2028}' => "\\L".to_string(),
                '\u{2029}' => "\\P".to_string(),
                c if (c as u32) <= 0xFF => format!("\\x{:02X}", c as u32),
                c if (c as u32) <= 0xFFFF => format!("\\u{:04X}", c as u32),
                c => format!("\\U{:08X}", c as u32),
            };
            column += escaped.len();
            out.push_str(&escaped);
            spaces = false;
        } else if c == ' ' {
            if allow_breaks && !spaces && column > BEST_WIDTH && i != 0 && i != chars.len() - 1 {
                column = write_indent(out, indent);
                if chars.get(i + 1) == Some(&' ') {
                    out.push('\\');
                    column += 1;
                }
            } else {
                out.push(c);
                column += 1;
            }
            spaces = true;
        } else {
            out.push(c);
            column += 1;
            spaces = false;
        }
    }
    out.push('"');
}

fn literal(out: &mut String, s: &str, indent: usize) {
    out.push('|');
    if s.starts_with(' ') || s.starts_with('\n') {
        out.push('2');
    }
    let trailing = s.len() - s.trim_end_matches('\n').len();
    match trailing {
        0 => out.push('-'),
        1 => {}
        _ => out.push('+'),
    }
    let body = if trailing == 0 { s } else { &s[..s.len() - 1] };
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&" ".repeat(indent));
            out.push_str(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_quoted_only_when_go_yaml_would() {
        let cases = [
            ("web", "web"),
            ("10", "\"10\""),
            ("true", "\"true\""),
            ("yes", "\"yes\""),
            ("", "\"\""),
            ("2026-11-22T04:21:49Z", "\"2026-11-22T04:21:49Z\""),
            ("1.5", "\"1.5\""),
            ("0x1F", "\"0x1F\""),
            ("1:20", "\"1:20\""),
            ("10.244.0.0/16", "10.244.0.0/16"),
            ("busybox:1.35", "busybox:1.35"),
            ("*", "'*'"),
            ("- x", "'- x'"),
            ("a: b", "'a: b'"),
            ("it's", "it's"),
            (" lead", "' lead'"),
            ("tab\there", "\"tab\\there\""),
            ("http://x", "http://x"),
            ("100m", "100m"),
            ("v1", "v1"),
            ("-1", "\"-1\""),
        ];
        for (input, want) in cases {
            assert_eq!(
                to_yaml(&json!({ "k": input })),
                format!("k: {want}\n"),
                "{input:?}"
            );
        }
    }

    #[test]
    fn structure_matches_kubectl() {
        let value = json!({"b": [], "a": {}, "list": [{"x": 1, "y": [1, 2]}, "s", [3, 4]], "n": null, "t": true});
        assert_eq!(
            to_yaml(&value),
            "a: {}\nb: []\nlist:\n- x: 1\n  \"y\":\n  - 1\n  - 2\n- s\n- - 3\n  - 4\n\"n\": null\nt: true\n"
        );
    }

    #[test]
    fn multi_line_strings_are_literal_blocks() {
        let value = json!({"metadata": {"annotations": {"last": "{\"a\":1}\n", "two": "a\nb", "keep": "x\n\n"}}});
        assert_eq!(
            to_yaml(&value),
            "metadata:\n  annotations:\n    keep: |+\n      x\n\n    last: |\n      {\"a\":1}\n    two: |-\n      a\n      b\n"
        );
    }

    #[test]
    fn long_scalars_fold_past_column_eighty() {
        let message = "Deployment does not have minimum availability because one of its replicas is not ready yet at all";
        let text = to_yaml(&json!({"status": {"message": message}}));
        assert_eq!(
            text,
            "status:\n  message: Deployment does not have minimum availability because one of its replicas\n    is not ready yet at all\n"
        );
    }
}
