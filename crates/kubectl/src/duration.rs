//! Go-style durations (`5s`, `1m30s`, `2h`, `100ms`) as the upstream flags accept them.

use std::time::Duration;

use crate::error::{Error, Result};

/// Parses a Go duration. With `bare_seconds`, a plain number means seconds (as `--request-timeout`).
pub fn parse_duration(text: &str, bare_seconds: bool) -> Result<Duration> {
    let bad = || Error::Usage(format!("invalid duration {text:?}"));
    let text = text.trim();
    if text.is_empty() || text == "0" {
        return Ok(Duration::ZERO);
    }
    if bare_seconds {
        if let Ok(secs) = text.parse::<u64>() {
            return Ok(Duration::from_secs(secs));
        }
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if number_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let cases = [
            ("5s", false, Some(5.0)),
            ("1m30s", false, Some(90.0)),
            ("2h", false, Some(7200.0)),
            ("100ms", false, Some(0.1)),
            ("0", false, Some(0.0)),
            ("10", true, Some(10.0)),
            ("10", false, None),
            ("abc", false, None),
            ("5x", false, None),
        ];
        for (text, bare, want) in cases {
            let got = parse_duration(text, bare).ok().map(|d| d.as_secs_f64());
            assert_eq!(got, want, "{text}");
        }
    }
}
