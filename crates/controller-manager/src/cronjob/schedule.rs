//! Standard 5-field cron schedules (minute hour day-of-month month day-of-week) as upstream's
//! robfig/cron parses them: `*`, `?`, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, month
//! and weekday names, and the `@yearly`/`@annually`/`@monthly`/`@weekly`/`@daily`/`@midnight`/
//! `@hourly` shorthands. Next times are computed in an IANA time zone through jiff.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Why a schedule could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not five fields.
    #[error("expected exactly 5 fields, found {0}: {1}")]
    FieldCount(usize, String),
    /// A shorthand this parser does not know.
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    /// A field value is not a number or name, or out of range.
    #[error("failed to parse {field} field {value:?}: {reason}")]
    Field {
        /// Which field (minute, hour, ...).
        field: &'static str,
        /// The offending text.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed schedule: one bit set per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Day-of-month or day-of-week was `*`/`?`: both must then match (else either may).
    dom_star: bool,
    dow_star: bool,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

fn field_error(spec: &FieldSpec, value: &str, reason: impl Into<String>) -> ScheduleError {
    ScheduleError::Field {
        field: spec.name,
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_value(spec: &FieldSpec, text: &str, whole: &str) -> Result<u32, ScheduleError> {
    let lower = text.to_ascii_lowercase();
    if let Some(position) = spec.names.iter().position(|n| *n == lower) {
        let offset = u32::try_from(position).unwrap_or(0);
        return Ok(spec.min + offset);
    }
    let value: u32 = text
        .parse()
        .map_err(|_| field_error(spec, whole, format!("invalid value {text:?}")))?;
    // Upstream accepts 7 as Sunday? robfig does not; keep to 0-6.
    Ok(value)
}

fn parse_field(spec: &FieldSpec, text: &str) -> Result<(u64, bool), ScheduleError> {
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        if part.is_empty() {
            return Err(field_error(spec, text, "empty list element"));
        }
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| field_error(spec, text, format!("invalid step {step:?}")))?;
                if step == 0 {
                    return Err(field_error(
                        spec,
                        text,
                        "step of range should be a positive number",
                    ));
                }
                (range, Some(step))
            }
            None => (part, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            if step.is_none() {
                star = true;
            }
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (parse_value(spec, a, text)?, parse_value(spec, b, text)?)
        } else {
            let start = parse_value(spec, range, text)?;
            // `n/step` means n through the maximum.
            (start, if step.is_some() { spec.max } else { start })
        };
        if start < spec.min || end > spec.max {
            return Err(field_error(
                spec,
                text,
                format!("beyond range [{}, {}]", spec.min, spec.max),
            ));
        }
        if start > end {
            return Err(field_error(spec, text, "beginning of range after end"));
        }
        let step = step.unwrap_or(1);
        let mut value = start;
        while value <= end {
            bits |= 1 << value;
            value += step;
        }
    }
    Ok((bits, star))
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        let expanded = match trimmed {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(ScheduleError::Descriptor(other.to_string()))
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ScheduleError::FieldCount(fields.len(), input.to_string()));
        }
        let (minute, _) = parse_field(&MINUTE, fields[0])?;
        let (hour, _) = parse_field(&HOUR, fields[1])?;
        let (dom, dom_star) = parse_field(&DOM, fields[2])?;
        let (month, _) = parse_field(&MONTH, fields[3])?;
        let (dow, dow_star) = parse_field(&DOW, fields[4])?;
        Ok(Schedule {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }
}

fn has(bits: u64, value: i8) -> bool {
    u32::try_from(value).is_ok_and(|v| bits & (1 << v) != 0)
}

impl Schedule {
    fn day_matches(&self, date: Date) -> bool {
        let dom = has(self.dom, date.day());
        let dow = has(self.dow, date.weekday().to_sunday_zero_offset());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `after`, in `tz`; `None` if there is none within
    /// five years (e.g. `0 0 30 2 *`).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        // Start at the next whole minute.
        let mut t = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit_year = t.year() + 5;
        loop {
            if t.year() > limit_year {
                return None;
            }
            if !has(self.month, t.month()) {
                let first = Date::new(t.year(), t.month(), 1).ok()?;
                t = first
                    .checked_add(1.month())
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t
                    .date()
                    .checked_add(1.day())
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !has(self.hour, t.hour()) {
                t = hour_start(t)?.checked_add(1.hour()).ok()?;
                continue;
            }
            if !has(self.minute, t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let candidate = tz.to_ambiguous_zoned(t).compatible().ok()?.timestamp();
            if candidate > after {
                return Some(candidate);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
    }
}

fn hour_start(t: DateTime) -> Option<DateTime> {
    t.with()
        .minute(0)
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn next_times_follow_the_schedule() {
        let utc = TimeZone::UTC;
        let cases = [
            (
                "*/5 * * * *",
                "2024-01-01T00:02:00Z",
                "2024-01-01T00:05:00Z",
            ),
            ("* * * * *", "2024-01-01T00:02:30Z", "2024-01-01T00:03:00Z"),
            ("0 * * * *", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
            ("@hourly", "2024-01-01T00:59:59Z", "2024-01-01T01:00:00Z"),
            ("@daily", "2024-01-01T12:00:00Z", "2024-01-02T00:00:00Z"),
            ("@weekly", "2024-01-01T12:00:00Z", "2024-01-07T00:00:00Z"),
            ("@monthly", "2024-01-15T00:00:00Z", "2024-02-01T00:00:00Z"),
            ("@yearly", "2024-01-15T00:00:00Z", "2025-01-01T00:00:00Z"),
            (
                "30 9 * * mon-fri",
                "2024-01-05T10:00:00Z",
                "2024-01-08T09:30:00Z",
            ),
            (
                "0 0 29 feb *",
                "2024-03-01T00:00:00Z",
                "2028-02-29T00:00:00Z",
            ),
            (
                "15,45 10-12/2 * * *",
                "2024-01-01T10:20:00Z",
                "2024-01-01T10:45:00Z",
            ),
            (
                "15,45 10-12/2 * * *",
                "2024-01-01T10:50:00Z",
                "2024-01-01T12:15:00Z",
            ),
            ("0 0 1 * 1", "2024-01-02T00:00:00Z", "2024-01-08T00:00:00Z"),
            (
                "0 0 13 * fri",
                "2024-09-01T00:00:00Z",
                "2024-09-06T00:00:00Z",
            ),
            (
                "5/20 * * * *",
                "2024-01-01T00:06:00Z",
                "2024-01-01T00:25:00Z",
            ),
        ];
        for (schedule, after, want) in cases {
            let parsed: Schedule = schedule
                .parse()
                .unwrap_or_else(|e| panic!("{schedule}: {e}"));
            assert_eq!(
                parsed.next(at(after), &utc),
                Some(at(want)),
                "{schedule} after {after}"
            );
        }
    }

    #[test]
    fn time_zones_shift_the_schedule() {
        let tz = TimeZone::get("America/New_York").unwrap_or(TimeZone::UTC);
        let parsed: Schedule = "0 9 * * *".parse().unwrap_or_else(|e| panic!("{e}"));
        // 09:00 EST is 14:00 UTC in January.
        assert_eq!(
            parsed.next(at("2024-01-10T00:00:00Z"), &tz),
            Some(at("2024-01-10T14:00:00Z"))
        );
    }

    #[test]
    fn bad_schedules_are_rejected() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
            "@every",
            "1,,2 * * * *",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad:?} should not parse");
        }
        assert_eq!(
            "@reboot".parse::<Schedule>(),
            Err(ScheduleError::Descriptor("@reboot".into()))
        );
    }

    #[test]
    fn impossible_dates_have_no_next_time() {
        let parsed: Schedule = "0 0 30 2 *".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            parsed.next(at("2024-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }
}
