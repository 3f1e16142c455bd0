//! Conversion between API versions that share storage: `events.k8s.io/v1` Events are stored as
//! `v1` Events (as upstream does), so events recorded by either client show up in both
//! `kubectl get events` and `kubectl describe`.

use api_types::registry::Resource;
use serde_json::{json, Map, Value};

fn is_new_event(resource: &Resource) -> bool {
    resource.group == "events.k8s.io" && resource.plural == "events"
}

fn moved(from: &Map<String, Value>, pairs: &[(&str, &str)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (src, dst) in pairs {
        if let Some(v) = from.get(*src).filter(|v| !v.is_null()) {
            out.insert((*dst).to_string(), v.clone());
        }
    }
    out
}

const SHARED: &[(&str, &str)] = &[
    ("metadata", "metadata"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reason", "reason"),
    ("action", "action"),
    ("type", "type"),
    ("related", "related"),
    ("reportingInstance", "reportingInstance"),
];

/// `events.k8s.io/v1` -> `v1` Event.
fn event_to_core(e: &Map<String, Value>) -> Value {
    let mut out = moved(e, SHARED);
    out.extend(moved(
        e,
        &[
            ("regarding", "involvedObject"),
            ("note", "message"),
            ("reportingController", "reportingComponent"),
            ("deprecatedSource", "source"),
            ("deprecatedFirstTimestamp", "firstTimestamp"),
            ("deprecatedLastTimestamp", "lastTimestamp"),
            ("deprecatedCount", "count"),
        ],
    ));
    if !out.contains_key("source") {
        if let Some(c) = e.get("reportingController") {
            let mut source = json!({"component": c});
            if let Some(h) = e.get("reportingInstance") {
                source["host"] = h.clone();
            }
            out.insert("source".into(), source);
        }
    }
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// `v1` -> `events.k8s.io/v1` Event.
fn event_from_core(e: &Map<String, Value>) -> Value {
    let mut out = moved(e, SHARED);
    out.extend(moved(
        e,
        &[
            ("involvedObject", "regarding"),
            ("message", "note"),
            ("reportingComponent", "reportingController"),
            ("source", "deprecatedSource"),
            ("firstTimestamp", "deprecatedFirstTimestamp"),
            ("lastTimestamp", "deprecatedLastTimestamp"),
            ("count", "deprecatedCount"),
        ],
    ));
    if !out.contains_key("reportingController") {
        if let Some(c) = e.get("source").and_then(|s| s.get("component")) {
            out.insert("reportingController".into(), c.clone());
        }
    }
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// The stored form of an object of `resource`.
pub fn to_storage(resource: &Resource, object: Value) -> Value {
    match object {
        Value::Object(m) if is_new_event(resource) => event_to_core(&m),
        other => other,
    }
}

/// The `resource` form of a stored object.
pub fn from_storage(resource: &Resource, object: Value) -> Value {
    match object {
        Value::Object(m) if is_new_event(resource) => event_from_core(&m),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_events_round_trip_through_core_storage() {
        let r = api_types::registry::find("events.k8s.io", "v1", "events").expect("events");
        let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": "default"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "Scheduled", "reason": "Scheduled",
            "type": "Normal", "reportingController": "default-scheduler",
            "reportingInstance": "s-1", "eventTime": "2024-01-01T00:00:00.000000Z"});
        let core = to_storage(r, e.clone());
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "Scheduled");
        assert_eq!(core["source"]["component"], "default-scheduler");
        let back = from_storage(r, core);
        assert_eq!(back["regarding"], e["regarding"]);
        assert_eq!(back["note"], "Scheduled");
        assert_eq!(back["reportingController"], "default-scheduler");
    }
}
