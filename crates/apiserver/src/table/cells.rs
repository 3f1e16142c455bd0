//! Table cells per resource (what `kubectl get` prints in each column), following upstream's
//! printers.

use serde_json::{json, Value};

use super::{age, object_age};
use crate::handlers::selector_string;

pub(super) fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn i(v: &Value, path: &str) -> i64 {
    v.pointer(path).and_then(Value::as_i64).unwrap_or(0)
}

pub(super) fn arr<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    v.pointer(path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(super) fn or_none(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "<unknown>"
    } else {
        s
    }
}

pub(super) fn name(v: &Value) -> Value {
    json!(s(v, "/metadata/name"))
}

/// The STATUS column of a pod, as kubectl prints it.
pub fn pod_status(pod: &Value) -> String {
    let mut reason = s(pod, "/status/phase").to_string();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_string();
    }
    let gated = arr(pod, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated");
    if gated {
        reason = "SchedulingGated".into();
    }
    let init_specs = arr(pod, "/spec/initContainers").len();
    let mut initializing = false;
    for (idx, c) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
        let terminated = c.pointer("/state/terminated");
        let waiting = c.pointer("/state/waiting");
        if let Some(t) = terminated {
            if i(t, "/exitCode") == 0 {
                continue;
            }
            reason = match t
                .get("reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                Some(r) => format!("Init:{r}"),
                None => format!("Init:ExitCode:{}", i(t, "/exitCode")),
            };
        } else if let Some(r) = waiting
            .and_then(|w| w.get("reason"))
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{idx}/{init_specs}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in arr(pod, "/status/containerStatuses").iter().rev() {
            if let Some(r) = c
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                reason = r.to_string();
            } else if let Some(t) = c.pointer("/state/terminated") {
                reason = match t
                    .get("reason")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                {
                    Some(r) => r.to_string(),
                    None if i(t, "/signal") != 0 => format!("Signal:{}", i(t, "/signal")),
                    None => format!("ExitCode:{}", i(t, "/exitCode")),
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some()
            {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = arr(pod, "/status/conditions")
                .iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            reason = if ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        let terminal = matches!(s(pod, "/status/phase"), "Succeeded" | "Failed");
        if s(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if !terminal {
            reason = "Terminating".into();
        }
    }
    if reason.is_empty() {
        "Pending".into()
    } else {
        reason
    }
}

/// The first of a pod's IPs (`status.podIPs`, else `status.podIP`).
fn pod_ip(p: &Value) -> &str {
    match arr(p, "/status/podIPs").first().map(|ip| s(ip, "/ip")) {
        Some(ip) if !ip.is_empty() => ip,
        _ => s(p, "/status/podIP"),
    }
}

pub(super) fn pod(p: &Value) -> Vec<Value> {
    let total = arr(p, "/spec/containers").len();
    let statuses = arr(p, "/status/containerStatuses");
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses.iter().map(|c| i(c, "/restartCount")).sum();
    let last_restart = statuses
        .iter()
        .filter_map(|c| {
            c.pointer("/lastState/terminated/finishedAt")
                .and_then(Value::as_str)
        })
        .max();
    let restarts = match last_restart {
        Some(at) if restarts > 0 => format!("{restarts} ({} ago)", age(Some(at))),
        _ => restarts.to_string(),
    };
    let gates = arr(p, "/spec/readinessGates");
    let gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passing = gates
            .iter()
            .filter(|g| {
                arr(p, "/status/conditions")
                    .iter()
                    .any(|c| s(c, "/type") == s(g, "/conditionType") && s(c, "/status") == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        name(p),
        json!(format!("{ready}/{total}")),
        json!(pod_status(p)),
        json!(restarts),
        json!(object_age(p)),
        json!(or_none(pod_ip(p).to_string())),
        json!(or_none(s(p, "/spec/nodeName").to_string())),
        json!(or_none(s(p, "/status/nominatedNodeName").to_string())),
        json!(gates),
    ]
}

pub(super) fn containers_images(v: &Value) -> (String, String) {
    let cs = arr(v, "/spec/template/spec/containers");
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

pub(super) fn deployment(d: &Value) -> Vec<Value> {
    let (containers, images) = containers_images(d);
    vec![
        name(d),
        json!(format!(
            "{}/{}",
            i(d, "/status/readyReplicas"),
            i(d, "/spec/replicas")
        )),
        json!(i(d, "/status/updatedReplicas")),
        json!(i(d, "/status/availableReplicas")),
        json!(object_age(d)),
        json!(containers),
        json!(images),
        json!(or_none(selector_string(d.pointer("/spec/selector")))),
    ]
}

pub(super) fn replicaset(r: &Value) -> Vec<Value> {
    let (containers, images) = containers_images(r);
    vec![
        name(r),
        json!(i(r, "/spec/replicas")),
        json!(i(r, "/status/replicas")),
        json!(i(r, "/status/readyReplicas")),
        json!(object_age(r)),
        json!(containers),
        json!(images),
        json!(or_none(selector_string(r.pointer("/spec/selector")))),
    ]
}

pub(super) fn statefulset(r: &Value) -> Vec<Value> {
    let (containers, images) = containers_images(r);
    vec![
        name(r),
        json!(format!(
            "{}/{}",
            i(r, "/status/readyReplicas"),
            i(r, "/spec/replicas")
        )),
        json!(object_age(r)),
        json!(containers),
        json!(images),
    ]
}

pub(super) fn daemonset(r: &Value) -> Vec<Value> {
    let (containers, images) = containers_images(r);
    let selector = r
        .pointer("/spec/template/spec/nodeSelector")
        .and_then(Value::as_object)
        .map(|m| {
            let mut kv: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            kv.sort();
            kv.join(",")
        })
        .unwrap_or_default();
    vec![
        name(r),
        json!(i(r, "/status/desiredNumberScheduled")),
        json!(i(r, "/status/currentNumberScheduled")),
        json!(i(r, "/status/numberReady")),
        json!(i(r, "/status/updatedNumberScheduled")),
        json!(i(r, "/status/numberAvailable")),
        json!(or_none(selector)),
        json!(object_age(r)),
        json!(containers),
        json!(images),
        json!(or_none(selector_string(r.pointer("/spec/selector")))),
    ]
}

pub(super) fn service(svc: &Value) -> Vec<Value> {
    let kind = s(svc, "/spec/type");
    let kind = if kind.is_empty() { "ClusterIP" } else { kind };
    let mut external: Vec<String> = arr(svc, "/spec/externalIPs")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let external = match kind {
        "ExternalName" => s(svc, "/spec/externalName").to_string(),
        "LoadBalancer" => {
            for ing in arr(svc, "/status/loadBalancer/ingress") {
                let ip = s(ing, "/ip");
                external.push(if ip.is_empty() {
                    s(ing, "/hostname").to_string()
                } else {
                    ip.to_string()
                });
            }
            if external.is_empty() {
                "<pending>".into()
            } else {
                external.join(",")
            }
        }
        _ => or_none(external.join(",")),
    };
    let ports: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) if np != 0 => format!("{}:{}/{}", i(p, "/port"), np, proto),
                _ => format!("{}/{}", i(p, "/port"), proto),
            }
        })
        .collect();
    let selector = svc
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            let mut kv: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            kv.sort();
            kv.join(",")
        })
        .unwrap_or_default();
    vec![
        name(svc),
        json!(kind),
        json!(or_none(s(svc, "/spec/clusterIP").to_string())),
        json!(external),
        json!(or_none(ports.join(","))),
        json!(object_age(svc)),
        json!(or_none(selector)),
    ]
}

pub(super) fn node(n: &Value) -> Vec<Value> {
    let ready = arr(n, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == "Ready")
        .map(|c| s(c, "/status"));
    let mut status = match ready {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if n.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = n
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| {
                    if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                        Some(role.to_string())
                    } else if k == "kubernetes.io/role" {
                        v.as_str().map(str::to_string)
                    } else {
                        None
                    }
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    let addr = |kind: &str| {
        arr(n, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == kind)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    vec![
        name(n),
        json!(status),
        json!(or_none(roles.join(","))),
        json!(object_age(n)),
        json!(s(n, "/status/nodeInfo/kubeletVersion")),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(or_unknown(s(n, "/status/nodeInfo/osImage"))),
        json!(or_unknown(s(n, "/status/nodeInfo/kernelVersion"))),
        json!(or_unknown(s(n, "/status/nodeInfo/containerRuntimeVersion"))),
    ]
}

pub(super) fn namespace(ns: &Value) -> Vec<Value> {
    vec![
        name(ns),
        json!(s(ns, "/status/phase")),
        json!(object_age(ns)),
    ]
}

pub(super) fn lease(l: &Value) -> Vec<Value> {
    vec![
        name(l),
        json!(s(l, "/spec/holderIdentity")),
        json!(object_age(l)),
    ]
}

pub(super) fn count(v: &Value, paths: &[&str]) -> usize {
    paths
        .iter()
        .map(|p| {
            v.pointer(p)
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
        })
        .sum()
}

pub(super) fn configmap(c: &Value) -> Vec<Value> {
    vec![
        name(c),
        json!(count(c, &["/data", "/binaryData"])),
        json!(object_age(c)),
    ]
}

pub(super) fn secret(c: &Value) -> Vec<Value> {
    vec![
        name(c),
        json!(s(c, "/type")),
        json!(count(c, &["/data"])),
        json!(object_age(c)),
    ]
}

pub(super) fn serviceaccount(c: &Value) -> Vec<Value> {
    vec![
        name(c),
        json!(arr(c, "/secrets").len()),
        json!(object_age(c)),
    ]
}

fn has_condition(v: &Value, kind: &str) -> bool {
    arr(v, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == kind && s(c, "/status") == "True")
}

fn seconds_between(from: &str, to: &str) -> Option<i64> {
    let from = from.parse::<jiff::Timestamp>().ok()?;
    let to = to.parse::<jiff::Timestamp>().ok()?;
    Some(to.as_second() - from.as_second())
}

fn job_status(j: &Value) -> &'static str {
    if has_condition(j, "Complete") {
        "Complete"
    } else if has_condition(j, "Failed") {
        "Failed"
    } else if j.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has_condition(j, "Suspended") {
        "Suspended"
    } else if has_condition(j, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

fn template_containers_images(template_spec: Option<&Value>) -> (String, String) {
    let cs = template_spec
        .and_then(|t| t.pointer("/containers"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

pub(super) fn job(j: &Value) -> Vec<Value> {
    let succeeded = i(j, "/status/succeeded");
    let completions = match j.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match i(j, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = s(j, "/status/startTime");
    let duration = match (start, s(j, "/status/completionTime")) {
        ("", _) => String::new(),
        (start, "") => age(Some(start)),
        (start, end) => seconds_between(start, end)
            .map(super::human_duration)
            .unwrap_or_default(),
    };
    let (containers, images) = template_containers_images(j.pointer("/spec/template/spec"));
    vec![
        name(j),
        json!(job_status(j)),
        json!(completions),
        json!(duration),
        json!(object_age(j)),
        json!(containers),
        json!(images),
        json!(or_none(selector_string(j.pointer("/spec/selector")))),
    ]
}

pub(super) fn cronjob(c: &Value) -> Vec<Value> {
    let last = match s(c, "/status/lastScheduleTime") {
        "" => "<none>".to_string(),
        t => age(Some(t)),
    };
    let suspend = c
        .pointer("/spec/suspend")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (containers, images) =
        template_containers_images(c.pointer("/spec/jobTemplate/spec/template/spec"));
    vec![
        name(c),
        json!(s(c, "/spec/schedule")),
        json!(or_none(s(c, "/spec/timeZone").to_string())),
        json!(if suspend { "True" } else { "False" }),
        json!(arr(c, "/status/active").len()),
        json!(last),
        json!(object_age(c)),
        json!(containers),
        json!(images),
        json!(or_none(selector_string(
            c.pointer("/spec/jobTemplate/spec/selector")
        ))),
    ]
}

/// One metric of an HPA as `kubectl get hpa` shows it: `cpu: 10%/50%`.
fn hpa_metric(spec: &Value, current: Option<&Value>) -> String {
    let kind = s(spec, "/type");
    let (source, current_source) = match kind {
        "Resource" => ("/resource", "/resource"),
        "ContainerResource" => ("/containerResource", "/containerResource"),
        "Pods" => ("/pods", "/pods"),
        "Object" => ("/object", "/object"),
        "External" => ("/external", "/external"),
        _ => return "<unknown type>".into(),
    };
    let target = spec.pointer(source).unwrap_or(&Value::Null);
    let now = current.and_then(|c| c.pointer(current_source));
    let label = match kind {
        "Resource" | "ContainerResource" => s(target, "/name").to_string(),
        _ => s(target, "/metric/name").to_string(),
    };
    let quantity = |v: Option<&Value>, path: &str| -> Option<String> {
        v.and_then(|v| v.pointer(path)).map(|q| match q {
            Value::String(q) => q.clone(),
            other => other.to_string(),
        })
    };
    let value = if let Some(util) = target
        .pointer("/target/averageUtilization")
        .and_then(Value::as_i64)
    {
        let now = now
            .and_then(|n| n.pointer("/current/averageUtilization"))
            .and_then(Value::as_i64)
            .map_or("<unknown>".to_string(), |u| format!("{u}%"));
        format!("{now}/{util}%")
    } else if let Some(avg) = quantity(Some(target), "/target/averageValue") {
        let now = quantity(now, "/current/averageValue").unwrap_or_else(|| "<unknown>".into());
        format!("{now}/{avg} (avg)")
    } else {
        let want = quantity(Some(target), "/target/value").unwrap_or_else(|| "<unset>".into());
        let now = quantity(now, "/current/value").unwrap_or_else(|| "<unknown>".into());
        format!("{now}/{want}")
    };
    if label.is_empty() {
        value
    } else {
        format!("{label}: {value}")
    }
}

pub(super) fn horizontal_pod_autoscaler(h: &Value) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        s(h, "/spec/scaleTargetRef/kind"),
        s(h, "/spec/scaleTargetRef/name")
    );
    let specs = arr(h, "/spec/metrics");
    let current = arr(h, "/status/currentMetrics");
    let targets = if specs.is_empty() {
        "<none>".to_string()
    } else {
        let shown: Vec<String> = specs
            .iter()
            .take(2)
            .enumerate()
            .map(|(n, m)| hpa_metric(m, current.get(n)))
            .collect();
        let mut out = shown.join(", ");
        if specs.len() > 2 {
            out.push_str(&format!(" + {} more...", specs.len() - 2));
        }
        out
    };
    let min = h
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
        .map_or("<unset>".to_string(), |m| m.to_string());
    vec![
        name(h),
        json!(reference),
        json!(targets),
        json!(min),
        json!(i(h, "/spec/maxReplicas")),
        json!(i(h, "/status/currentReplicas")),
        json!(object_age(h)),
    ]
}

/// Access modes the short way (`RWO,ROX,RWX,RWOP`).
fn access_modes(v: &Value, path: &str) -> String {
    let modes: Vec<&str> = arr(v, path)
        .iter()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    modes.join(",")
}

fn volume_mode(v: &Value) -> String {
    match s(v, "/spec/volumeMode") {
        "" => "<unset>".into(),
        m => m.into(),
    }
}

fn unset(v: &Value, path: &str) -> String {
    match s(v, path) {
        "" => "<unset>".into(),
        x => x.into(),
    }
}

pub(super) fn persistent_volume_claim(c: &Value) -> Vec<Value> {
    let phase = if c.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        s(c, "/status/phase")
    };
    let bound = !s(c, "/spec/volumeName").is_empty();
    let (capacity, modes) = if bound {
        (
            s(c, "/status/capacity/storage").to_string(),
            access_modes(c, "/status/accessModes"),
        )
    } else {
        (String::new(), String::new())
    };
    vec![
        name(c),
        json!(phase),
        json!(s(c, "/spec/volumeName")),
        json!(capacity),
        json!(modes),
        json!(s(c, "/spec/storageClassName")),
        json!(unset(c, "/spec/volumeAttributesClassName")),
        json!(object_age(c)),
        json!(volume_mode(c)),
    ]
}

pub(super) fn persistent_volume(v: &Value) -> Vec<Value> {
    let claim = match (
        s(v, "/spec/claimRef/namespace"),
        s(v, "/spec/claimRef/name"),
    ) {
        (_, "") => String::new(),
        (ns, n) => format!("{ns}/{n}"),
    };
    let phase = if v.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        s(v, "/status/phase")
    };
    vec![
        name(v),
        json!(s(v, "/spec/capacity/storage")),
        json!(access_modes(v, "/spec/accessModes")),
        json!(s(v, "/spec/persistentVolumeReclaimPolicy")),
        json!(phase),
        json!(claim),
        json!(s(v, "/spec/storageClassName")),
        json!(unset(v, "/spec/volumeAttributesClassName")),
        json!(s(v, "/status/reason")),
        json!(object_age(v)),
        json!(volume_mode(v)),
    ]
}

pub(super) fn pod_disruption_budget(p: &Value) -> Vec<Value> {
    let int_or_string = |path: &str| match p.pointer(path) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".into(),
    };
    vec![
        name(p),
        json!(int_or_string("/spec/minAvailable")),
        json!(int_or_string("/spec/maxUnavailable")),
        json!(i(p, "/status/disruptionsAllowed")),
        json!(object_age(p)),
    ]
}

pub(super) fn role_binding(b: &Value) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut accounts = Vec::new();
    for subject in arr(b, "/subjects") {
        match s(subject, "/kind") {
            "User" => users.push(s(subject, "/name").to_string()),
            "Group" => groups.push(s(subject, "/name").to_string()),
            "ServiceAccount" => accounts.push(format!(
                "{}/{}",
                s(subject, "/namespace"),
                s(subject, "/name")
            )),
            _ => {}
        }
    }
    vec![
        name(b),
        json!(format!(
            "{}/{}",
            s(b, "/roleRef/kind"),
            s(b, "/roleRef/name")
        )),
        json!(object_age(b)),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(accounts.join(", ")),
    ]
}

pub(super) fn controller_revision(r: &Value) -> Vec<Value> {
    let owner = arr(r, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true));
    let controller = match owner {
        Some(o) => {
            let api = s(o, "/apiVersion");
            let group = api.split_once('/').map_or("", |(g, _)| g);
            let kind = s(o, "/kind").to_ascii_lowercase();
            let kind = if group.is_empty() {
                kind
            } else {
                format!("{kind}.{group}")
            };
            format!("{kind}/{}", s(o, "/name"))
        }
        None => "<none>".into(),
    };
    vec![
        name(r),
        json!(controller),
        json!(i(r, "/revision")),
        json!(object_age(r)),
    ]
}

pub(super) fn priority_class(p: &Value) -> Vec<Value> {
    let default = p
        .pointer("/globalDefault")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    vec![
        name(p),
        json!(i(p, "/value")),
        json!(default),
        json!(object_age(p)),
        json!(s(p, "/preemptionPolicy")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_status_follows_container_states() {
        let cases = [
            (json!({"status": {"phase": "Pending"}}), "Pending"),
            (
                json!({"status": {"phase": "Pending", "containerStatuses": [
                {"ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}}]}}),
                "ContainerCreating",
            ),
            (
                json!({"status": {"phase": "Running", "containerStatuses": [
                {"ready": true, "state": {"running": {}}}]}}),
                "Running",
            ),
            (
                json!({"status": {"phase": "Succeeded", "containerStatuses": [
                {"ready": false, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}}),
                "Completed",
            ),
            (
                json!({"status": {"phase": "Running", "containerStatuses": [
                {"ready": false, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
                "CrashLoopBackOff",
            ),
            (
                json!({"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z"},
                "status": {"phase": "Running"}}),
                "Terminating",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(pod_status(&p), want, "{p}");
        }
    }

    #[test]
    fn pod_row_counts_ready_containers_and_restarts() {
        let p = json!({"metadata": {"name": "web"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.244.0.5", "containerStatuses": [
                {"ready": true, "restartCount": 1, "state": {"running": {}}},
                {"ready": false, "restartCount": 0, "state": {"running": {}}}]}});
        let row = pod(&p);
        assert_eq!(row[0], "web");
        assert_eq!(row[1], "1/2");
        assert_eq!(row[3], "1");
        assert_eq!(row[5], "10.244.0.5");
        assert_eq!(row[6], "n1");
        assert_eq!(row[7], "<none>");
    }

    #[test]
    fn service_row_prints_ports_and_selector() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort",
            "clusterIP": "10.96.0.20", "selector": {"app": "web"},
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        let row = service(&svc);
        assert_eq!(row[1], "NodePort");
        assert_eq!(row[2], "10.96.0.20");
        assert_eq!(row[3], "<none>");
        assert_eq!(row[4], "80:30080/TCP");
        assert_eq!(row[6], "app=web");
    }

    #[test]
    fn node_row_shows_readiness_and_roles() {
        let n = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0"},
                "addresses": [{"type": "InternalIP", "address": "192.0.2.2"}]}});
        let row = node(&n);
        assert_eq!(row[1], "Ready");
        assert_eq!(row[2], "control-plane");
        assert_eq!(row[4], "v1.33.0");
        assert_eq!(row[5], "192.0.2.2");
    }

    #[test]
    fn job_row_shows_status_completions_and_duration() {
        let j = json!({"metadata": {"name": "pi"},
            "spec": {"completions": 3, "selector": {"matchLabels": {"job": "pi"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            "status": {"succeeded": 3, "startTime": "2026-01-01T00:00:00Z",
                "completionTime": "2026-01-01T00:01:30Z",
                "conditions": [{"type": "Complete", "status": "True"}]}});
        let row = job(&j);
        assert_eq!(row[1], "Complete");
        assert_eq!(row[2], "3/3");
        assert_eq!(row[3], "90s");
        assert_eq!(row[5], "c");
        assert_eq!(row[7], "job=pi");
        let running = json!({"metadata": {"name": "p"}, "spec": {"parallelism": 2}});
        let row = job(&running);
        assert_eq!(row[1], "Running");
        assert_eq!(row[2], "0/1 of 2");
        assert_eq!(row[3], "");
    }

    #[test]
    fn cronjob_row_shows_schedule_and_last_run() {
        let c = json!({"metadata": {"name": "tick"}, "spec": {"schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "b"}]}}}}},
            "status": {"active": [{"name": "tick-1"}]}});
        let row = cronjob(&c);
        assert_eq!(row[1], "*/5 * * * *");
        assert_eq!(row[2], "<none>");
        assert_eq!(row[3], "False");
        assert_eq!(row[4], 1);
        assert_eq!(row[5], "<none>");
        assert_eq!(row[9], "<none>");
    }

    #[test]
    fn hpa_row_shows_reference_and_targets() {
        let h = json!({"metadata": {"name": "web"}, "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}]},
            "status": {"currentReplicas": 1}});
        let row = horizontal_pod_autoscaler(&h);
        assert_eq!(row[1], "Deployment/web");
        assert_eq!(row[2], "cpu: <unknown>/50%");
        assert_eq!(row[3], "<unset>");
        assert_eq!(row[4], 3);
        assert_eq!(row[5], 1);
    }

    #[test]
    fn volume_rows_abbreviate_access_modes() {
        let pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": "ns", "name": "data"}, "storageClassName": "slow"},
            "status": {"phase": "Bound"}});
        let row = persistent_volume(&pv);
        assert_eq!(row[2], "RWO,ROX");
        assert_eq!(row[4], "Bound");
        assert_eq!(row[5], "ns/data");
        assert_eq!(row[7], "<unset>");
        let pending = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "slow"},
            "status": {"phase": "Pending"}});
        let row = persistent_volume_claim(&pending);
        assert_eq!(row[1], "Pending");
        assert_eq!(row[3], "");
        assert_eq!(row[5], "slow");
    }

    #[test]
    fn binding_rows_name_the_role_and_subjects() {
        let b = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount",
                "namespace": "ns", "name": "sa"}]});
        let row = role_binding(&b);
        assert_eq!(row[1], "ClusterRole/view");
        assert_eq!(row[3], "alice");
        assert_eq!(row[5], "ns/sa");
    }
}
