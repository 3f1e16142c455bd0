//! LimitRanger admission, as upstream's: the LimitRange objects of a namespace default the
//! requests and limits of a new pod's containers (recorded in the `kubernetes.io/limit-ranger`
//! annotation) and enforce `min`, `max` and `maxLimitRequestRatio` per Container and per Pod,
//! answering 403 with the upstream messages. LimitRange objects themselves get the upstream
//! API defaults ([`default_limit_range`]).

use std::collections::BTreeMap;

use api_types::quantity::Quantity;
use serde_json::{json, Map, Value};

use super::plugins::{forbidden, Operation, Request};
use crate::status::ApiError;

/// The annotation recording what the plugin set.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

fn quantity(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Upstream's LimitRange API defaults: for Container items, `default` falls back to `max`,
/// `defaultRequest` to `default`, then to `min`.
pub fn default_limit_range(object: &mut Value) {
    let Some(limits) = object
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in limits {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let get = |item: &Value, f: &str| {
            item.get(f)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let (max, min) = (get(item, "max"), get(item, "min"));
        let mut default = get(item, "default");
        let mut request = get(item, "defaultRequest");
        for (k, v) in &max {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &default {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &min {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if !default.is_empty() {
            item["default"] = Value::Object(default);
        }
        if !request.is_empty() {
            item["defaultRequest"] = Value::Object(request);
        }
    }
}

/// Applies the defaults of the Container items of `ranges` to `pod`'s containers; returns the
/// annotation text (empty when nothing was set).
pub fn apply_defaults(ranges: &[Value], pod: &mut Value) -> String {
    let mut items: Vec<Value> = Vec::new();
    for r in ranges {
        let mut r = r.clone();
        default_limit_range(&mut r);
        for item in r
            .pointer("/spec/limits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if item.get("type").and_then(Value::as_str) == Some("Container") {
                items.push(item.clone());
            }
        }
    }
    let mut notes = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(cs) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in cs {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mut set_req = Vec::new();
            let mut set_lim = Vec::new();
            for item in &items {
                for (field, target, set) in [
                    ("defaultRequest", "requests", &mut set_req),
                    ("default", "limits", &mut set_lim),
                ] {
                    let Some(defaults) = item.get(field).and_then(Value::as_object) else {
                        continue;
                    };
                    let Some(resources) = resources_mut(c, target) else {
                        continue;
                    };
                    for (k, v) in defaults {
                        if !resources.contains_key(k) {
                            resources.insert(k.clone(), v.clone());
                            if !set.contains(k) {
                                set.push(k.clone());
                            }
                        }
                    }
                }
            }
            if !set_req.is_empty() {
                notes.push(format!(
                    "{} request for {list_word} {name}",
                    set_req.join(", "),
                    list_word = word(list)
                ));
            }
            if !set_lim.is_empty() {
                notes.push(format!(
                    "{} limit for {list_word} {name}",
                    set_lim.join(", "),
                    list_word = word(list)
                ));
            }
        }
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!("LimitRanger plugin set: {}", notes.join("; "))
    }
}

fn word(list: &str) -> &'static str {
    if list == "initContainers" {
        "init container"
    } else {
        "container"
    }
}

fn resources_mut<'a>(c: &'a mut Value, target: &str) -> Option<&'a mut Map<String, Value>> {
    let res = c
        .as_object_mut()?
        .entry("resources")
        .or_insert_with(|| json!({}));
    if !res.is_object() {
        *res = json!({});
    }
    let t = res
        .as_object_mut()?
        .entry(target)
        .or_insert_with(|| json!({}));
    if !t.is_object() {
        *t = json!({});
    }
    t.as_object_mut()
}

fn min_constraint(
    kind: &str,
    res: &str,
    enforced: &Value,
    req: Option<&Value>,
    lim: Option<&Value>,
) -> Option<String> {
    let e = quantity(enforced)?;
    let Some(req) = req else {
        return Some(format!(
            "minimum {res} usage per {kind} is {}.  No request is specified",
            text(enforced)
        ));
    };
    if quantity(req).is_some_and(|r| r < e) {
        return Some(format!(
            "minimum {res} usage per {kind} is {}, but request is {}",
            text(enforced),
            text(req)
        ));
    }
    if let Some(lim) = lim {
        if quantity(lim).is_some_and(|l| l < e) {
            return Some(format!(
                "minimum {res} usage per {kind} is {}, but limit is {}",
                text(enforced),
                text(lim)
            ));
        }
    }
    None
}

fn max_constraint(
    kind: &str,
    res: &str,
    enforced: &Value,
    req: Option<&Value>,
    lim: Option<&Value>,
) -> Option<String> {
    let e = quantity(enforced)?;
    let Some(lim) = lim else {
        return Some(format!(
            "maximum {res} usage per {kind} is {}.  No limit is specified",
            text(enforced)
        ));
    };
    if quantity(lim).is_some_and(|l| l > e) {
        return Some(format!(
            "maximum {res} usage per {kind} is {}, but limit is {}",
            text(enforced),
            text(lim)
        ));
    }
    if let Some(req) = req {
        if quantity(req).is_some_and(|r| r > e) {
            return Some(format!(
                "maximum {res} usage per {kind} is {}, but request is {}",
                text(enforced),
                text(req)
            ));
        }
    }
    None
}

fn ratio_constraint(
    kind: &str,
    res: &str,
    enforced: &Value,
    req: Option<&Value>,
    lim: Option<&Value>,
) -> Option<String> {
    let e = quantity(enforced)?;
    let lim = lim.and_then(quantity)?;
    let req = req.and_then(quantity).filter(|r| !r.is_zero());
    let Some(req) = req else {
        return Some(format!("{res} max limit to request ratio per {kind} is {}, but no request is specified or request is 0", text(enforced)));
    };
    let ratio = lim.milli_value() as f64 / req.milli_value() as f64;
    if ratio > e.milli_value() as f64 / 1000.0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {}, but provided ratio is {ratio:.6}",
            text(enforced)
        ));
    }
    None
}

fn check(
    kind: &str,
    item: &Value,
    requests: &Map<String, Value>,
    limits: &Map<String, Value>,
    errors: &mut Vec<String>,
) {
    let each = |f: &str| {
        item.get(f)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    for (res, v) in each("min") {
        errors.extend(min_constraint(
            kind,
            &res,
            &v,
            requests.get(&res),
            limits.get(&res),
        ));
    }
    for (res, v) in each("max") {
        errors.extend(max_constraint(
            kind,
            &res,
            &v,
            requests.get(&res),
            limits.get(&res),
        ));
    }
    for (res, v) in each("maxLimitRequestRatio") {
        errors.extend(ratio_constraint(
            kind,
            &res,
            &v,
            requests.get(&res),
            limits.get(&res),
        ));
    }
}

/// The min/max/ratio violations of `pod` against `ranges`, in upstream wording.
pub fn violations(ranges: &[Value], pod: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let cs: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|l| {
            pod.pointer(&format!("/spec/{l}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .collect();
    let res = |c: &Value, f: &str| {
        c.pointer(&format!("/resources/{f}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    for r in ranges {
        for item in r
            .pointer("/spec/limits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match item.get("type").and_then(Value::as_str) {
                Some("Container") => {
                    for c in &cs {
                        check(
                            "Container",
                            item,
                            &res(c, "requests"),
                            &res(c, "limits"),
                            &mut errors,
                        );
                    }
                }
                Some("Pod") => {
                    let (requests, limits) = pod_totals(pod);
                    check("Pod", item, &requests, &limits, &mut errors);
                }
                _ => {}
            }
        }
    }
    errors.dedup();
    errors
}

/// Sums of the regular containers' requests and limits (a resource is present only when every
/// container sets it, as upstream).
fn pod_totals(pod: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let cs: Vec<&Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let total = |f: &str| {
        let mut sums: BTreeMap<String, (Quantity, usize)> = BTreeMap::new();
        for c in &cs {
            for (k, v) in c
                .pointer(&format!("/resources/{f}"))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(q) = quantity(v) {
                    let e = sums.entry(k.clone()).or_insert((Quantity::ZERO, 0));
                    e.0 = e.0 + q;
                    e.1 += 1;
                }
            }
        }
        sums.into_iter()
            .filter(|(_, (_, n))| *n == cs.len())
            .map(|(k, (q, _))| (k, json!(q.to_string())))
            .collect::<Map<String, Value>>()
    };
    (total("requests"), total("limits"))
}

/// Defaults and checks a pod being created.
pub async fn admit(req: &Request<'_>, pod: &mut Value) -> Result<(), ApiError> {
    if req.operation != Operation::Create || !req.is("", "pods") || req.subresource.is_some() {
        return Ok(());
    }
    let (Some(ns), Some(lr)) = (
        req.namespace,
        api_types::registry::find("", "v1", "limitranges"),
    ) else {
        return Ok(());
    };
    let list = super::lister::list(req.state, &crate::objects::list_prefix(lr, Some(ns)))
        .await
        .map_err(ApiError::internal)?;
    let ranges: Vec<Value> = list
        .into_iter()
        .map(|listed| listed.value)
        .map(|mut r| {
            default_limit_range(&mut r);
            r
        })
        .collect();
    if ranges.is_empty() {
        return Ok(());
    }
    let note = apply_defaults(&ranges, pod);
    if !note.is_empty() {
        let meta = crate::objects::meta_mut(pod);
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(ANNOTATION.into(), json!(note));
        }
    }
    let errors = violations(&ranges, pod);
    match errors.len() {
        0 => Ok(()),
        1 => Err(forbidden(req, req.name, &errors[0])),
        _ => Err(forbidden(req, req.name, format!("[{}]", errors.join(", ")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> Value {
        let mut r = json!({"spec": {"limits": [{"type": "Container",
            "max": {"cpu": "1", "memory": "1Gi"}, "min": {"cpu": "100m"},
            "defaultRequest": {"cpu": "200m"}}]}});
        default_limit_range(&mut r);
        r
    }

    #[test]
    fn limit_range_defaults_follow_upstream() {
        let r = range();
        assert_eq!(
            r["spec"]["limits"][0]["default"],
            json!({"cpu": "1", "memory": "1Gi"})
        );
        assert_eq!(
            r["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "200m", "memory": "1Gi"})
        );
    }

    #[test]
    fn containers_get_defaults_and_max_is_enforced() {
        let ranges = vec![range()];
        let mut pod = json!({"spec": {"containers": [{"name": "c"}]}});
        let note = apply_defaults(&ranges, &mut pod);
        assert_eq!(note, "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c");
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
        assert!(violations(&ranges, &pod).is_empty());
        let mut pod = json!({"spec": {"containers": [{"name": "c",
            "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "50m"}}}]}});
        apply_defaults(&ranges, &mut pod);
        assert_eq!(
            violations(&ranges, &pod),
            vec![
                "minimum cpu usage per Container is 100m, but request is 50m",
                "maximum cpu usage per Container is 1, but limit is 2",
            ]
        );
    }
}
