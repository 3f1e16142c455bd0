//! `describe node`: roles, taints, Lease, conditions, addresses, capacity, system info, the
//! node's non-terminated pods and what they request of it. Quantities are summed in base units
//! (millicores, bytes) and printed back the way upstream's `Quantity` prints them.

use serde_json::Value;

use super::{line, map_lines, metadata, str_of, time};
use crate::printers::age::object_age;

/// `extra` is `{"lease": Lease | {"error": message}, "pods": [...]}` when they could be fetched.
pub(super) fn node(n: &Value, extra: Option<&Value>, w: &mut String) {
    let meta = &n["metadata"];
    let spec = &n["spec"];
    let status = &n["status"];
    metadata(n, w, false);
    let mut roles: Vec<String> = meta["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                (!role.is_empty()).then(|| role.to_string())
            } else if k == "kubernetes.io/role" {
                v.as_str().filter(|r| !r.is_empty()).map(str::to_string)
            } else {
                None
            }
        })
        .collect();
    roles.sort();
    roles.dedup();
    line(
        w,
        0,
        &format!(
            "Roles:\t{}",
            if roles.is_empty() {
                "<none>".to_string()
            } else {
                roles.join(",")
            }
        ),
    );
    map_lines(w, 0, "Labels", &meta["labels"], "=");
    map_lines(w, 0, "Annotations", &meta["annotations"], ": ");
    line(
        w,
        0,
        &format!("CreationTimestamp:\t{}", time(&meta["creationTimestamp"])),
    );
    let taints: Vec<String> = spec["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}{}:{}",
                str_of(&t["key"], ""),
                t["value"]
                    .as_str()
                    .map(|v| format!("={v}"))
                    .unwrap_or_default(),
                str_of(&t["effect"], "")
            )
        })
        .collect();
    if taints.is_empty() {
        line(w, 0, "Taints:\t<none>");
    }
    for (i, taint) in taints.iter().enumerate() {
        let title = if i == 0 { "Taints:" } else { "" };
        line(w, 0, &format!("{title}\t{taint}"));
    }
    line(
        w,
        0,
        &format!(
            "Unschedulable:\t{}",
            spec["unschedulable"].as_bool().unwrap_or(false)
        ),
    );
    if let Some(extra) = extra {
        let lease = &extra["lease"];
        if let Some(error) = lease["error"].as_str() {
            line(w, 0, &format!("Lease:\tFailed to get lease: {error}"));
        } else {
            line(w, 0, "Lease:");
            let holder = str_of(&lease["spec"]["holderIdentity"], "<unset>");
            line(w, 1, &format!("HolderIdentity:\t{holder}"));
            line(
                w,
                1,
                &format!("AcquireTime:\t{}", time(&lease["spec"]["acquireTime"])),
            );
            line(
                w,
                1,
                &format!("RenewTime:\t{}", time(&lease["spec"]["renewTime"])),
            );
        }
    }
    if let Some(conditions) = status["conditions"].as_array() {
        line(w, 0, "Conditions:");
        line(
            w,
            1,
            "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage",
        );
        line(
            w,
            1,
            "----\t------\t-----------------\t------------------\t------\t-------",
        );
        for c in conditions {
            line(
                w,
                1,
                &format!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    str_of(&c["type"], ""),
                    str_of(&c["status"], ""),
                    time(&c["lastHeartbeatTime"]),
                    time(&c["lastTransitionTime"]),
                    str_of(&c["reason"], ""),
                    str_of(&c["message"], "")
                ),
            );
        }
    }
    line(w, 0, "Addresses:");
    for a in status["addresses"].as_array().into_iter().flatten() {
        line(
            w,
            1,
            &format!("{}:\t{}", str_of(&a["type"], ""), str_of(&a["address"], "")),
        );
    }
    for (field, title) in [("capacity", "Capacity"), ("allocatable", "Allocatable")] {
        if let Some(map) = status[field].as_object() {
            line(w, 0, &format!("{title}:"));
            for (k, v) in map {
                line(w, 1, &format!("{k}:\t{}", str_of(v, "")));
            }
        }
    }
    let info = &status["nodeInfo"];
    {
        line(w, 0, "System Info:");
        for (key, title) in [
            ("machineID", "Machine ID"),
            ("systemUUID", "System UUID"),
            ("bootID", "Boot ID"),
            ("kernelVersion", "Kernel Version"),
            ("osImage", "OS Image"),
            ("operatingSystem", "Operating System"),
            ("architecture", "Architecture"),
            ("containerRuntimeVersion", "Container Runtime Version"),
            ("kubeletVersion", "Kubelet Version"),
            ("kubeProxyVersion", "Kube-Proxy Version"),
        ] {
            line(w, 1, &format!("{title}:\t{}", str_of(&info[key], "")));
        }
    }
    if let Some(cidr) = spec["podCIDR"].as_str().filter(|c| !c.is_empty()) {
        line(w, 0, &format!("PodCIDR:\t{cidr}"));
    }
    let cidrs: Vec<&str> = spec["podCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !cidrs.is_empty() {
        line(w, 0, &format!("PodCIDRs:\t{}", cidrs.join(",")));
    }
    if let Some(provider) = spec["providerID"].as_str().filter(|p| !p.is_empty()) {
        line(w, 0, &format!("ProviderID:\t{provider}"));
    }
    if let Some(pods) = extra.and_then(|e| e["pods"].as_array()) {
        pods_and_allocation(pods, &status["allocatable"], w);
    }
}

/// A resource amount in base units: millicores for `cpu`, units (bytes) for the rest, with the
/// suffix family it was written in (to print the sum back the same way).
#[derive(Clone, Copy, Default)]
struct Amount {
    value: f64,
    binary: bool,
    decimal: bool,
}

impl Amount {
    fn parse(text: &str, cpu: bool) -> Amount {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        let number: f64 = number.parse().unwrap_or(0.0);
        let (factor, binary, decimal) = match suffix {
            "m" => (0.001, false, false),
            "k" => (1e3, false, true),
            "M" => (1e6, false, true),
            "G" => (1e9, false, true),
            "T" => (1e12, false, true),
            "Ki" => (1024.0, true, false),
            "Mi" => (1024.0 * 1024.0, true, false),
            "Gi" => (1024.0 * 1024.0 * 1024.0, true, false),
            "Ti" => (1024.0f64.powi(4), true, false),
            _ => (1.0, false, false),
        };
        let value = number * factor * if cpu { 1000.0 } else { 1.0 };
        Amount {
            value,
            binary,
            decimal,
        }
    }

    fn add(self, other: Amount) -> Amount {
        Amount {
            value: self.value + other.value,
            binary: self.binary || (self.value == 0.0 && other.binary),
            decimal: self.decimal || (self.value == 0.0 && other.decimal),
        }
    }

    fn text(self, cpu: bool) -> String {
        let v = self.value.round() as i64;
        if v == 0 {
            return "0".into();
        }
        if cpu {
            return if v % 1000 == 0 {
                (v / 1000).to_string()
            } else {
                format!("{v}m")
            };
        }
        let families: &[(&str, i64)] = if self.binary {
            &[
                ("Ti", 1 << 40),
                ("Gi", 1 << 30),
                ("Mi", 1 << 20),
                ("Ki", 1 << 10),
            ]
        } else if self.decimal {
            &[
                ("T", 1_000_000_000_000),
                ("G", 1_000_000_000),
                ("M", 1_000_000),
                ("k", 1000),
            ]
        } else {
            &[]
        };
        for (suffix, unit) in families {
            if v % unit == 0 {
                return format!("{}{suffix}", v / unit);
            }
        }
        v.to_string()
    }
}

fn pods_and_allocation(pods: &[Value], allocatable: &Value, w: &mut String) {
    let alloc = |name: &str| {
        allocatable[name]
            .as_str()
            .map(|q| Amount::parse(q, name == "cpu").value)
            .unwrap_or(0.0)
    };
    let percent = |amount: Amount, name: &str| {
        let total = alloc(name);
        if total > 0.0 {
            (amount.value / total * 100.0) as i64
        } else {
            0
        }
    };
    let sum = |pod: &Value, field: &str, name: &str| {
        pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["resources"][field][name].as_str())
            .fold(Amount::default(), |acc, q| {
                acc.add(Amount::parse(q, name == "cpu"))
            })
    };
    line(
        w,
        0,
        &format!("Non-terminated Pods:\t({} in total)", pods.len()),
    );
    line(
        w,
        1,
        "Namespace\tName\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge",
    );
    line(
        w,
        1,
        "---------\t----\t------------\t----------\t---------------\t-------------\t---",
    );
    let mut totals = [Amount::default(); 6];
    let kinds = [
        ("requests", "cpu"),
        ("limits", "cpu"),
        ("requests", "memory"),
        ("limits", "memory"),
        ("requests", "ephemeral-storage"),
        ("limits", "ephemeral-storage"),
    ];
    for pod in pods {
        let mut cells = Vec::new();
        for (i, (field, name)) in kinds.iter().enumerate() {
            let amount = sum(pod, field, name);
            totals[i] = totals[i].add(amount);
            if i < 4 {
                cells.push(format!(
                    "{} ({}%)",
                    amount.text(*name == "cpu"),
                    percent(amount, name)
                ));
            }
        }
        line(
            w,
            1,
            &format!(
                "{}\t{}\t{}\t{}",
                str_of(&pod["metadata"]["namespace"], ""),
                str_of(&pod["metadata"]["name"], ""),
                cells.join("\t"),
                object_age(pod)
            ),
        );
    }
    line(w, 0, "Allocated resources:");
    line(
        w,
        1,
        "(Total limits may be over 100 percent, i.e., overcommitted.)",
    );
    line(w, 1, "Resource\tRequests\tLimits");
    line(w, 1, "--------\t--------\t------");
    for (row, name) in ["cpu", "memory", "ephemeral-storage"].iter().enumerate() {
        let (req, lim) = (totals[row * 2], totals[row * 2 + 1]);
        let cpu = *name == "cpu";
        line(
            w,
            1,
            &format!(
                "{name}\t{} ({}%)\t{} ({}%)",
                req.text(cpu),
                percent(req, name),
                lim.text(cpu),
                percent(lim, name)
            ),
        );
    }
}
