//! Conversion between API versions that share storage: `events.k8s.io/v1` Events are stored as
//! `v1` Events (as upstream does), so events recorded by either client show up in both
//! `kubectl get events` and `kubectl describe`; HorizontalPodAutoscalers are stored as
//! `autoscaling/v2` and served also as `autoscaling/v1` (see [`hpa`]).

mod hpa;

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

/// Whether objects of `resource` may be served in another form than the stored one (so the
/// stored JSON cannot be answered as is): `events.k8s.io` Events and HorizontalPodAutoscalers
/// (v1 always; v2 too, since servers before this conversion stored v1 objects as they came).
pub fn stored_form_differs(resource: &Resource) -> bool {
    is_new_event(resource) || hpa::is_hpa(resource)
}

/// Whether two objects of `resource` that differ in their served form are the same once
/// stored (ignoring resourceVersion and managedFields), so that writing one over the other
/// changes nothing; upstream compares the encoded stored bytes the same way. For example a v1
/// HPA whose conversion annotation is spelled with other key order or spacing.
pub fn same_when_stored(resource: &Resource, a: &Value, b: &Value) -> bool {
    if !stored_form_differs(resource) {
        return false;
    }
    let stored = |v: &Value| {
        let mut v = to_storage(resource, v.clone());
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    stored(a) == stored(b)
}

/// `object` as it reads back once stored: for HorizontalPodAutoscalers the round trip through
/// the stored v2 form (so write answers show what a read will, e.g. v1's zero replica
/// counts); other objects as they are.
pub fn normalized(resource: &Resource, object: Value) -> Value {
    if hpa::is_hpa(resource) {
        from_storage(resource, to_storage(resource, object))
    } else {
        object
    }
}

/// The stored form of an object of `resource`.
pub fn to_storage(resource: &Resource, object: Value) -> Value {
    match object {
        Value::Object(m) if is_new_event(resource) => event_to_core(&m),
        Value::Object(m) if hpa::is_hpa(resource) => hpa::to_storage(resource, m),
        other => other,
    }
}

/// The `resource` form of a stored object.
pub fn from_storage(resource: &Resource, object: Value) -> Value {
    match object {
        Value::Object(m) if is_new_event(resource) => event_from_core(&m),
        Value::Object(m) if hpa::is_hpa(resource) => hpa::from_storage(resource, m),
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
