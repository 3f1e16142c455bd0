//! HorizontalPodAutoscaler `autoscaling/v1` <-> `autoscaling/v2`, as upstream converts them.
//!
//! Objects are stored in the v2 form. v1 has only `targetCPUUtilizationPercentage` and
//! `currentCPUUtilizationPercentage`; so that nothing is lost when a v1 client reads and writes
//! back an object, the v2 content v1 cannot express travels in annotations on the v1 form, as
//! upstream does: the other metrics in `autoscaling.alpha.kubernetes.io/metrics`, the current
//! metrics in `.../current-metrics` and the conditions in `.../conditions`, each as JSON in the
//! v1 metric shapes (`targetAverageUtilization`, `metricName`, ...). A v1 object without any
//! metric gets upstream's implicit default of 80% CPU utilization. The v2 form never carries
//! those annotations.

use api_types::registry::Resource;
use serde_json::{json, Map, Value};

/// Other (non-CPU-utilization) metric specs on the v1 form.
pub const METRIC_SPECS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// Current metric statuses on the v1 form.
pub const METRIC_STATUSES_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// Status conditions on the v1 form.
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// Scaling behavior (used by the removed v2beta1; dropped from v2 like the others).
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

const ROUND_TRIP_ANNOTATIONS: &[&str] = &[
    METRIC_SPECS_ANNOTATION,
    METRIC_STATUSES_ANNOTATION,
    CONDITIONS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
];

/// Upstream's default target when a v1 object names no metric.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// Whether `resource` is a HorizontalPodAutoscaler version.
pub fn is_hpa(resource: &Resource) -> bool {
    resource.group == "autoscaling" && resource.plural == "horizontalpodautoscalers"
}

fn is_v1(object: &Map<String, Value>) -> bool {
    object.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1")
}

/// The stored (v2) form of an object of `resource`.
pub fn to_storage(resource: &Resource, object: Map<String, Value>) -> Value {
    if resource.version == "v1" {
        with_v2_status(v1_to_v2(&object))
    } else {
        with_v2_status(without_round_trip_annotations(object))
    }
}

/// The `resource` form of a stored object (objects stored in the v1 form by older servers are
/// read too).
pub fn from_storage(resource: &Resource, object: Map<String, Value>) -> Value {
    match (resource.version == "v1", is_v1(&object)) {
        (true, true) => Value::Object(object),
        (true, false) => v2_to_v1(&object),
        (false, true) => with_v2_status(v1_to_v2(&object)),
        (false, false) => with_v2_status(without_round_trip_annotations(object)),
    }
}

/// Upstream always serialises the v2 `status` with `desiredReplicas` (not omitted when zero);
/// strict clients (the Python one) require it.
fn with_v2_status(mut object: Value) -> Value {
    if let Some(o) = object.as_object_mut() {
        let status = o.entry("status").or_insert_with(|| json!({}));
        if let Some(s) = status.as_object_mut() {
            s.entry("desiredReplicas").or_insert(json!(0));
        }
    }
    object
}

/// Copies the non-null `(from, to)` fields of `src` into a new map.
fn pick(src: &Value, pairs: &[(&str, &str)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (from, to) in pairs {
        if let Some(v) = src.get(*from).filter(|v| !v.is_null()) {
            out.insert((*to).to_string(), v.clone());
        }
    }
    out
}

fn array(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn annotations(meta: &Value) -> Map<String, Value> {
    meta.get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn set_annotations(meta: &mut Value, annotations: Map<String, Value>) {
    if let Some(m) = meta.as_object_mut() {
        if annotations.is_empty() {
            m.remove("annotations");
        } else {
            m.insert("annotations".into(), Value::Object(annotations));
        }
    }
}

fn without_round_trip_annotations(mut object: Map<String, Value>) -> Value {
    if let Some(meta) = object.get_mut("metadata") {
        let mut a = annotations(meta);
        if ROUND_TRIP_ANNOTATIONS.iter().any(|k| a.contains_key(*k)) {
            for k in ROUND_TRIP_ANNOTATIONS {
                a.remove(*k);
            }
            set_annotations(meta, a);
        }
    }
    Value::Object(object)
}

/// Parses a JSON list kept in an annotation; a malformed one is ignored (as if absent).
fn annotation_list(a: &Map<String, Value>, key: &str) -> Option<Vec<Value>> {
    let text = a.get(key)?.as_str()?;
    match serde_json::from_str::<Vec<Value>>(text) {
        Ok(list) => Some(list),
        Err(error) => {
            tracing::warn!(annotation = key, %error, "ignoring a malformed HPA annotation");
            None
        }
    }
}

fn is_cpu_resource(metric: &Value) -> bool {
    metric.get("type").and_then(Value::as_str) == Some("Resource")
        && metric.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
}

fn metric_identifier(name: Option<&Value>, selector: Option<&Value>) -> Value {
    let mut m = Map::new();
    if let Some(n) = name.filter(|v| !v.is_null()) {
        m.insert("name".into(), n.clone());
    }
    if let Some(s) = selector.filter(|v| !v.is_null()) {
        m.insert("selector".into(), s.clone());
    }
    Value::Object(m)
}

/// A v2 `MetricTarget` of `kind` with the given (non-null) values.
fn target(kind: &str, fields: &[(&str, Option<&Value>)]) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!(kind));
    for (k, v) in fields {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            m.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(m)
}

/// The source object of a metric under its type's key (`resource`, `pods`, ...).
fn source_key(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        _ => return None,
    })
}

/// Applies `f` to the source of `metric` (keyed by its type), keeping unknown types as they are.
fn map_metric(metric: &Value, f: impl Fn(&str, &Value) -> Value) -> Value {
    let kind = metric.get("type").and_then(Value::as_str).unwrap_or("");
    let (Some(key), Some(source)) = (source_key(kind), metric.get(source_key(kind).unwrap_or("")))
    else {
        return metric.clone();
    };
    json!({"type": kind, key: f(kind, source)})
}

fn spec_v1_to_v2(kind: &str, s: &Value) -> Value {
    let g = |k: &str| s.get(k);
    match kind {
        "Resource" | "ContainerResource" => {
            let utilization = g("targetAverageUtilization").filter(|v| !v.is_null());
            let t = if utilization.is_some() {
                "Utilization"
            } else {
                "AverageValue"
            };
            let mut out = pick(s, &[("name", "name"), ("container", "container")]);
            out.insert(
                "target".into(),
                target(
                    t,
                    &[
                        ("averageUtilization", utilization),
                        ("averageValue", g("targetAverageValue")),
                    ],
                ),
            );
            Value::Object(out)
        }
        "Pods" => json!({
            "metric": metric_identifier(g("metricName"), g("selector")),
            "target": target("AverageValue", &[("averageValue", g("targetAverageValue"))]),
        }),
        "Object" => {
            let average = g("averageValue").filter(|v| !v.is_null());
            let t = if average.is_some() {
                "AverageValue"
            } else {
                "Value"
            };
            json!({
                "describedObject": g("target").cloned().unwrap_or_else(|| json!({})),
                "metric": metric_identifier(g("metricName"), g("selector")),
                "target": target(t, &[("value", g("targetValue")), ("averageValue", average)]),
            })
        }
        _ => {
            let value = g("targetValue").filter(|v| !v.is_null());
            let t = if value.is_some() {
                "Value"
            } else {
                "AverageValue"
            };
            json!({
                "metric": metric_identifier(g("metricName"), g("metricSelector")),
                "target": target(t, &[("value", value), ("averageValue", g("targetAverageValue"))]),
            })
        }
    }
}

fn spec_v2_to_v1(kind: &str, s: &Value) -> Value {
    let t = |k: &str| s.get("target").and_then(|t| t.get(k)).cloned();
    let metric = |k: &str| s.get("metric").and_then(|m| m.get(k)).cloned();
    let mut out = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            out.insert(k.to_string(), v);
        }
    };
    match kind {
        "Resource" | "ContainerResource" => {
            put("name", s.get("name").cloned());
            put("container", s.get("container").cloned());
            put("targetAverageUtilization", t("averageUtilization"));
            put("targetAverageValue", t("averageValue"));
        }
        "Pods" => {
            put("metricName", metric("name"));
            put("selector", metric("selector"));
            put(
                "targetAverageValue",
                Some(t("averageValue").unwrap_or(json!("0"))),
            );
        }
        "Object" => {
            put("target", s.get("describedObject").cloned());
            put("metricName", metric("name"));
            put("selector", metric("selector"));
            put("targetValue", Some(t("value").unwrap_or(json!("0"))));
            put("averageValue", t("averageValue"));
        }
        _ => {
            put("metricName", metric("name"));
            put("metricSelector", metric("selector"));
            put("targetValue", t("value"));
            put("targetAverageValue", t("averageValue"));
        }
    }
    Value::Object(out)
}

fn status_v1_to_v2(kind: &str, s: &Value) -> Value {
    let g = |k: &str| s.get(k);
    let current = |fields: &[(&str, Option<&Value>)]| {
        let mut m = Map::new();
        for (k, v) in fields {
            if let Some(v) = v.filter(|v| !v.is_null()) {
                m.insert((*k).to_string(), v.clone());
            }
        }
        Value::Object(m)
    };
    match kind {
        "Resource" | "ContainerResource" => {
            let mut out = pick(s, &[("name", "name"), ("container", "container")]);
            out.insert(
                "current".into(),
                current(&[
                    ("averageUtilization", g("currentAverageUtilization")),
                    ("averageValue", g("currentAverageValue")),
                ]),
            );
            Value::Object(out)
        }
        "Pods" => json!({
            "metric": metric_identifier(g("metricName"), g("selector")),
            "current": current(&[("averageValue", g("currentAverageValue"))]),
        }),
        "Object" => json!({
            "describedObject": g("target").cloned().unwrap_or_else(|| json!({})),
            "metric": metric_identifier(g("metricName"), g("selector")),
            "current": current(&[("value", g("currentValue")), ("averageValue", g("averageValue"))]),
        }),
        _ => json!({
            "metric": metric_identifier(g("metricName"), g("metricSelector")),
            "current": current(&[
                ("value", g("currentValue")),
                ("averageValue", g("currentAverageValue")),
            ]),
        }),
    }
}

fn status_v2_to_v1(kind: &str, s: &Value) -> Value {
    let c = |k: &str| s.get("current").and_then(|t| t.get(k)).cloned();
    let metric = |k: &str| s.get("metric").and_then(|m| m.get(k)).cloned();
    let mut out = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            out.insert(k.to_string(), v);
        }
    };
    match kind {
        "Resource" | "ContainerResource" => {
            put("name", s.get("name").cloned());
            put("container", s.get("container").cloned());
            put("currentAverageUtilization", c("averageUtilization"));
            put(
                "currentAverageValue",
                Some(c("averageValue").unwrap_or(json!("0"))),
            );
        }
        "Pods" => {
            put("metricName", metric("name"));
            put("selector", metric("selector"));
            put(
                "currentAverageValue",
                Some(c("averageValue").unwrap_or(json!("0"))),
            );
        }
        "Object" => {
            put("target", s.get("describedObject").cloned());
            put("metricName", metric("name"));
            put("selector", metric("selector"));
            put("currentValue", Some(c("value").unwrap_or(json!("0"))));
            put("averageValue", c("averageValue"));
        }
        _ => {
            put("metricName", metric("name"));
            put("metricSelector", metric("selector"));
            put("currentValue", Some(c("value").unwrap_or(json!("0"))));
            put("currentAverageValue", c("averageValue"));
        }
    }
    Value::Object(out)
}

fn to_json_text(list: &[Value]) -> Value {
    json!(serde_json::to_string(list).unwrap_or_default())
}

/// `autoscaling/v2` -> `autoscaling/v1`.
fn v2_to_v1(object: &Map<String, Value>) -> Value {
    let empty = json!({});
    let spec = object.get("spec").unwrap_or(&empty);
    let status = object.get("status");
    let mut meta = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut notes = annotations(&meta);

    let metrics = array(spec.get("metrics"));
    let mut v1_spec = pick(
        spec,
        &[
            ("scaleTargetRef", "scaleTargetRef"),
            ("minReplicas", "minReplicas"),
            ("maxReplicas", "maxReplicas"),
        ],
    );
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_resource(m)) {
        if let Some(u) = cpu
            .pointer("/resource/target/averageUtilization")
            .filter(|v| !v.is_null())
        {
            v1_spec.insert("targetCPUUtilizationPercentage".into(), u.clone());
        }
    }
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| {
            !(is_cpu_resource(m)
                && m.pointer("/resource/target/averageUtilization")
                    .is_some_and(|v| !v.is_null()))
        })
        .map(|m| map_metric(m, spec_v2_to_v1))
        .collect();
    if !others.is_empty() {
        notes.insert(METRIC_SPECS_ANNOTATION.into(), to_json_text(&others));
    }

    let mut v1_status = Map::new();
    if let Some(status) = status {
        v1_status = pick(
            status,
            &[
                ("observedGeneration", "observedGeneration"),
                ("lastScaleTime", "lastScaleTime"),
            ],
        );
        let current = array(status.get("currentMetrics"));
        for m in current.iter().filter(|m| is_cpu_resource(m)) {
            if let Some(u) = m
                .pointer("/resource/current/averageUtilization")
                .filter(|v| !v.is_null())
            {
                v1_status.insert("currentCPUUtilizationPercentage".into(), u.clone());
            }
        }
        if !current.is_empty() {
            let list: Vec<Value> = current
                .iter()
                .map(|m| map_metric(m, status_v2_to_v1))
                .collect();
            notes.insert(METRIC_STATUSES_ANNOTATION.into(), to_json_text(&list));
        }
        let conditions = array(status.get("conditions"));
        if !conditions.is_empty() {
            notes.insert(CONDITIONS_ANNOTATION.into(), to_json_text(conditions));
        }
    }
    // Not omitted when zero in v1.
    for k in ["currentReplicas", "desiredReplicas"] {
        let n = status
            .and_then(|s| s.get(k))
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(json!(0));
        v1_status.insert(k.into(), n);
    }
    set_annotations(&mut meta, notes);

    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("autoscaling/v1"));
    out.insert("kind".into(), json!("HorizontalPodAutoscaler"));
    out.insert("metadata".into(), meta);
    out.insert("spec".into(), Value::Object(v1_spec));
    out.insert("status".into(), Value::Object(v1_status));
    Value::Object(out)
}

/// `autoscaling/v1` -> `autoscaling/v2`.
fn v1_to_v2(object: &Map<String, Value>) -> Value {
    let empty = json!({});
    let spec = object.get("spec").unwrap_or(&empty);
    let mut meta = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut notes = annotations(&meta);

    let mut v2_spec = pick(
        spec,
        &[
            ("scaleTargetRef", "scaleTargetRef"),
            ("minReplicas", "minReplicas"),
            ("maxReplicas", "maxReplicas"),
        ],
    );
    let mut metrics: Vec<Value> = annotation_list(&notes, METRIC_SPECS_ANNOTATION)
        .unwrap_or_default()
        .iter()
        .map(|m| map_metric(m, spec_v1_to_v2))
        .collect();
    let cpu = spec
        .get("targetCPUUtilizationPercentage")
        .filter(|v| !v.is_null());
    if let Some(cpu) = cpu {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": cpu}}}));
    }
    if metrics.is_empty() {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}));
    }
    v2_spec.insert("metrics".into(), Value::Array(metrics));

    let status = object.get("status").filter(|s| s.is_object());
    let mut v2_status = status
        .map(|s| {
            pick(
                s,
                &[
                    ("observedGeneration", "observedGeneration"),
                    ("lastScaleTime", "lastScaleTime"),
                    ("desiredReplicas", "desiredReplicas"),
                ],
            )
        })
        .unwrap_or_default();
    if let Some(n) = status
        .and_then(|s| s.get("currentReplicas"))
        .filter(|v| v.as_i64() != Some(0) && !v.is_null())
    {
        v2_status.insert("currentReplicas".into(), n.clone());
    }
    let current = match annotation_list(&notes, METRIC_STATUSES_ANNOTATION) {
        Some(list) => list
            .iter()
            .map(|m| map_metric(m, status_v1_to_v2))
            .collect(),
        None => status
            .and_then(|s| s.get("currentCPUUtilizationPercentage"))
            .filter(|v| !v.is_null())
            .map(|u| {
                vec![json!({"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": u}}})]
            })
            .unwrap_or_default(),
    };
    if !current.is_empty() {
        v2_status.insert("currentMetrics".into(), Value::Array(current));
    }
    if let Some(conditions) = annotation_list(&notes, CONDITIONS_ANNOTATION) {
        if !conditions.is_empty() {
            v2_status.insert("conditions".into(), Value::Array(conditions));
        }
    }
    for k in ROUND_TRIP_ANNOTATIONS {
        notes.remove(*k);
    }
    set_annotations(&mut meta, notes);

    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("autoscaling/v2"));
    out.insert("kind".into(), json!("HorizontalPodAutoscaler"));
    out.insert("metadata".into(), meta);
    out.insert("spec".into(), Value::Object(v2_spec));
    if status.is_some() {
        out.insert("status".into(), Value::Object(v2_status));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1() -> &'static Resource {
        api_types::registry::find("autoscaling", "v1", "horizontalpodautoscalers").expect("v1")
    }

    fn v2() -> &'static Resource {
        api_types::registry::find("autoscaling", "v2", "horizontalpodautoscalers").expect("v2")
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    fn rich_v2() -> Value {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"keep": "me"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "memory",
                        "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"},
                        "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "External", "external": {"metric": {"name": "queue",
                        "selector": {"matchLabels": {"q": "a"}}},
                        "target": {"type": "Value", "value": "30"}}}
                ]},
            "status": {"observedGeneration": 1, "currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu",
                        "current": {"averageUtilization": 42, "averageValue": "210m"}}}
                ],
                "conditions": [{"type": "AbleToScale", "status": "True",
                    "lastTransitionTime": "2024-01-01T00:00:00Z", "reason": "ReadyForNewScale"}]}})
    }

    #[test]
    fn v2_reads_as_v1_with_upstream_annotations_and_round_trips() {
        let stored = rich_v2();
        let served = from_storage(v1(), obj(stored.clone()));
        assert_eq!(served["apiVersion"], "autoscaling/v1");
        assert_eq!(served["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(served["spec"].get("metrics"), None);
        assert_eq!(served["status"]["currentCPUUtilizationPercentage"], 42);
        assert_eq!(served["status"]["currentReplicas"], 2);
        let a = &served["metadata"]["annotations"];
        assert_eq!(a["keep"], "me");
        let others: Value =
            serde_json::from_str(a[METRIC_SPECS_ANNOTATION].as_str().expect("metrics"))
                .expect("json");
        assert_eq!(
            others,
            json!([
                {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}},
                {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}},
                {"type": "External", "external": {"metricName": "queue",
                    "metricSelector": {"matchLabels": {"q": "a"}}, "targetValue": "30"}}
            ])
        );
        assert!(a.get(CONDITIONS_ANNOTATION).is_some());
        assert!(a.get(METRIC_STATUSES_ANNOTATION).is_some());

        // Written back through v1, the stored v2 object is unchanged (cpu moves to the end,
        // as upstream orders it).
        let back = to_storage(v1(), obj(served));
        let mut expected = stored;
        let metrics = expected["spec"]["metrics"].as_array_mut().expect("metrics");
        let cpu = metrics.remove(0);
        metrics.push(cpu);
        assert_eq!(back, expected);
    }

    #[test]
    fn v1_without_metrics_defaults_to_80_percent_cpu() {
        let created = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3}});
        let stored = to_storage(v1(), obj(created));
        assert_eq!(
            stored["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}])
        );
        let served = from_storage(v1(), obj(stored));
        assert_eq!(served["spec"]["targetCPUUtilizationPercentage"], 80);
        assert_eq!(
            served["status"],
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        );
        assert_eq!(served["metadata"].get("annotations"), None);
    }

    #[test]
    fn v2_form_never_carries_round_trip_annotations() {
        let mut created = rich_v2();
        created["metadata"]["annotations"][CONDITIONS_ANNOTATION] = json!("[]");
        let stored = to_storage(v2(), obj(created));
        assert_eq!(stored["metadata"]["annotations"], json!({"keep": "me"}));
        assert_eq!(from_storage(v2(), obj(stored.clone())), stored);
        let mut bare = stored.clone();
        bare.as_object_mut().expect("object").remove("status");
        assert_eq!(
            from_storage(v2(), obj(bare))["status"],
            json!({"desiredReplicas": 0})
        );
    }

    #[test]
    fn objects_stored_in_the_v1_form_read_through_both_versions() {
        let legacy = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "old"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                "targetCPUUtilizationPercentage": 40}});
        assert_eq!(from_storage(v1(), obj(legacy.clone())), legacy);
        let as_v2 = from_storage(v2(), obj(legacy));
        assert_eq!(as_v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            as_v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            40
        );
    }

    #[test]
    fn malformed_annotations_do_not_panic() {
        let created = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "x", "annotations": {(METRIC_SPECS_ANNOTATION): "{not json",
                (METRIC_STATUSES_ANNOTATION): "[{\"type\": \"Bogus\"}, 7]"}},
            "spec": {"targetCPUUtilizationPercentage": 50}, "status": "weird"});
        let stored = to_storage(v1(), obj(created));
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        assert_eq!(stored["metadata"].get("annotations"), None);
    }
}
