//! Table cells of the networking, storage, policy and event resources (ingresses, ingress
//! classes, network policies, storage classes, resource quotas, pod templates, endpoints,
//! endpoint slices, core and `events.k8s.io` events) and upstream's default table, following
//! upstream's printers.

use serde_json::{json, Map, Value};

use super::age;
use super::cells::{arr, i, name, or_none, s};
use crate::handlers::selector_string;

/// `k=v,...` of a label map, sorted by key; `<none>` when empty (upstream `FormatLabels`).
pub(super) fn format_labels(labels: Option<&Value>) -> String {
    let mut kv: Vec<String> = labels
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    kv.sort();
    or_none(kv.join(","))
}

/// A label selector as upstream's `FormatLabelSelector` prints it (`<none>` when empty).
pub(super) fn format_selector(selector: Option<&Value>) -> String {
    or_none(selector_string(selector))
}

/// At most `max` items joined by `,`, then `+ N more...`; `<unset>` when empty.
fn list_with_more(all: &[String], max: usize) -> String {
    if all.is_empty() {
        return "<unset>".into();
    }
    let shown = all[..all.len().min(max)].join(",");
    if all.len() > max {
        format!("{shown} + {} more...", all.len() - max)
    } else {
        shown
    }
}

/// Upstream's default table row: the name and the creation time (RFC 3339, UTC).
pub(super) fn created_at_row(v: &Value) -> Vec<Value> {
    let created = s(v, "/metadata/creationTimestamp")
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| "0001-01-01T00:00:00Z".into());
    vec![name(v), json!(created)]
}

pub(super) fn endpoints(ep: &Value) -> Vec<Value> {
    let subsets = arr(ep, "/subsets");
    let cell = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        let mut all = Vec::new();
        for subset in subsets {
            let addresses = arr(subset, "/addresses");
            let ports = arr(subset, "/ports");
            if ports.is_empty() {
                all.extend(addresses.iter().map(|a| s(a, "/ip").to_string()));
                continue;
            }
            for p in ports {
                for a in addresses {
                    let ip = s(a, "/ip");
                    let port = i(p, "/port");
                    all.push(if ip.contains(':') {
                        format!("[{ip}]:{port}")
                    } else {
                        format!("{ip}:{port}")
                    });
                }
            }
        }
        let shown = all[..all.len().min(3)].join(",");
        if all.len() > 3 {
            format!("{shown} + {} more...", all.len() - 3)
        } else {
            shown
        }
    };
    vec![name(ep), json!(cell), json!(super::object_age(ep))]
}

pub(super) fn endpointslice(es: &Value) -> Vec<Value> {
    let ports: Vec<String> = arr(es, "/ports")
        .iter()
        .map(
            |p| match (p.get("port").and_then(Value::as_i64), p.get("name")) {
                (Some(port), _) => port.to_string(),
                (None, Some(Value::String(n))) => n.clone(),
                _ => "*".into(),
            },
        )
        .collect();
    let addresses: Vec<String> = arr(es, "/endpoints")
        .iter()
        .flat_map(|e| arr(e, "/addresses").iter())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    vec![
        name(es),
        json!(s(es, "/addressType")),
        json!(list_with_more(&ports, 3)),
        json!(list_with_more(&addresses, 3)),
        json!(super::object_age(es)),
    ]
}

pub(super) fn pod_template(t: &Value) -> Vec<Value> {
    let containers = arr(t, "/template/spec/containers");
    let names: Vec<&str> = containers.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "/image")).collect();
    vec![
        name(t),
        json!(names.join(",")),
        json!(images.join(",")),
        json!(format_labels(t.pointer("/template/metadata/labels"))),
    ]
}

/// Hosts of an ingress's rules: the first three named hosts, `*` when none is named.
fn ingress_hosts(rules: &[Value]) -> String {
    let mut list = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == 3 {
            more = true;
        }
        let host = s(rule, "/host");
        if !more && !host.is_empty() {
            list.push(host.to_string());
        }
    }
    if list.is_empty() {
        return "*".into();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - 3)
    } else {
        joined
    }
}

pub(super) fn ingress(ing: &Value) -> Vec<Value> {
    let class = match s(ing, "/spec/ingressClassName") {
        "" => "<none>".to_string(),
        c => c.to_string(),
    };
    let mut addresses: Vec<String> = arr(ing, "/status/loadBalancer/ingress")
        .iter()
        .filter_map(|lb| {
            let ip = s(lb, "/ip");
            let host = s(lb, "/hostname");
            match (ip, host) {
                ("", "") => None,
                ("", h) => Some(h.to_string()),
                (ip, _) => Some(ip.to_string()),
            }
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    let ports = if arr(ing, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(ing),
        json!(class),
        json!(ingress_hosts(arr(ing, "/spec/rules"))),
        json!(addresses.join(",")),
        json!(ports),
        json!(super::object_age(ing)),
    ]
}

pub(super) fn ingress_class(c: &Value) -> Vec<Value> {
    let parameters = match c.pointer("/spec/parameters") {
        Some(p) => {
            let kind = match s(p, "/apiGroup") {
                "" if p.get("apiGroup").is_none() => s(p, "/kind").to_string(),
                group => format!("{}.{group}", s(p, "/kind")),
            };
            format!("{kind}/{}", s(p, "/name"))
        }
        None => "<none>".into(),
    };
    vec![
        name(c),
        json!(s(c, "/spec/controller")),
        json!(parameters),
        json!(super::object_age(c)),
    ]
}

pub(super) fn network_policy(np: &Value) -> Vec<Value> {
    vec![
        name(np),
        json!(format_selector(np.pointer("/spec/podSelector"))),
        json!(super::object_age(np)),
    ]
}

/// The annotations that make a storage class the default one.
const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

pub(super) fn storage_class(sc: &Value) -> Vec<Value> {
    let annotations = sc.pointer("/metadata/annotations");
    let default = DEFAULT_CLASS_ANNOTATIONS
        .iter()
        .any(|a| annotations.and_then(|m| m.get(*a)).and_then(Value::as_str) == Some("true"));
    let mut shown = s(sc, "/metadata/name").to_string();
    if default {
        shown.push_str(" (default)");
    }
    let or = |path: &str, fallback: &str| match s(sc, path) {
        "" => fallback.to_string(),
        v => v.to_string(),
    };
    vec![
        json!(shown),
        json!(s(sc, "/provisioner")),
        json!(or("/reclaimPolicy", "Delete")),
        json!(or("/volumeBindingMode", "Immediate")),
        json!(sc
            .get("allowVolumeExpansion")
            .and_then(Value::as_bool)
            .unwrap_or(false)),
        json!(super::object_age(sc)),
    ]
}

/// A quantity as stored (`"0"` when absent).
fn quantity(m: Option<&Map<String, Value>>, key: &str) -> String {
    match m.and_then(|m| m.get(key)) {
        Some(Value::String(q)) => q.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    }
}

pub(super) fn resource_quota(q: &Value) -> Vec<Value> {
    let hard = q.pointer("/status/hard").and_then(Value::as_object);
    let used = q.pointer("/status/used").and_then(Value::as_object);
    let mut resources: Vec<&String> = hard.map(|h| h.keys().collect()).unwrap_or_default();
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for r in resources {
        let entry = format!("{r}: {}/{}", quantity(used, r), quantity(hard, r));
        let is_limit = r.split('.').count() > 1 && r.split('.').next() == Some("limits");
        if is_limit {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![
        name(q),
        json!(requests.join(", ")),
        json!(limits.join(", ")),
        json!(super::object_age(q)),
    ]
}

/// An `events.k8s.io/v1` Event in the shape of a core Event (what upstream prints both from).
fn as_core_event(e: &Value) -> Value {
    let mut core = json!({
        "metadata": e.get("metadata").cloned().unwrap_or(Value::Null),
        "involvedObject": e.get("regarding").cloned().unwrap_or(Value::Null),
        "message": e.get("note").cloned().unwrap_or(Value::Null),
        "type": e.get("type").cloned().unwrap_or(Value::Null),
        "reason": e.get("reason").cloned().unwrap_or(Value::Null),
        "firstTimestamp": e.get("deprecatedFirstTimestamp").cloned().unwrap_or(Value::Null),
        "lastTimestamp": e.get("deprecatedLastTimestamp").cloned().unwrap_or(Value::Null),
        "count": e.get("deprecatedCount").cloned().unwrap_or(Value::Null),
        "source": e.get("deprecatedSource").cloned().unwrap_or(Value::Null),
        "eventTime": e.get("eventTime").cloned().unwrap_or(Value::Null),
        "reportingComponent": e.get("reportingController").cloned().unwrap_or(Value::Null),
        "reportingInstance": e.get("reportingInstance").cloned().unwrap_or(Value::Null),
    });
    if let Some(series) = e.get("series") {
        core["series"] = series.clone();
    }
    core
}

/// The cells of an `events.k8s.io/v1` Event (the core Event columns).
pub(super) fn events_v1_event(e: &Value) -> Vec<Value> {
    core_event(&as_core_event(e))
}

/// `age` of a timestamp, `<unknown>` when empty.
fn since(t: &str) -> String {
    if t.is_empty() {
        "<unknown>".into()
    } else {
        age(Some(t))
    }
}

pub(super) fn core_event(e: &Value) -> Vec<Value> {
    let first = match s(e, "/firstTimestamp") {
        "" => since(s(e, "/eventTime")),
        t => since(t),
    };
    let mut last = match s(e, "/lastTimestamp") {
        "" => first.clone(),
        t => since(t),
    };
    let mut count = i(e, "/count");
    if let Some(series) = e.get("series").filter(|v| v.is_object()) {
        last = since(s(series, "/lastObservedTime"));
        count = i(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = s(e, "/involvedObject/kind").to_ascii_lowercase();
    let target = match s(e, "/involvedObject/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = match s(e, "/source/component") {
        "" => s(e, "/reportingComponent"),
        c => c,
    };
    let instance = match s(e, "/source/host") {
        "" => s(e, "/reportingInstance"),
        h => h,
    };
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(s(e, "/type")),
        json!(s(e, "/reason")),
        json!(target),
        json!(s(e, "/involvedObject/fieldPath")),
        json!(source),
        json!(s(e, "/message").trim()),
        json!(first),
        json!(count),
        name(e),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_row_shows_class_hosts_address_and_ports() {
        let ing = json!({"metadata": {"name": "web"}, "spec": {"ingressClassName": "nginx",
            "rules": [{"host": "a.example"}, {"host": "b.example"}, {}, {"host": "c.example"},
                {"host": "d.example"}],
            "tls": [{"hosts": ["a.example"]}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}, {"hostname": "lb"}]}}});
        let row = ingress(&ing);
        assert_eq!(row[1], "nginx");
        assert_eq!(row[2], "a.example,b.example,c.example + 2 more...");
        assert_eq!(row[3], "192.0.2.9,lb");
        assert_eq!(row[4], "80, 443");
        let bare = ingress(&json!({"metadata": {"name": "x"}, "spec": {}}));
        assert_eq!(bare[1], "<none>");
        assert_eq!(bare[2], "*");
        assert_eq!(bare[3], "");
        assert_eq!(bare[4], "80");
    }

    #[test]
    fn storage_class_row_marks_the_default_and_fills_defaults() {
        let sc = json!({"metadata": {"name": "standard", "annotations":
            {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path"});
        let row = storage_class(&sc);
        assert_eq!(row[0], "standard (default)");
        assert_eq!(row[1], "rancher.io/local-path");
        assert_eq!(row[2], "Delete");
        assert_eq!(row[3], "Immediate");
        assert_eq!(row[4], false);
    }

    #[test]
    fn resource_quota_row_splits_requests_and_limits() {
        let q = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "1Gi"},
            "used": {"pods": "2", "requests.cpu": "500m"}}});
        let row = resource_quota(&q);
        assert_eq!(row[1], "pods: 2/10, requests.cpu: 500m/1");
        assert_eq!(row[2], "limits.memory: 0/1Gi");
    }

    #[test]
    fn event_rows_of_both_groups_agree() {
        let core = json!({"metadata": {"name": "p.1"}, "type": "Normal", "reason": "Pulled",
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{c}"},
            "source": {"component": "kubelet", "host": "n1"}, "message": " pulled \n",
            "count": 3});
        let row = core_event(&core);
        assert_eq!(row[0], "<unknown>");
        assert_eq!(row[3], "pod/p");
        assert_eq!(row[4], "spec.containers{c}");
        assert_eq!(row[5], "kubelet, n1");
        assert_eq!(row[6], "pulled");
        assert_eq!(row[8], 3);
        assert_eq!(row[9], "p.1");
        let v1 = json!({"metadata": {"name": "p.1"}, "type": "Normal", "reason": "Pulled",
            "regarding": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{c}"},
            "deprecatedSource": {"component": "kubelet", "host": "n1"}, "note": " pulled \n",
            "deprecatedCount": 3});
        assert_eq!(events_v1_event(&v1), row);
        let series = json!({"metadata": {"name": "s"}, "reportingController": "sched",
            "regarding": {"kind": "Node"}, "series": {"count": 7}});
        let row = events_v1_event(&series);
        assert_eq!(row[3], "node");
        assert_eq!(row[5], "sched");
        assert_eq!(row[8], 7);
    }

    #[test]
    fn endpoint_cells_list_three_then_count_the_rest() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [
            {"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}],
            "ports": [{"port": 80}]}]});
        assert_eq!(
            endpoints(&ep)[1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more..."
        );
        assert_eq!(endpoints(&json!({"metadata": {"name": "e"}}))[1], "<none>");
        let slice = json!({"metadata": {"name": "s"}, "addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "dns"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1"]}]});
        let row = endpointslice(&slice);
        assert_eq!(row[2], "80,dns,*");
        assert_eq!(row[3], "10.0.0.1");
        let empty = endpointslice(&json!({"metadata": {"name": "s"}}));
        assert_eq!(empty[2], "<unset>");
        assert_eq!(empty[3], "<unset>");
    }

    #[test]
    fn pod_template_and_network_policy_rows() {
        let t = json!({"metadata": {"name": "t"}, "template": {
            "metadata": {"labels": {"b": "2", "a": "1"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}, {"name": "d", "image": "nginx"}]}}});
        let row = pod_template(&t);
        assert_eq!(row[1], "c,d");
        assert_eq!(row[2], "busybox,nginx");
        assert_eq!(row[3], "a=1,b=2");
        let np = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
        assert_eq!(network_policy(&np)[1], "<none>");
        let np = json!({"metadata": {"name": "web"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(network_policy(&np)[1], "app=web");
        assert_eq!(
            created_at_row(&json!({"metadata": {"name": "r",
                "creationTimestamp": "2024-05-01T10:00:00Z"}}))[1],
            "2024-05-01T10:00:00Z"
        );
    }
}
