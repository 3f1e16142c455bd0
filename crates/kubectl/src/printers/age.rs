//! Ages as upstream prints them (`duration.HumanDuration`): `45s`, `3m20s`, `5h`, `3d4h`, `2y`.

use jiff::Timestamp;
use serde_json::Value;

pub use api_types::duration::human_duration;

/// The age of a timestamp string (RFC 3339) relative to now, or `<unknown>`.
pub fn age_of(timestamp: Option<&str>) -> String {
    match timestamp.and_then(|t| t.parse::<Timestamp>().ok()) {
        Some(ts) => human_duration(Timestamp::now().as_second() - ts.as_second()),
        None => "<unknown>".into(),
    }
}

/// The age of an object from its `metadata.creationTimestamp`.
pub fn object_age(object: &Value) -> String {
    age_of(object["metadata"]["creationTimestamp"].as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_upstream() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (47 * 3600, "47h"),
            (3 * 86400, "3d"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400, "3y"),
            (3 * 365 * 86400 + 10 * 86400, "3y10d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn bad_timestamps_are_unknown() {
        assert_eq!(age_of(Some("yesterday")), "<unknown>");
        assert_eq!(age_of(None), "<unknown>");
    }
}
